//! Request bodies: JSON only, strictly typed, size-limited. A wrong content type is 415, a
//! body over the limit is 413, malformed JSON is 400 with the place of the error.

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A JSON request body.
pub struct JsonBody<T>(pub T);

/// A JSON request body that may be absent (empty, or the JSON `null`).
pub struct OptionalJson<T>(pub Option<T>);

async fn read(state: &AppState, req: Request, required: bool) -> Result<Option<bytes_::Bytes>, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let declared_len =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let limit = state.max_body_bytes;
    if declared_len.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| too_large(limit))?;
    if bytes.is_empty() && !required {
        return Ok(None);
    }
    let is_json = content_type.as_deref().is_some_and(|ct| {
        let mime = ct.split(';').next().unwrap_or("").trim();
        mime.eq_ignore_ascii_case("application/json")
    });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "send the body as JSON with Content-Type: application/json (got {})",
                content_type.as_deref().unwrap_or("no content type")
            ),
        ));
    }
    Ok(Some(bytes))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than the limit of {limit} bytes (api.max_body_bytes in config.yaml)"),
    )
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
        let field = msg.split('`').nth(1).filter(|_| msg.contains("field")).map(str::to_string);
        let err = ApiError::bad_request(format!("invalid JSON body: {msg}"));
        match field {
            Some(f) => err.field(f),
            None => err,
        }
    })
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read(state, req, true).await?.unwrap_or_default();
        Ok(JsonBody(parse(&bytes)?))
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match read(state, req, false).await? {
            None => Ok(OptionalJson(None)),
            // A JSON `null` is no body too, as the document's optional body allows.
            Some(bytes) => Ok(OptionalJson(parse::<Option<T>>(&bytes)?)),
        }
    }
}

/// Query parameters; a malformed or unknown parameter is a 400 in the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
    }
}

mod bytes_ {
    pub use axum::body::Bytes;
}
