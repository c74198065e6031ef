//! The dashboard's own credential over `/api/v1`: the password an admin may set so that people
//! log in to the dashboard without pasting the admin token. Only its PBKDF2 hash is stored (the
//! setting `dashboard.password`); setting, changing or clearing it ends every dashboard session
//! that logged in with a password, while sessions made with a token stay.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use agent_os_core::token::LoginVia;
use agent_os_engine::secrets::{PASSWORD_MIN_LEN, hash_password};

use crate::AppState;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::dashboard::session::PASSWORD_SETTING;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// A password longer than this is surely a mistake (a pasted file), not a passphrase.
const PASSWORD_MAX_BYTES: usize = 1024;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    /// At least 12 characters, at most 1,024 bytes, with no spaces at either end.
    #[schema(min_length = 12)]
    pub password: String,
}

/// Set or change the dashboard password (admin). Every dashboard session that logged in with a
/// password ends; sessions made with a token stay.
#[utoipa::path(put, path = "/api/v1/dashboard/password", tag = "dashboard", request_body = PasswordBody, responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn put_password(
    State(st): State<AppState>,
    caller: Caller,
    JsonBody(b): JsonBody<PasswordBody>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    set_password(&st, b.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Clear the dashboard password (admin): only the admin token logs in then. Every dashboard
/// session that logged in with a password ends.
#[utoipa::path(delete, path = "/api/v1/dashboard/password", tag = "dashboard", responses((status = 204), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_password(State(st): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    clear_password(&st).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a new password against the rules, stores its hash and ends the password sessions.
/// The dashboard's settings page calls this too, so both ways follow the same rules.
pub async fn set_password(st: &AppState, password: String) -> ApiResult<()> {
    check(&password)?;
    // Stretching takes a few hundred milliseconds: off the async threads.
    let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the password could not be hashed; try again")
    })?;
    let store = st.engine.store();
    store.set_setting(PASSWORD_SETTING, &hash).await?;
    store.delete_sessions(Some(LoginVia::Password)).await?;
    Ok(())
}

/// Forgets the password (the store keeps an empty value, which matches nothing) and ends the
/// password sessions.
pub async fn clear_password(st: &AppState) -> ApiResult<()> {
    let store = st.engine.store();
    store.set_setting(PASSWORD_SETTING, "").await?;
    store.delete_sessions(Some(LoginVia::Password)).await?;
    Ok(())
}

/// Whether a dashboard password is set.
pub async fn has_password(st: &AppState) -> ApiResult<bool> {
    Ok(st.engine.store().get_setting(PASSWORD_SETTING).await?.is_some_and(|v| !v.is_empty()))
}

fn check(password: &str) -> ApiResult<()> {
    let bad = |m: String| Err(ApiError::bad_request(m).field("password"));
    if password.chars().count() < PASSWORD_MIN_LEN {
        return bad(format!("password must be at least {PASSWORD_MIN_LEN} characters long"));
    }
    if password.len() > PASSWORD_MAX_BYTES {
        return bad(format!("password must be at most {PASSWORD_MAX_BYTES} bytes long"));
    }
    if password.trim() != password {
        // The login form trims what is typed, so such a password could never be entered.
        return bad("password cannot begin or end with a space".into());
    }
    if password.chars().any(char::is_control) {
        return bad("password cannot hold control characters such as line breaks".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_follow_the_rules_and_the_error_names_the_field() {
        assert!(check("correct horse battery").is_ok());
        for (bad, says) in [
            ("short", "at least 12 characters"),
            ("ééééééééééé", "at least 12 characters"),
            (" padded password ", "space"),
            ("line\nbreak password", "control"),
        ] {
            let e = check(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("password"), "{bad}");
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
        assert!(check(&"x".repeat(PASSWORD_MAX_BYTES + 1)).is_err());
    }
}
