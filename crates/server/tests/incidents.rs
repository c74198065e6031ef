//! Incidents end to end: real runs, checks, probes and budgets raise them; a local receiver
//! shows what the channels hear (once on open, once on resolve, nothing while flapping or in
//! maintenance); routes, throttles and quiet hours decide where and when.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_os_core::alerting::{ChannelRules, QuietHours, Route, Severity, Throttle};
use agent_os_engine::testing::nap;
use common::*;
use serde_json::{Value, json};

/// A json channel named `name` to the receiver at `url`.
fn json_channel(name: &str, url: &str) -> agent_os_core::channel::Channel {
    agent_os_core::channel::parse(name, &format!("json://{}/{name}", url.trim_start_matches("http://"))).unwrap()
}

/// A project `trading` whose task `flaky` fails until the file `ok` exists in its directory.
fn trading(dir: &Path, extra: &str) -> PathBuf {
    let root = dir.join("trading");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        format!("name: trading\ntasks:\n  flaky: {{ run: \"test -f ok || {{ echo exchange down >&2; exit 3; }}\" }}\n{extra}"),
    )
    .unwrap();
    root
}

/// Waits until the receiver holds `n` requests, then a moment more to see that no more come
/// (real time, so it also serves tests on held time).
async fn received(sink: &Sink, n: usize) -> Vec<Received> {
    for _ in 0..200 {
        if sink.received().len() >= n {
            break;
        }
        nap(Duration::from_millis(50)).await;
    }
    nap(Duration::from_millis(300)).await;
    let got = sink.received();
    assert_eq!(got.len(), n, "{:#?}", got.iter().map(|r| r.body["title"].clone()).collect::<Vec<_>>());
    got
}

async fn incidents(s: &TestServer, query: &str) -> Vec<Value> {
    let (st, v) = s.get(&format!("/api/v1/incidents{query}")).await;
    assert_eq!(st, 200, "{v}");
    v.as_array().unwrap().clone()
}

async fn wait_incident(s: &TestServer, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..200 {
        let list = incidents(s, "").await;
        if ok(&list) {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {:#}", Value::Array(incidents(s, "").await));
}

#[tokio::test]
async fn a_failing_task_opens_one_incident_told_once_and_resolved_with_its_duration() {
    let (sink, s, dir) = team_and_trading().await;
    let root = dir.path().join("trading");

    for _ in 0..2 {
        let run = s.run("trading", "flaky", json!({})).await;
        assert_eq!(s.wait(run["id"].as_str().unwrap()).await["status"], "failed");
    }
    let open = wait_incident(&s, "one open run incident", |l| l.len() == 1).await;
    let i = &open[0];
    assert_eq!((i["source"].as_str(), i["subject"].as_str()), (Some("run"), Some("trading/flaky")));
    assert_eq!(
        (i["status"].as_str(), i["severity"].as_str(), i["notified"].as_bool()),
        (Some("open"), Some("warning"), Some(true))
    );
    assert!(i["reason"].as_str().unwrap().contains("exit"), "{i}");
    let told = received(&sink, 1).await;
    assert_eq!(told[0].body["title"], "trading/flaky failed", "the second failure is the same incident");

    let (st, acked) =
        s.post(&format!("/api/v1/incidents/{}/ack", i["id"].as_str().unwrap()), json!({"by": "ana"})).await;
    assert_eq!((st, acked["acked_by"].as_str()), (200, Some("ana")), "{acked}");
    let (st, _) = s.post("/api/v1/incidents/nope/ack", json!({})).await;
    assert_eq!(st, 404);

    std::fs::write(root.join("ok"), "").unwrap();
    let run = s.run("trading", "flaky", json!({})).await;
    assert_eq!(s.wait(run["id"].as_str().unwrap()).await["status"], "succeeded");
    let told = received(&sink, 2).await;
    assert_eq!(told[1].body["title"], "Resolved: trading/flaky failed");
    assert!(told[1].body["body"].as_str().unwrap().contains("open for"), "{}", told[1].body);
    assert!(incidents(&s, "?open=true").await.is_empty());
    let all = incidents(&s, "").await;
    assert_eq!((all[0]["status"].as_str(), all[0]["resolved_at"].is_string()), (Some("resolved"), true));
    // The log says which incident each notification told about.
    let (_, log) = s.get("/api/v1/notifications").await;
    assert_eq!(log[0]["incident_id"], all[0]["id"]);
    assert_eq!(log[0]["source"], "run");
}

// On held time: the check's period and grace pass when the test moves the clock.
#[tokio::test(start_paused = true)]
async fn a_missed_check_alerts_late_then_down_and_resolves_on_the_next_ping() {
    let (sink, url) = Sink::start(&[200]).await;
    let s = start_held(|c| {
        c.allow_private_targets = true;
        c.channels.push(json_channel("team", &url));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = trading(dir.path(), "checks:\n  - { slug: nightly, every: 1s, grace: 1s }\n");
    s.add(&root).await;
    let (_, checks) = s.get("/api/v1/checks").await;
    let ping = checks[0]["ping_url"].as_str().unwrap().to_string();
    assert_eq!(reqwest::get(&ping).await.unwrap().status(), 200);

    tokio::time::advance(Duration::from_millis(1_100)).await;
    received(&sink, 1).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let told = received(&sink, 2).await;
    assert_eq!(told[0].body["title"], "trading/nightly is late");
    assert_eq!(told[0].body["severity"], "warning");
    assert_eq!(told[1].body["title"], "Now critical: trading/nightly is down", "down escalates the same incident");
    let open = incidents(&s, "?open=true").await;
    assert_eq!((open.len(), open[0]["severity"].as_str()), (1, Some("critical")));
    let (_, health) = s.get("/api/v1/projects/trading/health").await;
    assert_eq!(health["state"], "down", "{health}");
    assert_eq!(health["reasons"][0]["message"], "check nightly is down");

    assert_eq!(reqwest::get(&ping).await.unwrap().status(), 200);
    let told = received(&sink, 3).await;
    assert_eq!(told[2].body["title"], "Resolved: trading/nightly is down");
}

#[tokio::test]
async fn an_incident_that_keeps_coming_back_is_one_incident_and_stops_alerting() {
    let (sink, url) = Sink::start(&[200]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(json_channel("team", &url));
        c.alerting.flapping = agent_os_core::alerting::Flapping { changes: 4, window: Duration::from_secs(3600) };
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = trading(dir.path(), "");
    s.add(&root).await;
    // fail, succeed, fail, succeed, fail, succeed, fail: seven state changes of one incident.
    for i in 0..7 {
        if i % 2 == 1 {
            std::fs::write(root.join("ok"), "").unwrap();
        } else {
            let _ = std::fs::remove_file(root.join("ok"));
        }
        let run = s.run("trading", "flaky", json!({})).await;
        s.wait(run["id"].as_str().unwrap()).await;
    }
    let titles: Vec<Value> = received(&sink, 5).await.into_iter().map(|r| r.body["title"].clone()).collect();
    assert_eq!(
        titles,
        [
            "trading/flaky failed",
            "Resolved: trading/flaky failed",
            "trading/flaky failed",
            "Resolved: trading/flaky failed",
            "Flapping: trading/flaky failed"
        ]
    );
    let all = incidents(&s, "").await;
    assert_eq!(all.len(), 1, "one incident for all of it");
    assert_eq!((all[0]["flapping"].as_bool(), all[0]["changes"].as_i64()), (Some(true), Some(7)));
}

// On held time: the throttle's window ends when the test moves the clock.
#[tokio::test(start_paused = true)]
async fn routes_choose_channels_and_a_throttle_folds_the_rest_into_one_digest() {
    let (team, team_url) = Sink::start(&[200]).await;
    let (phone, phone_url) = Sink::start(&[200]).await;
    let s = start_held(|c| {
        c.allow_private_targets = true;
        c.channels.push(json_channel("team", &team_url));
        c.channels.push(json_channel("phone", &phone_url));
        c.alerting.routing.routes.push(Route {
            severity: Some(Severity::Critical),
            channels: vec!["phone".into()],
            continue_matching: true,
            ..Default::default()
        });
        c.alerting.routing.routes.push(Route { tags: vec!["quiet".into()], channels: vec![], ..Default::default() });
        c.alerting.routing.default = Some(vec!["team".into()]);
        c.alerting.channels.insert(
            "team".into(),
            ChannelRules { throttle: Some(Throttle { count: 2, per: Duration::from_secs(2) }), ..Default::default() },
        );
    })
    .await;
    let (_, n) = s.post("/api/v1/notifications", json!({"title": "disk full", "severity": "critical"})).await;
    let to: Vec<&str> = n["deliveries"].as_array().unwrap().iter().map(|d| d["channel"].as_str().unwrap()).collect();
    assert_eq!(to, ["phone"], "critical goes to phone; the route continues but nothing else matches, so no default");
    let (_, n) = s.post("/api/v1/notifications", json!({"title": "fyi", "tags": ["quiet"]})).await;
    assert_eq!(n["deliveries"], json!([]), "a route with no channels drops it: {n}");

    for i in 0..5 {
        let (st, n) = s.post("/api/v1/notifications", json!({"title": format!("note {i}")})).await;
        assert_eq!(st, 201);
        let d = &n["deliveries"][0];
        assert_eq!(d["channel"], "team");
        if i < 2 {
            assert_eq!(d["status"], "pending");
        } else {
            assert_eq!((d["status"].as_str(), d["held"].as_str()), (Some("held"), Some("throttle")), "{d}");
        }
    }
    received(&team, 2).await;
    // The held ones wait until the oldest counted message leaves the window: 2 s and 1 ms.
    tokio::time::advance(Duration::from_millis(2_001)).await;
    let got = received(&team, 3).await;
    // The two counted ones are delivered at once, so either may arrive first.
    let mut first_two = [got[0].body["title"].as_str(), got[1].body["title"].as_str()];
    first_two.sort();
    assert_eq!(first_two, [Some("note 0"), Some("note 1")]);
    assert_eq!(got[2].body["title"], "3 notifications held (throttle)");
    let digest = got[2].body["body"].as_str().unwrap();
    assert!(digest.contains("note 2") && digest.contains("note 3") && digest.contains("note 4"), "{digest}");
    let log = wait_log(&s, Duration::from_secs(5), "held deliveries delivered", |l| {
        l.as_array().unwrap().iter().take(3).all(|n| n["deliveries"][0]["status"] == "delivered")
    })
    .await;
    assert_eq!(log[0]["deliveries"][0]["held"], "throttle", "the log says it went in a digest");
    assert_eq!(phone.received().len(), 1);
}

#[tokio::test]
async fn quiet_hours_hold_deliveries_until_they_end_and_let_critical_through() {
    let (sink, url) = Sink::start(&[200]).await;
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let minute = now.hour() as u16 * 60 + now.minute() as u16;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(json_channel("team", &url));
        c.alerting.channels.insert(
            "team".into(),
            ChannelRules {
                quiet_hours: Some(QuietHours {
                    from: (minute + 1440 - 1) % 1440,
                    to: (minute + 2) % 1440,
                    timezone: agent_os_core::cron::Zone::utc(),
                    except: Some(Severity::Critical),
                }),
                ..Default::default()
            },
        );
    })
    .await;
    let (_, n) = s.post("/api/v1/notifications", json!({"title": "nightly report"})).await;
    let d = &n["deliveries"][0];
    assert_eq!((d["status"].as_str(), d["held"].as_str()), (Some("held"), Some("quiet hours")), "{n}");
    let until: jiff::Timestamp = d["next_at"].as_str().unwrap().parse().unwrap();
    let wait = until.as_millisecond() - jiff::Timestamp::now().as_millisecond();
    assert!((30_000..=180_000).contains(&wait), "held until the quiet hours end: {wait} ms");
    let (_, n) = s.post("/api/v1/notifications", json!({"title": "exchange down", "severity": "critical"})).await;
    assert_eq!(n["deliveries"][0]["status"], "pending");
    let got = received(&sink, 1).await;
    assert_eq!(got[0].body["title"], "exchange down", "only the critical one went out");
}

#[tokio::test]
async fn nothing_alerts_in_a_maintenance_window_and_what_is_still_open_is_told_when_it_ends() {
    let (sink, s, _dir) = team_and_trading().await;
    let (st, w) = s
        .post("/api/v1/maintenance", json!({"project": "trading", "duration": "1h", "reason": "exchange upgrade"}))
        .await;
    assert_eq!((st, w["active"].as_bool()), (201, Some(true)), "{w}");
    let (st, e) = s.post("/api/v1/maintenance", json!({"project": "nope", "duration": "1h"})).await;
    assert_eq!(st, 404, "{e}");
    let (st, e) = s.post("/api/v1/maintenance", json!({"duration": "soon"})).await;
    assert_eq!((st, e["error"]["field"].as_str()), (400, Some("duration")), "{e}");

    let (_, n) =
        s.post("/api/v1/notifications", json!({"project": "trading", "title": "spike", "severity": "warning"})).await;
    assert_eq!(n["suppressed"], "maintenance: exchange upgrade", "{n}");
    assert_eq!(n["deliveries"], json!([]));
    let run = s.run("trading", "flaky", json!({})).await;
    s.wait(run["id"].as_str().unwrap()).await;
    let open = wait_incident(&s, "the failure is recorded", |l| !l.is_empty()).await;
    assert_eq!(open[0]["notified"], false, "recorded, not told");
    // A notification about another project is not covered.
    let (_, other) = s.post("/api/v1/notifications", json!({"title": "elsewhere"})).await;
    assert_eq!(other["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(received(&sink, 1).await[0].body["title"], "elsewhere");

    let (_, windows) = s.get("/api/v1/maintenance").await;
    assert_eq!(windows.as_array().unwrap().len(), 1);
    let (st, _) = s
        .req(
            reqwest::Method::DELETE,
            &format!("/api/v1/maintenance/{}", w["id"].as_str().unwrap()),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, 204);
    // The alert loop, woken by the window's end, and two more sweeps all find it untold at
    // once: it is still told once.
    let (a, b) = tokio::join!(s.engine.sweep_incidents(), s.engine.sweep_incidents());
    a.unwrap();
    b.unwrap();
    let got = received(&sink, 2).await;
    assert_eq!(got[1].body["title"], "trading/flaky failed", "told once the window is over");
    assert_eq!(incidents(&s, "?open=true").await[0]["notified"], true);
}

#[tokio::test]
async fn a_project_opens_and_resolves_its_own_incident_by_dedup_key() {
    let (sink, s, _dir) = team_and_trading().await;
    let warn = json!({"project": "trading", "title": "Feed stale", "body": "no ticks for 5 min", "severity": "warning", "dedup_key": "feed"});
    let (st, n) = s.post("/api/v1/notifications", warn.clone()).await;
    assert_eq!(st, 201, "{n}");
    let open = incidents(&s, "?open=true").await;
    assert_eq!((open[0]["source"].as_str(), open[0]["subject"].as_str()), (Some("project"), Some("trading/feed")));
    assert_eq!(n["incident_id"], open[0]["id"]);
    let (st, again) = s.post("/api/v1/notifications", warn).await;
    assert_eq!((st, again["deduplicated"].as_bool()), (200, Some(true)));

    let (st, r) = s
        .post(
            "/api/v1/notifications",
            json!({"project": "trading", "dedup_key": "feed", "resolve": true, "body": "ticks are back"}),
        )
        .await;
    assert_eq!((st, r["title"].as_str()), (201, Some("Resolved: Feed stale")), "{r}");
    let got = received(&sink, 2).await;
    assert!(got[1].body["body"].as_str().unwrap().starts_with("ticks are back (open for"), "{}", got[1].body);
    let (st, e) =
        s.post("/api/v1/notifications", json!({"project": "trading", "dedup_key": "feed", "resolve": true})).await;
    assert_eq!(st, 404, "nothing open any more: {e}");
    // Acknowledging what has recovered is a documented conflict, not a change.
    let (st, e) = s.post(&format!("/api/v1/incidents/{}/ack", open[0]["id"].as_str().unwrap()), json!({})).await;
    assert_eq!((st, e["error"]["code"].as_str()), (409, Some("conflict")), "{e}");
    let (st, e) = s.post("/api/v1/notifications", json!({"resolve": true})).await;
    assert_eq!((st, e["error"]["field"].as_str()), (400, Some("dedup_key")), "{e}");
}

// On held time: each second the test lets pass makes one round of probes.
#[tokio::test(start_paused = true)]
async fn a_failing_health_check_makes_the_project_down_until_it_answers_again() {
    let (svc, svc_url) = Sink::start(&[503, 503, 200]).await;
    let (sink, url) = Sink::start(&[200]).await;
    let s = start_held(|c| {
        c.allow_private_targets = true;
        c.probes_enabled = true;
        c.channels.push(json_channel("team", &url));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&trading(dir.path(), &format!("health: {{ url: \"{svc_url}/healthz\", every: 1s, timeout: 2s }}\n"))).await;
    let next_round = async |asked: usize| {
        tokio::time::advance(Duration::from_secs(1)).await;
        agent_os_engine::testing::eventually("the health check should be asked", Duration::from_secs(10), async || {
            (svc.received().len() >= asked).then_some(())
        })
        .await;
    };
    next_round(1).await;
    let got = received(&sink, 1).await;
    assert_eq!(
        (got[0].body["title"].as_str(), got[0].body["severity"].as_str()),
        (Some("trading is down"), Some("critical"))
    );
    assert!(got[0].body["body"].as_str().unwrap().contains("answered 503, expected 200"), "{}", got[0].body);
    next_round(2).await;
    next_round(3).await;
    let got = received(&sink, 2).await;
    assert_eq!(got[1].body["title"], "Resolved: trading is down");
    let (_, health) = s.get("/api/v1/projects/trading/health?history=10").await;
    assert_eq!(health["state"], "ok", "{health}");
    // The history keeps changes: the two 503 answers are one entry that says so.
    let history: Vec<(&str, i64)> = health["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["state"].as_str().unwrap(), h["repeats"].as_i64().unwrap()))
        .collect();
    assert_eq!(history, [("ok", 1), ("down", 2)], "{health}");
    let down = &health["history"][1];
    assert!(down["since"].as_str().unwrap() < down["at"].as_str().unwrap(), "{down}");
    assert_eq!(svc.received()[0].path, "/healthz");
    let (st, _) = s.get("/api/v1/projects/nope/health").await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn a_budget_threshold_opens_a_budget_incident() {
    let (sink, s, _dir) = team_and_trading().await;
    let (st, b) = s
        .req(
            reqwest::Method::PUT,
            "/api/v1/budgets",
            Some(&s.admin),
            Some(json!({"project": "trading", "period": "monthly", "amount": "10.00"})),
        )
        .await;
    assert!(st == 200 || st == 201, "{b}");
    let spend = |amount: &str, key: &str| json!({"project": "trading", "service": "openai", "amount": amount, "idempotency_key": key});
    let (st, c) = s.post("/api/v1/costs", spend("5.50", "a")).await;
    assert!((200..300).contains(&st), "{c}");
    let got = received(&sink, 1).await;
    assert_eq!(got[0].body["title"], "trading has used 50% of its monthly budget", "{}", got[0].body);
    s.post("/api/v1/costs", spend("5.00", "b")).await;
    let got = received(&sink, 2).await;
    assert_eq!(got[1].body["title"], "Now critical: trading has used 100% of its monthly budget");
    let open = incidents(&s, "?open=true").await;
    assert_eq!(open.len(), 1, "80 % and 100 % are the same incident");
    assert_eq!((open[0]["source"].as_str(), open[0]["subject"].as_str()), (Some("budget"), Some("trading/monthly")));
}

// On held time, like the missed check above.
#[tokio::test(start_paused = true)]
async fn whoever_heard_an_incident_open_or_escalate_hears_it_resolve_whatever_the_routes_say() {
    let (team, team_url) = Sink::start(&[200]).await;
    let (phone, phone_url) = Sink::start(&[200]).await;
    let s = start_held(|c| {
        c.allow_private_targets = true;
        c.channels.push(json_channel("team", &team_url));
        c.channels.push(json_channel("phone", &phone_url));
        c.alerting.routing.routes.push(Route {
            severity: Some(Severity::Critical),
            channels: vec!["phone".into()],
            ..Default::default()
        });
        c.alerting.routing.default = Some(vec!["team".into()]);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&trading(dir.path(), "checks:\n  - { slug: nightly, every: 1s, grace: 1s }\n")).await;
    let (_, checks) = s.get("/api/v1/checks").await;
    let ping = checks[0]["ping_url"].as_str().unwrap().to_string();
    reqwest::get(&ping).await.unwrap();
    // Late (a warning) goes to team; down (critical) to phone and to team, which heard it open.
    tokio::time::advance(Duration::from_millis(1_100)).await;
    received(&team, 1).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let to_team = received(&team, 2).await;
    assert_eq!(to_team[1].body["title"], "Now critical: trading/nightly is down");
    assert_eq!(received(&phone, 1).await[0].body["title"], "Now critical: trading/nightly is down");
    reqwest::get(&ping).await.unwrap();
    assert_eq!(received(&team, 3).await[2].body["title"], "Resolved: trading/nightly is down");
    assert_eq!(
        received(&phone, 2).await[1].body["title"],
        "Resolved: trading/nightly is down",
        "an info message, routed to phone all the same"
    );
}

/// A server telling every notification to a `team` sink, with `trading` registered from the
/// returned directory (its root is `dir/trading`).
async fn team_and_trading() -> (Sink, TestServer, tempfile::TempDir) {
    let (sink, url) = Sink::start(&[200]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(json_channel("team", &url));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&trading(dir.path(), "")).await;
    (sink, s, dir)
}

/// A server telling a `team` sink, with `trading` registered and a daily budget of 0.10 USD
/// that alerts at 50, 80 and 100 %.
async fn trading_with_daily_budget() -> (Sink, TestServer, tempfile::TempDir) {
    let (sink, s, dir) = team_and_trading().await;
    daily_budget(&s, &[50, 80, 100], "alert").await;
    (sink, s, dir)
}

/// Sets a daily budget of 0.10 USD for `trading` with `thresholds` and `on_exceed`.
async fn daily_budget(s: &TestServer, thresholds: &[i64], on_exceed: &str) {
    let (st, b) = s
        .req(
            reqwest::Method::PUT,
            "/api/v1/budgets",
            Some(&s.admin),
            Some(json!({"project": "trading", "period": "daily", "amount": "0.10", "thresholds": thresholds, "on_exceed": on_exceed})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
}

async fn spend(s: &TestServer, amount: &str, key: &str) {
    let (st, c) = s
        .post(
            "/api/v1/costs",
            json!({"project": "trading", "service": "openai", "amount": amount, "idempotency_key": key}),
        )
        .await;
    assert!((200..300).contains(&st), "{c}");
}

#[tokio::test]
async fn a_cost_that_crosses_two_thresholds_is_told_once_at_the_highest() {
    let (sink, s, _dir) = trading_with_daily_budget().await;
    spend(&s, "0.042", "a").await;
    // 42 % to 84 %: past 50 and 80 at once.
    spend(&s, "0.042", "b").await;
    let got = received(&sink, 1).await;
    assert_eq!(got[0].body["title"], "trading has used 80% of its daily budget", "{}", got[0].body);
    let body = got[0].body["body"].as_str().unwrap();
    assert!(body.starts_with("0.084 USD of 0.10 USD spent (84 %)"), "{body}");
    let (_, events) = s.get("/api/v1/events?type=budget.").await;
    assert_eq!(events.as_array().unwrap().len(), 1, "one event for one cost: {events}");
    assert_eq!(
        (events[0]["data"]["threshold"].as_i64(), events[0]["data"]["crossed"].clone()),
        (Some(80), json!([50, 80]))
    );
    let (_, budgets) = s.get("/api/v1/budgets").await;
    assert_eq!(budgets[0]["crossed"], json!([50, 80]), "both are marked, so 50 is never told later");
    spend(&s, "0.002", "c").await;
    spend(&s, "0.02", "d").await;
    let got = received(&sink, 2).await;
    assert_eq!(got[1].body["title"], "Now critical: trading has used 100% of its daily budget");
}

#[tokio::test]
async fn a_higher_threshold_crossed_later_is_told_at_the_same_severity() {
    let (sink, s, _dir) = trading_with_daily_budget().await;
    spend(&s, "0.06", "a").await;
    spend(&s, "0.025", "b").await;
    let got = received(&sink, 2).await;
    assert_eq!(got[0].body["title"], "trading has used 50% of its daily budget");
    assert_eq!(
        got[1].body["title"], "trading has used 80% of its daily budget",
        "80 % is news, though still a warning"
    );
    assert!(got[1].body["body"].as_str().unwrap().contains("(85 %)"), "{}", got[1].body);
    assert_eq!(incidents(&s, "?open=true").await.len(), 1, "one incident all along");
}

#[tokio::test]
async fn budget_resume_rewords_the_incident_that_said_the_project_is_paused() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&trading(dir.path(), "")).await;
    daily_budget(&s, &[100], "pause").await;
    spend(&s, "0.12", "a").await;
    let open = incidents(&s, "?open=true").await;
    assert!(open[0]["reason"].as_str().unwrap().contains("the project is paused until"), "{}", open[0]);
    let (_, health) = s.get("/api/v1/projects/trading/health").await;
    assert!(health.to_string().contains("paused: its daily budget"), "{health}");

    let (st, _) = s.post("/api/v1/projects/trading/resume", json!({})).await;
    assert_eq!(st, 204);
    let open = incidents(&s, "?open=true").await;
    assert_eq!(open.len(), 1, "the budget is still used up: {open:?}");
    let reason = open[0]["reason"].as_str().unwrap();
    assert!(!reason.contains("paused until"), "{reason}");
    assert!(reason.contains("resumed by hand and runs again"), "{reason}");
    let (_, health) = s.get("/api/v1/projects/trading/health").await;
    assert!(!health.to_string().contains("paused:"), "health follows the pause: {health}");
}

#[tokio::test]
async fn a_project_with_an_open_critical_incident_is_not_all_well() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&trading(dir.path(), "")).await;
    let b = s.browser().await;
    assert!(b.get("/").await.body.contains("Nothing reported yet."));
    let (st, n) = s
        .post(
            "/api/v1/notifications",
            json!({"project": "trading", "title": "exchange API rejects our key", "severity": "critical", "dedup_key": "exchange-key"}),
        )
        .await;
    assert!((200..300).contains(&st), "{n}");
    let (_, health) = s.get("/api/v1/projects/trading/health").await;
    assert_eq!(health["state"], "down", "{health}");
    assert!(health.to_string().contains("exchange API rejects our key"), "{health}");
    let page = b.get("/").await.body;
    assert!(!page.contains("All well.") && !page.contains("Nothing reported yet."), "{page}");
    assert!(page.contains("exchange API rejects our key"), "{page}");
}
