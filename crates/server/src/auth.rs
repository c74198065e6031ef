//! Who is calling: every `/api/v1` request carries `Authorization: Bearer <token>`. Admin
//! tokens may do anything; a project token acts only for its project; a run token acts for
//! its run's project while the run lasts. A worker token calls only the worker operations
//! (`workers::authenticate_worker`), never these.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use agent_os_engine::secrets::{TokenKind, hash_token};
use agent_os_store::{ProjectRecord, TokenRecord};

use crate::AppState;
use crate::error::ApiError;

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub enum Caller {
    Admin,
    Project { project_id: String },
    Run { project_id: String, run_id: String },
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin)
    }

    /// The project a scoped token acts for (`None` for admins).
    pub fn project_id(&self) -> Option<&str> {
        match self {
            Caller::Admin => None,
            Caller::Project { project_id } | Caller::Run { project_id, .. } => Some(project_id),
        }
    }

    pub fn run_id(&self) -> Option<&str> {
        match self {
            Caller::Run { run_id, .. } => Some(run_id),
            _ => None,
        }
    }

    /// Who did something, for records such as an incident's acknowledgement.
    pub fn label(&self) -> String {
        match self {
            Caller::Admin => "admin".into(),
            Caller::Project { .. } => "project token".into(),
            Caller::Run { run_id, .. } => format!("run {run_id}"),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() { Ok(()) } else { Err(ApiError::forbidden("this needs the admin token")) }
    }

    /// Refuses a scoped token acting for another project.
    pub fn require_project(&self, p: &ProjectRecord) -> Result<(), ApiError> {
        match self.project_id() {
            None => Ok(()),
            Some(id) if id == p.id => Ok(()),
            Some(_) => Err(ApiError::forbidden(format!("this token acts only for its own project, not {:?}", p.name))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| ApiError::unauthorized("missing bearer token"))
    }
}

/// The stored record of the request's bearer token, if it is live (not revoked, not expired);
/// 401 otherwise. Both middlewares (the API's and the worker operations') start here.
pub async fn live_token(state: &AppState, headers: &axum::http::HeaderMap) -> Result<TokenRecord, ApiError> {
    let token = bearer(headers)?;
    let record = state.engine.store().find_token(&hash_token(token)).await?;
    let now = state.engine.now();
    match record {
        Some(r) if r.revoked_at.is_none() && r.expires_at.is_none_or(|e| e > now) => Ok(r),
        _ => Err(ApiError::unauthorized("the token is unknown, revoked or expired")),
    }
}

/// The token of `Authorization: Bearer <token>`, or the 401 that says how to send one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).map(str::trim).unwrap_or("");
    if token.is_empty() {
        return Err(ApiError::unauthorized(
            "missing bearer token: send Authorization: Bearer <token> (agent-os token create, or the admin token printed on first start)",
        ));
    }
    Ok(token)
}

/// Middleware: resolves the bearer token into a [`Caller`] or answers 401; a worker token,
/// which may call only the worker operations, is answered 403.
pub async fn authenticate(
    State(state): State<AppState>,
    mut req: axum::extract::Request,
    next: Next,
) -> Result<Response, ApiError> {
    let record = live_token(&state, req.headers()).await?;
    let caller = match (record.kind, record.project_id, record.run_id) {
        (TokenKind::Admin, _, _) => Caller::Admin,
        (TokenKind::Project, Some(project_id), _) => Caller::Project { project_id },
        (TokenKind::Run, Some(project_id), Some(run_id)) => Caller::Run { project_id, run_id },
        (TokenKind::Worker, _, _) => {
            return Err(ApiError::forbidden(
                "a worker token may call only the worker operations (/api/v1/worker/…); use an admin or project token here",
            ));
        }
        _ => return Err(ApiError::unauthorized("the token is not usable")),
    };
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}
