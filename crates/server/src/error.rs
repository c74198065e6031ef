//! The one error shape of the API: `{"error": {"code", "message", "field"?, "errors"?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use agent_os_engine::EngineError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub errors: Vec<agent_os_core::yaml::SourceError>,
    /// The request's id, on answers the server gives up on (a panic, a timeout), so a report
    /// can point at the log lines of that request.
    pub request_id: Option<String>,
}

/// Body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `rate_limited`, `method_not_allowed`, `unsupported_media_type`, `payload_too_large`,
    /// `invalid_manifest`, `unavailable`, `timeout`, `internal`; for workers `worker_protocol` (a
    /// protocol version this server does not speak) and `attempt_ended`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one (`input`, `records[3].amount`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem of an invalid manifest, with its place.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SourcePlace>,
    /// The request's id (its `X-Request-Id` answer header), on a `500` or a timeout's `503`:
    /// quote it when reporting the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One problem in a file a user wrote, with its place (`FILE:LINE:COLUMN`, the field's path).
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct SourcePlace {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub path: String,
    pub message: String,
    /// How to fix it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl From<agent_os_core::yaml::SourceError> for SourcePlace {
    fn from(e: agent_os_core::yaml::SourceError) -> Self {
        SourcePlace { file: e.file, line: e.line, column: e.column, path: e.path, message: e.message, hint: e.hint }
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None, errors: Vec::new(), request_id: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn request_id(mut self, id: Option<String>) -> Self {
        self.request_id = id;
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => ApiError::not_found(m),
            EngineError::Invalid { field, message } => ApiError { field, ..ApiError::bad_request(message) },
            EngineError::Manifest(m) => {
                let message = m.0.first().map(|e| e.to_string()).unwrap_or_else(|| "invalid manifest".into());
                ApiError { errors: m.0, ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_manifest", message) }
            }
            EngineError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            EngineError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            EngineError::RateLimited(m) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", m),
            EngineError::Store(e) => {
                tracing::error!(error = %e, "storage error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is not available; try again",
                )
            }
        }
    }
}

impl From<agent_os_store::StoreError> for ApiError {
    fn from(e: agent_os_store::StoreError) -> Self {
        ApiError::from(EngineError::from(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
                errors: self.errors.into_iter().map(SourcePlace::from).collect(),
                request_id: self.request_id,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
