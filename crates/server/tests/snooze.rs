//! Snoozes and check dependencies over HTTP: the API's snooze endpoints for checks and
//! projects with their validation, the views that show what is quiet (`/checks`, `/projects`,
//! `/schedules`), the incident that lists the checks held under it, and the dashboard's
//! snooze buttons. A real server on 127.0.0.1 with its own SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

async fn with_project(s: &TestServer, dir: &std::path::Path) {
    let root = dir.join("proj");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        "name: proj\ntasks:\n  nightly: { run: \"true\" }\nschedules:\n  - { task: nightly, cron: \"0 3 * * *\", managed_by: cron }\nchecks:\n  - { slug: db, every: 1h }\n  - { slug: report, every: 1h, depends_on: [db] }\n",
    )
    .unwrap();
    s.add(&root).await;
}

async fn check(s: &TestServer, slug: &str) -> Value {
    let (_, list) = s.get("/api/v1/checks?project=proj").await;
    list.as_array().unwrap().iter().find(|c| c["slug"] == slug).unwrap().clone()
}

#[tokio::test]
async fn checks_and_projects_are_snoozed_over_the_api_and_shown_quiet_everywhere() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    with_project(&s, dir.path()).await;
    let id = check(&s, "nightly").await["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/checks/{id}/snooze");

    // Bad input: 400 naming the field.
    for body in [
        json!({"until": "soon"}),
        json!({"until": "2020-01-01T00:00:00Z"}),
        json!({"until": "100d"}),
        json!({"until": "1h", "reason": "x".repeat(501)}),
    ] {
        let (st, v) = s.post(&path, body.clone()).await;
        assert_eq!(st, 400, "{body}: {v}");
        let field = if body.get("reason").is_some() { "reason" } else { "until" };
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    let (st, v) = s.post(&path, json!({"until": "1h", "for": "me"})).await;
    assert_eq!(st, 400, "unknown fields are refused: {v}");
    let (st, _) = s.post("/api/v1/checks/nope/snooze", json!({"until": "1h"})).await;
    assert_eq!(st, 404);

    let (st, v) = s.post(&path, json!({"until": "2h", "reason": "disk swap"})).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["snoozed_until"].is_string(), "{v}");
    assert_eq!((v["snooze_reason"].as_str(), v["snoozed_by"].as_str()), (Some("disk swap"), Some("admin")));
    assert_eq!(check(&s, "nightly").await["snoozed_until"], v["snoozed_until"]);
    let (_, schedules) = s.get("/api/v1/schedules?project=proj").await;
    assert_eq!(schedules[0]["check"]["snoozed_until"], v["snoozed_until"], "{schedules}");
    let (st, v) = s.req(Method::DELETE, &path, Some(&s.admin), None).await;
    assert_eq!((st, v["snoozed_until"].is_null()), (200, true), "{v}");

    // A project snooze: on the project, and on each of its checks.
    let (st, v) = s.post("/api/v1/projects/proj/snooze", json!({"until": "2030-01-01T00:00:00Z"})).await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("until")), "more than 90 days away: {v}");
    let (st, v) = s.post("/api/v1/projects/proj/snooze", json!({"until": "1d", "reason": "holiday"})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["snooze_reason"], "holiday");
    let (_, projects) = s.get("/api/v1/projects").await;
    assert_eq!(projects[0]["snoozed_until"], v["snoozed_until"]);
    let db = check(&s, "db").await;
    assert_eq!(
        (db["snoozed_until"].clone(), db["project_snoozed"].as_bool()),
        (v["snoozed_until"].clone(), Some(true))
    );
    let (st, _) = s.post("/api/v1/projects/nope/snooze", json!({"until": "1d"})).await;
    assert_eq!(st, 404);

    // A project's token acts for its own project only.
    let root = dir.path().join("other");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), "name: other\n").unwrap();
    s.add(&root).await;
    let other = project_token(&s, "other").await;
    let (st, _) = s.req(Method::DELETE, "/api/v1/projects/proj/snooze", Some(&other), None).await;
    assert_eq!(st, 403);
    let own = project_token(&s, "proj").await;
    let (st, v) = s.req(Method::DELETE, "/api/v1/projects/proj/snooze", Some(&own), None).await;
    assert_eq!((st, v["snoozed_until"].is_null()), (200, true), "{v}");
    assert!(check(&s, "db").await["snoozed_until"].is_null());
}

#[tokio::test]
async fn a_check_held_by_its_upstream_is_listed_under_the_upstreams_incident() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    with_project(&s, dir.path()).await;
    assert_eq!(check(&s, "report").await["depends_on"], json!(["db"]));
    for slug in ["db", "report"] {
        let id = check(&s, slug).await["id"].as_str().unwrap().to_string();
        let (st, _) = s.req(Method::GET, &format!("/ping/{id}/fail"), None, None).await;
        assert_eq!(st, 200);
    }
    let report = check(&s, "report").await;
    assert_eq!((report["state"].as_str(), report["held_by"].as_str()), (Some("down"), Some("proj/db")));
    let (_, open) = s.get("/api/v1/incidents?open=true").await;
    let open = open.as_array().unwrap();
    assert_eq!(open.len(), 1, "one page, not two: {open:?}");
    assert_eq!((open[0]["subject"].as_str(), &open[0]["also_affected"]), (Some("proj/db"), &json!(["proj/report"])));
    let (_, one) = s.get(&format!("/api/v1/incidents/{}", open[0]["id"].as_str().unwrap())).await;
    assert_eq!(one["also_affected"], json!(["proj/report"]));

    // The dashboard shows it held, and snoozes from a button (by project and slug).
    let b = s.browser().await;
    let page = b.get("/projects/proj").await;
    assert!(page.body.contains("held") && page.body.contains("proj/db"), "{}", page.body);
    assert!(page.body.contains("/projects/proj/checks/report/snooze"), "{}", page.body);
    assert!(!page.body.contains(report["id"].as_str().unwrap()), "a check's id is its ping secret");
    let done = b.post("/projects/proj/checks/report/snooze", &[("until", "1d"), ("reason", "")]).await;
    assert_eq!((done.status, done.location.as_deref()), (303, Some("/projects/proj")), "{}", done.body);
    assert!(check(&s, "report").await["snoozed_until"].is_string());
    let page = b.get("/projects/proj").await;
    assert!(page.body.contains("snoozed") && page.body.contains("/projects/proj/checks/report/unsnooze"));
    let refused = b.post_raw("/projects/proj/checks/report/unsnooze", &[]).await;
    assert_eq!(refused.status, 403, "a form without the CSRF token is refused");
    let done = b.post("/projects/proj/checks/report/unsnooze", &[]).await;
    assert_eq!(done.status, 303);
    assert!(check(&s, "report").await["snoozed_until"].is_null());
    let done = b.post("/projects/proj/snooze", &[("until", "8h"), ("reason", "moving")]).await;
    assert_eq!(done.status, 303);
    let page = b.get("/projects").await;
    assert!(page.body.contains("snoozed"), "{}", page.body);
    let page = b.get("/").await;
    assert!(page.body.contains("snoozed"), "the overview's card says so");
}
