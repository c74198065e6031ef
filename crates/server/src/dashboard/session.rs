//! Logging in to the dashboard and keeping it safe: a session cookie (HttpOnly, SameSite=Strict,
//! Secure when served over HTTPS) whose SHA-256 alone is stored; a per-session CSRF token that
//! every state-changing request must carry; and an Origin check besides. Only the admin token,
//! or the password an admin set, logs in. Revoking the admin token a session came from, or
//! changing the password, ends the sessions that used it.

use std::time::{Duration, Instant};

use axum::Form;
use axum::body::Body;
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use agent_os_core::token::LoginVia;
use agent_os_engine::secrets::{self, TokenKind, hash_token};
use agent_os_store::SessionRecord;

use super::ui;
use crate::{AppState, limit};

pub const COOKIE: &str = "agentos_session";
/// The settings key holding the dashboard password's hash.
pub const PASSWORD_SETTING: &str = "dashboard.password";
/// A session lasts this long from its login.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Form bodies the dashboard accepts are small.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// The logged-in browser of a request.
#[derive(Clone, Debug)]
pub struct Session {
    pub csrf: String,
    /// The stored id (a hash of the cookie value).
    pub id: String,
    pub via: LoginVia,
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or_else(|| StatusCode::UNAUTHORIZED.into_response())
    }
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE && !v.is_empty()).then(|| v.to_string())
    })
}

/// Whether the browser reached us over HTTPS: `public_url` is an `https://` address (the
/// operator says so), or a trusted proxy's `X-Forwarded-Proto` says so (`api.trusted_proxies`;
/// from any other peer the header is ignored, since a client can write it). It decides the
/// session cookie's `Secure`.
pub struct OverHttps(pub bool);

impl FromRequestParts<AppState> for OverHttps {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        if st.engine.config().public_url.starts_with("https://") {
            return Ok(OverHttps(true));
        }
        let Some(peer) = limit::peer_of(&parts.extensions) else { return Ok(OverHttps(false)) };
        let proto = parts.headers.get_all("x-forwarded-proto").into_iter().filter_map(|v| v.to_str().ok());
        Ok(OverHttps(agent_os_core::net::forwarded_https(peer.ip(), proto, &st.trusted_proxies)))
    }
}

fn session_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static("agentos_session=; Path=/; Max-Age=0"))
}

/// An `Origin` (or, lacking one, `Referer`) naming another site than the one asked: a
/// cross-site request, refused for anything that changes state. The site asked is the `Host`
/// the request names, or the origin of `public_url` (`https://aos.example.com`), which a
/// reverse proxy that rewrites `Host` leaves as the one name the browser used.
fn cross_site(headers: &HeaderMap, public_url: &str) -> bool {
    let origin = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)).and_then(|v| v.to_str().ok());
    let Some(origin) = origin else { return false };
    if origin == "null" {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else { return true };
    let authority = rest.split('/').next().unwrap_or("");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if host.is_some_and(|h| authority.eq_ignore_ascii_case(h)) {
        return false;
    }
    let public = public_url.split_once("://").map(|(s, rest)| (s, rest.split('/').next().unwrap_or("")));
    !public.is_some_and(|(s, a)| s.eq_ignore_ascii_case(scheme) && a.eq_ignore_ascii_case(authority))
}

/// Middleware for every dashboard page: finds the session or sends the browser to log in, and
/// refuses a state change without the session's CSRF token (form field `_csrf` or header
/// `X-CSRF-Token`) or from another origin.
pub async fn require(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let now = st.engine.now();
    let session = match cookie_value(req.headers()) {
        Some(v) => st.engine.store().find_session(&hash_token(&v), now).await,
        None => Ok(None),
    };
    let session = match session {
        Ok(Some(s)) => s,
        Ok(None) => return to_login(&req),
        Err(e) => {
            return ui::error_page(StatusCode::SERVICE_UNAVAILABLE, &format!("the database is not available: {e}"));
        }
    };
    let session = Session { csrf: session.csrf, id: session.id, via: session.via };
    let (mut parts, body) = req.into_parts();
    let changes_state = !matches!(parts.method, Method::GET | Method::HEAD);
    let body = if changes_state {
        if cross_site(&parts.headers, &st.engine.config().public_url) {
            return csrf_refused("the request came from another site");
        }
        let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(_) => return ui::error_page(StatusCode::PAYLOAD_TOO_LARGE, "the form is larger than 256 KiB"),
        };
        let header_token = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_string);
        let form_token = form_field(&bytes, "_csrf");
        let given = header_token.or(form_token).unwrap_or_default();
        if !secrets::constant_time_eq(given.as_bytes(), session.csrf.as_bytes()) {
            return csrf_refused("the form carried no valid CSRF token");
        }
        if let Some(field) = std::str::from_utf8(&bytes).ok().and_then(crate::edge::nul_field) {
            return ui::error_page(
                StatusCode::BAD_REQUEST,
                &format!(
                    "The field {field:?} holds a NUL character, which no text may contain. Go back and remove it."
                ),
            );
        }
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(session);
    next.run(Request::from_parts(parts, body)).await
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn csrf_refused(why: &str) -> Response {
    ui::error_page(
        StatusCode::FORBIDDEN,
        &format!("Refused: {why}. Reload the page and try again; if it keeps happening, log out and in again."),
    )
}

fn to_login(req: &Request) -> Response {
    let wants_page = req.method() == Method::GET
        && !req.uri().query().unwrap_or("").contains("_fragment=")
        && req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_none_or(|a| !a.contains("event-stream"));
    if !wants_page {
        return (StatusCode::UNAUTHORIZED, "log in again: the session has ended").into_response();
    }
    let next = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target = format!("/login?next={}", agent_os_core::url::encode_component(next));
    Redirect::to(&target).into_response()
}

/// Only a path on this site may be returned to after logging in.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.starts_with("/login") => {
            n.to_string()
        }
        _ => "/".into(),
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn login_page(State(st): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    let has_password = matches!(st.engine.store().get_setting(PASSWORD_SETTING).await, Ok(Some(v)) if !v.is_empty());
    login_form(has_password, q.next.as_deref(), None, StatusCode::OK)
}

fn login_form(has_password: bool, next: Option<&str>, error: Option<&str>, status: StatusCode) -> Response {
    let label = if has_password { "Admin token or dashboard password" } else { "Admin token" };
    let body: Markup = html! {
        main.login id="main" {
            h1 { "Agent OS" }
            p.muted { "Log in to see every project in one place." }
            @if let Some(e) = error { p.flash.error role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(safe_next(next));
                label for="secret" { (label) }
                input #secret type="password" name="secret" autocomplete="current-password" required autofocus;
                button.primary type="submit" { "Log in" }
            }
            p.muted.small {
                "The admin token was printed when Agent OS first started; the local CLI keeps it in "
                code { "HOME/client.json" } ". "
                "An admin can set a password with " code { "agent-os dashboard password" } "."
            }
        }
    };
    let mut resp = ui::bare_page("Log in", body).into_response();
    *resp.status_mut() = status;
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    secret: String,
    next: Option<String>,
}

/// Which secret a login tries, for the limit per credential: a password can be guessed, a
/// token cannot, so a storm of password guesses must not hold up a login with the admin token.
fn credential_tried(secret: &str) -> &'static str {
    let token = TokenKind::ALL.iter().any(|k| secret.starts_with(k.prefix()));
    if token { LoginVia::Token.as_str() } else { LoginVia::Password.as_str() }
}

fn too_many_failures(has_password: bool, next: Option<&str>, refused: limit::Limited) -> Response {
    let wait = refused.retry_after_secs();
    let msg = match refused.over {
        limit::Over::Client => {
            format!("Too many failed logins from this address in the last minute; try again in {wait} s.")
        }
        limit::Over::Credential => format!(
            "Too many failed password logins in the last minute; try again in {wait} s (the admin token still logs in)."
        ),
        limit::Over::Total => format!("Too many failed logins in the last minute; try again in {wait} s."),
    };
    let mut resp = login_form(has_password, next, Some(&msg), StatusCode::TOO_MANY_REQUESTS);
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
    resp
}

pub async fn login(
    State(st): State<AppState>,
    limit::Client(client): limit::Client,
    OverHttps(https): OverHttps,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let store = st.engine.store();
    let has_password = matches!(store.get_setting(PASSWORD_SETTING).await, Ok(Some(v)) if !v.is_empty());
    let next = form.next.as_deref();
    if cross_site(&headers, &st.engine.config().public_url) {
        return login_form(
            has_password,
            next,
            Some("Refused: the login came from another site."),
            StatusCode::FORBIDDEN,
        );
    }
    let secret = form.secret.trim();
    let credential = credential_tried(secret);
    if let Err(refused) = st.login_failures.check(client, credential, Instant::now()) {
        return too_many_failures(has_password, next, refused);
    }
    let now = st.engine.now();
    let via = match login_as(&st, secret, now).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            st.login_failures.note_failure(client, credential, Instant::now());
            let msg = if secret.starts_with("aosp_") || secret.starts_with("aosr_") {
                "That is a project or run token; the dashboard needs the admin token."
            } else if has_password {
                "That is neither a valid admin token nor the dashboard password."
            } else {
                "That is not a valid admin token (it starts with aosa_)."
            };
            return login_form(has_password, next, Some(msg), StatusCode::UNAUTHORIZED);
        }
        Err(e) => {
            return login_form(
                has_password,
                next,
                Some(&format!("The database is not available: {e}")),
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    let cookie = hex::encode(secrets::random_bytes::<32>());
    let record = SessionRecord {
        id: hash_token(&cookie),
        csrf: hex::encode(secrets::random_bytes::<32>()),
        via: via.0,
        token_id: via.1,
        created_at: now,
        expires_at: now + SESSION_TTL.as_millis() as i64,
    };
    if let Err(e) = store.insert_session(&record).await {
        return login_form(
            has_password,
            next,
            Some(&format!("The database is not available: {e}")),
            StatusCode::SERVICE_UNAVAILABLE,
        );
    }
    let mut resp = Redirect::to(&safe_next(next)).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&cookie, SESSION_TTL.as_secs(), https));
    resp
}

/// How `secret` logs in: with a token (and its id) or the password; `None` if it does not.
async fn login_as(
    st: &AppState,
    secret: &str,
    now: i64,
) -> Result<Option<(LoginVia, Option<String>)>, agent_os_store::StoreError> {
    let store = st.engine.store();
    if secret.is_empty() {
        return Ok(None);
    }
    if let Some(t) = store.find_token(&hash_token(secret)).await? {
        let valid = t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now);
        return Ok((valid && t.kind == TokenKind::Admin).then_some((LoginVia::Token, Some(t.id))));
    }
    let Some(stored) = store.get_setting(PASSWORD_SETTING).await? else { return Ok(None) };
    let secret = secret.to_string();
    let checked = stored.clone();
    // Stretching takes a few hundred milliseconds: off the async threads.
    let found = tokio::task::spawn_blocking(move || secrets::verify_password(&secret, &checked))
        .await
        .unwrap_or(secrets::PasswordMatch::No);
    match found {
        secrets::PasswordMatch::No => Ok(None),
        secrets::PasswordMatch::Yes => Ok(Some((LoginVia::Password, None))),
        secrets::PasswordMatch::YesRehash(new) => {
            // Only over the hash just checked: a password changed meanwhile stays changed.
            store.replace_setting(PASSWORD_SETTING, &stored, &new).await?;
            Ok(Some((LoginVia::Password, None)))
        }
    }
}

pub async fn logout(State(st): State<AppState>, session: Session, OverHttps(https): OverHttps) -> Response {
    let _ = st.engine.store().delete_session(&session.id).await;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0, https));
    resp
}
