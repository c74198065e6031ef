//! `agent-os mcp`: the MCP server over stdio, for the AI clients that start their servers as
//! processes (Claude Desktop, Claude Code, Cursor and the like). Its tools are requests to a
//! running server's API with the token this command was given (`--token`/`AGENT_OS_TOKEN`, or
//! the home's `client.json`), so an agent holding a project token acts for that project alone.
//! Standard output carries MCP messages only; the log goes to standard error.

use std::time::Duration;

use anyhow::Result;
use reqwest::Method;

use agent_os_mcp::{AgentOs, Api, ApiAnswer, ApiRequest, Verb};

use crate::client::Client;

struct OverHttp {
    client: Client,
}

impl Api for OverHttp {
    async fn send(&self, request: ApiRequest, _from: Option<&axum::http::request::Parts>) -> Result<ApiAnswer, String> {
        let method = match request.verb {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
        };
        let resp = self
            .client
            .request(method.clone(), &request.path, request.body.as_ref(), request.timeout)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| format!("reading the answer to {method} {}: {e}", request.path))?;
        Ok(ApiAnswer::from_bytes(status, &bytes))
    }
}

/// Serves until the client closes standard input. The server is checked first, so a wrong URL
/// or token is said at once on standard error (where MCP clients show a server's log) rather
/// than on the first tool call.
pub async fn run(client: Client) -> Result<u8> {
    let api = OverHttp { client };
    let check =
        ApiRequest { verb: Verb::Get, path: "/api/v1/projects".into(), body: None, timeout: Duration::from_secs(10) };
    let base = api.client.base.clone();
    match api.send(check, None).await {
        Ok(ApiAnswer { status: 200, body: projects }) => eprintln!(
            "agent-os mcp: serving MCP on standard input and output for {base} ({} projects visible to this token)",
            projects.as_array().map_or(0, Vec::len)
        ),
        Ok(ApiAnswer { status, body }) => {
            let message = body["error"]["message"].as_str().unwrap_or("").to_string();
            eprintln!(
                "agent-os mcp: {base} answered {status}: {message}; the tools will say the same until this is fixed"
            );
        }
        Err(e) => eprintln!("agent-os mcp: {e}; the tools will say so until the server is reachable"),
    }
    let handler = AgentOs::new(std::sync::Arc::new(api), env!("CARGO_PKG_VERSION"));
    agent_os_mcp::serve_stdio(handler).await.map_err(|e| {
        anyhow::anyhow!(
            "{e}: `agent-os mcp` is started by an MCP client (Claude Desktop, Claude Code, Cursor), which talks to it on standard input; see docs/mcp.md"
        )
    })?;
    Ok(0)
}
