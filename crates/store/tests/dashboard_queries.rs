//! The queries the dashboard leans on at scale, against what a plain scan gives. Cost totals
//! read the daily rollup for whole UTC days and the records only at the edges: on random
//! records and random ranges (edges on and around midnight, open ends, several currencies,
//! records before 1970, duplicates) they must equal the plain scan of the records, row for row
//! and in the same order. Runs and costs listed with any combination of filters must be the
//! filtered list, newest first. Told on SQLite always and on PostgreSQL when
//! `AGENT_OS_TEST_POSTGRES_URL` names a server (with `CI=true` and no URL it fails).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use agent_os_core::cost::CostSource;
use agent_os_core::run::RunStatus;
use agent_os_store::*;

mod common;
use common::PgDatabase;
use sqlx::Row;

const DAY: i64 = 86_400_000;
/// 2025-03-10T00:00:00Z: the records spread over the nine days from here.
const BASE: i64 = 1_741_564_800_000;

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[self.below(of.len() as u64) as usize]
    }
}

const PROJECTS: &[&str] = &["trading", "cortana", "Zeta", "image-workflow"];
const SERVICES: &[&str] = &["openai", "anthropic", "railway", "Modal"];
const CURRENCIES: &[&str] = &["USD", "USD", "USD", "EUR", "JPY"];

/// A time near the interesting places: midnight exactly, a millisecond either side, or anywhere
/// in the nine days; now and then before 1970.
fn time(rng: &mut Rng) -> i64 {
    let day = BASE + rng.below(9) as i64 * DAY;
    match rng.below(8) {
        0 => day,
        1 => day - 1,
        2 => day + 1,
        3 if rng.below(4) == 0 => -(rng.below(3 * DAY as u64) as i64),
        _ => day + rng.below(DAY as u64) as i64,
    }
}

fn record(rng: &mut Rng, n: usize) -> NewCost {
    let project = rng.pick(PROJECTS).to_string();
    let tokens = |rng: &mut Rng| (rng.below(3) > 0).then(|| rng.below(5_000) as i64);
    // One in six is of a model without a price: amount 0, counted as unpriced.
    let unpriced = rng.below(6) == 0;
    NewCost {
        id: agent_os_core::id::new_id(),
        project_id: format!("id-{project}"),
        project,
        run_id: None,
        service: rng.pick(SERVICES).to_string(),
        key_name: (rng.below(4) > 0).then(|| format!("key-{}", rng.below(3))),
        amount_nanos: if unpriced { 0 } else { rng.below(5_000_000_000) as i64 },
        currency: rng.pick(CURRENCIES).to_string(),
        tokens_in: tokens(rng),
        tokens_out: tokens(rng),
        tokens_cached_in: None,
        model: (rng.below(3) > 0).then(|| rng.pick(&["gpt-4o", "claude", "Mini"]).to_string()),
        at: time(rng),
        idempotency_key: format!("k{n}"),
        source: CostSource::Api,
        metadata: None,
        created_at: BASE,
        price: None,
        unpriced,
    }
}

/// What the plain scan of every record gives, as `cost_totals` did before the rollup.
async fn scan(pool: &sqlx::AnyPool, f: &CostTotalsFilter, by: CostGroup) -> Vec<CostTotal> {
    let group = match by {
        CostGroup::Project => "project",
        CostGroup::Service => "service",
        CostGroup::Key => "COALESCE(key_name, '')",
        CostGroup::Model => "COALESCE(model, '')",
        CostGroup::Day => "CAST(at / 86400000 AS BIGINT) * 86400000",
    };
    let sql = format!(
        "SELECT {group}, currency, CAST(SUM(amount_nanos) AS BIGINT), COUNT(*), CAST(COALESCE(SUM(tokens_in), 0) AS BIGINT), CAST(COALESCE(SUM(tokens_out), 0) AS BIGINT), CAST(SUM(unpriced) AS BIGINT) FROM cost_records WHERE ($1 IS NULL OR project = $1) AND ($2 IS NULL OR service = $2) AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let rows = sqlx::query::<sqlx::Any>(sqlx::AssertSqlSafe(sql))
        .bind(&f.project)
        .bind(&f.service)
        .bind(f.from)
        .bind(f.to)
        .fetch_all(pool)
        .await
        .unwrap();
    rows.iter()
        .map(|r| CostTotal {
            group: match by {
                CostGroup::Day => r.get::<i64, _>(0).to_string(),
                _ => r.get(0),
            },
            currency: r.get(1),
            amount_nanos: r.get(2),
            records: r.get(3),
            tokens_in: r.get(4),
            tokens_out: r.get(5),
            unpriced: r.get(6),
        })
        .collect()
}

/// A range end: open, on a midnight, a millisecond off one, or anywhere.
fn bound(rng: &mut Rng) -> Option<i64> {
    match rng.below(6) {
        0 => None,
        1 => Some(BASE + rng.below(10) as i64 * DAY),
        2 => Some(BASE + rng.below(10) as i64 * DAY + if rng.below(2) == 0 { 1 } else { -1 }),
        3 => Some(-(rng.below(2 * DAY as u64) as i64)),
        _ => Some(BASE - DAY + rng.below(11 * DAY as u64) as i64),
    }
}

async fn rollup_story(store: &SqlStore, pool: &sqlx::AnyPool) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut records: Vec<NewCost> = Vec::new();
    for n in 0..3_000 {
        // Every tenth record repeats an earlier one's project and key (with another amount and
        // time): refused, and so counted nowhere.
        let mut r = record(&mut rng, n);
        if n % 10 == 9 {
            let earlier = &records[n / 2];
            (r.project, r.project_id, r.idempotency_key) =
                (earlier.project.clone(), earlier.project_id.clone(), earlier.idempotency_key.clone());
        }
        records.push(r);
    }
    let mut accepted = 0;
    for batch in records.chunks(250) {
        accepted += store.insert_costs(batch).await.unwrap().0;
    }
    assert_eq!(accepted, 3_000 - 300, "every tenth record repeats an idempotency key");

    let groups = [CostGroup::Project, CostGroup::Service, CostGroup::Day, CostGroup::Key, CostGroup::Model];
    // Whole days, each edge, open ends, empty and reversed ranges, with and without filters.
    let mut filters = vec![
        CostTotalsFilter::default(),
        CostTotalsFilter { from: Some(BASE), to: Some(BASE + 9 * DAY), ..Default::default() },
        CostTotalsFilter { from: Some(BASE + 1), to: Some(BASE + 9 * DAY - 1), ..Default::default() },
        CostTotalsFilter { from: Some(BASE + 3 * DAY), to: Some(BASE + 3 * DAY), ..Default::default() },
        CostTotalsFilter { from: Some(BASE + 5 * DAY), to: Some(BASE + 2 * DAY), ..Default::default() },
        CostTotalsFilter { from: Some(BASE + DAY / 2), to: Some(BASE + DAY / 2 + 3_600_000), ..Default::default() },
        CostTotalsFilter { from: None, to: Some(BASE + 4 * DAY), project: Some("trading".into()), service: None },
        CostTotalsFilter { from: Some(-DAY), to: None, project: None, service: Some("openai".into()) },
    ];
    for _ in 0..120 {
        filters.push(CostTotalsFilter {
            project: (rng.below(3) == 0).then(|| rng.pick(PROJECTS).to_string()),
            service: (rng.below(3) == 0).then(|| rng.pick(SERVICES).to_string()),
            from: bound(&mut rng),
            to: bound(&mut rng),
        });
    }
    let mut compared = 0;
    for f in &filters {
        for by in groups {
            let fast = store.cost_totals(f, by).await.unwrap();
            let plain = scan(pool, f, by).await;
            assert_eq!(fast, plain, "{by:?} over {f:?}");
            compared += fast.len();
        }
    }
    // The comparisons were about something: most ranges hold records, in several currencies.
    assert!(compared > 2_000, "only {compared} groups compared");
    let all = store.cost_totals(&CostTotalsFilter::default(), CostGroup::Project).await.unwrap();
    assert!(all.iter().any(|t| t.currency == "JPY") && all.iter().any(|t| t.currency == "EUR"));
    assert_eq!(all.iter().map(|t| t.records).sum::<i64>(), 2_700);
}

/// Runs of two projects and three tasks, a third of them cancelled, and some costs of some of
/// them; every combination of filters lists exactly the matching ones, newest first, and the
/// `before` cursor pages through them.
async fn filter_story(store: &SqlStore) {
    let mut ids = Vec::new();
    let mut projects = Vec::new();
    for name in ["trading", "cortana"] {
        let p = NewProject {
            id: agent_os_core::id::new_id(),
            name: name.into(),
            description: String::new(),
            transport: ProjectTransport::Command { root: format!("/home/u/{name}") },
            manifest: format!("name: {name}\n"),
        };
        projects.push(store.insert_project(&p, &[], 1).await.unwrap());
    }
    for i in 0..90i64 {
        let p = &projects[(i % 2) as usize];
        let run = NewRun {
            id: agent_os_core::id::new_id(),
            project_id: p.id.clone(),
            project: p.name.clone(),
            task: ["scan", "report", "sync"][(i % 3) as usize].into(),
            input: "{}".into(),
            max_attempts: 1,
            trigger: "api".into(),
            concurrency_key: None,
            scheduled_for: None,
            resources: Vec::new(),
            priority: 50,
            now: 1_000 + i,
        };
        let stored = store.insert_run(&run).await.unwrap();
        if i % 5 < 2 {
            store.request_cancel(&stored.id, 2_000 + i).await.unwrap();
        }
        ids.push(stored.id);
        // A cost of an earlier run (run i/2) or of none; times repeat, so ties order by id.
        store
            .insert_costs(&[NewCost {
                id: agent_os_core::id::new_id(),
                project_id: p.id.clone(),
                project: p.name.clone(),
                run_id: (i % 4 != 3).then(|| ids[(i / 2) as usize].clone()),
                service: "openai".into(),
                key_name: None,
                amount_nanos: i,
                currency: "USD".into(),
                tokens_in: None,
                tokens_out: None,
                tokens_cached_in: None,
                model: None,
                at: 5_000 - i * 7 % 50,
                idempotency_key: format!("c{i}"),
                source: CostSource::Api,
                metadata: None,
                created_at: 5_000,
                price: None,
                unpriced: false,
            }])
            .await
            .unwrap();
    }
    let all = store.list_runs(&RunFilter { limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 90);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let pick = |v: &[Option<&str>]| -> Vec<Option<String>> { v.iter().map(|o| o.map(str::to_string)).collect() };
    let cursor = all[30].id.clone();
    let mut seen_some = 0;
    for project in pick(&[None, Some("trading"), Some("cortana"), Some("nobody")]) {
        for task in pick(&[None, Some("scan"), Some("sync")]) {
            for status in [None, Some(RunStatus::Queued), Some(RunStatus::Cancelled), Some(RunStatus::Running)] {
                for before in [None, Some(cursor.clone())] {
                    let f = RunFilter {
                        project: project.clone(),
                        task: task.clone(),
                        status,
                        before: before.clone(),
                        limit: 7,
                    };
                    let want: Vec<String> = all
                        .iter()
                        .filter(|r| project.as_ref().is_none_or(|p| &r.project == p))
                        .filter(|r| task.as_ref().is_none_or(|t| &r.task == t))
                        .filter(|r| status.is_none_or(|s| r.status == s))
                        .filter(|r| before.as_ref().is_none_or(|b| &r.id < b))
                        .take(7)
                        .map(|r| r.id.clone())
                        .collect();
                    let got: Vec<String> = store.list_runs(&f).await.unwrap().into_iter().map(|r| r.id).collect();
                    assert_eq!(got, want, "{f:?}");
                    seen_some += usize::from(!got.is_empty());
                }
            }
        }
    }
    assert!(seen_some > 40, "only {seen_some} filters matched anything");

    let costs = store.list_costs(&CostFilter { limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(costs.len(), 90);
    let newest_first = |c: &[CostRecord]| c.windows(2).all(|w| (w[0].at, &w[0].id) >= (w[1].at, &w[1].id));
    assert!(newest_first(&costs));
    for project in pick(&[None, Some("trading"), Some("cortana")]) {
        for run_id in [None, Some(ids[10].clone()), Some(ids[44].clone()), Some("none".into())] {
            let f = CostFilter { project: project.clone(), run_id: run_id.clone(), limit: 20 };
            let want: Vec<String> = costs
                .iter()
                .filter(|c| project.as_ref().is_none_or(|p| &c.project == p))
                .filter(|c| run_id.is_none() || c.run_id == run_id)
                .take(20)
                .map(|c| c.id.clone())
                .collect();
            let got: Vec<String> = store.list_costs(&f).await.unwrap().into_iter().map(|c| c.id).collect();
            assert_eq!(got, want, "{f:?}");
        }
    }
    let of_run = CostFilter { run_id: Some(ids[10].clone()), limit: 10, ..Default::default() };
    assert_eq!(store.list_costs(&of_run).await.unwrap().len(), 2, "runs 20 and 21 both cost run 10");
}

/// The rollup story on a fresh database, with a second connection for the plain scan.
async fn rollup_on(url: &str) {
    let store = SqlStore::open(&StoreOptions::new(url), 1_000).await.expect("open the store");
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    rollup_story(&store, &pool).await;
    pool.close().await;
    store.close().await;
}

#[tokio::test]
async fn dashboard_queries_equal_a_scan_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    rollup_on(&sqlite_url(&dir.path().join("agent-os.db"))).await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(&StoreOptions::new(sqlite_url(&dir.path().join("agent-os.db"))), 1_000).await.unwrap();
    filter_story(&store).await;
    store.close().await;
}

#[tokio::test]
async fn dashboard_queries_equal_a_scan_on_postgres() {
    for story in 0..2 {
        let Some(db) = PgDatabase::create().await else { return };
        if story == 0 {
            rollup_on(&db.url).await;
        } else {
            let store = SqlStore::open(&StoreOptions::new(&db.url), 1_000).await.expect("open postgres");
            filter_story(&store).await;
            store.close().await;
        }
        db.drop_it().await;
    }
}
