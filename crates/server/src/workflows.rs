//! Events, workflows and workflow runs over `/api/v1`, and `POST /hooks/{workflow}`: an inbound
//! webhook, signed per Standard Webhooks with a secret from Agent OS's own environment, that
//! starts a workflow without a bearer token. Workflows span projects, so changing or starting
//! them needs the admin token; any token may read them.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use agent_os_core::workflow::Decision;
use agent_os_core::workflow::{
    Action, ActionKind, InputType, StepStatus, Trigger, TriggerKind, Wait, Workflow, WorkflowRunStatus,
};
use agent_os_engine::engine::workflows::approvals::Decide;
use agent_os_engine::engine::workflows::{LoadedWorkflow, StartWorkflow};
use agent_os_engine::secrets::verify_webhook;
use agent_os_store::{ApprovalRecord, StepRecord, WorkflowRunRecord};

use crate::auth::Caller;
use crate::body::{ApiQuery, JsonBody, OptionalJson};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use crate::routes::{EventView, scoped_project};
use crate::views;
use crate::{AppState, limit};

// Events -----------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmitBody {
    /// Dotted lower-case words, e.g. `trading.volatility_spike`. A project's (or run's) token
    /// may only emit types that start with its project's name and a dot.
    #[serde(rename = "type")]
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]*(\\.[a-z0-9][a-z0-9_-]*)+$", max_length = 128)]
    pub kind: String,
    /// A JSON object (default `{}`), at most 256 KiB.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// 1 to 100 characters. The same key from the same caller (the admin token, or a project's
    /// tokens) stores the event once; a repeat answers with the earlier event.
    #[schema(min_length = 1, max_length = 100)]
    pub idempotency_key: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct EmittedEvent {
    #[serde(flatten)]
    pub event: EventView,
    /// True when an earlier event with the same idempotency key stands for this one; it is the
    /// event returned.
    pub duplicate: bool,
}

fn event_view(e: agent_os_store::EventRecord) -> EventView {
    EventView {
        data: serde_json::from_str(&e.data).unwrap_or(Value::Null),
        at: views::time(e.at),
        id: e.id,
        kind: e.kind,
        project: e.project,
        subject: e.subject,
    }
}

/// Emit an event: the workflows it triggers start. `201` with the stored event; `200` with
/// `duplicate: true` and the earlier event when the idempotency key was seen before.
#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = EmitBody, responses((status = 201, body = EmittedEvent), (status = 200, body = EmittedEvent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn emit_event(
    State(st): State<AppState>,
    caller: Caller,
    JsonBody(b): JsonBody<EmitBody>,
) -> ApiResult<(StatusCode, Json<EmittedEvent>)> {
    let project = scoped_project(&st, &caller, None).await?;
    if let Some(p) = &project {
        let prefix = format!("{p}.");
        if !b.kind.starts_with(&prefix) {
            return Err(ApiError::forbidden(format!(
                "this token may only emit events of project {p:?}, whose types start with {prefix:?}; got {:?}",
                b.kind
            ))
            .field("type"));
        }
    }
    let key = match b.idempotency_key {
        None => None,
        Some(k) if k.is_empty() || k.chars().count() > 100 => {
            return Err(ApiError::bad_request("idempotency_key: 1 to 100 characters").field("idempotency_key"));
        }
        // Keys are per caller, so one project's key never answers with another's event (nor
        // with an event Agent OS emitted under a key of its own).
        Some(k) => Some(match &project {
            Some(p) => format!("project:{p}:{k}"),
            None => format!("admin:{k}"),
        }),
    };
    let data = b.data.unwrap_or_else(|| json!({}));
    let (event, stored) = st.engine.emit_event(project.as_deref(), &b.kind, data, key).await?;
    let status = if stored { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(EmittedEvent { event: event_view(event), duplicate: !stored })))
}

// Workflows --------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkflowView {
    pub name: String,
    pub description: String,
    /// What starts it, one line per trigger: `event trading.volatility_spike`,
    /// `schedule */15 * * * * Europe/Berlin`, `webhook`, `manual`, `workflow nightly-backup`.
    pub triggers: Vec<String>,
    pub step_count: usize,
    /// The file it was loaded from.
    pub file: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkflowDetail {
    #[serde(flatten)]
    pub workflow: WorkflowView,
    /// The file's text as loaded.
    pub text: String,
    /// The inputs of a manual start.
    pub inputs: Vec<WorkflowInputView>,
    pub steps: Vec<WorkflowStepDef>,
    /// Where a signed webhook starts it (workflows with a webhook trigger).
    pub webhook_path: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkflowInputView {
    pub name: String,
    /// `string`, `number`, `integer`, `boolean`, `object` or `array`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: InputType,
    pub required: bool,
    /// The value used when the input is not given: any JSON value, or null for none.
    pub default: Option<Value>,
    pub description: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkflowStepDef {
    pub id: String,
    pub needs: Vec<String>,
    /// `run`, `emit`, `wait`, `workflow` or `notify`.
    #[schema(value_type = String)]
    pub kind: ActionKind,
    /// What it acts on: `cortana.query_memories` (run), the event type (emit), `10m` or
    /// `event trading.*` (wait), the workflow's name (workflow), the title (notify).
    pub target: String,
    /// The step's `if:` as written.
    #[serde(rename = "if")]
    pub condition: Option<String>,
    /// The list a step runs once per item of, as written.
    pub for_each: Option<String>,
    /// How many items of a for_each run at a time.
    pub max_parallel: Option<u32>,
}

/// One line per trigger, as a person would say it.
fn trigger_summary(t: &Trigger) -> String {
    match t {
        Trigger::Event { pattern, filter } => {
            format!("event {pattern}{}", if filter.is_some() { " (filtered)" } else { "" })
        }
        Trigger::Schedule { cron, timezone, .. } => format!("schedule {} {}", cron.source(), timezone.name()),
        Trigger::Webhook { .. } | Trigger::Manual => t.kind().to_string(),
        Trigger::Workflow { name, statuses } if statuses.is_empty() => format!("workflow {name}"),
        Trigger::Workflow { name, statuses } => {
            let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
            format!("workflow {name} ({})", statuses.join(", "))
        }
    }
}

fn workflow_view(w: &LoadedWorkflow) -> WorkflowView {
    WorkflowView {
        name: w.def.name.clone(),
        description: w.def.description.clone(),
        triggers: w.def.triggers.iter().map(trigger_summary).collect(),
        step_count: w.def.steps.len(),
        file: w.path.display().to_string(),
    }
}

/// The `if:` and `for_each:` of each step as the file writes them (the plan keeps them only
/// parsed), by step id. Steps may be a list of objects with an `id` or a map by id.
fn written_expressions(text: &str) -> HashMap<String, (Option<String>, Option<String>)> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Object(m) => m.get("items").and_then(scalar),
            other => Some(other.to_string()),
        }
    }
    let Ok(doc) = agent_os_core::yaml::parse::<Value>("workflow.yaml", text) else { return HashMap::new() };
    let steps: Vec<(String, &Value)> = match &doc["steps"] {
        Value::Array(list) => list.iter().filter_map(|s| Some((s["id"].as_str()?.to_string(), s))).collect(),
        Value::Object(map) => map.iter().map(|(id, s)| (id.clone(), s)).collect(),
        _ => Vec::new(),
    };
    steps.into_iter().map(|(id, s)| (id, (scalar(&s["if"]), scalar(&s["for_each"])))).collect()
}

pub(crate) fn step_defs(def: &Workflow, text: &str) -> Vec<WorkflowStepDef> {
    let written = written_expressions(text);
    def.steps
        .iter()
        .map(|s| {
            let target = match &s.action {
                Action::Run { project, task, .. } => format!("{project}.{task}"),
                Action::Emit { event_type, .. } => event_type.clone(),
                Action::Wait(Wait::Duration(d)) => agent_os_core::format_duration(*d),
                Action::Wait(Wait::Event { pattern, .. }) => format!("event {pattern}"),
                Action::Workflow { name, .. } => name.clone(),
                Action::Notify { title, .. } => title.clone(),
                Action::Approval(a) => a.message.clone(),
            };
            let (condition, for_each) = written.get(&s.id).cloned().unwrap_or_default();
            WorkflowStepDef {
                id: s.id.clone(),
                needs: s.needs.clone(),
                kind: s.action.kind(),
                target,
                condition: condition.or_else(|| s.condition.as_ref().map(|_| "(a condition)".into())),
                for_each: for_each.or_else(|| s.for_each.as_ref().map(|_| "(a list)".into())),
                max_parallel: s.for_each.as_ref().map(|f| f.max_parallel),
            }
        })
        .collect()
}

fn workflow_detail(w: &LoadedWorkflow) -> WorkflowDetail {
    let def = &w.def;
    WorkflowDetail {
        workflow: workflow_view(w),
        text: w.source.clone(),
        inputs: def
            .inputs
            .iter()
            .map(|(name, d)| WorkflowInputView {
                name: name.clone(),
                kind: d.kind,
                required: d.required,
                default: d.default.clone(),
                description: d.description.clone(),
            })
            .collect(),
        steps: step_defs(def, &w.source),
        webhook_path: def
            .triggers
            .iter()
            .any(|t| matches!(t, Trigger::Webhook { .. }))
            .then(|| format!("/hooks/{}", agent_os_core::url::encode_component(&def.name))),
    }
}

/// The loaded workflows, by name.
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows", responses((status = 200, body = [WorkflowView])), security(("bearer" = [])))]
pub async fn list_workflows(State(st): State<AppState>, _caller: Caller) -> Json<Vec<WorkflowView>> {
    Json(st.engine.workflow_list().iter().map(|w| workflow_view(w)).collect())
}

/// One workflow: its triggers, inputs, steps and file text.
#[utoipa::path(get, path = "/api/v1/workflows/{name}", tag = "workflows", params(("name" = String, Path)), responses((status = 200, body = WorkflowDetail), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_workflow(
    State(st): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<WorkflowDetail>> {
    let w = st.engine.workflow(&name)?;
    Ok(Json(workflow_detail(&w)))
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkflowsReloaded {
    /// The workflows loaded now.
    pub workflows: Vec<String>,
    /// The files that could not be loaded; a workflow whose file broke keeps its last good
    /// version.
    pub errors: Vec<WorkflowLoadError>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkflowLoadError {
    pub file: String,
    /// Every problem in the file, with its place.
    pub message: String,
}

/// Re-read the workflow files (admin). `200` either way, with the files that could not be
/// loaded.
#[utoipa::path(post, path = "/api/v1/workflows/reload", tag = "workflows", responses((status = 200, body = WorkflowsReloaded), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn reload_workflows(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<WorkflowsReloaded>> {
    caller.require_admin()?;
    let errors = st.engine.load_workflows().await?;
    Ok(Json(WorkflowsReloaded {
        workflows: st.engine.workflow_list().iter().map(|w| w.def.name.clone()).collect(),
        errors: errors
            .into_iter()
            .map(|e| WorkflowLoadError { file: e.path.display().to_string(), message: e.message })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    /// The file's name, for the error messages; its stem must be the workflow's name. Nothing
    /// is read from it. 1 to 255 characters, not only spaces.
    #[schema(min_length = 1, max_length = 255, pattern = "\\S")]
    pub file: String,
    /// The file's text.
    pub text: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkflowValid {
    /// True.
    pub valid: bool,
    /// The workflow's name.
    pub workflow: String,
}

#[derive(Serialize, ToSchema)]
pub struct WorkflowInvalid {
    /// False.
    pub valid: bool,
    /// Every problem, one per line, with file:line:column, the field path and a hint.
    pub errors: String,
    /// The same in the API's error shape (code `invalid_workflow`).
    pub error: ErrorDetail,
}

fn invalid_workflow(errors: String) -> Response {
    let error = ErrorDetail {
        code: "invalid_workflow".into(),
        message: errors.clone(),
        field: None,
        errors: Vec::new(),
        request_id: None,
    };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(WorkflowInvalid { valid: false, errors, error })).into_response()
}

/// Check a workflow file against the registered projects and the loaded workflows (admin),
/// without loading it: `200` when it is valid, `422` with every error otherwise.
#[utoipa::path(post, path = "/api/v1/workflows/validate", tag = "workflows", request_body = ValidateBody, responses((status = 200, body = WorkflowValid), (status = 422, body = WorkflowInvalid), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn validate_workflow(
    State(st): State<AppState>,
    caller: Caller,
    JsonBody(b): JsonBody<ValidateBody>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    crate::body::text_length("file", &b.file, 1, 255)?;
    let def = match st.engine.validate_workflow(&b.file, &b.text).await {
        Ok(def) => def,
        Err(errors) => return Ok(invalid_workflow(errors)),
    };
    // Loading names a workflow after its file; say so now rather than at the next reload.
    let stem = std::path::Path::new(&b.file).file_stem().map(|s| s.to_string_lossy().into_owned());
    if stem.as_deref() != Some(def.name.as_str()) {
        return Ok(invalid_workflow(format!(
            "{}: declares name {:?}; name the file {}.yaml",
            b.file, def.name, def.name
        )));
    }
    Ok(Json(WorkflowValid { valid: true, workflow: def.name }).into_response())
}

// Workflow runs ----------------------------------------------------------------------------

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkflowRunView {
    pub id: String,
    pub workflow: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`, `timed_out` or `skipped`.
    #[schema(value_type = String)]
    pub status: WorkflowRunStatus,
    /// `event`, `webhook`, `schedule`, `manual` or `workflow`.
    #[schema(value_type = String)]
    pub trigger: TriggerKind,
    /// What started it (an event id, a webhook id, a parent step); one run per key.
    pub trigger_key: Option<String>,
    /// The event that started it (`type`, `data`, …), or null.
    #[schema(value_type = Option<Object>)]
    pub event: Value,
    #[schema(value_type = Object)]
    pub inputs: Value,
    /// The run's outputs once it succeeded (any JSON value its `outputs:` make), or null.
    pub outputs: Value,
    pub error: Option<String>,
    pub concurrency_key: Option<String>,
    /// The run whose step started this one (a sub-workflow).
    pub parent_run_id: Option<String>,
    pub parent_step: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// When it times out, if it has a timeout.
    pub deadline_at: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkflowRunDetail {
    #[serde(flatten)]
    pub run: WorkflowRunView,
    /// The steps begun so far, in the order they began; a for_each step has a row for itself
    /// and one per item.
    pub steps: Vec<WorkflowStepView>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WorkflowStepView {
    pub step_id: String,
    /// The item of a for_each (from 0); null for the step itself.
    pub item: Option<i64>,
    /// `running`, `waiting`, `retrying`, `succeeded`, `failed`, `skipped` or `cancelled`.
    #[schema(value_type = String)]
    pub status: StepStatus,
    pub attempt: i64,
    /// The task run of a `run` step.
    pub task_run_id: Option<String>,
    /// The workflow run of a `workflow` step.
    pub child_run_id: Option<String>,
    /// What the step produced (any JSON value), or null.
    pub outputs: Value,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// When a waiting or retrying step is looked at again (an approval step: when its
    /// timeout decides it).
    pub wake_at: Option<String>,
    /// The decision on an approval step, once taken; null otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalView>,
}

/// Who decided an approval step, when, and with what.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ApprovalView {
    /// `approved` or `rejected`.
    #[schema(value_type = String)]
    pub decision: Decision,
    /// `admin` (the API or the CLI), the dashboard's user, `signed link` or `timeout`.
    pub decided_by: String,
    pub decided_at: String,
    pub comment: Option<String>,
    /// The form's answers, with defaults filled in.
    #[schema(value_type = Object)]
    pub inputs: Value,
}

impl From<ApprovalRecord> for ApprovalView {
    fn from(a: ApprovalRecord) -> Self {
        ApprovalView {
            decision: a.decision,
            decided_by: a.decided_by,
            decided_at: views::time(a.decided_at),
            comment: a.comment,
            inputs: json_or_null(Some(&a.inputs)),
        }
    }
}

fn json_or_null(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null)
}

fn run_view(r: WorkflowRunRecord) -> WorkflowRunView {
    WorkflowRunView {
        event: json_or_null(r.event.as_deref()),
        inputs: json_or_null(Some(&r.inputs)),
        outputs: json_or_null(r.outputs.as_deref()),
        id: r.id,
        workflow: r.workflow,
        status: r.status,
        trigger: r.trigger,
        trigger_key: r.trigger_key,
        error: r.error,
        concurrency_key: r.concurrency_key,
        parent_run_id: r.parent_run_id,
        parent_step: r.parent_step,
        created_at: views::time(r.created_at),
        started_at: r.started_at.map(views::time),
        finished_at: r.finished_at.map(views::time),
        deadline_at: r.deadline_at.map(views::time),
    }
}

fn step_view(s: StepRecord) -> WorkflowStepView {
    WorkflowStepView {
        item: (s.item >= 0).then_some(s.item),
        outputs: json_or_null(s.outputs.as_deref()),
        step_id: s.step_id,
        status: s.status,
        attempt: s.attempt,
        task_run_id: s.task_run_id,
        child_run_id: s.child_run_id,
        error: s.error,
        started_at: s.started_at.map(views::time),
        finished_at: s.finished_at.map(views::time),
        wake_at: s.wake_at.map(views::time),
        approval: None,
    }
}

pub(crate) async fn run_detail(st: &AppState, run: WorkflowRunRecord) -> ApiResult<WorkflowRunDetail> {
    let steps = st.engine.store().workflow_steps(&run.id).await?;
    let mut approvals = st.engine.store().workflow_approvals(&run.id).await?;
    let steps = steps
        .into_iter()
        .map(|s| {
            let whole = s.item < 0;
            let id = s.step_id.clone();
            let mut v = step_view(s);
            if whole && let Some(i) = approvals.iter().position(|a| a.step_id == id) {
                v.approval = Some(approvals.swap_remove(i).into());
            }
            v
        })
        .collect();
    Ok(WorkflowRunDetail { run: run_view(run), steps })
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct StartWorkflowBody {
    /// The workflow's inputs, a JSON object (checked against its declarations; defaults filled
    /// in).
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<Value>,
}

/// Start a run of a workflow that has a `manual` trigger (admin). `409` for a workflow without
/// one.
#[utoipa::path(post, path = "/api/v1/workflows/{name}/runs", tag = "workflows", params(("name" = String, Path)), request_body(content = Option<StartWorkflowBody>, description = "optional: without one, the run has no inputs but the defaults"), responses((status = 201, body = WorkflowRunView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn start_workflow(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    OptionalJson(b): OptionalJson<StartWorkflowBody>,
) -> ApiResult<(StatusCode, Json<WorkflowRunView>)> {
    caller.require_admin()?;
    let w = st.engine.workflow(&name)?;
    if !w.def.manual() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "workflow {name:?} has no manual trigger; add `on: {{ manual: {{}} }}` to {} to start it by hand",
                w.path.display()
            ),
        ));
    }
    let inputs = b.unwrap_or_default().inputs.unwrap_or_else(|| json!({}));
    let start = StartWorkflow { trigger: TriggerKind::Manual, inputs, trigger_key: None, event: None, parent: None };
    let run = st.engine.start_workflow(&name, start).await?;
    Ok((StatusCode::CREATED, Json(run_view(run))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRunQuery {
    /// Only this workflow's runs.
    pub workflow: Option<String>,
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Workflow runs, newest first (admin: a run carries data of every project it touched).
#[utoipa::path(get, path = "/api/v1/workflows/runs", tag = "workflows", params(WorkflowRunQuery), responses((status = 200, body = [WorkflowRunView]), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_workflow_runs(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<WorkflowRunQuery>,
) -> ApiResult<Json<Vec<WorkflowRunView>>> {
    caller.require_admin()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 500").field("limit"));
    }
    let runs = st.engine.store().list_workflow_runs(q.workflow.as_deref(), false, limit).await?;
    Ok(Json(runs.into_iter().map(run_view).collect()))
}

/// One workflow run with its steps (admin).
#[utoipa::path(get, path = "/api/v1/workflows/runs/{id}", tag = "workflows", params(("id" = String, Path)), responses((status = 200, body = WorkflowRunDetail), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_workflow_run(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkflowRunDetail>> {
    caller.require_admin()?;
    let run = st
        .engine
        .store()
        .get_workflow_run(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no workflow run {id:?}")))?;
    Ok(Json(run_detail(&st, run).await?))
}

/// Wait for a workflow run to end (admin): answers as soon as it ends, or after `timeout`
/// (default 30s, at most 5m) with the run as it stands; check its status.
#[utoipa::path(get, path = "/api/v1/workflows/runs/{id}/wait", tag = "workflows", params(("id" = String, Path), crate::routes::WaitQuery), responses((status = 200, description = "The run with its steps, ended or not (check status)", body = WorkflowRunDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn wait_workflow_run(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<crate::routes::WaitQuery>,
) -> ApiResult<Json<WorkflowRunDetail>> {
    caller.require_admin()?;
    let timeout = crate::routes::wait_timeout(q.timeout.as_deref())?;
    let run = st.engine.wait_workflow_run(&id, timeout).await?;
    Ok(Json(run_detail(&st, run).await?))
}

/// Cancel a workflow run (admin): its running task runs are cancelled, the rest does not start.
/// A run that has ended is returned as it is.
#[utoipa::path(post, path = "/api/v1/workflows/runs/{id}/cancel", tag = "workflows", params(("id" = String, Path)), responses((status = 200, body = WorkflowRunDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn cancel_workflow_run(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkflowRunDetail>> {
    caller.require_admin()?;
    let run = st.engine.cancel_workflow_run(&id).await?;
    Ok(Json(run_detail(&st, run).await?))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// Who decides (1 to 100 characters, not only spaces), recorded on the step; default: the
    /// token's kind (`admin`), as for acknowledging an incident.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub by: Option<String>,
    /// Why, in a sentence (at most 2000 characters); recorded on the step.
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
    /// The answers to the step's form, a JSON object (checked against its types; a number,
    /// integer or boolean field also takes a string that reads as one).
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<Value>,
}

async fn decide(
    st: &AppState,
    caller: &Caller,
    id: &str,
    step: &str,
    decision: Decision,
    b: Option<DecideBody>,
) -> ApiResult<Json<WorkflowRunDetail>> {
    // A decision is the admin's: a project's token must not approve its own deploy.
    caller.require_admin()?;
    let b = b.unwrap_or_default();
    let by = b.by.unwrap_or_else(|| caller.label());
    crate::body::text_length("by", &by, 1, 100)?;
    let d = Decide { decision, by: by.trim().to_string(), comment: b.comment, inputs: b.inputs.unwrap_or(Value::Null) };
    st.engine.decide_approval(id, step, d).await?;
    let run = st
        .engine
        .store()
        .get_workflow_run(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no workflow run {id:?}")))?;
    Ok(Json(run_detail(st, run).await?))
}

/// Approve a waiting `approval` step (admin): the step succeeds with the decision and the
/// form's answers as its outputs, and the run goes on. `400` naming the field for an answer the
/// form does not take; `409` when the step is not waiting (with who decided, if someone did).
#[utoipa::path(post, path = "/api/v1/workflows/runs/{id}/steps/{step}/approve", tag = "workflows", params(("id" = String, Path), ("step" = String, Path)), request_body(content = Option<DecideBody>, description = "optional: a comment and the form's answers"), responses((status = 200, body = WorkflowRunDetail), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn approve_step(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
    OptionalJson(b): OptionalJson<DecideBody>,
) -> ApiResult<Json<WorkflowRunDetail>> {
    decide(&st, &caller, &id, &step, Decision::Approved, b).await
}

/// Reject a waiting `approval` step (admin): the step fails (`rejected by …`), so the steps
/// that need it are skipped unless it has `continue_on_error`. `409` when it is not waiting.
#[utoipa::path(post, path = "/api/v1/workflows/runs/{id}/steps/{step}/reject", tag = "workflows", params(("id" = String, Path), ("step" = String, Path)), request_body(content = Option<DecideBody>, description = "optional: a comment and the form's answers"), responses((status = 200, body = WorkflowRunDetail), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn reject_step(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
    OptionalJson(b): OptionalJson<DecideBody>,
) -> ApiResult<Json<WorkflowRunDetail>> {
    decide(&st, &caller, &id, &step, Decision::Rejected, b).await
}

// Inbound webhooks -------------------------------------------------------------------------

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WebhookAccepted {
    /// True when this webhook id was received before: nothing was started again.
    pub duplicate: bool,
    /// The run it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// Every refusal reads the same, so a sender cannot tell an unknown workflow, a missing secret
/// and a bad signature apart; the log says which it was.
fn refused() -> ApiError {
    ApiError::unauthorized(
        "webhook refused: send a JSON body signed per Standard Webhooks (webhook-id, webhook-timestamp within 5 minutes, webhook-signature) with the workflow's secret",
    )
}

/// Start a workflow from a webhook signed per Standard Webhooks (no bearer token): the
/// `webhook-signature` header holds one or more `v1,<base64 HMAC-SHA256>` of
/// `"<webhook-id>.<webhook-timestamp>.<body>"` under the secret in the environment variable its
/// `webhook` trigger names. The body, a JSON object, is the event's `data`. `202` with the run;
/// `200` with `duplicate: true` for a webhook id seen before; `401` for anything unverified;
/// `429` (with `Retry-After`) after too many unverified ones from one client or for one workflow.
#[utoipa::path(post, path = "/hooks/{workflow}", tag = "workflows", params(("workflow" = String, Path), ("webhook-id" = String, Header), ("webhook-timestamp" = i64, Header, description = "seconds since the epoch"), ("webhook-signature" = String, Header, description = "space-separated `v1,<base64>` entries")), request_body(content = Object, description = "a JSON object: the event's data"), responses((status = 202, body = WebhookAccepted), (status = 200, body = WebhookAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn receive_webhook(
    State(st): State<AppState>,
    limit::Client(client): limit::Client,
    Path(workflow): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // Failures count per workflow (its secret); names that are no workflow share one count,
    // so made-up names cannot fill the limiter.
    let credential = if st.engine.workflow(&workflow).is_ok() { workflow.as_str() } else { "(no such workflow)" };
    if let Err(refused) = st.webhook_failures.check(client, credential, Instant::now()) {
        let wait = refused.retry_after_secs();
        let whom = match refused.over {
            limit::Over::Client => "from this address",
            limit::Over::Credential => "for this workflow",
            limit::Over::Total => "in all",
        };
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many webhooks that did not verify {whom} in the last minute; try again in {wait} s"),
        )
        .into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
        return resp;
    }
    match verify_and_start(&st, &workflow, &headers, body).await {
        Ok(accepted) => accepted.into_response(),
        Err(e) => {
            if e.status == StatusCode::UNAUTHORIZED {
                st.webhook_failures.note_failure(client, credential, Instant::now());
            }
            e.into_response()
        }
    }
}

async fn verify_and_start(
    st: &AppState,
    workflow: &str,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> ApiResult<(StatusCode, Json<WebhookAccepted>)> {
    let body = crate::body::within_limit(headers, body, st.max_body_bytes).await?;

    let refuse = |why: &str| {
        tracing::info!(workflow = %workflow, reason = why, "webhook refused");
        refused()
    };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let (Some(id), Some(timestamp), Some(signatures)) =
        (text("webhook-id"), text("webhook-timestamp"), text("webhook-signature"))
    else {
        return Err(refuse("a webhook-id, webhook-timestamp or webhook-signature header is missing"));
    };
    if id.len() > 200 {
        return Err(refuse("the webhook-id is longer than 200 bytes"));
    }
    let Ok(timestamp) = timestamp.parse::<i64>() else {
        return Err(refuse("the webhook-timestamp is not a number of seconds"));
    };
    let Ok(w) = st.engine.workflow(workflow) else { return Err(refuse("no such workflow")) };
    let secret_envs: Vec<&str> = w
        .def
        .triggers
        .iter()
        .filter_map(|t| match t {
            Trigger::Webhook { secret_env } => Some(secret_env.as_str()),
            _ => None,
        })
        .collect();
    if secret_envs.is_empty() {
        return Err(refuse("the workflow has no webhook trigger"));
    }
    let now_s = st.engine.now().div_euclid(1000);
    let mut why = String::new();
    let mut verified = false;
    for env in secret_envs {
        match std::env::var(env) {
            Ok(secret) if !secret.trim().is_empty() => {
                match verify_webhook(secret.trim(), id, timestamp, &body, signatures, now_s) {
                    Ok(()) => {
                        verified = true;
                        break;
                    }
                    Err(e) => why = e,
                }
            }
            _ => {
                tracing::warn!(
                    workflow = %workflow,
                    variable = env,
                    "the webhook secret's environment variable is not set in Agent OS's environment; its webhooks are refused"
                );
                why = format!("{env} is not set");
            }
        }
    }
    if !verified {
        return Err(refuse(&why));
    }

    // Only a verified sender learns what is wrong with its body.
    crate::body::require_json(headers)?;
    let data: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Err(ApiError::bad_request("the body must be a JSON object").field("body")),
        Err(e) => return Err(ApiError::bad_request(format!("invalid JSON body: {e}")).field("body")),
    };
    // The run's trigger key is the webhook id: a replay finds the run it started (and a start
    // that failed stores nothing, so the sender's retry can succeed).
    let start = StartWorkflow {
        trigger: TriggerKind::Webhook,
        trigger_key: Some(format!("webhook:{id}")),
        event: Some(json!({"type": "webhook", "id": id, "data": data})),
        inputs: json!({}),
        parent: None,
    };
    let (run, created) = st.engine.start_workflow_once(workflow, start).await?;
    if !created {
        return Ok((StatusCode::OK, Json(WebhookAccepted { duplicate: true, run_id: Some(run.id) })));
    }
    Ok((StatusCode::ACCEPTED, Json(WebhookAccepted { duplicate: false, run_id: Some(run.id) })))
}
