//! Runs: a filterable, paginated table; a run's page with its live log tail, attempts, input,
//! outputs and cost; and the forms that start, cancel and retry runs.

use agent_os_core::run::RunStatus;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::session::Session;
use super::ui::{self, Nav, Page};
use super::{Fragment, PageError, PageResult};
use crate::AppState;
use crate::auth::Caller;
use crate::body::{ApiQuery, JsonBody};
use crate::error::ApiError;
use crate::routes::{self, CostQuery, LogQuery, RunQuery, StartRunBody};
use crate::views::RunView;

const PAGE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct RunsFilter {
    project: Option<String>,
    task: Option<String>,
    status: Option<String>,
    before: Option<String>,
}

pub async fn list(
    State(st): State<AppState>,
    session: Session,
    fragment: Fragment,
    Query(f): Query<RunsFilter>,
) -> PageResult {
    let (project, task, status, before) =
        (ui::given(&f.project), ui::given(&f.task), ui::given(&f.status), ui::given(&f.before));
    let list = routes::list_runs(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(RunQuery {
            project: project.clone(),
            task: task.clone(),
            status: status.clone(),
            before: before.clone(),
            limit: Some(PAGE),
        }),
    )
    .await?
    .0;
    let projects = st.engine.projects().await?;
    let filters = html! {
        form.filters method="get" action="/runs" role="search" {
            (ui::project_select(projects.iter().map(|p| p.record.name.as_str()), project.as_deref()))
            label { "Task" input type="text" name="task" value=[task.as_deref()] placeholder="any" size="14"; }
            label { "Status"
                select name="status" {
                    option value="" { "Any" }
                    @for s in RunStatus::SPELLINGS { option value=(s) selected[status.as_deref() == Some(*s)] { (s.replace('_', " ")) } }
                }
            }
            button type="submit" { "Filter" }
            @if project.is_some() || task.is_some() || status.is_some() { a href="/runs" { "Clear" } }
        }
    };
    let table = if list.runs.is_empty() {
        ui::empty(
            if project.is_some() || task.is_some() || status.is_some() {
                "No runs match these filters."
            } else {
                "No runs yet."
            },
            html! { "Runs appear here when a schedule fires, a workflow step runs, or you start a task from its project's page." },
        )
    } else {
        html! {
            div.table-wrap {
                table {
                    thead { tr { th { "Task" } th { "State" } th.hide-narrow { "Trigger" } th { "Queued" } th.num { "Took" } th.num.hide-narrow { "Attempt" } } }
                    tbody {
                        @for r in &list.runs {
                            tr {
                                td { a href={"/runs/" (r.id)} { (r.project) "." (r.task) } }
                                td { (ui::badge(r.status)) }
                                td.hide-narrow { (r.trigger) }
                                td { (ui::time_str(&r.queued_at)) }
                                td.num { @if let Some(d) = r.duration_ms { (ui::duration_ms(d)) } @else { span.muted { "—" } } }
                                td.num.hide-narrow { (r.attempt) "/" (r.max_attempts) }
                            }
                        }
                    }
                }
            }
        }
    };
    let pager = ui::pager(
        "/runs",
        &[("project", project.as_deref()), ("task", task.as_deref()), ("status", status.as_deref())],
        "before",
        list.next.as_deref(),
        before.is_none(),
    );
    Ok(Page::new("Runs", Nav::Runs)
        .add(filters)
        .live("runs", html! { (table) (pager) })
        .respond(&session, fragment.name()))
}

pub async fn detail(
    State(st): State<AppState>,
    session: Session,
    fragment: Fragment,
    Path(id): Path<String>,
) -> PageResult {
    let run = routes::get_run(State(st.clone()), Caller::Admin, Path(id.clone())).await?.0;
    let costs = routes::list_costs(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(CostQuery { project: None, run: Some(id.clone()), limit: Some(100) }),
    )
    .await?
    .0;
    let chunks = st.engine.store().read_log(&id, 0, 2000).await?;
    let after = chunks.last().map_or(0, |c| c.seq);
    let finished = run.status.is_terminal();
    let log = html! {
        h2 { "Log" }
        @if run.log_dropped_bytes > 0 { p.small.muted { (run.log_dropped_bytes) " bytes of the oldest output were dropped to keep the log under its cap." } }
        pre.log tabindex="0" aria-label="Run log" data-log=[(!finished).then(|| format!("/runs/{id}/log"))] data-after=(after) {
            @if chunks.is_empty() {
                span.log-empty.muted {
                    @if let Some(at) = &run.logs_pruned_at {
                        span data-logs-pruned=(at) { "The log was pruned " (ui::time_str(at)) " (" code { "retention.logs" } " in config.yaml)." }
                    } @else if finished { "The run wrote nothing." } @else { "Waiting for output…" }
                }
            }
            @for c in &chunks { span class=(c.stream) { (c.data) } }
        }
    };
    let title = format!("{}.{}", run.project, run.task);
    Ok(Page::new(title, Nav::Runs)
        .live("run", summary(&session, &run, &costs))
        .add(log)
        .add(html! {
            h2 { "Input" }
            (ui::json_block(&run.input))
        })
        .respond(&session, fragment.name()))
}

fn summary(session: &Session, r: &RunView, costs: &[crate::views::CostView]) -> Markup {
    let finished = r.status.is_terminal();
    html! {
        div.actions {
            (ui::badge(r.status))
            @if r.cancel_requested && !finished { span.muted.small { "cancelling…" } }
            @if !finished && !r.cancel_requested {
                (ui::post_button(session, &format!("/runs/{}/cancel", r.id), "Cancel run", "danger", Some("Cancel this run?")))
            }
            @if finished {
                (ui::post_button(session, &format!("/runs/{}/retry", r.id), "Run again", "primary", None))
            }
        }
        dl.facts {
            dt { "Run" } dd.mono { (r.id) }
            dt { "Project" } dd { a href={"/projects/" (r.project)} { (r.project) } }
            dt { "Trigger" } dd { (r.trigger) }
            dt { "Queued" } dd { (ui::time_str(&r.queued_at)) }
            @if let Some(s) = &r.scheduled_for { dt { "Scheduled for" } dd { (ui::time_str(s)) } }
            @if let Some(n) = &r.not_before { dt { "Not before" } dd { (ui::time_str(n)) } }
            @if let Some(w) = &r.waiting_for { dt { "Waiting for" } dd { (w) } }
            @if let Some(w) = &r.waiting { dt { "Waiting" } dd { (w) } }
            dt { "Started" } dd { (ui::opt_time_str(r.started_at.as_deref())) }
            dt { "Finished" } dd { (ui::opt_time_str(r.finished_at.as_deref())) }
            @if let Some(d) = r.duration_ms { dt { "Took" } dd { (ui::duration_ms(d)) } }
            @if let Some(code) = r.exit_code { dt { "Exit code" } dd { (code) } }
            @if let Some(e) = &r.error { dt { "Error" } dd { (e) } }
            @if !r.resources.is_empty() { dt { "Resources" } dd { (r.resources.join(", ")) } }
            dt { "Cost" } dd {
                @if costs.is_empty() { span.muted { "none reported" } }
                @for (i, c) in costs.iter().enumerate() {
                    @if i > 0 { ", " }
                    @match &c.amount {
                        Some(a) => { (a) " " (c.currency) " " }
                        None => { span.badge.warn title="this model has no price: add it under prices: in config.yaml" { "unpriced" } " " }
                    }
                    span.muted { "(" (c.service) ")" }
                }
            }
        }
        h2 { "Attempts" }
        @if r.attempts.is_empty() {
            p.muted { "Not started yet." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th.num { "#" } th { "State" } th { "Started" } th { "Finished" } th.num { "Exit" } th { "Error" } } }
                    tbody {
                        @for a in &r.attempts {
                            tr {
                                td.num { (a.attempt) }
                                td { (ui::badge(a.status)) }
                                td { (ui::time_str(&a.started_at)) }
                                td { (ui::opt_time_str(a.finished_at.as_deref())) }
                                td.num { @if let Some(c) = a.exit_code { (c) } }
                                td { (a.error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Outputs" }
        @if r.outputs.is_null() { p.muted { "None (a task writes a JSON object to the file named by AGENT_OS_OUTPUT)." } } @else { (ui::json_block(&r.outputs)) }
    }
}

#[derive(Deserialize)]
pub struct LogAfter {
    after: Option<i64>,
}

/// The live log tail as Server-Sent Events (the API's stream, for the session's browser).
pub async fn log(
    State(st): State<AppState>,
    _session: Session,
    Path(id): Path<String>,
    Query(q): Query<LogAfter>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    Ok(routes::run_logs(
        State(st),
        Caller::Admin,
        Path(id),
        ApiQuery(LogQuery { after: q.after, limit: None }),
        headers,
    )
    .await?)
}

#[derive(Deserialize)]
pub struct StartForm {
    project: String,
    task: String,
    #[serde(default)]
    input: String,
}

/// Starts a task from the form on a project's page, then shows the new run.
pub async fn start(State(st): State<AppState>, _session: Session, Form(f): Form<StartForm>) -> PageResult {
    let input = if f.input.trim().is_empty() {
        None
    } else {
        match serde_json::from_str::<Value>(&f.input) {
            Ok(v @ Value::Object(_)) => Some(v),
            Ok(_) => {
                return Err(ApiError::bad_request("input must be a JSON object, e.g. {\"symbol\": \"BTC\"}")
                    .field("input")
                    .into());
            }
            Err(e) => return Err(ApiError::bad_request(format!("input is not valid JSON: {e}")).field("input").into()),
        }
    };
    let (_, run) = routes::start_run(
        State(st),
        Caller::Admin,
        JsonBody(StartRunBody { project: f.project, task: f.task, input, trigger: Some("dashboard".into()) }),
    )
    .await?;
    Ok(Redirect::to(&format!("/runs/{}", run.0.id)).into_response())
}

pub async fn cancel(State(st): State<AppState>, _session: Session, Path(id): Path<String>) -> PageResult {
    let _ = routes::cancel_run(State(st), Caller::Admin, Path(id.clone())).await?;
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

/// Runs the same task again with the same input, as a new run.
pub async fn retry(State(st): State<AppState>, _session: Session, Path(id): Path<String>) -> PageResult {
    let old = routes::get_run(State(st.clone()), Caller::Admin, Path(id)).await?.0;
    let input = if old.input.is_object() { Some(old.input) } else { None };
    let (status, run) = routes::start_run(
        State(st),
        Caller::Admin,
        JsonBody(StartRunBody { project: old.project, task: old.task, input, trigger: Some("dashboard".into()) }),
    )
    .await?;
    debug_assert_eq!(status, StatusCode::CREATED);
    Ok(Redirect::to(&format!("/runs/{}", run.0.id)).into_response())
}
