//! The tools: their definitions (name, description, input schema, annotations) and calls.
//!
//! Each input is a Rust type with `deny_unknown_fields`, so its JSON Schema (generated from
//! the same type that reads the arguments) says `additionalProperties: false` and a misspelt
//! argument is refused by name rather than ignored. A refusal, an API error or an unreachable
//! server is a tool result with `isError: true` whose text says what to change; a protocol
//! error is left for an unknown tool name alone.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{Api, ApiRequest, Verb};
use crate::{items, render};

/// A tool's answer: the text an agent reads, and the same data as structured content (an
/// object).
pub(crate) struct Reply {
    text: String,
    data: Value,
}

/// Why a tool call did nothing (or stopped part way): shown to the agent as a tool error.
pub(crate) enum Failure {
    /// The arguments are wrong; the message names the argument and the fix.
    Input(String),
    /// The API answered with an error: its status and error body.
    Api { status: u16, body: Value, request: String },
    /// The API could not be asked.
    Unreachable(String),
}

impl Failure {
    fn into_result(self, tool: &str) -> CallToolResult {
        let (text, data) = match self {
            Failure::Input(message) => {
                (format!("{tool}: {message}"), json!({ "error": { "code": "invalid_arguments", "message": message } }))
            }
            Failure::Api { status, body, request } => {
                let err = &body["error"];
                let message = err["message"].as_str().unwrap_or("the request failed");
                let mut text = format!("{tool}: {request} answered {status}: {message}");
                if let Some(field) = err["field"].as_str() {
                    text.push_str(&format!(" (field: {field})"));
                }
                if let Some(errors) = err["errors"].as_array() {
                    for e in errors.iter().take(20) {
                        text.push_str(&format!(
                            "\n  {}:{}:{}: {}",
                            e["file"].as_str().unwrap_or(""),
                            e["line"],
                            e["column"],
                            e["message"].as_str().unwrap_or("")
                        ));
                        if let Some(hint) = e["hint"].as_str() {
                            text.push_str(&format!(" (hint: {hint})"));
                        }
                    }
                }
                let data = match body {
                    Value::Object(_) => json!({ "status": status, "error": body["error"].clone() }),
                    other => json!({ "status": status, "error": { "message": other.to_string() } }),
                };
                (text, data)
            }
            Failure::Unreachable(message) => {
                (format!("{tool}: {message}"), json!({ "error": { "code": "unreachable", "message": message } }))
            }
        };
        let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
        result.structured_content = Some(data);
        result
    }
}

type Outcome = Result<Reply, Failure>;

/// The caller's view of the API for one tool call.
struct Cx<'a, A> {
    api: &'a A,
    from: Option<&'a http::request::Parts>,
}

const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait a tool asks for (the API's own bound on a wait).
const MAX_WAIT: Duration = Duration::from_secs(300);

impl<A: Api> Cx<'_, A> {
    async fn send(&self, verb: Verb, path: String, body: Option<Value>, timeout: Duration) -> Result<Value, Failure> {
        let request = format!("{} {}", verb.as_str(), path.split('?').next().unwrap_or(&path));
        let answer =
            self.api.send(ApiRequest { verb, path, body, timeout }, self.from).await.map_err(Failure::Unreachable)?;
        if (200..300).contains(&answer.status) {
            Ok(answer.body)
        } else {
            Err(Failure::Api { status: answer.status, body: answer.body, request })
        }
    }

    async fn get(&self, path: String) -> Result<Value, Failure> {
        self.send(Verb::Get, path, None, CALL_TIMEOUT).await
    }

    async fn post(&self, path: String, body: Value) -> Result<Value, Failure> {
        self.send(Verb::Post, path, Some(body), CALL_TIMEOUT).await
    }

    /// A GET whose answer may be held up to `wait` (the API's long polls).
    async fn wait(&self, path: String, wait: Duration) -> Result<Value, Failure> {
        self.send(Verb::Get, path, None, wait + CALL_TIMEOUT).await
    }
}

// Arguments ---------------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverviewArgs {
    /// How far back to look for failed runs and spending: a duration such as `12h` or `7d`, or
    /// an RFC 3339 time or a date. Default `24h`.
    since: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectArgs {
    /// The project's name, as `list_projects` shows it.
    name: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectFilter {
    /// Only this project (a project token sees its own project only).
    project: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckFilter {
    /// Only this project (a project token sees its own project only).
    project: Option<String>,
    /// Only the checks carrying this tag (the manifest's `tags:`), across projects.
    tag: Option<String>,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRunsArgs {
    /// Only this project's runs.
    project: Option<String>,
    /// Only runs of this task.
    task: Option<String>,
    /// Only runs in this state.
    status: Option<RunStatus>,
    /// Only runs queued or finished since then: a duration back from now (`12h`, `7d`) or an
    /// RFC 3339 time or a date.
    since: Option<String>,
    /// At most this many runs, newest first. Default 20.
    #[schemars(range(min = 1, max = 500))]
    limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    /// The run's id.
    id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunLogArgs {
    /// The run's id.
    id: String,
    /// The last this many lines of its output. Default 100.
    #[schemars(range(min = 1, max = 2000))]
    lines: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRunArgs {
    /// The project whose task to run.
    project: String,
    /// The task's name, as the project's detail lists it.
    task: String,
    /// The run's input, an object the task receives.
    input: Option<JsonObject>,
    /// Wait up to this long for the run to end (such as `30s` or `5m`, at most `5m`); without
    /// it the call answers as soon as the run is queued.
    wait: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRunArgs {
    /// The run's id.
    id: String,
    /// Must be `true` to cancel. Without it the call only says what would be cancelled.
    #[serde(default)]
    confirm: bool,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Project,
    Service,
    Key,
    Model,
    Day,
    Month,
}

impl GroupBy {
    fn as_str(self) -> &'static str {
        match self {
            GroupBy::Project => "project",
            GroupBy::Service => "service",
            GroupBy::Key => "key",
            GroupBy::Model => "model",
            GroupBy::Day => "day",
            GroupBy::Month => "month",
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CostArgs {
    /// How to group the totals. Default `project`.
    by: Option<GroupBy>,
    /// From then: a duration back from now (`24h`, `30d`) or an RFC 3339 time or a date.
    /// Default: everything recorded.
    since: Option<String>,
    /// Until then (an RFC 3339 time or a date). Default: now.
    until: Option<String>,
    /// Only this project.
    project: Option<String>,
    /// Only this service (such as `openai`).
    service: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentArgs {
    /// Only open incidents (default) or, with `false`, resolved ones too.
    open: Option<bool>,
    /// Only this project's incidents.
    project: Option<String>,
    /// At most this many, newest first. Default 50.
    #[schemars(range(min = 1, max = 500))]
    limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AckArgs {
    /// The incident's id.
    id: String,
    /// Who acknowledges it, shown with the incident (default: the token's own label).
    by: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmitArgs {
    /// The event's type, dotted: `<project>.<name>` such as `scraper.finished`.
    #[serde(rename = "type")]
    kind: String,
    /// The event's data, an object workflows read as `event.data`.
    data: Option<JsonObject>,
    /// The same key sent again stores the event once (1 to 100 characters).
    idempotency_key: Option<String>,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyArgs {
    /// The notification's title.
    title: String,
    /// Its text.
    body: Option<String>,
    /// Default `info`.
    severity: Option<Severity>,
    /// The project it is about (a project token's own by default).
    project: Option<String>,
    /// Tags the channels' routes may match.
    tags: Option<Vec<String>>,
    /// Notifications with the same key stand for one another while the first is recent.
    dedup_key: Option<String>,
    /// The same key sent again stores and sends the notification once.
    idempotency_key: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateArgs {
    /// The workflow file's YAML text.
    text: String,
    /// The file's name, used in the errors' places; a workflow's file is named after it.
    /// Default: `<name>.yaml` from the text's `name:`.
    file: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartWorkflowArgs {
    /// The workflow's name, as `list_workflows` shows it.
    name: String,
    /// The run's inputs, by the names the workflow declares.
    inputs: Option<JsonObject>,
    /// Wait up to this long for the run to end (such as `1m`, at most `5m`).
    wait: Option<String>,
}

// The table ---------------------------------------------------------------------------------

/// What a tool does to the world, for its annotations.
#[derive(Clone, Copy)]
enum Effect {
    /// Reads only.
    Read,
    /// Adds or starts something; nothing is lost. `idempotent`: the same call twice is one.
    /// `open_world`: it reaches beyond Agent OS (a project's task, a chat channel).
    Write { idempotent: bool, open_world: bool },
    /// Stops or removes something that cannot be had back.
    Destructive { idempotent: bool },
}

struct Def {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    schema: fn() -> Result<Arc<JsonObject>, String>,
    effect: Effect,
}

fn schema<T: JsonSchema + 'static>() -> Result<Arc<JsonObject>, String> {
    rmcp::handler::server::tool::schema_for_input::<T>()
}

const DEFS: &[Def] = &[
    Def {
        name: "overview",
        title: "Is everything OK?",
        description: "One answer to \"is everything OK?\" across every project: each project's health and why, open incidents, late or down checks and schedules, budgets near or over their limit, runs that failed since a time, and what was spent since then by project.",
        schema: schema::<OverviewArgs>,
        effect: Effect::Read,
    },
    Def {
        name: "list_projects",
        title: "Projects",
        description: "The registered projects with their tasks, schedules and how they are reached.",
        schema: schema::<NoArgs>,
        effect: Effect::Read,
    },
    Def {
        name: "get_project",
        title: "A project",
        description: "One project in detail: its tasks, schedules, probes, declared keys, and its health with the reasons and recent history.",
        schema: schema::<ProjectArgs>,
        effect: Effect::Read,
    },
    Def {
        name: "list_schedules",
        title: "Schedules",
        description: "Every schedule of every project, wherever it is kept (Agent OS, Railway cron, launchd, crontab), with the next fire times, its state, whether it is late or down, and its last run.",
        schema: schema::<ProjectFilter>,
        effect: Effect::Read,
    },
    Def {
        name: "list_checks",
        title: "Heartbeat checks",
        description: "The heartbeat checks (jobs that ping Agent OS when they run) with their state: new, up, late or down, the last ping and their tags; by project or by tag.",
        schema: schema::<CheckFilter>,
        effect: Effect::Read,
    },
    Def {
        name: "list_runs",
        title: "Runs",
        description: "Runs of tasks, newest first, filtered by project, task, state and time (`since: \"12h\"` for what happened overnight).",
        schema: schema::<ListRunsArgs>,
        effect: Effect::Read,
    },
    Def {
        name: "get_run",
        title: "A run",
        description: "One run: its state, input, outputs, exit code, error, timing, resources and attempts.",
        schema: schema::<RunArgs>,
        effect: Effect::Read,
    },
    Def {
        name: "run_log",
        title: "A run's log",
        description: "The last lines of a run's output (stdout and stderr, with secrets already redacted by Agent OS).",
        schema: schema::<RunLogArgs>,
        effect: Effect::Read,
    },
    Def {
        name: "start_run",
        title: "Start a run",
        description: "Starts a task of a project with an optional input object. With `wait`, answers when the run ends (or the wait is over) with its outcome; without, as soon as it is queued. The project's task runs as it would from the dashboard: its resources, budget and retries apply.",
        schema: schema::<StartRunArgs>,
        effect: Effect::Write { idempotent: false, open_world: true },
    },
    Def {
        name: "cancel_run",
        title: "Cancel a run",
        description: "Cancels a queued or running run (its process is stopped). Does nothing unless `confirm` is `true`: without it, says which run would be cancelled.",
        schema: schema::<CancelRunArgs>,
        effect: Effect::Destructive { idempotent: true },
    },
    Def {
        name: "cost_summary",
        title: "Spending",
        description: "What the projects spent, totalled by project, service, key, model, day or month, for a time range, in each currency.",
        schema: schema::<CostArgs>,
        effect: Effect::Read,
    },
    Def {
        name: "list_budgets",
        title: "Budgets",
        description: "The budgets with what was spent in the current period, the percentage of the limit, the forecast for the period and whether a project is paused by one.",
        schema: schema::<ProjectFilter>,
        effect: Effect::Read,
    },
    Def {
        name: "list_incidents",
        title: "Incidents",
        description: "Incidents (a failing task, a down check, an unhealthy project, a budget crossed, a channel that cannot deliver), open ones by default, with whether each was acknowledged.",
        schema: schema::<IncidentArgs>,
        effect: Effect::Read,
    },
    Def {
        name: "ack_incident",
        title: "Acknowledge an incident",
        description: "Acknowledges an open incident, so its reminders stop; it stays open until what caused it recovers.",
        schema: schema::<AckArgs>,
        effect: Effect::Write { idempotent: true, open_world: false },
    },
    Def {
        name: "list_resources",
        title: "Shared resources",
        description: "The named resources (such as `openai`) that keep API-heavy jobs from colliding: their limits, who holds them now and who waits.",
        schema: schema::<NoArgs>,
        effect: Effect::Read,
    },
    Def {
        name: "emit_event",
        title: "Emit an event",
        description: "Emits an event (such as `scraper.finished`); workflows whose trigger matches it start. With an `idempotency_key`, sending it again stores it once.",
        schema: schema::<EmitArgs>,
        effect: Effect::Write { idempotent: false, open_world: false },
    },
    Def {
        name: "send_notification",
        title: "Send a notification",
        description: "Sends a notification to the configured channels (Discord, Slack, e-mail, webhooks) by their routes. With an `idempotency_key`, sending it again sends it once.",
        schema: schema::<NotifyArgs>,
        effect: Effect::Write { idempotent: false, open_world: true },
    },
    Def {
        name: "list_workflows",
        title: "Workflows",
        description: "The loaded workflows with their triggers and step counts.",
        schema: schema::<NoArgs>,
        effect: Effect::Read,
    },
    Def {
        name: "validate_workflow",
        title: "Validate a workflow",
        description: "Checks a workflow file's YAML text as the server would load it, without loading it: valid, or every problem with its line, column and a hint.",
        schema: schema::<ValidateArgs>,
        effect: Effect::Read,
    },
    Def {
        name: "start_workflow",
        title: "Start a workflow run",
        description: "Starts a run of a workflow that has a manual trigger, with its inputs. With `wait`, answers when the run ends (or the wait is over).",
        schema: schema::<StartWorkflowArgs>,
        effect: Effect::Write { idempotent: false, open_world: true },
    },
];

/// Every tool's name, in the order `tools/list` gives them.
pub const TOOL_NAMES: &[&str] = &[
    "overview",
    "list_projects",
    "get_project",
    "list_schedules",
    "list_checks",
    "list_runs",
    "get_run",
    "run_log",
    "start_run",
    "cancel_run",
    "cost_summary",
    "list_budgets",
    "list_incidents",
    "ack_incident",
    "list_resources",
    "emit_event",
    "send_notification",
    "list_workflows",
    "validate_workflow",
    "start_workflow",
];

fn annotations(def: &Def) -> ToolAnnotations {
    let a = ToolAnnotations::with_title(def.title);
    match def.effect {
        Effect::Read => a.read_only(true).open_world(false),
        Effect::Write { idempotent, open_world } => {
            a.read_only(false).destructive(false).idempotent(idempotent).open_world(open_world)
        }
        Effect::Destructive { idempotent } => {
            a.read_only(false).destructive(true).idempotent(idempotent).open_world(false)
        }
    }
}

/// The tools as `tools/list` gives them. A schema that cannot be made (a defect the unit tests
/// catch) leaves its tool out rather than failing the list.
pub fn tool_list() -> Vec<Tool> {
    DEFS.iter()
        .filter_map(|def| {
            let schema = (def.schema)().ok()?;
            Some(Tool::new(def.name, def.description, schema).with_title(def.title).with_annotations(annotations(def)))
        })
        .collect()
}

/// The arguments as `T`, or a refusal naming the argument and what it must be.
fn parse<T: DeserializeOwned>(args: Value) -> Result<T, Failure> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            Failure::Input(format!("invalid arguments: {inner}"))
        } else {
            Failure::Input(format!("invalid argument `{path}`: {inner}"))
        }
    })
}

/// Calls the tool `name`; `None` when there is no such tool.
pub(crate) async fn call<A: Api>(
    api: &A,
    from: Option<&http::request::Parts>,
    name: &str,
    args: Value,
) -> Option<CallToolResult> {
    let cx = Cx { api, from };
    let outcome = match name {
        "overview" => overview(&cx, args).await,
        "list_projects" => list_projects(&cx, args).await,
        "get_project" => get_project(&cx, args).await,
        "list_schedules" => list_schedules(&cx, args).await,
        "list_checks" => list_checks(&cx, args).await,
        "list_runs" => list_runs(&cx, args).await,
        "get_run" => get_run(&cx, args).await,
        "run_log" => run_log(&cx, args).await,
        "start_run" => start_run(&cx, args).await,
        "cancel_run" => cancel_run(&cx, args).await,
        "cost_summary" => cost_summary(&cx, args).await,
        "list_budgets" => list_budgets(&cx, args).await,
        "list_incidents" => list_incidents(&cx, args).await,
        "ack_incident" => ack_incident(&cx, args).await,
        "list_resources" => list_resources(&cx, args).await,
        "emit_event" => emit_event(&cx, args).await,
        "send_notification" => send_notification(&cx, args).await,
        "list_workflows" => list_workflows(&cx, args).await,
        "validate_workflow" => validate_workflow(&cx, args).await,
        "start_workflow" => start_workflow(&cx, args).await,
        _ => return None,
    };
    Some(match outcome {
        Ok(reply) => {
            let mut result = CallToolResult::success(vec![ContentBlock::text(reply.text)]);
            result.structured_content = Some(reply.data);
            result
        }
        Err(failure) => failure.into_result(name),
    })
}

// Paths and times ---------------------------------------------------------------------------

/// A path segment, percent-encoded.
fn seg(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A query string from the pairs whose value is set.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let set: Vec<String> = pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", seg(v)))).collect();
    if set.is_empty() { String::new() } else { format!("?{}", set.join("&")) }
}

/// `since` as a time: a duration back from now, or an RFC 3339 time, or a date (UTC midnight).
fn since_time(arg: &str, text: &str) -> Result<jiff::Timestamp, Failure> {
    let text = text.trim();
    if let Ok(d) = agent_os_core::parse_duration(text) {
        let back = jiff::SignedDuration::try_from(d).ok();
        return back
            .and_then(|b| jiff::Timestamp::now().checked_sub(b).ok())
            .and_then(|t| t.round(jiff::Unit::Second).ok())
            .ok_or_else(|| Failure::Input(format!("`{arg}`: {text:?} reaches too far back")));
    }
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    if let Ok(z) = text.parse::<jiff::civil::Date>().and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC)) {
        return Ok(z.timestamp());
    }
    Err(Failure::Input(format!(
        "`{arg}`: {text:?} is neither a duration (such as 12h or 7d) nor an RFC 3339 time (such as 2026-12-06T08:00:00Z) nor a date (2026-12-06)"
    )))
}

fn wait_arg(text: Option<&str>) -> Result<Option<Duration>, Failure> {
    let Some(text) = text else { return Ok(None) };
    let d = agent_os_core::parse_duration(text.trim())
        .map_err(|e| Failure::Input(format!("`wait`: {e} (such as 30s or 5m)")))?;
    if d > MAX_WAIT {
        return Err(Failure::Input(format!(
            "`wait`: {text} is longer than the 5m a call may wait; wait 5m and ask `get_run` again"
        )));
    }
    Ok(Some(d))
}

fn time_of(v: &Value) -> Option<jiff::Timestamp> {
    v.as_str().and_then(|t| t.parse().ok())
}

/// A list the API answers at `path`: its lines as text, and under `key` as structured content
/// (which must be an object).
async fn listing<A: Api>(cx: &Cx<'_, A>, path: String, key: &str, render: fn(&[Value]) -> String) -> Outcome {
    let list = cx.get(path).await?;
    Ok(Reply { text: render(items(&list)), data: json!({ key: list }) })
}

// Reading -----------------------------------------------------------------------------------

/// Runs matching `filter` queued or finished since `since`, newest first: the API's pages are
/// followed (its `next` cursor) until runs are older than `since` or `limit` are found. The
/// flag says more runs match than were returned.
async fn runs_since<A: Api>(
    cx: &Cx<'_, A>,
    filter: &[(&str, Option<String>)],
    since: Option<jiff::Timestamp>,
    limit: usize,
) -> Result<(Vec<Value>, bool), Failure> {
    let mut found = Vec::new();
    let mut before: Option<String> = None;
    // Without `since`, one page one larger than asked tells whether more match.
    let page = if since.is_some() { 100 } else { (limit + 1).clamp(1, 500) };
    loop {
        let mut pairs = filter.to_vec();
        pairs.push(("limit", Some(page.to_string())));
        pairs.push(("before", before.clone()));
        let list = cx.get(format!("/api/v1/runs{}", query(&pairs))).await?;
        let mut older = false;
        for run in items(&list["runs"]) {
            let queued = time_of(&run["queued_at"]);
            let finished = time_of(&run["finished_at"]);
            let recent = match since {
                None => true,
                Some(s) => queued.is_some_and(|q| q >= s) || finished.is_some_and(|f| f >= s),
            };
            if since.is_some_and(|s| queued.is_some_and(|q| q < s)) {
                older = true;
            }
            if recent {
                if found.len() == limit {
                    return Ok((found, true));
                }
                found.push(run.clone());
            }
        }
        before = list["next"].as_str().map(str::to_string);
        if older || before.is_none() || since.is_none() {
            return Ok((found, false));
        }
    }
}

async fn overview<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: OverviewArgs = parse(args)?;
    let since_text = a.since.unwrap_or_else(|| "24h".into());
    let since = since_time("since", &since_text)?;

    let projects = cx.get("/api/v1/projects".into()).await?;
    let mut health = Vec::new();
    for p in items(&projects) {
        let name = p["name"].as_str().unwrap_or_default();
        let h = cx.get(format!("/api/v1/projects/{}/health?history=0", seg(name))).await?;
        health.push(json!({ "project": name, "state": h["state"], "reasons": h["reasons"] }));
    }
    let incidents = cx.get("/api/v1/incidents?open=true&limit=100".into()).await?;
    let checks = cx.get("/api/v1/checks".into()).await?;
    let bad_checks: Vec<Value> =
        items(&checks).iter().filter(|c| matches!(c["state"].as_str(), Some("late" | "down"))).cloned().collect();
    let schedules = cx.get("/api/v1/schedules".into()).await?;
    let bad_schedules: Vec<Value> = items(&schedules)
        .iter()
        .filter(|s| s["late"].as_bool() == Some(true) || s["down"].as_bool() == Some(true))
        .cloned()
        .collect();
    let budgets = cx.get("/api/v1/budgets".into()).await?;
    let near: Vec<Value> = items(&budgets)
        .iter()
        .filter(|b| b["percent"].as_f64().is_some_and(|p| p >= 80.0) || !b["paused"].is_null())
        .cloned()
        .collect();
    let mut failed = Vec::new();
    let mut more = false;
    for status in ["failed", "timed_out"] {
        let (runs, truncated) = runs_since(cx, &[("status", Some(status.into()))], Some(since), 100).await?;
        failed.extend(runs);
        more |= truncated;
    }
    failed.sort_by(|a, b| b["queued_at"].as_str().cmp(&a["queued_at"].as_str()));
    let spent = cx
        .get(format!(
            "/api/v1/costs/summary{}",
            query(&[("by", Some("project".into())), ("from", Some(since.to_string()))])
        ))
        .await?;

    let unhealthy: Vec<&Value> =
        health.iter().filter(|h| matches!(h["state"].as_str(), Some("degraded" | "down"))).collect();
    let open = items(&incidents);
    let ok = unhealthy.is_empty()
        && open.is_empty()
        && bad_checks.is_empty()
        && bad_schedules.is_empty()
        && near.is_empty()
        && failed.is_empty();
    let data = json!({
        "ok": ok,
        "since": since.to_string(),
        "projects": health,
        "open_incidents": open,
        "late_or_down_checks": bad_checks,
        "late_or_down_schedules": bad_schedules,
        "budgets_near_limit": near,
        "failed_runs": failed,
        "failed_runs_truncated": more,
        "spent": spent,
    });
    Ok(Reply { text: render::overview(&data, &since_text), data })
}

async fn list_projects<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let _: NoArgs = parse(args)?;
    listing(cx, "/api/v1/projects".into(), "projects", render::projects).await
}

async fn get_project<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: ProjectArgs = parse(args)?;
    let project = cx.get(format!("/api/v1/projects/{}", seg(&a.name))).await?;
    let health = cx.get(format!("/api/v1/projects/{}/health?history=10", seg(&a.name))).await?;
    let text = render::project(&project, &health);
    Ok(Reply { text, data: json!({ "project": project, "health": health }) })
}

async fn list_schedules<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: ProjectFilter = parse(args)?;
    listing(cx, format!("/api/v1/schedules{}", query(&[("project", a.project)])), "schedules", render::schedules).await
}

async fn list_checks<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: CheckFilter = parse(args)?;
    listing(cx, format!("/api/v1/checks{}", query(&[("project", a.project), ("tag", a.tag)])), "checks", render::checks)
        .await
}

async fn list_runs<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: ListRunsArgs = parse(args)?;
    let limit = a.limit.unwrap_or(20);
    if !(1..=500).contains(&limit) {
        return Err(Failure::Input("`limit` must be between 1 and 500".into()));
    }
    let since = a.since.as_deref().map(|s| since_time("since", s)).transpose()?;
    let filter = [("project", a.project), ("task", a.task), ("status", a.status.map(|s| s.as_str().to_string()))];
    let (runs, more) = runs_since(cx, &filter, since, limit as usize).await?;
    let text = render::runs(&runs, more);
    Ok(Reply { text, data: json!({ "runs": runs, "more": more }) })
}

async fn get_run<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: RunArgs = parse(args)?;
    let run = cx.get(format!("/api/v1/runs/{}", seg(&a.id))).await?;
    Ok(Reply { text: render::run(&run), data: json!({ "run": run }) })
}

/// The most log a tool answer carries, whatever `lines` asks.
const LOG_BYTES: usize = 64 * 1024;
/// The most chunks read to find a log's end.
const LOG_PAGES: usize = 50;

async fn run_log<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: RunLogArgs = parse(args)?;
    let want = a.lines.unwrap_or(100).clamp(1, 2000) as usize;
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut partial = String::new();
    let mut after = 0i64;
    let mut finished = false;
    let mut dropped = 0i64;
    for _ in 0..LOG_PAGES {
        let page = cx.get(format!("/api/v1/runs/{}/logs?after={after}&limit=1000", seg(&a.id))).await?;
        finished = page["finished"].as_bool().unwrap_or(false);
        dropped = page["dropped_bytes"].as_i64().unwrap_or(0);
        let chunks = items(&page["chunks"]);
        for c in chunks {
            partial.push_str(c["data"].as_str().unwrap_or_default());
            while let Some(i) = partial.find('\n') {
                let line: String = partial.drain(..=i).collect();
                tail.push_back(line.trim_end_matches(['\n', '\r']).to_string());
                if tail.len() > want {
                    tail.pop_front();
                }
            }
        }
        after = page["next_after"].as_i64().unwrap_or(after);
        if chunks.len() < 1000 {
            break;
        }
    }
    if !partial.is_empty() {
        tail.push_back(partial);
        if tail.len() > want {
            tail.pop_front();
        }
    }
    let mut lines: Vec<String> = tail.into();
    let mut bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    while bytes > LOG_BYTES && !lines.is_empty() {
        bytes -= lines.remove(0).len() + 1;
    }
    let text = render::log(&a.id, &lines, finished, dropped);
    Ok(Reply { text, data: json!({ "run_id": a.id, "lines": lines, "finished": finished, "dropped_bytes": dropped }) })
}

// Acting ------------------------------------------------------------------------------------

async fn start_run<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: StartRunArgs = parse(args)?;
    let wait = wait_arg(a.wait.as_deref())?;
    let mut body = json!({ "project": a.project, "task": a.task, "trigger": "mcp" });
    if let Some(input) = a.input {
        body["input"] = Value::Object(input);
    }
    let mut run = cx.post("/api/v1/runs".into(), body).await?;
    if let (Some(wait), Some(id)) = (wait, run["id"].as_str().map(str::to_string)) {
        let timeout = agent_os_core::format_duration(wait);
        run = cx.wait(format!("/api/v1/runs/{}/wait?timeout={}", seg(&id), seg(&timeout)), wait).await?;
    }
    Ok(Reply { text: format!("Started.\n{}", render::run(&run)), data: json!({ "run": run }) })
}

async fn cancel_run<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: CancelRunArgs = parse(args)?;
    if !a.confirm {
        let run = cx.get(format!("/api/v1/runs/{}", seg(&a.id))).await?;
        let text = format!(
            "Nothing was cancelled. This would cancel:\n{}\nCall cancel_run again with `confirm: true` to cancel it.",
            render::run(&run)
        );
        return Ok(Reply { text, data: json!({ "cancelled": false, "run": run }) });
    }
    let run = cx.post(format!("/api/v1/runs/{}/cancel", seg(&a.id)), json!({})).await?;
    Ok(Reply {
        text: format!("Cancel requested.\n{}", render::run(&run)),
        data: json!({ "cancelled": true, "run": run }),
    })
}

async fn cost_summary<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: CostArgs = parse(args)?;
    let from = a.since.as_deref().map(|s| since_time("since", s)).transpose()?;
    let to = a.until.as_deref().map(|s| since_time("until", s)).transpose()?;
    let pairs = [
        ("by", Some(a.by.unwrap_or(GroupBy::Project).as_str().to_string())),
        ("from", from.map(|t| t.to_string())),
        ("to", to.map(|t| t.to_string())),
        ("project", a.project),
        ("service", a.service),
    ];
    let summary = cx.get(format!("/api/v1/costs/summary{}", query(&pairs))).await?;
    Ok(Reply { text: render::costs(&summary), data: summary })
}

async fn list_budgets<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: ProjectFilter = parse(args)?;
    listing(cx, format!("/api/v1/budgets{}", query(&[("project", a.project)])), "budgets", render::budgets).await
}

async fn list_incidents<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: IncidentArgs = parse(args)?;
    let limit = a.limit.unwrap_or(50);
    let pairs = [
        ("open", Some(a.open.unwrap_or(true).to_string())),
        ("project", a.project),
        ("limit", Some(limit.to_string())),
    ];
    listing(cx, format!("/api/v1/incidents{}", query(&pairs)), "incidents", render::incidents).await
}

async fn ack_incident<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: AckArgs = parse(args)?;
    let body = match a.by {
        Some(by) => json!({ "by": by }),
        None => json!({}),
    };
    let incident = cx.post(format!("/api/v1/incidents/{}/ack", seg(&a.id)), body).await?;
    let text = format!("Acknowledged.\n{}", render::incidents(std::slice::from_ref(&incident)));
    Ok(Reply { text, data: json!({ "incident": incident }) })
}

async fn list_resources<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let _: NoArgs = parse(args)?;
    listing(cx, "/api/v1/resources".into(), "resources", render::resources).await
}

async fn emit_event<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: EmitArgs = parse(args)?;
    let mut body = json!({ "type": a.kind });
    if let Some(data) = a.data {
        body["data"] = Value::Object(data);
    }
    if let Some(key) = a.idempotency_key {
        body["idempotency_key"] = Value::String(key);
    }
    let event = cx.post("/api/v1/events".into(), body).await?;
    let text = if event["duplicate"].as_bool() == Some(true) {
        format!(
            "Already emitted (same idempotency key): event {} {}",
            event["id"].as_str().unwrap_or("?"),
            event["type"].as_str().unwrap_or("")
        )
    } else {
        format!("Emitted event {} {}", event["id"].as_str().unwrap_or("?"), event["type"].as_str().unwrap_or(""))
    };
    Ok(Reply { text, data: json!({ "event": event }) })
}

async fn send_notification<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: NotifyArgs = parse(args)?;
    let mut body = json!({ "title": a.title, "body": a.body.unwrap_or_default() });
    if let Some(s) = a.severity {
        body["severity"] = json!(s.as_str());
    }
    for (key, value) in [("project", a.project), ("dedup_key", a.dedup_key), ("idempotency_key", a.idempotency_key)] {
        if let Some(v) = value {
            body[key] = Value::String(v);
        }
    }
    if let Some(tags) = a.tags {
        body["tags"] = json!(tags);
    }
    let sent = cx.post("/api/v1/notifications".into(), body).await?;
    Ok(Reply { text: render::notification(&sent), data: json!({ "notification": sent }) })
}

async fn list_workflows<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let _: NoArgs = parse(args)?;
    listing(cx, "/api/v1/workflows".into(), "workflows", render::workflows).await
}

/// The file a workflow's text belongs in when the caller names none: `<name>.yaml` after its
/// top-level `name:`, as loading requires, else `workflow.yaml`.
fn workflow_file(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("name:"))
        .map(|n| n.split('#').next().unwrap_or_default().trim().trim_matches(['"', '\'']))
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)))
        .map_or_else(|| "workflow.yaml".to_string(), |n| format!("{n}.yaml"))
}

async fn validate_workflow<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: ValidateArgs = parse(args)?;
    let file = a.file.unwrap_or_else(|| workflow_file(&a.text));
    match cx.post("/api/v1/workflows/validate".into(), json!({ "file": file, "text": a.text })).await {
        Ok(v) => Ok(Reply {
            text: format!("Valid: workflow {:?} in {file}.", v["workflow"].as_str().unwrap_or("")),
            data: json!({ "valid": true, "workflow": v["workflow"], "file": file }),
        }),
        // An invalid file is this tool's answer, not its failure.
        Err(Failure::Api { status: 422, body, .. }) if body["valid"] == json!(false) => {
            let errors = body["errors"].as_str().unwrap_or_default().to_string();
            let text = format!("Not valid ({file}):\n{errors}");
            Ok(Reply { text, data: json!({ "valid": false, "file": file, "errors": errors }) })
        }
        Err(other) => Err(other),
    }
}

async fn start_workflow<A: Api>(cx: &Cx<'_, A>, args: Value) -> Outcome {
    let a: StartWorkflowArgs = parse(args)?;
    let wait = wait_arg(a.wait.as_deref())?;
    let body = json!({ "inputs": a.inputs.map(Value::Object).unwrap_or_else(|| json!({})) });
    let mut run = cx.post(format!("/api/v1/workflows/{}/runs", seg(&a.name)), body).await?;
    if let (Some(wait), Some(id)) = (wait, run["id"].as_str().map(str::to_string)) {
        let timeout = agent_os_core::format_duration(wait);
        let detail =
            cx.wait(format!("/api/v1/workflows/runs/{}/wait?timeout={}", seg(&id), seg(&timeout)), wait).await?;
        run = detail;
    }
    Ok(Reply { text: render::workflow_run(&run), data: json!({ "workflow_run": run }) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_strict_schema_and_a_call() {
        let tools = tool_list();
        assert_eq!(tools.len(), DEFS.len(), "a tool's input schema could not be made");
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, TOOL_NAMES);
        for t in &tools {
            assert_eq!(t.input_schema.get("type"), Some(&json!("object")), "{}", t.name);
            assert_eq!(t.input_schema.get("additionalProperties"), Some(&json!(false)), "{} is not strict", t.name);
        }
    }

    #[test]
    fn annotations_say_what_a_tool_does() {
        let by_name = |n: &str| tool_list().into_iter().find(|t| t.name == n).and_then(|t| t.annotations);
        let cancel = by_name("cancel_run").unwrap();
        assert_eq!((cancel.read_only_hint, cancel.destructive_hint), (Some(false), Some(true)));
        let overview = by_name("overview").unwrap();
        assert_eq!(overview.read_only_hint, Some(true));
        let start = by_name("start_run").unwrap();
        assert_eq!(
            (start.read_only_hint, start.destructive_hint, start.idempotent_hint),
            (Some(false), Some(false), Some(false))
        );
    }

    #[test]
    fn since_reads_durations_times_and_dates() {
        let now = jiff::Timestamp::now();
        let t = since_time("since", "12h").ok().unwrap();
        let back = now.as_second() - t.as_second();
        assert!((43_190..=43_210).contains(&back), "{back}");
        assert_eq!(since_time("since", "2026-12-06T08:00:00Z").ok().unwrap().to_string(), "2026-12-06T08:00:00Z");
        assert_eq!(since_time("since", "2026-12-06").ok().unwrap().to_string(), "2026-12-06T00:00:00Z");
        let Err(Failure::Input(m)) = since_time("since", "yesterday") else { panic!("accepted") };
        assert!(m.contains("`since`") && m.contains("12h"), "{m}");
    }

    #[test]
    fn a_wrong_argument_is_named() {
        let Err(Failure::Input(m)) = parse::<ListRunsArgs>(json!({ "limit": "x" })) else { panic!("accepted") };
        assert!(m.starts_with("invalid argument `limit`: invalid type: string"), "{m}");
        let Err(Failure::Input(m)) = parse::<ListRunsArgs>(json!({ "status": "broken" })) else { panic!("accepted") };
        assert!(m.contains("`status`") && m.contains("timed_out"), "{m}");
        let Err(Failure::Input(m)) = parse::<ListRunsArgs>(json!({ "colour": 1 })) else { panic!("accepted") };
        assert!(m.contains("unknown field `colour`"), "{m}");
    }

    #[test]
    fn wait_is_bounded() {
        assert_eq!(wait_arg(Some("30s")).ok().unwrap(), Some(Duration::from_secs(30)));
        assert!(matches!(wait_arg(Some("10m")), Err(Failure::Input(m)) if m.contains("5m")));
        assert!(matches!(wait_arg(Some("soon")), Err(Failure::Input(m)) if m.contains("`wait`")));
    }

    #[test]
    fn a_workflow_file_is_named_after_its_workflow() {
        assert_eq!(workflow_file("# c\nname: market-watch  # why\non: {}\n"), "market-watch.yaml");
        assert_eq!(workflow_file("name: \"nightly\"\n"), "nightly.yaml");
        assert_eq!(workflow_file("steps: []\n"), "workflow.yaml");
        assert_eq!(workflow_file("name: ../../etc\n"), "workflow.yaml");
    }

    #[test]
    fn queries_encode_their_values() {
        assert_eq!(query(&[("a", None), ("b", Some("x y&z".into()))]), "?b=x%20y%26z");
        assert_eq!(query(&[("a", None)]), "");
        assert_eq!(seg("a/b"), "a%2Fb");
    }
}
