//! Retention over `/api/v1`: the policy in force with the last prune pass's figures
//! (`GET /api/v1/retention`), and a pass started now (`POST /api/v1/prune`, admin only), or
//! counted without deleting (`dry_run`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use agent_os_core::retention::{PruneKind, Retention};
use agent_os_engine::PrunePass;

use crate::AppState;
use crate::auth::Caller;
use crate::body::OptionalJson;
use crate::error::{ApiResult, ErrorBody};
use crate::views;

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PruneBody {
    /// Count what would be pruned, delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a pass did to one kind of record.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct PruneKindView {
    /// `workflow_runs`, `runs`, `schedule_slots`, `logs`, `events`, `pings`, `health`,
    /// `notifications`, `incidents`, `tokens`, `sessions` or `costs`.
    #[schema(value_type = String)]
    pub kind: PruneKind,
    /// How long the kind is kept, as config.yaml writes it (`90d`, `forever`).
    pub keep: String,
    /// Records older than this went; none when the kind is kept forever.
    pub cutoff: Option<String>,
    /// Records pruned (a dry run: that would be). For `logs`, runs whose log lines went.
    pub rows: u64,
    /// Batches it took (0 in a dry run).
    pub batches: u64,
    /// The longest batch, in milliseconds: how long other writers may have waited.
    pub longest_batch_ms: u64,
}

/// A prune pass.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct PruneView {
    pub dry_run: bool,
    pub started_at: String,
    pub finished_at: String,
    /// Records pruned over every kind.
    pub rows: u64,
    /// The longest batch of any kind, in milliseconds.
    pub longest_batch_ms: u64,
    /// SQLite: pages of the file given back to the disk after the pass.
    pub pages_reclaimed: u64,
    pub kinds: Vec<PruneKindView>,
}

/// One key of `retention:` in config.yaml.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct RetentionKeyView {
    pub key: String,
    /// `90d`, `720h` as a duration, or `forever`.
    pub keep: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct RetentionView {
    /// The policy in force, key by key.
    pub policy: Vec<RetentionKeyView>,
    /// When passes run: the first this long after start, then every `every`.
    pub first_after: String,
    pub every: String,
    /// The last pass that deleted, since this node started; none before the first.
    pub last_pass: Option<PruneView>,
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn pass_view(pass: PrunePass, policy: &Retention) -> PruneView {
    PruneView {
        dry_run: pass.dry_run,
        started_at: views::time(pass.started_at),
        finished_at: views::time(pass.finished_at),
        rows: pass.rows(),
        longest_batch_ms: ms(pass.longest_batch()),
        pages_reclaimed: pass.pages_reclaimed,
        kinds: pass
            .kinds
            .into_iter()
            .map(|k| PruneKindView {
                kind: k.kind,
                keep: policy.keep(k.kind).text(),
                cutoff: k.cutoff.map(views::time),
                rows: k.rows,
                batches: k.batches,
                longest_batch_ms: ms(k.longest_batch),
            })
            .collect(),
    }
}

/// Prune old history now, as the hourly pass does (admin only): each kind with a retention,
/// in short batches. With `dry_run`, count what would go and delete nothing.
#[utoipa::path(post, path = "/api/v1/prune", tag = "retention", request_body(content = Option<PruneBody>, description = "optional; {\"dry_run\": true} counts only"), responses((status = 200, body = PruneView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn prune(
    State(st): State<AppState>,
    caller: Caller,
    OptionalJson(b): OptionalJson<PruneBody>,
) -> ApiResult<Json<PruneView>> {
    caller.require_admin()?;
    let dry_run = b.unwrap_or_default().dry_run;
    let pass = st.engine.prune_pass(dry_run).await?;
    Ok(Json(pass_view(pass, &st.engine.retention())))
}

/// The retention policy in force and the last prune pass's figures (admin only).
#[utoipa::path(get, path = "/api/v1/retention", tag = "retention", responses((status = 200, body = RetentionView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_retention(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<RetentionView>> {
    caller.require_admin()?;
    let policy = st.engine.retention();
    let cfg = st.engine.config();
    Ok(Json(RetentionView {
        policy: Retention::KEYS
            .iter()
            .map(|k| RetentionKeyView {
                key: k.to_string(),
                keep: policy.key(k).map(|keep| keep.text()).unwrap_or_default(),
            })
            .collect(),
        first_after: agent_os_core::format_duration(cfg.prune_first_after),
        every: agent_os_core::format_duration(cfg.prune_every),
        last_pass: st.engine.last_prune().map(|p| pass_view(p, &policy)),
    }))
}
