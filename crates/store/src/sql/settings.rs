//! Settings: small values Agent OS keeps for itself by key (the install id, the dashboard
//! password's hash, a rotation's previous signing secret).

use async_trait::async_trait;
use sqlx::Row;

use super::SqlStore;
use crate::Result;

/// Settings by key. Every method commits before it returns.
#[async_trait]
pub trait SettingStore: Send + Sync {
    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    async fn set_setting(&self, key: &str, value: &str) -> Result<()>;
    /// Stores `value` only while `key` still holds `expected`; whether it did.
    async fn replace_setting(&self, key: &str, expected: &str, value: &str) -> Result<bool>;
    /// Stores `value` unless `key` has one already; returns the value kept (the first writer's).
    async fn init_setting(&self, key: &str, value: &str) -> Result<String>;
}

#[async_trait]
impl SettingStore for SqlStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1").bind(key).fetch_optional(&self.read).await?;
        Ok(row.map(|row| row.try_get("value")).transpose()?)
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn replace_setting(&self, key: &str, expected: &str, value: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE settings SET value = $3 WHERE key = $1 AND value = $2")
            .bind(key)
            .bind(expected)
            .bind(value)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.write)
            .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1").bind(key).fetch_one(&self.write).await?;
        Ok(row.try_get("value")?)
    }
}
