//! The overview: every project with its health and why, what runs now, the workers that serve
//! projects from other machines, the next 24 hours of schedules, open incidents, and each
//! project's spend this month against its budget.

use axum::extract::State;
use maud::{Markup, html};

use agent_os_core::alerting::Severity;
use agent_os_core::budget::Period;
use agent_os_core::health::{HealthSource, HealthState};
use agent_os_core::run::RunStatus;

use super::session::Session;
use super::ui::{self, Nav, Page};
use super::{Fragment, PageResult};
use crate::alerting::{self, IncidentQuery, IncidentView};
use crate::auth::Caller;
use crate::body::ApiQuery;
use crate::routes::{self, RunQuery, ScheduleQuery, SummaryQuery, TimelineQuery};
use crate::views::RunView;
use crate::workers::WorkerView;
use crate::{AppState, BudgetView, CostGroupView};

/// One project's card.
struct Card {
    name: String,
    description: String,
    health: HealthState,
    reasons: Vec<(HealthSource, String)>,
    tasks: usize,
    spent: Vec<CostGroupView>,
    budgets: Vec<BudgetView>,
    /// Its checks' alerts are quiet until then (RFC 3339).
    snoozed_until: Option<String>,
}

pub async fn page(State(st): State<AppState>, session: Session, fragment: Fragment) -> PageResult {
    let now = st.engine.now();
    let mut cards = Vec::new();
    let month_start = month_start(now);
    let spend = routes::cost_summary(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(SummaryQuery {
            by: Some("project".into()),
            from: Some(month_start.clone()),
            to: None,
            project: None,
            service: None,
        }),
    )
    .await?
    .0;
    let budgets =
        routes::list_budgets(State(st.clone()), Caller::Admin, ApiQuery(ScheduleQuery { project: None })).await?.0;
    let snoozes = st.engine.project_snoozes().await?;
    for p in st.engine.projects().await? {
        let health = st.engine.project_health(&p).await?;
        let name = p.record.name.clone();
        cards.push(Card {
            snoozed_until: snoozes.get(&name).map(|s| crate::views::time(s.until)),
            description: p.record.description.clone(),
            health: health.state,
            reasons: health
                .reasons
                .iter()
                .filter(|r| r.state != HealthState::Ok)
                .map(|r| (r.source, r.message.clone()))
                .collect(),
            tasks: p.manifest.tasks.len(),
            spent: spend.groups.iter().filter(|g| g.group == name).cloned().collect(),
            budgets: budgets.iter().filter(|b| b.project == name && b.period == Period::Monthly).cloned().collect(),
            name,
        });
    }
    let running = routes::list_runs(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(RunQuery {
            project: None,
            task: None,
            status: Some(RunStatus::Running.to_string()),
            before: None,
            limit: Some(20),
        }),
    )
    .await?
    .0
    .runs;
    let queued = routes::list_runs(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(RunQuery {
            project: None,
            task: None,
            status: Some(RunStatus::Queued.as_str().into()),
            before: None,
            limit: Some(20),
        }),
    )
    .await?
    .0
    .runs;
    let timeline = routes::schedule_timeline(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(TimelineQuery { from: None, to: None, window: None, project: None }),
    )
    .await?
    .0;
    let incidents = alerting::list_incidents(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(IncidentQuery { open: true, project: None, limit: Some(20) }),
    )
    .await?
    .0;

    let workers = crate::workers::list_workers(State(st.clone()), Caller::Admin).await?.0;

    let total_spend: Vec<String> = spend.totals.iter().map(|t| ui::money(t.amount_nanos, &t.currency)).collect();
    let stats = html! {
        div.stats {
            (ui::stat("Projects", html! { (cards.len()) }))
            (ui::stat("Running now", html! { (running.len()) }))
            (ui::stat("Queued", html! { (queued.len()) }))
            (ui::stat("Open incidents", html! { (incidents.len()) }))
            (ui::stat("Spent this month", html! { @if total_spend.is_empty() { "$0.00" } @else { (total_spend.join(" + ")) } }))
        }
    };
    Ok(Page::new("Overview", Nav::Overview)
        .live("stats", stats)
        .add(html! { h2 { "Projects" } })
        .live("projects", projects(&cards))
        .add(html! { h2 { "Running now" } })
        .live("running", run_table(&running, &queued))
        .add(html! { @if !workers.is_empty() { h2 { "Workers" } } })
        .live("workers", worker_table(&workers))
        .add(html! { h2 { "Open incidents" } })
        .live("incidents", incident_list(&incidents))
        .add(html! {
            h2 { "Next 24 hours" }
            (next_fires(&timeline))
        })
        .respond(&session, fragment.name()))
}

/// The first instant of this month, UTC, as RFC 3339 (budgets' months are UTC too).
pub fn month_start(now: i64) -> String {
    let t = jiff::Timestamp::from_millisecond(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let d = t.to_zoned(jiff::tz::TimeZone::UTC).date();
    format!("{:04}-{:02}-01T00:00:00Z", d.year(), d.month())
}

fn projects(cards: &[Card]) -> Markup {
    if cards.is_empty() {
        return ui::empty(
            "No projects yet.",
            html! {
                "Register one with " code { "agent-os project add PATH" } " (a directory holding "
                code { "agent-os.yaml" } "), or try " code { "agent-os demo" } " for three example projects."
            },
        );
    }
    html! {
        div.grid {
            @for c in cards {
                article.card aria-labelledby={"p-" (c.name)} {
                    h3 id={"p-" (c.name)} { a href={"/projects/" (c.name)} { (c.name) } (ui::badge(c.health)) }
                    @if c.snoozed_until.is_some() { p.small { (super::project::quiet(c.snoozed_until.as_deref(), None)) } }
                    @if !c.description.is_empty() { p.muted.small { (c.description) } }
                    @if c.reasons.is_empty() {
                        p.small { @if c.health == HealthState::Unknown { "Nothing reported yet." } @else { "All well." } }
                    } @else {
                        ul.small {
                            @for (source, message) in c.reasons.iter().take(3) { li { strong { (source) ": " } (message) } }
                        }
                    }
                    p.small {
                        (c.tasks) " tasks · this month: "
                        @if c.spent.is_empty() { "nothing spent" }
                        @for (i, s) in c.spent.iter().enumerate() {
                            @if i > 0 { " + " }
                            (ui::money(s.amount_nanos, &s.currency))
                        }
                    }
                    @for b in &c.budgets {
                        p.small {
                            "Budget" @if !b.service.is_empty() { " (" (b.service) ")" } ": "
                            (ui::amount(&b.spent, &b.currency)) " of " (ui::amount(&b.limit, &b.currency))
                            " (" (format!("{:.0}", b.percent)) " %)"
                            @if b.paused.is_some() { " " (ui::badge(ui::Word::Paused)) }
                        }
                        (ui::meter(b.percent))
                    }
                }
            }
        }
    }
}

pub fn run_rows(runs: &[RunView]) -> Markup {
    html! {
        @for r in runs {
            tr {
                td { a href={"/runs/" (r.id)} { (r.project) "." (r.task) } }
                td {
                    (ui::badge(r.status))
                    @if let Some(w) = &r.waiting_for { br; span.small.muted { (w) } }
                    @if let Some(w) = &r.waiting { br; span.small.muted.waiting { (w) } }
                }
                td.hide-narrow { (r.trigger) }
                td data-label="since" { (ui::opt_time_str(r.started_at.as_deref().or(Some(r.queued_at.as_str())))) }
                td.num.hide-narrow { (r.attempt) "/" (r.max_attempts) }
            }
        }
    }
}

/// Workers: whether each is connected (or when it was last heard from), the projects it serves
/// and how many attempts it runs of how many it may. Nothing when there are none.
pub fn worker_table(workers: &[WorkerView]) -> Markup {
    if workers.is_empty() {
        return html! {};
    }
    html! {
        div.table-wrap {
            table.cards.workers {
                thead { tr { th { "Worker" } th { "State" } th { "Projects" } th.num { "Running" } } }
                tbody {
                    @for w in workers {
                        tr class=[(!w.connected).then_some("flag")] {
                            td { (w.name) br; span.small.muted { (w.hostname) " · " (w.version) } }
                            td {
                                @if w.connected { (ui::badge(ui::Word::Connected)) }
                                @else { (ui::badge(ui::Word::Away)) br; span.small.muted { "last seen " (ui::time_str(&w.last_contact)) } }
                            }
                            td {
                                @for (i, p) in w.projects.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    a href={"/projects/" (agent_os_core::url::encode_component(p))} { (p) }
                                }
                            }
                            td.num data-label="running" { (w.running.len()) "/" (w.capacity) }
                        }
                    }
                }
            }
        }
    }
}

fn run_table(running: &[RunView], queued: &[RunView]) -> Markup {
    if running.is_empty() && queued.is_empty() {
        return ui::empty(
            "Nothing is running.",
            html! { "Start a task from its project's page, or from the command line: " code { "agent-os run PROJECT TASK" } "." },
        );
    }
    html! {
        div.table-wrap {
            table.cards {
                thead { tr { th { "Task" } th { "State" } th.hide-narrow { "Trigger" } th { "Since" } th.num.hide-narrow { "Attempt" } } }
                tbody { (run_rows(running)) (run_rows(queued)) }
            }
        }
    }
}

pub fn incident_list(incidents: &[IncidentView]) -> Markup {
    if incidents.is_empty() {
        return ui::empty(
            "No open incidents.",
            html! { "Failed runs, late checks, unhealthy projects and budgets open one here." },
        );
    }
    html! {
        div.table-wrap {
            table {
                thead { tr { th { "Severity" } th { "Incident" } th.hide-narrow { "Project" } th { "Open since" } th { "Acknowledged" } } }
                tbody {
                    @for i in incidents {
                        tr {
                            td { (ui::badge(i.severity)) @if i.flapping { " " (ui::badge(ui::Word::Flapping)) } }
                            td { a href={"/incidents#i-" (i.id)} { (i.title) } br; span.small.muted { (i.reason) } }
                            td.hide-narrow { (i.project.as_deref().unwrap_or("—")) }
                            td { (ui::time_str(&i.opened_at)) }
                            td { @match &i.acked_by { Some(by) => { "by " (by) }, None => span.muted { "no" } } }
                        }
                    }
                }
            }
        }
    }
}

fn next_fires(t: &crate::Timeline) -> Markup {
    if t.fires.is_empty() {
        return ui::empty(
            "Nothing is scheduled in the next 24 hours.",
            html! {
                "List them under " code { "schedules:" } " in a project's manifest (" code { "- { task: NAME, cron: \"0 9 * * *\" }" } "), or register the cron, launchd or Railway jobs a project keeps with "
                code { "agent-os schedules discover DIR --register" } "."
            },
        );
    }
    let clashing: std::collections::HashSet<usize> =
        t.collisions.iter().flat_map(|c| c.fires.iter().copied()).collect();
    html! {
        div.table-wrap {
            table {
                thead { tr { th { "When" } th { "Task" } th.hide-narrow { "Kept by" } th { "" } } }
                tbody {
                    @for (i, f) in t.fires.iter().enumerate().take(15) {
                        tr class=[clashing.contains(&i).then_some("flag")] {
                            td { (ui::time_str(&f.at)) }
                            td { a href={"/projects/" (f.project)} { (f.project) } "." (f.task) }
                            td.hide-narrow { (f.managed_by) }
                            td { @if clashing.contains(&i) { (ui::badge(Severity::Warning)) " collides" } }
                        }
                    }
                }
            }
        }
        @if t.fires.len() > 15 { p.small { a href="/schedules" { "All " (t.fires.len()) " fires and the timeline →" } } }
    }
}
