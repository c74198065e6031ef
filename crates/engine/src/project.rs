//! Loading a project from its directory: the manifest, validated by the core, plus the checks
//! that need the file system — the root is canonical, and no `run` path or `env_file` escapes
//! it, including through a symlink.

use std::path::{Component, Path, PathBuf};

use agent_os_core::manifest::{Command, MANIFEST_FILE, Manifest, ManifestError};
use agent_os_core::yaml::{Pos, SourceError};
use agent_os_store::ProjectRecord;

/// A registered project with its validated manifest.
#[derive(Clone, Debug)]
pub struct LoadedProject {
    pub record: ProjectRecord,
    pub manifest: Manifest,
}

impl LoadedProject {
    /// Re-validates a stored project (manifests are stored as text).
    pub fn from_record(record: ProjectRecord) -> Result<LoadedProject, ManifestError> {
        let manifest = Manifest::parse(&format!("{}/{MANIFEST_FILE}", record.name), &record.manifest)?;
        Ok(LoadedProject { record, manifest })
    }

    pub fn root(&self) -> Option<&Path> {
        self.record.transport.root().map(Path::new)
    }
}

/// Why a directory could not be loaded as a project.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}: not a directory; give the project's root directory")]
    NotADirectory(String),
    #[error("{0}: no {MANIFEST_FILE} here; create one (see docs/manifest.md)")]
    NoManifest(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(#[from] ManifestError),
}

/// Reads and validates the project in `dir`. Returns its canonical root, the manifest text and
/// the plan.
pub fn load_dir(dir: &Path) -> Result<(PathBuf, String, Manifest), LoadError> {
    let shown = dir.display().to_string();
    let root = dir.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotADirectory(shown.clone()),
        _ => LoadError::Io { path: shown.clone(), source: e },
    })?;
    if !root.is_dir() {
        return Err(LoadError::NotADirectory(shown));
    }
    let file = root.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::NoManifest(root.display().to_string()),
        _ => LoadError::Io { path: file.display().to_string(), source: e },
    })?;
    let file_name = file.display().to_string();
    let manifest = Manifest::parse(&file_name, &text)?;
    check_paths(&root, &file_name, &manifest)?;
    Ok((root, text, manifest))
}

/// Refuses `run` paths and the env file when they resolve outside `root`.
pub fn check_paths(root: &Path, file: &str, m: &Manifest) -> Result<(), ManifestError> {
    let mut errors = Vec::new();
    let mut refuse = |pos: Option<Pos>, path: String, message: String| {
        let pos = pos.unwrap_or(Pos { line: 1, column: 1 });
        errors.push(SourceError {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            path,
            message,
            hint: Some("a project's programs and env file live inside its own directory".into()),
        });
    };
    if let Some(env) = &m.env_file
        && let Err(why) = resolve_within(root, env)
    {
        refuse(m.env_file_position, "env_file".into(), why);
    }
    for (name, task) in &m.tasks {
        let Some(run) = &task.run else { continue };
        let words: Vec<&str> = match run {
            Command::Argv(v) => v.iter().map(String::as_str).collect(),
            Command::Shell(s) => s.split_whitespace().collect(),
        };
        for word in words {
            let looks_like_path = word.contains('/')
                && !word.starts_with('/')
                && !word.starts_with('-')
                && !word.contains("://")
                && !word.contains('$');
            if looks_like_path && let Err(why) = resolve_within(root, word.trim_matches(|c| c == '"' || c == '\'')) {
                refuse(m.task_positions.get(name).copied(), format!("tasks.{name}.run"), why);
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(ManifestError(errors)) }
}

/// Checks that `rel` (relative to `root`) stays inside `root`: lexically, and after following
/// symlinks of the part of the path that exists.
fn resolve_within(root: &Path, rel: &str) -> Result<(), String> {
    let mut lexical = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => lexical.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !lexical.pop() {
                    return Err(format!("{rel:?} points outside the project directory"));
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(format!("{rel:?} is absolute")),
        }
    }
    // Follow the longest existing prefix through any symlinks.
    let mut probe = root.join(&lexical);
    let mut rest = Vec::new();
    loop {
        match probe.canonicalize() {
            Ok(real) => {
                if real.starts_with(root) {
                    return Ok(());
                }
                return Err(format!(
                    "{rel:?} leads outside the project directory (to {})",
                    real.join(rest.iter().rev().collect::<PathBuf>()).display()
                ));
            }
            Err(_) => match (probe.file_name().map(|n| n.to_owned()), probe.parent().map(Path::to_path_buf)) {
                (Some(name), Some(parent)) if parent.starts_with(root) || parent == root => {
                    rest.push(name);
                    probe = parent;
                }
                _ => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(dir: &Path, manifest: &str) -> Result<(PathBuf, String, Manifest), LoadError> {
        std::fs::write(dir.join(MANIFEST_FILE), manifest).unwrap();
        load_dir(dir)
    }

    #[test]
    fn loads_a_valid_project_with_a_canonical_root() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("scripts")).unwrap();
        let (root, _, m) = project(tmp.path(), "name: p\nenv_file: .env\ntasks:\n  a: { run: scripts/a.sh }\n  b: { run: [python3, scripts/b.py, --flag=x/y] }\n").unwrap();
        assert_eq!(root, tmp.path().canonicalize().unwrap());
        assert_eq!(m.tasks.len(), 2);
    }

    #[test]
    fn refuses_run_paths_that_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let err = project(tmp.path(), "name: p\ntasks:\n  a: { run: ../other/x.sh }\n").unwrap_err().to_string();
        assert!(err.contains("tasks.a.run") && err.contains("outside the project"), "{err}");
        let err = project(tmp.path(), "name: p\ntasks:\n  a: { run: [sh, ok/../../x.sh] }\n").unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
    }

    #[test]
    fn refuses_symlinks_that_escape() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join(".env"), "OPENAI_API_KEY=sk-fake\n").unwrap();
        std::fs::create_dir(outside.path().join("bin")).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join(".env"), tmp.path().join(".env")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("bin"), tmp.path().join("bin")).unwrap();
        let err =
            project(tmp.path(), "name: p\nenv_file: .env\ntasks:\n  a: { run: bin/x.sh }\n").unwrap_err().to_string();
        assert!(err.contains("env_file") && err.contains("leads outside"), "{err}");
        assert!(err.contains("tasks.a.run"), "{err}");
    }

    #[test]
    fn missing_directory_or_manifest_says_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let err = load_dir(&tmp.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        let err = load_dir(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("no agent-os.yaml"), "{err}");
    }
}
