//! Workflows: every loaded workflow with its last run, the files that failed to load and why;
//! a workflow's page with its steps drawn as a graph (server-rendered SVG), its inputs, a form
//! that starts it by hand and its recent runs; and a run's page, where the graph and the steps
//! table follow the run's step states live.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use serde_json::{Map, Value};

use agent_os_core::url::encode_component as urlencode;
use agent_os_core::workflow::{ActionKind, InputType, StepStatus, TriggerKind};

use super::session::Session;
use super::ui::{self, Nav, Page};
use super::{Fragment, PageResult};
use crate::AppState;
use crate::auth::Caller;
use crate::body::{ApiQuery, OptionalJson};
use crate::error::ApiError;
use crate::workflows::{
    self as wf, StartWorkflowBody, WorkflowInputView, WorkflowRunDetail, WorkflowRunQuery, WorkflowRunView,
    WorkflowStepDef, WorkflowStepView, WorkflowView,
};

/// Runs listed on the workflows page and on a workflow's page.
const RECENT_RUNS: i64 = 25;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/workflows", get(list))
        .route("/workflows/runs/{id}", get(run_page))
        .route("/workflows/runs/{id}/cancel", post(cancel))
        .route("/workflows/{name}", get(detail))
        .route("/workflows/{name}/run", post(start))
}

fn workflow_href(name: &str) -> String {
    format!("/workflows/{}", urlencode(name))
}

fn run_href(id: &str) -> String {
    format!("/workflows/runs/{}", urlencode(id))
}

async fn recent_runs(st: &AppState, workflow: Option<&str>, limit: i64) -> Result<Vec<WorkflowRunView>, ApiError> {
    let q = WorkflowRunQuery { workflow: workflow.map(str::to_string), limit: Some(limit) };
    Ok(wf::list_workflow_runs(State(st.clone()), Caller::Admin, ApiQuery(q)).await?.0)
}

// The list ---------------------------------------------------------------------------------

pub async fn list(State(st): State<AppState>, session: Session, fragment: Fragment) -> PageResult {
    let workflows = wf::list_workflows(State(st.clone()), Caller::Admin).await.0;
    let mut last: HashMap<String, WorkflowRunView> = HashMap::new();
    for w in &workflows {
        if let Some(r) = recent_runs(&st, Some(&w.name), 1).await?.into_iter().next() {
            last.insert(w.name.clone(), r);
        }
    }
    let runs = recent_runs(&st, None, RECENT_RUNS).await?;
    let broken = load_errors(&st).await;
    let dir = st.engine.config().workflows_dir.as_ref().map(|d| d.display().to_string());

    let table = if workflows.is_empty() {
        empty_workflows(dir.as_deref(), !broken.is_empty())
    } else {
        workflow_table(&workflows, &last)
    };
    let mut page = Page::new("Workflows", Nav::Workflows).live("workflows", table);
    if !broken.is_empty() {
        page = page.add(error_list(&broken));
    }
    Ok(page.add(html! { h2 { "Recent runs" } }).live("runs", run_table(&runs, true)).respond(&session, fragment.name()))
}

fn workflow_table(workflows: &[WorkflowView], last: &HashMap<String, WorkflowRunView>) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead { tr { th { "Workflow" } th { "Starts on" } th.num.hide-narrow { "Steps" } th { "Last run" } } }
                tbody {
                    @for w in workflows {
                        tr data-workflow=(w.name) {
                            td {
                                a href=(workflow_href(&w.name)) { (w.name) }
                                @if !w.description.is_empty() { br; span.small.muted { (w.description) } }
                            }
                            td.small { @for (i, t) in w.triggers.iter().enumerate() { @if i > 0 { br; } (t) } }
                            td.num.hide-narrow { (w.step_count) }
                            td {
                                @match last.get(&w.name) {
                                    Some(r) => {
                                        a href=(run_href(&r.id)) { (ui::badge(r.status)) }
                                        br; span.small.muted { (ui::time_str(&r.created_at)) }
                                    }
                                    None => span.muted { "never run" },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

const EXAMPLE: &str = "name: hello\ndescription: Say hello from a project's task\non:\n  manual:\n    inputs:\n      who: { type: string, default: world }\nsteps:\n  - id: greet\n    run: myproject.greet\n    with: { who: \"{{ inputs.who }}\" }\n  - id: announce\n    needs: [greet]\n    emit: { type: myproject.greeted }\n";

fn empty_workflows(dir: Option<&str>, some_broken: bool) -> Markup {
    ui::empty(
        if some_broken { "No workflow loaded: every workflow file has errors (below)." } else { "No workflows yet." },
        html! {
            "A workflow is a YAML file in "
            @match dir { Some(d) => code { (d) "/" }, None => code { "HOME/workflows/" } }
            " named after the workflow (" code { "NAME.yaml" } "); Agent OS picks up new and edited files within seconds. "
            "It chains projects' tasks, events, waits and notifications. A minimal one:"
            pre { code { (EXAMPLE) } }
            "See " code { "docs/workflows.md" } " for triggers (events, schedules, webhooks, by hand) and every kind of step, and check a file with "
            code { "agent-os workflow validate FILE" } "."
        },
    )
}

/// A workflow file that did not load, with each problem in it.
struct BrokenFile {
    file: String,
    /// Whether an earlier good version of it is still loaded.
    kept: bool,
    problems: Vec<Problem>,
}

struct Problem {
    place: String,
    message: String,
    hint: Option<String>,
}

/// The files in the workflows directory that do not load as they are now, checked the way the
/// loader checks them. The registry keeps only what loaded, so a file whose text is not the
/// loaded text is validated again here (a handful of small files, read on this page only).
async fn load_errors(st: &AppState) -> Vec<BrokenFile> {
    let Some(dir) = st.engine.config().workflows_dir.clone() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<std::path::PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let loaded = st.engine.workflow_list();
    let mut out = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let current = loaded.iter().find(|w| w.def.name == stem);
        if current.is_some_and(|w| w.path == path && w.source == text) {
            continue;
        }
        let file = path.display().to_string();
        let message = match st.engine.validate_workflow(&file, &text).await {
            Err(message) => message,
            Ok(def) if def.name != stem => {
                format!("{file}: declares name {:?}; name the file {}.yaml", def.name, def.name)
            }
            // Valid: the loader takes it on its next look.
            Ok(_) => continue,
        };
        out.push(BrokenFile { problems: problems(&file, &message), kept: current.is_some(), file });
    }
    out
}

/// Splits the loader's message (`FILE:LINE:COLUMN: message` lines, each maybe followed by an
/// indented `hint:` line) into its problems.
fn problems(file: &str, message: &str) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::new();
    for line in message.lines() {
        if line.starts_with(char::is_whitespace)
            && let Some(hint) = line.trim_start().strip_prefix("hint:")
            && let Some(last) = out.last_mut()
        {
            last.hint = Some(hint.trim().to_string());
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let rest = line.strip_prefix(file).and_then(|r| r.strip_prefix(':'));
        let problem = match rest {
            Some(rest) => {
                let mut parts = rest.splitn(3, ':');
                let (l, c, m) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());
                match (l.parse::<u64>(), c.parse::<u64>(), m) {
                    (Ok(l), Ok(c), Some(m)) => {
                        Problem { place: format!("{file}:{l}:{c}"), message: m.trim().to_string(), hint: None }
                    }
                    _ => Problem { place: file.to_string(), message: rest.trim().to_string(), hint: None },
                }
            }
            None => Problem { place: file.to_string(), message: line.trim().to_string(), hint: None },
        };
        out.push(problem);
    }
    out
}

fn error_list(broken: &[BrokenFile]) -> Markup {
    html! {
        section.workflow-errors aria-labelledby="wf-errors" {
            h2 id="wf-errors" { "Files that did not load" }
            p.small.muted { "Fix the file and save it; Agent OS tries it again within seconds." }
            @for b in broken {
                article.card data-file=(b.file) {
                    h3 { span.mono { (b.file) } (ui::badge(ui::Word::Error)) }
                    @if b.kept { p.small { "The last version that loaded is still in use until this one is fixed." } }
                    div.table-wrap {
                        table {
                            thead { tr { th { "Where" } th { "Problem and how to fix it" } } }
                            tbody {
                                @for p in &b.problems {
                                    tr {
                                        td.mono.small { (p.place) }
                                        td {
                                            (p.message)
                                            @if let Some(h) = &p.hint { br; span.small.muted { "Hint: " (h) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn took(r: &WorkflowRunView) -> Option<i64> {
    let start = r.started_at.as_deref()?.parse::<jiff::Timestamp>().ok()?;
    let end = r.finished_at.as_deref()?.parse::<jiff::Timestamp>().ok()?;
    Some(end.as_millisecond() - start.as_millisecond())
}

fn run_table(runs: &[WorkflowRunView], show_workflow: bool) -> Markup {
    if runs.is_empty() {
        return ui::empty(
            "No workflow runs yet.",
            html! { "A run starts when its trigger fires: an event, a schedule, a signed webhook, another workflow, or the Start run form on a workflow's page." },
        );
    }
    html! {
        div.table-wrap {
            table {
                thead {
                    tr {
                        th { "Run" }
                        @if show_workflow { th { "Workflow" } }
                        th { "State" } th.hide-narrow { "Trigger" } th { "Started" } th.num.hide-narrow { "Took" }
                    }
                }
                tbody {
                    @for r in runs {
                        tr data-run=(r.id) {
                            td.mono.small { a href=(run_href(&r.id)) { (r.id) } }
                            @if show_workflow { td { a href=(workflow_href(&r.workflow)) { (r.workflow) } } }
                            td { (ui::badge(r.status)) }
                            td.hide-narrow { (r.trigger) }
                            td { (ui::opt_time_str(r.started_at.as_deref().or(Some(r.created_at.as_str())))) }
                            td.num.hide-narrow { @if let Some(ms) = took(r) { (ui::duration_ms(ms)) } @else { span.muted { "—" } } }
                        }
                    }
                }
            }
        }
        @if runs.len() as i64 >= RECENT_RUNS {
            p.small.muted { "The " (RECENT_RUNS) " newest; " code { "agent-os workflow runs NAME" } " lists more." }
        }
    }
}

// A workflow --------------------------------------------------------------------------------

pub async fn detail(
    State(st): State<AppState>,
    session: Session,
    fragment: Fragment,
    Path(name): Path<String>,
) -> PageResult {
    let w = wf::get_workflow(State(st.clone()), Caller::Admin, Path(name.clone())).await?.0;
    let runs = recent_runs(&st, Some(&w.workflow.name), RECENT_RUNS).await?;
    // A trigger without details is summed up by its kind alone.
    let manual = w.workflow.triggers.iter().any(|t| t.parse() == Ok(TriggerKind::Manual));
    let nodes: Vec<dag::Node> = w
        .steps
        .iter()
        .map(|s| dag::Node { id: &s.id, needs: &s.needs, detail: format!("{} {}", s.kind, s.target), status: None })
        .collect();
    let about = html! {
        @if !w.workflow.description.is_empty() { p { (w.workflow.description) } }
        dl.facts {
            dt { "Starts on" }
            dd { @for (i, t) in w.workflow.triggers.iter().enumerate() { @if i > 0 { br; } (t) } }
            @if let Some(p) = &w.webhook_path { dt { "Webhook" } dd.mono { "POST " (p) } }
            dt { "File" } dd.mono { (w.workflow.file) }
        }
        h2 { "Steps" }
        (dag::render(&format!("Steps of workflow {}", w.workflow.name), &nodes))
        (step_def_table(&w.steps))
    };
    let start = html! {
        h2 id="start" { "Start a run" }
        @if manual {
            (start_form(&session, &w.workflow.name, &w.inputs))
        } @else {
            p.muted {
                "This workflow has no manual trigger, so it starts only on its triggers above. Add "
                code { "manual: {}" } " under " code { "on:" } " in its file to start it from here."
            }
        }
    };
    Ok(Page::new(w.workflow.name.clone(), Nav::Workflows)
        .add(about)
        .add(start)
        .add(html! { h2 { "Recent runs" } })
        .live("runs", run_table(&runs, false))
        .add(html! {
            details.source {
                summary { "The file" }
                pre { code { (w.text) } }
            }
        })
        .respond(&session, fragment.name()))
}

fn step_def_table(steps: &[WorkflowStepDef]) -> Markup {
    html! {
        details.dag-table {
            summary { "The steps as a table" }
            div.table-wrap {
                table {
                    thead { tr { th { "Step" } th { "Does" } th { "After" } th.hide-narrow { "Only if" } th.hide-narrow { "For each" } } }
                    tbody {
                        @for s in steps {
                            tr {
                                td.mono { (s.id) }
                                td { (s.kind) " " span.small { (s.target) } }
                                td { @if s.needs.is_empty() { span.muted { "the start" } } @else { (s.needs.join(", ")) } }
                                td.hide-narrow.mono.small { (s.condition.as_deref().unwrap_or("")) }
                                td.hide-narrow.mono.small {
                                    (s.for_each.as_deref().unwrap_or(""))
                                    @if let Some(n) = s.max_parallel { " (" (n) " at a time)" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The manual start: one typed field per declared input.
fn start_form(session: &Session, name: &str, inputs: &[WorkflowInputView]) -> Markup {
    html! {
        form.start-workflow.stack method="post" action={ (workflow_href(name)) "/run" } {
            (ui::csrf_field(session))
            @if inputs.is_empty() { p.small.muted { "It takes no inputs." } }
            @for i in inputs { (input_field(i)) }
            div.actions { button.primary type="submit" { "Start run" } }
        }
    }
}

fn input_field(i: &WorkflowInputView) -> Markup {
    let id = format!("input-{}", i.name);
    let name = format!("input.{}", i.name);
    let described = (!i.description.is_empty()).then(|| format!("{id}-about"));
    let default = i.default.as_ref().filter(|v| !v.is_null());
    let text = default.map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    html! {
        div.field {
            label for=(id) {
                span.mono { (i.name) }
                " " span.small.muted { (i.kind) }
                @if i.required { " " span.required { "(required)" } }
            }
            @match i.kind {
                InputType::Boolean => {
                    input type="checkbox" id=(id) name=(name) value="true" aria-describedby=[described.as_deref()]
                        checked[default == Some(&Value::Bool(true))];
                }
                InputType::Number | InputType::Integer => {
                    input type="number" id=(id) name=(name) step=(if i.kind == InputType::Integer { "1" } else { "any" })
                        value=[text.as_deref()] required[i.required] aria-describedby=[described.as_deref()];
                }
                InputType::Object | InputType::Array => {
                    textarea id=(id) name=(name) rows="3" required[i.required] aria-describedby=[described.as_deref()]
                        placeholder=(if i.kind == InputType::Object { "{\"key\": \"value\"}" } else { "[\"a\", \"b\"]" }) {
                        (text.as_deref().unwrap_or(""))
                    }
                }
                InputType::String => {
                    input type="text" id=(id) name=(name) value=[text.as_deref()] required[i.required]
                        aria-describedby=[described.as_deref()];
                }
            }
            @if let Some(d) = &described { span.small.muted id=(d) { (i.description) } }
        }
    }
}

/// The form's fields as the workflow's inputs: typed by their declarations; an empty field is
/// left out (its default applies), an unticked box is false.
fn form_inputs(decls: &[WorkflowInputView], fields: &[(String, String)]) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for d in decls {
        let key = format!("input.{}", d.name);
        let given = fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str());
        if d.kind == InputType::Boolean {
            out.insert(d.name.clone(), Value::Bool(given.is_some_and(|v| v == "true" || v == "on")));
            continue;
        }
        let Some(text) = given.filter(|t| !t.trim().is_empty()) else { continue };
        let bad = |what: &str| ApiError::bad_request(format!("input {}: {what}, got {text:?}", d.name)).field(&d.name);
        let value = match d.kind {
            InputType::Integer => Value::from(text.trim().parse::<i64>().map_err(|_| bad("expected a whole number"))?),
            InputType::Number => {
                let n = text.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64);
                Value::Number(n.ok_or_else(|| bad("expected a number"))?)
            }
            InputType::Object | InputType::Array => {
                let v: Value = serde_json::from_str(text).map_err(|e| bad(&format!("not valid JSON ({e})")))?;
                let fits = if d.kind == InputType::Object { v.is_object() } else { v.is_array() };
                if !fits {
                    return Err(bad(&format!("expected a JSON {}", d.kind)));
                }
                v
            }
            InputType::String | InputType::Boolean => Value::String(text.to_string()),
        };
        out.insert(d.name.clone(), value);
    }
    Ok(out)
}

/// Starts a run from the form on a workflow's page (as the API's manual start), then shows it.
pub async fn start(
    State(st): State<AppState>,
    _session: Session,
    Path(name): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> PageResult {
    let w = wf::get_workflow(State(st.clone()), Caller::Admin, Path(name.clone())).await?.0;
    let inputs = form_inputs(&w.inputs, &fields)?;
    let body = StartWorkflowBody { inputs: Some(Value::Object(inputs)) };
    let (_, run) = wf::start_workflow(State(st), Caller::Admin, Path(name), OptionalJson(Some(body))).await?;
    Ok(Redirect::to(&run_href(&run.0.id)).into_response())
}

// A run -----------------------------------------------------------------------------------

/// The steps of the definition a run started with: the loaded workflow's when the run's text
/// is the loaded text, else the run's own text read again; nothing when neither reads.
async fn run_steps(st: &AppState, workflow: &str, definition: &str) -> Vec<WorkflowStepDef> {
    if let Ok(w) = st.engine.workflow(workflow)
        && w.source == definition
    {
        return wf::step_defs(&w.def, &w.source);
    }
    match st.engine.validate_workflow(&format!("{workflow}.yaml"), definition).await {
        Ok(def) => wf::step_defs(&def, definition),
        Err(_) => Vec::new(),
    }
}

pub async fn run_page(
    State(st): State<AppState>,
    session: Session,
    fragment: Fragment,
    Path(id): Path<String>,
) -> PageResult {
    let run = wf::get_workflow_run(State(st.clone()), Caller::Admin, Path(id.clone())).await?.0;
    let definition = st.engine.store().get_workflow_run(&id).await?.map(|r| r.definition).unwrap_or_default();
    let defs = run_steps(&st, &run.run.workflow, &definition).await;
    let title = format!("{} · run", run.run.workflow);
    let approval_steps: Vec<String> =
        defs.iter().filter(|d| d.kind == ActionKind::Approval).map(|d| d.id.clone()).collect();
    let waiting = super::approvals::waiting_of(&st, &id, &approval_steps).await;
    Ok(Page::new(title, Nav::Workflows)
        .live("run", run_summary(&session, &run, &defs))
        // Outside the live part, so a refresh does not clear what is being typed.
        .add(super::approvals::waiting_section(&session, &waiting))
        .add(html! {
            h2 { "Trigger event" }
            @if run.run.event.is_null() { p.muted { "No event started this run (trigger: " (run.run.trigger) ")." } } @else { (ui::json_block(&run.run.event)) }
            h2 { "Inputs" }
            (ui::json_block(&run.run.inputs))
        })
        .respond(&session, fragment.name()))
}

/// A step's state on the run page: its row's status, or that it has not begun.
#[derive(Clone, Copy)]
enum StepShown {
    Row(StepStatus),
    /// No row yet: pending while the run goes, never started once it has ended.
    NotBegun {
        going: bool,
    },
}

impl StepShown {
    fn label(self) -> &'static str {
        match self {
            StepShown::Row(s) => s.as_str(),
            StepShown::NotBegun { going: true } => "pending",
            StepShown::NotBegun { going: false } => "not started",
        }
    }
}

impl ui::Badge for StepShown {
    fn word(&self) -> &str {
        self.label()
    }
    fn tone(&self) -> ui::Tone {
        match self {
            StepShown::Row(s) => s.tone(),
            StepShown::NotBegun { going: true } => ui::Tone::Info,
            StepShown::NotBegun { going: false } => ui::Tone::Neutral,
        }
    }
}

fn run_summary(session: &Session, d: &WorkflowRunDetail, defs: &[WorkflowStepDef]) -> Markup {
    let r = &d.run;
    let going = r.status.is_active();
    // The step's own row (not an item's) says its state.
    let whole: HashMap<&str, &WorkflowStepView> =
        d.steps.iter().filter(|s| s.item.is_none()).map(|s| (s.step_id.as_str(), s)).collect();
    let shown = |id: &str| whole.get(id).map_or(StepShown::NotBegun { going }, |s| StepShown::Row(s.status));
    let state_of = |id: &str| shown(id).label();
    // Steps the definition names, then any the run has that it does not (an edited file).
    let mut order: Vec<(&str, Option<&WorkflowStepDef>)> = defs.iter().map(|s| (s.id.as_str(), Some(s))).collect();
    for s in &d.steps {
        if !order.iter().any(|(id, _)| *id == s.step_id) {
            order.push((s.step_id.as_str(), None));
        }
    }
    let no_needs: Vec<String> = Vec::new();
    let nodes: Vec<dag::Node> = order
        .iter()
        .map(|(id, def)| dag::Node {
            id,
            needs: def.map_or(&no_needs, |s| &s.needs),
            detail: format!("{} · {}", def.map_or("step", |s| s.kind.as_str()), state_of(id).replace('_', " ")),
            status: Some(state_of(id)),
        })
        .collect();
    html! {
        div.actions {
            span.run-status data-run-status=(r.status) { (ui::badge(r.status)) }
            @if going {
                (ui::post_button(session, &format!("{}/cancel", run_href(&r.id)), "Cancel run", "danger", Some("Cancel this workflow run? Its running task runs are cancelled.")))
            }
            a href=(workflow_href(&r.workflow)) { "The workflow" }
        }
        dl.facts {
            dt { "Run" } dd.mono { (r.id) }
            dt { "Workflow" } dd { a href=(workflow_href(&r.workflow)) { (r.workflow) } }
            dt { "Trigger" } dd { (r.trigger) @if let Some(k) = &r.trigger_key { " " span.small.muted.mono { (k) } } }
            @if let Some(p) = &r.parent_run_id {
                dt { "Started by" }
                dd { "step " (r.parent_step.as_deref().unwrap_or("?")) " of " a.mono href=(run_href(p)) { (p) } }
            }
            dt { "Created" } dd { (ui::time_str(&r.created_at)) }
            dt { "Started" } dd { (ui::opt_time_str(r.started_at.as_deref())) }
            dt { "Finished" } dd { (ui::opt_time_str(r.finished_at.as_deref())) }
            @if let Some(ms) = took(r) { dt { "Took" } dd { (ui::duration_ms(ms)) } }
            @if let Some(t) = &r.deadline_at { @if going { dt { "Times out" } dd { (ui::time_str(t)) } } }
            @if let Some(k) = r.concurrency_key.as_ref().filter(|k| !k.is_empty()) { dt { "Concurrency key" } dd.mono { (k) } }
            @if let Some(e) = &r.error { dt { "Error" } dd { (e) } }
        }
        h2 { "Steps" }
        (dag::render(&format!("Steps of this run of {}", r.workflow), &nodes))
        div.table-wrap {
            table.steps {
                thead {
                    tr {
                        th { "Step" } th { "State" } th.num { "Attempt" } th.hide-narrow { "Started" } th.hide-narrow { "Finished" }
                        th { "Details" }
                    }
                }
                tbody {
                    @for (id, def) in &order {
                        @let own = whole.get(id).copied();
                        tr data-step=(id) {
                            td.mono { (id) @if let Some(s) = def { br; span.small.muted { (s.kind) " " (s.target) } } }
                            td { (ui::badge(shown(id))) }
                            td.num { @if let Some(s) = own { (s.attempt) } }
                            td.hide-narrow { @if let Some(s) = own { (ui::opt_time_str(s.started_at.as_deref())) } }
                            td.hide-narrow { @if let Some(s) = own { (ui::opt_time_str(s.finished_at.as_deref())) } }
                            td { @if let Some(s) = own { (step_details(s, *def)) } }
                        }
                        @for item in d.steps.iter().filter(|s| s.step_id == *id && s.item.is_some()) {
                            tr.item data-step-item={ (id) "#" (item.item.unwrap_or(0)) } {
                                td.mono { "↳ item " (item.item.unwrap_or(0)) }
                                td { (ui::badge(item.status)) }
                                td.num { (item.attempt) }
                                td.hide-narrow { (ui::opt_time_str(item.started_at.as_deref())) }
                                td.hide-narrow { (ui::opt_time_str(item.finished_at.as_deref())) }
                                td { (step_details(item, *def)) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Outputs" }
        @if r.outputs.is_null() {
            p.muted { @if going { "Not yet: the run's outputs are set when it succeeds." } @else { "None." } }
        } @else {
            (ui::json_block(&r.outputs))
        }
    }
}

fn step_details(s: &WorkflowStepView, def: Option<&WorkflowStepDef>) -> Markup {
    html! {
        @if let Some(t) = &s.task_run_id { div { "Task run " a.mono href={"/runs/" (urlencode(t))} { (t) } } }
        @if let Some(c) = &s.child_run_id { div { "Workflow run " a.mono href=(run_href(c)) { (c) } } }
        @if matches!(s.status, StepStatus::Waiting | StepStatus::Retrying) {
            @if let Some(d) = def.filter(|d| d.kind == ActionKind::Wait) { div.small { "Waiting for " (d.target) } }
            @if let Some(w) = &s.wake_at { div.small { "Looks again at " (ui::time_str(w)) } }
        }
        @if let Some(a) = &s.approval {
            div.small { (a.decision) " by " (a.decided_by) ", " (ui::time_str(&a.decided_at)) @if let Some(c) = &a.comment { ": " (c) } }
        }
        @if let Some(e) = &s.error { div.small.error-text { (e) } }
        @if !s.outputs.is_null() {
            details { summary.small { "Outputs" } (ui::json_block(&s.outputs)) }
        }
    }
}

pub async fn cancel(State(st): State<AppState>, _session: Session, Path(id): Path<String>) -> PageResult {
    let _ = wf::cancel_workflow_run(State(st), Caller::Admin, Path(id.clone())).await?;
    Ok(Redirect::to(&run_href(&id)).into_response())
}

/// The steps as a picture: a layered graph, left to right. A step's layer is one more than the
/// highest layer of the steps it needs; within a layer, steps keep their file order. Every text
/// in it is escaped here, as it is written by hand.
mod dag {
    use std::fmt::Write;

    use maud::Markup;

    use super::ui;

    pub struct Node<'a> {
        pub id: &'a str,
        pub needs: &'a [String],
        /// The second line: what it does, or its state in a run.
        pub detail: String,
        /// Its state in a run (the box's class), or none for the definition.
        pub status: Option<&'a str>,
    }

    /// An edge from step `from` to step `to`, through a slot (layer, row) of each layer between.
    struct Edge {
        from: usize,
        to: usize,
        through: Vec<(usize, usize)>,
    }

    const BOX_W: usize = 176;
    const BOX_H: usize = 44;
    const GAP_X: usize = 48;
    const GAP_Y: usize = 16;
    const PAD: usize = 6;

    fn layers(nodes: &[Node]) -> Vec<usize> {
        let mut layer = vec![0usize; nodes.len()];
        // A validated graph has no cycles; the bound keeps a broken one from looping.
        for _ in 0..nodes.len() {
            let mut changed = false;
            for (i, n) in nodes.iter().enumerate() {
                let want = n
                    .needs
                    .iter()
                    .filter_map(|need| nodes.iter().position(|m| m.id == need))
                    .map(|j| layer[j] + 1)
                    .max()
                    .unwrap_or(0);
                if want > layer[i] {
                    layer[i] = want.min(nodes.len());
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        layer
    }

    fn clip(s: &str, max: usize) -> String {
        if s.chars().count() <= max {
            s.to_string()
        } else {
            format!("{}…", s.chars().take(max - 1).collect::<String>())
        }
    }

    fn class(status: &str) -> String {
        status.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
    }

    pub fn render(title: &str, nodes: &[Node]) -> Markup {
        if nodes.is_empty() {
            return maud::html! { p.muted { "No steps to draw." } };
        }
        let layer = layers(nodes);
        let mut row = vec![0usize; nodes.len()];
        let mut per_layer: Vec<usize> = Vec::new();
        for (i, l) in layer.iter().enumerate() {
            if per_layer.len() <= *l {
                per_layer.resize(l + 1, 0);
            }
            row[i] = per_layer[*l];
            per_layer[*l] += 1;
        }
        // An edge that skips layers passes through a free slot of each layer between, below
        // the steps there, so it never crosses a box.
        let mut edges: Vec<Edge> = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            for need in n.needs {
                let Some(j) = nodes.iter().position(|m| m.id == need) else { continue };
                let mut through = Vec::new();
                for (l, taken) in per_layer.iter_mut().enumerate().take(layer[i]).skip(layer[j] + 1) {
                    through.push((l, *taken));
                    *taken += 1;
                }
                edges.push(Edge { from: j, to: i, through });
            }
        }
        let at = |l: usize, r: usize| (PAD + l * (BOX_W + GAP_X), PAD + r * (BOX_H + GAP_Y));
        let width = PAD * 2 + per_layer.len() * BOX_W + (per_layer.len() - 1) * GAP_X;
        let height = PAD * 2 + per_layer.iter().max().copied().unwrap_or(1) * (BOX_H + GAP_Y) - GAP_Y;

        let mut label = format!("{title}: {} steps. ", nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            if i > 0 {
                label.push_str("; ");
            }
            label.push_str(n.id);
            if let Some(s) = n.status {
                let _ = write!(label, " ({})", s.replace('_', " "));
            }
            if !n.needs.is_empty() {
                let _ = write!(label, " after {}", n.needs.join(" and "));
            }
        }
        let mut svg = format!(
            r#"<svg class="dag" role="img" aria-label="{}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">"#,
            ui::esc(&label)
        );
        svg.push_str(r#"<defs><marker id="dag-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path class="arrow" d="M0,0 L10,5 L0,10 z"/></marker></defs>"#);
        for Edge { from: j, to: i, through } in &edges {
            let (x1, y1) = at(layer[*j], row[*j]);
            let (x2, y2) = at(layer[*i], row[*i]);
            let mut d = format!("M{},{}", x1 + BOX_W, y1 + BOX_H / 2);
            let mut from = (x1 + BOX_W, y1 + BOX_H / 2);
            let curve = |d: &mut String, (ax, ay): (usize, usize), (bx, by): (usize, usize)| {
                let mid = (ax + bx) / 2;
                let _ = write!(d, " C{mid},{ay} {mid},{by} {bx},{by}");
            };
            for (l, r) in through {
                let (x, y) = at(*l, *r);
                curve(&mut d, from, (x, y + BOX_H / 2));
                let _ = write!(d, " L{},{}", x + BOX_W, y + BOX_H / 2);
                from = (x + BOX_W, y + BOX_H / 2);
            }
            curve(&mut d, from, (x2, y2 + BOX_H / 2));
            let _ = write!(
                svg,
                r#"<path class="edge" data-from="{}" data-to="{}" d="{d}" marker-end="url(#dag-arrow)"/>"#,
                ui::esc(nodes[*j].id),
                ui::esc(nodes[*i].id)
            );
        }
        for (i, n) in nodes.iter().enumerate() {
            let (x, y) = at(layer[i], row[i]);
            let status = n.status.map(|s| format!(" {}", class(s))).unwrap_or_default();
            let _ = write!(
                svg,
                r#"<g class="node{status}" data-node="{id}"><title>{id}: {detail}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/><text x="{tx}" y="{ty1}" class="step-id">{id_short}</text><text x="{tx}" y="{ty2}" class="muted-text step-detail">{detail_short}</text></g>"#,
                id = ui::esc(n.id),
                detail = ui::esc(&n.detail),
                tx = x + 10,
                ty1 = y + 18,
                ty2 = y + 35,
                id_short = ui::esc(&clip(n.id, 22)),
                detail_short = ui::esc(&clip(&n.detail, 27)),
            );
        }
        svg.push_str("</svg>");
        maud::html! { div.chart.dag-wrap { (ui::trusted(svg)) } }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_step_sits_one_layer_after_its_latest_need() {
            let none: Vec<String> = Vec::new();
            let a = vec!["a".to_string()];
            let ab = vec!["a".to_string(), "b".to_string()];
            let n = |id, needs| Node { id, needs, detail: String::new(), status: None };
            // Written out of order: c needs b, which comes after it in the file.
            let nodes = [n("c", &ab), n("a", &none), n("b", &a)];
            assert_eq!(layers(&nodes), vec![2, 0, 1]);
        }

        #[test]
        fn labels_and_ids_are_escaped() {
            let none: Vec<String> = Vec::new();
            let nodes = [Node {
                id: "x",
                needs: &none,
                detail: "notify <script>alert(1)</script>".into(),
                status: Some("running"),
            }];
            let svg = render("<b>", &nodes).into_string();
            assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
            assert!(svg.contains("&lt;script&gt;") && svg.contains(r#"class="node running""#), "{svg}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_messages_split_into_places_and_hints() {
        let msg = "/h/w/a.yaml:3:5: steps[0].run: unknown project \"x\"\n  hint: register it first\n/h/w/a.yaml: declares name \"b\"; name the file b.yaml";
        let p = problems("/h/w/a.yaml", msg);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].place, "/h/w/a.yaml:3:5");
        assert_eq!(p[0].message, "steps[0].run: unknown project \"x\"");
        assert_eq!(p[0].hint.as_deref(), Some("register it first"));
        assert_eq!(p[1].place, "/h/w/a.yaml");
        assert!(p[1].message.starts_with("declares name"));
    }

    #[test]
    fn form_fields_become_typed_inputs() {
        let decl = |name: &str, kind: InputType| WorkflowInputView {
            name: name.into(),
            kind,
            required: false,
            default: None,
            description: String::new(),
        };
        let decls = [
            decl("s", InputType::String),
            decl("n", InputType::Integer),
            decl("f", InputType::Number),
            decl("b", InputType::Boolean),
            decl("o", InputType::Object),
            decl("e", InputType::String),
        ];
        let fields: Vec<(String, String)> =
            [("input.s", "BTC"), ("input.n", "5"), ("input.f", "2.5"), ("input.o", "{\"a\": 1}"), ("input.e", "  ")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let got = Value::Object(form_inputs(&decls, &fields).unwrap());
        assert_eq!(got, serde_json::json!({"s": "BTC", "n": 5, "f": 2.5, "b": false, "o": {"a": 1}}));
        let bad = vec![("input.n".to_string(), "five".to_string())];
        assert!(form_inputs(&decls, &bad).unwrap_err().message.contains("whole number"));
    }
}
