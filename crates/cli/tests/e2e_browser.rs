//! The dashboard in a real browser: runs the end-to-end suite in `e2e/` (node's test runner
//! driving Debian's headless Chromium through playwright-core) against this build's binary,
//! which the suite starts as `agent-os demo` on 127.0.0.1. Screenshots land in `target/e2e/`.
//! Without Chromium or the suite's npm packages it says what to install and passes, unless
//! CI=true, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");
const CHROMIUM: &str = "/usr/bin/chromium";

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    root.canonicalize().unwrap_or(root)
}

/// What the suite needs and this machine lacks, each with how to get it.
fn missing(e2e: &Path) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push("Chromium at /usr/bin/chromium: apt-get install chromium");
    }
    if !Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()) {
        missing.push("Node.js 20 or newer (node on the PATH): apt-get install nodejs npm");
    }
    if !e2e.join("node_modules").join("playwright-core").join("package.json").exists() {
        missing.push("playwright-core in e2e/node_modules: PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix e2e");
    }
    missing
}

#[test]
fn the_dashboard_works_in_headless_chromium() {
    let root = repo_root();
    let e2e = root.join("e2e");
    let missing = missing(&e2e);
    if !missing.is_empty() {
        let list = missing.join("\n  ");
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but the browser tests cannot run; install:\n  {list}");
        }
        eprintln!("NOTE: browser tests (e2e/) not run; to run them, install:\n  {list}");
        return;
    }
    let out = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec", "dashboard.test.mjs"])
        .current_dir(&e2e)
        .env("AGENT_OS_BIN", BIN)
        .env("AGENT_OS_E2E_OUT", root.join("target").join("e2e"))
        .env("NO_COLOR", "1")
        .env_remove("AGENT_OS_ADMIN_TOKEN")
        .env_remove("AGENT_OS_URL")
        .env_remove("AGENT_OS_TOKEN")
        .env_remove("AGENT_OS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("AGENT_OS_PUBLIC_URL")
        .env_remove("AGENT_OS_HOME")
        .output()
        .expect("cannot start node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with --nocapture, and on failure.
    println!("{stdout}");
    assert!(out.status.success(), "the browser tests failed ({}):\n{stdout}\n{stderr}", out.status);
}
