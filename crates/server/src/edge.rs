//! The edge of the server: what every request must satisfy before a handler sees it, and the
//! one error shape of whatever is refused on the way. Text a request carries (path segments,
//! query values, JSON strings, dashboard form fields) may not hold NUL: PostgreSQL cannot store
//! it and SQLite can, and the answer must not depend on the database. Times a request chooses
//! are bounded here too, before they meet any arithmetic.

use std::panic::AssertUnwindSafe;

use axum::extract::Request;
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;

use crate::error::{ApiError, ApiResult};

/// Marks a response whose plain text is meant for its reader (the ping endpoint answers curl
/// with `OK` or `not found`), so [`guard`] does not turn it into the JSON error shape.
#[derive(Clone, Copy, Debug)]
pub struct PlainText;

/// Middleware around every route: refuses a path segment that is not UTF-8 or holds NUL, and
/// a query value holding NUL, with a 400 naming it; turns the plain-text refusals of axum's own
/// extractors (a body over a route's limit, a form that does not parse) into the API's JSON
/// error shape; and answers a handler's panic with a 500 in that shape rather than a dropped
/// connection.
pub async fn guard(req: Request, next: Next) -> Response {
    if let Err(e) = check_target(req.uri()) {
        return e.into_response();
    }
    let path = req.uri().path().to_string();
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => json_errors(resp).await,
        Err(_) => {
            tracing::error!(path = %path, "a request handler panicked");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server failed on this request; it was not completed (the log says where)",
            )
            .into_response()
        }
    }
}

fn check_target(uri: &Uri) -> ApiResult<()> {
    for segment in uri.path().split('/') {
        let decoded = agent_os_core::url::decode_component(segment).map_err(|e| {
            ApiError::bad_request(format!("the path segment {:?} is not valid: {e}", shorten(segment))).field("path")
        })?;
        if decoded.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "the path segment {:?} holds a NUL character (%00), which no name or id may contain",
                shorten(segment)
            ))
            .field("path"));
        }
    }
    match uri.query().and_then(nul_field) {
        Some(name) => Err(ApiError::bad_request(format!(
            "the query parameter {name:?} holds a NUL character (%00), which no value may contain"
        ))
        .field(name)),
        None => Ok(()),
    }
}

/// The name of the first field of a URL-encoded form or query string whose name or value holds
/// NUL once decoded (which only `%00` can encode).
pub fn nul_field(form: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let has_nul = |s: &str| s.as_bytes().windows(3).any(|w| w == b"%00");
        (has_nul(name) || has_nul(value)).then(|| {
            let name = name.replace('+', " ");
            shorten(&agent_os_core::url::decode_component(&name).unwrap_or(name).replace('\0', "\u{FFFD}"))
        })
    })
}

fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

/// An error answered as plain text (by axum's extractors, before any handler of ours ran)
/// leaves in the JSON error shape, with its status kept.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let plain_text = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error())
        || !plain_text
        || resp.extensions().get::<PlainText>().is_some()
    {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).into_owned());
    let text = text.unwrap_or_default();
    let (status, code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            (status, "payload_too_large", format!("the request body is larger than this endpoint accepts ({text})"))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (status, "unsupported_media_type", text),
        StatusCode::UNAUTHORIZED => (status, "unauthorized", text),
        StatusCode::FORBIDDEN => (status, "forbidden", text),
        StatusCode::NOT_FOUND => (status, "not_found", text),
        StatusCode::METHOD_NOT_ALLOWED => (status, "method_not_allowed", text),
        StatusCode::TOO_MANY_REQUESTS => (status, "rate_limited", text),
        // axum answers a form or path that does not deserialize with 422; this API calls every
        // malformed request a 400.
        s if s.is_client_error() => (StatusCode::BAD_REQUEST, "bad_request", text),
        StatusCode::SERVICE_UNAVAILABLE => (status, "unavailable", text),
        _ => (status, "internal", text),
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

// Times a request chooses -------------------------------------------------------------------

/// The earliest time a request may name.
pub const EARLIEST: jiff::Timestamp = jiff::Timestamp::UNIX_EPOCH;
/// The latest time a request may name, 9999-12-30T22:00:00Z: the last whole millisecond (the
/// unit times are stored in) at which every zone's civil time is still in year 9999 (jiff's
/// own limit).
pub const LATEST: jiff::Timestamp = jiff::Timestamp::constant(253_402_207_200, 0);

fn range_text() -> String {
    format!("from {EARLIEST} to {LATEST}")
}

fn out_of_range(what: &str, field: &str) -> ApiError {
    ApiError::bad_request(format!("{what} is outside the times Agent OS accepts ({})", range_text())).field(field)
}

/// Checks that `t` is within [`EARLIEST`]..=[`LATEST`].
pub fn bounded(t: jiff::Timestamp, field: &str) -> ApiResult<jiff::Timestamp> {
    if t < EARLIEST || t > LATEST {
        return Err(out_of_range(&format!("{t}"), field));
    }
    Ok(t)
}

/// An RFC 3339 time given in `field`, within the accepted range.
pub fn time_param(text: &str, field: &str) -> ApiResult<jiff::Timestamp> {
    let t = text.parse::<jiff::Timestamp>().map_err(|_| {
        ApiError::bad_request(format!("{text:?} is not an RFC 3339 time, e.g. 2026-12-01T02:00:00Z")).field(field)
    })?;
    bounded(t, field)
}

/// An RFC 3339 time or a calendar date (midnight UTC) given in `field`, as milliseconds,
/// within the accepted range.
pub fn instant_param(text: &str, field: &str) -> ApiResult<i64> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(bounded(t, field)?.as_millisecond());
    }
    let date = text.parse::<jiff::civil::Date>().map_err(|_| {
        ApiError::bad_request(format!("{text:?} is not an RFC 3339 time or a date such as 2026-11-01")).field(field)
    })?;
    let t = date.to_zoned(jiff::tz::TimeZone::UTC).map_err(|_| out_of_range(text, field))?.timestamp();
    Ok(bounded(t, field)?.as_millisecond())
}

/// `from` (ms) plus a duration the request chose in `field`, refused when the sum is past the
/// accepted range rather than overflowing.
pub fn after(from_ms: i64, by: std::time::Duration, field: &str) -> ApiResult<i64> {
    let from = jiff::Timestamp::from_millisecond(from_ms).map_err(|_| out_of_range(&format!("{from_ms} ms"), field))?;
    let end = jiff::SignedDuration::try_from(by)
        .ok()
        .and_then(|d| from.checked_add(d).ok())
        .ok_or_else(|| out_of_range(&format!("{from} plus {}", agent_os_core::format_duration(by)), field))?;
    Ok(bounded(end, field)?.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_found_in_names_and_values_of_a_form() {
        assert_eq!(nul_field("a=1&type=a%00b"), Some("type".into()));
        assert_eq!(nul_field("x%00y=1"), Some("x\u{FFFD}y".into()));
        assert_eq!(nul_field("a=1&b=%2500"), None, "%25 is a literal percent sign");
        assert_eq!(nul_field("a=100%"), None);
    }

    #[test]
    fn times_past_the_year_9999_are_refused_not_overflowed() {
        let near_end = "9999-12-30T21:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond();
        assert!(after(near_end, std::time::Duration::from_secs(24 * 3600), "duration").is_err());
        assert!(after(near_end, std::time::Duration::from_secs(60), "duration").is_ok());
        assert!(after(0, std::time::Duration::from_secs(u64::MAX / 2), "duration").is_err());
        assert!(time_param("1969-12-31T23:59:59Z", "from").is_err());
        assert!(instant_param("9999-12-31", "to").is_err());
        assert!(time_param("9999-12-30T22:00:00.001Z", "to").is_err());
        let latest = time_param("9999-12-30T22:00:00Z", "to").unwrap();
        assert_eq!(jiff::Timestamp::from_millisecond(latest.as_millisecond()).ok(), Some(latest), "stored as ms");
        assert_eq!(instant_param("1970-01-02", "from").ok(), Some(86_400_000));
    }
}
