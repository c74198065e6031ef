//! Embeds `examples/projects` into the binary, so `agent-os demo` works from any directory.
//! Run-time state of the examples (var/, backups/, caches) and any `.env` are never embedded.
//! A symbolic link is followed: each example project links the Python package
//! (`agent_os -> sdk/python/agent_os`), and the demo writes its files as the project's own.

// A build script fails the build by panicking, with the message cargo shows.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn collect(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if ["var", "backups", "inbox", "__pycache__", ".env"].contains(&name.as_str()) || name.ends_with(".pyc") {
            continue;
        }
        if path.is_dir() {
            collect(&path, base, out);
        } else {
            out.push(path.strip_prefix(base).unwrap_or(&path).to_path_buf());
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let examples = manifest_dir.join("../../examples/projects");
    println!("cargo:rerun-if-changed={}", examples.display());
    // The example projects link the Python package in sdk/python (a stand-in for installing
    // it): the demo writes a copy of it into each project.
    println!("cargo:rerun-if-changed={}", manifest_dir.join("../../sdk/python/agent_os").display());
    let mut files = Vec::new();
    collect(&examples, &examples, &mut files);
    let mut code = String::from(
        "/// (path relative to examples/projects, contents, executable)\npub const EXAMPLE_FILES: &[(&str, &[u8], bool)] = &[\n",
    );
    for f in &files {
        let full = examples.join(f).canonicalize().unwrap_or_else(|_| examples.join(f));
        println!("cargo:rerun-if-changed={}", full.display());
        #[cfg(unix)]
        let exec = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&full).map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false)
        };
        #[cfg(not(unix))]
        let exec = false;
        code.push_str(&format!(
            "    ({:?}, include_bytes!({:?}), {exec}),\n",
            f.to_string_lossy(),
            full.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("examples.rs");
    std::fs::write(out, code).expect("write examples.rs");
}
