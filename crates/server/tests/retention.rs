//! Retention through the real server: `POST /api/v1/prune` counts (dry run) and prunes what the
//! policy says, `GET /api/v1/retention` answers the policy and the last pass, both for the
//! admin only; a run whose log was pruned says so in the API and on its dashboard page.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

use agent_os_core::retention::{Keep, Retention};
use agent_os_engine::testing::nap;
use agent_os_store::sqlite_url;

const DAY_MS: i64 = 86_400_000;

fn kind<'a>(pass: &'a Value, name: &str) -> &'a Value {
    pass["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == name).unwrap_or_else(|| panic!("{name} in {pass}"))
}

#[tokio::test]
async fn prune_counts_then_prunes_what_the_policy_says_and_the_run_page_says_so() {
    let s = start_with(|cfg| {
        cfg.retention = Retention { runs: Keep::Forever, ..Retention::default() };
    })
    .await;
    s.add(&fixture(s.home.path())).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let run = s.run("fixture", "echo", json!({ "n": i })).await;
        let id = run["id"].as_str().unwrap().to_string();
        assert_eq!(s.wait(&id).await["status"], "succeeded");
        ids.push(id);
    }
    assert!(s.log(&ids[0]).await.contains("got"), "the run wrote a log");

    // The first three finished two months ago, as if the server had been running since.
    let db = sqlx::AnyPool::connect(&sqlite_url(&s.home.path().join("agent-os.db"))).await.unwrap();
    for id in &ids[..3] {
        sqlx::query("UPDATE runs SET finished_at = finished_at - $1 WHERE id = $2")
            .bind(60 * DAY_MS)
            .bind(id)
            .execute(&db)
            .await
            .unwrap();
    }
    db.close().await;

    // A project token may neither prune nor read the policy.
    let (st, tok) = s.post("/api/v1/tokens", json!({"project": "fixture", "name": "ci"})).await;
    assert_eq!(st, 201, "{tok}");
    let project = tok["token"].as_str().unwrap();
    let post = reqwest::Method::POST;
    assert_eq!(s.req(post.clone(), "/api/v1/prune", Some(project), Some(json!({}))).await.0, 403);
    assert_eq!(s.req(reqwest::Method::GET, "/api/v1/retention", Some(project), None).await.0, 403);
    let (st, bad) = s.post("/api/v1/prune", json!({"dry_run": true, "everything": true})).await;
    assert_eq!(st, 400, "an unknown field is refused: {bad}");

    let (st, dry) = s.post("/api/v1/prune", json!({"dry_run": true})).await;
    assert_eq!(st, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(kind(&dry, "logs")["rows"], 3, "three old runs' logs would go: {dry}");
    assert_eq!(kind(&dry, "logs")["keep"], "30d");
    assert_eq!(kind(&dry, "runs")["rows"], 0, "runs are kept forever");
    assert_eq!(kind(&dry, "runs")["cutoff"], Value::Null);
    assert_eq!(kind(&dry, "costs")["keep"], "forever");
    let (_, run) = s.get(&format!("/api/v1/runs/{}", ids[0])).await;
    assert_eq!(run["logs_pruned_at"], Value::Null, "a dry run deletes nothing: {run}");
    assert!(s.log(&ids[0]).await.contains("got"));

    let (st, pass) = s.post("/api/v1/prune", json!({})).await;
    assert_eq!(st, 200, "{pass}");
    assert_eq!(pass["dry_run"], false);
    assert_eq!(kind(&pass, "logs")["rows"], 3, "{pass}");
    assert!(kind(&pass, "logs")["batches"].as_u64().unwrap() >= 1);
    assert_eq!(pass["rows"], 3, "nothing else was old: {pass}");
    for id in &ids[..3] {
        let (_, run) = s.get(&format!("/api/v1/runs/{id}")).await;
        assert!(run["logs_pruned_at"].is_string(), "{run}");
        assert_eq!(s.log(id).await, "", "its log lines are gone");
    }
    let (_, latest) = s.get(&format!("/api/v1/runs/{}", ids[3])).await;
    assert!(latest.get("logs_pruned_at").is_none(), "the recent run keeps its log: {latest}");
    assert!(s.log(&ids[3]).await.contains("got"));

    let page = s.browser().await.get(&format!("/runs/{}", ids[0])).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-logs-pruned=") && page.body.contains("The log was pruned"), "{}", page.body);

    let (st, r) = s.get("/api/v1/retention").await;
    assert_eq!(st, 200, "{r}");
    let policy: Vec<(String, String)> = r["policy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key"].as_str().unwrap().to_string(), k["keep"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(policy[0], ("runs".to_string(), "forever".to_string()));
    assert!(policy.contains(&("tokens".to_string(), "7d".to_string())), "{r}");
    assert_eq!(r["first_after"], "5m");
    assert_eq!(r["every"], "1h");
    assert_eq!(r["last_pass"]["rows"], 3, "the last pass that deleted: {r}");
    assert_eq!(kind(&r["last_pass"], "logs")["rows"], 3);

    // Nothing more is due.
    let (_, again) = s.post("/api/v1/prune", Value::Null).await;
    assert_eq!(again["rows"], 0, "{again}");
}

#[tokio::test(start_paused = true)]
async fn the_loop_first_prunes_minutes_after_start_not_at_start() {
    let s = start_held(|cfg| {
        cfg.prune_first_after = Duration::from_secs(300);
        cfg.prune_every = Duration::from_secs(3600);
    })
    .await;
    nap(Duration::from_secs(1)).await;
    let (_, r) = s.get("/api/v1/retention").await;
    assert_eq!(r["last_pass"], Value::Null, "no pass at start: {r}");
    tokio::time::advance(Duration::from_secs(301)).await;
    let mut seen = Value::Null;
    for _ in 0..50 {
        nap(Duration::from_millis(100)).await;
        seen = s.get("/api/v1/retention").await.1;
        if !seen["last_pass"].is_null() {
            break;
        }
    }
    assert_eq!(seen["last_pass"]["dry_run"], false, "a pass ran 5 minutes after start: {seen}");
    assert_eq!(seen["last_pass"]["kinds"].as_array().unwrap().len(), 12);
}
