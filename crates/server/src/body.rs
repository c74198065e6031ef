//! Request bodies: JSON only, strictly typed, size-limited. A wrong content type (or a charset
//! other than UTF-8) is 415, a body over the limit is 413, malformed JSON is 400 with the place
//! of the error, and so is a string holding NUL (`\u0000`), which no text field may contain.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A JSON request body.
pub struct JsonBody<T>(pub T);

/// A JSON request body that may be absent (empty, or the JSON `null`).
pub struct OptionalJson<T>(pub Option<T>);

async fn read(state: &AppState, req: Request, required: bool) -> Result<Option<Bytes>, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = within_limit(&parts.headers, body, state.max_body_bytes).await?;
    if bytes.is_empty() && !required {
        return Ok(None);
    }
    require_json(&parts.headers)?;
    Ok(Some(bytes))
}

/// The whole body, refused with 413 when it is declared (`Content-Length`) or found larger than
/// `limit` bytes. The inbound webhook reads its body with this too: it checks the signature over
/// the raw bytes before it looks at what they are.
pub async fn within_limit(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared_len =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared_len.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| too_large(limit))
}

/// Refuses with 415 a body not declared as `application/json`, or declared in a charset other
/// than UTF-8.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let mut params = content_type.unwrap_or("").split(';');
    let is_json = params.next().is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    // JSON is UTF-8 (RFC 8259); a body declared in another charset would be read wrongly.
    let charset = params.filter_map(|p| p.split_once('=')).find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"));
    if let Some((_, v)) = charset {
        let v = v.trim().trim_matches('"');
        if !v.eq_ignore_ascii_case("utf-8") && !v.eq_ignore_ascii_case("utf8") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("send the body as UTF-8 JSON: charset={v} is not accepted (give charset=utf-8 or none)"),
            ));
        }
    }
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "send the body as JSON with Content-Type: application/json (got {})",
                content_type.unwrap_or("no content type")
            ),
        ));
    }
    Ok(())
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than the limit of {limit} bytes (api.max_body_bytes in config.yaml)"),
    )
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // A NUL can only arrive escaped; only a body that holds the escape is looked at twice.
    if bytes.windows(6).any(|w| w == br"\u0000")
        && let Ok(tree) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(field) = nul_at(&tree, String::new())
    {
        let place = if field.is_empty() { "the body".to_string() } else { field.clone() };
        let err = ApiError::bad_request(format!("{place} holds a NUL character (\\u0000), which no text may contain"));
        return Err(if field.is_empty() { err } else { err.field(field) });
    }
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

/// Refuses a body that is a JSON array where the operation takes an object. Every typed body of
/// the API is an object (a body read as a plain JSON value, like `/costs`'s record or list,
/// takes either); serde would also read a struct from an array of its fields in order, which
/// no client means and the document does not allow.
fn refuse_array<T: 'static>(bytes: &[u8]) -> Result<(), ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') && std::any::TypeId::of::<T>() != std::any::TypeId::of::<serde_json::Value>() {
        return Err(ApiError::bad_request("the body must be a JSON object, not an array"));
    }
    Ok(())
}

/// The place (`records[3].idempotency_key`) of the first string or key holding NUL.
fn nul_at(v: &serde_json::Value, place: String) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0').then_some(place),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| nul_at(item, format!("{place}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let here = if place.is_empty() {
                k.replace('\0', "\u{FFFD}")
            } else {
                format!("{place}.{}", k.replace('\0', "\u{FFFD}"))
            };
            if k.contains('\0') { Some(here) } else { nul_at(item, here) }
        }),
        _ => None,
    }
}

impl<T: DeserializeOwned + 'static> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read(state, req, true).await?.unwrap_or_default();
        refuse_array::<T>(&bytes)?;
        Ok(JsonBody(parse(&bytes)?))
    }
}

impl<T: DeserializeOwned + 'static> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match read(state, req, false).await? {
            None => Ok(OptionalJson(None)),
            // A JSON `null` is no body too, as the document's optional body allows.
            Some(bytes) => {
                refuse_array::<T>(&bytes)?;
                Ok(OptionalJson(parse::<Option<T>>(&bytes)?))
            }
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

/// Checks a text field's length as the OpenAPI document states it: in characters (Unicode
/// scalar values, as JSON Schema's `minLength`/`maxLength` count them), not bytes, and, when
/// `min` is at least 1, not blank (the document says so with the pattern `\S`).
pub fn text_length(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min || n > max || (min > 0 && value.trim().is_empty()) {
        let what = if min > 0 {
            format!("{min} to {max} characters, not only spaces")
        } else {
            format!("at most {max} characters")
        };
        return Err(ApiError::bad_request(format!("{field}: {what}")).field(field));
    }
    Ok(())
}
