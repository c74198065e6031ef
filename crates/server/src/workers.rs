//! The worker protocol (docs/worker-protocol.md): the operations an `agent-os worker` calls,
//! under `/api/v1/worker/`, with a worker token and the protocol's header, and the admin's
//! list of workers. A worker token may call nothing else (`auth::authenticate` refuses it),
//! and these operations take nothing else; each checks that the project it names is one the
//! token may serve.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use agent_os_core::RunStatus;
use agent_os_core::manifest::ProbeKind;
use agent_os_core::run::LogStream;
use agent_os_engine::engine::workers::{AttemptRef, Ended, Hello, WORKER_PROTOCOL, WorkerEnd, WorkerToken};
use agent_os_engine::secrets::TokenKind;
use agent_os_store::{WorkerLog, WorkerLogChunk, WorkerRecord};

use crate::AppState;
use crate::auth::live_token;
use crate::body::{JsonBody, text_length};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::views::time;

/// The header every worker request carries: the protocol version it speaks.
pub const PROTOCOL_HEADER: &str = "agent-os-worker-protocol";

/// The most attempts a worker may list in one request, and log chunks it may send at once.
const MAX_LISTED: usize = 10_000;

/// The caller of a worker operation: a worker token and the projects it may serve.
#[derive(Clone, Debug)]
pub struct WorkerCaller(pub WorkerToken);

impl<S: Send + Sync> FromRequestParts<S> for WorkerCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<WorkerCaller>().cloned().ok_or_else(|| ApiError::unauthorized("missing bearer token"))
    }
}

impl WorkerCaller {
    /// Refuses a project the token does not name.
    fn require(&self, project: &str) -> ApiResult<()> {
        if self.0.allows(project) {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "this worker token may serve only {}, not {project:?}; make a token that names it (agent-os token create --worker --project {project} …)",
            self.0.projects.join(", ")
        )))
    }
}

/// Middleware of the worker operations: a worker token, then the protocol's header (a worker
/// speaking another version is told which one this server speaks, and what to do).
pub async fn authenticate_worker(
    State(state): State<AppState>,
    mut req: axum::extract::Request,
    next: Next,
) -> Result<Response, ApiError> {
    let record = live_token(&state, req.headers()).await?;
    if record.kind != TokenKind::Worker {
        return Err(ApiError::forbidden(
            "the worker operations take a worker token (agent-os token create --worker --project NAME)",
        ));
    }
    let said = req.headers().get(PROTOCOL_HEADER).map(|v| v.to_str().unwrap_or("?").trim().to_string());
    if said.as_deref() != Some(WORKER_PROTOCOL.to_string().as_str()) {
        let what = match said {
            Some(v) => format!("the worker speaks protocol {v:?}"),
            None => "the request does not say which (header Agent-OS-Worker-Protocol)".into(),
        };
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "worker_protocol",
            format!(
                "this server speaks worker protocol {WORKER_PROTOCOL}, and {what}; upgrade the worker or the server so both speak protocol {WORKER_PROTOCOL}"
            ),
        ));
    }
    let projects = state.engine.store().token_projects(&record.id).await?;
    req.extensions_mut().insert(WorkerCaller(WorkerToken { token_id: record.id, projects }));
    Ok(next.run(req).await)
}

/// An attempt of a run, as a worker names it.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct AttemptId {
    pub run_id: String,
    #[schema(minimum = 1)]
    pub attempt: i64,
}

impl From<AttemptRef> for AttemptId {
    fn from(a: AttemptRef) -> Self {
        AttemptId { run_id: a.run_id, attempt: a.attempt }
    }
}

/// The attempts listed in `field`, bounded.
fn attempts(field: &str, list: Vec<AttemptId>) -> ApiResult<Vec<AttemptRef>> {
    if list.len() > MAX_LISTED {
        return Err(ApiError::bad_request(format!("{field}: at most {MAX_LISTED} attempts")).field(field));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, a)| {
            if a.attempt < 1 {
                return Err(
                    ApiError::bad_request("an attempt is numbered from 1").field(format!("{field}[{i}].attempt"))
                );
            }
            Ok(AttemptRef { run_id: a.run_id, attempt: a.attempt })
        })
        .collect()
}

/// A project a worker serves, with its manifest's text.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct HelloProject {
    pub name: String,
    /// The project's `agent-os.yaml`, as on the worker's disk.
    pub manifest: String,
}

/// A worker's hello: at start and after every reconnect.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct HelloBody {
    /// The worker's name (with its token, what makes it the same worker after a restart), 1
    /// to 100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    /// The worker's Agent OS version, at most 64 characters.
    #[schema(max_length = 64)]
    pub version: String,
    /// Its machine's host name, at most 255 characters.
    #[schema(max_length = 255)]
    pub hostname: String,
    /// How many attempts it runs at once, 1 to 1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub capacity: i64,
    /// Every project it serves, each one its token names.
    #[serde(default)]
    pub projects: Vec<HelloProject>,
    /// Attempts the worker process is running.
    #[serde(default)]
    pub running: Vec<AttemptId>,
    /// Attempts it has finished and holds the results of.
    #[serde(default)]
    pub pending: Vec<AttemptId>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ProjectCursor {
    pub name: String,
    /// What to pass as `since` to the project's next cost probe.
    pub cost_cursor: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct HelloAnswer {
    /// The worker's id, which every later request carries.
    pub worker_id: String,
    /// The protocol the server speaks (1).
    pub protocol: u32,
    /// How long the server holds a poll with no work, in milliseconds.
    pub poll_wait_ms: u64,
    /// The server's URL for tasks (their `AGENT_OS_URL`).
    pub public_url: String,
    pub projects: Vec<ProjectCursor>,
}

/// Checks a worker's name, version and host name.
fn describe(name: &str, version: &str, hostname: &str) -> ApiResult<()> {
    text_length("name", name, 1, 100)?;
    text_length("version", version, 0, 64)?;
    text_length("hostname", hostname, 0, 255)
}

/// A worker says hello: it registers (or updates) the projects it serves from their manifests,
/// and the attempts it no longer runs or holds are ended as lost.
#[utoipa::path(post, path = "/api/v1/worker/hello", tag = "workers", request_body = HelloBody,
    params(("Agent-OS-Worker-Protocol" = String, Header, description = "the worker protocol spoken: 1")),
    responses((status = 200, body = HelloAnswer), (status = 400, description = "`worker_protocol`: a protocol this server does not speak; `invalid_manifest` (with `field` projects[i].manifest and the manifest's `errors`); or another bad value", body = ErrorBody), (status = 403, description = "not a worker token, or a project the token does not name", body = ErrorBody), (status = 409, description = "a project of that name is registered from a path or over HTTP", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn hello(
    State(st): State<AppState>,
    caller: WorkerCaller,
    JsonBody(body): JsonBody<HelloBody>,
) -> ApiResult<Json<HelloAnswer>> {
    describe(&body.name, &body.version, &body.hostname)?;
    if !(1..=1000).contains(&body.capacity) {
        return Err(ApiError::bad_request("capacity is 1 to 1000").field("capacity"));
    }
    if body.projects.len() > 1000 {
        return Err(ApiError::bad_request("at most 1000 projects").field("projects"));
    }
    for (i, p) in body.projects.iter().enumerate() {
        if body.projects[..i].iter().any(|q| q.name == p.name) {
            return Err(ApiError::bad_request(format!("project {:?} is listed twice", p.name))
                .field(format!("projects[{i}].name")));
        }
        caller.require(&p.name)?;
    }
    // Every manifest is checked before any is stored, so a refused hello changes nothing.
    let mut projects = Vec::with_capacity(body.projects.len());
    for (i, p) in body.projects.into_iter().enumerate() {
        let manifest = st.engine.check_worker_manifest(&p.name, &p.manifest).await.map_err(|e| {
            let e = ApiError::from(e);
            match (e.status, e.field.as_deref()) {
                (StatusCode::BAD_REQUEST, Some("name")) => e.field(format!("projects[{i}].name")),
                (StatusCode::BAD_REQUEST, _) => e.field(format!("projects[{i}].manifest")),
                _ => e,
            }
        })?;
        projects.push((manifest, p.manifest));
    }
    let hello = Hello {
        name: body.name,
        version: body.version,
        hostname: body.hostname,
        capacity: body.capacity,
        projects,
        running: attempts("running", body.running)?,
        pending: attempts("pending", body.pending)?,
    };
    let welcome = st.engine.worker_hello(&caller.0, hello).await?;
    Ok(Json(HelloAnswer {
        worker_id: welcome.worker.id,
        protocol: WORKER_PROTOCOL,
        poll_wait_ms: st.engine.poll_wait().as_millis() as u64,
        public_url: st.engine.config().public_url.clone(),
        projects: welcome.projects.into_iter().map(|(name, cost_cursor)| ProjectCursor { name, cost_cursor }).collect(),
    }))
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ManifestBody {
    pub worker_id: String,
    /// The project's new `agent-os.yaml` text.
    pub manifest: String,
}

/// A project's manifest changed on the worker's disk. A manifest with errors leaves the stored
/// one as it was.
#[utoipa::path(put, path = "/api/v1/worker/projects/{name}", tag = "workers", request_body = ManifestBody,
    params(("name" = String, Path), ("Agent-OS-Worker-Protocol" = String, Header, description = "the worker protocol spoken: 1")),
    responses((status = 200, body = ProjectCursor), (status = 400, description = "`invalid_manifest` with the manifest's `errors`, or another bad value", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "no such worker for this token", body = ErrorBody), (status = 409, description = "a project of that name is registered from a path or over HTTP", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_project(
    State(st): State<AppState>,
    caller: WorkerCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ManifestBody>,
) -> ApiResult<Json<ProjectCursor>> {
    caller.require(&name)?;
    let worker = st.engine.worker(&caller.0, &body.worker_id).await?;
    let manifest = st.engine.check_worker_manifest(&name, &body.manifest).await.map_err(|e| {
        let e = ApiError::from(e);
        if e.status == StatusCode::BAD_REQUEST && e.field.is_none() { e.field("manifest") } else { e }
    })?;
    let cost_cursor = st.engine.worker_manifest(&worker, manifest, &body.manifest).await?;
    Ok(Json(ProjectCursor { name, cost_cursor }))
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct PollBody {
    pub worker_id: String,
    /// How many more attempts it can start now, 0 to 1000.
    #[schema(minimum = 0, maximum = 1000)]
    pub capacity: i64,
    /// The attempts it is running.
    #[serde(default)]
    pub running: Vec<AttemptId>,
}

/// A run for a worker to start.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkerRun {
    pub run_id: String,
    pub attempt: i64,
    pub project: String,
    pub task: String,
    /// The run's input (the task's stdin).
    #[schema(value_type = Object)]
    pub input: Value,
    /// The attempt's run token (the task's `AGENT_OS_TOKEN`), revoked when the attempt ends.
    pub token: String,
    pub max_attempts: i64,
    pub trigger: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct PollAnswer {
    /// Runs claimed for this worker: start them.
    pub runs: Vec<WorkerRun>,
    /// Attempts it runs that it should stop: a cancel was asked for, or the attempt is no
    /// longer its to run (it ended, or was judged lost and retried).
    pub cancel: Vec<AttemptId>,
}

/// The worker's long poll, and its heartbeat: answers as soon as there is a run for it or an
/// attempt to stop, else after `poll_wait_ms` with empty lists.
#[utoipa::path(post, path = "/api/v1/worker/poll", tag = "workers", request_body = PollBody,
    params(("Agent-OS-Worker-Protocol" = String, Header, description = "the worker protocol spoken: 1")),
    responses((status = 200, body = PollAnswer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "no such worker for this token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn poll(
    State(st): State<AppState>,
    caller: WorkerCaller,
    JsonBody(body): JsonBody<PollBody>,
) -> ApiResult<Json<PollAnswer>> {
    if !(0..=1000).contains(&body.capacity) {
        return Err(ApiError::bad_request("capacity is 0 to 1000").field("capacity"));
    }
    let running = attempts("running", body.running)?;
    let worker = st.engine.worker(&caller.0, &body.worker_id).await?;
    let got = st.engine.worker_poll(&worker, body.capacity, &running).await?;
    let runs = got
        .runs
        .into_iter()
        .map(|c| WorkerRun {
            input: serde_json::from_str(&c.run.input).unwrap_or_else(|_| serde_json::json!({})),
            run_id: c.run.id,
            attempt: c.run.attempt,
            project: c.run.project,
            task: c.run.task,
            token: c.token,
            max_attempts: c.run.max_attempts,
            trigger: c.run.trigger,
        })
        .collect();
    Ok(Json(PollAnswer { runs, cancel: got.cancel.into_iter().map(AttemptId::from).collect() }))
}

/// One piece of an attempt's output.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ChunkBody {
    /// From 1 within the attempt, each one more than the one before.
    #[schema(minimum = 1)]
    pub seq: i64,
    /// `stdout`, `stderr` or `system`.
    #[schema(value_type = String)]
    pub stream: LogStream,
    /// When it was written (RFC 3339).
    pub at: String,
    pub data: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct LogsBody {
    pub worker_id: String,
    pub chunks: Vec<ChunkBody>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct LogsAnswer {
    /// Every chunk up to this one is stored: the worker may drop them.
    pub acked_seq: i64,
}

/// The attempt `attempt` from the path, checked.
fn attempt_number(attempt: i64) -> ApiResult<i64> {
    if attempt < 1 {
        return Err(ApiError::bad_request("an attempt is numbered from 1").field("attempt"));
    }
    Ok(attempt)
}

/// The `409` that tells a worker to drop what it holds for an attempt that has ended.
fn attempt_ended(attempt: i64, run_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "attempt_ended",
        format!(
            "attempt {attempt} of run {run_id} has ended (its end recorded, or judged lost); drop what you hold for it"
        ),
    )
}

/// Output of a worker's attempt. Chunks whose `seq` is at or below the highest stored are not
/// stored again, so sending again after a lost answer is safe.
#[utoipa::path(post, path = "/api/v1/worker/attempts/{run_id}/{attempt}/logs", tag = "workers", request_body = LogsBody,
    params(("run_id" = String, Path), ("attempt" = i64, Path), ("Agent-OS-Worker-Protocol" = String, Header, description = "the worker protocol spoken: 1")),
    responses((status = 200, body = LogsAnswer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "not an attempt of this worker", body = ErrorBody), (status = 409, description = "`attempt_ended`: the attempt has ended; drop what you hold for it", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn logs(
    State(st): State<AppState>,
    caller: WorkerCaller,
    Path((run_id, attempt)): Path<(String, i64)>,
    JsonBody(body): JsonBody<LogsBody>,
) -> ApiResult<Json<LogsAnswer>> {
    let attempt = attempt_number(attempt)?;
    if body.chunks.len() > MAX_LISTED {
        return Err(ApiError::bad_request(format!("at most {MAX_LISTED} chunks at once")).field("chunks"));
    }
    let mut chunks = Vec::with_capacity(body.chunks.len());
    let mut previous = 0;
    for (i, c) in body.chunks.into_iter().enumerate() {
        if c.seq <= previous {
            return Err(ApiError::bad_request(format!(
                "seq {} does not follow {previous}: chunks are numbered from 1, each above the one before",
                c.seq
            ))
            .field(format!("chunks[{i}].seq")));
        }
        previous = c.seq;
        let at = crate::edge::instant_param(&c.at, &format!("chunks[{i}].at"))?;
        chunks.push(WorkerLogChunk { seq: c.seq, stream: c.stream, at, data: c.data });
    }
    let worker = st.engine.worker(&caller.0, &body.worker_id).await?;
    match st.engine.worker_log(&worker, &run_id, attempt, chunks).await? {
        WorkerLog::Stored { acked_seq } => Ok(Json(LogsAnswer { acked_seq })),
        WorkerLog::Ended { .. } => Err(attempt_ended(attempt, &run_id)),
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct EndBody {
    pub worker_id: String,
    /// `succeeded`, `failed`, `timed_out` or `cancelled`.
    #[schema(value_type = String)]
    pub end: RunStatus,
    pub exit_code: Option<i64>,
    /// Why it failed (redacted before it is stored).
    pub error: Option<String>,
    /// For a failure: whether another attempt may help (exit code 78 never retries).
    #[serde(default)]
    pub retryable: bool,
    /// The worker itself was stopping: the run is retried at once without using up an attempt.
    #[serde(default)]
    pub interrupted: bool,
    /// What the task wrote to its outputs file: a JSON object, or null.
    #[schema(value_type = Option<Object>)]
    pub outputs: Option<Value>,
    /// The last log chunk sent for the attempt (0: none).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub last_seq: i64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct EndAnswer {
    /// Whether this end was recorded; false when the attempt had already ended (an end sent
    /// again, or one judged lost). Either way the worker drops its copy.
    pub recorded: bool,
    /// The run's status now (`queued` when it will be tried again).
    #[schema(value_type = String)]
    pub run_status: RunStatus,
    /// Why it was not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How a worker's attempt ended. The retry is decided as for an attempt run on the server
/// (the task's policy and delay, exit code 78, a cancel asked for), and recorded once.
#[utoipa::path(post, path = "/api/v1/worker/attempts/{run_id}/{attempt}/end", tag = "workers", request_body = EndBody,
    params(("run_id" = String, Path), ("attempt" = i64, Path), ("Agent-OS-Worker-Protocol" = String, Header, description = "the worker protocol spoken: 1")),
    responses((status = 200, body = EndAnswer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "not an attempt of this worker", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn end(
    State(st): State<AppState>,
    caller: WorkerCaller,
    Path((run_id, attempt)): Path<(String, i64)>,
    JsonBody(body): JsonBody<EndBody>,
) -> ApiResult<Json<EndAnswer>> {
    let attempt = attempt_number(attempt)?;
    if !body.end.is_terminal() {
        return Err(ApiError::bad_request(format!(
            "end is succeeded, failed, timed_out or cancelled, not {}",
            body.end
        ))
        .field("end"));
    }
    if body.outputs.as_ref().is_some_and(|o| !o.is_object() && !o.is_null()) {
        return Err(ApiError::bad_request("outputs must be a JSON object or null").field("outputs"));
    }
    if body.last_seq < 0 {
        return Err(ApiError::bad_request("last_seq is 0 or more").field("last_seq"));
    }
    if let Some(e) = &body.error {
        text_length("error", e, 0, 64 * 1024)?;
    }
    let worker = st.engine.worker(&caller.0, &body.worker_id).await?;
    let end = WorkerEnd {
        status: body.end,
        exit_code: body.exit_code,
        error: body.error,
        retryable: body.retryable,
        interrupted: body.interrupted,
        outputs: body.outputs.filter(|o| !o.is_null()),
        last_seq: body.last_seq,
    };
    Ok(Json(match st.engine.worker_end(&worker, &run_id, attempt, end).await? {
        Ended::Recorded(run) => EndAnswer { recorded: true, run_status: run.status, reason: None },
        Ended::Refused { run, reason } => EndAnswer { recorded: false, run_status: run.status, reason: Some(reason) },
    }))
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ProbeBody {
    pub worker_id: String,
    pub project: String,
    /// `status`, `cost` or `schedule`.
    pub kind: String,
    /// What the probe printed, parsed (when it answered).
    #[schema(value_type = Option<Object>)]
    pub answer: Option<Value>,
    /// Why the probe failed (when it did not answer).
    pub error: Option<String>,
    /// How long the probe took.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub duration_ms: i64,
    /// The cost cursor the cost probe was given.
    pub since: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ProbeAnswer {
    /// What to pass as `since` to the project's next cost probe.
    pub cost_cursor: Option<String>,
}

/// What a worker project's status, cost or schedule probe answered on the worker, taken as a
/// local probe's answer is.
#[utoipa::path(post, path = "/api/v1/worker/probes", tag = "workers", request_body = ProbeBody,
    params(("Agent-OS-Worker-Protocol" = String, Header, description = "the worker protocol spoken: 1")),
    responses((status = 200, body = ProbeAnswer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "no such worker for this token, or no such project", body = ErrorBody), (status = 409, description = "the project is not served by workers", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn probe(
    State(st): State<AppState>,
    caller: WorkerCaller,
    JsonBody(body): JsonBody<ProbeBody>,
) -> ApiResult<Json<ProbeAnswer>> {
    caller.require(&body.project)?;
    let kind = match body.kind.parse::<ProbeKind>() {
        Ok(k @ (ProbeKind::Status | ProbeKind::Cost | ProbeKind::Schedule)) => k,
        _ => {
            return Err(
                ApiError::bad_request(format!("kind is status, cost or schedule, not {:?}", body.kind)).field("kind")
            );
        }
    };
    let answer = match (body.answer, body.error) {
        (Some(a), None) if !a.is_null() => Ok(a),
        (None, Some(e)) => {
            text_length("error", &e, 1, 64 * 1024)?;
            Err(e)
        }
        _ => {
            return Err(ApiError::bad_request(
                "give either the probe's answer (what it printed, parsed) or its error, not both or neither",
            )
            .field("answer"));
        }
    };
    if let Some(s) = &body.since {
        text_length("since", s, 0, 1024)?;
    }
    if body.duration_ms < 0 {
        return Err(ApiError::bad_request("duration_ms is 0 or more").field("duration_ms"));
    }
    let worker = st.engine.worker(&caller.0, &body.worker_id).await?;
    let cost_cursor =
        st.engine.worker_probe(&worker, &body.project, kind, answer, body.duration_ms, body.since.as_deref()).await?;
    Ok(Json(ProbeAnswer { cost_cursor }))
}

/// An attempt a worker runs.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkerAttemptView {
    pub run_id: String,
    pub project: String,
    pub task: String,
    pub attempt: i64,
    pub started_at: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkerView {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub version: String,
    pub capacity: i64,
    /// The projects it serves, as its last hello said.
    pub projects: Vec<String>,
    /// Heard from within `workers.lost_after`.
    pub connected: bool,
    pub first_seen: String,
    pub last_contact: String,
    pub running: Vec<WorkerAttemptView>,
}

impl WorkerView {
    pub fn new(w: WorkerRecord, connected: bool, running: Vec<WorkerAttemptView>) -> Self {
        WorkerView {
            id: w.id,
            name: w.name,
            hostname: w.hostname,
            version: w.version,
            capacity: w.capacity,
            projects: w.projects,
            connected,
            first_seen: time(w.first_seen),
            last_contact: time(w.last_contact),
            running,
        }
    }
}

/// The workers that have said hello, whether each is connected, and what each runs (admin).
#[utoipa::path(get, path = "/api/v1/workers", tag = "workers", responses((status = 200, body = [WorkerView]), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_workers(State(st): State<AppState>, caller: crate::auth::Caller) -> ApiResult<Json<Vec<WorkerView>>> {
    caller.require_admin()?;
    let states = st.engine.workers().await?;
    Ok(Json(
        states
            .into_iter()
            .map(|s| {
                let running = s
                    .running
                    .into_iter()
                    .map(|(run, a)| WorkerAttemptView {
                        run_id: run.id,
                        project: run.project,
                        task: run.task,
                        attempt: a.attempt,
                        started_at: time(a.started_at),
                    })
                    .collect();
                WorkerView::new(s.worker, s.connected, running)
            })
            .collect(),
    ))
}
