//! `agent-os workflow approve` and `reject` (the real binary) against a real `agent-os serve`:
//! the answers given as `--input NAME=VALUE` are read as the form's types, the decision is
//! recorded as the admin's and shown by `workflow run-status`, a wrong answer exits non-zero
//! naming the field, and a second decision is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Server, text};

const DEPLOY: &str = r#"name: deploy
on: { manual: {} }
steps:
  - id: go_live
    approval:
      message: "Deploy to production?"
      inputs:
        reason: { type: string, required: true }
        size: { type: integer }
  - id: announce
    needs: go_live
    emit: { type: deploy.started, data: { reason: "{{ steps.go_live.outputs.inputs.reason }}" } }
"#;

async fn waiting_run(server: &Server) -> String {
    let (st, run) = server.api().post("/api/v1/workflows/deploy/runs", json!({})).await;
    assert_eq!(st, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = server.api().get(&format!("/api/v1/workflows/runs/{id}")).await;
        if d["steps"].as_array().unwrap().iter().any(|s| s["step_id"] == "go_live" && s["status"] == "waiting") {
            return id;
        }
        assert!(Instant::now() < deadline, "the step never waited: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn step<'a>(d: &'a Value, id: &str) -> &'a Value {
    d["steps"].as_array().unwrap().iter().find(|s| s["step_id"] == id).unwrap()
}

#[tokio::test]
async fn the_cli_approves_and_rejects_a_waiting_step() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("workflows")).unwrap();
    std::fs::write(home.join("workflows/deploy.yaml"), DEPLOY).unwrap();
    let server = Server::start(&home, None).await;
    let run = waiting_run(&server).await;

    // The run's table says what it waits for.
    let out = server.cli(&["workflow", "run-status", &run]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("waiting for approval: Deploy to production?"), "{}", text(&out.stdout));

    // A wrong answer: the field is named, nothing is recorded.
    let bad = server.cli(&["workflow", "approve", &run, "go_live", "--input", "reason=x", "--input", "size=big"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("inputs.size") || text(&bad.stderr).contains("size must be"),
        "{}",
        text(&bad.stderr)
    );
    let malformed = server.cli(&["workflow", "approve", &run, "go_live", "--input", "reason"]);
    assert_eq!(malformed.status.code(), Some(2), "{}", text(&malformed.stderr));

    let out = server.cli(&[
        "workflow",
        "approve",
        &run,
        "go_live",
        "--input",
        "reason=hotfix",
        "--input",
        "size=3",
        "--comment",
        "go",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &step(&d, "go_live")["approval"];
    assert_eq!(a["decision"], "approved", "{d}");
    assert_eq!(a["decided_by"], "admin");
    assert_eq!(a["inputs"], json!({"reason": "hotfix", "size": 3}), "the CLI's text became the form's types");
    let shown = text(&server.cli(&["workflow", "run-status", &run]).stdout);
    assert!(shown.contains("approved by admin") && shown.contains("go"), "{shown}");

    // Decided once.
    let again = server.cli(&["workflow", "reject", &run, "go_live"]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already approved by admin"), "{}", text(&again.stderr));

    // A rejection fails the step.
    let run = waiting_run(&server).await;
    let out = server.cli(&["workflow", "reject", &run, "go_live", "--comment", "not today", "--by", "ana"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("rejected by ana: not today"), "{}", text(&out.stdout));
    server.stop();
}
