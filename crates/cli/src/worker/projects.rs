//! The projects a worker serves: each loaded from its directory exactly as the server loads a
//! local project (`engine::project::load_dir`: a canonical root, the manifest validated, no
//! path escaping the project), and watched for changes to its manifest.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Result, bail};

use agent_os_core::manifest::{MANIFEST_FILE, Manifest, Transport};
use agent_os_engine::project::load_dir;

/// A project as the worker last read it from its directory.
#[derive(Clone, Debug)]
pub struct LocalProject {
    /// The directory as given (shown in messages).
    pub dir: PathBuf,
    /// Its canonical root, where tasks start.
    pub root: PathBuf,
    /// The manifest as written, which is what the server stores.
    pub text: String,
    pub manifest: Manifest,
    /// The manifest file's modification time and size when it was read.
    stamp: Option<(SystemTime, u64)>,
}

impl LocalProject {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Reads and checks the project in `dir`.
    pub fn load(dir: &Path) -> Result<LocalProject> {
        let stamp = stamp(dir);
        let (root, text, manifest) = load_dir(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Transport::Http { url } = &manifest.transport {
            bail!(
                "{}: the project is served by its own endpoint ({url}); a worker serves projects whose tasks run in their directory (remove `plugin:` from its {MANIFEST_FILE}), and an HTTP project is registered with `agent-os project add`",
                dir.display()
            );
        }
        Ok(LocalProject { dir: dir.to_path_buf(), root, text, manifest, stamp })
    }

    /// Whether the manifest file looks changed since it was read (its time or size).
    pub fn changed_on_disk(&self) -> bool {
        stamp(&self.root) != self.stamp
    }

    /// Reads the project again after a change: `Ok(None)` when the text is the same. The name
    /// cannot change while the worker runs (the server knows the project by it).
    pub fn reload(&self) -> Result<Option<LocalProject>> {
        let mut fresh = LocalProject::load(&self.root)?;
        fresh.dir = self.dir.clone();
        if fresh.manifest.name != self.manifest.name {
            bail!(
                "{}: the manifest now names the project {:?}; a worker keeps serving {:?} until it is restarted with the new name allowed by its token",
                self.dir.display(),
                fresh.manifest.name,
                self.manifest.name
            );
        }
        Ok((fresh.text != self.text).then_some(fresh))
    }

    /// Takes the stamp of a manifest that failed to load, so the same broken file is reported
    /// once rather than every two seconds.
    pub fn mark_seen(&mut self) {
        self.stamp = stamp(&self.root);
    }
}

fn stamp(dir: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(dir.join(MANIFEST_FILE)).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Loads every project directory; all problems at once, and two directories naming one
/// project are refused.
pub fn load_all(dirs: &[PathBuf]) -> Result<Vec<LocalProject>> {
    let mut out: Vec<LocalProject> = Vec::new();
    let mut problems = Vec::new();
    for dir in dirs {
        match LocalProject::load(dir) {
            Ok(p) => {
                if let Some(other) = out.iter().find(|o| o.name() == p.name()) {
                    problems.push(format!(
                        "{} and {} both declare the project {:?}; serve each project from one directory",
                        other.dir.display(),
                        dir.display(),
                        p.name()
                    ));
                } else {
                    out.push(p);
                }
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(dir: &Path, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), text).unwrap();
    }

    #[test]
    fn loads_like_the_server_and_refuses_what_a_worker_cannot_serve() {
        let tmp = tempfile::tempdir().unwrap();
        project(&tmp.path().join("a"), "name: a\ntasks:\n  t: { run: echo hi }\n");
        project(&tmp.path().join("b"), "name: a\ntasks:\n  t: { run: echo hi }\n");
        project(
            &tmp.path().join("h"),
            "name: h\nplugin: { url: \"https://h.example.com/agent-os\" }\ntasks:\n  t: {}\n",
        );
        project(&tmp.path().join("x"), "name: x\ntasks:\n  t: { run: ../escape.sh }\n");
        let p = load_all(&[tmp.path().join("a")]).unwrap();
        assert_eq!(p[0].root, tmp.path().join("a").canonicalize().unwrap());
        let err = load_all(&[tmp.path().join("a"), tmp.path().join("b")]).unwrap_err().to_string();
        assert!(err.contains("both declare the project \"a\""), "{err}");
        let err =
            load_all(&[tmp.path().join("h"), tmp.path().join("x"), tmp.path().join("none")]).unwrap_err().to_string();
        assert!(err.contains("served by its own endpoint"), "{err}");
        assert!(err.contains("tasks.t.run") && err.contains("outside the project"), "{err}");
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn a_change_on_disk_is_seen_and_a_rename_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        project(&dir, "name: a\ntasks:\n  t: { run: echo hi }\n");
        let p = LocalProject::load(&dir).unwrap();
        assert!(!p.changed_on_disk());
        project(&dir, "name: a\ntasks:\n  t: { run: echo hi }\n  u: { run: echo there }\n");
        assert!(p.changed_on_disk());
        let fresh = p.reload().unwrap().unwrap();
        assert!(fresh.manifest.task("u").is_some());
        assert!(fresh.reload().unwrap().is_none(), "same text, nothing to send");
        project(&dir, "name: b\ntasks:\n  t: { run: echo hi }\n");
        let err = fresh.reload().unwrap_err().to_string();
        assert!(err.contains("now names the project \"b\""), "{err}");
    }
}
