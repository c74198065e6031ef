//! Notifications, channels, incidents and maintenance windows over `/api/v1`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use agent_os_core::alerting::{
    DeliveryStatus, HoldReason, IncidentSource, IncidentStatus, NotificationSource, Severity,
};
use agent_os_core::health::{HealthSource, HealthState};
use agent_os_core::manifest::{ProbeKind, ProbeStatus};

use crate::AppState;
use crate::auth::Caller;
use crate::body::{ApiQuery, JsonBody, OptionalJson};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::routes::scoped_project;
use crate::views;

// Notifications ----------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyBody {
    /// With the admin token: the project it is about (optional). A project token's own project
    /// is always used.
    pub project: Option<String>,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: String,
    /// `info` (default), `warning` or `critical`.
    pub severity: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Notifications with the same key within 10 minutes count once. A `warning` or
    /// `critical` notification with a key also opens an incident, open until `resolve`.
    pub dedup_key: Option<String>,
    /// Resolves the incident opened under `dedup_key`; the channels are told (title and
    /// body are optional then).
    #[serde(default)]
    pub resolve: bool,
    /// 1 to 100 characters. The same key from the same project (or from the admin token)
    /// stores and sends the notification once; a resend answers `200` with the one stored and
    /// `deduplicated: true`. A client that resends after a lost answer sets it.
    pub idempotency_key: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct NotificationView {
    pub id: String,
    pub project: Option<String>,
    pub title: String,
    pub body: String,
    #[schema(value_type = String)]
    pub severity: Severity,
    pub tags: Vec<String>,
    pub dedup_key: Option<String>,
    pub created_at: String,
    /// `project` (sent by a project or user), `test`, or the source of the incident it tells
    /// about: `run`, `check`, `health`, `budget`, `channel`.
    #[schema(value_type = Option<String>)]
    pub source: Option<NotificationSource>,
    pub incident_id: Option<String>,
    /// Why no channel got it (a maintenance window).
    pub suppressed: Option<String>,
    /// True when an earlier notification with the same `dedup_key` stands for this one.
    #[serde(default)]
    pub deduplicated: bool,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct DeliveryView {
    /// Also the `Idempotency-Key` the receiver sees, the same on every attempt.
    pub id: String,
    pub channel: String,
    /// `pending`, `held` (for a digest after quiet hours or a throttle), `delivered`, `failed`
    /// (gave up) or `disabled` (the receiver said 410 Gone).
    #[schema(value_type = String)]
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// When the next attempt is due (pending and held only).
    pub next_at: Option<String>,
    /// Why it was held for a digest: `quiet hours` or `throttle`.
    #[schema(value_type = Option<String>)]
    pub held: Option<HoldReason>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
}

fn delivery_view(d: agent_os_store::DeliveryRecord) -> DeliveryView {
    DeliveryView {
        next_at: matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Held).then(|| views::time(d.next_at)),
        held: d.held,
        id: d.id,
        channel: d.channel,
        status: d.status,
        attempts: d.attempts,
        last_status: d.last_status,
        last_error: d.last_error,
        delivered_at: d.delivered_at.map(views::time),
    }
}

fn notification_view(
    n: agent_os_store::NotificationRecord,
    deliveries: Vec<agent_os_store::DeliveryRecord>,
    deduplicated: bool,
) -> NotificationView {
    NotificationView {
        id: n.id,
        project: n.project,
        title: n.title,
        body: n.body,
        severity: n.severity,
        tags: n.tags,
        dedup_key: n.dedup_key,
        created_at: views::time(n.created_at),
        source: n.source,
        incident_id: n.incident_id,
        suppressed: n.suppressed,
        deduplicated,
        deliveries: deliveries.into_iter().map(delivery_view).collect(),
    }
}

/// A notification from a project (or a user): Agent OS routes it to the channels in its config
/// through the outbox. `201` with the deliveries; `200` when a notification with the same
/// `dedup_key` in the last 10 minutes stands for it. With `resolve: true`, resolves the
/// incident the `dedup_key` opened and answers with the "resolved" notification (`404` when
/// none is open).
#[utoipa::path(post, path = "/api/v1/notifications", tag = "notifications", request_body = NotifyBody, responses((status = 201, body = NotificationView), (status = 200, body = NotificationView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "the project named is not registered", body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn post_notification(
    State(st): State<AppState>,
    caller: Caller,
    JsonBody(b): JsonBody<NotifyBody>,
) -> ApiResult<(StatusCode, Json<NotificationView>)> {
    let project = match (caller.project_id(), b.project) {
        (Some(_), asked) => scoped_project(&st, &caller, asked).await?,
        (None, Some(p)) => Some(st.engine.project(&p).await?.record.name.clone()),
        (None, None) => None,
    };
    let severity = b
        .severity
        .as_deref()
        .map(Severity::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e).field("severity"))?;
    let input = agent_os_engine::NotifyInput {
        title: b.title,
        body: b.body,
        severity,
        tags: b.tags,
        dedup_key: b.dedup_key,
        idempotency_key: b.idempotency_key,
        ..Default::default()
    };
    let done = st.engine.project_notify(project.as_deref(), input, b.resolve).await?;
    let status = if done.deduplicated { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(notification_view(done.notification, done.deliveries, done.deduplicated))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    pub project: Option<String>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Notifications, newest first, each with its deliveries (the delivery log).
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", params(NotificationQuery), responses((status = 200, body = [NotificationView])), security(("bearer" = [])))]
pub async fn list_notifications(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<NotificationQuery>,
) -> ApiResult<Json<Vec<NotificationView>>> {
    let project = scoped_project(&st, &caller, q.project).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 200").field("limit"));
    }
    let mut out = Vec::new();
    for n in st.engine.store().list_notifications(project.as_deref(), limit).await? {
        let deliveries = st.engine.store().list_deliveries(Some(&n.id), 100).await?;
        out.push(notification_view(n, deliveries, false));
    }
    Ok(Json(out))
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ChannelView {
    pub name: String,
    /// `discord`, `slack`, `ntfy`, `email` or `json`.
    pub kind: String,
    /// The address with its secret parts masked.
    pub endpoint: String,
}

/// The notification channels in the config (secrets masked).
#[utoipa::path(get, path = "/api/v1/channels", tag = "notifications", responses((status = 200, body = [ChannelView])), security(("bearer" = [])))]
pub async fn list_channels(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ChannelView>>> {
    caller.require_admin()?;
    Ok(Json(
        st.engine
            .config()
            .channels
            .iter()
            .map(|c| ChannelView { name: c.name.clone(), kind: c.kind.as_str().into(), endpoint: c.display.clone() })
            .collect(),
    ))
}

/// Send a test notification to one channel (admin); its delivery shows how it went.
#[utoipa::path(post, path = "/api/v1/channels/{name}/test", tag = "notifications", params(("name" = String, Path)), responses((status = 201, body = NotificationView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn test_channel(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<NotificationView>)> {
    caller.require_admin()?;
    let input = agent_os_engine::NotifyInput {
        title: format!("Test from Agent OS to {name}"),
        body: "If you read this, the channel works.".into(),
        ..Default::default()
    };
    let done = st.engine.notify(None, input, Some(&name)).await?;
    Ok((StatusCode::CREATED, Json(notification_view(done.notification, done.deliveries, false))))
}

// Incidents --------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct IncidentView {
    pub id: String,
    /// `run`, `check`, `health`, `budget`, `project` or `channel`.
    #[schema(value_type = String)]
    pub source: IncidentSource,
    /// What it is about within its source, e.g. `trading/rebalance`.
    pub subject: String,
    pub project: Option<String>,
    #[schema(value_type = String)]
    pub severity: Severity,
    pub title: String,
    /// The latest reason given.
    pub reason: String,
    /// `open` or `resolved`.
    #[schema(value_type = String)]
    pub status: IncidentStatus,
    pub opened_at: String,
    pub resolved_at: Option<String>,
    /// How long it was (or has been) open, in seconds.
    pub duration_s: i64,
    pub acked_at: Option<String>,
    pub acked_by: Option<String>,
    /// Opened and resolved this many times in all while it kept coming back.
    pub changes: i64,
    /// Changing too often to alert about each change.
    pub flapping: bool,
    /// Whether the channels were told it opened (not yet, inside a maintenance window).
    pub notified: bool,
    /// For an open check incident: the checks that depend on this one and are late or down,
    /// held under this incident instead of paging on their own (`PROJECT/SLUG`).
    #[serde(default)]
    pub also_affected: Vec<String>,
}

/// `v` with the checks held under it, when it is an open check incident.
async fn with_affected(st: &AppState, mut v: IncidentView) -> ApiResult<IncidentView> {
    if v.source == agent_os_core::alerting::IncidentSource::Check && v.status == IncidentStatus::Open {
        v.also_affected = st.engine.also_affected(&v.subject).await?;
    }
    Ok(v)
}

pub fn incident_view(i: agent_os_store::IncidentRecord, now: i64) -> IncidentView {
    IncidentView {
        duration_s: (i.resolved_at.unwrap_or(now) - i.opened_at).max(0) / 1000,
        id: i.id,
        source: i.source,
        subject: i.subject,
        project: i.project,
        severity: i.severity,
        title: i.title,
        reason: i.reason,
        status: i.status,
        opened_at: views::time(i.opened_at),
        resolved_at: i.resolved_at.map(views::time),
        acked_at: i.acked_at.map(views::time),
        acked_by: i.acked_by,
        changes: i.changes,
        flapping: i.flapping,
        notified: i.notified,
        also_affected: Vec::new(),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IncidentQuery {
    /// Only open incidents.
    #[serde(default)]
    pub open: bool,
    pub project: Option<String>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Incidents, newest first.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", params(IncidentQuery), responses((status = 200, body = [IncidentView])), security(("bearer" = [])))]
pub async fn list_incidents(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<IncidentQuery>,
) -> ApiResult<Json<Vec<IncidentView>>> {
    let project = scoped_project(&st, &caller, q.project).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 500").field("limit"));
    }
    let now = st.engine.now();
    let list = st.engine.incidents(q.open, project.as_deref(), limit).await?;
    let mut out = Vec::with_capacity(list.len());
    for i in list {
        out.push(with_affected(&st, incident_view(i, now)).await?);
    }
    Ok(Json(out))
}

/// One incident.
#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents", params(("id" = String, Path)), responses((status = 200, body = IncidentView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_incident(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<IncidentView>> {
    let i =
        st.engine.store().get_incident(&id).await?.ok_or_else(|| ApiError::not_found(format!("no incident {id:?}")))?;
    allowed_for(&st, &caller, &i).await?;
    Ok(Json(with_affected(&st, incident_view(i, st.engine.now())).await?))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// Who is on it, 1 to 100 characters, not only spaces (default: the kind of token used).
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub by: Option<String>,
}

/// Acknowledge an incident: someone is on it. It stays open until it recovers; its
/// escalation is no longer sent.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/ack", tag = "incidents", params(("id" = String, Path)), request_body(content = Option<AckBody>, description = "optional"), responses((status = 200, body = IncidentView), (status = 404, body = ErrorBody), (status = 409, description = "the incident is already resolved", body = ErrorBody)), security(("bearer" = [])))]
pub async fn ack_incident(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(b): OptionalJson<AckBody>,
) -> ApiResult<Json<IncidentView>> {
    if let Some(i) = st.engine.store().get_incident(&id).await? {
        allowed_for(&st, &caller, &i).await?;
    }
    let by = b.unwrap_or_default().by.unwrap_or_else(|| caller.label());
    crate::body::text_length("by", &by, 1, 100)?;
    let i = st.engine.ack_incident(&id, by.trim()).await?;
    Ok(Json(incident_view(i, st.engine.now())))
}

/// A project token sees its own project's incidents only.
async fn allowed_for(st: &AppState, caller: &Caller, i: &agent_os_store::IncidentRecord) -> ApiResult<()> {
    if caller.project_id().is_some() {
        let own = scoped_project(st, caller, None).await?;
        if own.is_none() || own != i.project {
            return Err(ApiError::not_found(format!("no incident {:?}", i.id)));
        }
    }
    Ok(())
}

// Maintenance windows ----------------------------------------------------------------------

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct MaintenanceView {
    /// Empty for windows from config.yaml.
    pub id: Option<String>,
    /// The project it covers; none: everything.
    pub project: Option<String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    /// For recurring windows from config.yaml: the cron, zone and length.
    pub recurring: Option<String>,
    pub reason: Option<String>,
    /// `api` or `config`.
    pub origin: String,
    /// In force right now.
    pub active: bool,
}

fn maintenance_view(m: agent_os_store::MaintenanceRecord, now: i64) -> MaintenanceView {
    MaintenanceView {
        active: m.starts_at <= now && now < m.ends_at,
        id: Some(m.id),
        project: m.project,
        starts_at: Some(views::time(m.starts_at)),
        ends_at: Some(views::time(m.ends_at)),
        recurring: None,
        reason: m.reason,
        origin: "api".into(),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceBody {
    /// The project it covers; none: everything.
    pub project: Option<String>,
    /// RFC 3339; default now.
    pub start: Option<String>,
    /// RFC 3339. Give this or `duration`.
    pub end: Option<String>,
    /// e.g. `2h`, from the start.
    pub duration: Option<String>,
    pub reason: Option<String>,
}

/// Maintenance windows: those set over the API that have not ended, and those in config.yaml.
#[utoipa::path(get, path = "/api/v1/maintenance", tag = "incidents", responses((status = 200, body = [MaintenanceView])), security(("bearer" = [])))]
pub async fn list_maintenance(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<MaintenanceView>>> {
    caller.require_admin()?;
    let now = st.engine.now();
    let mut out: Vec<MaintenanceView> =
        st.engine.maintenance_windows().await?.into_iter().map(|m| maintenance_view(m, now)).collect();
    for m in &st.engine.config().alerting.maintenance {
        let (starts_at, ends_at, recurring) = match &m.window {
            agent_os_core::alerting::Window::Fixed { start, end } => {
                if *end <= now {
                    continue;
                }
                (Some(views::time(*start)), Some(views::time(*end)), None)
            }
            agent_os_core::alerting::Window::Recurring { cron, timezone, duration } => (
                None,
                m.active_until(now).map(views::time),
                Some(format!(
                    "{} {} for {}",
                    cron.source(),
                    timezone.name(),
                    agent_os_core::format_duration(*duration)
                )),
            ),
        };
        out.push(MaintenanceView {
            id: None,
            project: m.project.clone(),
            starts_at,
            ends_at,
            recurring,
            reason: m.reason.clone(),
            origin: "config".into(),
            active: m.active_until(now).is_some(),
        });
    }
    Ok(Json(out))
}

/// Start (or plan) a maintenance window: nothing about the project (or anything, without one)
/// alerts inside it. Incidents opened meanwhile are told when it ends, if still open.
#[utoipa::path(post, path = "/api/v1/maintenance", tag = "incidents", request_body = MaintenanceBody, responses((status = 201, body = MaintenanceView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "the project named is not registered", body = ErrorBody)), security(("bearer" = [])))]
pub async fn start_maintenance(
    State(st): State<AppState>,
    caller: Caller,
    JsonBody(b): JsonBody<MaintenanceBody>,
) -> ApiResult<(StatusCode, Json<MaintenanceView>)> {
    caller.require_admin()?;
    let at = |field: &str, t: &str| crate::edge::time_param(t, field).map(|t| t.as_millisecond());
    let start = b.start.as_deref().map(|t| at("start", t)).transpose()?;
    let from = start.unwrap_or_else(|| st.engine.now());
    let end = match (&b.end, &b.duration) {
        (Some(e), None) => at("end", e)?,
        (None, Some(d)) => {
            let d = agent_os_core::parse_duration(d).map_err(|e| ApiError::bad_request(e).field("duration"))?;
            crate::edge::after(from, d, "duration")?
        }
        _ => return Err(ApiError::bad_request("give end or duration (e.g. \"2h\"), not both").field("end")),
    };
    let m = st.engine.start_maintenance(b.project.as_deref(), start, end, b.reason).await?;
    let now = st.engine.now();
    Ok((StatusCode::CREATED, Json(maintenance_view(m, now))))
}

/// End a maintenance window now.
#[utoipa::path(delete, path = "/api/v1/maintenance/{id}", tag = "incidents", params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn end_maintenance(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    st.engine.end_maintenance(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// Project health ---------------------------------------------------------------------------

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct HealthReasonView {
    /// `status` (the plugin's status probe), `health` (the HTTP health check), `check`, `run`
    /// or `budget`.
    #[schema(value_type = String)]
    pub source: HealthSource,
    /// `ok`, `degraded` or `down`.
    #[schema(value_type = String)]
    pub state: HealthState,
    pub message: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct HealthHistoryView {
    /// The latest answer of this stretch.
    pub at: String,
    /// When the probe began answering this way: the history keeps changes, each entry a
    /// stretch of identical answers.
    pub since: String,
    /// Answers in the stretch.
    pub repeats: i64,
    /// `status` or `health`.
    #[schema(value_type = String)]
    pub kind: ProbeKind,
    /// `ok`, `degraded` or `down` (`down` when the probe itself failed).
    #[schema(value_type = String)]
    pub state: ProbeStatus,
    pub message: Option<String>,
    pub duration_ms: i64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ProjectHealthView {
    pub project: String,
    /// The worst of its reasons: `unknown` (nothing to judge by yet), `ok`, `degraded` or `down`.
    #[schema(value_type = String)]
    pub state: HealthState,
    /// Why, worst first (only the ones that are not ok, unless all are).
    pub reasons: Vec<HealthReasonView>,
    /// Its status probe and health check results, newest first, one entry per change.
    pub history: Vec<HealthHistoryView>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HealthQuery {
    /// History entries, 0 to 500 (default 20).
    #[param(minimum = 0, maximum = 500)]
    pub history: Option<i64>,
}

/// A project's health: the worst of its status probe, HTTP health check, checks, failing tasks
/// and budget pause, with the reasons and the probes' history.
#[utoipa::path(get, path = "/api/v1/projects/{name}/health", tag = "projects", params(("name" = String, Path), HealthQuery), responses((status = 200, body = ProjectHealthView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn project_health(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<HealthQuery>,
) -> ApiResult<Json<ProjectHealthView>> {
    let p = st.engine.project(&name).await?;
    caller.require_project(&p.record)?;
    let limit = q.history.unwrap_or(20);
    if !(0..=500).contains(&limit) {
        return Err(ApiError::bad_request("history must be between 0 and 500").field("history"));
    }
    let health = st.engine.project_health(&p).await?;
    let history = if limit == 0 {
        Vec::new()
    } else {
        st.engine.store().probe_history(&p.record.id, &[ProbeKind::Status, ProbeKind::Health], limit).await?
    };
    Ok(Json(ProjectHealthView {
        project: p.record.name.clone(),
        state: health.state,
        reasons: health
            .reasons
            .into_iter()
            .map(|r| HealthReasonView { source: r.source, state: r.state, message: r.message })
            .collect(),
        history: history
            .into_iter()
            .map(|r| HealthHistoryView {
                at: views::time(r.at),
                since: views::time(r.since),
                repeats: r.repeats,
                state: match (r.ok, r.kind) {
                    (true, _) => r.status.unwrap_or(ProbeStatus::Ok),
                    // A status probe that could not be asked says little: degraded, as in the reasons.
                    (false, ProbeKind::Status) => ProbeStatus::Degraded,
                    (false, _) => ProbeStatus::Down,
                },
                message: r.error.or(r.message),
                kind: r.kind,
                duration_ms: r.duration_ms,
            })
            .collect(),
    }))
}
