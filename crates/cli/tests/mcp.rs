//! The MCP server against this build's binary, driven by a client nobody here wrote: the
//! official Python `mcp` package runs `tests/mcp` (pytest), which starts `agent-os demo`,
//! leaves a night's runs in it and calls every tool over stdio (`agent-os mcp`) and Streamable
//! HTTP (`/mcp`), as the admin and as a project token. Without python3, pytest and `mcp` it says
//! what to install and passes, unless CI=true, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

#[test]
fn the_official_mcp_client_drives_every_tool_over_both_transports() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("mcp");
    let install = "install pytest and the MCP client: python3 -m pip install pytest mcp==2.3.0";
    common::pytest(&dir, ".", "pytest, mcp, httpx2", install);
}
