//! The edge of the server: the layers every request passes, what it must satisfy before a
//! handler sees it, and the one error shape of whatever is refused on the way. Text a request
//! carries (path segments, query values, JSON strings, dashboard form fields) may not hold NUL:
//! PostgreSQL cannot store it and SQLite can, and the answer must not depend on the database.
//! Times a request chooses are bounded here too, before they meet any arithmetic.
//!
//! Every request gets an id (`X-Request-Id`), carried in its tracing span and sent back; a
//! request's handler gets [`Edge::request_timeout`] to answer, except the long polls, which
//! bound their own wait; pages, assets and CSV leave gzipped when the client asks for it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, ApiResult};
use crate::metrics::{self, HttpMetrics};

/// What the edge layers need to know of the server's settings.
#[derive(Clone, Debug)]
pub struct Edge {
    /// How long a handler may take to answer (`api.request_timeout`); a streamed answer is
    /// bounded until it starts, the long polls ([`LONG_POLLS`]) by their own wait.
    pub request_timeout: Duration,
    /// Proxies whose `X-Request-Id` (like their `X-Forwarded-For`) is believed.
    pub trusted_proxies: Arc<[agent_os_core::net::IpRange]>,
}

/// Routes that wait on purpose, each up to a bound of its own: a run's and a workflow run's
/// `/wait` (its `timeout`, at most 5 minutes), taking a lease (its `wait`, at most an hour) and a worker's poll
/// (`workers.poll_wait`, at most 5 minutes). They are not held to [`Edge::request_timeout`].
/// Neither is the backup (admin only), whose snapshot takes as long as the database's size
/// needs before the first byte can be sent, nor an MCP message (`/mcp`), whose tool calls are
/// requests to these same routes, each held to its own bound (a tool waits at most 5 minutes).
pub const LONG_POLLS: [(&str, Method); 6] = [
    ("/api/v1/runs/{id}/wait", Method::GET),
    ("/api/v1/workflows/runs/{id}/wait", Method::GET),
    ("/api/v1/resources/{name}/leases", Method::POST),
    ("/api/v1/worker/poll", Method::POST),
    ("/api/v1/backup", Method::GET),
    ("/mcp", Method::POST),
];

/// The header that carries a request's id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps every route in the edge's layers; outermost first: an incoming id is kept or dropped
/// ([`incoming_request_id`]), one is made if none is left, the id goes back on the answer; the
/// tracing span; gzip for pages, assets and CSV; request metrics; [`guard`] (refusals, the
/// error shape, panics); and the handler's time limit ([`deadline`]).
pub fn layers(router: Router, edge: Edge, http: Arc<HttpMetrics>) -> Router {
    let edge = Arc::new(edge);
    let compress = CompressionLayer::new().compress_when(SizeAbove::new(256).and(compressible as Compressible));
    router
        .layer(from_fn_with_state(edge.clone(), deadline))
        .layer(from_fn(guard))
        .layer(from_fn_with_state(http, metrics::track))
        .layer(compress)
        .layer(TraceLayer::new_for_http().make_span_with(span))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, NewId))
        .layer(from_fn_with_state(edge, incoming_request_id))
}

// Request ids ---------------------------------------------------------------------------------

/// Whether an id sent to us may be kept: 1 to 64 letters, digits, `-`, `_`, `.` or `:`, which
/// covers UUIDs and the ids proxies make, and cannot forge a log line or a header.
fn safe_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    (1..=64).contains(&b.len()) && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

/// Middleware: an incoming `X-Request-Id` is kept only from a proxy listed in
/// `api.trusted_proxies`, and only when it is one safe token; otherwise it is dropped and a new
/// id is made. Anyone else could pick an id that matches another request's.
pub async fn incoming_request_id(State(edge): State<Arc<Edge>>, mut req: Request, next: Next) -> Response {
    let from_proxy = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| edge.trusted_proxies.iter().any(|r| r.contains(peer.ip().to_canonical())));
    let sent: Vec<&HeaderValue> = req.headers().get_all(&REQUEST_ID).iter().collect();
    let keep = from_proxy && matches!(sent[..], [one] if safe_id(one));
    if !keep {
        req.headers_mut().remove(&REQUEST_ID);
    }
    next.run(req).await
}

/// Makes a request's id: a UUIDv7, so ids sort by time in a log.
#[derive(Clone, Copy, Debug)]
pub struct NewId;

impl MakeRequestId for NewId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&agent_os_core::id::new_id()).ok().map(RequestId::new)
    }
}

/// The id of a request, once the request-id layers ran.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The tracing span of a request: its id, method and route pattern. The path itself is left
/// out, since some paths are capabilities (a check's ping URL).
fn span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info_span!("request", id = %id, method = %req.method(), route = %route)
}

// Compression ---------------------------------------------------------------------------------

type Compressible = fn(StatusCode, Version, &HeaderMap, &Extensions) -> bool;

/// What is gzipped when the client accepts it: pages, assets and CSV. JSON answers are small
/// and the event streams must not be buffered by an encoder.
fn compressible(_: StatusCode, _: Version, headers: &HeaderMap, _: &Extensions) -> bool {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(mime.as_str(), "text/html" | "text/css" | "text/javascript" | "image/svg+xml" | "text/csv")
}

// Time limit ------------------------------------------------------------------------------------

/// Middleware: a handler that has not answered within [`Edge::request_timeout`] is stopped and
/// the request answered `503` with code `timeout` and the request's id. Whatever it was doing
/// is cut where it stood: a change it was making may or may not have been stored.
pub async fn deadline(State(edge): State<Arc<Edge>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let long_poll = LONG_POLLS.iter().any(|(path, method)| route.as_deref() == Some(*path) && req.method() == method);
    if long_poll {
        return next.run(req).await;
    }
    let id = request_id(req.headers());
    match tokio::time::timeout(edge.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            let limit = agent_os_core::format_duration(edge.request_timeout);
            tracing::warn!(limit = %limit, "a request took longer than api.request_timeout and was stopped");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the server did not answer within {limit} (api.request_timeout) and stopped; a change this request made may or may not be stored, so look before you try again"
                ),
            )
            .request_id(id)
            .into_response()
        }
    }
}

// Refusals and panics ---------------------------------------------------------------------------

/// Marks a response whose plain text is meant for its reader (the ping endpoint answers curl
/// with `OK` or `not found`), so [`guard`] does not turn it into the JSON error shape.
#[derive(Clone, Copy, Debug)]
pub struct PlainText;

/// Middleware around every route: refuses a path segment that is not UTF-8 or holds NUL, and
/// a query value holding NUL, with a 400 naming it; turns the plain-text refusals of axum's own
/// extractors (a body over a route's limit, a form that does not parse) into the API's JSON
/// error shape; and answers a handler's panic with a 500 in that shape, carrying the request's
/// id, rather than a dropped connection.
pub async fn guard(req: Request, next: Next) -> Response {
    if let Err(e) = check_target(req.uri()) {
        return e.into_response();
    }
    let id = request_id(req.headers());
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => json_errors(resp).await,
        Err(_) => {
            tracing::error!("a request handler panicked");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server failed on this request; it was not completed (the log says where: look for its request_id)",
            )
            .request_id(id)
            .into_response()
        }
    }
}

fn check_target(uri: &Uri) -> ApiResult<()> {
    for segment in uri.path().split('/') {
        let decoded = agent_os_core::url::decode_component(segment).map_err(|e| {
            ApiError::bad_request(format!("the path segment {:?} is not valid: {e}", shorten(segment))).field("path")
        })?;
        if decoded.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "the path segment {:?} holds a NUL character (%00), which no name or id may contain",
                shorten(segment)
            ))
            .field("path"));
        }
    }
    match uri.query().and_then(nul_field) {
        Some(name) => Err(ApiError::bad_request(format!(
            "the query parameter {name:?} holds a NUL character (%00), which no value may contain"
        ))
        .field(name)),
        None => Ok(()),
    }
}

/// The name of the first field of a URL-encoded form or query string whose name or value holds
/// NUL once decoded (which only `%00` can encode).
pub fn nul_field(form: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let has_nul = |s: &str| s.as_bytes().windows(3).any(|w| w == b"%00");
        (has_nul(name) || has_nul(value)).then(|| {
            let name = name.replace('+', " ");
            shorten(&agent_os_core::url::decode_component(&name).unwrap_or(name).replace('\0', "\u{FFFD}"))
        })
    })
}

fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

/// An error answered as plain text (by axum's extractors, before any handler of ours ran)
/// leaves in the JSON error shape, with its status kept.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let plain_text = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error())
        || !plain_text
        || resp.extensions().get::<PlainText>().is_some()
    {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).into_owned());
    let text = text.unwrap_or_default();
    let (status, code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            (status, "payload_too_large", format!("the request body is larger than this endpoint accepts ({text})"))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (status, "unsupported_media_type", text),
        StatusCode::UNAUTHORIZED => (status, "unauthorized", text),
        StatusCode::FORBIDDEN => (status, "forbidden", text),
        StatusCode::NOT_FOUND => (status, "not_found", text),
        StatusCode::METHOD_NOT_ALLOWED => (status, "method_not_allowed", text),
        StatusCode::TOO_MANY_REQUESTS => (status, "rate_limited", text),
        // axum answers a form or path that does not deserialize with 422; this API calls every
        // malformed request a 400.
        s if s.is_client_error() => (StatusCode::BAD_REQUEST, "bad_request", text),
        StatusCode::SERVICE_UNAVAILABLE => (status, "unavailable", text),
        _ => (status, "internal", text),
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

// Times a request chooses -------------------------------------------------------------------

/// The earliest time a request may name.
pub const EARLIEST: jiff::Timestamp = jiff::Timestamp::UNIX_EPOCH;
/// The latest time a request may name, 9999-12-30T22:00:00Z: the last whole millisecond (the
/// unit times are stored in) at which every zone's civil time is still in year 9999 (jiff's
/// own limit).
pub const LATEST: jiff::Timestamp = jiff::Timestamp::constant(253_402_207_200, 0);

fn range_text() -> String {
    format!("from {EARLIEST} to {LATEST}")
}

fn out_of_range(what: &str, field: &str) -> ApiError {
    ApiError::bad_request(format!("{what} is outside the times Agent OS accepts ({})", range_text())).field(field)
}

/// Checks that `t` is within [`EARLIEST`]..=[`LATEST`].
pub fn bounded(t: jiff::Timestamp, field: &str) -> ApiResult<jiff::Timestamp> {
    if t < EARLIEST || t > LATEST {
        return Err(out_of_range(&format!("{t}"), field));
    }
    Ok(t)
}

/// An RFC 3339 time given in `field`, within the accepted range.
pub fn time_param(text: &str, field: &str) -> ApiResult<jiff::Timestamp> {
    let t = text.parse::<jiff::Timestamp>().map_err(|_| {
        ApiError::bad_request(format!("{text:?} is not an RFC 3339 time, e.g. 2026-12-01T02:00:00Z")).field(field)
    })?;
    bounded(t, field)
}

/// An RFC 3339 time or a calendar date (midnight UTC) given in `field`, as milliseconds,
/// within the accepted range.
pub fn instant_param(text: &str, field: &str) -> ApiResult<i64> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(bounded(t, field)?.as_millisecond());
    }
    let date = text.parse::<jiff::civil::Date>().map_err(|_| {
        ApiError::bad_request(format!("{text:?} is not an RFC 3339 time or a date such as 2026-11-01")).field(field)
    })?;
    let t = date.to_zoned(jiff::tz::TimeZone::UTC).map_err(|_| out_of_range(text, field))?.timestamp();
    Ok(bounded(t, field)?.as_millisecond())
}

/// `from` (ms) plus a duration the request chose in `field`, refused when the sum is past the
/// accepted range rather than overflowing.
pub fn after(from_ms: i64, by: std::time::Duration, field: &str) -> ApiResult<i64> {
    let from = jiff::Timestamp::from_millisecond(from_ms).map_err(|_| out_of_range(&format!("{from_ms} ms"), field))?;
    let end = jiff::SignedDuration::try_from(by)
        .ok()
        .and_then(|d| from.checked_add(d).ok())
        .ok_or_else(|| out_of_range(&format!("{from} plus {}", agent_os_core::format_duration(by)), field))?;
    Ok(bounded(end, field)?.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::response::Html;
    use axum::routing::get;

    /// A server with the edge's layers around test routes: one that panics, one too slow for the
    /// 200 ms limit, a long poll at the run-wait route that outlasts it, a page and some JSON.
    async fn serve(trusted: &[&str]) -> String {
        let routes = Router::new()
            .route("/panic", get(|| async { if true { panic!("a defect") } else { "" } }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route(
                "/api/v1/runs/{id}/wait",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    "waited"
                }),
            )
            .route("/page", get(|| async { Html("<p>a line of the page</p>\n".repeat(200)) }))
            .route("/json", get(|| async { axum::Json(vec!["a value"; 200]) }));
        let trusted: Vec<_> = trusted.iter().map(|t| agent_os_core::net::IpRange::parse(t).unwrap()).collect();
        let edge = Edge { request_timeout: Duration::from_millis(200), trusted_proxies: trusted.into() };
        let app = layers(routes, edge, Arc::new(HttpMetrics::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
        });
        url
    }

    async fn get_with(url: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Vec<u8>) {
        agent_os_engine::plugin::install_crypto_provider();
        let mut req = reqwest::Client::new().get(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        (status, headers, resp.bytes().await.unwrap().to_vec())
    }

    fn id_of(headers: &HeaderMap) -> &str {
        headers.get("x-request-id").and_then(|v| v.to_str().ok()).expect("every answer carries its request id")
    }

    #[tokio::test]
    async fn request_ids_are_made_here_and_kept_only_from_a_trusted_proxy() {
        let direct = serve(&[]).await;
        let (_, h, _) = get_with(&format!("{direct}/json"), &[]).await;
        assert_eq!(id_of(&h).len(), 36, "a UUID: {}", id_of(&h));
        let (_, h2, _) = get_with(&format!("{direct}/json"), &[]).await;
        assert_ne!(id_of(&h), id_of(&h2), "one id per request");
        let (_, h, _) = get_with(&format!("{direct}/json"), &[("x-request-id", "chosen-by-client")]).await;
        assert_ne!(id_of(&h), "chosen-by-client", "a client that is no proxy of ours does not pick its id");

        let proxied = serve(&["127.0.0.1"]).await;
        let (_, h, _) = get_with(&format!("{proxied}/json"), &[("x-request-id", "edge-4f2a:1.b_c")]).await;
        assert_eq!(id_of(&h), "edge-4f2a:1.b_c", "a trusted proxy's id is kept");
        for unsafe_id in ["two words", "line\tbreak", "quote\"d", &"x".repeat(65)] {
            let (_, h, _) = get_with(&format!("{proxied}/json"), &[("x-request-id", unsafe_id)]).await;
            assert_eq!(id_of(&h).len(), 36, "{unsafe_id:?} is replaced by an id of ours");
        }
    }

    #[tokio::test]
    async fn a_panic_is_a_json_500_that_names_the_request() {
        let url = serve(&[]).await;
        let (status, h, body) = get_with(&format!("{url}/panic"), &[]).await;
        assert_eq!(status, 500);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "internal", "{v}");
        assert_eq!(v["error"]["request_id"], id_of(&h), "{v}");
    }

    #[tokio::test]
    async fn a_slow_handler_is_stopped_with_a_json_503_but_a_long_poll_may_wait() {
        let url = serve(&[]).await;
        let started = std::time::Instant::now();
        let (status, h, body) = get_with(&format!("{url}/slow"), &[]).await;
        assert_eq!(status, 503);
        assert!(started.elapsed() < Duration::from_secs(10), "stopped at the limit, not when the handler ended");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "timeout", "{v}");
        assert_eq!(v["error"]["request_id"], id_of(&h), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("api.request_timeout"), "{v}");

        let (status, _, body) = get_with(&format!("{url}/api/v1/runs/r1/wait"), &[]).await;
        assert_eq!((status, body.as_slice()), (200, b"waited".as_slice()), "a long poll is held to its own bound");
    }

    #[tokio::test]
    async fn pages_are_gzipped_when_asked_and_json_never() {
        let url = serve(&[]).await;
        let (_, h, plain) = get_with(&format!("{url}/page"), &[]).await;
        assert!(h.get("content-encoding").is_none(), "not asked: not compressed");
        let (_, h, gz) = get_with(&format!("{url}/page"), &[("accept-encoding", "gzip")]).await;
        assert_eq!(h.get("content-encoding").map(|v| v.as_bytes()), Some(b"gzip".as_slice()));
        assert!(
            gz.starts_with(&[0x1f, 0x8b]) && gz.len() * 5 < plain.len(),
            "{} gzipped from {}",
            gz.len(),
            plain.len()
        );
        let (_, h, _) = get_with(&format!("{url}/page"), &[("accept-encoding", "br")]).await;
        assert!(h.get("content-encoding").is_none(), "only gzip is offered");
        let (_, h, _) = get_with(&format!("{url}/json"), &[("accept-encoding", "gzip")]).await;
        assert!(h.get("content-encoding").is_none(), "JSON answers go as they are");
    }

    #[test]
    fn nul_is_found_in_names_and_values_of_a_form() {
        assert_eq!(nul_field("a=1&type=a%00b"), Some("type".into()));
        assert_eq!(nul_field("x%00y=1"), Some("x\u{FFFD}y".into()));
        assert_eq!(nul_field("a=1&b=%2500"), None, "%25 is a literal percent sign");
        assert_eq!(nul_field("a=100%"), None);
    }

    #[test]
    fn times_past_the_year_9999_are_refused_not_overflowed() {
        let near_end = "9999-12-30T21:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond();
        assert!(after(near_end, std::time::Duration::from_secs(24 * 3600), "duration").is_err());
        assert!(after(near_end, std::time::Duration::from_secs(60), "duration").is_ok());
        assert!(after(0, std::time::Duration::from_secs(u64::MAX / 2), "duration").is_err());
        assert!(time_param("1969-12-31T23:59:59Z", "from").is_err());
        assert!(instant_param("9999-12-31", "to").is_err());
        assert!(time_param("9999-12-30T22:00:00.001Z", "to").is_err());
        let latest = time_param("9999-12-30T22:00:00Z", "to").unwrap();
        assert_eq!(jiff::Timestamp::from_millisecond(latest.as_millisecond()).ok(), Some(latest), "stored as ms");
        assert_eq!(instant_param("1970-01-02", "from").ok(), Some(86_400_000));
    }
}
