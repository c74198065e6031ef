//! Embeds the migrations of each backend (`migrations/sqlite`, `migrations/postgres`) into the
//! binary: the files in each directory are the list, in version order. A file is named
//! `NNNN_description.sql`; a name that does not say its version, or two files of one version,
//! stop the build.

// A build script fails the build by panicking, with the message cargo shows.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;

/// `(version, description, path)` of each migration in `dir`, in version order.
fn migrations(dir: &Path) -> Vec<(i64, String, String)> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())).path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(stem) = name.strip_suffix(".sql") else { continue };
        let parsed = stem.split_once('_').and_then(|(v, d)| Some((v.parse::<i64>().ok()?, d)));
        let Some((version, description)) = parsed.filter(|(v, d)| *v > 0 && !d.is_empty()) else {
            panic!("{}: a migration is named NNNN_description.sql", path.display())
        };
        let path = path.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((version, description.replace('_', " "), path.display().to_string()));
    }
    out.sort_by_key(|m| m.0);
    for pair in out.windows(2) {
        assert!(pair[0].0 != pair[1].0, "{}: two migrations of version {}", dir.display(), pair[0].0);
    }
    out
}

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let mut code = String::new();
    for (constant, backend) in [("SQLITE", "sqlite"), ("POSTGRES", "postgres")] {
        let dir = Path::new(&manifest_dir).join("migrations").join(backend);
        println!("cargo:rerun-if-changed={}", dir.display());
        code.push_str(&format!(
            "/// The migrations of `migrations/{backend}`: version, description, text.\n\
             pub(crate) const {constant}: &[(i64, &str, &str)] = &[\n"
        ));
        for (version, description, path) in migrations(&dir) {
            code.push_str(&format!("    ({version}, {description:?}, include_str!({path:?})),\n"));
        }
        code.push_str("];\n");
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
