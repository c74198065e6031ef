//! Schedules: every schedule of every project, the ones Agent OS fires and the ones kept
//! elsewhere (Railway, launchd, cron, systemd, GitHub), with their state, next fire and last run
//! or ping; pause, resume and run now for the managed ones; and a timeline of the next 24 hours
//! or 7 days drawn as SVG, with the fires that collide on a shared service marked and listed.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use serde::Deserialize;

use agent_os_core::check::CheckState;
use agent_os_core::manifest::{ManagedBy, ScheduleStatus};
use agent_os_core::url::encode_component as urlencode;

use super::session::Session;
use super::ui::{self, Nav, Page};
use super::{Fragment, PageResult};
use crate::auth::Caller;
use crate::body::ApiQuery;
use crate::routes::{self, ScheduleQuery, TimelineQuery};
use crate::views::ScheduleView;
use crate::{AppState, Timeline};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/schedules", get(page))
        .route("/schedules/{id}/pause", post(pause))
        .route("/schedules/{id}/resume", post(resume))
        .route("/schedules/{id}/run", post(run_now))
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// Rows the timeline draws; more would not be readable. The table lists every schedule.
const MAX_ROWS: usize = 40;
/// Collisions listed under the timeline.
const MAX_COLLISIONS: usize = 100;

/// The filter, also carried by the action forms so a button leads back to the same view.
#[derive(Deserialize, Default)]
pub struct SchedulesFilter {
    project: Option<String>,
    range: Option<String>,
}

impl SchedulesFilter {
    fn project(&self) -> Option<String> {
        self.project.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
    }

    /// `7d` or the default `24h`.
    fn week(&self) -> bool {
        self.range.as_deref() == Some("7d")
    }

    /// This view's URL, pointing at a schedule's row when given one.
    fn url(&self, row: Option<&str>) -> String {
        let mut q = Vec::new();
        if let Some(p) = self.project() {
            q.push(format!("project={}", urlencode(&p)));
        }
        if self.week() {
            q.push("range=7d".to_string());
        }
        let mut url = if q.is_empty() { "/schedules".to_string() } else { format!("/schedules?{}", q.join("&")) };
        if let Some(id) = row {
            url.push_str("#s-");
            url.push_str(&urlencode(id));
        }
        url
    }
}

pub async fn page(
    State(st): State<AppState>,
    session: Session,
    fragment: Fragment,
    Query(f): Query<SchedulesFilter>,
) -> PageResult {
    let project = f.project();
    let schedules =
        routes::list_schedules(State(st.clone()), Caller::Admin, ApiQuery(ScheduleQuery { project: project.clone() }))
            .await?
            .0;
    let checks = routes::list_checks(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(routes::CheckQuery { project: project.clone(), tag: None }),
    )
    .await?
    .0;
    // Heartbeat checks of their own (not watching a listed schedule) count as late or down too.
    let watching: HashSet<&str> = schedules.iter().filter_map(|s| s.check.as_ref().map(|c| c.id.as_str())).collect();
    let lone: Vec<&routes::CheckView> = checks
        .iter()
        .filter(|c| (c.state == CheckState::Late || c.state == CheckState::Down) && !watching.contains(c.id.as_str()))
        .collect();
    let table = schedule_table(&session, &f, &schedules, &lone);
    // The live part is re-fetched on every change; the timeline is not part of it.
    if fragment.name().is_some() {
        return Ok(Page::new("Schedules", Nav::Schedules).live("schedules", table).respond(&session, fragment.name()));
    }
    let to = f.week().then(|| crate::views::time(st.engine.now() + 7 * DAY));
    let timeline = routes::schedule_timeline(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(TimelineQuery { from: None, to, window: None, project: project.clone() }),
    )
    .await?
    .0;
    let projects = st.engine.projects().await?;
    let filters = html! {
        form.filters method="get" action="/schedules" role="search" {
            (ui::project_select(projects.iter().map(|p| p.record.name.as_str()), project.as_deref()))
            label { "Timeline"
                select name="range" {
                    option value="24h" selected[!f.week()] { "Next 24 hours" }
                    option value="7d" selected[f.week()] { "Next 7 days" }
                }
            }
            button type="submit" { "Show" }
            @if project.is_some() || f.week() { a href="/schedules" { "Clear" } }
        }
    };
    Ok(Page::new("Schedules", Nav::Schedules)
        .add(filters)
        .live("schedules", table)
        .add(timeline_section(&f, &timeline, schedules.is_empty()))
        .respond(&session, fragment.name()))
}

fn schedule_table(
    session: &Session,
    f: &SchedulesFilter,
    schedules: &[ScheduleView],
    lone: &[&routes::CheckView],
) -> Markup {
    if schedules.is_empty() && lone.is_empty() {
        return ui::empty(
            if f.project().is_some() { "This project has no schedules." } else { "No schedules yet." },
            html! {
                "Give a task a schedule in its project's " code { "agent-os.yaml" } ": "
                code { "schedules: [{ task: backup, cron: \"0 3 * * *\", timezone: Europe/Berlin }]" }
                ", then " code { "agent-os project reload PROJECT" } ". Schedules kept elsewhere (cron, launchd, systemd timers, GitHub Actions, Railway) "
                "are found by " code { "agent-os schedules discover DIR --register --project PROJECT" } ", or declared with "
                code { "managed_by:" } "; Agent OS then shows them here and watches each with a heartbeat check."
            },
        );
    }
    let managed = schedules.iter().filter(|s| s.managed_by == ManagedBy::AgentOs).count();
    let flagged = schedules.iter().filter(|s| s.late || s.down).count() + lone.len();
    let paused = schedules.iter().filter(|s| s.paused).count();
    html! {
        div.stats {
            (ui::stat("Schedules", html! { (schedules.len()) }))
            (ui::stat("Fired by Agent OS", html! { (managed) }))
            (ui::stat("Kept elsewhere", html! { (schedules.len() - managed) }))
            (ui::stat("Late or down", html! { (flagged) }))
            @if paused > 0 { (ui::stat("Paused", html! { (paused) })) }
        }
        @if !lone.is_empty() {
            div.table-wrap {
                table.cards.lone-checks aria-label="Heartbeat checks late or down" {
                    thead { tr { th scope="col" { "Heartbeat check" } th scope="col" { "State" } th scope="col" { "Last ping" } } }
                    tbody {
                        @for c in lone {
                            tr.flag {
                                td { a href={"/projects/" (urlencode(&c.project))} { (c.project) } "/" (c.slug) }
                                td { (ui::badge(c.state)) }
                                td data-label="last ping" { (ui::opt_time_str(c.last_ping_at.as_deref())) }
                            }
                        }
                    }
                }
            }
        }
        div.table-wrap {
            table.cards.schedules {
                thead {
                    tr {
                        th scope="col" { "Schedule" }
                        th scope="col" { "When" }
                        th.hide-narrow scope="col" { "Kept by" }
                        th scope="col" { "State" }
                        th scope="col" { "Next fire" }
                        th scope="col" { "Last run or ping" }
                        th scope="col" { "Actions" }
                    }
                }
                tbody {
                    @for s in schedules {
                        tr id={"s-" (s.id)} data-schedule=(s.id) class=[(s.late || s.down).then_some("flag")] {
                            td {
                                a href={"/projects/" (s.project)} { (s.project) } "." (s.task)
                                @if !s.description.is_empty() { div.small.muted.hide-narrow { (s.description) } }
                            }
                            td { code { (s.cron) } " " span.small.muted { (s.timezone) } }
                            td.hide-narrow {
                                @if s.managed_by == ManagedBy::AgentOs { "Agent OS" } @else { (s.managed_by) }
                                br; span.small.muted { (s.source) }
                            }
                            td { (state_badges(s)) }
                            td.next-fire data-label="next" {
                                @match s.next.first() {
                                    Some(n) => (ui::time_str(n)),
                                    None => span.muted { "never" },
                                }
                            }
                            td { (last(s)) }
                            td.schedule-actions { (actions(session, f, s)) }
                        }
                    }
                }
            }
        }
    }
}

/// The state as a word, with late or down said in words too (the row is also highlighted).
fn state_badges(s: &ScheduleView) -> Markup {
    let state = match s.state {
        ScheduleStatus::Failing => html! { span class="badge bad" { (s.state) } },
        ScheduleStatus::Unwatched => {
            html! { span class="badge neutral" title="no check watches this schedule" { (s.state) } }
        }
        other => ui::badge(other),
    };
    html! {
        (state)
        @if s.late && s.state != ScheduleStatus::Late { " " (ui::badge(ScheduleStatus::Late)) }
        @if s.down && s.state != ScheduleStatus::Down && s.state != ScheduleStatus::Failing { " " (ui::badge(ScheduleStatus::Down)) }
        @if let Some(c) = &s.check { (super::project::quiet(c.snoozed_until.as_deref(), c.held_by.as_deref())) }
    }
}

fn last(s: &ScheduleView) -> Markup {
    if let Some(r) = &s.last_run {
        let at = r.finished_at.as_deref().or(r.started_at.as_deref()).unwrap_or(&r.slot);
        return html! { a href={"/runs/" (r.id)} { (ui::badge(r.status)) } " " span.small { (ui::time_str(at)) } };
    }
    match &s.check {
        Some(c) => match &c.last_ping_at {
            Some(at) => html! {
                span.small { "pinged " (ui::time_str(at)) }
                @if let Some(d) = c.last_duration_ms { br; span.small.muted { "took " (ui::duration_ms(d)) } }
            },
            None => html! { span.small.muted { "no ping yet (check " code { (c.slug) } ")" } },
        },
        None if s.managed_by == ManagedBy::AgentOs => html! { span.small.muted { "no run yet" } },
        None => html! { span.small.muted { "not watched" } },
    }
}

fn actions(session: &Session, f: &SchedulesFilter, s: &ScheduleView) -> Markup {
    if s.managed_by != ManagedBy::AgentOs {
        return html! { span.small.muted { "fired by " (s.managed_by) } };
    }
    let name = format!("{}.{}", s.project, s.task);
    html! {
        div.actions {
            @if s.paused {
                (action_form(session, f, &s.id, "resume", "Resume", &name, "primary"))
            } @else {
                (action_form(session, f, &s.id, "pause", "Pause", &name, ""))
            }
            (action_form(session, f, &s.id, "run", "Run now", &name, ""))
        }
    }
}

fn action_form(
    session: &Session,
    f: &SchedulesFilter,
    id: &str,
    what: &str,
    label: &str,
    name: &str,
    class: &str,
) -> Markup {
    html! {
        form.inline method="post" action={"/schedules/" (id) "/" (what)} {
            (ui::csrf_field(session))
            @if let Some(p) = f.project() { input type="hidden" name="project" value=(p); }
            @if f.week() { input type="hidden" name="range" value="7d"; }
            button type="submit" class=(class) aria-label={(label) " " (name)} { (label) }
        }
    }
}

fn timeline_section(f: &SchedulesFilter, t: &Timeline, no_schedules: bool) -> Markup {
    let title = if f.week() { "Next 7 days" } else { "Next 24 hours" };
    if no_schedules {
        return html! {};
    }
    if t.fires.is_empty() {
        return html! {
            h2 { "Timeline: " (title) }
            (ui::empty(
                &format!("No schedule fires in the {}.", title.to_lowercase()),
                html! { @if f.week() { "Schedules that fire less often show their next fire in the table." } @else { a href=(SchedulesFilter { range: Some("7d".into()), project: f.project() }.url(None)) { "Look at the next 7 days" } } },
            ))
        };
    }
    let clashing: HashSet<usize> = t.collisions.iter().flat_map(|c| c.fires.iter().copied()).collect();
    let drawn = draw(t, &clashing);
    html! {
        h2 { "Timeline: " (title) }
        p.small.muted {
            "Times in UTC. Each mark is a fire; "
            span.key-clash { "◆" } " marks a fire that collides: another project's fire within 5 minutes uses the same service or resource."
        }
        @match drawn {
            Some((svg, rows)) => {
                div.timeline-wrap { (ui::trusted(svg)) }
                @if rows > MAX_ROWS {
                    p.small.muted { "Showing " (MAX_ROWS) " of " (rows) " schedules; filter by project to see the others." }
                }
            }
            None => p.muted { "The timeline could not be drawn for this window." },
        }
        @if t.truncated {
            p.small.muted { "This window holds more than 10,000 fires; only the first 10,000 are shown." }
        }
        h3 id="collisions" { "Collisions" }
        @if t.collisions.is_empty() {
            p.small { "None: no two projects' fires share a service or resource within 5 minutes in this window." }
        } @else {
            div.table-wrap {
                table.collisions aria-labelledby="collisions" {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Shared" } th scope="col" { "Fires" } } }
                    tbody {
                        @for c in t.collisions.iter().take(MAX_COLLISIONS) {
                            tr.flag {
                                td {
                                    @if let Some(first) = c.fires.first().and_then(|i| t.fires.get(*i)) { (ui::time_str(&first.at)) }
                                }
                                td { (ui::badge(ui::Word::Collides)) " " (c.service) }
                                td {
                                    ul.plain {
                                        @for fire in c.fires.iter().filter_map(|i| t.fires.get(*i)) {
                                            li { a href={"/projects/" (fire.project)} { (fire.project) } "." (fire.task) " at " (ui::time_str(&fire.at)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if t.collisions.len() > MAX_COLLISIONS {
                p.small.muted { "And " (t.collisions.len() - MAX_COLLISIONS) " more; filter by project or look at a shorter window." }
            }
        }
    }
}

fn ms(rfc3339: &str) -> Option<i64> {
    rfc3339.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

fn utc(ms: i64, format: &str) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime(format).to_string()).unwrap_or_default()
}

/// The timeline as SVG: a row per project.task, a thin mark per fire (marks closer than a
/// pixel merge into one bar, so a schedule firing every minute reads as a solid line), a
/// diamond on each colliding fire, and hour or day gridlines. Every text is escaped. Returns
/// the SVG and how many rows there were in all.
fn draw(t: &Timeline, clashing: &HashSet<usize>) -> Option<(String, usize)> {
    const W: f64 = 1000.0;
    const LABEL_W: f64 = 210.0;
    const PAD_R: f64 = 16.0;
    const AXIS_H: f64 = 30.0;
    const ROW_H: f64 = 22.0;
    const MARK_W: f64 = 1.6;
    let (from, to) = (ms(&t.from)?, ms(&t.to)?);
    let span = to - from;
    if span <= 0 {
        return None;
    }
    let chart_w = W - LABEL_W - PAD_R;
    let x_of = |at: i64| LABEL_W + (at - from).clamp(0, span) as f64 / span as f64 * chart_w;

    let mut rows: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, f) in t.fires.iter().enumerate() {
        rows.entry((f.project.as_str(), f.task.as_str())).or_default().push(i);
    }
    let total_rows = rows.len();
    let shown = total_rows.min(MAX_ROWS);
    let height = AXIS_H + shown as f64 * ROW_H + 6.0;
    let clashes = t.fires.iter().enumerate().filter(|(i, _)| clashing.contains(i)).count();
    let label = format!(
        "Timeline of schedule fires from {} to {} UTC: {} fires of {} schedules, {} of them colliding; the collisions are listed in the table below.",
        utc(from, "%Y-%m-%d %H:%M"),
        utc(to, "%Y-%m-%d %H:%M"),
        t.fires.len(),
        total_rows,
        clashes,
    );
    let mut svg = String::with_capacity(16 * 1024);
    let _ = write!(
        svg,
        r#"<svg class="timeline" role="img" aria-label="{}" viewBox="0 0 {W} {height}" width="{W}" height="{height}" preserveAspectRatio="xMinYMin meet">"#,
        ui::esc(&label)
    );
    let _ = write!(svg, r#"<text class="muted-text" x="4" y="{}" font-size="11">UTC</text>"#, AXIS_H - 12.0);

    // Gridlines: hours (labelled every 3) over a day or two, else days (with 6-hour lines).
    let hourly = span <= 2 * DAY;
    let step = if hourly { HOUR } else { 6 * HOUR };
    let mut g = (from + step - 1).div_euclid(step) * step;
    while g < to {
        let x = x_of(g);
        let major = if hourly { g % (3 * HOUR) == 0 } else { g % DAY == 0 };
        let class = if major { "grid-line" } else { "grid-line minor" };
        let _ = write!(svg, r#"<line class="{class}" x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{height}"/>"#, AXIS_H - 6.0);
        if major {
            let text = match (hourly, g % DAY == 0) {
                (true, false) => utc(g, "%H:%M"),
                (true, true) => utc(g, "%b %d"),
                (false, _) => utc(g, "%a %d"),
            };
            let anchor = if x > W - 30.0 { "end" } else { "middle" };
            let _ = write!(
                svg,
                r#"<text class="axis-label" x="{x:.1}" y="{}" font-size="11" text-anchor="{anchor}">{}</text>"#,
                AXIS_H - 12.0,
                ui::esc(&text)
            );
        }
        g += step;
    }

    for (row, ((project, task), fires)) in rows.iter().take(MAX_ROWS).enumerate() {
        let y = AXIS_H + row as f64 * ROW_H;
        if row % 2 == 0 {
            let _ = write!(svg, r#"<rect class="band" x="0" y="{y}" width="{W}" height="{ROW_H}"/>"#);
        }
        let name = format!("{project}.{task}");
        let short: String = if name.chars().count() > 30 {
            format!("{}…", name.chars().take(29).collect::<String>())
        } else {
            name.clone()
        };
        let _ = write!(
            svg,
            r#"<text x="6" y="{:.1}" font-size="12"><title>{}: {} fires</title>{}</text>"#,
            y + ROW_H * 0.68,
            ui::esc(&name),
            fires.len(),
            ui::esc(&short)
        );
        // Marks, merged where they touch: half-unit columns, runs of neighbours become one bar.
        let mut cols: Vec<i64> =
            fires.iter().filter_map(|i| ms(&t.fires[*i].at)).map(|at| (x_of(at) * 2.0) as i64).collect();
        cols.sort_unstable();
        cols.dedup();
        let mut i = 0;
        while i < cols.len() {
            let start = cols[i];
            let mut end = start;
            while i + 1 < cols.len() && cols[i + 1] - end <= 2 {
                i += 1;
                end = cols[i];
            }
            let _ = write!(
                svg,
                r#"<rect class="fire" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/>"#,
                start as f64 / 2.0,
                y + 5.0,
                (end - start) as f64 / 2.0 + MARK_W,
                ROW_H - 10.0
            );
            i += 1;
        }
        // Collisions on top, as diamonds: another shape and colour, one per pixel.
        let mut seen = HashSet::new();
        for idx in fires.iter().filter(|i| clashing.contains(i)) {
            let Some(at) = ms(&t.fires[*idx].at) else { continue };
            let x = x_of(at) + MARK_W / 2.0;
            if !seen.insert(x as i64) {
                continue;
            }
            let cy = y + ROW_H / 2.0;
            let _ = write!(
                svg,
                r#"<polygon class="clash" points="{x:.1},{:.1} {:.1},{cy:.1} {x:.1},{:.1} {:.1},{cy:.1}"><title>{} at {} UTC collides</title></polygon>"#,
                cy - 6.0,
                x + 6.0,
                cy + 6.0,
                x - 6.0,
                ui::esc(&name),
                ui::esc(&utc(at, "%Y-%m-%d %H:%M"))
            );
        }
    }
    svg.push_str("</svg>");
    Some((svg, total_rows))
}

/// Pause a managed schedule (the API's action), then back to the list.
pub async fn pause(
    State(st): State<AppState>,
    _session: Session,
    Path(id): Path<String>,
    Form(f): Form<SchedulesFilter>,
) -> PageResult {
    let _ = routes::pause_schedule(State(st), Caller::Admin, Path(id.clone())).await?;
    Ok(Redirect::to(&f.url(Some(&id))).into_response())
}

pub async fn resume(
    State(st): State<AppState>,
    _session: Session,
    Path(id): Path<String>,
    Form(f): Form<SchedulesFilter>,
) -> PageResult {
    let _ = routes::resume_schedule(State(st), Caller::Admin, Path(id.clone())).await?;
    Ok(Redirect::to(&f.url(Some(&id))).into_response())
}

/// Run a schedule's task now, then show the new run.
pub async fn run_now(State(st): State<AppState>, _session: Session, Path(id): Path<String>) -> PageResult {
    let (_, run) = routes::run_schedule(State(st), Caller::Admin, Path(id)).await?;
    Ok(Redirect::to(&format!("/runs/{}", urlencode(&run.0.id))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{CollisionView, FireView};

    fn fire(at: i64, project: &str, task: &str) -> FireView {
        FireView {
            at: crate::views::time(at),
            project: project.into(),
            task: task.into(),
            cron: "* * * * *".into(),
            timezone: "UTC".into(),
            managed_by: ManagedBy::AgentOs,
        }
    }

    #[test]
    fn dense_fires_merge_into_bars_and_collisions_get_another_shape() {
        let from = 1_800_000_000_000 - 1_800_000_000_000 % DAY;
        let mut fires: Vec<FireView> = (0..1440).map(|m| fire(from + m * 60_000, "busy", "tick")).collect();
        fires.push(fire(from + 6 * HOUR, "other", "<b>sync</b>"));
        let t = Timeline {
            from: crate::views::time(from),
            to: crate::views::time(from + DAY),
            collisions: vec![CollisionView { service: "openai".into(), fires: vec![360, 1440] }],
            fires,
            truncated: false,
        };
        let clashing: HashSet<usize> = [360, 1440].into();
        let (svg, rows) = draw(&t, &clashing).unwrap();
        assert_eq!(rows, 2);
        assert_eq!(svg.matches(r#"class="fire""#).count(), 2, "a fire a minute is one bar: {svg}");
        assert_eq!(svg.matches(r#"class="clash""#).count(), 2);
        assert!(svg.contains("&lt;b&gt;sync&lt;/b&gt;") && !svg.contains("<b>"), "labels are escaped");
        assert!(svg.contains(">03:00</text>") && svg.contains(">21:00</text>"), "{svg}");
    }

    #[test]
    fn rows_are_capped() {
        let from = 1_800_000_000_000;
        let fires = (0..(MAX_ROWS + 5)).map(|i| fire(from + HOUR, "p", &format!("t{i:03}"))).collect();
        let t = Timeline {
            from: crate::views::time(from),
            to: crate::views::time(from + DAY),
            fires,
            collisions: vec![],
            truncated: false,
        };
        let (svg, rows) = draw(&t, &HashSet::new()).unwrap();
        assert_eq!(rows, MAX_ROWS + 5);
        assert_eq!(svg.matches("<title>").count(), MAX_ROWS);
    }
}
