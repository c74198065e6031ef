//! The Agent OS HTTP server: the `/api/v1` JSON API (bearer-token auth, one error shape),
//! `/healthz`, Prometheus `/metrics` and the OpenAPI document at `/api/openapi.json`, which
//! is generated from the handlers' annotations. The server holds no state of its own beyond
//! request metrics; everything goes through the engine.

mod alerting;
mod auth;
mod backup;
mod badges;
mod body;
mod config;
pub mod dashboard;
mod dashboard_api;
mod edge;
mod error;
mod limit;
mod mcp;
mod metrics;
pub mod retention;
mod routes;
mod signing;
pub mod views;
pub mod workers;
mod workflows;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use utoipa::OpenApi;

use agent_os_engine::Engine;

pub use alerting::{ChannelView, IncidentView, MaintenanceView, NotificationView, ProjectHealthView};
pub use auth::Caller;
pub use badges::{BadgeState, BadgeView, ShieldsBadge};
pub use config::{ConfigReloadView, ConfigStatusView};
pub use error::{ApiError, ErrorBody, SourcePlace};
pub use routes::{
    AuditView, BudgetView, CheckView, CostGroupView, CostSummary, CostsAccepted, CreatedToken, DiscoveredEntry,
    EventView, Health, PriceView, Registered, Timeline,
};
pub use signing::SigningSecretView;
pub use workflows::{
    ApprovalView, DecideBody, EmittedEvent, WebhookAccepted, WorkflowDetail, WorkflowInputView, WorkflowLoadError,
    WorkflowRunDetail, WorkflowRunView, WorkflowStepDef, WorkflowStepView, WorkflowValid, WorkflowView,
    WorkflowsReloaded,
};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub max_body_bytes: usize,
    pub http: Arc<metrics::HttpMetrics>,
    /// Flips to true when the server shuts down, so live log streams end.
    pub closing: watch::Receiver<bool>,
    /// Recent failed dashboard logins, per client, to slow down guessing (see `limit`).
    pub login_failures: Arc<limit::FailureLimiter>,
    /// Recent inbound webhooks that did not verify, per client and workflow.
    pub webhook_failures: Arc<limit::FailureLimiter>,
    /// Proxies whose `X-Forwarded-For` names the client (`api.trusted_proxies`).
    pub trusted_proxies: Arc<[agent_os_core::net::IpRange]>,
    /// How long a handler may take to answer (`api.request_timeout`; see `edge::deadline`).
    pub request_timeout: Duration,
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub max_body_bytes: usize,
    /// Proxies whose `X-Forwarded-For` (and `X-Request-Id`) is believed; empty: the TCP peer
    /// is the client.
    pub trusted_proxies: Vec<agent_os_core::net::IpRange>,
    /// How long a handler may take to answer before it is stopped with a `503` (`timeout`);
    /// the long polls and streamed answers are bounded otherwise (`edge::LONG_POLLS`).
    pub request_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body_bytes: 1024 * 1024,
            trusted_proxies: Vec::new(),
            request_timeout: agent_os_core::config::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Agent OS API", description = "Orchestrate work across your own projects. Every /api/v1 call needs `Authorization: Bearer <token>`."),
    paths(
        routes::list_projects, routes::register_project, routes::get_project, routes::delete_project, routes::reload_project,
        signing::show_signing_secret, signing::rotate_signing_secret,
        routes::start_run, routes::list_runs, routes::get_run, routes::wait_run, routes::cancel_run, routes::run_logs,
        routes::post_costs, routes::list_costs, routes::list_schedules, routes::schedule_timeline,
        routes::pause_schedule, routes::resume_schedule, routes::run_schedule, routes::register_discovered, routes::remove_discovered, routes::forget_schedule, routes::list_checks, routes::list_events,
        routes::snooze_check, routes::unsnooze_check, routes::snooze_project, routes::unsnooze_project,
        routes::cost_summary, routes::list_prices, routes::list_budgets, routes::put_budget, routes::delete_budget, routes::resume_project, routes::project_audit,
        alerting::post_notification, alerting::list_notifications, alerting::list_channels, alerting::test_channel,
        alerting::project_health, alerting::list_incidents, alerting::get_incident, alerting::ack_incident, alerting::list_maintenance, alerting::start_maintenance, alerting::end_maintenance,
        routes::list_resources, routes::take_lease, routes::renew_lease, routes::release_lease,
        routes::create_token, routes::list_tokens, routes::revoke_token, routes::healthz, backup::backup,
        config::config_status, config::reload_config, retention::prune, retention::get_retention,
        dashboard_api::put_password, dashboard_api::delete_password,
        workflows::emit_event, workflows::list_workflows, workflows::get_workflow, workflows::reload_workflows, workflows::validate_workflow,
        workflows::start_workflow, workflows::list_workflow_runs, workflows::get_workflow_run, workflows::wait_workflow_run, workflows::cancel_workflow_run, workflows::approve_step, workflows::reject_step, workflows::receive_webhook,
        workers::hello, workers::put_project, workers::poll, workers::logs, workers::end, workers::probe, workers::list_workers,
        badges::list_badges, badges::doc_project_svg, badges::doc_project_json, badges::doc_tag_svg, badges::doc_tag_json,
    ),
    modifiers(&BearerAuth, &CommonResponses)
)]
struct ApiDoc;

/// Adds to every operation the error answers that come from the shared layers rather than
/// from its handler, so no annotation has to remember them: `401` and `403` from the
/// bearer-token check of `/api/v1` (no valid token; a project token where the admin's is
/// needed, or one naming another project), `400` from the path, query and body extractors (a
/// malformed or out-of-range value, a NUL character), `404` for an operation with a path
/// parameter (nothing by that name or id), `413`/`415` from the JSON body reader, `500` for a
/// handler's panic (caught at the edge), and `503` when the database cannot be reached, the
/// server is shutting down or the request ran past `api.request_timeout`. An operation's own
/// description of a status wins over these. The server's tests check every answer they get
/// against this document.
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in operations.into_iter().flatten() {
                let has_path_param = path.contains('{');
                let has_input = op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || op.request_body.is_some();
                let api = path.starts_with("/api/v1/");
                let mut common = Vec::new();
                // Any /api/v1 request can carry a query string the operation does not take.
                if has_input || api {
                    common.push(("400", "the request is malformed or a value is out of range; `field` names it"));
                }
                if api {
                    common.push(("401", "no bearer token, or one that is unknown, revoked or expired"));
                    common.push(("403", "the token may not do this: the admin's alone, or another project's"));
                }
                common.push((
                    "500",
                    "a defect in Agent OS stopped this request (`internal`); `request_id` names it in the log",
                ));
                common.push((
                    "503",
                    "the database is not available, or the server is shutting down (`unavailable`), or the request took longer than `api.request_timeout` and was stopped (`timeout`); try again",
                ));
                if has_path_param {
                    common.push(("404", "nothing has that name or id"));
                }
                if op.request_body.is_some() {
                    common.push(("413", "the body is larger than the server's limit"));
                    common.push(("415", "the body is not sent as `Content-Type: application/json`"));
                }
                for (status, description) in common {
                    if !op.responses.responses.contains_key(status) {
                        op.responses.responses.insert(status.to_string(), error(description).into());
                    }
                }
            }
        }
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document, as served at `/api/openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /api/openapi.json",
    )
}

async fn not_found(headers: axum::http::HeaderMap) -> axum::response::Response {
    let browser = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if browser {
        return dashboard::not_found_page();
    }
    ApiError::not_found("no such endpoint; see /api/openapi.json").into_response()
}

/// All routes, with auth on `/api/v1`, and the edge's layers (request ids, tracing, time limit,
/// compression, metrics, the error shape) around every one.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/projects", get(routes::list_projects).post(routes::register_project))
        .route("/projects/{name}", get(routes::get_project).delete(routes::delete_project))
        .route("/projects/{name}/reload", post(routes::reload_project))
        .route("/projects/{name}/signing-secret", get(signing::show_signing_secret))
        .route("/projects/{name}/signing-secret/rotate", post(signing::rotate_signing_secret))
        .route("/runs", get(routes::list_runs).post(routes::start_run))
        .route("/runs/{id}", get(routes::get_run))
        .route("/runs/{id}/wait", get(routes::wait_run))
        .route("/runs/{id}/cancel", post(routes::cancel_run))
        .route("/runs/{id}/logs", get(routes::run_logs))
        .route("/costs", get(routes::list_costs).post(routes::post_costs))
        .route("/costs/summary", get(routes::cost_summary))
        .route("/prices", get(routes::list_prices))
        .route("/budgets", get(routes::list_budgets).put(routes::put_budget))
        .route("/budgets/{id}", axum::routing::delete(routes::delete_budget))
        .route("/projects/{name}/resume", post(routes::resume_project))
        .route("/projects/{name}/audit", get(routes::project_audit))
        .route("/projects/{name}/health", get(alerting::project_health))
        .route("/schedules", get(routes::list_schedules))
        .route("/schedules/timeline", get(routes::schedule_timeline))
        .route("/schedules/{id}/pause", post(routes::pause_schedule))
        .route("/schedules/{id}/resume", post(routes::resume_schedule))
        .route("/schedules/{id}/run", post(routes::run_schedule))
        .route("/schedules/{id}", axum::routing::delete(routes::forget_schedule))
        .route("/projects/{name}/schedules", post(routes::register_discovered))
        .route("/projects/{name}/schedules/{schedule}", axum::routing::delete(routes::remove_discovered))
        .route("/checks", get(routes::list_checks))
        .route("/badges", get(badges::list_badges))
        .route("/checks/{id}/snooze", post(routes::snooze_check).delete(routes::unsnooze_check))
        .route("/projects/{name}/snooze", post(routes::snooze_project).delete(routes::unsnooze_project))
        .route("/notifications", get(alerting::list_notifications).post(alerting::post_notification))
        .route("/channels", get(alerting::list_channels))
        .route("/channels/{name}/test", post(alerting::test_channel))
        .route("/incidents", get(alerting::list_incidents))
        .route("/incidents/{id}", get(alerting::get_incident))
        .route("/incidents/{id}/ack", post(alerting::ack_incident))
        .route("/maintenance", get(alerting::list_maintenance).post(alerting::start_maintenance))
        .route("/maintenance/{id}", axum::routing::delete(alerting::end_maintenance))
        .route("/resources", get(routes::list_resources))
        .route("/resources/{name}/leases", post(routes::take_lease))
        .route("/resources/{name}/leases/{id}/renew", post(routes::renew_lease))
        .route("/resources/{name}/leases/{id}", axum::routing::delete(routes::release_lease))
        .route("/events", get(routes::list_events).post(workflows::emit_event))
        .route("/workflows", get(workflows::list_workflows))
        .route("/workflows/reload", post(workflows::reload_workflows))
        .route("/workflows/validate", post(workflows::validate_workflow))
        .route("/workflows/runs", get(workflows::list_workflow_runs))
        .route("/workflows/runs/{id}", get(workflows::get_workflow_run))
        .route("/workflows/runs/{id}/wait", get(workflows::wait_workflow_run))
        .route("/workflows/runs/{id}/cancel", post(workflows::cancel_workflow_run))
        .route("/workflows/runs/{id}/steps/{step}/approve", post(workflows::approve_step))
        .route("/workflows/runs/{id}/steps/{step}/reject", post(workflows::reject_step))
        .route("/workflows/{name}", get(workflows::get_workflow))
        .route("/workflows/{name}/runs", post(workflows::start_workflow))
        .route("/workers", get(workers::list_workers))
        .route("/config", get(config::config_status))
        .route("/config/reload", post(config::reload_config))
        .route("/backup", get(backup::backup))
        .route("/tokens", get(routes::list_tokens).post(routes::create_token))
        .route("/prune", post(retention::prune))
        .route("/retention", get(retention::get_retention))
        .route("/tokens/{id}", axum::routing::delete(routes::revoke_token))
        .route(
            "/dashboard/password",
            axum::routing::put(dashboard_api::put_password).delete(dashboard_api::delete_password),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        // The worker operations come after the layer above, so they have their own: the
        // protocol's header and a worker token.
        .merge(
            Router::new()
                .route("/worker/hello", post(workers::hello))
                .route("/worker/projects/{name}", axum::routing::put(workers::put_project))
                .route("/worker/poll", post(workers::poll))
                .route("/worker/attempts/{run_id}/{attempt}/logs", post(workers::logs))
                .route("/worker/attempts/{run_id}/{attempt}/end", post(workers::end))
                .route("/worker/probes", post(workers::probe))
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), workers::authenticate_worker)),
        );
    let routes = Router::new()
        .nest("/api/v1", api)
        .merge(dashboard::routes(state.clone()))
        .route("/healthz", get(routes::healthz))
        .route("/ping/{*parts}", get(routes::ping).head(routes::ping).post(routes::ping))
        .route("/badges/{token}/{file}", get(badges::project_badge))
        .route("/badges/{token}/tag/{file}", get(badges::tag_badge))
        .route("/hooks/{workflow}", post(workflows::receive_webhook))
        .route(
            "/metrics",
            get(metrics_endpoint).route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate)),
        )
        .route("/api/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    let edge = edge::Edge { request_timeout: state.request_timeout, trusted_proxies: state.trusted_proxies.clone() };
    // The MCP tools call the routes above in process, through the same layers as a request
    // from outside (time limit, error shape, metrics), so nothing about a call differs.
    let api = edge::layers(routes.clone(), edge.clone(), state.http.clone());
    edge::layers(routes.merge(mcp::routes(api, state.clone())), edge, state.http.clone())
}

async fn metrics_endpoint(State(st): State<AppState>, caller: Caller) -> Result<impl IntoResponse, ApiError> {
    caller.require_admin()?;
    let text = metrics::render(&st).await?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// Serves until `shutdown` resolves; then live streams end and in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    engine: Arc<Engine>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (closing_tx, closing) = watch::channel(false);
    let state = AppState {
        engine,
        max_body_bytes: opts.max_body_bytes,
        http: Arc::new(metrics::HttpMetrics::default()),
        closing,
        login_failures: Arc::new(limit::FailureLimiter::new(limit::LOGIN)),
        webhook_failures: Arc::new(limit::FailureLimiter::new(limit::WEBHOOK)),
        trusted_proxies: opts.trusted_proxies.into(),
        request_timeout: opts.request_timeout,
    };
    // The peer's address is what failures are counted by (`limit::client_of`).
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing_tx.send_replace(true);
        })
        .await
}
