//! The `/api/v1` handlers. Each one checks who may do what (admin, or a token scoped to the
//! project), calls the engine or the store, and answers with a view from `views`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use agent_os_core::RunStatus;
use agent_os_core::budget::{BudgetSource, OnExceed, Period};
use agent_os_core::check::{CheckKind, CheckState};
use agent_os_core::manifest::{ManagedBy, ScheduleSource};
use agent_os_core::resource::ResourceScope;
use agent_os_engine::costs::CostInput;
use agent_os_engine::secrets::{TokenKind, new_token, token_record};
use agent_os_engine::{Registration, RunRequest};
use agent_os_store::{CostFilter, RunFilter, RunRecord};

use crate::AppState;
use crate::auth::Caller;
use crate::body::{ApiQuery, JsonBody, OptionalJson};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::views::{self, *};

// Projects ---------------------------------------------------------------------------------

async fn project_view(st: &AppState, p: &agent_os_engine::LoadedProject) -> ApiResult<ProjectView> {
    let ctx = ScheduleContext::load(&st.engine, Some(&p.record.name)).await?;
    project_view_in(st, p, &ctx).await
}

async fn project_view_in(
    st: &AppState,
    p: &agent_os_engine::LoadedProject,
    ctx: &ScheduleContext,
) -> ApiResult<ProjectView> {
    let store = st.engine.store();
    let schedules = store.list_schedules(Some(&p.record.name)).await?;
    let probes = store.latest_probe_results(&p.record.id).await?;
    Ok(ProjectView::new(p, schedules, ctx, probes, st.engine.now()))
}

/// List projects (a project token sees only its own).
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects", responses((status = 200, body = [ProjectView]), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_projects(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ProjectView>>> {
    let mut out = Vec::new();
    let ctx = ScheduleContext::load(&st.engine, None).await?;
    for p in st.engine.projects().await? {
        if caller.project_id().is_none_or(|id| id == p.record.id) {
            out.push(project_view_in(&st, &p, &ctx).await?);
        }
    }
    Ok(Json(out))
}

/// Register a project: `path` (a directory on this machine holding `agent-os.yaml`; may use
/// the command transport) or `manifest` (a hosted project's manifest text; HTTP transport only).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    pub path: Option<String>,
    pub manifest: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Registered {
    pub project: ProjectView,
    /// The Standard Webhooks secret requests to the plugin are signed with (HTTP transport);
    /// shown here and again (admin) by `GET /api/v1/projects/{name}/signing-secret`.
    pub signing_secret: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = RegisterBody,
    responses((status = 201, body = Registered), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn register_project(
    State(st): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<RegisterBody>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    caller.require_admin()?;
    let (p, secret) = match (body.path, body.manifest) {
        (Some(path), None) => {
            if !path.starts_with('/') {
                return Err(
                    ApiError::bad_request("path must be absolute (it is read on the Agent OS machine)").field("path")
                );
            }
            st.engine.register_path(std::path::Path::new(&path)).await?
        }
        (None, Some(text)) => st.engine.register_hosted(&text).await?,
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `path` (a local project directory) or `manifest` (a hosted project's agent-os.yaml text)",
            ));
        }
    };
    let project = project_view(&st, &p).await?;
    Ok((StatusCode::CREATED, Json(Registered { project, signing_secret: secret })))
}

#[utoipa::path(get, path = "/api/v1/projects/{name}", tag = "projects", params(("name" = String, Path)), responses((status = 200, body = ProjectView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_project(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ProjectView>> {
    let p = st.engine.project(&name).await?;
    caller.require_project(&p.record)?;
    Ok(Json(project_view(&st, &p).await?))
}

#[utoipa::path(delete, path = "/api/v1/projects/{name}", tag = "projects", params(("name" = String, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_project(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    st.engine.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadBody {
    /// A hosted project's new manifest text (local projects are re-read from disk).
    pub manifest: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/projects/{name}/reload", tag = "projects", params(("name" = String, Path)), request_body(content = Option<ReloadBody>, description = "optional"), responses((status = 200, body = ProjectView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn reload_project(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<ReloadBody>,
) -> ApiResult<Json<ProjectView>> {
    caller.require_admin()?;
    let text = body.and_then(|b| b.manifest);
    let p = st.engine.reload(&name, text.as_deref()).await?;
    Ok(Json(project_view(&st, &p).await?))
}

// Runs -------------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRunBody {
    pub project: String,
    pub task: String,
    /// A JSON object handed to the task on stdin (default `{}`).
    #[schema(value_type = Object)]
    pub input: Option<Value>,
    /// Free text recorded as the run's trigger (default `api`), 1 to 64 characters.
    #[schema(min_length = 1, max_length = 64, pattern = "\\S")]
    pub trigger: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/runs", tag = "runs", request_body = StartRunBody, responses((status = 201, body = RunView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "the project is paused by its budget", body = ErrorBody), (status = 415, body = ErrorBody)), security(("bearer" = [])))]
pub async fn start_run(
    State(st): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<StartRunBody>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let p = st.engine.project(&body.project).await?;
    caller.require_project(&p.record)?;
    let trigger = body.trigger.unwrap_or_else(|| "api".into());
    crate::body::text_length("trigger", &trigger, 1, 64)?;
    let run = st
        .engine
        .start_run(RunRequest {
            project: body.project,
            task: body.task,
            input: body.input.unwrap_or_else(|| Value::Object(Default::default())),
            trigger,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(RunView::from(run))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    pub project: Option<String>,
    pub task: Option<String>,
    /// queued, running, succeeded, failed, timed_out or cancelled.
    #[param(pattern = "^(queued|running|succeeded|failed|timed_out|cancelled)$")]
    pub status: Option<String>,
    /// The `next` value of the previous page.
    pub before: Option<String>,
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

pub(crate) async fn scoped_project(st: &AppState, caller: &Caller, asked: Option<String>) -> ApiResult<Option<String>> {
    let Some(id) = caller.project_id() else { return Ok(asked) };
    let own = st
        .engine
        .store()
        .get_project_by_id(id)
        .await?
        .ok_or_else(|| ApiError::forbidden("this token's project is no longer registered"))?;
    match asked {
        Some(p) if p != own.name => {
            Err(ApiError::forbidden(format!("this token acts only for project {:?}", own.name)))
        }
        _ => Ok(Some(own.name)),
    }
}

#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunQuery), responses((status = 200, body = RunList), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_runs(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> ApiResult<Json<RunList>> {
    let status = match &q.status {
        None => None,
        Some(s) => Some(s.parse::<RunStatus>().map_err(|_| {
            ApiError::bad_request(format!(
                "unknown status {s:?}; use {}",
                agent_os_core::text::one_of(RunStatus::SPELLINGS)
            ))
            .field("status")
        })?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 500").field("limit"));
    }
    let project = scoped_project(&st, &caller, q.project).await?;
    let runs =
        st.engine.store().list_runs(&RunFilter { project, task: q.task, status, before: q.before, limit }).await?;
    let next = (runs.len() as i64 == limit).then(|| runs.last().map(|r| r.id.clone())).flatten();
    let mut views = Vec::with_capacity(runs.len());
    let mut snapshot = None;
    let now = st.engine.now();
    // Why queued runs of worker projects wait, asked once per project.
    let mut no_worker: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
    for r in runs {
        let waiting = r.status == RunStatus::Queued && !r.resources.is_empty() && r.not_before <= now;
        let (resources, id) = (r.resources.clone(), r.id.clone());
        let worker_wait = match (r.status, no_worker.get(&r.project_id)) {
            (RunStatus::Queued, Some(known)) => known.clone(),
            (RunStatus::Queued, None) => {
                let reason = st.engine.worker_wait_reason(&r).await;
                no_worker.insert(r.project_id.clone(), reason.clone());
                reason
            }
            _ => None,
        };
        let mut view = RunView::from(r);
        view.waiting = worker_wait;
        if waiting {
            if snapshot.is_none() {
                snapshot = Some(st.engine.resource_snapshot().await?);
            }
            if let Some(snap) = &snapshot {
                let limits = &st.engine.config().resources;
                let scope = run_reader(&caller, &view.project);
                view.waiting_for = Some(agent_os_engine::explain_wait(snap, limits, &resources, &id, now, &scope));
            }
        }
        views.push(view);
    }
    Ok(Json(RunList { runs: views, next }))
}

async fn visible_run(st: &AppState, caller: &Caller, id: &str) -> ApiResult<RunRecord> {
    let run =
        st.engine.store().get_run(id).await?.ok_or_else(|| ApiError::not_found(format!("run {id:?} not found")))?;
    if caller.project_id().is_some_and(|p| p != run.project_id) {
        // Do not tell a scoped token which run ids exist elsewhere.
        return Err(ApiError::not_found(format!("run {id:?} not found")));
    }
    Ok(run)
}

/// How a run's wait reason may name the holders ahead of it: in full for the admin, otherwise
/// as the run's own project (the only one a scoped token can read runs of) may see them.
fn run_reader(caller: &Caller, run_project: &str) -> ResourceScope {
    if caller.is_admin() { ResourceScope::Admin } else { ResourceScope::Project(run_project.to_string()) }
}

async fn with_attempts(st: &AppState, caller: &Caller, run: RunRecord) -> ApiResult<RunView> {
    let attempts = st.engine.store().list_attempts(&run.id).await?;
    let waiting_for = st.engine.run_wait_reason(&run, &run_reader(caller, &run.project)).await;
    let waiting = st.engine.worker_wait_reason(&run).await;
    let mut view = RunView::from(run);
    view.waiting_for = waiting_for;
    view.waiting = waiting;
    view.attempts = attempts.into_iter().map(AttemptView::from).collect();
    Ok(view)
}

#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", params(("id" = String, Path)), responses((status = 200, body = RunView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_run(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<RunView>> {
    let run = visible_run(&st, &caller, &id).await?;
    Ok(Json(with_attempts(&st, &caller, run).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// How long to wait for the run to end, e.g. `30s` or `1m30s` (default 30s; a longer wait
    /// is held to 5m).
    #[param(pattern = "^([0-9]{1,4}(ms|s|m|h|d))+$", max_length = 16)]
    pub timeout: Option<String>,
}

/// A wait's `timeout` (default 30s), held to at most 5 minutes.
pub(crate) fn wait_timeout(timeout: Option<&str>) -> Result<Duration, ApiError> {
    let timeout = match timeout {
        None => Duration::from_secs(30),
        Some(t) => agent_os_core::parse_duration(t).map_err(|e| ApiError::bad_request(e).field("timeout"))?,
    };
    Ok(timeout.min(Duration::from_secs(300)))
}

#[utoipa::path(get, path = "/api/v1/runs/{id}/wait", tag = "runs", params(("id" = String, Path), WaitQuery), responses((status = 200, description = "The run, ended or not (check status)", body = RunView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn wait_run(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<RunView>> {
    visible_run(&st, &caller, &id).await?;
    let run = st.engine.wait_run(&id, wait_timeout(q.timeout.as_deref())?).await?;
    Ok(Json(with_attempts(&st, &caller, run).await?))
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs", params(("id" = String, Path)), responses((status = 200, body = RunView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn cancel_run(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    visible_run(&st, &caller, &id).await?;
    Ok(Json(RunView::from(st.engine.cancel_run(&id).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Only chunks after this sequence number (default 0).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// At most this many chunks, 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

/// A run's log. With `Accept: text/event-stream` it is a live tail: `log` events (one per
/// chunk, `id` = sequence number, resumable with `Last-Event-ID`) and a final `end` event
/// carrying the run.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", tag = "runs", params(("id" = String, Path), LogQuery), responses((status = 200, body = LogView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn run_logs(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let run = visible_run(&st, &caller, &id).await?;
    let wants_sse =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    let mut after = q.after.unwrap_or(0);
    if wants_sse {
        if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()) {
            after = last;
        }
        return Ok(log_stream(st, id, after).into_response());
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 10000").field("limit"));
    }
    if after < 0 {
        return Err(ApiError::bad_request("after must not be negative").field("after"));
    }
    let chunks = st.engine.store().read_log(&id, after, limit).await?;
    let next_after = chunks.last().map_or(after, |c| c.seq);
    let finished = run.status.is_terminal();
    Ok(Json(LogView {
        run_id: id,
        chunks: chunks.into_iter().map(LogChunkView::from).collect(),
        dropped_bytes: run.log_dropped,
        next_after,
        finished,
    })
    .into_response())
}

fn log_stream(
    st: AppState,
    id: String,
    after: i64,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    struct S {
        st: AppState,
        id: String,
        after: i64,
        queue: VecDeque<Event>,
        done: bool,
        logs: tokio::sync::watch::Receiver<u64>,
        runs: tokio::sync::watch::Receiver<u64>,
        closing: tokio::sync::watch::Receiver<bool>,
    }
    let s = S {
        logs: st.engine.subscribe_logs(),
        runs: st.engine.subscribe_runs(),
        closing: st.closing.clone(),
        st,
        id,
        after,
        queue: VecDeque::new(),
        done: false,
    };
    let stream = futures_util::stream::unfold(s, |mut s| async move {
        loop {
            if let Some(ev) = s.queue.pop_front() {
                return Some((Ok(ev), s));
            }
            if s.done || *s.closing.borrow() {
                return None;
            }
            s.logs.borrow_and_update();
            s.runs.borrow_and_update();
            let store = s.st.engine.store();
            match store.read_log(&s.id, s.after, 500).await {
                Ok(chunks) if !chunks.is_empty() => {
                    for c in chunks {
                        s.after = c.seq;
                        let seq = c.seq;
                        let data = serde_json::to_string(&LogChunkView::from(c)).unwrap_or_default();
                        s.queue.push_back(Event::default().event("log").id(seq.to_string()).data(data));
                    }
                    continue;
                }
                Ok(_) => {}
                Err(_) => return None,
            }
            match store.get_run(&s.id).await {
                Ok(Some(run)) if run.status.is_terminal() => {
                    let data = serde_json::to_string(&RunView::from(run)).unwrap_or_default();
                    s.queue.push_back(Event::default().event("end").data(data));
                    s.done = true;
                    continue;
                }
                Ok(Some(_)) => {}
                _ => return None,
            }
            tokio::select! {
                _ = s.logs.changed() => {}
                _ = s.runs.changed() => {}
                _ = s.closing.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

// Costs ------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CostsAccepted {
    /// Records stored now.
    pub accepted: i64,
    /// Records whose idempotency key was already stored (not counted again).
    pub duplicates: i64,
    /// Records of this request whose model has no price: stored with their tokens, counted in
    /// no total until config.yaml's `prices:` names the model.
    pub unpriced: i64,
}

/// Report costs: one record, or `{"records": [...]}` (1 to 1000, all or nothing). A project
/// or run token reports for its own project (a run token also ties the cost to its run); the
/// admin token must name `project` in each record.
#[utoipa::path(post, path = "/api/v1/costs", tag = "costs", request_body(content = Object, description = "a cost record or {records: [...]}; see docs/plugin-protocol.md"), responses((status = 201, body = CostsAccepted), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn post_costs(
    State(st): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<CostsAccepted>)> {
    let (items, batch) = match body {
        Value::Object(mut o) if o.contains_key("records") => {
            if o.len() > 1 {
                let extra = o.keys().find(|k| *k != "records").cloned().unwrap_or_default();
                return Err(ApiError::bad_request(format!("unknown field {extra:?} next to records")).field(extra));
            }
            match o.remove("records") {
                Some(Value::Array(items)) => (items, true),
                _ => return Err(ApiError::bad_request("records must be a list").field("records")),
            }
        }
        v @ Value::Object(_) => (vec![v], false),
        _ => return Err(ApiError::bad_request("send a cost record object or {\"records\": [...]}")),
    };
    if items.is_empty() || items.len() > 1000 {
        return Err(ApiError::bad_request("a batch holds 1 to 1000 records").field("records"));
    }
    let mut inputs: Vec<CostInput> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let prefix = if batch { format!("records[{i}].") } else { String::new() };
        let input: CostInput = serde_json::from_value(item)
            .map_err(|e| ApiError::bad_request(format!("{prefix}: {e}").trim_start_matches(": ").to_string()))?;
        if let Some(extra) = input.extra.keys().next() {
            return Err(ApiError::bad_request(format!("unknown field {extra:?}")).field(format!("{prefix}{extra}")));
        }
        inputs.push(input);
    }
    let project = match caller.project_id() {
        Some(id) => {
            let own = st
                .engine
                .store()
                .get_project_by_id(id)
                .await?
                .ok_or_else(|| ApiError::forbidden("this token's project is no longer registered"))?
                .name;
            if let Some(other) = inputs.iter().filter_map(|i| i.project.as_deref()).find(|p| *p != own) {
                return Err(ApiError::forbidden(format!(
                    "this token reports costs only for project {own:?}, not {other:?}"
                )));
            }
            own
        }
        None => {
            let names: Vec<Option<String>> = inputs.iter().map(|i| i.project.clone()).collect();
            match names.first().cloned().flatten() {
                Some(first) if names.iter().all(|n| n.as_deref() == Some(first.as_str())) => first,
                _ => {
                    return Err(ApiError::bad_request("with the admin token every record names the same `project`")
                        .field("project"));
                }
            }
        }
    };
    let counted = st.engine.record_costs(&project, caller.run_id(), &inputs, batch).await?;
    Ok((
        StatusCode::CREATED,
        Json(CostsAccepted { accepted: counted.accepted, duplicates: counted.duplicates, unpriced: counted.unpriced }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CostQuery {
    pub project: Option<String>,
    pub run: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/costs", tag = "costs", params(CostQuery), responses((status = 200, body = [CostView])), security(("bearer" = [])))]
pub async fn list_costs(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CostQuery>,
) -> ApiResult<Json<Vec<CostView>>> {
    let project = scoped_project(&st, &caller, q.project).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000").field("limit"));
    }
    let costs = st.engine.store().list_costs(&CostFilter { project, run_id: q.run, limit }).await?;
    Ok(Json(costs.into_iter().map(CostView::from).collect()))
}

// Schedules --------------------------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ScheduleQuery {
    pub project: Option<String>,
}

/// Every schedule of every project, managed and external.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules", params(ScheduleQuery), responses((status = 200, body = [ScheduleView])), security(("bearer" = [])))]
pub async fn list_schedules(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ScheduleQuery>,
) -> ApiResult<Json<Vec<ScheduleView>>> {
    let project = scoped_project(&st, &caller, q.project).await?;
    let s = st.engine.store().list_schedules(project.as_deref()).await?;
    let ctx = ScheduleContext::load(&st.engine, project.as_deref()).await?;
    let now = st.engine.now();
    Ok(Json(s.into_iter().map(|s| ScheduleView::new(s, &ctx, now, 3)).collect()))
}

/// The schedule behind `id` (or `project/task`), if the caller may act on its project.
async fn schedule_for(st: &AppState, caller: &Caller, id: &str) -> ApiResult<agent_os_engine::ScheduleRef> {
    let s = st.engine.find_schedule(id).await?;
    let p = st.engine.project(&s.record.project).await?;
    caller.require_project(&p.record)?;
    Ok(s)
}

async fn schedule_view(st: &AppState, s: agent_os_engine::ScheduleRef) -> ApiResult<ScheduleView> {
    let ctx = ScheduleContext::load(&st.engine, Some(&s.record.project)).await?;
    Ok(ScheduleView::new(s.record, &ctx, st.engine.now(), 3))
}

/// Pause a schedule Agent OS fires: its slots pass without runs until it is resumed.
#[utoipa::path(post, path = "/api/v1/schedules/{id}/pause", tag = "schedules", params(("id" = String, Path, description = "The schedule's id, or PROJECT/TASK when the task has one schedule")), responses((status = 200, body = ScheduleView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn pause_schedule(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    schedule_for(&st, &caller, &id).await?;
    let s = st.engine.pause_schedule(&id, true).await?;
    Ok(Json(schedule_view(&st, s).await?))
}

/// Resume a paused schedule. Slots that passed while it was paused are not caught up.
#[utoipa::path(post, path = "/api/v1/schedules/{id}/resume", tag = "schedules", params(("id" = String, Path)), responses((status = 200, body = ScheduleView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn resume_schedule(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    schedule_for(&st, &caller, &id).await?;
    let s = st.engine.pause_schedule(&id, false).await?;
    Ok(Json(schedule_view(&st, s).await?))
}

/// Run a schedule's task now ("run now"): uses up no slot; with `overlap: queue` or `replace`
/// it waits for a run of the schedule still going.
#[utoipa::path(post, path = "/api/v1/schedules/{id}/run", tag = "schedules", params(("id" = String, Path)), responses((status = 201, body = RunView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "the project is paused by its budget", body = ErrorBody)), security(("bearer" = [])))]
pub async fn run_schedule(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    schedule_for(&st, &caller, &id).await?;
    let run = st.engine.run_schedule_now(&id, "manual").await?;
    Ok((StatusCode::CREATED, Json(RunView::from(run))))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredBody {
    /// 1 to 500 schedules.
    #[schema(min_items = 1, max_items = 500)]
    pub schedules: Vec<DiscoveredEntry>,
}

/// A schedule found by `agent-os schedules discover`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredEntry {
    /// Its name within the project; also the slug of the check that watches it.
    #[schema(min_length = 1, max_length = 63)]
    pub name: String,
    pub cron: String,
    /// IANA zone (default UTC).
    pub timezone: Option<String>,
    /// `cron`, `launchd`, `systemd`, `railway` or `github`.
    #[schema(pattern = "^(cron|launchd|systemd|railway|github)$")]
    pub managed_by: String,
    /// What it runs and where it was found.
    #[serde(default)]
    pub description: String,
    /// The command the job runs: a job that runs a manifest task's command on the manifest's
    /// cron is recognised as that schedule instead of registered beside it.
    #[serde(default)]
    pub command: Option<String>,
    /// `true` when the job's file names no zone (crontab, launchd): it follows its machine's
    /// clock, so the manifest's zone is taken as its own when recognising it.
    #[serde(default)]
    pub zone_from_machine: bool,
}

/// Register schedules a project keeps elsewhere (found by discovery) without editing its
/// manifest: each gets a check with ping URLs. All or none; a name registered again is
/// replaced. They survive manifest reloads. One schedule object per entry, in order: the
/// registered one, or the manifest's schedule that the entry was recognised as.
#[utoipa::path(post, path = "/api/v1/projects/{name}/schedules", tag = "schedules", params(("name" = String, Path)), request_body = DiscoveredBody, responses((status = 201, body = [ScheduleView]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn register_discovered(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<DiscoveredBody>,
) -> ApiResult<(StatusCode, Json<Vec<ScheduleView>>)> {
    let p = st.engine.project(&name).await?;
    caller.require_project(&p.record)?;
    let found: Vec<agent_os_engine::DiscoveredSchedule> = body
        .schedules
        .into_iter()
        .map(|e| agent_os_engine::DiscoveredSchedule {
            name: e.name,
            cron: e.cron,
            timezone: e.timezone,
            managed_by: e.managed_by,
            description: e.description,
            command: e.command,
            zone_from_machine: e.zone_from_machine,
        })
        .collect();
    let outcome = st.engine.register_discovered(&name, &found).await?;
    let ctx = ScheduleContext::load(&st.engine, Some(&name)).await?;
    let now = st.engine.now();
    let schedules = st.engine.store().list_schedules(Some(&name)).await?;
    let views = outcome
        .iter()
        .filter_map(|done| {
            schedules.iter().find(|s| match done {
                Registration::Registered(n) => s.source == ScheduleSource::Discovered && &s.task == n,
                Registration::InManifest { task, cron, timezone } => {
                    s.source == ScheduleSource::Manifest
                        && &s.task == task
                        && &s.cron == cron
                        && &s.timezone == timezone
                }
            })
        })
        .map(|s| ScheduleView::new(s.clone(), &ctx, now, 3))
        .collect();
    Ok((StatusCode::CREATED, Json(views)))
}

/// Remove a registered discovered schedule and its check, named by its id or PROJECT/NAME
/// (URL-encoded), as pause and resume name schedules.
#[utoipa::path(delete, path = "/api/v1/schedules/{id}", tag = "schedules", params(("id" = String, Path, description = "The schedule's id, or PROJECT/NAME")), responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn forget_schedule(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    schedule_for(&st, &caller, &id).await?;
    st.engine.forget_schedule(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a registered discovered schedule and its check.
#[utoipa::path(delete, path = "/api/v1/projects/{name}/schedules/{schedule}", tag = "schedules", params(("name" = String, Path), ("schedule" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_discovered(
    State(st): State<AppState>,
    caller: Caller,
    Path((name, schedule)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let p = st.engine.project(&name).await?;
    caller.require_project(&p.record)?;
    st.engine.remove_discovered(&name, &schedule).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    /// Start of the window (RFC 3339, 1970-01-01T00:00:00Z to 9999-12-30T22:00:00Z; default now).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End of the window (RFC 3339; default 24 h after `from`; at most 31 days after it).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Fires of different projects this close together that share a service are flagged
    /// (e.g. `5m`, the default; at most `1d`).
    pub window: Option<String>,
    pub project: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct FireView {
    /// RFC 3339 with the schedule zone's offset.
    pub at: String,
    pub project: String,
    pub task: String,
    pub cron: String,
    pub timezone: String,
    #[schema(value_type = String)]
    pub managed_by: ManagedBy,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct CollisionView {
    /// The service both projects use (from their declared keys), or `resource NAME` when both
    /// tasks hold the same named resource; one collision names all the fires share
    /// (`openai (service and resource)`).
    pub service: String,
    /// Indices into `fires`.
    pub fires: Vec<usize>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct Timeline {
    pub from: String,
    pub to: String,
    pub fires: Vec<FireView>,
    pub collisions: Vec<CollisionView>,
    /// True when the window held more than 10000 fires and the list was cut.
    pub truncated: bool,
}

/// Every fire of every schedule in a window, managed and external, in time order, with the
/// collisions among them.
#[utoipa::path(get, path = "/api/v1/schedules/timeline", tag = "schedules", params(TimelineQuery), responses((status = 200, body = Timeline), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn schedule_timeline(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TimelineQuery>,
) -> ApiResult<Json<Timeline>> {
    const MAX_FIRES: usize = 10_000;
    let project = scoped_project(&st, &caller, q.project).await?;
    let from = match &q.from {
        Some(t) => crate::edge::time_param(t, "from")?,
        None => crate::edge::bounded(jiff::Timestamp::from_millisecond(st.engine.now()).unwrap_or_default(), "from")?,
    };
    // Near the end of time the default window ends there, rather than past it.
    let to = match &q.to {
        Some(t) => crate::edge::time_param(t, "to")?,
        None => from
            .checked_add(jiff::SignedDuration::from_hours(24))
            .unwrap_or(crate::edge::LATEST)
            .min(crate::edge::LATEST),
    };
    if to <= from || to.duration_since(from) > jiff::SignedDuration::from_hours(31 * 24) {
        return Err(ApiError::bad_request("`to` must be after `from` and at most 31 days later").field("to"));
    }
    let window = match &q.window {
        None => 300_000,
        Some(w) => {
            let d = agent_os_core::parse_duration(w).map_err(|e| ApiError::bad_request(e).field("window"))?;
            if d > std::time::Duration::from_secs(24 * 3600) {
                return Err(
                    ApiError::bad_request(format!("window {w:?} is longer than 1d; give at most 1d")).field("window")
                );
            }
            d.as_millis() as i64
        }
    };
    // What each (project, task) shares with others: its project's declared services, and the
    // named resources the task holds.
    let mut services: std::collections::HashMap<(String, String), Vec<String>> = Default::default();
    let mut project_services: std::collections::HashMap<String, Vec<String>> = Default::default();
    for p in st.engine.projects().await? {
        let declared: Vec<String> = p.manifest.keys.iter().map(|k| k.service.clone()).collect();
        for t in p.manifest.tasks.values() {
            let mut all = declared.clone();
            all.extend(t.resources.iter().map(|r| format!("resource {r}")));
            services.insert((p.record.name.clone(), t.name.clone()), all);
        }
        project_services.insert(p.record.name.clone(), declared);
    }
    let mut fires: Vec<(agent_os_core::timeline::Fire, FireView)> = Vec::new();
    let mut truncated = false;
    for s in st.engine.store().list_schedules(project.as_deref()).await? {
        let (Ok(cron), Ok(tz)) = (agent_os_core::cron::Cron::parse(&s.cron), agent_os_core::cron::zone(&s.timezone))
        else {
            continue;
        };
        // Fires at `from` itself count; `from` is never the earliest instant jiff knows.
        let mut t = from.checked_sub(jiff::SignedDuration::from_nanos(1)).unwrap_or(from);
        while let Some(next) = cron.next_after(&tz, t) {
            if next >= to {
                break;
            }
            if fires.len() >= MAX_FIRES {
                truncated = true;
                break;
            }
            let fire = agent_os_core::timeline::Fire {
                at: next.as_millisecond(),
                project: s.project.clone(),
                task: s.task.clone(),
                services: services
                    .get(&(s.project.clone(), s.task.clone()))
                    .or_else(|| project_services.get(&s.project))
                    .cloned()
                    .unwrap_or_default(),
            };
            let view = FireView {
                at: next.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                project: s.project.clone(),
                task: s.task.clone(),
                cron: s.cron.clone(),
                timezone: s.timezone.clone(),
                managed_by: s.managed_by,
            };
            fires.push((fire, view));
            t = next;
        }
    }
    fires.sort_by(|a, b| (a.0.at, &a.0.project, &a.0.task).cmp(&(b.0.at, &b.0.project, &b.0.task)));
    let plain: Vec<agent_os_core::timeline::Fire> = fires.iter().map(|f| f.0.clone()).collect();
    let collisions = agent_os_core::timeline::collisions(&plain, window)
        .into_iter()
        .map(|c| CollisionView { service: c.service, fires: c.fires })
        .collect();
    Ok(Json(Timeline {
        from: views::time(from.as_millisecond()),
        to: views::time(to.as_millisecond()),
        fires: fires.into_iter().map(|f| f.1).collect(),
        collisions,
        truncated,
    }))
}

// Checks, pings and events ------------------------------------------------------------------

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct CheckView {
    pub id: String,
    pub project: String,
    pub slug: String,
    /// `new`, `up`, `late` or `down`.
    #[schema(value_type = String)]
    pub state: CheckState,
    /// `period` or `cron`.
    #[schema(value_type = String)]
    pub kind: CheckKind,
    pub period_ms: Option<i64>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub grace_ms: i64,
    /// A start ping is expected within this long of each due time; without one the check is late.
    pub start_grace_ms: Option<i64>,
    /// A success sooner than this after its start counts as a failure.
    pub min_duration_ms: Option<i64>,
    /// A run going longer than this after its start is late, then down after the grace time.
    pub max_duration_ms: Option<i64>,
    /// More success pings than `count` within `within_ms` opens a warning incident.
    pub max_pings: Option<MaxPingsView>,
    pub description: String,
    /// Labels grouping checks across projects (`tags:` in the manifest), in the order written.
    pub tags: Vec<String>,
    /// Where the job pings: append `/start`, `/fail`, `/<exit status>` or `/log` as needed.
    pub ping_url: String,
    /// The same by project ping key and slug.
    pub slug_url: Option<String>,
    pub last_ping_at: Option<String>,
    pub last_duration_ms: Option<i64>,
    pub running_since: Option<String>,
    pub state_changed_at: Option<String>,
    /// Checks upstream of this one (`slug` or `project/slug`).
    pub depends_on: Vec<String>,
    /// Why its late/down alert is held, not paged: `PROJECT/SLUG` of a late or down upstream
    /// (it is listed under that check's incident), or `snooze`.
    pub held_by: Option<String>,
    /// Its alerts are quiet until then: its own snooze or its project's, whichever ends later.
    pub snoozed_until: Option<String>,
    pub snooze_reason: Option<String>,
    pub snoozed_by: Option<String>,
    /// Whether the snooze in force is the project's (`agent-os projects snooze`).
    pub project_snoozed: bool,
}

/// A check's `max_pings`: at most `count` success pings within `within_ms`.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct MaxPingsView {
    pub count: i64,
    pub within_ms: i64,
}

fn check_view(
    st: &AppState,
    projects: &std::collections::HashMap<String, agent_os_store::Snooze>,
    c: agent_os_store::CheckRecord,
) -> CheckView {
    let base = st.engine.config().public_url.trim_end_matches('/').to_string();
    let snooze = views::check_snooze(&c, projects, st.engine.now()).cloned();
    let project_snoozed = snooze.is_some()
        && snooze != agent_os_engine::engine::holds::active(c.snooze.as_ref(), st.engine.now()).cloned();
    CheckView {
        depends_on: c.depends_on.clone(),
        held_by: c.held_by.clone(),
        snoozed_until: snooze.as_ref().map(|s| views::time(s.until)),
        snooze_reason: snooze.as_ref().and_then(|s| s.reason.clone()),
        snoozed_by: snooze.as_ref().and_then(|s| s.by.clone()),
        project_snoozed,
        ping_url: format!("{base}/ping/{}", c.id),
        slug_url: c.ping_key.as_ref().map(|k| format!("{base}/ping/{k}/{}", c.slug)),
        id: c.id,
        project: c.project,
        slug: c.slug,
        state: c.state,
        kind: c.kind,
        period_ms: c.period_ms,
        cron: c.cron,
        timezone: c.timezone,
        grace_ms: c.grace_ms,
        start_grace_ms: c.start_grace_ms,
        min_duration_ms: c.min_duration_ms,
        max_duration_ms: c.max_duration_ms,
        max_pings: c.max_pings.map(|(count, within_ms)| MaxPingsView { count, within_ms }),
        description: c.description,
        tags: c.tags,
        last_ping_at: c.last_ping_at.map(views::time),
        last_duration_ms: c.last_duration_ms,
        running_since: c.running_since.map(views::time),
        state_changed_at: c.state_changed_at.map(views::time),
    }
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    /// Only this project's checks.
    pub project: Option<String>,
    /// Only the checks carrying this tag, e.g. `nightly`.
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,31}$")]
    pub tag: Option<String>,
}

/// Every heartbeat check, with its ping URLs, tags and state.
#[utoipa::path(get, path = "/api/v1/checks", tag = "checks", params(CheckQuery), responses((status = 200, body = [CheckView])), security(("bearer" = [])))]
pub async fn list_checks(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CheckQuery>,
) -> ApiResult<Json<Vec<CheckView>>> {
    let project = scoped_project(&st, &caller, q.project).await?;
    let store = st.engine.store();
    let checks = match &q.tag {
        Some(tag) => {
            agent_os_core::name::check_tag(tag).map_err(|e| {
                ApiError::bad_request(format!("{e}; a tag is 1 to 32 of a-z, 0-9, '_' and '-', e.g. nightly"))
                    .field("tag")
            })?;
            store.list_tagged_checks(tag, project.as_deref()).await?
        }
        None => store.list_checks(project.as_deref()).await?,
    };
    let snoozes = st.engine.project_snoozes().await?;
    Ok(Json(checks.into_iter().map(|c| check_view(&st, &snoozes, c)).collect()))
}

/// How long a snooze lasts, and why.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnoozeBody {
    /// A duration from now (`2h`, `1d`) or an RFC 3339 time; in the future, at most 90 days away.
    pub until: String,
    /// Shown wherever the snooze is (at most 500 bytes).
    pub reason: Option<String>,
}

/// Snooze a check (by id) until a time: its late and down states are still evaluated and shown,
/// but open no incident until then; if it is still late or down when the snooze ends, it pages
/// then.
#[utoipa::path(post, path = "/api/v1/checks/{id}/snooze", tag = "checks", params(("id" = String, Path, description = "the check's id")), request_body = SnoozeBody, responses((status = 200, body = CheckView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn snooze_check(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<SnoozeBody>,
) -> ApiResult<Json<CheckView>> {
    let c = st.engine.find_check(&id).await?;
    may_act_for_project(&st, &caller, &c.project).await?;
    let until = st.engine.snooze_until(&b.until)?;
    let c = st.engine.snooze_check(&c.id, until, b.reason, Some(caller.label())).await?;
    let snoozes = st.engine.project_snoozes().await?;
    Ok(Json(check_view(&st, &snoozes, c)))
}

/// End a check's snooze now: if it is late or down, it pages at once.
#[utoipa::path(delete, path = "/api/v1/checks/{id}/snooze", tag = "checks", params(("id" = String, Path, description = "the check's id")), responses((status = 200, body = CheckView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn unsnooze_check(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<CheckView>> {
    let c = st.engine.find_check(&id).await?;
    may_act_for_project(&st, &caller, &c.project).await?;
    let c = st.engine.unsnooze_check(&c.id).await?;
    let snoozes = st.engine.project_snoozes().await?;
    Ok(Json(check_view(&st, &snoozes, c)))
}

/// Snooze a project until a time: no check of it opens an incident (late, down, pinged too
/// often) until then; runs, health and budgets still alert.
#[utoipa::path(post, path = "/api/v1/projects/{name}/snooze", tag = "projects", params(("name" = String, Path)), request_body = SnoozeBody, responses((status = 200, body = ProjectView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn snooze_project(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<SnoozeBody>,
) -> ApiResult<Json<ProjectView>> {
    may_act_for_project(&st, &caller, &name).await?;
    let until = st.engine.snooze_until(&b.until)?;
    st.engine.snooze_project(&name, until, b.reason, Some(caller.label())).await?;
    let p = st.engine.project(&name).await?;
    Ok(Json(project_view(&st, &p).await?))
}

/// End a project's snooze now.
#[utoipa::path(delete, path = "/api/v1/projects/{name}/snooze", tag = "projects", params(("name" = String, Path)), responses((status = 200, body = ProjectView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn unsnooze_project(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ProjectView>> {
    may_act_for_project(&st, &caller, &name).await?;
    st.engine.unsnooze_project(&name).await?;
    let p = st.engine.project(&name).await?;
    Ok(Json(project_view(&st, &p).await?))
}

/// The admin, or a token of the project itself.
async fn may_act_for_project(st: &AppState, caller: &Caller, project: &str) -> ApiResult<()> {
    if caller.is_admin() {
        return Ok(());
    }
    let p = st.engine.project(project).await?;
    caller.require_project(&p.record)
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct EventView {
    pub id: String,
    /// e.g. `check.down`.
    #[serde(rename = "type")]
    pub kind: String,
    pub project: Option<String>,
    pub subject: Option<String>,
    #[schema(value_type = Object)]
    pub data: Value,
    pub at: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only types starting with this, e.g. `check.`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Only this project's events.
    pub project: Option<String>,
    /// The id of the last event of the previous page: only older events come back.
    pub before: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Stored events, newest first (a project token sees its own project's); page with `before`,
/// the id of the last event seen.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventQuery), responses((status = 200, body = [EventView])), security(("bearer" = [])))]
pub async fn list_events(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<Vec<EventView>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000").field("limit"));
    }
    let project = scoped_project(&st, &caller, q.project).await?;
    let events =
        st.engine.store().list_events(q.kind.as_deref(), project.as_deref(), q.before.as_deref(), limit).await?;
    Ok(Json(
        events
            .into_iter()
            .map(|e| EventView {
                id: e.id,
                kind: e.kind,
                project: e.project,
                subject: e.subject,
                data: serde_json::from_str(&e.data).unwrap_or(Value::Null),
                at: views::time(e.at),
            })
            .collect(),
    ))
}

/// Healthchecks-compatible ping: `/ping/<check id>[/start|/fail|/log|/<0-255>]` or
/// `/ping/<project ping key>/<slug>[/…]`, by GET, HEAD or POST, no token (the URL is the
/// secret). The body (up to 100 KB) is kept as the ping's log; `?rid=` pairs start and finish.
pub async fn ping(
    State(st): State<AppState>,
    Path(path): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let parts: Vec<String> = path.split('/').filter(|p| !p.is_empty()).map(str::to_string).collect();
    use agent_os_core::check::PingKind;
    use agent_os_engine::engine::monitor::PingTarget;
    let plain = |status: StatusCode, text: &'static str| {
        let mut resp = (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response();
        resp.extensions_mut().insert(crate::edge::PlainText);
        resp
    };
    let param = |name: &str| {
        uri.query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=').map(str::to_string)))
    };
    let rid = param("rid").filter(|r| !r.is_empty() && r.len() <= 200);
    // `ts`: when the job says the ping happened, in Unix seconds (a fraction allowed). A value
    // that is not a time is ignored, as Healthchecks ignores unknown parameters.
    let sent_at = param("ts")
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t >= 0.0 && *t < 1e11)
        .map(|t| (t * 1000.0) as i64);
    let is_id = |s: &str| agent_os_core::id::looks_like_id(s) && s.contains('-');
    let (target, action) = match parts.as_slice() {
        [id] if is_id(id) => (PingTarget::Id(id), ""),
        [id, action] if is_id(id) => (PingTarget::Id(id), action.as_str()),
        [key, slug] => (PingTarget::Slug { ping_key: key, slug }, ""),
        [key, slug, action] => (PingTarget::Slug { ping_key: key, slug }, action.as_str()),
        _ => return plain(StatusCode::NOT_FOUND, "not found"),
    };
    let Some(kind) = PingKind::parse(action) else { return plain(StatusCode::NOT_FOUND, "not found") };
    let text = (!body.is_empty()).then(|| {
        // A log is kept as readable text: bytes that are not UTF-8, and NUL (which PostgreSQL
        // cannot store), become U+FFFD rather than cost the ping.
        String::from_utf8_lossy(&body[..body.len().min(agent_os_engine::engine::monitor::MAX_PING_BODY)])
            .replace('\0', "\u{FFFD}")
    });
    let remote = headers.get("user-agent").and_then(|v| v.to_str().ok()).map(|v| v.chars().take(200).collect());
    match st.engine.ping(target, kind, rid, text, remote, sent_at).await {
        Ok(_) => plain(StatusCode::OK, "OK"),
        Err(agent_os_engine::EngineError::NotFound(_)) => plain(StatusCode::NOT_FOUND, "not found"),
        Err(e) => {
            tracing::warn!(error = %e, "ping not stored");
            plain(StatusCode::SERVICE_UNAVAILABLE, "try again")
        }
    }
}

// Tokens -----------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    /// The project a project token acts for (required for one, refused for the other kinds).
    pub project: Option<String>,
    /// A label, e.g. `railway-cron`, at most 100 characters.
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// `project` (default), `admin` (acts for everything, as the first admin token does) or
    /// `worker` (for `agent-os worker`: only the worker operations, for `projects`).
    #[schema(pattern = "^(project|admin|worker)$")]
    pub kind: Option<String>,
    /// The projects a worker token may serve (required for one, 1 to 100 names; they need not
    /// be registered yet). Refused for the other kinds.
    #[serde(default)]
    pub projects: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub id: String,
    /// The token itself; shown only here, once (Agent OS stores only its hash).
    pub token: String,
    /// `project` or `admin`.
    #[serde(default = "project_kind")]
    #[schema(value_type = String)]
    pub kind: TokenKind,
    /// The project a project token acts for; none for the other kinds.
    pub project: Option<String>,
    /// The projects a worker token may serve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<String>,
    pub name: String,
}

fn project_kind() -> TokenKind {
    TokenKind::Project
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateTokenBody, responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_token(
    State(st): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateTokenBody>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    caller.require_admin()?;
    let name = body.name.unwrap_or_default();
    crate::body::text_length("name", &name, 0, 100)?;
    let kind = match body.kind.as_deref() {
        None => TokenKind::Project,
        // Run tokens are made for an attempt, never asked for.
        Some(k) => k.parse().ok().filter(|k| *k != TokenKind::Run).ok_or_else(|| {
            ApiError::bad_request(format!("kind is project, admin or worker, not {k:?}")).field("kind")
        })?,
    };
    if kind == TokenKind::Worker {
        return create_worker_token(&st, name, body.project, body.projects).await;
    }
    if body.projects.is_some() {
        return Err(ApiError::bad_request(
            "projects is for worker tokens (kind: worker); a project token names its one project in `project`",
        )
        .field("projects"));
    }
    let (kind, project) = match (kind, body.project) {
        (TokenKind::Project, Some(p)) => {
            let p = st.engine.project(&p).await?;
            (TokenKind::Project, Some((p.record.id.clone(), p.record.name.clone())))
        }
        (TokenKind::Project, None) => {
            return Err(ApiError::bad_request("a project token needs the project it acts for").field("project"));
        }
        (_, None) => (TokenKind::Admin, None),
        (_, Some(_)) => {
            return Err(
                ApiError::bad_request("an admin token acts for every project; leave project out").field("project")
            );
        }
    };
    let (token, hash) = new_token(kind);
    let record = token_record(kind, &name, hash, project.as_ref().map(|p| p.0.clone()), st.engine.now());
    let id = record.id.clone();
    st.engine.store().insert_token(&record).await?;
    let kind = record.kind;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken { id, token, kind, project: project.map(|p| p.1), projects: Vec::new(), name }),
    ))
}

/// A worker token: it may call only the worker operations, for `projects` (which need not be
/// registered yet: the worker registers them).
async fn create_worker_token(
    st: &AppState,
    name: String,
    project: Option<String>,
    projects: Option<Vec<String>>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    if project.is_some() {
        return Err(ApiError::bad_request("a worker token names its projects in `projects`, a list").field("project"));
    }
    let mut projects = projects.unwrap_or_default();
    if projects.is_empty() || projects.len() > 100 {
        return Err(ApiError::bad_request(
            "a worker token needs the projects it may serve: 1 to 100 names (agent-os token create --worker --project NAME)",
        )
        .field("projects"));
    }
    for (i, p) in projects.iter().enumerate() {
        agent_os_core::name::check_project_name(p)
            .map_err(|e| ApiError::bad_request(e).field(format!("projects[{i}]")))?;
    }
    projects.sort();
    projects.dedup();
    let (token, hash) = new_token(TokenKind::Worker);
    let record = token_record(TokenKind::Worker, &name, hash, None, st.engine.now());
    let id = record.id.clone();
    st.engine.store().insert_worker_token(&record, &projects).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { id, token, kind: TokenKind::Worker, project: None, projects, name })))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = [TokenView]), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_tokens(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<TokenView>>> {
    caller.require_admin()?;
    let store = st.engine.store();
    let names: std::collections::HashMap<String, String> =
        store.list_projects().await?.into_iter().map(|p| (p.id, p.name)).collect();
    let tokens = store.list_tokens().await?;
    let mut views = Vec::with_capacity(tokens.len());
    for t in tokens {
        let project = t.project_id.as_ref().and_then(|id| names.get(id).cloned());
        let projects = if t.kind == TokenKind::Worker { store.token_projects(&t.id).await? } else { Vec::new() };
        views.push(TokenView { projects, ..TokenView::new(t, project) });
    }
    Ok(Json(views))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke_token(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    if st.engine.store().revoke_token(&id, st.engine.now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no active token with id {id:?}")))
    }
}

// Health -----------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or what is wrong.
    pub status: String,
    pub version: String,
    /// `sqlite` or `postgres`.
    pub database: String,
}

/// Liveness, database reachability and the engine's loops; needs no token. 503 when the
/// database does not answer, the engine stopped on its own, or one of its loops died and waits
/// to be started again.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn healthz(State(st): State<AppState>) -> (StatusCode, Json<Health>) {
    let down: Vec<&str> =
        st.engine.loop_health().into_iter().filter(|l| !l.running && l.last_death.is_some()).map(|l| l.name).collect();
    let problem = if st.engine.store().get_setting("install_id").await.is_err() {
        Some("database unavailable".to_string())
    } else if let Some(why) = st.engine.failure() {
        Some(format!("engine stopped: {why}"))
    } else if !down.is_empty() {
        Some(format!("engine loop down, to be started again: {}", down.join(", ")))
    } else {
        None
    };
    let status = if problem.is_none() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(Health {
            status: problem.unwrap_or_else(|| "ok".into()),
            version: env!("CARGO_PKG_VERSION").into(),
            database: st.engine.store().backend().as_str().into(),
        }),
    )
}

// Resources and leases ---------------------------------------------------------------------

/// Whose leases a caller acts on: the admin any; a project token, or a run token of one of
/// the project's runs, its project's.
async fn resource_scope(st: &AppState, caller: &Caller) -> ApiResult<ResourceScope> {
    Ok(match scoped_project(st, caller, None).await? {
        Some(project) => ResourceScope::Project(project),
        None => ResourceScope::Admin,
    })
}

/// Every declared resource: limits, holders, waiters in serving order, rate-bucket level. A
/// project's token sees other holders and waiters without their id, project and label.
#[utoipa::path(get, path = "/api/v1/resources", tag = "resources", responses((status = 200, body = [ResourceView])), security(("bearer" = [])))]
pub async fn list_resources(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ResourceView>>> {
    let scope = resource_scope(&st, &caller).await?;
    let snap = st.engine.resource_snapshot().await?;
    Ok(Json(ResourceView::all(&st.engine.config().resources, &snap, st.engine.now(), &scope)))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct LeaseBody {
    /// How long the lease lasts unless renewed, e.g. `10m` (1s to 24h; default 10m).
    pub ttl: Option<String>,
    /// How long to wait in line for it, e.g. `5m` (at most 1h; default 0: answer at once).
    pub wait: Option<String>,
    /// 0 to 100, higher goes first (default 50).
    pub priority: Option<i64>,
    /// Who holds it, as shown to others (default: the token's project).
    pub label: Option<String>,
}

fn duration_field(v: &Option<String>, field: &str, default: std::time::Duration) -> ApiResult<std::time::Duration> {
    match v {
        None => Ok(default),
        Some(t) => agent_os_core::parse_duration(t).map_err(|e| ApiError::bad_request(e).field(field)),
    }
}

/// Take a lease on a resource for a job Agent OS does not run (a Railway cron job, a launchd
/// script). Waits in line up to `wait`; then `409` (held by others) or `429` (rate used up),
/// with who holds it.
#[utoipa::path(post, path = "/api/v1/resources/{name}/leases", tag = "resources", params(("name" = String, Path)), request_body(content = Option<LeaseBody>, description = "optional: without one, the lease lives 10 minutes and does not wait"), responses((status = 201, body = LeaseView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)), security(("bearer" = [])))]
pub async fn take_lease(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<LeaseBody>,
) -> ApiResult<(StatusCode, Json<LeaseView>)> {
    let body = body.unwrap_or_default();
    // A token whose project is gone is refused here rather than taking a lease nobody owns.
    let project = resource_scope(&st, &caller).await?.project().map(str::to_string);
    let hold = st
        .engine
        .acquire_lease(agent_os_engine::LeaseOptions {
            resource: name,
            ttl: duration_field(&body.ttl, "ttl", std::time::Duration::from_secs(600))?,
            wait: duration_field(&body.wait, "wait", std::time::Duration::ZERO)?,
            priority: body.priority,
            project,
            label: body.label,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(LeaseView::from(hold))))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    /// The new time to live from now (default: the lease's own).
    pub ttl: Option<String>,
}

/// Extend a lease. `404` once it has expired or been released (take a new one), or when it is
/// not the caller's: only its taker's project (or the admin) may renew it.
#[utoipa::path(post, path = "/api/v1/resources/{name}/leases/{id}/renew", tag = "resources", params(("name" = String, Path), ("id" = String, Path)), request_body(content = Option<RenewBody>, description = "optional: without one, the lease keeps its ttl"), responses((status = 200, body = LeaseView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn renew_lease(
    State(st): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<RenewBody>,
) -> ApiResult<Json<LeaseView>> {
    let ttl = match body.and_then(|b| b.ttl) {
        Some(t) => Some(agent_os_core::parse_duration(&t).map_err(|e| ApiError::bad_request(e).field("ttl"))?),
        None => None,
    };
    let scope = resource_scope(&st, &caller).await?;
    Ok(Json(LeaseView::from(st.engine.renew_lease(&name, &id, &scope, ttl).await?)))
}

/// Release a lease: `404` when it is not the caller's (only its taker's project, or the admin,
/// may release it).
#[utoipa::path(delete, path = "/api/v1/resources/{name}/leases/{id}", tag = "resources", params(("name" = String, Path), ("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn release_lease(
    State(st): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let scope = resource_scope(&st, &caller).await?;
    st.engine.release_lease(&name, &id, &scope).await?;
    Ok(StatusCode::NO_CONTENT)
}

// Cost summaries and budgets ---------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PriceQuery {
    /// Only models whose name contains this (case-insensitive).
    #[param(max_length = 128)]
    pub model: Option<String>,
}

/// A model's token price, in US dollars per million tokens.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct PriceView {
    pub model: String,
    /// Exact decimal.
    pub input: String,
    /// Input tokens read from the provider's cache.
    pub cached_input: String,
    pub output: String,
    pub currency: String,
    /// `built-in 2025-10-01` (shipped, as listed that day) or `config` (config.yaml's `prices:`).
    pub source: String,
}

/// The token prices Agent OS prices amount-less cost records with: the built-in list with
/// config.yaml's `prices:` over it. Any token may read it.
#[utoipa::path(get, path = "/api/v1/prices", tag = "costs", params(PriceQuery), responses((status = 200, body = Vec<PriceView>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_prices(
    State(st): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<PriceQuery>,
) -> ApiResult<Json<Vec<PriceView>>> {
    if q.model.as_ref().is_some_and(|m| m.chars().count() > 128) {
        return Err(ApiError::bad_request("a model name is at most 128 characters").field("model"));
    }
    let wanted = q.model.map(|m| m.to_lowercase());
    let fmt = agent_os_core::price::format_price;
    Ok(Json(
        st.engine
            .config()
            .prices
            .all()
            .filter(|p| wanted.as_deref().is_none_or(|w| p.model.to_lowercase().contains(w)))
            .map(|p| PriceView {
                model: p.model.clone(),
                input: fmt(p.input),
                cached_input: fmt(p.cached_input),
                output: fmt(p.output),
                currency: agent_os_core::price::PRICE_CURRENCY.into(),
                source: p.origin(),
            })
            .collect(),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// project, service, key, model, day or month (UTC; default project).
    #[param(pattern = "^(project|service|key|model|day|month)$")]
    pub by: Option<String>,
    /// Start, inclusive (RFC 3339 or a date, 2026-11-01).
    pub from: Option<String>,
    /// End, exclusive (RFC 3339 or a date).
    pub to: Option<String>,
    pub project: Option<String>,
    pub service: Option<String>,
}

/// An RFC 3339 instant or a calendar date (midnight UTC), as ms.
fn instant(v: &Option<String>, field: &str) -> ApiResult<Option<i64>> {
    v.as_deref().map(|t| crate::edge::instant_param(t, field)).transpose()
}

/// Exact totals of the cost ledger, grouped, per currency (amounts in different currencies are
/// never added together).
#[utoipa::path(get, path = "/api/v1/costs/summary", tag = "costs", params(SummaryQuery), responses((status = 200, body = CostSummary), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn cost_summary(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> ApiResult<Json<CostSummary>> {
    use agent_os_core::cost::GroupBy;
    use agent_os_store::CostGroup;
    let by = match q.by.as_deref() {
        None => GroupBy::Project,
        Some(text) => text.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "cannot group by {text:?}; use {}",
                agent_os_core::text::one_of(GroupBy::SPELLINGS)
            ))
            .field("by")
        })?,
    };
    let group = match by {
        GroupBy::Project => CostGroup::Project,
        GroupBy::Service => CostGroup::Service,
        GroupBy::Key => CostGroup::Key,
        GroupBy::Model => CostGroup::Model,
        GroupBy::Day | GroupBy::Month => CostGroup::Day,
    };
    let (from, to) = (instant(&q.from, "from")?, instant(&q.to, "to")?);
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        return Err(ApiError::bad_request("`to` must be after `from`").field("to"));
    }
    let project = scoped_project(&st, &caller, q.project).await?;
    let filter = agent_os_store::CostTotalsFilter { project, service: q.service, from, to };
    let mut totals = st.engine.store().cost_totals(&filter, group).await?;
    if matches!(by, GroupBy::Day | GroupBy::Month) {
        for t in &mut totals {
            let day = t.group.parse::<i64>().ok().and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok());
            let date = day.map(|d| d.to_zoned(jiff::tz::TimeZone::UTC).date());
            t.group = match (date, by) {
                (Some(d), GroupBy::Month) => format!("{:04}-{:02}", d.year(), d.month()),
                (Some(d), _) => d.to_string(),
                (None, _) => t.group.clone(),
            };
        }
    }
    // Days of one month become one row.
    let mut groups: Vec<CostGroupView> = Vec::new();
    for t in totals {
        match groups.iter_mut().find(|g| g.group == t.group && g.currency == t.currency) {
            Some(g) => {
                g.amount_nanos += t.amount_nanos;
                g.records += t.records;
                g.tokens_in += t.tokens_in;
                g.tokens_out += t.tokens_out;
                g.unpriced += t.unpriced;
            }
            None => groups.push(CostGroupView {
                group: t.group,
                currency: t.currency,
                amount: String::new(),
                amount_nanos: t.amount_nanos,
                records: t.records,
                tokens_in: t.tokens_in,
                tokens_out: t.tokens_out,
                unpriced: t.unpriced,
            }),
        }
    }
    let mut overall: Vec<CostGroupView> = Vec::new();
    for g in &mut groups {
        g.amount = agent_os_core::cost::format_amount(g.amount_nanos);
        match overall.iter_mut().find(|o| o.currency == g.currency) {
            Some(o) => {
                o.amount_nanos += g.amount_nanos;
                o.records += g.records;
                o.tokens_in += g.tokens_in;
                o.tokens_out += g.tokens_out;
                o.unpriced += g.unpriced;
            }
            None => overall.push(CostGroupView { group: "total".into(), ..g.clone() }),
        }
    }
    for o in &mut overall {
        o.amount = agent_os_core::cost::format_amount(o.amount_nanos);
    }
    Ok(Json(CostSummary { by, from: from.map(views::time), to: to.map(views::time), groups, totals: overall }))
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct CostSummary {
    #[schema(value_type = String)]
    pub by: agent_os_core::cost::GroupBy,
    pub from: Option<String>,
    pub to: Option<String>,
    pub groups: Vec<CostGroupView>,
    /// One per currency.
    pub totals: Vec<CostGroupView>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct CostGroupView {
    /// The project, service, key name or model (`""` when records name none), the day
    /// (`2026-11-25`) or the month (`2026-11`).
    pub group: String,
    pub currency: String,
    /// Exact decimal.
    pub amount: String,
    /// The same in nano-units (10⁻⁹), for exact sums on the client.
    pub amount_nanos: i64,
    pub records: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// Of `records`, those whose model has no price: their tokens are in `tokens_in` and
    /// `tokens_out`, their amount is in no total.
    pub unpriced: i64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct BudgetView {
    pub id: String,
    pub project: String,
    /// Empty for all of the project's services.
    pub service: String,
    /// `daily` or `monthly` (UTC).
    #[schema(value_type = String)]
    pub period: Period,
    pub limit: String,
    pub currency: String,
    pub thresholds: Vec<i64>,
    /// `alert` or `pause`.
    #[schema(value_type = String)]
    pub on_exceed: OnExceed,
    /// `config` or `api`.
    #[schema(value_type = String)]
    pub source: BudgetSource,
    pub period_start: String,
    pub period_end: String,
    pub spent: String,
    /// Spent as a percentage of the limit.
    pub percent: f64,
    /// The period's spend at its end if spending goes on at the rate so far.
    pub forecast: String,
    /// Thresholds crossed this period.
    pub crossed: Vec<i64>,
    /// Why the project is paused, when it is.
    pub paused: Option<String>,
}

async fn budget_views(st: &AppState, project: Option<&str>) -> ApiResult<Vec<BudgetView>> {
    let mut out = Vec::new();
    for s in st.engine.budget_status(project).await? {
        let b = s.budget;
        let paused = st.engine.pause_of(&b.project).await?.map(|p| p.reason);
        out.push(BudgetView {
            percent: if b.amount_nanos == 0 {
                0.0
            } else {
                (s.spent_nanos as f64 * 10_000.0 / b.amount_nanos as f64).round() / 100.0
            },
            limit: agent_os_core::cost::format_amount(b.amount_nanos),
            spent: agent_os_core::cost::format_amount(s.spent_nanos),
            forecast: agent_os_core::cost::format_amount(s.forecast_nanos),
            period_start: views::time(s.period_start),
            period_end: views::time(s.period_end),
            crossed: s.crossed,
            paused,
            id: b.id,
            project: b.project,
            service: b.service,
            period: b.period,
            currency: b.currency,
            thresholds: b.thresholds,
            on_exceed: b.on_exceed,
            source: b.source,
        });
    }
    Ok(out)
}

/// Budgets with their period's spend, forecast and the pause they caused.
#[utoipa::path(get, path = "/api/v1/budgets", tag = "costs", params(ScheduleQuery), responses((status = 200, body = [BudgetView])), security(("bearer" = [])))]
pub async fn list_budgets(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ScheduleQuery>,
) -> ApiResult<Json<Vec<BudgetView>>> {
    let project = scoped_project(&st, &caller, q.project).await?;
    Ok(Json(budget_views(&st, project.as_deref()).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    pub project: String,
    /// Only this service's spend (default: all of the project's).
    pub service: Option<String>,
    /// `daily` or `monthly` (UTC).
    #[schema(pattern = "^(daily|monthly)$")]
    pub period: String,
    /// Decimal text, e.g. `"50.00"`.
    pub amount: String,
    /// ISO 4217 (default USD).
    pub currency: Option<String>,
    /// Percentages (default [50, 80, 100]).
    pub thresholds: Option<Vec<i64>>,
    /// `alert` (default) or `pause`.
    pub on_exceed: Option<String>,
}

/// Set the budget of a project (and service) for a period, replacing the one it had (admin).
#[utoipa::path(put, path = "/api/v1/budgets", tag = "costs", request_body = BudgetBody, responses((status = 200, body = BudgetView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn put_budget(
    State(st): State<AppState>,
    caller: Caller,
    JsonBody(b): JsonBody<BudgetBody>,
) -> ApiResult<Json<BudgetView>> {
    caller.require_admin()?;
    let stored = st
        .engine
        .set_budget(agent_os_engine::BudgetInput {
            project: b.project,
            service: b.service,
            period: b.period,
            amount: b.amount,
            currency: b.currency,
            thresholds: b.thresholds,
            on_exceed: b.on_exceed,
        })
        .await?;
    let view = budget_views(&st, Some(&stored.project))
        .await?
        .into_iter()
        .find(|v| v.id == stored.id)
        .ok_or_else(|| ApiError::not_found("the budget was removed meanwhile"))?;
    Ok(Json(view))
}

#[utoipa::path(delete, path = "/api/v1/budgets/{id}", tag = "costs", params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_budget(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    st.engine.remove_budget(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a project's budget pause (admin): its runs, schedules and leases go again.
#[utoipa::path(post, path = "/api/v1/projects/{name}/resume", tag = "costs", params(("name" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn resume_project(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    st.engine.resume_project(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// Key audit --------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct AuditView {
    pub project: String,
    pub checked_at: String,
    /// False for a project without a directory on this machine (an HTTP plugin): nothing to read.
    pub audited: bool,
    pub errors: usize,
    pub warnings: usize,
    /// `{severity, project, check, file, line, message, fix}`; never a secret value.
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<Value>,
}

/// The key audit of one project, run now (`agent-os keys audit` checks several at once, and
/// compares their keys with each other).
#[utoipa::path(get, path = "/api/v1/projects/{name}/audit", tag = "projects", params(("name" = String, Path)), responses((status = 200, body = AuditView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn project_audit(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<AuditView>> {
    let p = st.engine.project(&name).await?;
    caller.require_project(&p.record)?;
    let checked_at = views::time(st.engine.now());
    let Some(root) = p.root().map(std::path::Path::to_path_buf) else {
        return Ok(Json(AuditView {
            project: name,
            checked_at,
            audited: false,
            errors: 0,
            warnings: 0,
            findings: Vec::new(),
        }));
    };
    let target = agent_os_engine::audit::AuditTarget { name: name.clone(), root, manifest: p.manifest.clone() };
    let home = st.engine.config().runtime_dir.parent().map(std::path::Path::to_path_buf);
    let findings = tokio::task::spawn_blocking(move || {
        agent_os_engine::audit::audit(&[target], &agent_os_engine::audit::AuditOptions { home, shared: Vec::new() })
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the audit did not finish"))?;
    // Agent OS's own .env is not this project's business.
    let findings: Vec<_> = findings.into_iter().filter(|f| f.project.as_deref() == Some(name.as_str())).collect();
    let errors = findings.iter().filter(|f| f.severity == agent_os_engine::audit::Severity::Error).count();
    Ok(Json(AuditView {
        project: name,
        checked_at,
        audited: true,
        errors,
        warnings: findings.len() - errors,
        findings: findings.iter().filter_map(|f| serde_json::to_value(f).ok()).collect(),
    }))
}
