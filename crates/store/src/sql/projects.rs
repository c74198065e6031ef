//! Projects as registered (their manifest text, transport and signing secret) and what their
//! probes answered.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use agent_os_core::manifest::{ProbeKind, ProbeStatus};

use super::schedules::replace_manifest_schedules;
use super::{SqlStore, all, flag, is_unique_violation};
use crate::model::{NewProject, NewSchedule, ProbeResult, ProjectRecord, ProjectTransport};
use crate::{Result, StoreError};

/// Registered projects and their probe results. Every method commits before it returns.
#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// Registers a project with the schedules its manifest declares.
    async fn insert_project(&self, p: &NewProject, schedules: &[NewSchedule], now: i64) -> Result<ProjectRecord>;
    /// Replaces the manifest (and schedules) of an existing project.
    async fn update_project(
        &self,
        name: &str,
        manifest: &str,
        description: &str,
        schedules: &[NewSchedule],
        now: i64,
    ) -> Result<ProjectRecord>;
    async fn get_project(&self, name: &str) -> Result<Option<ProjectRecord>>;
    /// Replaces the signing secret of an HTTP plugin project (a rotation).
    async fn set_signing_secret(&self, name: &str, secret: &str, now: i64) -> Result<ProjectRecord>;
    async fn get_project_by_id(&self, id: &str) -> Result<Option<ProjectRecord>>;
    async fn list_projects(&self) -> Result<Vec<ProjectRecord>>;
    /// Removes a project with its schedules, probes and tokens. Its runs and costs stay as
    /// history. Returns false when there was no such project.
    async fn delete_project(&self, name: &str) -> Result<bool>;
    async fn set_cost_cursor(&self, project_id: &str, cursor: Option<&str>) -> Result<()>;

    /// Records a probe's answer. The same answer (ok, status, message, error) as the latest of
    /// its (project, kind) extends that row's stretch (its `at`, duration, body and repeats)
    /// instead of adding one, so the history holds changes, not a row per probe.
    async fn insert_probe_result(&self, r: &ProbeResult) -> Result<()>;
    /// The newest result of each probe kind of a project.
    async fn latest_probe_results(&self, project_id: &str) -> Result<Vec<ProbeResult>>;
    /// Results of the given probe kinds, newest first (a project's health history).
    async fn probe_history(&self, project_id: &str, kinds: &[ProbeKind], limit: i64) -> Result<Vec<ProbeResult>>;
}

macro_rules! project_columns {
    () => {
        "id, name, description, transport, root, plugin_url, manifest, signing_secret, cost_cursor, created_at,
         updated_at"
    };
}

macro_rules! probe_columns {
    () => {
        "id, project_id, kind, at, ok, duration_ms, status, message, body, error, since, repeats"
    };
}

fn project_from(row: &AnyRow) -> Result<ProjectRecord, sqlx::Error> {
    Ok(ProjectRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        transport: ProjectTransport::from_row(row)?,
        manifest: row.try_get("manifest")?,
        cost_cursor: row.try_get("cost_cursor")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn probe_from(row: &AnyRow) -> Result<ProbeResult, sqlx::Error> {
    Ok(ProbeResult {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        kind: row.try_get("kind")?,
        at: row.try_get("at")?,
        since: row.try_get("since")?,
        repeats: row.try_get("repeats")?,
        ok: flag(row, "ok")?,
        duration_ms: row.try_get("duration_ms")?,
        status: row.try_get("status")?,
        message: row.try_get("message")?,
        body: row.try_get("body")?,
        error: row.try_get("error")?,
    })
}

/// The probe kinds whose newest result a project's view shows.
const PROBE_KINDS: &[ProbeKind] = ProbeKind::ALL;

#[async_trait]
impl ProjectStore for SqlStore {
    async fn insert_project(&self, p: &NewProject, schedules: &[NewSchedule], now: i64) -> Result<ProjectRecord> {
        let mut tx = self.tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO projects
                 (id, name, description, transport, root, plugin_url, manifest, signing_secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(&p.id)
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.transport.columns().0)
        .bind(p.transport.columns().1)
        .bind(p.transport.columns().2)
        .bind(&p.manifest)
        .bind(p.transport.columns().3)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("a project named {:?} is already registered", p.name)));
            }
            other => {
                other?;
            }
        }
        replace_manifest_schedules(&mut tx, &p.id, schedules).await?;
        let row = sqlx::query(concat!("SELECT ", project_columns!(), " FROM projects WHERE id = $1"))
            .bind(&p.id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(project_from(&row)?)
    }

    async fn update_project(
        &self,
        name: &str,
        manifest: &str,
        description: &str,
        schedules: &[NewSchedule],
        now: i64,
    ) -> Result<ProjectRecord> {
        let mut tx = self.tx().await?;
        let row = sqlx::query(concat!(
            "UPDATE projects SET manifest = $2, description = $3, updated_at = $4 WHERE name = $1
             RETURNING ",
            project_columns!()
        ))
        .bind(name)
        .bind(manifest)
        .bind(description)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("project {name:?}")))?;
        let project = project_from(&row)?;
        replace_manifest_schedules(&mut tx, &project.id, schedules).await?;
        tx.commit().await?;
        Ok(project)
    }

    async fn set_signing_secret(&self, name: &str, secret: &str, now: i64) -> Result<ProjectRecord> {
        let row = sqlx::query(concat!(
            "UPDATE projects SET signing_secret = $2, updated_at = $3 WHERE name = $1
             RETURNING ",
            project_columns!()
        ))
        .bind(name)
        .bind(secret)
        .bind(now)
        .fetch_optional(&self.write)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("project {name:?}")))?;
        Ok(project_from(&row)?)
    }

    async fn get_project(&self, name: &str) -> Result<Option<ProjectRecord>> {
        let row = sqlx::query(concat!("SELECT ", project_columns!(), " FROM projects WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(project_from).transpose()?)
    }

    async fn get_project_by_id(&self, id: &str) -> Result<Option<ProjectRecord>> {
        let row = sqlx::query(concat!("SELECT ", project_columns!(), " FROM projects WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(project_from).transpose()?)
    }

    async fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
        let rows = sqlx::query(concat!("SELECT ", project_columns!(), " FROM projects ORDER BY name"))
            .fetch_all(&self.read)
            .await?;
        all(rows, project_from)
    }

    async fn delete_project(&self, name: &str) -> Result<bool> {
        let mut tx = self.tx().await?;
        let id: Option<String> = sqlx::query("SELECT id FROM projects WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get("id"))
            .transpose()?;
        let Some(id) = id else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM tokens WHERE project_id = $1 AND kind <> 'admin'").bind(&id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM schedules WHERE project_id = $1").bind(&id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM probe_results WHERE project_id = $1").bind(&id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM projects WHERE id = $1").bind(&id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_cost_cursor(&self, project_id: &str, cursor: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE projects SET cost_cursor = $2 WHERE id = $1")
            .bind(project_id)
            .bind(cursor)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn insert_probe_result(&self, r: &ProbeResult) -> Result<()> {
        let mut tx = self.tx().await?;
        let latest = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, ok, status, message, error FROM probe_results
             WHERE project_id = $1 AND kind = $2
             ORDER BY at DESC, id DESC
             LIMIT 1 {}",
            self.backend.for_update()
        )))
        .bind(&r.project_id)
        .bind(&r.kind)
        .fetch_optional(&mut *tx)
        .await?;
        let same_as = match &latest {
            Some(row) => {
                let same = flag(row, "ok")? == r.ok
                    && row.try_get::<Option<ProbeStatus>, _>("status")? == r.status
                    && row.try_get::<Option<String>, _>("message")? == r.message
                    && row.try_get::<Option<String>, _>("error")? == r.error;
                if same { Some(row.try_get::<String, _>("id")?) } else { None }
            }
            None => None,
        };
        match same_as {
            // The same answer again: the stretch gets longer, no new row.
            Some(id) => {
                sqlx::query(
                    "UPDATE probe_results SET at = $2, duration_ms = $3, body = $4, repeats = repeats + 1 WHERE id = $1",
                )
                .bind(&id)
                .bind(r.at)
                .bind(r.duration_ms)
                .bind(&r.body)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(concat!(
                    "INSERT INTO probe_results (",
                    probe_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $4, 1)"
                ))
                .bind(&r.id)
                .bind(&r.project_id)
                .bind(&r.kind)
                .bind(r.at)
                .bind(i64::from(r.ok))
                .bind(r.duration_ms)
                .bind(&r.status)
                .bind(&r.message)
                .bind(&r.body)
                .bind(&r.error)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn latest_probe_results(&self, project_id: &str) -> Result<Vec<ProbeResult>> {
        let mut out = Vec::new();
        for kind in PROBE_KINDS {
            let row = sqlx::query(concat!(
                "SELECT ",
                probe_columns!(),
                " FROM probe_results WHERE project_id = $1 AND kind = $2
                  ORDER BY at DESC, id DESC
                  LIMIT 1"
            ))
            .bind(project_id)
            .bind(kind)
            .fetch_optional(&self.read)
            .await?;
            if let Some(r) = row {
                out.push(probe_from(&r)?);
            }
        }
        Ok(out)
    }

    async fn probe_history(&self, project_id: &str, kinds: &[ProbeKind], limit: i64) -> Result<Vec<ProbeResult>> {
        let mut out = Vec::new();
        for kind in kinds {
            let rows = sqlx::query(concat!(
                "SELECT ",
                probe_columns!(),
                " FROM probe_results WHERE project_id = $1 AND kind = $2
                  ORDER BY at DESC, id DESC
                  LIMIT $3"
            ))
            .bind(project_id)
            .bind(*kind)
            .bind(limit.clamp(1, 1000))
            .fetch_all(&self.read)
            .await?;
            out.extend(all(rows, probe_from)?);
        }
        out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
        out.truncate(limit.clamp(1, 1000) as usize);
        Ok(out)
    }
}
