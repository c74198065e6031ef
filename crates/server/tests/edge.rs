//! What a request may carry, checked at the edge of the real server over HTTP: times near the
//! end of the calendar, NUL in any text, charsets, malformed paths, oversized bodies and cost
//! amounts get a 4xx in the JSON error shape, never a panic, a dropped connection or a 503; and
//! one bad member of a group write does not fail its neighbours. The stories that depend on the
//! database run on SQLite and, with `AGENT_OS_TEST_POSTGRES_URL`, on PostgreSQL. The edge's
//! layers are here too: request ids, the time limit's documented 503, and gzip for pages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;

use serde_json::{Value, json};

mod common;
use common::*;

use agent_os_store::testing::PgDatabase;

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_else(|| panic!("not the JSON error shape: {v}"))
}

fn error_field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or_else(|| panic!("no field named: {v}"))
}

async fn add_project(s: &TestServer, dir: &Path, name: &str, manifest: &str) {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), manifest).unwrap();
    s.add(&root).await;
}

#[tokio::test]
async fn a_timeline_near_the_end_of_the_calendar_is_answered_not_a_panic() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    add_project(
        &s,
        dir.path(),
        "late",
        "name: late\ntasks:\n  t: { run: \"true\" }\nschedules:\n  - { task: t, cron: \"*/15 * * * *\", timezone: Pacific/Kiritimati }\n  - { task: t, cron: \"0 0 * * *\", timezone: America/Los_Angeles }\n",
    )
    .await;
    // The default window (24 h) would end past the last representable instant: it ends there.
    let (st, v) = s.get("/api/v1/schedules/timeline?from=9999-12-30T21:00:00Z").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["to"], "9999-12-30T22:00:00.000Z", "{v}");
    assert!(!v["fires"].as_array().unwrap().is_empty(), "fires in the last hour: {v}");
    let (st, v) = s.get("/api/v1/schedules/timeline?from=9999-12-30T00:00:00Z&to=9999-12-30T22:00:00Z").await;
    assert_eq!(st, 200, "{v}");

    for (query, field) in [
        ("from=9999-12-31T00:00:00Z", "from"),
        ("from=1969-12-31T23:59:59Z", "from"),
        ("from=-009999-01-01T00:00:00Z", "from"),
        ("from=2026-01-01T00:00:00Z&to=+010000-01-01T00:00:00Z", "to"),
        ("window=100000000d", "window"),
        ("window=2d", "window"),
    ] {
        let (st, v) = s.get(&format!("/api/v1/schedules/timeline?{query}")).await;
        assert_eq!((st, error_code(&v), error_field(&v)), (400, "bad_request", field), "{query}: {v}");
    }
    let (st, v) = s.get("/healthz").await;
    assert_eq!(st, 200, "the server still answers: {v}");
}

#[tokio::test]
async fn a_maintenance_window_ending_past_the_year_9999_is_refused() {
    let s = start().await;
    for body in [
        json!({"duration": "100000000d"}),
        json!({"start": "9999-12-30T00:00:00Z", "duration": "1d"}),
        json!({"start": "1960-01-01T00:00:00Z", "duration": "1h"}),
        json!({"end": "+010000-01-01T00:00:00Z"}),
    ] {
        let (st, v) = s.post("/api/v1/maintenance", body.clone()).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert!(["duration", "start", "end"].contains(&error_field(&v)), "{body}: {v}");
    }
    let (st, v) = s.post("/api/v1/maintenance", json!({"start": "9999-12-29T00:00:00Z", "duration": "1h"})).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["ends_at"], "9999-12-29T01:00:00.000Z", "{v}");
}

#[tokio::test]
async fn cost_ranges_and_times_outside_1970_to_9999_are_refused() {
    let s = start().await;
    for query in ["from=9999-12-31", "from=0001-01-01", "to=-000001-01-01T00:00:00Z"] {
        let (st, v) = s.get(&format!("/api/v1/costs/summary?{query}")).await;
        assert_eq!((st, error_code(&v)), (400, "bad_request"), "{query}: {v}");
    }
    let (st, v) = s.get("/api/v1/costs/summary?from=1970-01-01&to=9999-12-30").await;
    assert_eq!(st, 200, "{v}");
    let dir = tempfile::tempdir().unwrap();
    add_project(&s, dir.path(), "spender", "name: spender\ntasks:\n  t: { run: \"true\" }\n").await;
    let record = json!({"project": "spender", "service": "openai", "amount": "1", "at": "1969-07-20T20:17:00Z"});
    let (st, v) = s.post("/api/v1/costs", record).await;
    assert_eq!((st, error_field(&v)), (400, "at"), "{v}");
}

#[tokio::test]
async fn cost_amounts_that_are_not_plain_decimals_are_refused() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    add_project(&s, dir.path(), "spender", "name: spender\ntasks:\n  t: { run: \"true\" }\n").await;
    for amount in [" 1", "1.", ".5", "1 ", "+1"] {
        let records = json!({"records": [{"project": "spender", "service": "openai", "amount": amount}]});
        let (st, v) = s.post("/api/v1/costs", records).await;
        assert_eq!((st, error_field(&v)), (400, "records[0].amount"), "{amount:?}: {v}");
    }
    for amount in ["1", "1.5", "0.5"] {
        let (st, v) =
            s.post("/api/v1/costs", json!({"project": "spender", "service": "openai", "amount": amount})).await;
        assert_eq!(st, 201, "{amount:?}: {v}");
    }
}

/// Every text field a request can carry, with NUL in it: each is a 400 naming the field, and
/// nothing is stored.
async fn nul_story(s: &TestServer) {
    let dir = tempfile::tempdir().unwrap();
    add_project(s, dir.path(), "nul", "name: nul\ntasks:\n  t: { run: \"true\" }\n").await;
    let bodies = [
        ("/api/v1/tokens", json!({"project": "nul", "name": "ci\u{0}"}), "name"),
        ("/api/v1/notifications", json!({"title": "disk\u{0}", "body": "full"}), "title"),
        ("/api/v1/notifications", json!({"title": "disk", "body": "full\u{0}"}), "body"),
        ("/api/v1/events", json!({"type": "nul.ping", "idempotency_key": "k\u{0}"}), "idempotency_key"),
        ("/api/v1/events", json!({"type": "nul.ping", "data": {"list": ["ok", "a\u{0}b"]}}), "data.list[1]"),
        (
            "/api/v1/costs",
            json!({"records": [{"project": "nul", "service": "openai", "amount": "1", "model": "gpt\u{0}"}]}),
            "records[0].model",
        ),
        (
            "/api/v1/costs",
            json!({"project": "nul", "service": "openai", "amount": "1", "key_name": "nul-openai", "idempotency_key": "\u{0}"}),
            "idempotency_key",
        ),
        ("/api/v1/maintenance", json!({"duration": "1h", "reason": "deploy\u{0}"}), "reason"),
        ("/api/v1/events", json!({"type": "nul.ping", "data": {"k\u{0}": 1}}), "data.k\u{FFFD}"),
    ];
    for (path, body, field) in bodies {
        let (st, v) = s.post(path, body.clone()).await;
        assert_eq!((st, error_code(&v), error_field(&v)), (400, "bad_request", field), "{path} {body}: {v}");
    }
    for (path, field) in [
        ("/api/v1/events?type=a%00b", "type"),
        ("/api/v1/runs?project=nul&task=t%00", "task"),
        ("/api/v1/projects/a%00b", "path"),
        ("/api/v1/runs/a%00b/logs", "path"),
        ("/ping/key%00/slug", "path"),
    ] {
        let (st, v) = s.get(path).await;
        assert_eq!((st, error_code(&v), error_field(&v)), (400, "bad_request", field), "{path}: {v}");
    }
    let (_, events) = s.get("/api/v1/events").await;
    assert!(events.as_array().unwrap().iter().all(|e| e["type"] != "nul.ping"), "nothing stored: {events}");
    let (_, notes) = s.get("/api/v1/notifications").await;
    assert_eq!(notes.as_array().map(Vec::len), Some(0), "{notes}");
}

#[tokio::test]
async fn nul_in_any_text_field_is_a_400_naming_it_on_sqlite() {
    nul_story(&start().await).await;
}

#[tokio::test]
async fn nul_in_any_text_field_is_a_400_naming_it_on_postgresql() {
    let Some(db) = PgDatabase::create().await else { return };
    nul_story(&start_on(&db.url).await).await;
    db.drop_it().await;
}

/// 500 good events sent at once beside three NUL-keyed ones (0, 168, 336): every good one is stored.
async fn events_story(s: &TestServer) {
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..503 {
        let key = if i % 168 == 0 { format!("bad\u{0}{i}") } else { format!("good-{i}") };
        let (http, url, admin) = (s.http.clone(), s.url.clone(), s.admin.clone());
        sends.spawn(async move {
            let resp = http
                .post(format!("{url}/api/v1/events"))
                .bearer_auth(admin)
                .json(&json!({"type": "load.tick", "idempotency_key": key, "data": {"i": i}}))
                .send()
                .await
                .unwrap();
            (i, resp.status().as_u16())
        });
    }
    let mut good = 0;
    while let Some(r) = sends.join_next().await {
        let (i, status) = r.unwrap();
        if i % 168 == 0 {
            assert_eq!(status, 400, "event {i} has a NUL key");
        } else {
            assert_eq!(status, 201, "event {i} is good");
            good += 1;
        }
    }
    assert_eq!(good, 500);
}

#[tokio::test]
async fn five_hundred_good_events_all_succeed_beside_nul_keyed_ones_on_sqlite() {
    events_story(&start().await).await;
}

#[tokio::test]
async fn five_hundred_good_events_all_succeed_beside_nul_keyed_ones_on_postgresql() {
    let Some(db) = PgDatabase::create().await else { return };
    events_story(&start_on(&db.url).await).await;
    db.drop_it().await;
}

/// Below the edge: events the database itself refuses (PostgreSQL cannot store NUL) share a
/// group commit with good ones; only they fail.
#[tokio::test]
async fn a_group_write_fails_only_the_event_the_database_refuses() {
    let Some(db) = PgDatabase::create().await else { return };
    let s = start_on(&db.url).await;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..503 {
        let engine = s.engine.clone();
        let key = if i % 168 == 0 { format!("bad\u{0}{i}") } else { format!("good-{i}") };
        sends.spawn(async move { (i, engine.emit_event(None, "load.tick", json!({"i": i}), Some(key)).await.is_ok()) });
    }
    let mut stored = 0;
    while let Some(r) = sends.join_next().await {
        let (i, ok) = r.unwrap();
        assert_eq!(ok, i % 168 != 0, "event {i}");
        stored += usize::from(ok);
    }
    assert_eq!(stored, 500);
    let (_, events) = s.get("/api/v1/events?type=load.tick&limit=1000").await;
    assert_eq!(events.as_array().map(Vec::len), Some(500), "every good event is stored once");
    drop(s);
    db.drop_it().await;
}

#[tokio::test]
async fn refusals_before_any_handler_answer_in_the_json_error_shape() {
    let s = start().await;
    let (st, v) = s.get("/api/v1/projects/%FF").await;
    assert_eq!((st, error_code(&v), error_field(&v)), (400, "bad_request", "path"), "{v}");

    // The ping endpoint takes bodies up to axum's limit; past it, the JSON error shape too.
    let resp = s.http.post(format!("{}/ping/key/slug", s.url)).body(vec![b'x'; 3 * 1024 * 1024]).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&v), "payload_too_large", "{v}");
    // Its own answers stay plain text for curl.
    let resp = s.http.get(format!("{}/ping/key/slug", s.url)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.text().await.unwrap(), "not found");
}

#[tokio::test]
async fn json_declared_in_another_charset_than_utf8_is_refused_with_415() {
    let s = start().await;
    let send = |ct: &'static str| {
        s.http
            .post(format!("{}/api/v1/events", s.url))
            .bearer_auth(&s.admin)
            .header("content-type", ct)
            .body(r#"{"type": "charset.test"}"#)
            .send()
    };
    for ct in [
        "application/json; charset=latin1",
        "application/json;charset=\"ISO-8859-1\"",
        "application/json; charset=utf-16",
    ] {
        let resp = send(ct).await.unwrap();
        assert_eq!(resp.status().as_u16(), 415, "{ct}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(error_code(&v), "unsupported_media_type", "{v}");
    }
    for ct in ["application/json", "application/json; charset=utf-8", "application/json; charset=\"UTF-8\""] {
        assert_eq!(send(ct).await.unwrap().status().as_u16(), 201, "{ct}");
    }
}

#[tokio::test]
async fn project_tokens_cannot_read_workflow_runs_as_documented() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    add_project(&s, dir.path(), "reader", "name: reader\ntasks:\n  t: { run: \"true\" }\n").await;
    let (st, tok) = s.post("/api/v1/tokens", json!({"project": "reader"})).await;
    assert_eq!(st, 201, "{tok}");
    let t = tok["token"].as_str();
    let get = reqwest::Method::GET;
    let (st, _) = s.req(get.clone(), "/api/v1/workflows", t, None).await;
    assert_eq!(st, 200, "workflow definitions are readable");
    for path in [
        "/api/v1/workflows/runs",
        "/api/v1/workflows/runs/0190a000-0000-7000-8000-000000000000",
        "/api/v1/workflows/runs/0190a000-0000-7000-8000-000000000000/wait?timeout=1s",
    ] {
        let (st, v) = s.req(get.clone(), path, t, None).await;
        assert_eq!((st, error_code(&v)), (403, "forbidden"), "{path}: {v}");
    }
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md")).unwrap();
    assert!(
        docs.contains("| `GET /api/v1/workflows/runs`, `GET /api/v1/workflows/runs/{id}`, `…/wait` | yes | `403`"),
        "docs/api.md says what the server does"
    );
}

#[tokio::test]
async fn nul_in_a_dashboard_form_field_is_refused_naming_it() {
    let s = start().await;
    let b = s.browser().await;
    let page = b.post("/incidents/maintenance", &[("duration", "1h"), ("reason", "deploy\u{0}")]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("The field &quot;reason&quot; holds a NUL character"), "{}", page.body);
    let (_, windows) = s.get("/api/v1/maintenance").await;
    assert!(windows.as_array().unwrap().iter().all(|m| m["origin"] != "api"), "nothing stored: {windows}");
}

fn request_id_of(resp: &reqwest::Response) -> String {
    resp.headers().get("x-request-id").expect("every answer carries its request id").to_str().unwrap().to_string()
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_only_a_trusted_proxy_may_choose_it() {
    let s = start().await;
    let ask = |s: &TestServer, id: Option<&'static str>| {
        let mut req = s.http.get(format!("{}/healthz", s.url));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        req.send()
    };
    let made = request_id_of(&ask(&s, None).await.unwrap());
    assert_eq!(made.len(), 36, "a UUID: {made}");
    assert_ne!(request_id_of(&ask(&s, None).await.unwrap()), made);
    let (st, v) = s.get("/api/v1/projects/nope").await;
    assert_eq!((st, error_code(&v)), (404, "not_found"), "{v}");
    assert_ne!(request_id_of(&ask(&s, Some("from-a-client")).await.unwrap()), "from-a-client");

    let opts = agent_os_server::ServerOptions {
        trusted_proxies: vec![agent_os_core::net::IpRange::parse("127.0.0.1").unwrap()],
        ..Default::default()
    };
    let behind_proxy = start_with_options(|_| {}, opts).await;
    assert_eq!(request_id_of(&ask(&behind_proxy, Some("proxy-7f3a")).await.unwrap()), "proxy-7f3a");
    assert_eq!(request_id_of(&ask(&behind_proxy, Some("not one token")).await.unwrap()).len(), 36);
}

#[tokio::test]
async fn a_request_past_the_time_limit_is_the_documented_503_naming_it() {
    // One millisecond: hashing a dashboard password (600,000 PBKDF2 rounds) never fits.
    let opts =
        agent_os_server::ServerOptions { request_timeout: std::time::Duration::from_millis(1), ..Default::default() };
    let s = start_with_options(|_| {}, opts).await;
    let resp = s
        .http
        .put(format!("{}/api/v1/dashboard/password", s.url))
        .bearer_auth(&s.admin)
        .json(&json!({"password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    let id = request_id_of(&resp);
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_documented("put".into(), "/api/v1/dashboard/password", status, &text);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((status, error_code(&v)), (503, "timeout"), "{v}");
    assert_eq!(v["error"]["request_id"], id.as_str(), "{v}");
}

#[tokio::test]
async fn pages_and_assets_are_gzipped_for_a_client_that_asks() {
    let s = start().await;
    for path in ["/login", "/assets/app.css", "/assets/app.js"] {
        let plain = s.http.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert!(plain.headers().get("content-encoding").is_none(), "{path}: not asked for");
        let plain = plain.bytes().await.unwrap();
        let gz = s.http.get(format!("{}{path}", s.url)).header("accept-encoding", "gzip").send().await.unwrap();
        assert_eq!(gz.status().as_u16(), 200, "{path}");
        assert_eq!(gz.headers()["content-encoding"], "gzip", "{path}");
        let gz = gz.bytes().await.unwrap();
        assert!(gz.starts_with(&[0x1f, 0x8b]) && gz.len() < plain.len(), "{path}: {} of {}", gz.len(), plain.len());
    }
    let api = s.http.get(format!("{}/api/v1/projects", s.url)).bearer_auth(&s.admin).header("accept-encoding", "gzip");
    assert!(api.send().await.unwrap().headers().get("content-encoding").is_none(), "JSON goes as it is");
}

/// JSON Schema counts a text's length in characters; so does every check of a length the
/// document states, so a value the document allows is never refused for its bytes, and a
/// text the document says must hold something is refused when it is only spaces.
#[tokio::test]
async fn text_limits_count_characters_as_the_document_states_them() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let start_run =
        |trigger: String| s.post("/api/v1/runs", json!({"project": "fixture", "task": "echo", "trigger": trigger}));

    let (st, v) = start_run("é".repeat(64)).await;
    assert_eq!(st, 201, "64 two-byte characters are within 1 to 64: {v}");
    assert_eq!(v["trigger"], "é".repeat(64));
    let (st, v) = start_run("é".repeat(65)).await;
    assert_eq!((st, error_field(&v)), (400, "trigger"), "{v}");
    let (st, v) = start_run("   ".into()).await;
    assert_eq!((st, error_field(&v)), (400, "trigger"), "{v}");

    let (st, v) = s.post("/api/v1/tokens", json!({"project": "fixture", "name": "ü".repeat(100)})).await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = s.post("/api/v1/tokens", json!({"project": "fixture", "name": "ü".repeat(101)})).await;
    assert_eq!((st, error_field(&v)), (400, "name"), "{v}");

    let (st, v) = s.post("/api/v1/events", json!({"type": "fixture.done", "idempotency_key": "ß".repeat(100)})).await;
    assert!(st == 201 || st == 200, "{st} {v}");
    let (st, v) = s.post("/api/v1/events", json!({"type": "fixture.done", "idempotency_key": "ß".repeat(101)})).await;
    assert_eq!((st, error_field(&v)), (400, "idempotency_key"), "{v}");
}
