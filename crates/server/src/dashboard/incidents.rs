//! Incidents and deliveries: what is broken (open incidents first, then recently resolved ones)
//! with a button to acknowledge each; the maintenance windows, with a form to start one and a
//! button to end one; and the recent notifications with how each channel's delivery went.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Json, Router};
use maud::{Markup, html};
use serde::Deserialize;

use agent_os_core::alerting::{DeliveryStatus, IncidentStatus};
use agent_os_core::channel::Channel;
use agent_os_core::url::encode_component as urlencode;

use super::session::Session;
use super::ui::{self, Nav, Page};
use super::{Fragment, PageResult};
use crate::AppState;
use crate::alerting::{
    self, IncidentQuery, IncidentView, MaintenanceBody, MaintenanceView, NotificationQuery, NotificationView,
};
use crate::auth::Caller;
use crate::body::{ApiQuery, JsonBody, OptionalJson};

/// Rows shown unless "show more" asks for more; the API's own ceiling is the most.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
/// Notifications in the delivery log below (each with its deliveries).
const NOTIFICATIONS: i64 = 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/incidents", get(page))
        .route("/incidents/{id}/ack", post(ack))
        .route("/incidents/maintenance", post(start_maintenance))
        .route("/incidents/maintenance/{id}/end", post(end_maintenance))
}

#[derive(Deserialize, Default)]
pub struct IncidentsFilter {
    /// `all` (open first, then resolved; the default) or `open`.
    show: Option<String>,
    project: Option<String>,
    limit: Option<String>,
}

pub async fn page(
    State(st): State<AppState>,
    session: Session,
    fragment: Fragment,
    Query(f): Query<IncidentsFilter>,
) -> PageResult {
    let open_only = f.show.as_deref().map(str::parse) == Some(Ok(IncidentStatus::Open));
    let project = f.project.as_deref().map(str::trim).filter(|p| !p.is_empty()).map(str::to_string);
    let limit = f.limit.as_deref().and_then(|l| l.parse::<i64>().ok()).unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let query = |open: bool| IncidentQuery { open, project: project.clone(), limit: Some(limit) };
    let open = alerting::list_incidents(State(st.clone()), Caller::Admin, ApiQuery(query(true))).await?.0;
    let resolved: Vec<IncidentView> = if open_only || open.len() as i64 >= limit {
        Vec::new()
    } else {
        let recent = alerting::list_incidents(State(st.clone()), Caller::Admin, ApiQuery(query(false))).await?.0;
        recent
            .into_iter()
            .filter(|i| i.status != IncidentStatus::Open)
            .take((limit - open.len() as i64) as usize)
            .collect()
    };
    // More may exist when a list came back full.
    let more = (open.len() + resolved.len()) as i64 >= limit && limit < MAX_LIMIT;
    let maintenance = alerting::list_maintenance(State(st.clone()), Caller::Admin).await?.0;
    let notifications = alerting::list_notifications(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(NotificationQuery { project: project.clone(), limit: Some(NOTIFICATIONS) }),
    )
    .await?
    .0;
    let projects: Vec<String> = st.engine.projects().await?.iter().map(|p| p.record.name.clone()).collect();
    let channels = &st.engine.config().channels;

    let filters = html! {
        form.filters method="get" action="/incidents" role="search" {
            label { "Show"
                select name="show" {
                    option value="all" selected[!open_only] { "Open, then recently resolved" }
                    option value="open" selected[open_only] { "Open only" }
                }
            }
            (ui::project_select(projects.iter().map(String::as_str), project.as_deref()))
            button type="submit" { "Filter" }
            @if open_only || project.is_some() { a href="/incidents" { "Clear" } }
        }
    };
    let more_link = more.then(|| {
        let mut q = vec![format!("limit={}", (limit * 2).min(MAX_LIMIT))];
        if open_only {
            q.push("show=open".into());
        }
        if let Some(p) = &project {
            q.push(format!("project={}", urlencode(p)));
        }
        format!("/incidents?{}", q.join("&"))
    });
    let list = html! {
        (incident_table(&session, &open, &resolved, open_only, project.is_some()))
        @if let Some(href) = &more_link {
            p.small { "Showing the newest " (limit) ". " a href=(href) { "Show more" } }
        } @else if limit >= MAX_LIMIT && (open.len() + resolved.len()) as i64 >= limit {
            p.small.muted { "Showing the newest " (MAX_LIMIT) "; " code { "agent-os incidents --limit 500 --json" } " lists the same." }
        }
    };
    Ok(Page::new("Incidents", Nav::Incidents)
        .add(filters)
        .live("incidents", list)
        .add(html! {
            h2 #maintenance { "Maintenance windows" }
            (maintenance_section(&session, &maintenance, &projects))
            h2 #notifications { "Recent notifications" }
        })
        .live("notifications", notification_list(&notifications, channels))
        .respond(&session, fragment.name()))
}

fn incident_table(
    session: &Session,
    open: &[IncidentView],
    resolved: &[IncidentView],
    open_only: bool,
    filtered: bool,
) -> Markup {
    if open.is_empty() && resolved.is_empty() {
        let what = match (open_only, filtered) {
            (true, _) => "No open incidents.",
            (false, true) => "No incidents for this project.",
            (false, false) => "No incidents yet.",
        };
        return ui::empty(
            what,
            html! {
                "An incident opens when a run fails after its retries, a check's ping is late or missing, a project's "
                "status probe or health check finds it unwell, spending passes a budget's threshold, or a project sends a "
                code { "warning" } " or " code { "critical" } " notification with a " code { "dedup_key" } ". "
                "The channels hear once when it opens and once when it resolves; it resolves on its own when the cause "
                "recovers (see docs/alerting.md)."
            },
        );
    }
    html! {
        div.table-wrap {
            table.incidents {
                thead {
                    tr {
                        th scope="col" { "Incident" }
                        th.hide-narrow scope="col" { "Project" }
                        th.hide-narrow scope="col" { "Source" }
                        th scope="col" { "Opened" }
                        th.hide-narrow scope="col" { "Resolved" }
                        th.num.hide-narrow scope="col" { "Lasted" }
                        th.num.hide-narrow scope="col" { "Changes" }
                        th scope="col" { "Acknowledged" }
                    }
                }
                tbody {
                    @for i in open.iter().chain(resolved) { (incident_row(session, i)) }
                }
            }
        }
    }
}

fn incident_row(session: &Session, i: &IncidentView) -> Markup {
    let is_open = i.status == IncidentStatus::Open;
    html! {
        tr id={"i-" (i.id)} data-incident=(i.id) class=[(is_open && i.acked_by.is_none()).then_some("flag")] {
            td {
                div.incident-state {
                    (ui::badge(i.severity)) " " (ui::badge(i.status))
                    @if i.flapping { " " (ui::badge(ui::Word::Flapping)) }
                }
                strong { (i.title) }
                br;
                span.small.muted { (i.reason) }
                @if is_open && !i.notified {
                    br;
                    span.small { "Not told yet: a maintenance window (or flapping) keeps it quiet." }
                }
            }
            td.hide-narrow {
                @match &i.project {
                    Some(p) => a href={"/projects/" (urlencode(p))} { (p) },
                    None => span.muted { "—" },
                }
            }
            td.hide-narrow { (i.source) br; span.small.mono { (i.subject) } }
            td { (ui::time_str(&i.opened_at)) }
            td.hide-narrow { (ui::opt_time_str(i.resolved_at.as_deref())) }
            td.num.hide-narrow {
                (ui::duration_ms(i.duration_s.saturating_mul(1000)))
                @if is_open { br; span.small.muted { "so far" } }
            }
            td.num.hide-narrow { (i.changes) }
            td {
                @match (&i.acked_by, is_open) {
                    (Some(by), _) => {
                        "Acknowledged by " (by)
                        @if let Some(at) = &i.acked_at { br; span.small.muted { (ui::time_str(at)) } }
                    }
                    (None, true) => (ui::post_button(session, &format!("/incidents/{}/ack", urlencode(&i.id)), "Acknowledge", "primary", None)),
                    (None, false) => span.muted { "—" },
                }
            }
        }
    }
}

fn maintenance_section(session: &Session, windows: &[MaintenanceView], projects: &[String]) -> Markup {
    html! {
        @if windows.is_empty() {
            (ui::empty(
                "No maintenance windows.",
                html! {
                    "Start one before planned work: nothing about the project it covers (or anything, without one) "
                    "alerts inside it, and incidents opened meanwhile are told when it ends if they are still open."
                },
            ))
        } @else {
            div.table-wrap {
                table {
                    thead {
                        tr {
                            th scope="col" { "Covers" }
                            th scope="col" { "When" }
                            th scope="col" { "State" }
                            th.hide-narrow scope="col" { "Reason" }
                        }
                    }
                    tbody {
                        @for w in windows {
                            tr {
                                td { (w.project.as_deref().unwrap_or("everything")) }
                                td {
                                    @if let Some(r) = &w.recurring {
                                        span.mono.small { (r) }
                                        @if let Some(e) = &w.ends_at { br; span.small { "until " (ui::time_str(e)) } }
                                    } @else {
                                        (ui::opt_time_str(w.starts_at.as_deref())) " → " (ui::opt_time_str(w.ends_at.as_deref()))
                                    }
                                }
                                td {
                                    @if w.active { (ui::badge(ui::Word::Active)) } @else { (ui::badge(ui::Word::Scheduled)) }
                                    br;
                                    @match &w.id {
                                        Some(id) => (ui::post_button(
                                            session,
                                            &format!("/incidents/maintenance/{}/end", urlencode(id)),
                                            "End now",
                                            "",
                                            Some("End this maintenance window now? Incidents it kept quiet are told at once."),
                                        )),
                                        None => span.small.muted { "from config.yaml" },
                                    }
                                }
                                td.hide-narrow { (w.reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        h3 { "Start a maintenance window" }
        form.stack.maintenance method="post" action="/incidents/maintenance" {
            (ui::csrf_field(session))
            label { "How long (e.g. 30m, 2h)"
                input type="text" name="duration" required placeholder="2h" size="8" autocomplete="off";
            }
            label { "Covers"
                select name="project" {
                    option value="" { "Everything" }
                    @for p in projects { option value=(p) { (p) } }
                }
            }
            label { "Reason (optional)"
                input type="text" name="reason" maxlength="500" placeholder="database upgrade";
            }
            div { button type="submit" { "Start maintenance" } }
        }
    }
}

fn notification_list(list: &[NotificationView], channels: &[Channel]) -> Markup {
    if list.is_empty() {
        return ui::empty(
            "No notifications yet.",
            html! {
                "Projects send them with " code { "agent-os notify" } " or " code { "POST /api/v1/notifications" }
                ", and Agent OS sends its own when an incident opens or resolves. Each goes to the channels under "
                code { "notifications.channels" } " in config.yaml that the routes choose; this log shows how each delivery went. "
                "Try one from " a href="/settings#channels" { "Settings → Channels" } "."
            },
        );
    }
    html! {
        div.table-wrap {
            table.notifications {
                thead {
                    tr {
                        th scope="col" { "Sent" }
                        th scope="col" { "Notification" }
                        th.hide-narrow scope="col" { "Project" }
                        th scope="col" { "Deliveries" }
                    }
                }
                tbody {
                    @for n in list {
                        tr data-notification=(n.id) {
                            td { (ui::time_str(&n.created_at)) }
                            td {
                                (ui::badge(n.severity)) " " strong { (n.title) }
                                @if let Some(s) = &n.source { br; span.small.muted { "from " (s) } }
                            }
                            td.hide-narrow { (n.project.as_deref().unwrap_or("—")) }
                            td {
                                @if n.deliveries.is_empty() {
                                    @match &n.suppressed {
                                        Some(why) => { (ui::badge(ui::Word::Suppressed)) " " span.small { (why) } },
                                        None => span.small.muted { "Sent to no channel: none is configured, or the routes chose none." },
                                    }
                                } @else {
                                    ul.deliveries {
                                        @for d in &n.deliveries {
                                            li {
                                                strong { (d.channel) } " " (ui::badge(d.status))
                                                " " span.small.muted { (d.attempts) @if d.attempts == 1 { " attempt" } @else { " attempts" } }
                                                @if let Some(h) = &d.held { " " span.small { "held for a digest (" (h) ")" } }
                                                @if let (Some(next), true) = (&d.next_at, d.status == DeliveryStatus::Pending) {
                                                    " " span.small.muted { "next " (ui::time_str(next)) }
                                                }
                                                @if let Some(e) = &d.last_error { br; span.small.error-text { (scrub(e, channels)) } }
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
}

/// A delivery's error as shown: a channel's real address (whose path or query may hold its
/// secret) becomes its masked form, any other URL keeps only its host, and secret-shaped text
/// is masked.
pub(super) fn scrub(text: &str, channels: &[Channel]) -> String {
    let mut t = text.to_string();
    for c in channels {
        if !c.endpoint.is_empty() {
            t = t.replace(&c.endpoint, &c.display);
        }
    }
    let mut out = String::with_capacity(t.len());
    let mut rest = t.as_str();
    while let Some(at) = rest.find("://") {
        out.push_str(&rest[..at + 3]);
        let after = &rest[at + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '(' | '"' | '\'' | '<' | '>' | ','))
            .unwrap_or(after.len());
        let url = &after[..end];
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let authority = &url[..authority_end];
        out.push_str(authority.rsplit_once('@').map_or(authority, |(_, host)| host));
        if authority_end < url.len() {
            out.push_str("/…");
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    agent_os_core::redact::redact_shapes(&out)
}

/// The host (and port) of an address, without user information, path or query.
pub(super) fn host_of(endpoint: &str) -> String {
    agent_os_core::url::host_of(endpoint).to_string()
}

/// Acknowledges an incident for the logged-in admin (recorded as "admin").
pub async fn ack(State(st): State<AppState>, _session: Session, Path(id): Path<String>) -> PageResult {
    let Json(i) = alerting::ack_incident(State(st), Caller::Admin, Path(id), OptionalJson(None)).await?;
    Ok(Redirect::to(&format!("/incidents#i-{}", urlencode(&i.id))).into_response())
}

#[derive(Deserialize)]
pub struct MaintenanceForm {
    #[serde(default)]
    duration: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    reason: String,
}

fn nonempty(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

pub async fn start_maintenance(
    State(st): State<AppState>,
    _session: Session,
    Form(f): Form<MaintenanceForm>,
) -> PageResult {
    let body = MaintenanceBody {
        project: nonempty(f.project),
        start: None,
        end: None,
        duration: Some(f.duration.trim().to_string()),
        reason: nonempty(f.reason),
    };
    let (_, _window) = alerting::start_maintenance(State(st), Caller::Admin, JsonBody(body)).await?;
    Ok(Redirect::to("/incidents#maintenance").into_response())
}

pub async fn end_maintenance(State(st): State<AppState>, _session: Session, Path(id): Path<String>) -> PageResult {
    alerting::end_maintenance(State(st), Caller::Admin, Path(id)).await?;
    Ok(Redirect::to("/incidents#maintenance").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_lose_the_secret_parts_of_addresses() {
        let ch = agent_os_core::channel::parse("ops", "slack://T000/B000/SECRETsecret99").unwrap();
        let e = format!("error sending request for url ({}): connection refused", ch.endpoint);
        let shown = scrub(&e, std::slice::from_ref(&ch));
        assert!(!shown.contains("SECRETsecret99"), "{shown}");
        assert!(shown.contains("slack://T000/…"), "{shown}");
        let other = scrub("GET https://user:pw@hooks.example.test/services/SECRET123?x=1 failed", &[]);
        assert_eq!(other, "GET https://hooks.example.test/… failed");
        assert_eq!(host_of("https://user:pw@hooks.example.test:8443/services/SECRET123"), "hooks.example.test:8443");
        assert_eq!(host_of("smtp://smtp.example.com:587"), "smtp.example.com:587");
    }
}
