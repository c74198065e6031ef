//! The cost ledger and its daily rollup: money is summed by the database in nano-units, per
//! currency, and whole UTC days are read from the rollup kept in the same transaction.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::{SqlStore, all, fetch_filtered, filtered};
use crate::Result;
use crate::model::{CostFilter, CostGroup, CostRecord, CostTotal, CostTotalsFilter, NewCost, UnpricedCost};

/// A UTC day in milliseconds: the cost rollup's bucket.
const DAY_MS: i64 = 86_400_000;

/// Cost records and their totals. Every method commits before it returns.
#[async_trait]
pub trait CostStore: Send + Sync {
    /// Stores all records or none; a record whose idempotency key is already stored for its
    /// project is skipped. Returns (accepted, duplicates).
    async fn insert_costs(&self, records: &[NewCost]) -> Result<(i64, i64)>;
    async fn list_costs(&self, filter: &CostFilter) -> Result<Vec<CostRecord>>;
    /// One page of the records spent in `[from, to)` (ms), oldest first by (`at`, `id`), after
    /// the record `after` names (its `at` and `id`): a keyset cursor, so an export reads a month
    /// of records a page at a time without ever skipping or repeating one.
    async fn cost_page(
        &self,
        project: Option<&str>,
        from: i64,
        to: i64,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<CostRecord>>;
    /// Exact totals per group and currency, summed by the database.
    async fn cost_totals(&self, filter: &CostTotalsFilter, by: CostGroup) -> Result<Vec<CostTotal>>;
    /// The models of the records stored without a price.
    async fn unpriced_models(&self) -> Result<Vec<String>>;
    /// Up to `limit` records of `model` stored without a price.
    async fn unpriced_costs(&self, model: &str, limit: i64) -> Result<Vec<UnpricedCost>>;
    /// Gives unpriced records their amount (`(id, amount_nanos)`) and the price used, and adds
    /// the amounts to the daily rollup, in one transaction. A record priced meanwhile is left
    /// alone. Returns how many records were priced.
    async fn price_costs(&self, priced: &[(String, i64)], price: &str) -> Result<i64>;
}

macro_rules! cost_columns {
    () => {
        "id, project, run_id, service, key_name, amount_nanos, currency, tokens_in, tokens_out, tokens_cached_in,
         model, at, idempotency_key, source, metadata, price, unpriced"
    };
}

fn cost_from(row: &AnyRow) -> Result<CostRecord, sqlx::Error> {
    Ok(CostRecord {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        run_id: row.try_get("run_id")?,
        service: row.try_get("service")?,
        key_name: row.try_get("key_name")?,
        amount_nanos: row.try_get("amount_nanos")?,
        currency: row.try_get("currency")?,
        tokens_in: row.try_get("tokens_in")?,
        tokens_out: row.try_get("tokens_out")?,
        tokens_cached_in: row.try_get("tokens_cached_in")?,
        model: row.try_get("model")?,
        at: row.try_get("at")?,
        idempotency_key: row.try_get("idempotency_key")?,
        source: row.try_get("source")?,
        metadata: row.try_get("metadata")?,
        price: row.try_get("price")?,
        unpriced: super::flag(row, "unpriced")?,
    })
}

/// The UTC days wholly inside [from, to) and not before 1970, as [first, last); an empty range
/// at `to` when there is none.
fn whole_days(from: i64, to: i64) -> (i64, i64) {
    let day = i128::from(DAY_MS);
    let first = (i128::from(from.max(0)) + day - 1).div_euclid(day) * day;
    let last = i128::from(to).div_euclid(day) * day;
    if first < last { (first as i64, last as i64) } else { (to, to) }
}

#[async_trait]
impl CostStore for SqlStore {
    async fn insert_costs(&self, records: &[NewCost]) -> Result<(i64, i64)> {
        let mut tx = self.tx().await?;
        let mut accepted = 0;
        for c in records {
            let done = sqlx::query(
                "INSERT INTO cost_records
                     (id, project_id, project, run_id, service, key_name, amount_nanos, currency, tokens_in,
                      tokens_out, model, at, idempotency_key, source, metadata, created_at, tokens_cached_in, price,
                      unpriced)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
                 ON CONFLICT (project, idempotency_key) DO NOTHING",
            )
            .bind(&c.id)
            .bind(&c.project_id)
            .bind(&c.project)
            .bind(&c.run_id)
            .bind(&c.service)
            .bind(&c.key_name)
            .bind(c.amount_nanos)
            .bind(&c.currency)
            .bind(c.tokens_in)
            .bind(c.tokens_out)
            .bind(&c.model)
            .bind(c.at)
            .bind(&c.idempotency_key)
            .bind(&c.source)
            .bind(&c.metadata)
            .bind(c.created_at)
            .bind(c.tokens_cached_in)
            .bind(&c.price)
            .bind(i64::from(c.unpriced))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                continue;
            }
            accepted += 1;
            sqlx::query(
                "INSERT INTO cost_daily (project, service, day, currency, amount_nanos, records, tokens_in, tokens_out,
                                         unpriced)
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8)
                 ON CONFLICT (project, service, day, currency) DO UPDATE SET
                     amount_nanos = cost_daily.amount_nanos + excluded.amount_nanos,
                     records = cost_daily.records + 1,
                     tokens_in = cost_daily.tokens_in + excluded.tokens_in,
                     tokens_out = cost_daily.tokens_out + excluded.tokens_out,
                     unpriced = cost_daily.unpriced + excluded.unpriced",
            )
            .bind(&c.project)
            .bind(&c.service)
            .bind(c.at.div_euclid(DAY_MS) * DAY_MS)
            .bind(&c.currency)
            .bind(c.amount_nanos)
            .bind(c.tokens_in.unwrap_or(0))
            .bind(c.tokens_out.unwrap_or(0))
            .bind(i64::from(c.unpriced))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((accepted, records.len() as i64 - accepted))
    }

    async fn cost_page(
        &self,
        project: Option<&str>,
        from: i64,
        to: i64,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<CostRecord>> {
        // Without a cursor the page starts at `from`; `id > ''` holds for every record.
        let (start, after_id) = match after {
            Some((at, id)) => (at.max(from), if at >= from { id } else { "" }),
            None => (from, ""),
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            cost_columns!(),
            " FROM cost_records
              WHERE ($1 IS NULL OR project = $1) AND at >= $2 AND at < $3 AND (at > $2 OR id > $4)
              ORDER BY at, id
              LIMIT $5"
        ))
        .bind(project)
        .bind(start)
        .bind(to)
        .bind(after_id)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.read)
        .await?;
        all(rows, cost_from)
    }

    async fn list_costs(&self, f: &CostFilter) -> Result<Vec<CostRecord>> {
        let conditions = [("project = ", &f.project), ("run_id = ", &f.run_id)];
        let select = filtered(
            concat!("SELECT ", cost_columns!(), " FROM cost_records"),
            &conditions,
            "ORDER BY at DESC, id DESC",
        );
        all(fetch_filtered(&self.read, select, f.limit.clamp(1, 10_000)).await?, cost_from)
    }

    async fn cost_totals(&self, f: &CostTotalsFilter, by: CostGroup) -> Result<Vec<CostTotal>> {
        // The records' own columns for each grouping; the daily rollup holds project, service
        // and day (and currency) only, so key and model are summed from the records.
        let (raw_group, daily_group) = match by {
            CostGroup::Project => ("project", Some("project")),
            CostGroup::Service => ("service", Some("service")),
            CostGroup::Key => ("COALESCE(key_name, '')", None),
            CostGroup::Model => ("COALESCE(model, '')", None),
            CostGroup::Day => ("CAST(at / 86400000 AS BIGINT) * 86400000", Some("day")),
        };
        let (from, to) = (f.from.unwrap_or(i64::MIN), f.to.unwrap_or(i64::MAX));
        // Whole UTC days inside [from, to) come from `cost_daily` (kept by `insert_costs` in the
        // same transaction as the records); the partial days at either edge, and anything before
        // 1970 (whose day the rollup and SQL's division round differently), from the records.
        // The parts are added up by the database, grouped and ordered as one scan would be.
        let (days_from, days_to) = match daily_group {
            Some(_) => whole_days(from, to),
            None => (to, to),
        };
        let records = |range: &str| {
            format!(
                "SELECT {raw_group} AS g, currency AS c, SUM(amount_nanos) AS a, COUNT(*) AS n,
                        SUM(COALESCE(tokens_in, 0)) AS ti, SUM(COALESCE(tokens_out, 0)) AS tx, SUM(unpriced) AS u
                 FROM cost_records
                 WHERE {range} AND ($1 IS NULL OR project = $1) AND ($2 IS NULL OR service = $2)
                 GROUP BY 1, 2"
            )
        };
        let mut parts = vec![records("at >= $3 AND at < $5"), records("at >= $6 AND at < $4")];
        if let Some(g) = daily_group {
            parts.push(format!(
                "SELECT {g} AS g, currency AS c, SUM(amount_nanos) AS a, SUM(records) AS n, SUM(tokens_in) AS ti,
                        SUM(tokens_out) AS tx, SUM(unpriced) AS u
                 FROM cost_daily
                 WHERE day >= $5 AND day < $6 AND ($1 IS NULL OR project = $1) AND ($2 IS NULL OR service = $2)
                 GROUP BY 1, 2"
            ));
        }
        let sql = format!(
            "SELECT g AS grp, c AS currency, CAST(SUM(a) AS BIGINT) AS amount_nanos, CAST(SUM(n) AS BIGINT) AS records,
                    CAST(SUM(ti) AS BIGINT) AS tokens_in, CAST(SUM(tx) AS BIGINT) AS tokens_out,
                    CAST(SUM(u) AS BIGINT) AS unpriced
             FROM ({}) parts
             GROUP BY g, c
             ORDER BY g, c",
            parts.join(" UNION ALL ")
        );
        let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
            .bind(&f.project)
            .bind(&f.service)
            .bind(from)
            .bind(to)
            .bind(days_from)
            .bind(days_to)
            .fetch_all(&self.read)
            .await?;
        all(rows, |row| {
            let group = match by {
                CostGroup::Day => row.try_get::<i64, _>("grp")?.to_string(),
                _ => row.try_get("grp")?,
            };
            Ok(CostTotal {
                group,
                currency: row.try_get("currency")?,
                amount_nanos: row.try_get("amount_nanos")?,
                records: row.try_get("records")?,
                tokens_in: row.try_get("tokens_in")?,
                tokens_out: row.try_get("tokens_out")?,
                unpriced: row.try_get("unpriced")?,
            })
        })
    }

    async fn unpriced_models(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT model FROM cost_records WHERE unpriced = 1 AND model IS NOT NULL ORDER BY model",
        )
        .fetch_all(&self.read)
        .await?;
        all(rows, |row| row.try_get("model"))
    }

    async fn unpriced_costs(&self, model: &str, limit: i64) -> Result<Vec<UnpricedCost>> {
        let rows = sqlx::query(
            "SELECT id, project, tokens_in, tokens_out, tokens_cached_in FROM cost_records
             WHERE unpriced = 1 AND model = $1
             ORDER BY id
             LIMIT $2",
        )
        .bind(model)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.read)
        .await?;
        all(rows, |row| {
            Ok(UnpricedCost {
                id: row.try_get("id")?,
                project: row.try_get("project")?,
                tokens_in: row.try_get("tokens_in")?,
                tokens_out: row.try_get("tokens_out")?,
                tokens_cached_in: row.try_get("tokens_cached_in")?,
            })
        })
    }

    async fn price_costs(&self, priced: &[(String, i64)], price: &str) -> Result<i64> {
        let mut tx = self.tx().await?;
        let mut done = 0;
        for (id, amount) in priced {
            let row = sqlx::query(
                "UPDATE cost_records SET amount_nanos = $2, price = $3, unpriced = 0
                 WHERE id = $1 AND unpriced = 1
                 RETURNING project, service, at, currency",
            )
            .bind(id)
            .bind(amount)
            .bind(price)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { continue };
            done += 1;
            let at: i64 = row.try_get("at")?;
            sqlx::query(
                "UPDATE cost_daily SET amount_nanos = amount_nanos + $5, unpriced = unpriced - 1
                 WHERE project = $1 AND service = $2 AND day = $3 AND currency = $4",
            )
            .bind(row.try_get::<String, _>("project")?)
            .bind(row.try_get::<String, _>("service")?)
            .bind(at.div_euclid(DAY_MS) * DAY_MS)
            .bind(row.try_get::<String, _>("currency")?)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }
}
