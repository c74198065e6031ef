//! The workflow `approval` step decided by each route a person has: the API (admin token
//! only; a wrong answer is a 400 naming the field, a second decision a 409 saying who
//! decided), the dashboard's run page (the form it shows, posted as a browser would), and the
//! signed approve and reject links of the notification (opening one changes nothing; its button
//! decides once; an altered, used, expired or other step's link is refused). On SQLite, and the
//! link story also on PostgreSQL when `AGENT_OS_TEST_POSTGRES_URL` names a server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;
use common::*;

use std::time::Duration;

use agent_os_engine::engine::links::LINK_TTL;
use agent_os_store::testing::PgDatabase;
use serde_json::{Value, json};

const DEPLOY: &str = r#"name: deploy
on:
  manual:
    inputs:
      version: { type: string, default: "1.4.2" }
steps:
  - id: go_live
    approval:
      message: "Deploy {{ inputs.version }} to production?"
      timeout: 24h
      inputs:
        reason: { type: string, required: true }
        size: { type: integer }
        mode: { type: choice, options: [fast, safe], default: safe }
  - id: announce
    needs: go_live
    emit: { type: deploy.started, data: { reason: "{{ steps.go_live.outputs.inputs.reason }}" } }
"#;

async fn setup(s: &TestServer) {
    let dir = s.engine.config().workflows_dir.clone().unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("deploy.yaml"), DEPLOY).unwrap();
    let (st, r) = s.post("/api/v1/workflows/reload", json!({})).await;
    assert_eq!((st, &r["errors"]), (200, &json!([])), "{r}");
}

fn with_workflows(c: &mut agent_os_engine::EngineConfig) {
    c.workflows_dir = Some(c.runtime_dir.join("workflows"));
    c.links_url = Some(c.public_url.clone());
}

/// Starts a run and waits until its approval step waits; returns the run's id.
async fn waiting_run(s: &TestServer) -> String {
    let (st, run) = s.post("/api/v1/workflows/deploy/runs", json!({})).await;
    assert_eq!(st, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    for _ in 0..400 {
        let d = detail(s, &id).await;
        if d["steps"].as_array().unwrap().iter().any(|x| x["step_id"] == "go_live" && x["status"] == "waiting") {
            return id;
        }
        agent_os_engine::testing::nap(Duration::from_millis(25)).await;
    }
    panic!("the approval step of {id} never waited");
}

async fn detail(s: &TestServer, id: &str) -> Value {
    let (st, d) = s.get(&format!("/api/v1/workflows/runs/{id}")).await;
    assert_eq!(st, 200, "{d}");
    d
}

fn step<'a>(d: &'a Value, id: &str) -> &'a Value {
    d["steps"].as_array().unwrap().iter().find(|x| x["step_id"] == id && x["item"].is_null()).unwrap()
}

fn path(run: &str, verb: &str) -> String {
    format!("/api/v1/workflows/runs/{run}/steps/go_live/{verb}")
}

#[tokio::test]
async fn the_api_approves_and_rejects_with_checked_answers() {
    let s = start_with(with_workflows).await;
    setup(&s).await;
    let run = waiting_run(&s).await;
    let waiting = detail(&s, &run).await;
    assert_eq!(step(&waiting, "go_live")["outputs"]["message"], "Deploy 1.4.2 to production?");

    // A project's token may not decide.
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let token = project_token(&s, "fixture").await;
    let (st, e) = s.req(reqwest::Method::POST, &path(&run, "approve"), Some(&token), Some(json!({}))).await;
    assert_eq!(st, 403, "{e}");

    // Wrong answers: 400 naming the field; nothing recorded.
    for (inputs, field) in [
        (json!({}), "inputs.reason"),
        (json!({"reason": "x", "size": "1.5"}), "inputs.size"),
        (json!({"reason": "x", "mode": "slow"}), "inputs.mode"),
        (json!({"reason": "x", "other": 1}), "inputs.other"),
    ] {
        let (st, e) = s.post(&path(&run, "approve"), json!({ "inputs": inputs })).await;
        assert_eq!((st, e["error"]["field"].as_str()), (400, Some(field)), "{e}");
    }
    let (st, e) = s.post(&path(&run, "approve"), json!({"comment": "x".repeat(2001), "inputs": {"reason": "x"}})).await;
    assert_eq!((st, e["error"]["field"].as_str()), (400, Some("comment")), "{e}");
    let (st, e) = s.post(&path(&run, "approve"), json!({"inputs": {"reason": "x"}, "colour": "me"})).await;
    assert_eq!(st, 400, "an unknown body field: {e}");
    let (st, e) = s.post(&path(&run, "approve"), json!({"inputs": {"reason": "x"}, "by": " "})).await;
    assert_eq!((st, e["error"]["field"].as_str()), (400, Some("by")), "{e}");
    let (st, e) = s.post("/api/v1/workflows/runs/nope/steps/go_live/approve", json!({})).await;
    assert_eq!(st, 404, "{e}");
    let (st, e) = s.post(&format!("/api/v1/workflows/runs/{run}/steps/nope/approve"), json!({})).await;
    assert_eq!(st, 404, "{e}");
    assert_eq!(step(&detail(&s, &run).await, "go_live")["status"], "waiting");

    // The other step has not started: nothing to decide there.
    let (st, e) = s.post(&format!("/api/v1/workflows/runs/{run}/steps/announce/approve"), json!({})).await;
    assert_eq!(st, 400, "not an approval step: {e}");

    let (st, d) = s
        .post(
            &path(&run, "approve"),
            json!({"comment": "ship it", "by": "ana", "inputs": {"reason": "CVE", "size": 3}}),
        )
        .await;
    assert_eq!(st, 200, "{d}");
    let go = step(&d, "go_live");
    assert_eq!(go["status"], "succeeded", "{d}");
    assert_eq!(go["approval"]["decision"], "approved");
    assert_eq!(go["approval"]["decided_by"], "ana", "who decided, as the body names them");
    assert_eq!(go["approval"]["comment"], "ship it");
    assert_eq!(go["approval"]["inputs"], json!({"reason": "CVE", "size": 3, "mode": "safe"}));
    assert_eq!(go["outputs"]["inputs"]["reason"], "CVE");

    // Decided once.
    let (st, e) = s.post(&path(&run, "reject"), json!({})).await;
    assert_eq!(st, 409, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("already approved by ana"), "{e}");

    // A rejection fails the step; the step after it is skipped.
    let run = waiting_run(&s).await;
    let (st, d) = s.post(&path(&run, "reject"), json!({"comment": "not today"})).await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(step(&d, "go_live")["status"], "failed");
    assert_eq!(step(&d, "go_live")["error"], "rejected by admin: not today");
    let (st, ended) = s.get(&format!("/api/v1/workflows/runs/{run}/wait?timeout=10s")).await;
    assert_eq!(st, 200);
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(step(&ended, "announce")["status"], "skipped");
}

#[tokio::test]
async fn the_dashboard_shows_the_form_and_its_post_decides() {
    let s = start_with(with_workflows).await;
    setup(&s).await;
    let run = waiting_run(&s).await;
    let b = s.browser().await;
    let page = b.get(&format!("/workflows/runs/{run}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Waiting for a decision") && page.body.contains("Deploy 1.4.2 to production?"));
    let action = format!(r#"action="/workflows/runs/{run}/steps/go_live/decide""#);
    assert!(page.body.contains(&action), "{}", page.body);
    assert!(page.body.contains(r#"name="input.reason""#) && page.body.contains(r#"<option value="safe" selected>"#));

    // A wrong answer is refused, and the step still waits.
    let p = b
        .post(&format!("/workflows/runs/{run}/steps/go_live/decide"), &[("decision", "approve"), ("input.size", "x")])
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("reason is required") || p.body.contains("size must be"), "{}", p.body);
    // Without the CSRF token nothing happens.
    let p = b
        .post_raw(
            &format!("/workflows/runs/{run}/steps/go_live/decide"),
            &[("decision", "approve"), ("input.reason", "x")],
        )
        .await;
    assert_eq!(p.status, 403);
    assert_eq!(step(&detail(&s, &run).await, "go_live")["status"], "waiting");

    let fields = [
        ("decision", "approve"),
        ("input.reason", "rollout"),
        ("input.size", "2"),
        ("input.mode", "fast"),
        ("comment", "ok"),
    ];
    let p = b.post(&format!("/workflows/runs/{run}/steps/go_live/decide"), &fields).await;
    assert_eq!((p.status, p.location.as_deref()), (303, Some(format!("/workflows/runs/{run}").as_str())), "{}", p.body);
    let d = detail(&s, &run).await;
    let a = &step(&d, "go_live")["approval"];
    assert_eq!((a["decision"].as_str(), a["decided_by"].as_str()), (Some("approved"), Some("dashboard")), "{d}");
    assert_eq!(a["inputs"], json!({"reason": "rollout", "size": 2, "mode": "fast"}));
    let page = b.get(&format!("/workflows/runs/{run}")).await;
    assert!(!page.body.contains("Waiting for a decision"), "decided: no form any more");
    assert!(page.body.contains("approved by dashboard"), "the step says who decided");
}

/// The approve and reject links of the notification that asked about `run`.
async fn links_of(s: &TestServer, run: &str) -> (String, String) {
    let (st, list) = s.get("/api/v1/notifications").await;
    assert_eq!(st, 200, "{list}");
    let n = list
        .as_array()
        .unwrap()
        .iter()
        .find(|n| {
            n["title"].as_str().unwrap().starts_with("Approval wanted") && n["body"].as_str().unwrap().contains(run)
        })
        .expect("the approval was told");
    let body = n["body"].as_str().unwrap();
    let link = |label: &str| body.split_once(label).unwrap().1.lines().next().unwrap().trim().to_string();
    (link("Approve: "), link("Reject: "))
}

fn stranger() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn open(link: &str) -> (u16, String) {
    let r = stranger().get(link).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn press(link: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let (address, token) = link.split_once("?token=").unwrap();
    let mut all = vec![("token", token)];
    all.extend_from_slice(fields);
    let r = stranger().post(address).form(&all).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn link_story(s: &TestServer) {
    setup(s).await;
    let a = waiting_run(s).await;
    let b = waiting_run(s).await;
    let (approve_a, reject_a) = links_of(s, &a).await;
    let (approve_b, _) = links_of(s, &b).await;
    assert!(approve_a.starts_with(&format!("{}/links/workflows/runs/{a}/steps/go_live/approve?token=", s.url)));

    // Opening shows the question and the form, and changes nothing.
    for _ in 0..2 {
        let (st, page) = open(&approve_a).await;
        assert_eq!(st, 200, "{page}");
        assert!(page.contains("Deploy 1.4.2 to production?") && page.contains(r#"name="input.reason""#), "{page}");
    }
    assert_eq!(step(&detail(s, &a).await, "go_live")["status"], "waiting", "a GET decided");

    // Another run's token on this address, an altered token, an approve token on the reject
    // address: refused.
    let token_b = approve_b.split_once("?token=").unwrap().1;
    let crossed = format!("{}?token={token_b}", approve_a.split_once("?token=").unwrap().0);
    let (st, page) = press(&crossed, &[("input.reason", "x")]).await;
    assert_eq!((st, page.contains("another step")), (403, true), "{page}");
    let token_a = approve_a.split_once("?token=").unwrap().1;
    let on_reject = format!("{}?token={token_a}", reject_a.split_once("?token=").unwrap().0);
    assert_eq!(press(&on_reject, &[]).await.0, 403, "an approve token does not reject");
    let mut altered = approve_a.clone().into_bytes();
    let last = altered.len() - 3;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let (st, page) = press(&String::from_utf8(altered).unwrap(), &[("input.reason", "x")]).await;
    assert_eq!((st, page.contains("altered")), (403, true), "{page}");

    // A wrong answer records nothing and leaves the link usable.
    let (st, page) = press(&approve_a, &[("input.size", "many")]).await;
    assert_eq!(st, 400, "{page}");
    assert_eq!(step(&detail(s, &a).await, "go_live")["status"], "waiting");

    let (st, page) = press(&approve_a, &[("input.reason", "from my phone"), ("comment", "lgtm")]).await;
    assert_eq!(st, 200, "{page}");
    assert!(page.contains("Recorded: approved"), "{page}");
    let d = detail(s, &a).await;
    let ap = &step(&d, "go_live")["approval"];
    assert_eq!((ap["decided_by"].as_str(), ap["comment"].as_str()), (Some("signed link"), Some("lgtm")), "{d}");
    assert_eq!(ap["inputs"]["reason"], "from my phone");
    assert!(step(&d, "go_live")["approval"].is_object());

    // Used once; the reject link of the decided step finds nothing to decide.
    let (st, page) = press(&approve_a, &[("input.reason", "again")]).await;
    assert_eq!((st, page.contains("already used")), (409, true), "{page}");
    let (st, page) = press(&reject_a, &[]).await;
    assert_eq!(st, 409, "{page}");
    assert!(page.contains("already approved by signed link"), "{page}");
    assert_eq!(step(&detail(s, &b).await, "go_live")["status"], "waiting", "B is untouched");
}

#[tokio::test]
async fn signed_links_decide_once_for_their_step_on_sqlite() {
    let s = start_with(with_workflows).await;
    link_story(&s).await;
}

#[tokio::test]
async fn signed_links_decide_once_for_their_step_on_postgresql() {
    let Some(db) = PgDatabase::create().await else { return };
    let s = start_on_with(&db.url, with_workflows).await;
    link_story(&s).await;
    drop(s);
    db.drop_it().await;
}

// On held time: the link's life passes when the test moves the clock.
#[tokio::test(start_paused = true)]
async fn an_expired_approval_link_is_refused() {
    let s = start_held(|c| {
        with_workflows(c);
    })
    .await;
    setup(&s).await;
    let run = waiting_run(&s).await;
    let (approve, _) = links_of(&s, &run).await;
    // The step's own timeout is 24 h; make the link outlive nothing by moving past both.
    tokio::time::advance(LINK_TTL + Duration::from_secs(1)).await;
    let (st, page) = open(&approve).await;
    assert_eq!((st, page.contains("expired")), (410, true), "{page}");
    let (st, page) = press(&approve, &[("input.reason", "late")]).await;
    assert_eq!((st, page.contains("expired")), (410, true), "{page}");
    let d = detail(&s, &run).await;
    assert_ne!(step(&d, "go_live")["approval"]["decided_by"], "signed link", "{d}");
}
