//! The signing secret of a hosted (HTTP plugin) project, admin only: shown again, and rotated
//! with a grace period during which requests are signed with the old secret too.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use agent_os_engine::SigningSecret;

use crate::AppState;
use crate::auth::Caller;
use crate::body::OptionalJson;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::views;

/// How long the previous secret keeps signing requests after a rotation, unless told.
const DEFAULT_GRACE: &str = "24h";

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SigningSecretView {
    pub project: String,
    /// The Standard Webhooks secret (`whsec_…`) requests to the project are signed with.
    pub signing_secret: String,
    /// While a rotation's grace lasts, requests also carry a signature under the previous
    /// secret, until this time.
    pub previous_valid_until: Option<String>,
}

fn view(project: String, s: SigningSecret) -> SigningSecretView {
    SigningSecretView { project, signing_secret: s.secret, previous_valid_until: s.previous_until.map(views::time) }
}

/// Shows a hosted project's signing secret again. Admin only.
#[utoipa::path(get, path = "/api/v1/projects/{name}/signing-secret", tag = "projects", params(("name" = String, Path)), responses((status = 200, body = SigningSecretView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show_signing_secret(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<SigningSecretView>> {
    caller.require_admin()?;
    let s = st.engine.signing_secret(&name).await?;
    Ok(Json(view(name, s)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the previous secret still signs requests, e.g. `1h` (default `24h`, at most
    /// `7d`); `0s` drops it at once (after a leak).
    pub grace: Option<String>,
}

/// Makes a new signing secret for a hosted project. Admin only.
#[utoipa::path(post, path = "/api/v1/projects/{name}/signing-secret/rotate", tag = "projects", params(("name" = String, Path)), request_body(content = RotateBody, description = "optional"), responses((status = 200, body = SigningSecretView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn rotate_signing_secret(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<RotateBody>,
) -> ApiResult<Json<SigningSecretView>> {
    caller.require_admin()?;
    let text = body.and_then(|b| b.grace).unwrap_or_else(|| DEFAULT_GRACE.into());
    let grace = agent_os_core::parse_duration(&text).map_err(|e| ApiError::bad_request(e).field("grace"))?;
    let s = st.engine.rotate_signing_secret(&name, grace).await?;
    Ok(Json(view(name, s)))
}
