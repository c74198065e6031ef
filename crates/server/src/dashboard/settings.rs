//! Settings: the API tokens (made here, shown once; revoked here), the notification channels
//! with a button that sends each a test, the dashboard password, and a few facts about this
//! installation. No secret is ever rendered: a token only on the page right after it is made,
//! a channel only as its kind and host.

use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use maud::{Markup, html};
use serde::Deserialize;

use super::incidents::{host_of, scrub};
use agent_os_core::url::encode_component as urlencode;

use super::session::Session;
use super::ui::{self, Nav, Page};
use super::{Fragment, PageResult};
use crate::AppState;
use crate::alerting::{self, ChannelView};
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::dashboard_api;
use crate::error::ApiError;
use crate::routes::{self, CreateTokenBody, CreatedToken};
use crate::views::TokenView;
use agent_os_core::alerting::DeliveryStatus;
use agent_os_core::token::{LoginVia, TokenKind};
use agent_os_engine::secrets::PASSWORD_MIN_LEN;
use agent_os_store::DeliveryRecord;

/// Revoked tokens listed (newest first); older ones stay in `agent-os token list`.
const REVOKED_SHOWN: usize = 20;
/// How long "Send test" waits for the first attempt before showing the page.
const TEST_WAIT: Duration = Duration::from_secs(5);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings", get(page))
        .route("/settings/tokens", post(create_token))
        .route("/settings/tokens/{id}/revoke", post(revoke_token))
        .route("/settings/channels/{name}/test", post(test_channel))
        .route("/settings/password", post(set_password))
        .route("/settings/password/clear", post(clear_password))
}

#[derive(Deserialize, Default)]
pub struct SettingsQuery {
    /// The id of a test notification just sent, whose delivery the page shows.
    test: Option<String>,
    /// What was just done (a fixed word; the message is chosen here, never echoed).
    done: Option<String>,
}

pub async fn page(
    State(st): State<AppState>,
    session: Session,
    fragment: Fragment,
    Query(q): Query<SettingsQuery>,
) -> PageResult {
    let store = st.engine.store();
    let tokens = routes::list_tokens(State(st.clone()), Caller::Admin).await?.0;
    let mine = store.find_session(&session.id, st.engine.now()).await?.and_then(|s| s.token_id);
    let channels = alerting::list_channels(State(st.clone()), Caller::Admin).await?.0;
    let tested = match q.test.as_deref().filter(|t| !t.is_empty()) {
        Some(id) => store.list_deliveries(Some(id), 10).await?,
        None => Vec::new(),
    };
    let has_password = dashboard_api::has_password(&st).await?;
    let projects: Vec<String> = st.engine.projects().await?.iter().map(|p| p.record.name.clone()).collect();
    let flash = match q.done.as_deref() {
        Some("revoked") => Some("The token is revoked: anything using it is refused from now on."),
        Some("password-set") => {
            Some("The dashboard password is set. Every session that logged in with a password has ended.")
        }
        Some("password-cleared") => Some(
            "The dashboard password is cleared: only the admin token logs in. Every session that logged in with a password has ended.",
        ),
        _ => None,
    };
    let config = st.engine.config_status();
    let about = html! {
        dl.facts {
            @if let Some(file) = &config.file {
                dt { "config.yaml" }
                dd #config-status {
                    span.mono { (file.display()) } ", applied " (ui::time_ms(config.applied_at))
                    @if let Some(r) = config.last.as_ref().filter(|r| !r.applied) {
                        div.flash.error role="alert" {
                            "The last edit was refused (" (ui::time_ms(r.at)) "); the settings in force are kept:"
                            ul { @for e in &r.errors { li.mono { (e.to_string()) } } }
                        }
                    }
                    @if let Some(r) = config.last.as_ref().filter(|r| r.applied && !r.restart_required.is_empty()) {
                        p { "Changed, applied at the next restart: " (r.restart_required.join(", ")) }
                    }
                }
            }
            dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) }
            dt { "Database" } dd { (store.backend().as_str()) }
            dt { "Node" } dd.mono { (st.engine.config().node_id) }
            dt { "Public URL" } dd.mono { (st.engine.config().public_url) }
            dt { "Projects" } dd { (projects.len()) " registered" }
            dt { "This session" } dd { "logged in with " @if session.via == LoginVia::Password { "the dashboard password" } @else { "an admin token" } }
        }
    };
    Ok(Page::new("Settings", Nav::Settings)
        .add(html! {
            @if let Some(f) = flash { p.flash role="status" { (f) } }
            nav.settings-toc aria-label="On this page" {
                a href="#tokens" { "Tokens" } a href="#channels" { "Channels" } a href="#password" { "Dashboard password" } a href="#about" { "About" }
            }
            h2 #tokens { "API tokens" }
            (token_section(&session, &tokens, mine.as_deref(), &projects))
            h2 #channels { "Notification channels" }
            (channel_section(&st, &session, &channels, &tested))
            h2 #password { "Dashboard password" }
            (password_section(&session, has_password))
            h2 #about { "About" }
            (about)
        })
        .respond(&session, fragment.name()))
}

fn token_section(session: &Session, tokens: &[TokenView], mine: Option<&str>, projects: &[String]) -> Markup {
    let mut active: Vec<&TokenView> = tokens.iter().filter(|t| t.revoked_at.is_none()).collect();
    let mut revoked: Vec<&TokenView> = tokens.iter().filter(|t| t.revoked_at.is_some()).collect();
    active.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    revoked.sort_by(|a, b| b.revoked_at.cmp(&a.revoked_at));
    let hidden = revoked.len().saturating_sub(REVOKED_SHOWN);
    revoked.truncate(REVOKED_SHOWN);
    let admins = active.iter().filter(|t| t.kind == TokenKind::Admin).count();
    html! {
        p.muted.small {
            "An admin token can do everything; a project token acts only for its project (for a job outside Agent OS "
            "that starts runs or reports costs); a worker token serves its projects from another machine ("
            code { "agent-os token create --worker --project NAME" } "). A token's value is shown once, when it is made: Agent OS keeps only its hash."
        }
        div.table-wrap {
            table.tokens {
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Kind" }
                        th scope="col" { "Project" }
                        th.hide-narrow scope="col" { "Created" }
                        th.hide-narrow scope="col" { "Expires" }
                        th scope="col" { "State" }
                        th scope="col" { "" }
                    }
                }
                tbody {
                    @for t in active.iter().chain(revoked.iter()) {
                        @let is_mine = mine == Some(t.id.as_str());
                        tr data-token=(t.id) {
                            td {
                                @if t.name.is_empty() { span.muted { "(no name)" } } @else { (t.name) }
                                br.hide-narrow; span.small.muted.mono.hide-narrow { (t.id) }
                                @if is_mine { br; span.small { "this session logged in with it" } }
                            }
                            td { (t.kind) }
                            td {
                                @if !t.projects.is_empty() { (t.projects.join(", ")) }
                                @else { (t.project.as_deref().unwrap_or("—")) }
                            }
                            td.hide-narrow { (ui::time_str(&t.created_at)) }
                            td.hide-narrow { @match &t.expires_at { Some(e) => (ui::time_str(e)), None => span.muted { "never" } } }
                            td {
                                @match &t.revoked_at {
                                    Some(at) => { (ui::badge(ui::Word::Revoked)) br; span.small { (ui::time_str(at)) } },
                                    None => (ui::badge(ui::Word::Active)),
                                }
                            }
                            td {
                                @if t.revoked_at.is_none() {
                                    (ui::post_button(
                                        session,
                                        &format!("/settings/tokens/{}/revoke", urlencode(&t.id)),
                                        "Revoke",
                                        "danger",
                                        Some(&revoke_warning(t, is_mine, admins)),
                                    ))
                                }
                            }
                        }
                    }
                }
            }
        }
        @if hidden > 0 { p.small.muted { (hidden) " older revoked tokens are not shown; " code { "agent-os token list" } " lists them all." } }
        h3 { "Create a token" }
        form.stack.create-token method="post" action="/settings/tokens" {
            (ui::csrf_field(session))
            label { "Name (a label, e.g. railway-cron)"
                input type="text" name="name" maxlength="100" autocomplete="off";
            }
            label { "Kind"
                select name="kind" {
                    option value="project" selected { "Project: acts for one project" }
                    option value="admin" { "Admin: can do everything" }
                }
            }
            label { "Project (for a project token)"
                select name="project" {
                    @if projects.is_empty() { option value="" { "No projects registered" } }
                    @for p in projects { option value=(p) { (p) } }
                }
            }
            div { button.primary type="submit" { "Create token" } }
        }
    }
}

fn revoke_warning(t: &TokenView, is_mine: bool, admins: usize) -> String {
    let mut w = format!(
        "Revoke {} token {}? Anything using it is refused at once.",
        t.kind,
        if t.name.is_empty() { &t.id } else { &t.name }
    );
    if is_mine {
        w.push_str(" This session logged in with it, so you will be logged out.");
    }
    if t.kind == TokenKind::Admin && admins <= 1 {
        w.push_str(" It is the last admin token: only a restart with AGENT_OS_ADMIN_TOKEN set gives you one again.");
    }
    w
}

fn channel_section(st: &AppState, session: &Session, channels: &[ChannelView], tested: &[DeliveryRecord]) -> Markup {
    let config = &st.engine.config().channels;
    let host = |name: &str| config.iter().find(|c| c.name == name).map(|c| host_of(&c.endpoint)).unwrap_or_default();
    html! {
        @for d in tested {
            @let failed = !matches!(d.status, DeliveryStatus::Delivered | DeliveryStatus::Pending | DeliveryStatus::Held);
            div.flash.error[failed] role="status" data-test-result=(d.status) {
                "Test to " strong { (d.channel) } ": " (ui::badge(d.status))
                @match d.status {
                    DeliveryStatus::Delivered => { " The receiver accepted it." }
                    DeliveryStatus::Pending | DeliveryStatus::Held => { " Not through yet (attempt " (d.attempts) "); the delivery log on " a href="/incidents#notifications" { "Incidents" } " follows it." }
                    DeliveryStatus::Failed | DeliveryStatus::Disabled => { " It did not arrive." }
                }
                @if let Some(e) = &d.last_error { br; span.small { (scrub(e, config)) } }
            }
        }
        @if channels.is_empty() {
            (ui::empty(
                "No notification channels.",
                html! {
                    "Add them under " code { "notifications.channels" } " in Agent OS's config.yaml (Discord, Slack, ntfy, "
                    "e-mail or a JSON webhook, with secrets as " code { "${VAR}" } " from Agent OS's environment) and restart; "
                    "incidents and projects' notifications then reach them (see docs/alerting.md)."
                },
            ))
        } @else {
            div.table-wrap {
                table.channels {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Host" } th scope="col" { "" } } }
                    tbody {
                        @for c in channels {
                            tr data-channel=(c.name) {
                                td { (c.name) }
                                td { (c.kind) }
                                td.mono { (host(&c.name)) }
                                td { (ui::post_button(session, &format!("/settings/channels/{}/test", urlencode(&c.name)), "Send test", "", None)) }
                            }
                        }
                    }
                }
            }
            p.small.muted { "Only each channel's kind and host are shown: the rest of its address may hold its secret." }
        }
    }
}

fn password_section(session: &Session, has_password: bool) -> Markup {
    let this_one = session.via == LoginVia::Password;
    html! {
        p {
            @if has_password {
                "Set: the login page takes this password as well as the admin token."
            } @else {
                "Not set: only the admin token logs in. A password is easier to type on a phone."
            }
        }
        p.small.muted {
            "Changing or clearing it logs out every session that logged in with a password"
            @if this_one { ", this one included" }
            "; sessions made with a token stay. From a terminal: " code { "agent-os dashboard password" } "."
        }
        form.stack.password method="post" action="/settings/password" {
            (ui::csrf_field(session))
            label for="new-password" { "New password (at least " (PASSWORD_MIN_LEN) " characters)" }
            input #new-password type="password" name="password" autocomplete="new-password" required minlength=(PASSWORD_MIN_LEN);
            label for="confirm-password" { "The same again" }
            input #confirm-password type="password" name="confirm" autocomplete="new-password" required minlength=(PASSWORD_MIN_LEN);
            div { button.primary type="submit" { @if has_password { "Change password" } @else { "Set password" } } }
        }
        @if has_password {
            div.actions {
                (ui::post_button(
                    session,
                    "/settings/password/clear",
                    "Clear password",
                    "danger",
                    Some("Clear the dashboard password? Everyone logged in with it is logged out; the admin token still logs in."),
                ))
            }
        }
    }
}

#[derive(Deserialize)]
pub struct CreateTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    project: String,
}

/// Makes a token and shows it, once, on a page that is never cached (no redirect: the value
/// must not travel in a URL or survive in the history).
pub async fn create_token(State(st): State<AppState>, session: Session, Form(f): Form<CreateTokenForm>) -> PageResult {
    let kind = if f.kind.is_empty() { TokenKind::Project.to_string() } else { f.kind };
    let name = f.name.trim().to_string();
    let body = CreateTokenBody {
        // The project list is for project tokens; an admin token acts for all of them.
        project: (kind.parse() == Ok(TokenKind::Project))
            .then(|| f.project.trim().to_string())
            .filter(|p| !p.is_empty()),
        name: (!name.is_empty()).then_some(name),
        kind: Some(kind),
        projects: None,
    };
    let (_, Json(t)) = routes::create_token(State(st), Caller::Admin, JsonBody(body)).await?;
    let mut resp = Page::new("Token created", Nav::Settings).add(created(&t)).respond(&session, None);
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

fn created(t: &CreatedToken) -> Markup {
    html! {
        p.flash role="status" {
            "A new " (t.kind) " token"
            @if let Some(p) = &t.project { " for " strong { (p) } }
            @if !t.name.is_empty() { ", named " strong { (t.name) } } "."
        }
        p { strong { "Copy it now: it is not shown again." } " Agent OS keeps only its hash; if it is lost, revoke it and make another." }
        label for="new-token" { "The token" }
        pre.token-once { code #new-token { (t.token) } }
        p.small.muted {
            "Send it as " code { "Authorization: Bearer TOKEN" } ", or give it to the command line as "
            code { "AGENT_OS_TOKEN" } "."
        }
        p { a href="/settings#tokens" { "Back to the tokens" } }
    }
}

pub async fn revoke_token(State(st): State<AppState>, session: Session, Path(id): Path<String>) -> PageResult {
    let mine = st.engine.store().find_session(&session.id, st.engine.now()).await?.and_then(|s| s.token_id);
    routes::revoke_token(State(st), Caller::Admin, Path(id.clone())).await?;
    // Revoking the token this browser logged in with ended this session too.
    let to = if mine.as_deref() == Some(id.as_str()) { "/login" } else { "/settings?done=revoked#tokens" };
    Ok(Redirect::to(to).into_response())
}

/// Sends a test notification to one channel, waits briefly for its first attempt, then shows
/// the settings page with how it went (`?test=NOTIFICATION_ID`).
pub async fn test_channel(State(st): State<AppState>, _session: Session, Path(name): Path<String>) -> PageResult {
    let (_, Json(n)) = alerting::test_channel(State(st.clone()), Caller::Admin, Path(name)).await?;
    let until = tokio::time::Instant::now() + TEST_WAIT;
    while tokio::time::Instant::now() < until {
        let deliveries = st.engine.store().list_deliveries(Some(&n.id), 10).await?;
        if deliveries.iter().all(|d| d.status != DeliveryStatus::Pending || d.last_error.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Redirect::to(&format!("/settings?test={}#channels", urlencode(&n.id))).into_response())
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

/// Where to go once the password sessions have ended: this one may be among them.
fn after_password_change(session: &Session, done: &str) -> Response {
    if session.via == LoginVia::Password {
        Redirect::to("/login").into_response()
    } else {
        Redirect::to(&format!("/settings?done={done}#password")).into_response()
    }
}

pub async fn set_password(State(st): State<AppState>, session: Session, Form(f): Form<PasswordForm>) -> PageResult {
    if f.password != f.confirm {
        return Err(ApiError::bad_request("The two passwords differ: type the same password in both fields.")
            .field("confirm")
            .into());
    }
    dashboard_api::set_password(&st, f.password).await?;
    Ok(after_password_change(&session, "password-set"))
}

pub async fn clear_password(State(st): State<AppState>, session: Session) -> PageResult {
    dashboard_api::clear_password(&st).await?;
    Ok(after_password_change(&session, "password-cleared"))
}
