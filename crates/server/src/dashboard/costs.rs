//! Costs: what was spent in a range of days (this month by default), as totals per currency,
//! bar charts by day, project and service (each with a table beside it), the budgets with their
//! forecasts and pauses, the latest records, and a CSV export of the range read from the store
//! a page at a time.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use jiff::ToSpan;
use jiff::civil::Date;
use maud::{Markup, html};
use serde::Deserialize;

use agent_os_core::url::encode_component as urlencode;
use agent_os_store::{CostRecord, Store};

use super::session::Session;
use super::ui::{self, Nav, Page};
use super::{Fragment, PageResult};
use crate::auth::Caller;
use crate::body::ApiQuery;
use crate::error::ApiError;
use crate::routes::{self, CostQuery, ScheduleQuery, SummaryQuery};
use crate::views::{self, CostView};
use crate::{AppState, BudgetView, CostGroupView, CostSummary};

/// The latest records listed under the charts.
const LATEST: i64 = 50;
/// Bars a group chart draws (the table beside it lists every group).
const CHART_GROUPS: usize = 12;
/// Records the CSV export reads per query.
const CSV_PAGE: i64 = 5_000;
/// The longest custom range, in days (one bar per day).
const MAX_DAYS: i64 = 400;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/costs", get(page))
        .route("/costs.csv", get(csv))
        .route("/costs/resume/{project}", post(resume))
}

#[derive(Deserialize, Default)]
pub struct CostsFilter {
    /// `month` (default), `7d`, `30d` or `custom`.
    range: Option<String>,
    /// Custom range: the first and last day (inclusive), `2026-11-01`.
    from: Option<String>,
    to: Option<String>,
    project: Option<String>,
}

/// Whole UTC days: `from` inclusive, `to` exclusive.
struct Range {
    key: &'static str,
    from: Date,
    to: Date,
}

impl Range {
    fn start_ms(&self) -> i64 {
        day_ms(self.from)
    }

    fn end_ms(&self) -> i64 {
        day_ms(self.to)
    }

    fn last_day(&self) -> Date {
        self.to.yesterday().unwrap_or(self.to)
    }

    fn days(&self) -> i64 {
        (self.end_ms() - self.start_ms()) / 86_400_000
    }
}

fn day_ms(d: Date) -> i64 {
    d.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp().as_millisecond()).unwrap_or(0)
}

fn today(now_ms: i64) -> Date {
    jiff::Timestamp::from_millisecond(now_ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// The range the filter asks for, or this month and why the asked one could not be used.
fn resolve(f: &CostsFilter, today: Date) -> (Range, Option<String>) {
    let month = || {
        let first = today.first_of_month();
        Range { key: "month", from: first, to: today.last_of_month().tomorrow().unwrap_or(today) }
    };
    let back = |days: i64, key| Range {
        key,
        from: today.checked_sub((days - 1).days()).unwrap_or(today),
        to: today.tomorrow().unwrap_or(today),
    };
    let custom = ui::given(&f.from).is_some() || ui::given(&f.to).is_some();
    match f.range.as_deref().map(str::trim) {
        Some("7d") => (back(7, "7d"), None),
        Some("30d") => (back(30, "30d"), None),
        Some("custom") | None | Some("") if custom || f.range.as_deref() == Some("custom") => {
            let parse = |v: &Option<String>, what: &str| -> Result<Date, String> {
                let text = ui::given(v).ok_or_else(|| format!("give the {what} day of the custom range"))?;
                text.parse::<Date>().map_err(|_| format!("{text:?} is not a day such as 2026-11-01"))
            };
            let checked = parse(&f.from, "first").and_then(|from| {
                let last = parse(&f.to, "last")?;
                if last < from {
                    return Err("the last day is before the first".into());
                }
                let to = last.tomorrow().map_err(|_| "the last day is out of range".to_string())?;
                let r = Range { key: "custom", from, to };
                if r.days() > MAX_DAYS {
                    return Err(format!("a range holds at most {MAX_DAYS} days"));
                }
                Ok(r)
            });
            match checked {
                Ok(r) => (r, None),
                Err(e) => (month(), Some(format!("{e}; showing this month instead."))),
            }
        }
        _ => (month(), None),
    }
}

async fn summary(st: &AppState, by: &str, r: &Range, project: &Option<String>) -> Result<CostSummary, ApiError> {
    let q = SummaryQuery {
        by: Some(by.into()),
        from: Some(r.from.to_string()),
        to: Some(r.to.to_string()),
        project: project.clone(),
        service: None,
    };
    Ok(routes::cost_summary(State(st.clone()), Caller::Admin, ApiQuery(q)).await?.0)
}

pub async fn page(
    State(st): State<AppState>,
    session: Session,
    fragment: Fragment,
    Query(f): Query<CostsFilter>,
) -> PageResult {
    let today = today(st.engine.now());
    let (range, problem) = resolve(&f, today);
    let project = ui::given(&f.project);
    let by_day = summary(&st, "day", &range, &project).await?;
    let by_project = summary(&st, "project", &range, &project).await?;
    let by_service = summary(&st, "service", &range, &project).await?;
    let budgets =
        routes::list_budgets(State(st.clone()), Caller::Admin, ApiQuery(ScheduleQuery { project: project.clone() }))
            .await?
            .0;
    let latest = routes::list_costs(
        State(st.clone()),
        Caller::Admin,
        ApiQuery(CostQuery { project: project.clone(), run: None, limit: Some(LATEST) }),
    )
    .await?
    .0;
    let mut projects: Vec<String> = st.engine.projects().await?.into_iter().map(|p| p.record.name.clone()).collect();
    if let Some(p) = &project
        && !projects.contains(p)
    {
        projects.push(p.clone());
    }

    let data = html! {
        (totals(&by_project, &range, project.as_deref()))
        @if by_project.totals.is_empty() {
            (empty_costs(project.is_some()))
        } @else {
            (charts(&by_day, &by_project, &by_service, &range))
        }
        h2 id="budgets" { "Budgets" }
        (budget_table(&session, &budgets))
        h2 { "Latest records" }
        (latest_table(&latest))
    };
    Ok(Page::new("Costs", Nav::Costs)
        .add(filters(&f, &range, project.as_deref(), &projects, problem.as_deref()))
        .live("costs", data)
        .respond(&session, fragment.name()))
}

fn filters(f: &CostsFilter, r: &Range, project: Option<&str>, projects: &[String], problem: Option<&str>) -> Markup {
    let custom = r.key == "custom";
    html! {
        @if let Some(p) = problem { p.flash.error role="alert" { (p) } }
        form.filters.cost-range method="get" action="/costs" role="search" aria-label="Range and project" {
            label { "Range"
                select name="range" {
                    @for (key, label) in [("month", "This month (UTC)"), ("7d", "Last 7 days"), ("30d", "Last 30 days"), ("custom", "From … to …")] {
                        option value=(key) selected[r.key == key] { (label) }
                    }
                }
            }
            label { "From" input type="date" name="from" value=[custom.then(|| r.from.to_string()).or_else(|| ui::given(&f.from))]; }
            label { "To" input type="date" name="to" value=[custom.then(|| r.last_day().to_string()).or_else(|| ui::given(&f.to))]; }
            (ui::project_select(projects.iter().map(String::as_str), project))
            button type="submit" { "Show" }
        }
        p.small.muted { "From and To are used when the range is “From … to …”. Days are UTC." }
    }
}

fn csv_href(r: &Range, project: Option<&str>) -> String {
    let mut href = format!("/costs.csv?from={}&to={}", r.from, r.to);
    if let Some(p) = project {
        href.push_str("&project=");
        href.push_str(&urlencode(p));
    }
    href
}

fn totals(s: &CostSummary, r: &Range, project: Option<&str>) -> Markup {
    let total: Vec<String> = s.totals.iter().map(|t| ui::money(t.amount_nanos, &t.currency)).collect();
    let records: i64 = s.totals.iter().map(|t| t.records).sum();
    let tokens: i64 = s.totals.iter().map(|t| t.tokens_in + t.tokens_out).sum();
    let unpriced: i64 = s.totals.iter().map(|t| t.unpriced).sum();
    html! {
        p.range-label {
            strong { (r.from) } " to " strong { (r.last_day()) } " (UTC)"
            @if let Some(p) = project { ", project " strong { (p) } }
        }
        div.stats {
            (ui::stat("Spent", html! { span id="cost-total" { @if total.is_empty() { "$0.00" } @else { (total.join(" + ")) } } }))
            (ui::stat("Records", html! { (records) }))
            (ui::stat("Tokens", html! { (tokens) }))
            @if unpriced > 0 {
                (ui::stat("Unpriced", html! { span id="cost-unpriced" title="records of models without a price: their tokens are counted, their amounts are not in Spent; add the models under prices: in config.yaml" { (unpriced) " records" } }))
            }
        }
        div.actions { a.button id="cost-csv" href=(csv_href(r, project)) download { "Download CSV" } }
    }
}

fn empty_costs(filtered: bool) -> Markup {
    ui::empty(
        if filtered { "This project reported no costs in this range." } else { "No costs in this range." },
        html! {
            "Projects report what they spend: a task posts records to " code { "POST /api/v1/costs" }
            " with its " code { "AGENT_OS_TOKEN" } " (tied to its run), or the project declares a "
            code { "cost:" } " probe in " code { "agent-os.yaml" } " that Agent OS asks for new records. "
            "Both are described in " code { "docs/plugin-protocol.md" } ". Try another range above if costs were reported earlier."
        },
    )
}

/// The main currency of a summary (the largest total): the charts draw it alone.
fn main_currency(s: &CostSummary) -> Option<&str> {
    s.totals.iter().max_by_key(|t| t.amount_nanos).map(|t| t.currency.as_str())
}

fn charts(by_day: &CostSummary, by_project: &CostSummary, by_service: &CostSummary, r: &Range) -> Markup {
    let currency = main_currency(by_project).unwrap_or("USD").to_string();
    let several = by_project.totals.len() > 1;
    // One bar per day of the range (the days still to come stay empty).
    let mut days: Vec<(String, i64)> = Vec::new();
    let mut d = r.from;
    while d < r.to {
        let key = d.to_string();
        let nanos =
            by_day.groups.iter().filter(|g| g.group == key && g.currency == currency).map(|g| g.amount_nanos).sum();
        days.push((key, nanos));
        match d.tomorrow() {
            Ok(next) => d = next,
            Err(_) => break,
        }
    }
    html! {
        @if several {
            p.small.muted { "The charts show amounts in " (currency) "; the tables list every currency." }
        }
        section.chart-block aria-labelledby="by-day" {
            h2 id="by-day" { "By day" }
            (day_chart(&days, &currency))
            details {
                summary { "By day as a table" }
                (group_table("cost-by-day", "Day", &by_day.groups))
            }
        }
        div.grid.cost-groups {
            section.card aria-labelledby="by-project" {
                h2 id="by-project" { "By project" }
                (group_chart("Spend by project", &by_project.groups, &currency))
                (group_table("cost-by-project", "Project", &by_project.groups))
            }
            section.card aria-labelledby="by-service" {
                h2 id="by-service" { "By service" }
                (group_chart("Spend by service", &by_service.groups, &currency))
                (group_table("cost-by-service", "Service", &by_service.groups))
            }
        }
    }
}

fn day_chart(days: &[(String, i64)], currency: &str) -> Markup {
    if days.is_empty() {
        return html! {};
    }
    const W: f64 = 900.0;
    const H: f64 = 120.0;
    const AXIS: f64 = 18.0;
    let max = days.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let step = W / days.len() as f64;
    let bar = (step * 0.78).max(1.0);
    let total: i64 = days.iter().map(|d| d.1).sum();
    let top = days.iter().max_by_key(|d| d.1).filter(|d| d.1 > 0);
    let mut label = format!(
        "Spend per day from {} to {} in {currency}: {} in all",
        days[0].0,
        days[days.len() - 1].0,
        ui::money(total, currency)
    );
    if let Some((day, n)) = top {
        label.push_str(&format!("; the most, {}, on {day}", ui::money(*n, currency)));
    }
    let mut svg = format!(
        r#"<svg class="cost-chart" role="img" aria-label="{}" viewBox="0 0 {W} {h}" width="{W}" height="{h}" xmlns="http://www.w3.org/2000/svg">"#,
        ui::esc(&label),
        h = H + AXIS
    );
    svg.push_str(&format!(r#"<line class="axis" x1="0" y1="{H}" x2="{W}" y2="{H}"/>"#));
    for (i, (day, nanos)) in days.iter().enumerate() {
        let h = if *nanos > 0 { (*nanos as f64 / max as f64 * (H - 4.0)).max(1.5) } else { 0.0 };
        let x = i as f64 * step + (step - bar) / 2.0;
        svg.push_str(&format!(
            r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{h:.1}"><title>{}: {}</title></rect>"#,
            H - h,
            ui::esc(day),
            ui::esc(&ui::money(*nanos, currency))
        ));
    }
    let first = &days[0].0;
    let last = &days[days.len() - 1].0;
    svg.push_str(&format!(
        r#"<text class="muted-text" x="0" y="{}" font-size="11">{}</text><text class="muted-text" x="{W}" y="{}" font-size="11" text-anchor="end">{}</text>"#,
        H + AXIS - 4.0,
        ui::esc(first),
        H + AXIS - 4.0,
        ui::esc(last)
    ));
    svg.push_str(&format!(
        r#"<text class="muted-text" x="4" y="12" font-size="11">max {}</text></svg>"#,
        ui::esc(&ui::money(max, currency))
    ));
    html! { div.chart { (ui::trusted(svg)) } }
}

fn group_chart(title: &str, groups: &[CostGroupView], currency: &str) -> Markup {
    let mut rows: Vec<&CostGroupView> = groups.iter().filter(|g| g.currency == currency).collect();
    rows.sort_by(|a, b| b.amount_nanos.cmp(&a.amount_nanos).then_with(|| a.group.cmp(&b.group)));
    let more = rows.len().saturating_sub(CHART_GROUPS);
    rows.truncate(CHART_GROUPS);
    if rows.is_empty() {
        return html! {};
    }
    const W: f64 = 420.0;
    const LABEL: f64 = 120.0;
    const VALUE: f64 = 80.0;
    const ROW: f64 = 22.0;
    let max = rows.iter().map(|g| g.amount_nanos).max().unwrap_or(0).max(1);
    let h = rows.len() as f64 * ROW;
    let parts: Vec<String> =
        rows.iter().map(|g| format!("{} {}", name_of(&g.group), ui::money(g.amount_nanos, currency))).collect();
    let label = format!("{title} in {currency}: {}", parts.join(", "));
    let mut svg = format!(
        r#"<svg class="cost-chart" role="img" aria-label="{}" viewBox="0 0 {W} {h}" width="{W}" height="{h}" xmlns="http://www.w3.org/2000/svg">"#,
        ui::esc(&label)
    );
    for (i, g) in rows.iter().enumerate() {
        let y = i as f64 * ROW;
        let w = (g.amount_nanos.max(0) as f64 / max as f64 * (W - LABEL - VALUE)).max(if g.amount_nanos > 0 {
            1.5
        } else {
            0.0
        });
        let name = name_of(&g.group);
        let short: String = if name.chars().count() > 17 {
            format!("{}…", name.chars().take(16).collect::<String>())
        } else {
            name.to_string()
        };
        svg.push_str(&format!(
            r#"<text x="0" y="{:.1}" font-size="12">{}<title>{}</title></text><rect class="bar" x="{LABEL}" y="{:.1}" width="{w:.1}" height="{:.1}" rx="2"/><text class="muted-text" x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            y + 15.0,
            ui::esc(&short),
            ui::esc(name),
            y + 4.0,
            ROW - 8.0,
            LABEL + w + 4.0,
            y + 15.0,
            ui::esc(&ui::money(g.amount_nanos, currency))
        ));
    }
    svg.push_str("</svg>");
    html! {
        div.chart { (ui::trusted(svg)) }
        @if more > 0 { p.small.muted { (more) " more in the table." } }
    }
}

fn name_of(group: &str) -> &str {
    if group.is_empty() { "(none)" } else { group }
}

fn group_table(id: &str, what: &str, groups: &[CostGroupView]) -> Markup {
    html! {
        div.table-wrap {
            table id=(id) {
                thead { tr { th { (what) } th.num { "Spent" } th.num.hide-narrow { "Records" } th.num.hide-narrow { "Tokens in / out" } } }
                tbody {
                    @for g in groups {
                        tr data-group=(g.group) {
                            td { (name_of(&g.group)) }
                            td.num { (ui::money(g.amount_nanos, &g.currency)) }
                            td.num.hide-narrow { (g.records) }
                            td.num.hide-narrow { (g.tokens_in) " / " (g.tokens_out) }
                        }
                    }
                }
            }
        }
    }
}

/// An exact decimal amount in a currency, as money reads.
fn amount(text: &str, currency: &str) -> String {
    match agent_os_core::cost::parse_amount(text) {
        Ok(nanos) => ui::money(nanos, currency),
        Err(_) => format!("{text} {currency}"),
    }
}

fn budget_table(session: &Session, budgets: &[BudgetView]) -> Markup {
    if budgets.is_empty() {
        return ui::empty(
            "No budgets.",
            html! {
                "A budget limits a project's spend (or one service's) per UTC day or month, alerts at thresholds and can pause the project at 100 %. Set one with "
                code { "agent-os budget set --project P --period monthly --amount 50" } ", with "
                code { "PUT /api/v1/budgets" } ", or under " code { "budgets:" } " in " code { "config.yaml" }
                " (docs/config.md)."
            },
        );
    }
    html! {
        div.table-wrap {
            table id="budgets-table" {
                thead {
                    tr {
                        th { "Project" } th { "Service" } th.hide-narrow { "Period" } th.num { "Spent" } th.num { "Limit" }
                        th { "Used" } th.num.hide-narrow { "Forecast" } th.hide-narrow { "Thresholds" } th { "State" }
                    }
                }
                tbody {
                    @for b in budgets {
                        tr data-budget=(b.id) class=[b.paused.is_some().then_some("flag")] {
                            td { a href={"/projects/" (urlencode(&b.project))} { (b.project) } }
                            td { @if b.service.is_empty() { span.muted { "all" } } @else { (b.service) } }
                            td.hide-narrow { (b.period) br; span.small.muted { "until " (ui::time_str(&b.period_end)) } }
                            td.num { (amount(&b.spent, &b.currency)) }
                            td.num { (amount(&b.limit, &b.currency)) }
                            td.used { span.pct { (format!("{:.0}", b.percent)) " %" } " " (ui::meter(b.percent)) }
                            td.num.hide-narrow { (amount(&b.forecast, &b.currency)) }
                            td.hide-narrow.small {
                                @for (i, t) in b.thresholds.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    @if b.crossed.contains(t) { strong { (t) " % crossed" } } @else { (t) " %" }
                                }
                                br; span.muted { "then " (b.on_exceed) }
                            }
                            td {
                                @match &b.paused {
                                    Some(why) => {
                                        (ui::badge(ui::Word::Paused)) br; span.small { (why) } br;
                                        (ui::post_button(session, &format!("/costs/resume/{}", urlencode(&b.project)), "Resume project", "primary", Some("Lift this project's budget pause?")))
                                    }
                                    None => (ui::badge(ui::Word::Active)),
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn latest_table(costs: &[CostView]) -> Markup {
    if costs.is_empty() {
        return html! { p.muted { "No cost records yet." } };
    }
    html! {
        p.small.muted { "The " (costs.len()) " newest records, whatever their day; the CSV has every record of the range." }
        div.table-wrap {
            table id="cost-records" {
                thead {
                    tr {
                        th { "When" } th { "Project" } th { "Service" } th.hide-narrow { "Model" } th.num.hide-narrow { "Tokens in / out" }
                        th.num { "Amount" } th.hide-narrow { "Run" }
                    }
                }
                tbody {
                    @for c in costs {
                        tr data-cost=(c.id) {
                            td { (ui::time_str(&c.at)) }
                            td { (c.project) }
                            td { (c.service) @if let Some(k) = &c.key_name { br; span.small.muted { (k) } } }
                            td.hide-narrow { (c.model.as_deref().unwrap_or("")) }
                            td.num.hide-narrow {
                                (c.tokens_in.map(|n| n.to_string()).unwrap_or_default()) " / " (c.tokens_out.map(|n| n.to_string()).unwrap_or_default())
                            }
                            td.num {
                                @match &c.amount {
                                    Some(a) => { (amount(a, &c.currency)) }
                                    None => { span.badge.warn title="this model has no price: add it under prices: in config.yaml" { "unpriced" } }
                                }
                            }
                            td.hide-narrow.mono.small {
                                @if let Some(r) = &c.run_id { a href={"/runs/" (urlencode(r))} { (r) } } @else { span.muted { (c.source) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Lifts a project's budget pause (the API's resume), then shows the costs again.
pub async fn resume(State(st): State<AppState>, _session: Session, Path(project): Path<String>) -> PageResult {
    routes::resume_project(State(st), Caller::Admin, Path(project)).await?;
    Ok(Redirect::to("/costs#budgets").into_response())
}

// CSV export -------------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct CsvQuery {
    /// Inclusive: a day (`2026-11-01`, midnight UTC) or an RFC 3339 time.
    from: Option<String>,
    /// Exclusive, the same forms.
    to: Option<String>,
    project: Option<String>,
}

fn instant(v: &Option<String>, field: &str) -> Result<Option<i64>, ApiError> {
    ui::given(v).map(|t| crate::edge::instant_param(&t, field)).transpose()
}

pub const CSV_HEADER: &str = "at,project,service,key_name,model,tokens_in,tokens_out,amount,currency,run_id,idempotency_key,tokens_cached_in,unpriced\r\n";

fn csv_row(out: &mut String, c: &CostRecord) {
    let tokens = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    let fields = [
        views::time(c.at),
        c.project.clone(),
        c.service.clone(),
        c.key_name.clone().unwrap_or_default(),
        c.model.clone().unwrap_or_default(),
        tokens(c.tokens_in),
        tokens(c.tokens_out),
        // An unpriced record's amount is unknown, not zero.
        if c.unpriced { String::new() } else { agent_os_core::cost::format_amount(c.amount_nanos) },
        c.currency.clone(),
        c.run_id.clone().unwrap_or_default(),
        c.idempotency_key.clone(),
        tokens(c.tokens_cached_in),
        if c.unpriced { "true".into() } else { "false".into() },
    ];
    out.push_str(&agent_os_core::csv::record(&fields));
    out.push_str("\r\n");
}

/// Where the export stands: the header is sent, then pages after the last record sent.
struct Export {
    store: Arc<dyn Store>,
    project: Option<String>,
    from: i64,
    to: i64,
    after: Option<(i64, String)>,
    header_sent: bool,
    done: bool,
}

/// `/costs.csv?from=&to=&project=`: every cost record of the range, oldest first, streamed a
/// page at a time so a month of a million records never sits in memory.
pub async fn csv(State(st): State<AppState>, _session: Session, Query(q): Query<CsvQuery>) -> PageResult {
    let today = today(st.engine.now());
    let from = instant(&q.from, "from")?.unwrap_or_else(|| day_ms(today.first_of_month()));
    let to = instant(&q.to, "to")?.unwrap_or_else(|| day_ms(today.tomorrow().unwrap_or(today)));
    if to <= from {
        return Err(ApiError::bad_request("`to` must be after `from`").field("to").into());
    }
    let project = ui::given(&q.project);
    let day =
        |ms: i64| jiff::Timestamp::from_millisecond(ms).map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string());
    let (first, last) = (day(from).unwrap_or_default(), day(to - 1).unwrap_or_default());
    let who: String = project
        .as_deref()
        .map(|p| {
            format!(
                "-{}",
                p.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect::<String>()
            )
        })
        .unwrap_or_default();
    let filename = format!("agent-os-costs{who}-{first}-to-{last}.csv");

    let export =
        Export { store: st.engine.store().clone(), project, from, to, after: None, header_sent: false, done: false };
    let stream = futures_util::stream::unfold(export, |mut e| async move {
        if !e.header_sent {
            e.header_sent = true;
            return Some((Ok::<String, std::io::Error>(CSV_HEADER.to_string()), e));
        }
        if e.done {
            return None;
        }
        let after = e.after.as_ref().map(|(at, id)| (*at, id.as_str()));
        match e.store.cost_page(e.project.as_deref(), e.from, e.to, after, CSV_PAGE).await {
            Ok(rows) => {
                e.done = (rows.len() as i64) < CSV_PAGE;
                e.after = Some(rows.last().map(|r| (r.at, r.id.clone()))?);
                let mut out = String::with_capacity(rows.len() * 128);
                for r in &rows {
                    csv_row(&mut out, r);
                }
                Some((Ok(out), e))
            }
            Err(err) => {
                // The download ends short rather than claiming to be complete.
                tracing::warn!(error = %err, "cost export stopped");
                e.done = true;
                Some((Err(std::io::Error::other(err.to_string())), e))
            }
        }
    });
    let mut r = Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_whole_utc_days() {
        let today: Date = "2026-03-15".parse().unwrap();
        let f = CostsFilter::default();
        let (r, e) = resolve(&f, today);
        assert!(e.is_none());
        assert_eq!((r.key, r.from.to_string(), r.to.to_string()), ("month", "2026-03-01".into(), "2026-04-01".into()));
        let f = CostsFilter { range: Some("7d".into()), ..Default::default() };
        let (r, _) = resolve(&f, today);
        assert_eq!((r.from.to_string(), r.to.to_string(), r.days()), ("2026-03-09".into(), "2026-03-16".into(), 7));
        let f = CostsFilter {
            range: Some("custom".into()),
            from: Some("2026-01-02".into()),
            to: Some("2026-01-02".into()),
            project: None,
        };
        let (r, e) = resolve(&f, today);
        assert!(e.is_none());
        assert_eq!((r.key, r.days()), ("custom", 1));
        let f = CostsFilter {
            range: Some("custom".into()),
            from: Some("2026-01-05".into()),
            to: Some("2026-01-02".into()),
            project: None,
        };
        let (r, e) = resolve(&f, today);
        assert_eq!(r.key, "month");
        assert!(e.unwrap().contains("before"));
    }
}
