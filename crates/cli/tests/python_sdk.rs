//! The Python package (`sdk/python`) against this build's binary: runs its pytest suite, which
//! starts `agent-os serve` itself, registers plugins over both transports and drives every
//! function of the package end to end. Without python3 and pytest it says what to install and
//! passes, unless CI=true, where it fails. (`mypy --strict` and the wheel build run in `.ci/run`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    root.canonicalize().unwrap_or(root)
}

fn has_pytest() -> bool {
    Command::new("python3").args(["-c", "import pytest"]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn the_python_package_works_against_the_real_server() {
    if !has_pytest() {
        let how = "python3 with pytest: python3 -m pip install pytest";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but the Python package's tests cannot run; install {how}");
        }
        eprintln!("NOTE: the Python package's tests (sdk/python/tests) not run; to run them, install {how}");
        return;
    }
    let sdk = repo_root().join("sdk").join("python");
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests"])
        .current_dir(&sdk)
        .env("AGENT_OS_BIN", BIN)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("AGENT_OS_ADMIN_TOKEN")
        .env_remove("AGENT_OS_URL")
        .env_remove("AGENT_OS_TOKEN")
        .env_remove("AGENT_OS_PROJECT")
        .env_remove("AGENT_OS_PING_KEY")
        .env_remove("AGENT_OS_SPOOL")
        .env_remove("AGENT_OS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("AGENT_OS_PUBLIC_URL")
        .env_remove("AGENT_OS_HOME")
        .output()
        .expect("cannot start python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "the Python package's tests failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(" passed"), "pytest ran no test:\n{stdout}");
}
