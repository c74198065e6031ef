//! Resources: every named resource declared in config.yaml with its limits (concurrency,
//! rate), who holds it (runs and leases, since when, until when), who waits for it in the
//! order they will be served, and how full its rate bucket is.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use maud::{Markup, html};

use agent_os_core::resource::HolderKind;

use super::session::Session;
use super::ui::{self, Nav, Page};
use super::{Fragment, PageResult};
use crate::AppState;
use crate::auth::Caller;
use crate::routes;
use crate::views::{HolderView, ResourceView, WaiterView};

pub fn routes() -> Router<AppState> {
    Router::new().route("/resources", get(page))
}

/// Waiters listed per resource; the rest are counted.
const MAX_WAITERS: usize = 50;

pub async fn page(State(st): State<AppState>, session: Session, fragment: Fragment) -> PageResult {
    let resources = routes::list_resources(State(st.clone()), Caller::Admin).await?.0;
    let body = if resources.is_empty() {
        empty()
    } else {
        let held: usize = resources.iter().map(|r| r.holders.len()).sum();
        let waiting: usize = resources.iter().map(|r| r.waiters.len()).sum();
        html! {
            div.stats {
                (ui::stat("Resources", html! { (resources.len()) }))
                (ui::stat("Held", html! { (held) }))
                (ui::stat("Waiting", html! { (waiting) }))
            }
            @for r in &resources { (resource(r)) }
        }
    };
    Ok(Page::new("Resources", Nav::Resources)
        .add(html! {
            p.muted.small {
                "Runs of tasks that list a resource, and leases taken by jobs Agent OS does not run ("
                code { "agent-os lease" } "), take turns here: higher priority first, then whoever came first."
            }
        })
        .live("resources", body)
        .respond(&session, fragment.name()))
}

fn empty() -> Markup {
    ui::empty(
        "No resources are declared.",
        html! {
            "A resource is something several projects share that can take only so much at once, such as an API key's rate limit or a GPU. "
            "Declare it in the server's " code { "config.yaml" } ":"
            pre { code { "resources:\n  openai: { concurrency: 1, rate: 60/min, burst: 5 }\n  gpu: { concurrency: 2 }" } }
            "then list it in the tasks that need it, in their project's " code { "agent-os.yaml" } ":"
            pre { code { "tasks:\n  summarize:\n    run: [python3, summarize.py]\n    resources: [openai]" } }
            "Restart Agent OS to load a changed " code { "config.yaml" } "; jobs outside Agent OS join in with "
            code { "agent-os lease openai -- CMD" } "."
        },
    )
}

fn resource(r: &ResourceView) -> Markup {
    let id = format!("r-{}", r.name);
    let held = r.holders.len();
    html! {
        section.resource aria-labelledby=(id) data-resource=(r.name) {
            h2 id=(id) {
                (r.name) " "
                @match r.concurrency {
                    Some(c) if held as u64 >= u64::from(c) => (ui::badge(ui::Word::Full)),
                    _ if !r.waiters.is_empty() => (ui::badge(ui::Word::Waiting)),
                    _ if held > 0 => (ui::badge(ui::Word::Held)),
                    _ => (ui::badge(ui::Word::Free)),
                }
            }
            dl.facts {
                dt { "Concurrency" }
                dd {
                    @match r.concurrency {
                        Some(c) => { (held) " of " (c) " held" (meter(held as f64, f64::from(c), &format!("{held} of {c} held"))) },
                        None => { (held) " held " span.muted { "(no limit at once)" } },
                    }
                }
                dt { "Rate" }
                dd {
                    @match &r.rate {
                        Some(rate) => {
                            (rate)
                            @if let Some(b) = r.burst { ", burst " (b) }
                            @if let (Some(t), Some(b)) = (r.tokens, r.burst) {
                                br;
                                span.small { (format!("{t:.2}")) " of " (b) " tokens in the bucket now" }
                                (meter(t, f64::from(b), &format!("{t:.2} of {b} tokens")))
                            }
                        },
                        None => span.muted { "no rate limit" },
                    }
                }
                dt { "Waiting" }
                dd { (r.waiters.len()) }
            }
            h3 { "Holders" }
            @if r.holders.is_empty() {
                p.small.muted { "Nobody holds " (r.name) " now." }
            } @else {
                (holders(&r.holders))
            }
            @if !r.waiters.is_empty() {
                h3 { "Waiting, in serving order" }
                (waiters(&r.waiters))
            }
        }
    }
}

/// Who: a run links to its page; a lease shows its label. (The dashboard reads as the admin,
/// who sees every id and label; a holder without them is named by its kind alone.)
fn who(kind: HolderKind, id: Option<&str>, label: Option<&str>) -> Markup {
    let (Some(id), Some(label)) = (id, label) else {
        return html! { span.muted { "someone else's " (kind) } };
    };
    html! {
        @if kind == HolderKind::Run {
            a href={"/runs/" (id)} { (label) } " " span.small.muted { "run" }
        } @else {
            (label) " " span.small.muted { "lease " span.mono { (id.get(..8).unwrap_or(id)) } }
        }
    }
}

fn holders(hs: &[HolderView]) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead { tr { th scope="col" { "Holder" } th.hide-narrow scope="col" { "Project" } th.num.hide-narrow scope="col" { "Priority" } th scope="col" { "Since" } th scope="col" { "Expires" } } }
                tbody {
                    @for h in hs {
                        tr data-holder=(h.id.as_deref().unwrap_or("")) {
                            td { (who(h.kind, h.id.as_deref(), h.label.as_deref())) }
                            td.hide-narrow { (h.project.as_deref().unwrap_or("—")) }
                            td.num.hide-narrow { (h.priority) }
                            td { (ui::time_str(&h.since)) }
                            td {
                                @match &h.expires_at {
                                    Some(e) => (ui::time_str(e)),
                                    None => span.muted { "when the run ends" },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn waiters(ws: &[WaiterView]) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead { tr { th.num scope="col" { "Turn" } th scope="col" { "Waiter" } th.hide-narrow scope="col" { "Project" } th.num.hide-narrow scope="col" { "Priority" } th scope="col" { "Waiting since" } } }
                tbody {
                    @for (i, w) in ws.iter().take(MAX_WAITERS).enumerate() {
                        tr data-waiter=(w.id.as_deref().unwrap_or("")) {
                            td.num { (i + 1) }
                            td { (who(w.kind, w.id.as_deref(), w.label.as_deref())) }
                            td.hide-narrow { (w.project.as_deref().unwrap_or("—")) }
                            td.num.hide-narrow { (w.priority) }
                            td { (ui::time_str(&w.since)) }
                        }
                    }
                }
            }
        }
        @if ws.len() > MAX_WAITERS { p.small.muted { "And " (ws.len() - MAX_WAITERS) " more waiting." } }
    }
}

/// How full something is, as a bar (an SVG: the page allows no inline styles).
fn meter(value: f64, max: f64, label: &str) -> Markup {
    let pct = if max > 0.0 { (value / max * 100.0).clamp(0.0, 100.0) } else { 0.0 };
    ui::trusted(format!(
        r#"<svg class="meter" viewBox="0 0 100 6" width="160" height="6" preserveAspectRatio="none" role="img" aria-label="{}"><rect width="100" height="6" rx="3" fill="var(--neutral-bg)"/><rect width="{pct:.2}" height="6" rx="3" fill="var(--accent)"/></svg>"#,
        ui::esc(label)
    ))
}
