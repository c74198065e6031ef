//! Test support for the tests of this and other crates (feature `testing`, never in the
//! binary): a fresh database on the PostgreSQL server named by `AGENT_OS_TEST_POSTGRES_URL`,
//! so one test story runs on both backends. Test set-up fails loudly: these panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test set-up, never in the binary

/// A fresh database on the PostgreSQL server named by the environment, dropped by `drop_it`.
pub struct PgDatabase {
    admin_url: String,
    pub url: String,
    name: String,
}

impl PgDatabase {
    /// None (with a note) when no server is named; with `CI=true` and none named, a panic, so
    /// a PostgreSQL test never passes by skipping in CI.
    pub async fn create() -> Option<PgDatabase> {
        let admin_url = match std::env::var("AGENT_OS_TEST_POSTGRES_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("CI=true but AGENT_OS_TEST_POSTGRES_URL is not set: the PostgreSQL tests must run in CI");
                }
                eprintln!("NOTE: a PostgreSQL test was not run: set AGENT_OS_TEST_POSTGRES_URL=postgres://… to run it");
                return None;
            }
        };
        sqlx::any::install_default_drivers();
        let name = format!("aos_test_{}", agent_os_core::id::new_id().replace('-', ""));
        let admin = sqlx::AnyPool::connect(&admin_url)
            .await
            .expect("PostgreSQL named by AGENT_OS_TEST_POSTGRES_URL is unreachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url);
        Some(PgDatabase { url: format!("{base}/{name}"), admin_url, name })
    }

    pub async fn drop_it(self) {
        let admin = sqlx::AnyPool::connect(&self.admin_url).await.expect("reconnect");
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
            .execute(&admin)
            .await
            .expect("drop test database");
        admin.close().await;
    }
}
