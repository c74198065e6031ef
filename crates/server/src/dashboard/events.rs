//! Events: the stream of what happened (check state changes, budget thresholds, workflow ends,
//! what projects emit), newest first, filterable by type and project, paged with a keyset
//! cursor. Each row sums its data up in one line and shows the whole JSON on demand.

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::session::Session;
use super::ui::{self, Nav, Page};
use super::{Fragment, PageResult};
use crate::AppState;
use crate::auth::Caller;
use crate::body::ApiQuery;
use crate::routes::{self, EventQuery, EventView};

pub fn routes() -> Router<AppState> {
    Router::new().route("/events", get(list))
}

/// Page sizes offered; the first is the default.
const SIZES: &[i64] = &[50, 25, 100, 200];
/// Type prefixes of the events Agent OS emits itself, offered as suggestions.
const OWN_TYPES: &[&str] = &["check.", "budget.", "workflow.", "channel."];
/// The one-line summary's length, in characters.
const SUMMARY_CHARS: usize = 140;
/// The most JSON text shown for one event; an event's data may hold up to 256 KiB.
const JSON_CHARS: usize = 64 * 1024;

#[derive(Deserialize, Default)]
pub struct EventsFilter {
    #[serde(rename = "type")]
    kind: Option<String>,
    project: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

pub async fn list(
    State(st): State<AppState>,
    session: Session,
    fragment: Fragment,
    Query(f): Query<EventsFilter>,
) -> PageResult {
    let (kind, project, before) = (ui::given(&f.kind), ui::given(&f.project), ui::given(&f.before));
    let limit =
        ui::given(&f.limit).and_then(|l| l.parse::<i64>().ok()).filter(|l| SIZES.contains(l)).unwrap_or(SIZES[0]);
    let events = routes::list_events(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(EventQuery {
            kind: kind.clone(),
            project: project.clone(),
            before: before.clone(),
            limit: Some(limit),
        }),
    )
    .await?
    .0;
    let next = (events.len() as i64 == limit).then(|| events.last().map(|e| e.id.clone())).flatten();
    let filtered = kind.is_some() || project.is_some();
    let limit_text = limit.to_string();
    let pager = ui::pager(
        "/events",
        &[
            ("type", kind.as_deref()),
            ("project", project.as_deref()),
            ("limit", (limit != SIZES[0]).then_some(limit_text.as_str())),
        ],
        "before",
        next.as_deref(),
        before.is_none(),
    );
    let list = html! { (table(&events, filtered, before.is_some())) (pager) };
    if fragment.name().is_some() {
        return Ok(Page::new("Events", Nav::Events).live("events", list).respond(&session, fragment.name()));
    }
    let projects = st.engine.projects().await?;
    let filters = html! {
        form.filters method="get" action="/events" role="search" {
            label { "Type starts with"
                input type="text" name="type" value=[kind.as_deref()] placeholder="e.g. check." size="18" list="event-types"
                    autocomplete="off" spellcheck="false";
            }
            datalist id="event-types" {
                @for t in OWN_TYPES { option value=(t) {} }
                @for p in &projects { option value={ (p.record.name) "." } {} }
            }
            (ui::project_select(projects.iter().map(|p| p.record.name.as_str()), project.as_deref()))
            label { "Per page"
                select name="limit" {
                    @for n in SIZES.iter().copied() { option value=(n) selected[n == limit] { (n) } }
                }
            }
            button type="submit" { "Filter" }
            @if filtered || limit != SIZES[0] { a href="/events" { "Clear" } }
        }
    };
    Ok(Page::new("Events", Nav::Events).add(filters).live("events", list).respond(&session, fragment.name()))
}

fn table(events: &[EventView], filtered: bool, paged: bool) -> Markup {
    if events.is_empty() {
        if paged {
            return ui::empty("No older events.", html! { a href="/events" { "Back to the newest events" } });
        }
        if filtered {
            return ui::empty(
                "No events match these filters.",
                html! { "A type filter keeps the types that start with it (" code { "check." } " keeps " code { "check.late" } " and " code { "check.down" } "). " a href="/events" { "Show all events" } },
            );
        }
        return ui::empty(
            "No events yet.",
            html! {
                "Agent OS records its own when a check turns late or down (" code { "check.late" } ", " code { "check.down" } "), a budget crosses a threshold ("
                code { "budget.threshold" } ") or a workflow run ends (" code { "workflow.succeeded" } ", " code { "workflow.failed" } "). "
                "Projects emit theirs with " code { "agent-os event emit TYPE --data '{…}'" } " or " code { "POST /api/v1/events" } "; "
                "workflows with " code { "on: event" } " start from them."
            },
        );
    }
    html! {
        div.table-wrap {
            table.events {
                thead { tr { th scope="col" { "Time" } th scope="col" { "Type" } th.hide-narrow scope="col" { "Project / source" } th scope="col" { "Data" } } }
                tbody {
                    @for e in events {
                        tr data-event=(e.id) {
                            td { (ui::time_str(&e.at)) }
                            td { code { (e.kind) } }
                            td.hide-narrow {
                                @match &e.project {
                                    Some(p) => a href={"/projects/" (p)} { (p) },
                                    None => span.muted { "Agent OS / admin" },
                                }
                                @if let Some(s) = &e.subject { br; span.small.muted.mono { (s) } }
                            }
                            td.event-data { (data_cell(&e.data)) }
                        }
                    }
                }
            }
        }
    }
}

/// One line of the data and, unfolded, all of it.
fn data_cell(data: &Value) -> Markup {
    let line = summary(data);
    if line.is_empty() {
        return html! { span.muted { "no data" } };
    }
    let text = serde_json::to_string_pretty(data).unwrap_or_default();
    html! {
        details {
            summary { span.summary { (line) } }
            @if text.len() > JSON_CHARS {
                pre.json { code { (cut(&text, JSON_CHARS)) } }
                p.small.muted { "Shown: the first " (JSON_CHARS / 1024) " KiB of " (text.len() / 1024) " KiB; " code { "GET /api/v1/events" } " returns it whole." }
            } @else {
                (ui::json_block(data))
            }
        }
    }
}

/// `key: value, key: value`, strings unquoted, on one line and at most [`SUMMARY_CHARS`] long.
fn summary(data: &Value) -> String {
    let mut out = String::new();
    match data {
        Value::Null => {}
        Value::Object(m) => {
            for (i, (k, v)) in m.iter().enumerate() {
                if out.chars().count() > SUMMARY_CHARS {
                    break;
                }
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(": ");
                match v {
                    Value::String(s) => out.push_str(&cut(s, SUMMARY_CHARS + 1)),
                    other => out.push_str(&cut(&other.to_string(), SUMMARY_CHARS + 1)),
                }
            }
        }
        other => out.push_str(&cut(&other.to_string(), SUMMARY_CHARS + 1)),
    }
    let one_line: String = out.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if one_line.chars().count() > SUMMARY_CHARS {
        format!("{}…", cut(&one_line, SUMMARY_CHARS - 1))
    } else {
        one_line
    }
}

/// The first `n` characters of `s`.
fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries_are_one_short_line() {
        assert_eq!(summary(&json!({"symbol": "SOL", "move": -3.4})), "move: -3.4, symbol: SOL");
        assert_eq!(summary(&json!({})), "");
        assert_eq!(summary(&json!({"note": "two\nlines"})), "note: two lines");
        let long = summary(&json!({"text": "x".repeat(1000), "more": [1, 2, 3]}));
        assert_eq!(long.chars().count(), SUMMARY_CHARS);
        assert!(long.ends_with('…'));
    }
}
