//! The dashboard's page shell and the small pieces every page is built from. Everything is
//! rendered with maud, which escapes every value it interpolates; `PreEscaped` is used only
//! for markup produced here (SVG built from escaped parts).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use agent_os_core::alerting::{DeliveryStatus, IncidentStatus, Severity};
use agent_os_core::check::CheckState;
use agent_os_core::health::HealthState;
use agent_os_core::manifest::{ProbeStatus, ScheduleStatus};
use agent_os_core::run::RunStatus;
use agent_os_core::workflow::{StepStatus, WorkflowRunStatus};
use agent_os_engine::audit::Severity as AuditSeverity;

use super::assets;
use super::session::Session;

/// The sections of the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Nav {
    Overview,
    Projects,
    Schedules,
    Runs,
    Workflows,
    Events,
    Costs,
    Incidents,
    Resources,
    Settings,
}

const NAV: &[(Nav, &str, &str)] = &[
    (Nav::Overview, "/", "Overview"),
    (Nav::Projects, "/projects", "Projects"),
    (Nav::Schedules, "/schedules", "Schedules"),
    (Nav::Runs, "/runs", "Runs"),
    (Nav::Workflows, "/workflows", "Workflows"),
    (Nav::Events, "/events", "Events"),
    (Nav::Costs, "/costs", "Costs"),
    (Nav::Incidents, "/incidents", "Incidents"),
    (Nav::Resources, "/resources", "Resources"),
    (Nav::Settings, "/settings", "Settings"),
];

/// A page being built: a title, its place in the navigation, and its parts in order. Parts
/// marked live are re-fetched (as `?_fragment=NAME`) when the server says something changed.
pub struct Page {
    title: String,
    nav: Nav,
    parts: Vec<(Option<&'static str>, Markup)>,
}

impl Page {
    pub fn new(title: impl Into<String>, nav: Nav) -> Self {
        Page { title: title.into(), nav, parts: Vec::new() }
    }

    /// A part that stays as rendered.
    pub fn add(mut self, m: Markup) -> Self {
        self.parts.push((None, m));
        self
    }

    /// A part kept current while the page is open.
    pub fn live(mut self, name: &'static str, m: Markup) -> Self {
        self.parts.push((Some(name), m));
        self
    }

    /// The whole page, only the live part a script asked for, or (`*`) all live parts as JSON.
    pub fn respond(self, session: &Session, fragment: Option<&str>) -> Response {
        if fragment == Some("*") {
            // Every live part at once, as {name: html}: one render per change for the whole page.
            let parts: serde_json::Map<String, serde_json::Value> = self
                .parts
                .into_iter()
                .filter_map(|(n, m)| n.map(|n| (n.to_string(), serde_json::Value::String(m.into_string()))))
                .collect();
            let mut r = serde_json::Value::Object(parts).to_string().into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return r;
        }
        if let Some(name) = fragment {
            return match self.parts.into_iter().find(|(n, _)| *n == Some(name)) {
                Some((_, m)) => html_response(m.into_string()),
                None => error_page(StatusCode::NOT_FOUND, &format!("this page has no live part {name:?}")),
            };
        }
        let body = html! {
            @for (name, part) in &self.parts {
                @match name {
                    Some(n) => div.live id={"live-" (n)} data-live=(n) { (part) },
                    None => (part),
                }
            }
        };
        shell(&self.title, Some(self.nav), Some(session), body)
    }
}

fn html_response(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn shell(title: &str, nav: Option<Nav>, session: Option<&Session>, body: Markup) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                @if let Some(s) = session { meta name="csrf-token" content=(s.csrf); }
                title { (title) " · Agent OS" }
                link rel="stylesheet" href=(assets::url("app.css"));
                link rel="icon" href=(assets::url("favicon.svg")) type="image/svg+xml";
                script src=(assets::url("app.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                @if let Some(current) = nav {
                    header.top {
                        a.brand href="/" { "Agent OS" }
                        nav aria-label="Sections" {
                            ul {
                                @for (n, href, label) in NAV {
                                    li { a href=(href) aria-current=[(*n == current).then_some("page")] { (label) } }
                                }
                            }
                        }
                        @if let Some(s) = session {
                            form.logout method="post" action="/logout" {
                                (csrf_field(s))
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                    main id="main" tabindex="-1" {
                        h1 { (title) }
                        (body)
                    }
                } @else {
                    (body)
                }
            }
        }
    };
    html_response(page.into_string())
}

/// A page without navigation (the login page).
pub fn bare_page(title: &str, body: Markup) -> Response {
    shell(title, None, None, body)
}

/// An error as a page: what went wrong and where to go.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let body = html! {
        main.login id="main" {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p role="alert" { (message) }
            p { a href="/" { "Back to the overview" } }
        }
    };
    let mut r = shell(status.canonical_reason().unwrap_or("Error"), None, None, body);
    *r.status_mut() = status;
    r
}

/// The hidden form field every state-changing form carries.
pub fn csrf_field(s: &Session) -> Markup {
    html! { input type="hidden" name="_csrf" value=(s.csrf); }
}

/// A one-button form that posts to `action` (POST-redirect-GET).
pub fn post_button(s: &Session, action: &str, label: &str, class: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf_field(s))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// A time: UTC in the markup (and on hover), turned into the viewer's zone by the script.
pub fn time_ms(ms: i64) -> Markup {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => {
            let iso = format!("{t:.0}");
            let utc = t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
            html! { time datetime=(iso) title=(utc) { (utc) } }
        }
        Err(_) => html! { "—" },
    }
}

/// A time given as RFC 3339 text (as the API views hold it).
pub fn time_str(s: &str) -> Markup {
    match s.parse::<jiff::Timestamp>() {
        Ok(t) => time_ms(t.as_millisecond()),
        Err(_) => html! { (s) },
    }
}

pub fn opt_time_str(s: Option<&str>) -> Markup {
    match s {
        Some(s) => time_str(s),
        None => html! { span.muted { "—" } },
    }
}

/// A duration in words a person reads at a glance: `850 ms`, `4.2 s`, `3 min 5 s`, `2 h 10 min`.
pub fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => two(ms / 60_000, "min", (ms % 60_000) / 1000, "s"),
        3_600_000..=86_399_999 => two(ms / 3_600_000, "h", (ms % 3_600_000) / 60_000, "min"),
        _ => two(ms / 86_400_000, "d", (ms % 86_400_000) / 3_600_000, "h"),
    }
}

/// `3 min 5 s`, or `10 min` when the smaller unit is zero.
fn two(big: i64, big_unit: &str, small: i64, small_unit: &str) -> String {
    if small == 0 { format!("{big} {big_unit}") } else { format!("{big} {big_unit} {small} {small_unit}") }
}

/// An amount of money from nanos: `$12.34` for USD, `0.0042 EUR` otherwise; small amounts keep
/// enough digits to be seen.
pub fn money(nanos: i64, currency: &str) -> String {
    let v = nanos as f64 / 1e9;
    let digits = if v != 0.0 && v.abs() < 0.01 { 4 } else { 2 };
    match currency {
        "USD" => format!("${v:.digits$}"),
        "EUR" => format!("€{v:.digits$}"),
        "GBP" => format!("£{v:.digits$}"),
        c => format!("{v:.digits$} {c}"),
    }
}

/// An exact decimal amount as the API gives it (`"12.5"`), shown as [`money`].
pub fn amount(decimal: &str, currency: &str) -> String {
    match agent_os_core::cost::parse_amount(decimal) {
        Ok(nanos) => money(nanos, currency),
        Err(_) => format!("{decimal} {currency}"),
    }
}

/// A status as a coloured badge with its word (colour is never the only signal).
pub fn badge(status: impl Badge) -> Markup {
    html! { span class={"badge " (status.tone().class())} { (status.word().replace('_', " ")) } }
}

/// How a badge is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Good,
    Info,
    Warn,
    Bad,
    Neutral,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Good => "good",
            Tone::Info => "info",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
            Tone::Neutral => "neutral",
        }
    }
}

/// Something shown as a badge: its word and the colour that goes with it. Each state type says
/// its own colours, so a state can only be shown as one of its values.
pub trait Badge {
    fn word(&self) -> &str;
    fn tone(&self) -> Tone;
}

impl<T: Badge + ?Sized> Badge for &T {
    fn word(&self) -> &str {
        (**self).word()
    }
    fn tone(&self) -> Tone {
        (**self).tone()
    }
}

/// Plain text, which says no state: neutral.
impl Badge for str {
    fn word(&self) -> &str {
        self
    }
    fn tone(&self) -> Tone {
        Tone::Neutral
    }
}

/// The badges of core's states: each variant's colour.
macro_rules! badges {
    ($($ty:ty { $($variant:ident => $tone:ident),+ $(,)? })+) => {
        $(impl Badge for $ty {
            fn word(&self) -> &str {
                self.as_str()
            }
            fn tone(&self) -> Tone {
                match self {
                    $(<$ty>::$variant => Tone::$tone),+
                }
            }
        })+
    };
}

badges! {
    RunStatus { Queued => Info, Running => Info, Succeeded => Good, Failed => Bad, TimedOut => Bad, Cancelled => Warn }
    WorkflowRunStatus {
        Queued => Info, Running => Info, Succeeded => Good, Failed => Bad, Cancelled => Warn, TimedOut => Bad,
        Skipped => Warn,
    }
    StepStatus {
        Running => Info, Waiting => Info, Retrying => Neutral, Succeeded => Good, Failed => Bad, Skipped => Warn,
        Cancelled => Warn,
    }
    CheckState { New => Good, Up => Good, Late => Warn, Down => Bad }
    Severity { Info => Neutral, Warning => Warn, Critical => Bad }
    IncidentStatus { Open => Bad, Resolved => Good }
    DeliveryStatus { Pending => Info, Held => Info, Delivered => Good, Failed => Bad, Disabled => Neutral }
    HealthState { Unknown => Neutral, Ok => Good, Degraded => Warn, Down => Bad }
    ProbeStatus { Ok => Good, Degraded => Warn, Down => Bad }
    ScheduleStatus {
        New => Good, Queued => Info, Running => Info, Ok => Good, Failing => Neutral, Cancelled => Warn,
        Paused => Warn, Up => Good, Late => Warn, Down => Bad, Unwatched => Neutral,
    }
    AuditSeverity { Warning => Warn, Error => Bad }
    Word {
        Ok => Good, Active => Good, Scheduled => Info, Waiting => Info, Held => Info, Paused => Warn,
        Flapping => Warn, Suppressed => Warn, Error => Bad, Full => Neutral, Free => Neutral, Revoked => Neutral,
        Collides => Neutral, Connected => Good, Away => Warn,
    }
}

/// What the dashboard itself says of things in a badge (states of no record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word {
    Ok,
    Active,
    Scheduled,
    Waiting,
    Held,
    Paused,
    Flapping,
    Suppressed,
    Error,
    Full,
    Free,
    Revoked,
    Collides,
    /// A worker heard from within `workers.lost_after`.
    Connected,
    /// A worker not heard from for longer.
    Away,
}

impl Word {
    fn as_str(self) -> &'static str {
        match self {
            Word::Ok => "ok",
            Word::Active => "active",
            Word::Scheduled => "scheduled",
            Word::Waiting => "waiting",
            Word::Held => "held",
            Word::Paused => "paused",
            Word::Flapping => "flapping",
            Word::Suppressed => "suppressed",
            Word::Error => "error",
            Word::Full => "full",
            Word::Free => "free",
            Word::Revoked => "revoked",
            Word::Collides => "collides",
            Word::Connected => "connected",
            Word::Away => "not connected",
        }
    }
}

/// What an empty list says: what it would show and what to do to fill it.
pub fn empty(what: &str, next: Markup) -> Markup {
    html! {
        div.empty {
            p { strong { (what) } }
            p { (next) }
        }
    }
}

/// Older/newer links for keyset pagination: `next` is the cursor of the following page.
pub fn pager(base: &str, query: &[(&str, Option<&str>)], cursor_name: &str, next: Option<&str>, first: bool) -> Markup {
    let mut params: Vec<String> = query
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty()).map(|v| format!("{k}={}", agent_os_core::url::encode_component(v)))
        })
        .collect();
    let newest = if params.is_empty() { base.to_string() } else { format!("{base}?{}", params.join("&")) };
    let older = next.map(|n| {
        params.push(format!("{cursor_name}={}", agent_os_core::url::encode_component(n)));
        format!("{base}?{}", params.join("&"))
    });
    html! {
        nav.pager aria-label="Pages" {
            @if !first { a href=(newest) { "← Newest" } }
            @if let Some(o) = older { a href=(o) rel="next" { "Older →" } }
        }
    }
}

/// A query parameter as given, trimmed; `None` when absent or blank (an empty filter field).
pub fn given(v: &Option<String>) -> Option<String> {
    v.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The "Project" filter of a page's GET form: every project, the chosen one selected.
pub fn project_select<'a>(projects: impl IntoIterator<Item = &'a str>, chosen: Option<&str>) -> Markup {
    html! {
        label { "Project"
            select name="project" {
                option value="" { "All" }
                @for p in projects { option value=(p) selected[chosen == Some(p)] { (p) } }
            }
        }
    }
}

/// A budget's use as a thin bar: green, amber from 80 %, red from 100 % (the percentage is
/// always written beside it; the bar is decoration).
pub fn meter(percent: f64) -> Markup {
    let w = percent.clamp(0.0, 100.0);
    let tone = if percent >= 100.0 {
        "var(--bad)"
    } else if percent >= 80.0 {
        "var(--warn)"
    } else {
        "var(--good)"
    };
    trusted(format!(
        r#"<svg class="budget-meter" viewBox="0 0 100 6" width="100" height="6" preserveAspectRatio="none" aria-hidden="true"><rect width="100" height="6" fill="var(--neutral-bg)"/><rect width="{w:.2}" height="6" fill="{tone}"/></svg>"#
    ))
}

/// A small labelled figure for the top of a page.
pub fn stat(label: &str, value: Markup) -> Markup {
    html! { div.stat { span.label { (label) } span.value { (value) } } }
}

/// JSON shown for reading, pretty-printed and escaped.
pub fn json_block(v: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    html! { pre.json { code { (text) } } }
}

/// Raw markup built by this module's callers from escaped parts (SVG).
pub fn trusted(svg: String) -> Markup {
    PreEscaped(svg)
}

/// Escapes text for hand-built SVG/XML: the status badges' escape.
pub use agent_os_core::badge::escape as esc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_money_read_well() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(4200), "4.2 s");
        assert_eq!(duration_ms(185_000), "3 min 5 s");
        assert_eq!(duration_ms(7_800_000), "2 h 10 min");
        assert_eq!(duration_ms(600_000), "10 min");
        assert_eq!(money(12_340_000_000, "USD"), "$12.34");
        assert_eq!(money(4_200_000, "USD"), "$0.0042");
        assert_eq!(money(1_000_000_000, "JPY"), "1.00 JPY");
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        let m = badge("<script>");
        assert!(!m.into_string().contains("<script>"));
    }
}
