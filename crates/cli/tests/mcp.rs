//! The MCP server against this build's binary, driven by a client nobody here wrote: the
//! official Python `mcp` package runs `tests/mcp` (pytest), which starts `agent-os demo`,
//! leaves a night's runs in it and calls every tool over stdio (`agent-os mcp`) and Streamable
//! HTTP (`/mcp`), as the admin and as a project token. Without python3, pytest and `mcp` it says
//! what to install and passes, unless CI=true, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");

fn has_client() -> bool {
    Command::new("python3").args(["-c", "import pytest, mcp, httpx2"]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn the_official_mcp_client_drives_every_tool_over_both_transports() {
    if !has_client() {
        let how = "python3 with pytest and the MCP client: python3 -m pip install pytest mcp==2.3.0";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but the MCP tests cannot run; install {how}");
        }
        eprintln!("NOTE: the MCP tests (crates/cli/tests/mcp) not run; to run them, install {how}");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("mcp");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "."])
        .current_dir(&dir)
        .env("AGENT_OS_BIN", BIN)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("AGENT_OS_") && key != "AGENT_OS_BIN" {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().expect("cannot start python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "the MCP tests failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(
        stdout.contains(" passed") && !stdout.contains("skipped"),
        "pytest ran no test, or skipped some:\n{stdout}"
    );
}
