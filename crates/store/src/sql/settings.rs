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
    /// Every setting whose key starts with `prefix`, by key.
    async fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>>;
    /// Deletes these settings; answers how many there were.
    async fn delete_settings(&self, keys: &[String]) -> Result<u64>;
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

    async fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        // By the prefix's length in characters (both backends count them alike), not LIKE,
        // whose wildcards a prefix may hold, nor a range, which PostgreSQL orders by locale.
        let length = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
        let rows = sqlx::query("SELECT key, value FROM settings WHERE substr(key, 1, $2) = $1 ORDER BY key")
            .bind(prefix)
            .bind(length)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|row| Ok((row.try_get("key")?, row.try_get("value")?))).collect()
    }

    async fn delete_settings(&self, keys: &[String]) -> Result<u64> {
        let mut deleted = 0;
        for key in keys {
            deleted += sqlx::query("DELETE FROM settings WHERE key = $1")
                .bind(key)
                .execute(&self.write)
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }
}
