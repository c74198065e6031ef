//! `/mcp`: the MCP server over Streamable HTTP (`agent_os_mcp`). Its tools call this server's
//! own API in process, through the same router, layers and handlers as a request from outside,
//! each with the `Authorization` header (and the peer address) of the MCP request that asked:
//! a project token reaches through MCP what it reaches through the API, and nothing else.
//! The route itself takes only a live bearer token (`auth::authenticate`), so a request without
//! one is answered 401 before any MCP message is read.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use tower::ServiceExt;

use agent_os_mcp::{AgentOs, Api, ApiAnswer, ApiRequest};

/// The most of an API answer a tool reads (a page of a run's log is the largest).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// The API, reached in process: `router` is the server's own routes with the edge's layers.
pub struct InProcess {
    router: Router,
}

impl Api for InProcess {
    async fn send(&self, request: ApiRequest, from: Option<&axum::http::request::Parts>) -> Result<ApiAnswer, String> {
        let mut builder = Request::builder().method(request.verb.as_str()).uri(&request.path);
        if let Some(parts) = from {
            if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
                builder = builder.header(header::AUTHORIZATION, auth.clone());
            }
            if let Some(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
                builder = builder.extension(*peer);
            }
            if let Some(forwarded) = parts.headers.get("x-forwarded-for") {
                builder = builder.header("x-forwarded-for", forwarded.clone());
            }
        }
        let body = match &request.body {
            Some(b) => {
                builder = builder.header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let req = builder.body(body).map_err(|e| format!("{} {}: {e}", request.verb.as_str(), request.path))?;
        let answer = tokio::time::timeout(request.timeout, self.router.clone().oneshot(req))
            .await
            .map_err(|_| format!("{} {} took longer than {:?}", request.verb.as_str(), request.path, request.timeout))?
            .map_err(|e| format!("{} {}: {e}", request.verb.as_str(), request.path))?;
        let status = answer.status().as_u16();
        let bytes = axum::body::to_bytes(answer.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| format!("reading the answer to {} {}: {e}", request.verb.as_str(), request.path))?;
        Ok(ApiAnswer::from_bytes(status, &bytes))
    }
}

/// The `/mcp` route over `api` (the routes the tools call), with its bearer-token check.
pub fn routes(api: Router, state: crate::AppState) -> Router {
    let handler = AgentOs::new(Arc::new(InProcess { router: api }), env!("CARGO_PKG_VERSION"));
    let service = agent_os_mcp::http_service(handler, state.max_body_bytes);
    Router::new()
        .route_service("/mcp", service)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::authenticate))
        .with_state(state)
}
