//! One project: health and why, tasks with a run form, schedules and checks, recent runs,
//! spend this month and budgets, health history, the key audit, and its manifest (with any
//! secret-shaped text redacted).

use agent_os_core::check::CheckState;
use agent_os_core::health::HealthState;
use agent_os_core::manifest::{ScheduleStatus, TransportKind};
use agent_os_engine::audit::Severity as AuditSeverity;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use maud::{Markup, html};

use super::session::Session;
use super::ui::{self, Nav, Page};
use super::{Fragment, PageResult};
use crate::AppState;
use crate::alerting::{self, HealthQuery};
use crate::auth::Caller;
use crate::body::{ApiQuery, OptionalJson};
use crate::routes::{self, AuditView, RunQuery, ScheduleQuery, SummaryQuery};
use crate::views::ProjectView;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/projects/{name}", get(page))
        .route("/projects/{name}/reload", post(reload))
        .route("/projects/{name}/resume", post(resume))
        .route("/projects/{name}/secret", post(show_secret))
        .route("/projects/{name}/secret/rotate", post(rotate_secret))
        .route("/projects/{name}/snooze", post(snooze_project))
        .route("/projects/{name}/unsnooze", post(unsnooze_project))
        .route("/projects/{name}/checks/{slug}/snooze", post(snooze_check))
        .route("/projects/{name}/checks/{slug}/unsnooze", post(unsnooze_check))
}

async fn page(
    State(st): State<AppState>,
    session: Session,
    fragment: Fragment,
    Path(name): Path<String>,
) -> PageResult {
    let admin = || (State(st.clone()), Caller::Admin);
    let (s, c) = admin();
    let view = routes::get_project(s, c, Path(name.clone())).await?.0;
    let (s, c) = admin();
    let health =
        alerting::project_health(s, c, Path(name.clone()), ApiQuery(HealthQuery { history: Some(20) })).await?.0;
    let (s, c) = admin();
    let runs = routes::list_runs(
        s,
        c,
        ApiQuery(RunQuery { project: Some(name.clone()), task: None, status: None, before: None, limit: Some(15) }),
    )
    .await?
    .0;
    let (s, c) = admin();
    let checks =
        routes::list_checks(s, c, ApiQuery(routes::CheckQuery { project: Some(name.clone()), tag: None })).await?.0;
    let (s, c) = admin();
    let spend = routes::cost_summary(
        s,
        c,
        ApiQuery(SummaryQuery {
            by: Some("service".into()),
            from: Some(super::overview::month_start(st.engine.now())),
            to: None,
            project: Some(name.clone()),
            service: None,
        }),
    )
    .await?
    .0;
    let (s, c) = admin();
    let budgets = routes::list_budgets(s, c, ApiQuery(ScheduleQuery { project: Some(name.clone()) })).await?.0;
    let (s, c) = admin();
    let audit = routes::project_audit(s, c, Path(name.clone())).await?.0;
    let base = st.engine.config().public_url.trim_end_matches('/').to_string();
    let badges: Vec<crate::BadgeView> = st
        .engine
        .list_badges(Some(name.as_str()))
        .await?
        .into_iter()
        .map(|b| crate::badges::badge_view(&base, b))
        .collect();
    let manifest = st.engine.project(&name).await?.record.manifest.clone();
    let served = view.transport == TransportKind::Worker;
    let workers: Vec<crate::workers::WorkerView> = if served {
        let all = crate::workers::list_workers(State(st.clone()), Caller::Admin).await?.0;
        all.into_iter().filter(|w| w.projects.contains(&name)).collect()
    } else {
        Vec::new()
    };

    let head = html! {
        div.actions {
            (ui::badge(health.state))
            @for r in health.reasons.iter().filter(|r| r.state != HealthState::Ok).take(4) {
                span.small { strong { (r.source) ": " } (r.message) }
            }
        }
        @if !view.description.is_empty() { p { (view.description) } }
        div.actions {
            // A worker project's manifest comes from its workers when it changes on their disk.
            @if !served { (ui::post_button(&session, &format!("/projects/{name}/reload"), "Reload manifest", "", None)) }
            @if budgets.iter().any(|b| b.paused.is_some()) {
                (ui::post_button(&session, &format!("/projects/{name}/resume"), "Resume project", "primary", Some("Resume this project's runs although its budget is spent?")))
            }
            a href={"/runs?project=" (agent_os_core::url::encode_component(&name))} { "All runs →" }
        }
        div.actions {
            @if let Some(until) = &view.snoozed_until {
                (quiet(Some(until.as_str()), None))
                @if let Some(r) = &view.snooze_reason { span.small { (r) } }
                (ui::post_button(&session, &format!("/projects/{name}/unsnooze"), "Unsnooze project", "", None))
            } @else {
                (snooze_form(&session, &format!("/projects/{name}/snooze"), "Snooze project's checks"))
            }
        }
    };
    let spent = html! {
        h2 { "This month" }
        @if spend.groups.is_empty() {
            p.muted { "Nothing reported this month. A task reports costs with POST /api/v1/costs; a cost probe in the manifest is read on its own." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th { "Service" } th.num { "Spent" } th.num.hide-narrow { "Records" } th.num.hide-narrow { "Tokens in / out" } } }
                    tbody {
                        @for g in &spend.groups {
                            tr { td { (g.group) } td.num { (ui::money(g.amount_nanos, &g.currency)) } td.num.hide-narrow { (g.records) } td.num.hide-narrow { (g.tokens_in) " / " (g.tokens_out) } }
                        }
                    }
                }
            }
        }
        @for b in &budgets {
            p.small {
                "Budget (" (b.period) (if b.service.is_empty() { String::new() } else { format!(", {}", b.service) }) "): "
                (ui::amount(&b.spent, &b.currency)) " of " (ui::amount(&b.limit, &b.currency)) ", " (format!("{:.0}", b.percent))
                " %, forecast " (ui::amount(&b.forecast, &b.currency))
                @if let Some(p) = &b.paused { " " (ui::badge(ui::Word::Paused)) " " (p) }
            }
        }
    };
    Ok(Page::new(name.clone(), Nav::Projects)
        .live("head", head)
        .add(html! { @if served { h2 { "Served by" } } })
        .live("workers", served_by(served, &workers))
        .add(tasks(&session, &view))
        .add(schedules(&session, &view, &checks))
        .add(badges_part(&base, &badges))
        .add(html! { h2 { "Recent runs" } })
        .live("runs", recent_runs(&runs.runs))
        .live("spend", spent)
        .add(health_history(&health))
        .add(audit_part(&audit, served))
        .add(about(&view, &manifest))
        .add(signing_part(&session, &view))
        .respond(&session, fragment.name()))
}

fn tasks(session: &Session, v: &ProjectView) -> Markup {
    html! {
        h2 { "Tasks" }
        @if v.tasks.is_empty() {
            (ui::empty("This project declares no tasks.", html! { "Add one under " code { "tasks:" } " in its " code { "agent-os.yaml" } ", then reload." }))
        }
        div.grid {
            @for t in &v.tasks {
                article.card {
                    h3 { (t.name) }
                    @if !t.description.is_empty() { p.small { (t.description) } }
                    @if let Some(run) = &t.run { p.small.mono { (run) } }
                    p.small.muted {
                        "timeout " (t.timeout_ms.map(|ms| ui::duration_ms(ms as i64)).unwrap_or_else(|| "default".into()))
                        " · retries " (t.retries)
                    }
                    form.run-task.stack method="post" action="/runs" {
                        (ui::csrf_field(session))
                        input type="hidden" name="project" value=(v.name);
                        input type="hidden" name="task" value=(t.name);
                        label for={"input-" (t.name)} { "Input (a JSON object, optional)" }
                        textarea id={"input-" (t.name)} name="input" rows="2" placeholder="{}" {}
                        div { button.primary type="submit" { "Run" } }
                    }
                }
            }
        }
    }
}

/// How a quiet check or project says so: snoozed until a time, or held by an upstream check.
pub(super) fn quiet(snoozed_until: Option<&str>, held_by: Option<&str>) -> Markup {
    html! {
        @if let Some(by) = held_by.filter(|b| *b != "snooze") {
            " " (ui::badge(ui::Word::Held)) span.small { " by " (by) }
        }
        @if let Some(until) = snoozed_until {
            " " span.badge.info { "snoozed" } span.small { " until " (ui::time_str(until)) }
        }
    }
}

/// A small form that snoozes for a chosen time.
fn snooze_form(session: &Session, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (ui::csrf_field(session))
            select name="until" aria-label="for how long" {
                option value="1h" { "1 hour" }
                option value="8h" { "8 hours" }
                option value="1d" selected { "1 day" }
                option value="7d" { "7 days" }
            }
            input type="text" name="reason" placeholder="reason (optional)" maxlength="500";
            button type="submit" { (label) }
        }
    }
}

#[derive(serde::Deserialize)]
struct SnoozeForm {
    until: String,
    #[serde(default)]
    reason: String,
}

fn reason_of(f: &SnoozeForm) -> Option<String> {
    let r = f.reason.trim();
    (!r.is_empty()).then(|| r.to_string())
}

fn to_project(name: &str) -> PageResult {
    Ok(Redirect::to(&format!("/projects/{}", agent_os_core::url::encode_component(name))).into_response())
}

async fn snooze_project(
    State(st): State<AppState>,
    _session: Session,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<SnoozeForm>,
) -> PageResult {
    let body = routes::SnoozeBody { until: f.until.clone(), reason: reason_of(&f) };
    let _ = routes::snooze_project(State(st), Caller::Admin, Path(name.clone()), crate::body::JsonBody(body)).await?;
    to_project(&name)
}

async fn unsnooze_project(State(st): State<AppState>, _session: Session, Path(name): Path<String>) -> PageResult {
    let _ = routes::unsnooze_project(State(st), Caller::Admin, Path(name.clone())).await?;
    to_project(&name)
}

// Checks are named by project and slug here: a check's id is its ping URL's secret, which the
// dashboard does not show.
async fn snooze_check(
    State(st): State<AppState>,
    _session: Session,
    Path((name, slug)): Path<(String, String)>,
    axum::Form(f): axum::Form<SnoozeForm>,
) -> PageResult {
    let body = routes::SnoozeBody { until: f.until.clone(), reason: reason_of(&f) };
    let check = Path(format!("{name}/{slug}"));
    let _ = routes::snooze_check(State(st), Caller::Admin, check, crate::body::JsonBody(body)).await?;
    to_project(&name)
}

async fn unsnooze_check(
    State(st): State<AppState>,
    _session: Session,
    Path((name, slug)): Path<(String, String)>,
) -> PageResult {
    let _ = routes::unsnooze_check(State(st), Caller::Admin, Path(format!("{name}/{slug}"))).await?;
    to_project(&name)
}

fn schedules(session: &Session, v: &ProjectView, checks: &[routes::CheckView]) -> Markup {
    html! {
        h2 { "Schedules and checks" }
        @if v.schedules.is_empty() && checks.is_empty() {
            (ui::empty("No schedules.", html! {
                "List them under " code { "schedules:" } " in the manifest, or register the project's own cron, launchd or Railway jobs with "
                code { "agent-os schedules discover DIR --register" } "."
            }))
        } @else {
            div.table-wrap {
                table.cards {
                    thead { tr { th { "Task" } th { "When" } th.hide-narrow { "Kept by" } th { "State" } th { "Next" } } }
                    tbody {
                        @for s in &v.schedules {
                            tr class=[(s.late || s.down).then_some("flag")] {
                                td { (s.task) }
                                td.mono { (s.cron) " " span.muted { (s.timezone) } }
                                td.hide-narrow { (s.managed_by) }
                                td { (ui::badge(s.state)) @if s.late { " " (ui::badge(ScheduleStatus::Late)) } }
                                td data-label="next" { @if let Some(n) = s.next.first() { (ui::time_str(n)) } @else { span.muted { "—" } } }
                            }
                        }
                    }
                }
            }
            @if !checks.is_empty() {
                h3 { "Heartbeat checks" }
                p.small.muted { "A check's ping URL is its secret, so it is not shown here; " code { "agent-os checks" } " prints it." }
                div.table-wrap {
                    table.cards.checks {
                        thead { tr { th { "Check" } th { "State" } th { "Last ping" } th { "Alerts" } } }
                        tbody {
                            @for c in checks {
                                tr class=[(c.state == CheckState::Late || c.state == CheckState::Down).then_some("flag")] {
                                    td {
                                        (c.slug)
                                        @for t in &c.tags { " " span.tag.small { (t) } }
                                        @if !c.description.is_empty() { br; span.small.muted { (c.description) } }
                                    }
                                    td.check-state { (ui::badge(c.state)) (quiet(c.snoozed_until.as_deref(), c.held_by.as_deref())) }
                                    td.last-ping data-label="last ping" { (ui::opt_time_str(c.last_ping_at.as_deref())) }
                                    td data-label="alerts" {
                                        @let base = format!(
                                            "/projects/{}/checks/{}",
                                            agent_os_core::url::encode_component(&c.project),
                                            agent_os_core::url::encode_component(&c.slug)
                                        );
                                        @if c.snoozed_until.is_some() && !c.project_snoozed {
                                            (ui::post_button(session, &format!("{base}/unsnooze"), "Unsnooze", "", None))
                                        } @else {
                                            (snooze_form(session, &format!("{base}/snooze"), "Snooze"))
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

/// The project's status badge and its checks' tags' badges, each with Markdown to paste into
/// a README. The preview is loaded from this server (a relative address), the Markdown names
/// the public URL.
fn badges_part(base: &str, badges: &[crate::BadgeView]) -> Markup {
    html! {
        h2 { "Status badges" }
        p.small.muted {
            "Public images of the state of this project's checks (and of each tag's checks, across projects), for a README. "
            "Each address holds its own token: anyone with it sees the badge, and nothing else. "
            code { "agent-os badges" } " prints the same."
        }
        div.table-wrap {
            table.cards.badges {
                thead { tr { th { "Badge" } th { "Now" } th { "Markdown" } } }
                tbody {
                    @for b in badges {
                        tr {
                            td { (b.kind) " " strong { (b.name) } }
                            td { img alt={(b.name) " status"} src=(b.svg_url.strip_prefix(base).unwrap_or(&b.svg_url)); }
                            td { textarea.mono readonly rows="2" cols="60" aria-label={"Markdown for the " (b.name) " badge"} { (b.markdown) } }
                        }
                    }
                }
            }
        }
    }
}

fn recent_runs(runs: &[crate::views::RunView]) -> Markup {
    if runs.is_empty() {
        return ui::empty("No runs yet.", html! { "Use a task's Run button above." });
    }
    html! {
        div.table-wrap {
            table.cards {
                thead { tr { th { "Task" } th { "State" } th.hide-narrow { "Trigger" } th { "Since" } th.num.hide-narrow { "Attempt" } } }
                tbody { (super::overview::run_rows(runs)) }
            }
        }
    }
}

/// Results in a row that say the same (probe, state, message) shown once, with how many and
/// since when: a probe every minute that keeps saying "ok" is one line, not twenty. The store
/// already keeps such a stretch as one entry (`since`, `repeats`); entries written before it
/// did, or that differ only in what this page does not show, are joined here.
fn health_runs(history: &[alerting::HealthHistoryView]) -> Vec<(&alerting::HealthHistoryView, i64, &str)> {
    let mut out: Vec<(&alerting::HealthHistoryView, i64, &str)> = Vec::new();
    for e in history {
        match out.last_mut() {
            Some((first, n, oldest))
                if first.kind == e.kind && first.state == e.state && first.message == e.message =>
            {
                *n += e.repeats.max(1);
                *oldest = &e.since;
            }
            _ => out.push((e, e.repeats.max(1), &e.since)),
        }
    }
    out
}

fn health_history(h: &alerting::ProjectHealthView) -> Markup {
    html! {
        h2 { "Health history" }
        @if h.history.is_empty() {
            p.muted { "No status probe or health check has reported yet. Declare " code { "probes.status" } " or " code { "health:" } " in the manifest." }
        } @else {
            div.table-wrap {
                table.cards.health-history {
                    thead { tr { th { "When" } th { "Probe" } th { "State" } th.hide-narrow { "Message" } th.num.hide-narrow { "Took" } } }
                    tbody {
                        @for (e, n, oldest) in health_runs(&h.history) {
                            tr {
                                td {
                                    (ui::time_str(&e.at))
                                    @if n > 1 { br; span.small.muted data-repeats=(n) { "×" (n) " since " (ui::time_str(oldest)) } }
                                }
                                td { (e.kind) }
                                td { (ui::badge(e.state)) }
                                td.hide-narrow { (e.message.as_deref().unwrap_or("")) }
                                td.num.hide-narrow { (ui::duration_ms(e.duration_ms)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A finding's severity as a badge (the API sends findings as JSON).
fn audit_badge(f: &serde_json::Value) -> Markup {
    match f.get("severity").cloned().map(serde_json::from_value::<AuditSeverity>) {
        Some(Ok(s)) => ui::badge(s),
        _ => ui::badge(f.get("severity").and_then(|v| v.as_str()).unwrap_or("")),
    }
}

/// Who serves a worker project: its workers, or how to start one.
fn served_by(served: bool, workers: &[crate::workers::WorkerView]) -> Markup {
    if !served {
        return html! {};
    }
    if workers.is_empty() {
        return ui::empty(
            "No worker serves this project.",
            html! { "Start one on the machine that holds it: " code { "agent-os worker --server URL --project DIR" } "." },
        );
    }
    let connected = workers.iter().any(|w| w.connected);
    html! {
        @if !connected {
            p { (ui::badge(ui::Word::Away)) " No worker serving it is connected: its queued runs wait until one is." }
        }
        (super::overview::worker_table(workers))
    }
}

fn audit_part(a: &AuditView, served: bool) -> Markup {
    let field = |f: &serde_json::Value, k: &str| f.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    html! {
        h2 { "Credential audit" }
        @if !a.audited && served {
            p.muted { "Its directory is on its worker's machine: run " code { "agent-os keys audit DIR" } " there." }
        } @else if !a.audited {
            p.muted { "A hosted project has no directory here; its keys stay with it." }
        } @else if a.findings.is_empty() {
            p { (ui::badge(ui::Word::Ok)) " Its " code { ".env" } " and manifest agree, with no findings (checked " (ui::time_str(&a.checked_at)) ")." }
        } @else {
            p { (a.errors) " errors, " (a.warnings) " warnings (values are never read into the report)." }
            div.table-wrap {
                table {
                    thead { tr { th { "Severity" } th { "Finding" } th.hide-narrow { "Where" } th { "Fix" } } }
                    tbody {
                        @for f in &a.findings {
                            tr {
                                td { (audit_badge(f)) }
                                td { (field(f, "message")) }
                                td.hide-narrow.mono { (field(f, "file")) @if let Some(l) = f.get("line").and_then(|v| v.as_u64()) { ":" (l) } }
                                td { (field(f, "fix")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn about(v: &ProjectView, manifest: &str) -> Markup {
    html! {
        h2 { "About" }
        dl.facts {
            dt { "Transport" } dd { (v.transport) }
            @if let Some(r) = &v.root { dt { "Directory" } dd.mono { (r) } }
            @if let Some(u) = &v.plugin_url { dt { "Plugin" } dd.mono { (origin_of(u)) } }
            @if let Some(e) = &v.env_file { dt { "Env file" } dd.mono { (e) " " span.muted { "(values never read by Agent OS)" } } }
            dt { "Keys" } dd {
                @if v.keys.is_empty() { span.muted { "none declared" } }
                @for (i, k) in v.keys.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (k.variable) } " (" (k.service) ")"
                }
            }
            dt { "Registered" } dd { (ui::time_str(&v.created_at)) }
            dt { "Updated" } dd { (ui::time_str(&v.updated_at)) }
        }
        details {
            summary { "Manifest" }
            pre { code { (agent_os_core::redact::redact_shapes(manifest)) } }
        }
    }
}

/// A hosted project's signing secret: shown (or rotated) on a POST only, so it is never in a
/// page a GET can fetch again from a cache or history.
fn signing_part(session: &Session, v: &ProjectView) -> Markup {
    if v.transport != TransportKind::Http {
        return html! {};
    }
    let base = format!("/projects/{}/secret", agent_os_core::url::encode_component(&v.name));
    html! {
        h2 { "Signing secret" }
        p.small.muted {
            "Agent OS signs every request to the project's endpoint (Standard Webhooks); the project must check the signature with this secret. "
            "Rotating keeps the old secret valid for 24 hours (requests carry both signatures), or use "
            code { "agent-os project secret rotate " (v.name) " --grace 0s" } " after a leak."
        }
        div.actions {
            (ui::post_button(session, &base, "Show secret", "", None))
            (ui::post_button(session, &format!("{base}/rotate"), "Rotate secret", "", Some("Make a new signing secret? The old one stays valid for 24 hours.")))
        }
    }
}

async fn show_secret(State(st): State<AppState>, session: Session, Path(name): Path<String>) -> PageResult {
    let s = crate::signing::show_signing_secret(State(st), Caller::Admin, Path(name)).await?.0;
    Ok(secret_page(&session, &s, false))
}

async fn rotate_secret(State(st): State<AppState>, session: Session, Path(name): Path<String>) -> PageResult {
    let s = crate::signing::rotate_signing_secret(State(st), Caller::Admin, Path(name), OptionalJson(None)).await?.0;
    Ok(secret_page(&session, &s, true))
}

fn secret_page(session: &Session, s: &crate::signing::SigningSecretView, rotated: bool) -> axum::response::Response {
    Page::new(format!("Signing secret of {}", s.project), Nav::Projects)
        .add(html! {
            p { @if rotated { "A new secret was made. " } "Configure it in the project so it accepts Agent OS's requests:" }
            pre.secret { code { (s.signing_secret) } }
            @if let Some(until) = &s.previous_valid_until {
                p.small { "Requests also carry a signature under the previous secret until " (ui::time_str(until)) "." }
            }
            p { a href={"/projects/" (agent_os_core::url::encode_component(&s.project))} { "← Back to " (s.project) } }
        })
        .respond(session, None)
}

/// Scheme, host and port of a URL: the rest may carry a credential.
fn origin_of(url: &str) -> String {
    let host = agent_os_core::url::host_of(url);
    match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://{host}"),
        None => host.to_string(),
    }
}

async fn reload(State(st): State<AppState>, _session: Session, Path(name): Path<String>) -> PageResult {
    let _ = routes::reload_project(State(st), Caller::Admin, Path(name.clone()), OptionalJson(None)).await?;
    Ok(Redirect::to(&format!("/projects/{}", agent_os_core::url::encode_component(&name))).into_response())
}

async fn resume(State(st): State<AppState>, _session: Session, Path(name): Path<String>) -> PageResult {
    routes::resume_project(State(st), Caller::Admin, Path(name.clone())).await?;
    Ok(Redirect::to(&format!("/projects/{}", agent_os_core::url::encode_component(&name))).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_origin_of_a_plugin_url_is_shown() {
        assert_eq!(
            super::origin_of("https://user:pw@api.example.test:8443/p?token=x"),
            "https://api.example.test:8443"
        );
        assert_eq!(super::origin_of("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
    }
}
