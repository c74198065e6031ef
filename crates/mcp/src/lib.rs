//! Agent OS as an MCP server, for AI agents: tools that see and steer every project.
//!
//! Every tool is a thin layer over the HTTP API (`/api/v1`): it turns its arguments into one or
//! more API requests, sent with the caller's own bearer token, and the answers into readable
//! text plus the same data as structured content. No rule lives here: who may see or do what,
//! what a valid input is and what an action does are the API's, so an agent can do through MCP
//! exactly what its token can do through the API, and nothing else.
//!
//! Two transports carry the same [`AgentOs`] handler (the official Rust SDK, `rmcp`):
//! - stdio (`agent-os mcp`), whose [`Api`] is an HTTP client of a running server, holding the
//!   token the command was given;
//! - Streamable HTTP at `/mcp` on the server ([`http_service`]), whose [`Api`] calls the
//!   server's own router in process with the `Authorization` header of each MCP request.

mod render;
mod tools;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;

pub use tools::{TOOL_NAMES, tool_list};

/// The items of a JSON list (none when `v` is not one).
pub(crate) fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The HTTP method of an API request (no tool deletes anything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
        }
    }
}

/// One request to the API: `path` starts with `/api/v1/` and carries its query string.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    pub verb: Verb,
    pub path: String,
    pub body: Option<Value>,
    /// How long the answer may take (longer for the waits the tools ask for).
    pub timeout: Duration,
}

/// The API's answer: its status and JSON body (`null` when it had none).
#[derive(Clone, Debug)]
pub struct ApiAnswer {
    pub status: u16,
    pub body: Value,
}

impl ApiAnswer {
    /// An answer from its status and body bytes: JSON when they are, `null` when empty, else
    /// the text (a proxy's HTML error page, say).
    pub fn from_bytes(status: u16, bytes: &[u8]) -> ApiAnswer {
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
        };
        ApiAnswer { status, body }
    }
}

/// How the tools reach the API. `from` is the MCP request's HTTP head when the tool call came
/// over Streamable HTTP (its `Authorization` is the caller's); `None` over stdio.
pub trait Api: Send + Sync + 'static {
    /// The answer, or why the API could not be asked (the message is shown to the agent).
    fn send(
        &self,
        request: ApiRequest,
        from: Option<&http::request::Parts>,
    ) -> impl Future<Output = Result<ApiAnswer, String>> + Send;
}

/// What an agent reads first: what this server is and how to start.
const INSTRUCTIONS: &str = "Agent OS orchestrates work across the user's own software projects: \
their tasks and runs, every schedule wherever it is kept, heartbeat checks, what each project \
spends, budgets, shared resources (such as an API's rate limit), incidents and notifications. \
Start with `overview` (is everything OK? what failed and what did it cost since a time). Tools \
that change something say so in their annotations; `cancel_run` does nothing until called with \
`confirm: true`. Times are RFC 3339 (UTC); durations are like 30s, 15m, 12h or 7d; amounts are \
decimal strings in their currency.";

/// The MCP handler: the tool list and their calls, over an [`Api`].
pub struct AgentOs<A> {
    api: Arc<A>,
    version: String,
}

impl<A> Clone for AgentOs<A> {
    fn clone(&self) -> Self {
        AgentOs { api: self.api.clone(), version: self.version.clone() }
    }
}

impl<A: Api> AgentOs<A> {
    pub fn new(api: Arc<A>, version: impl Into<String>) -> Self {
        AgentOs { api, version: version.into() }
    }
}

impl<A: Api> ServerHandler for AgentOs<A> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agent-os", self.version.clone()).with_title("Agent OS"))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, rmcp::ErrorData> {
        Ok(ListToolsResult::with_all_items(tool_list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, rmcp::ErrorData> {
        let from = context.extensions.get::<http::request::Parts>();
        let args = request.arguments.map(Value::Object).unwrap_or_else(|| Value::Object(Default::default()));
        match tools::call(self.api.as_ref(), from, &request.name, args).await {
            Some(result) => Ok(result.into()),
            None => Err(rmcp::ErrorData::invalid_params(
                format!("no tool {:?}; the tools are: {}", request.name, TOOL_NAMES.join(", ")),
                None,
            )),
        }
    }
}

/// Serves MCP over this process's stdin and stdout until the client closes them.
pub async fn serve_stdio<A: Api>(handler: AgentOs<A>) -> Result<(), String> {
    use rmcp::ServiceExt;
    let running = handler.serve(rmcp::transport::stdio()).await.map_err(|e| format!("MCP start over stdio: {e}"))?;
    running.waiting().await.map_err(|e| format!("MCP over stdio: {e}"))?;
    Ok(())
}

/// The Streamable HTTP endpoint (mounted at `/mcp`): stateless, one JSON answer per request.
///
/// No sessions are kept, so a server restart or a second replica loses nothing, and nothing
/// outlives a request but what the API stored. The `Host` and `Origin` allow-lists of the SDK
/// are off: every request must carry a bearer token the server checks before this service
/// sees it, which a page rebinding DNS in someone's browser cannot supply, while a fixed list
/// of host names would refuse the server's own public address on a hosted deployment.
pub fn http_service<A: Api>(
    handler: AgentOs<A>,
    max_body_bytes: usize,
) -> StreamableHttpService<AgentOs<A>, NeverSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(max_body_bytes);
    StreamableHttpService::new(move || Ok(handler.clone()), Arc::new(NeverSessionManager::default()), config)
}
