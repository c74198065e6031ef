//! Dashboard sessions: only a hash of the cookie value is stored, with the session's CSRF
//! token, how it logged in and (for a token login) which admin token it came from.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::sql::SqlStore;
use crate::{Result, SessionRecord};

fn session_from(r: &AnyRow) -> Result<SessionRecord, sqlx::Error> {
    Ok(SessionRecord {
        id: r.try_get(0)?,
        csrf: r.try_get(1)?,
        via: r.try_get(2)?,
        token_id: r.try_get(3)?,
        created_at: r.try_get(4)?,
        expires_at: r.try_get(5)?,
    })
}

impl SqlStore {
    pub(crate) async fn sess_insert(&self, s: &SessionRecord) -> Result<()> {
        // Expired sessions are swept whenever someone logs in, so the table stays small.
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
            .bind(s.created_at)
            .execute(&self.write)
            .await?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (id, csrf, via, token_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id)
        .bind(&s.csrf)
        .bind(&s.via)
        .bind(&s.token_id)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(crate) async fn sess_find(&self, id: &str, now: i64) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT id, csrf, via, token_id, created_at, expires_at FROM dashboard_sessions WHERE id = $1 AND expires_at > $2",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(session_from).transpose()?)
    }

    pub(crate) async fn sess_delete(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM dashboard_sessions WHERE id = $1").bind(id).execute(&self.write).await?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn sess_delete_via(&self, via: Option<agent_os_core::token::LoginVia>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM dashboard_sessions WHERE $1 IS NULL OR via = $1")
            .bind(via)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }
}
