//! `/api/v1/config`: how `config.yaml` stands (the file, when its settings were applied, the
//! last reload and why it was refused), and `/api/v1/config/reload` to apply it now.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use agent_os_engine::engine::reload::{ConfigReload, ReloadTrigger};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody, SourcePlace};
use crate::views;

/// What one reload of config.yaml did.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ConfigReloadView {
    /// RFC 3339, UTC.
    pub at: String,
    /// What asked for it: `file` (the file changed), `signal` (SIGHUP) or `api`.
    pub trigger: String,
    /// True when the file was valid and is in force now; false when it was refused and the
    /// settings in force before are kept.
    pub applied: bool,
    /// The sections whose new values were applied: `runs`, `resources`, `budgets`, `prices`,
    /// `notifications`, `maintenance`, `workers`, `keys`, `retention`.
    pub changed: Vec<String>,
    /// Settings the file changes that take effect at the next restart only: `bind`,
    /// `public_url`, `database_url`, `durability`, `api`.
    pub restart_required: Vec<String>,
    /// Why the file was refused.
    pub errors: Vec<SourcePlace>,
    /// What works but deserves a look.
    pub warnings: Vec<String>,
}

/// How config.yaml stands.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ConfigStatusView {
    /// The file the server reads and watches; null when its settings are fixed.
    pub file: Option<String>,
    /// When the settings in force were applied (the start, or the last reload that changed them).
    pub applied_at: String,
    /// The last reload, applied or refused; null before the first.
    pub last_reload: Option<ConfigReloadView>,
}

pub fn reload_view(r: ConfigReload) -> ConfigReloadView {
    ConfigReloadView {
        at: views::time(r.at),
        trigger: r.trigger.as_str().into(),
        applied: r.applied,
        changed: r.changed,
        restart_required: r.restart_required,
        errors: r.errors.into_iter().map(SourcePlace::from).collect(),
        warnings: r.warnings,
    }
}

/// How config.yaml stands: the file, when its settings were applied, and the last reload with
/// why it was refused (admin).
#[utoipa::path(get, path = "/api/v1/config", tag = "config", responses((status = 200, body = ConfigStatusView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn config_status(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<ConfigStatusView>> {
    caller.require_admin()?;
    let s = st.engine.config_status();
    Ok(Json(ConfigStatusView {
        file: s.file.map(|f| f.display().to_string()),
        applied_at: views::time(s.applied_at),
        last_reload: s.last.map(reload_view),
    }))
}

/// Read config.yaml again and apply it (admin), as a change of the file or SIGHUP does. `200`
/// either way: `applied` says whether the file was taken, `errors` why not (the settings in
/// force are then kept).
#[utoipa::path(post, path = "/api/v1/config/reload", tag = "config", responses((status = 200, body = ConfigReloadView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn reload_config(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<ConfigReloadView>> {
    caller.require_admin()?;
    Ok(Json(reload_view(st.engine.reload_config(ReloadTrigger::Api).await)))
}
