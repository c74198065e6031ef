//! Status badges: the public, read-only image (`.svg`) and JSON (`.json`) of a project's checks
//! or a tag's, at an address whose token is the badge's own credential
//! (`/badges/{token}/{project}.svg`, `/badges/{token}/tag/{tag}.svg`), and
//! `GET /api/v1/badges`, which lists the addresses a caller may hand out. The engine makes and
//! checks the tokens (`engine::badges`); core draws the image (`core::badge`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use agent_os_core::badge::{BadgeStatus, MAX_LABEL_CHARS, Tally, svg};
use agent_os_core::url::encode_component;
use agent_os_engine::engine::badges::{BadgeLink, BadgeSubject};

use crate::AppState;
use crate::auth::Caller;
use crate::body::{ApiQuery, text_length};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::routes::scoped_project;

/// One answer for every badge that cannot be shown: a wrong token, an unknown project and a
/// malformed name look the same, so a guess learns nothing.
fn no_badge() -> ApiError {
    ApiError::not_found("no such badge; copy its address from `agent-os badges` or the project's page")
}

/// Query of a badge image.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SvgQuery {
    /// The left-hand text instead of the project's name or the tag, 1 to 64 characters, not
    /// only spaces.
    #[param(min_length = 1, max_length = 64, pattern = "\\S")]
    pub label: Option<String>,
}

/// Query of a badge's JSON.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JsonQuery {
    /// The label the JSON names instead of the project's name or the tag, 1 to 64 characters,
    /// not only spaces.
    #[param(min_length = 1, max_length = 64, pattern = "\\S")]
    pub label: Option<String>,
    /// `shields`: answer in shields.io's endpoint-badge shape, for
    /// `https://img.shields.io/endpoint?url=…`.
    #[param(pattern = "^shields$")]
    pub style: Option<String>,
}

/// What a badge's JSON says.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BadgeState {
    /// The worst state of the checks: `up`, `late`, `down`, or `no checks`.
    pub status: String,
    pub label: String,
    /// Checks counted; `new` ones (never pinged) count as up in `status`.
    pub total: u32,
    pub up: u32,
    pub late: u32,
    pub down: u32,
    pub new: u32,
}

/// shields.io's endpoint-badge shape (`?style=shields`).
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShieldsBadge {
    /// Always 1.
    pub schema_version: u32,
    pub label: String,
    pub message: String,
    /// A shields.io colour name: `brightgreen`, `orange`, `red` or `lightgrey`.
    pub color: String,
}

/// The name and format a file part of a badge address asks for: `trading.svg` → (`trading`, svg).
fn file_parts(file: &str) -> Option<(&str, bool)> {
    let (name, ext) = file.rsplit_once('.')?;
    match ext {
        "svg" => Some((name, true)),
        "json" => Some((name, false)),
        _ => None,
    }
}

/// `/badges/{token}/{project}.svg` or `.json`.
pub async fn project_badge(
    State(st): State<AppState>,
    Path((token, file)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let (name, svg) = file_parts(&file).ok_or_else(no_badge)?;
    answer(&st, BadgeSubject::Project(name.to_string()), &token, svg, &uri).await
}

/// `/badges/{token}/tag/{tag}.svg` or `.json`.
pub async fn tag_badge(
    State(st): State<AppState>,
    Path((token, file)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let (name, svg) = file_parts(&file).ok_or_else(no_badge)?;
    answer(&st, BadgeSubject::Tag(name.to_string()), &token, svg, &uri).await
}

fn label_of(label: Option<String>, subject: &BadgeSubject) -> ApiResult<String> {
    match label {
        Some(l) => {
            text_length("label", &l, 1, MAX_LABEL_CHARS)?;
            Ok(l)
        }
        None => Ok(subject.name().to_string()),
    }
}

async fn answer(
    st: &AppState,
    subject: BadgeSubject,
    token: &str,
    svg_wanted: bool,
    uri: &axum::http::Uri,
) -> ApiResult<Response> {
    // The query is read first: a malformed one is refused the same whether the badge exists.
    let (label, shields) = if svg_wanted {
        let ApiQuery(q) = query::<SvgQuery>(uri)?;
        (q.label, false)
    } else {
        let ApiQuery(q) = query::<JsonQuery>(uri)?;
        if let Some(style) = &q.style
            && style != "shields"
        {
            return Err(ApiError::bad_request(format!(
                "unknown style {style:?}; the one style is `shields` (shields.io's endpoint shape), or leave it out"
            ))
            .field("style"));
        }
        (q.label, q.style.is_some())
    };
    let label = label_of(label, &subject)?;
    let tally = st.engine.open_badge(&subject, token).await?.ok_or_else(no_badge)?;
    let status = tally.status();
    let mut resp = if svg_wanted {
        ([(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")], svg(&label, status)).into_response()
    } else if shields {
        Json(ShieldsBadge {
            schema_version: 1,
            label: agent_os_core::badge::shorten(&label),
            message: status.as_str().into(),
            color: status.color_name().into(),
        })
        .into_response()
    } else {
        Json(state_of(&label, &tally)).into_response()
    };
    let h = resp.headers_mut();
    // Image proxies (GitHub's camo) and browsers ask again each time rather than keep a state.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, max-age=0"));
    // A badge is public: any page may read its JSON.
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    // Opened on its own, the image may run nothing and load nothing.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(resp)
}

fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> ApiResult<ApiQuery<T>> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| ApiQuery(q.0))
        .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
}

fn state_of(label: &str, t: &Tally) -> BadgeState {
    BadgeState {
        status: t.status().as_str().into(),
        label: agent_os_core::badge::shorten(label),
        total: t.total,
        up: t.up,
        late: t.late,
        down: t.down,
        new: t.new,
    }
}

// Documentation of the public routes: one operation per form, as the addresses read. The
// router serves them through `project_badge` and `tag_badge`, which tell the forms apart by
// the file's extension (a route cannot match part of a path segment), so these functions are
// never called: only their annotations are read.

/// A project's status badge (SVG): the worst state of its checks. Public: the token in the
/// address is the credential (`GET /api/v1/badges` lists it).
#[utoipa::path(get, path = "/badges/{token}/{project}.svg", tag = "badges", params(("token" = String, Path), ("project" = String, Path), SvgQuery), responses((status = 200, description = "the badge", content_type = "image/svg+xml", body = String), (status = 400, body = ErrorBody), (status = 404, description = "no such badge (a wrong token and an unknown project alike)", body = ErrorBody)))]
#[allow(dead_code)]
pub async fn doc_project_svg() {}

/// A project's status badge as JSON (`?style=shields` for shields.io's endpoint shape).
#[utoipa::path(get, path = "/badges/{token}/{project}.json", tag = "badges", params(("token" = String, Path), ("project" = String, Path), JsonQuery), responses((status = 200, body = BadgeState), (status = 400, body = ErrorBody), (status = 404, description = "no such badge (a wrong token and an unknown project alike)", body = ErrorBody)))]
#[allow(dead_code)]
pub async fn doc_project_json() {}

/// A tag's status badge (SVG): the worst state of the checks carrying the tag, across projects.
#[utoipa::path(get, path = "/badges/{token}/tag/{tag}.svg", tag = "badges", params(("token" = String, Path), ("tag" = String, Path), SvgQuery), responses((status = 200, description = "the badge", content_type = "image/svg+xml", body = String), (status = 400, body = ErrorBody), (status = 404, description = "no such badge", body = ErrorBody)))]
#[allow(dead_code)]
pub async fn doc_tag_svg() {}

/// A tag's status badge as JSON (`?style=shields` for shields.io's endpoint shape).
#[utoipa::path(get, path = "/badges/{token}/tag/{tag}.json", tag = "badges", params(("token" = String, Path), ("tag" = String, Path), JsonQuery), responses((status = 200, body = BadgeState), (status = 400, body = ErrorBody), (status = 404, description = "no such badge", body = ErrorBody)))]
#[allow(dead_code)]
pub async fn doc_tag_json() {}

// The list ------------------------------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BadgeQuery {
    /// Only this project's badge and its checks' tags' (a project token: always its own).
    pub project: Option<String>,
}

/// A badge a caller may hand out.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct BadgeView {
    /// `project` or `tag`.
    #[schema(pattern = "^(project|tag)$")]
    pub kind: String,
    /// The project's name or the tag.
    pub name: String,
    /// What it says now: `up`, `late`, `down` or `no checks`.
    pub status: String,
    pub total: u32,
    pub up: u32,
    pub late: u32,
    pub down: u32,
    pub new: u32,
    pub svg_url: String,
    pub json_url: String,
    /// The same badge drawn by shields.io from the JSON (`?style=shields`).
    pub shields_url: String,
    /// Ready to paste into a README.
    pub markdown: String,
}

/// The badges a caller may hand out: an admin, every project's and every tag's; a project
/// token, its project's and one for each tag its checks carry (a tag's badge counts the checks
/// of every project carrying it).
#[utoipa::path(get, path = "/api/v1/badges", tag = "badges", params(BadgeQuery), responses((status = 200, body = [BadgeView]), (status = 404, description = "`project` is not registered", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_badges(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<BadgeQuery>,
) -> ApiResult<Json<Vec<BadgeView>>> {
    let project = scoped_project(&st, &caller, q.project).await?;
    let base = st.engine.config().public_url.trim_end_matches('/').to_string();
    let badges = st.engine.list_badges(project.as_deref()).await?;
    Ok(Json(badges.into_iter().map(|b| badge_view(&base, b)).collect()))
}

/// The view of a badge, its addresses under `base` (the server's public URL).
pub fn badge_view(base: &str, b: BadgeLink) -> BadgeView {
    let (kind, name) = match &b.subject {
        BadgeSubject::Project(n) => ("project", n.clone()),
        BadgeSubject::Tag(t) => ("tag", t.clone()),
    };
    let stem = match kind {
        "project" => format!("{base}/badges/{}/{name}", b.token),
        _ => format!("{base}/badges/{}/tag/{name}", b.token),
    };
    let (svg_url, json_url) = (format!("{stem}.svg"), format!("{stem}.json"));
    let shields_url =
        format!("https://img.shields.io/endpoint?url={}", encode_component(&format!("{json_url}?style=shields")));
    let status: BadgeStatus = b.tally.status();
    BadgeView {
        kind: kind.into(),
        markdown: format!("![{name} status]({svg_url})"),
        status: status.as_str().into(),
        total: b.tally.total,
        up: b.tally.up,
        late: b.tally.late,
        down: b.tally.down,
        new: b.tally.new,
        name,
        svg_url,
        json_url,
        shields_url,
    }
}
