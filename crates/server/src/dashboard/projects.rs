//! Every registered project in one list: health and why, how it is reached, its tasks and
//! schedules, and what it spent this month; each links to its page.

use axum::extract::State;
use maud::html;

use agent_os_store::ProjectTransport;

use super::session::Session;
use super::ui::{self, Nav, Page};
use super::{Fragment, PageResult};
use crate::AppState;
use crate::auth::Caller;
use crate::body::ApiQuery;
use crate::routes::{self, SummaryQuery};

pub async fn page(State(st): State<AppState>, session: Session, fragment: Fragment) -> PageResult {
    let spend = routes::cost_summary(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(SummaryQuery {
            by: Some("project".into()),
            from: Some(super::overview::month_start(st.engine.now())),
            to: None,
            project: None,
            service: None,
        }),
    )
    .await?
    .0;
    let mut rows = Vec::new();
    let snoozes = st.engine.project_snoozes().await?;
    for p in st.engine.projects().await? {
        let snoozed = snoozes.get(&p.record.name).map(|s| crate::views::time(s.until));
        let health = st.engine.project_health(&p).await?;
        let why = health.reasons.iter().find(|r| r.state > agent_os_engine::HealthState::Ok);
        let spent: Vec<String> = spend
            .groups
            .iter()
            .filter(|g| g.group == p.record.name)
            .map(|g| ui::money(g.amount_nanos, &g.currency))
            .collect();
        rows.push(html! {
            tr {
                td { a href={"/projects/" (agent_os_core::url::encode_component(&p.record.name))} { (p.record.name) }
                    @if !p.record.description.is_empty() { br; span.small.muted { (p.record.description) } } }
                td { (ui::badge(health.state)) (super::project::quiet(snoozed.as_deref(), None))
                    @if let Some(r) = why { br; span.small { strong { (r.source) ": " } (r.message) } } }
                td.hide-narrow { (if matches!(p.record.transport, ProjectTransport::Http { .. }) { "hosted (HTTP)" } else { "local commands" }) }
                td.num.hide-narrow { (p.manifest.tasks.len()) }
                td.num { @if spent.is_empty() { span.muted { "—" } } @else { (spent.join(" + ")) } }
            }
        });
    }
    let list = if rows.is_empty() {
        ui::empty(
            "No projects yet.",
            html! { "Register one with " code { "agent-os project add PATH" } ", or try " code { "agent-os demo" } "." },
        )
    } else {
        html! {
            div.table-wrap {
                table {
                    thead { tr { th { "Project" } th { "Health" } th.hide-narrow { "Runs as" } th.num.hide-narrow { "Tasks" } th.num { "This month" } } }
                    tbody { @for r in &rows { (r) } }
                }
            }
        }
    };
    Ok(Page::new("Projects", Nav::Projects).live("projects", list).respond(&session, fragment.name()))
}
