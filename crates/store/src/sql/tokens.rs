//! API tokens, stored only as SHA-256 hashes, and dashboard sessions: only a hash of the cookie
//! value is stored, with the session's CSRF token, how it logged in and (for a token login)
//! which admin token it came from. Revoking an admin token ends the sessions it logged in.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use agent_os_core::token::{LoginVia, TokenKind};

use super::{SqlStore, Tx, all};
use crate::model::{SessionRecord, TokenRecord};
use crate::{Result, StoreError};

/// Tokens and dashboard sessions. Every method commits before it returns.
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn insert_token(&self, t: &TokenRecord) -> Result<()>;
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>>;
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    async fn revoke_token(&self, id: &str, now: i64) -> Result<bool>;
    async fn revoke_run_tokens(&self, run_id: &str, now: i64) -> Result<()>;
    /// Revokes every admin token but `keep_id` (when the admin token is set from outside).
    async fn revoke_admin_tokens_except(&self, keep_id: &str, now: i64) -> Result<()>;
    async fn count_admin_tokens(&self) -> Result<i64>;
    /// At start, with `AGENT_OS_ADMIN_TOKEN`: stores `t` unless its hash is already there, and
    /// revokes every other admin token. Servers starting together take turns, so the second
    /// finds what the first stored. `Conflict` when the hash is a revoked or non-admin token's.
    async fn set_admin_token(&self, t: &TokenRecord, now: i64) -> Result<()>;
    /// At start, without `AGENT_OS_ADMIN_TOKEN`: stores `t` only when no admin token is live
    /// (false when one is). Servers starting together take turns, so one token is made.
    async fn insert_first_admin_token(&self, t: &TokenRecord) -> Result<bool>;

    async fn insert_session(&self, s: &SessionRecord) -> Result<()>;
    /// The session with this id hash, unless it has expired.
    async fn find_session(&self, id: &str, now: i64) -> Result<Option<SessionRecord>>;
    async fn delete_session(&self, id: &str) -> Result<bool>;
    /// Ends every session that logged in this way (`token`, `password`), or all of them.
    async fn delete_sessions(&self, via: Option<LoginVia>) -> Result<u64>;
}

macro_rules! token_columns {
    () => {
        "id, kind, name, project_id, run_id, hash, created_at, expires_at, revoked_at"
    };
}

fn token_from(row: &AnyRow) -> Result<TokenRecord, sqlx::Error> {
    Ok(TokenRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        project_id: row.try_get("project_id")?,
        run_id: row.try_get("run_id")?,
        hash: row.try_get("hash")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn session_from(row: &AnyRow) -> Result<SessionRecord, sqlx::Error> {
    Ok(SessionRecord {
        id: row.try_get("id")?,
        csrf: row.try_get("csrf")?,
        via: row.try_get("via")?,
        token_id: row.try_get("token_id")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// Stores a token on its own or inside a transaction (a run's token is stored with its claim).
pub(crate) async fn insert_token<'c, E: Executor<'c, Database = Any>>(on: E, t: &TokenRecord) -> Result<()> {
    sqlx::query(concat!("INSERT INTO tokens (", token_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
        .bind(&t.id)
        .bind(&t.kind)
        .bind(&t.name)
        .bind(&t.project_id)
        .bind(&t.run_id)
        .bind(&t.hash)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.revoked_at)
        .execute(on)
        .await
        .map_err(|e| {
            if super::is_unique_violation(&e) {
                StoreError::Conflict("that token is already registered".into())
            } else {
                e.into()
            }
        })?;
    Ok(())
}

async fn revoke_admin_tokens_except_tx(tx: &mut Tx, keep_id: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE kind = 'admin' AND id <> $1 AND revoked_at IS NULL")
        .bind(keep_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM dashboard_sessions WHERE via = 'token' AND (token_id IS NULL OR token_id <> $1)")
        .bind(keep_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Live admin tokens.
const COUNT_ADMIN_TOKENS: &str = "SELECT COUNT(*) AS live FROM tokens WHERE kind = 'admin' AND revoked_at IS NULL";

#[async_trait]
impl TokenStore for SqlStore {
    async fn insert_token(&self, t: &TokenRecord) -> Result<()> {
        insert_token(&self.write, t).await
    }

    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(concat!("SELECT ", token_columns!(), " FROM tokens WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(token_from).transpose()?)
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        // Run tokens (one per attempt) far outnumber these: read the other kinds from the index.
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE kind IN ('admin', 'project', 'worker') ORDER BY id"
        ))
        .fetch_all(&self.read)
        .await?;
        all(rows, token_from)
    }

    async fn revoke_token(&self, id: &str, now: i64) -> Result<bool> {
        let mut tx = self.tx().await?;
        let done = sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM dashboard_sessions WHERE token_id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_run_tokens(&self, run_id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE run_id = $1 AND revoked_at IS NULL")
            .bind(run_id)
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn revoke_admin_tokens_except(&self, keep_id: &str, now: i64) -> Result<()> {
        let mut tx = self.tx().await?;
        revoke_admin_tokens_except_tx(&mut tx, keep_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn count_admin_tokens(&self) -> Result<i64> {
        let row = sqlx::query(COUNT_ADMIN_TOKENS).fetch_one(&self.read).await?;
        Ok(row.try_get("live")?)
    }

    async fn set_admin_token(&self, t: &TokenRecord, now: i64) -> Result<()> {
        let mut tx = self.startup_tx().await?;
        let found = sqlx::query(concat!("SELECT ", token_columns!(), " FROM tokens WHERE hash = $1"))
            .bind(&t.hash)
            .fetch_optional(&mut *tx)
            .await?;
        let keep = match found.as_ref().map(token_from).transpose()? {
            Some(k) if k.kind == TokenKind::Admin && k.revoked_at.is_none() => k.id,
            Some(_) => return Err(StoreError::Conflict("that token is revoked or is not an admin token".into())),
            None => {
                insert_token(&mut *tx, t).await?;
                t.id.clone()
            }
        };
        revoke_admin_tokens_except_tx(&mut tx, &keep, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_first_admin_token(&self, t: &TokenRecord) -> Result<bool> {
        let mut tx = self.startup_tx().await?;
        let live: i64 = sqlx::query(COUNT_ADMIN_TOKENS).fetch_one(&mut *tx).await?.try_get("live")?;
        if live > 0 {
            return Ok(false);
        }
        insert_token(&mut *tx, t).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_session(&self, s: &SessionRecord) -> Result<()> {
        // Expired sessions are swept whenever someone logs in, so the table stays small.
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
            .bind(s.created_at)
            .execute(&self.write)
            .await?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (id, csrf, via, token_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
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

    async fn find_session(&self, id: &str, now: i64) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT id, csrf, via, token_id, created_at, expires_at FROM dashboard_sessions
             WHERE id = $1 AND expires_at > $2",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(session_from).transpose()?)
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM dashboard_sessions WHERE id = $1").bind(id).execute(&self.write).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_sessions(&self, via: Option<LoginVia>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM dashboard_sessions WHERE $1 IS NULL OR via = $1")
            .bind(via)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }
}
