//! Schema migrations, embedded in the binary, one directory per backend.
//!
//! A migration runs once, inside a transaction, and its checksum is recorded; a released
//! migration whose text changed is refused rather than silently skipped.

use sqlx::{Any, AnyPool, Row};

use crate::sql::Backend;
use crate::{Result, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "foundation", sql: include_str!("../migrations/sqlite/0001_foundation.sql") },
    Migration { version: 2, name: "schedule_slots", sql: include_str!("../migrations/sqlite/0002_schedule_slots.sql") },
    Migration { version: 3, name: "checks", sql: include_str!("../migrations/sqlite/0003_checks.sql") },
    Migration {
        version: 4,
        name: "schedule_control",
        sql: include_str!("../migrations/sqlite/0004_schedule_control.sql"),
    },
    Migration { version: 5, name: "resources", sql: include_str!("../migrations/sqlite/0005_resources.sql") },
    Migration { version: 6, name: "budgets", sql: include_str!("../migrations/sqlite/0006_budgets.sql") },
    Migration { version: 7, name: "notifications", sql: include_str!("../migrations/sqlite/0007_notifications.sql") },
    Migration { version: 8, name: "incidents", sql: include_str!("../migrations/sqlite/0008_incidents.sql") },
    Migration { version: 9, name: "workflows", sql: include_str!("../migrations/sqlite/0009_workflows.sql") },
    Migration {
        version: 10,
        name: "drop_webhook_receipts",
        sql: include_str!("../migrations/sqlite/0010_drop_webhook_receipts.sql"),
    },
    Migration { version: 11, name: "dashboard", sql: include_str!("../migrations/sqlite/0011_dashboard.sql") },
    Migration {
        version: 12,
        name: "dashboard_indexes",
        sql: include_str!("../migrations/sqlite/0012_dashboard_indexes.sql"),
    },
    Migration { version: 13, name: "list_indexes", sql: include_str!("../migrations/sqlite/0013_list_indexes.sql") },
];

const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "foundation", sql: include_str!("../migrations/postgres/0001_foundation.sql") },
    Migration {
        version: 2,
        name: "schedule_slots",
        sql: include_str!("../migrations/postgres/0002_schedule_slots.sql"),
    },
    Migration { version: 3, name: "checks", sql: include_str!("../migrations/postgres/0003_checks.sql") },
    Migration {
        version: 4,
        name: "schedule_control",
        sql: include_str!("../migrations/postgres/0004_schedule_control.sql"),
    },
    Migration { version: 5, name: "resources", sql: include_str!("../migrations/postgres/0005_resources.sql") },
    Migration { version: 6, name: "budgets", sql: include_str!("../migrations/postgres/0006_budgets.sql") },
    Migration { version: 7, name: "notifications", sql: include_str!("../migrations/postgres/0007_notifications.sql") },
    Migration { version: 8, name: "incidents", sql: include_str!("../migrations/postgres/0008_incidents.sql") },
    Migration { version: 9, name: "workflows", sql: include_str!("../migrations/postgres/0009_workflows.sql") },
    Migration {
        version: 10,
        name: "drop_webhook_receipts",
        sql: include_str!("../migrations/postgres/0010_drop_webhook_receipts.sql"),
    },
    Migration { version: 11, name: "dashboard", sql: include_str!("../migrations/postgres/0011_dashboard.sql") },
    Migration {
        version: 12,
        name: "dashboard_indexes",
        sql: include_str!("../migrations/postgres/0012_dashboard_indexes.sql"),
    },
    Migration { version: 13, name: "list_indexes", sql: include_str!("../migrations/postgres/0013_list_indexes.sql") },
];

/// FNV-1a over the text: enough to notice an edited migration.
fn checksum(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Statements of a migration file: split on `;` at line ends, comments dropped.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

pub(crate) async fn run(pool: &AnyPool, backend: Backend, now: i64) -> Result<()> {
    let migrations = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let begin = match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    let mut tx = pool.begin_with(begin).await?;
    if backend == Backend::Postgres {
        // Several nodes may start at once; one migrates, the others wait for it.
        sqlx::query("SELECT pg_advisory_xact_lock(7700001)").execute(&mut *tx).await?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let applied =
        sqlx::query("SELECT version, checksum FROM schema_migrations ORDER BY version").fetch_all(&mut *tx).await?;
    let applied: Vec<(i64, String)> = applied
        .iter()
        .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    if let Some((newest, _)) = applied.last()
        && *newest > migrations.last().map_or(0, |m| m.version)
    {
        return Err(StoreError::Migration(format!(
            "the database is at schema version {newest}, newer than this Agent OS knows; upgrade Agent OS"
        )));
    }
    for m in migrations {
        let sum = checksum(m.sql);
        if let Some((_, stored)) = applied.iter().find(|(v, _)| *v == m.version) {
            if *stored != sum {
                return Err(StoreError::Migration(format!(
                    "migration {} ({}) differs from the one applied to this database",
                    m.version, m.name
                )));
            }
            continue;
        }
        for stmt in statements(m.sql) {
            sqlx::query::<Any>(sqlx::AssertSqlSafe(stmt)).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
            .bind(m.version)
            .bind(m.name)
            .bind(sum)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements() {
        let s = statements("-- c\nCREATE TABLE a (x INTEGER);\n\nCREATE INDEX i\n  ON a(x);\n");
        assert_eq!(s.len(), 2);
        assert!(s[1].contains("ON a(x);"));
    }

    #[test]
    fn both_backends_define_the_same_versions() {
        let a: Vec<i64> = SQLITE.iter().map(|m| m.version).collect();
        let b: Vec<i64> = POSTGRES.iter().map(|m| m.version).collect();
        assert_eq!(a, b);
    }
}
