//! Notification delivery end to end: notifications go in through the real API, the real delivery
//! loop sends them, and local HTTP receivers (`Sink`) record what arrives. Covers the outbound
//! address checks, redirects, each service's request shape, retries after a 5xx or a timeout,
//! and fan-out to several channels.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::time::Duration;

use serde_json::{Value, json};

use agent_os_core::channel::{self, Channel};
use agent_os_engine::testing::nap;

mod common;
use common::*;

fn chan(name: &str, url: &str) -> Channel {
    channel::parse(name, url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// `host:port` of a receiver's base URL.
fn authority(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// Registers a project `name` with one do-nothing task; the directory must outlive the test.
async fn add_project(s: &TestServer, name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(name);
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), format!("name: {name}\ntasks:\n  t: {{ run: \"true\" }}\n")).unwrap();
    s.add(&root).await;
    dir
}

/// Posts a notification as the admin and expects it stored (201).
async fn notify(s: &TestServer, body: Value) -> Value {
    let (st, n) = s.post("/api/v1/notifications", body).await;
    assert_eq!(st, 201, "{n}");
    n
}

/// The delivery of notification `n` to `channel`.
fn delivery<'a>(n: &'a Value, channel: &str) -> &'a Value {
    n["deliveries"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["channel"] == channel))
        .unwrap_or_else(|| panic!("no delivery to {channel}: {n:#}"))
}

/// An API time as milliseconds since the epoch.
fn millis(t: &Value) -> i64 {
    let text = t.as_str().unwrap_or_else(|| panic!("not a time: {t}"));
    text.parse::<jiff::Timestamp>().unwrap_or_else(|e| panic!("{text}: {e}")).as_millisecond()
}

/// Notification `id` in the delivery log, if it is there.
fn find<'a>(list: &'a Value, id: &Value) -> Option<&'a Value> {
    list.as_array()?.iter().find(|n| n["id"] == *id)
}

/// Polls the delivery log until `done` holds for notification `n` (as the log shows it then),
/// for at most `within`, and returns it. Found by id: Agent OS may send notifications of its own.
async fn wait_for(s: &TestServer, n: &Value, within: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let id = n["id"].clone();
    let list = wait_log(s, within, what, |l| find(l, &id).is_some_and(&done)).await;
    find(&list, &id).cloned().unwrap_or_default()
}

/// True once an attempt at notification `n`'s delivery to `channel` has been recorded.
fn attempted(n: &Value, channel: &str) -> bool {
    let d = delivery(n, channel);
    d["status"] != "pending" || !d["last_error"].is_null()
}

fn delivered(n: &Value) -> bool {
    n["deliveries"][0]["status"] == "delivered"
}

#[tokio::test]
async fn private_and_local_targets_are_refused_at_once_and_never_called() {
    // Both loopback receivers listen on one port, so `localhost:PORT` reaches one of them
    // whichever address the name resolves to.
    let (v4, v4_url) = Sink::start(&[200]).await;
    let port = v4_url.rsplit(':').next().unwrap().to_string();
    let v6 = match Sink::answering(&[200]).listen(&format!("[::1]:{port}")).await {
        Ok((sink, _)) => Some(sink),
        Err(e) => {
            eprintln!("no receiver on [::1]:{port} ({e}); the [::1] channel is checked for its refusal only");
            None
        }
    };
    let targets = [
        ("v6-loopback", format!("json://[::1]:{port}/x"), &["::1"][..]),
        ("private-net", "json://10.1.2.3/x".to_string(), &["10.1.2.3"]),
        ("cloud-metadata", "json://169.254.169.254/latest/meta-data".to_string(), &["169.254.169.254"]),
        ("v4-mapped-loopback", format!("json://[::ffff:127.0.0.1]:{port}/x"), &["127.0.0.1"]),
        ("name-for-loopback", format!("json://localhost:{port}/x"), &["127.0.0.1", "::1"]),
    ];
    let s = start_with(|c| {
        assert!(!c.allow_private_targets, "private targets are refused unless allowed");
        for (name, url, _) in &targets {
            c.channels.push(chan(name, url));
        }
    })
    .await;
    let n = notify(&s, json!({"title": "hello"})).await;
    assert_eq!(n["deliveries"].as_array().map(Vec::len), Some(targets.len()), "{n}");

    // A refusal takes no network time: were 10.1.2.3 or 169.254.169.254 actually dialled, their
    // attempts would still be waiting on the 10 s timeout.
    let n = wait_for(&s, &n, Duration::from_secs(5), "every delivery should be refused", |n| {
        targets.iter().all(|(name, _, _)| delivery(n, name)["status"] != "pending")
    })
    .await;
    for (name, _, addresses) in &targets {
        let d = delivery(&n, name);
        assert_eq!(d["status"], "failed", "{name}: {d}");
        assert_eq!(d["attempts"], 1, "{name}: refused once, never retried: {d}");
        assert!(d["last_status"].is_null() && d["next_at"].is_null() && d["delivered_at"].is_null(), "{name}: {d}");
        let error = d["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("private or local address"), "{name}: {error}");
        assert!(error.contains("allow_private_targets"), "{name} says how to allow it: {error}");
        assert!(addresses.iter().any(|a| error.contains(a)), "{name} names the address it refused: {error}");
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(v4.received().is_empty(), "nothing reached 127.0.0.1: {:?}", v4.received());
    if let Some(v6) = v6 {
        assert!(v6.received().is_empty(), "nothing reached [::1]: {:?}", v6.received());
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_the_attempt_counts_as_failed() {
    let (elsewhere, elsewhere_url) = Sink::start(&[200]).await;
    let (redirector, redirector_url) =
        Sink::answering(&[302]).redirecting_to(&format!("{elsewhere_url}/stolen")).listen("127.0.0.1:0").await.unwrap();
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("hook", &format!("json://{}/hook", authority(&redirector_url))));
    })
    .await;
    let n = notify(&s, json!({"title": "moved?"})).await;
    let n = wait_for(&s, &n, Duration::from_secs(10), "the attempt should be recorded", |n| attempted(n, "hook")).await;
    let d = delivery(&n, "hook");
    assert_eq!(
        (d["status"].as_str(), d["attempts"].as_i64(), d["last_status"].as_i64()),
        (Some("pending"), Some(1), Some(302)),
        "a 3xx is a failed attempt, retried on the schedule: {d}"
    );
    assert_eq!(d["last_error"], "the receiver answered 302");
    assert!(d["next_at"].is_string() && d["delivered_at"].is_null(), "{d}");
    let asked = redirector.received();
    assert_eq!((asked.len(), asked[0].path.as_str()), (1, "/hook"), "{asked:?}");
    assert!(elsewhere.received().is_empty(), "the redirect was followed: {:?}", elsewhere.received());
}

#[tokio::test]
async fn ntfy_gets_its_json_publish_with_a_priority_per_severity_and_basic_auth() {
    let (ntfy, url) = Sink::start(&[200]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("phone", &format!("ntfy://user:pass@{}/alerts", authority(&url))));
    })
    .await;
    let _project = add_project(&s, "trading").await;
    for severity in ["critical", "warning", "info"] {
        let n = notify(
            &s,
            json!({"project": "trading", "title": format!("Spike {severity}"), "body": format!("ETH moved ({severity})"),
                   "severity": severity, "tags": ["eth", severity]}),
        )
        .await;
        wait_for(&s, &n, Duration::from_secs(10), "it should be delivered", delivered).await;
    }
    let got = ntfy.received();
    assert_eq!(got.len(), 3, "{got:?}");
    for (severity, priority) in [("critical", 5), ("warning", 4), ("info", 3)] {
        let r = got
            .iter()
            .find(|r| r.body["title"] == format!("Spike {severity} · trading"))
            .unwrap_or_else(|| panic!("no {severity} notification among {got:?}"));
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/"), "ntfy's JSON publish is a POST to /");
        assert_eq!(r.header("authorization"), "Basic dXNlcjpwYXNz", "base64 of user:pass");
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(
            r.body,
            json!({"topic": "alerts", "title": format!("Spike {severity} · trading"),
                   "message": format!("ETH moved ({severity})"), "priority": priority, "tags": ["eth", severity]}),
        );
    }
}

#[tokio::test]
async fn slack_gets_its_webhook_path_and_a_text_with_title_and_body() {
    let (slack, url) = Sink::start(&[200]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("ops", &format!("slack://T1/B2/sec?base={url}")));
    })
    .await;
    let _project = add_project(&s, "trading").await;
    let n =
        notify(&s, json!({"project": "trading", "title": "Disk full", "body": "/var at 91%", "severity": "critical"}))
            .await;
    wait_for(&s, &n, Duration::from_secs(10), "it should be delivered", delivered).await;
    let got = slack.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("POST", "/services/T1/B2/sec"));
    let body = got[0].body.as_object().unwrap_or_else(|| panic!("not a JSON object: {:?}", got[0]));
    assert_eq!(body.keys().collect::<Vec<_>>(), ["text"], "{body:?}");
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("🔴 *Disk full* · trading\n"), "{text}");
    assert!(text.contains("/var at 91%"), "{text}");
}

#[tokio::test]
async fn discord_content_is_cut_visibly_at_its_limit_and_mentions_nobody() {
    let (discord, url) = Sink::start(&[200]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("team", &format!("discord://123456/tok-en?base={url}")));
    })
    .await;
    let _project = add_project(&s, "trading").await;
    // A notification's body is at most 4,000 bytes, so the longest Discord message comes from
    // the longest body the API takes; a longer one is refused before anything is sent.
    let (st, v) = s.post("/api/v1/notifications", json!({"title": "Long", "body": "y".repeat(5000)})).await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("body")), "{v}");
    let body = format!("@everyone {}", "x".repeat(3990));
    let n = notify(&s, json!({"project": "trading", "title": "Long", "body": body})).await;
    wait_for(&s, &n, Duration::from_secs(10), "it should be delivered", delivered).await;
    let got = discord.received();
    assert_eq!(got.len(), 1, "only the accepted notification was sent: {got:?}");
    assert_eq!(got[0].path, "/api/webhooks/123456/tok-en");
    let content = got[0].body["content"].as_str().unwrap();
    assert!(content.chars().count() <= channel::DISCORD_LIMIT, "{} characters", content.chars().count());
    assert!(content.starts_with("🔵 **Long** · trading\n@everyone xxx"), "{content:.60}");
    assert!(content.ends_with("\n… (cut: too long for this channel)"), "the cut is visible");
    assert_eq!(got[0].body["allowed_mentions"], json!({"parse": []}), "@everyone pings no one");
}

// On held time: the 10 s pause before the retry passes when the test says so.
#[tokio::test(start_paused = true)]
async fn a_5xx_answer_leaves_the_delivery_pending_for_a_retry_ten_seconds_later() {
    let (sink, url) = Sink::start(&[500]).await;
    let s = start_held(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("hook", &format!("json://{}/in", authority(&url))));
    })
    .await;
    let before = s.engine.now();
    let n = notify(&s, json!({"title": "server error"})).await;
    let n = wait_for(&s, &n, Duration::from_secs(10), "the attempt should be recorded", |n| attempted(n, "hook")).await;
    let after = s.engine.now();
    let d = delivery(&n, "hook");
    assert_eq!(
        (d["status"].as_str(), d["attempts"].as_i64(), d["last_status"].as_i64()),
        (Some("pending"), Some(1), Some(500)),
        "{d}"
    );
    assert_eq!(d["last_error"], "the receiver answered 500");
    // The attempt was made between `before` and `after`; the next one is due 10 s after it.
    let next = millis(&d["next_at"]);
    assert!(
        (before + 10_000..=after + 10_000).contains(&next),
        "next attempt at {next}, attempt in [{before}, {after}]"
    );
    tokio::time::advance(Duration::from_millis(9_999)).await;
    nap(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 1, "no retry before its time");
    tokio::time::advance(Duration::from_millis(1)).await;
    arrived(&sink, 2).await;
    let n = wait_for(&s, &n, Duration::from_secs(10), "the retry should be recorded", |n| {
        millis(&delivery(n, "hook")["next_at"]) > next
    })
    .await;
    assert_eq!(delivery(&n, "hook")["attempts"], 2, "the retry came at its time: {n}");
}

/// Waits (real time) until `sink` has received `n` requests.
async fn arrived(sink: &Sink, n: usize) {
    agent_os_engine::testing::eventually("the request should arrive", Duration::from_secs(10), async || {
        (sink.received().len() >= n).then_some(())
    })
    .await;
}

// On held time: the receiver's silence and the sender's 10 s timeout are tokio timers, which
// pass when the test moves the clock.
#[tokio::test(start_paused = true)]
async fn a_receiver_that_never_answers_times_out_after_ten_seconds() {
    let (sink, url) = Sink::answering(&[200]).delayed(Duration::from_secs(120)).listen("127.0.0.1:0").await.unwrap();
    let s = start_held(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("hook", &format!("json://{}/in", authority(&url))));
    })
    .await;
    let posted = tokio::time::Instant::now();
    let n = notify(&s, json!({"title": "anyone there?"})).await;
    arrived(&sink, 1).await;
    tokio::time::advance(Duration::from_millis(9_999)).await;
    nap(Duration::from_millis(300)).await;
    let (_, list) = s.get("/api/v1/notifications").await;
    let waiting = list.as_array().unwrap().iter().find(|l| l["id"] == n["id"]).unwrap();
    assert!(!attempted(waiting, "hook"), "still waiting for the answer just before 10 s: {waiting}");
    tokio::time::advance(Duration::from_millis(1)).await;
    let n = wait_for(&s, &n, Duration::from_secs(20), "the attempt should time out", |n| attempted(n, "hook")).await;
    assert!(posted.elapsed() >= Duration::from_secs(10), "gave up after {:?}", posted.elapsed());
    let d = delivery(&n, "hook");
    assert_eq!(d["status"], "pending", "a timeout is retried: {d}");
    assert!(d["last_status"].is_null(), "no answer, no status: {d}");
    let error = d["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("timed out"), "{error}");
    assert!(error.starts_with("json://127.0.0.1:"), "the error names the channel, not its secret: {error}");
    let got = sink.received();
    assert!(!got.is_empty() && got[0].key() == d["id"], "the request was sent: {got:?}");
}

/// Regression: the retry pause was counted from the start of an attempt, so an attempt that
/// timed out after 10 s was due again the moment it ended, and a receiver that hangs was called
/// again at once.
// On held time, like the test above.
#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_waits_its_full_pause_before_the_retry() {
    let (sink, url) = Sink::answering(&[200]).delayed(Duration::from_secs(120)).listen("127.0.0.1:0").await.unwrap();
    let s = start_held(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("hook", &format!("json://{}/in", authority(&url))));
    })
    .await;
    let n = notify(&s, json!({"title": "anyone there?"})).await;
    arrived(&sink, 1).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    let n = wait_for(&s, &n, Duration::from_secs(20), "the attempt should time out", |n| attempted(n, "hook")).await;
    let timed_out = s.engine.now();
    let d = delivery(&n, "hook");
    assert_eq!((d["status"].as_str(), d["attempts"].as_i64()), (Some("pending"), Some(1)), "{d}");
    let next = millis(&d["next_at"]);
    assert!(next >= timed_out + 9_000, "the retry is due {} ms after the timeout, not 10 s", next - timed_out);
    tokio::time::advance(Duration::from_secs(2)).await;
    nap(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 1, "called again right after the timeout");
}

#[tokio::test]
async fn each_channel_gets_its_own_delivery_and_a_failing_one_holds_back_no_other() {
    let (bad, bad_url) = Sink::start(&[500]).await;
    let (good, good_url) = Sink::start(&[200]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        // The failing channel comes first, so it is attempted first.
        c.channels.push(chan("bad", &format!("json://{}/in", authority(&bad_url))));
        c.channels.push(chan("good", &format!("json://{}/in", authority(&good_url))));
    })
    .await;
    let n = notify(&s, json!({"title": "fan out"})).await;
    let ids = [delivery(&n, "bad")["id"].clone(), delivery(&n, "good")["id"].clone()];
    assert_eq!(n["deliveries"].as_array().map(Vec::len), Some(2), "one delivery per channel: {n}");
    assert!(ids[0].is_string() && ids[0] != ids[1], "each delivery has its own id: {ids:?}");

    let n = wait_for(&s, &n, Duration::from_secs(10), "both should be attempted", |n| {
        attempted(n, "bad") && attempted(n, "good")
    })
    .await;
    let (b, g) = (delivery(&n, "bad"), delivery(&n, "good"));
    assert_eq!(
        (b["status"].as_str(), b["attempts"].as_i64(), b["last_status"].as_i64()),
        (Some("pending"), Some(1), Some(500)),
        "{b}"
    );
    assert_eq!(
        (g["status"].as_str(), g["attempts"].as_i64(), g["last_status"].as_i64()),
        (Some("delivered"), Some(1), Some(200)),
        "the failing channel held nothing back: {g}"
    );
    let (to_bad, to_good) = (bad.received(), good.received());
    assert_eq!((to_bad.len(), to_good.len()), (1, 1), "{to_bad:?} {to_good:?}");
    assert_eq!(to_bad[0].key(), ids[0], "each receiver sees its own delivery's idempotency key");
    assert_eq!(to_good[0].key(), ids[1]);
    assert_eq!(to_bad[0].body["id"], n["id"], "both carry the same notification");
    assert_eq!(to_good[0].body["id"], n["id"]);
}

/// Each claimed delivery is attempted in its own task: a receiver that never answers holds back
/// no other channel's delivery.
#[tokio::test]
async fn a_receiver_that_never_answers_holds_back_no_other_channel() {
    let (_hung, hung_url) =
        Sink::answering(&[200]).delayed(Duration::from_secs(120)).listen("127.0.0.1:0").await.unwrap();
    let (good, good_url) = Sink::start(&[200]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("hung", &format!("json://{}/in", authority(&hung_url))));
        c.channels.push(chan("good", &format!("json://{}/in", authority(&good_url))));
    })
    .await;
    let n = notify(&s, json!({"title": "fan out"})).await;
    let n =
        wait_for(&s, &n, Duration::from_secs(5), "the healthy channel should be delivered before the timeout", |n| {
            delivery(n, "good")["status"] == "delivered"
        })
        .await;
    assert_eq!(delivery(&n, "hung")["status"], "pending");
    assert_eq!(good.received().len(), 1);
}

/// Sends one notification from project `trading` and waits until its delivery is delivered.
async fn notify_delivered(s: &TestServer, body: Value) -> Value {
    let n = notify(s, body).await;
    wait_for(s, &n, Duration::from_secs(10), "it should be delivered", delivered).await
}

#[tokio::test]
async fn telegram_gets_one_send_message_per_chat_with_its_chat_id_and_a_plain_text() {
    let (telegram, url) = Sink::start(&[200]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("tg", &format!("tgram://123456:FAKE-token_x/-1009876/@ops_room:12?base={url}")));
    })
    .await;
    let _project = add_project(&s, "trading").await;
    notify_delivered(&s, json!({"project": "trading", "title": "Disk full", "body": "/var at 91%", "severity": "warning", "tags": ["disk"]})).await;
    let got = telegram.received();
    assert_eq!(got.len(), 2, "one request per chat: {got:?}");
    for r in &got {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/bot123456:FAKE-token_x/sendMessage"));
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.body["text"], "🟠 Disk full · trading\n/var at 91%\ndisk");
        assert_eq!(r.body["link_preview_options"], json!({"is_disabled": true}));
    }
    assert_eq!(got[0].body["chat_id"], -1009876, "a numeric chat id is sent as a number");
    assert!(got[0].body.get("message_thread_id").is_none(), "{}", got[0].body);
    assert_eq!(
        (got[1].body["chat_id"].as_str(), got[1].body["message_thread_id"].as_i64()),
        (Some("@ops_room"), Some(12))
    );
}

// On held time: the wait Telegram names passes when the test says so.
#[tokio::test(start_paused = true)]
async fn a_telegram_429_is_retried_after_the_wait_its_json_body_names() {
    let (telegram, url) = Sink::answering(&[429, 200]).retry_after_in_body(3).listen("127.0.0.1:0").await.unwrap();
    let s = start_held(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("tg", &format!("tgram://123456:FAKEtoken/42?base={url}")));
    })
    .await;
    let before = s.engine.now();
    let n = notify(&s, json!({"title": "flood"})).await;
    let n = wait_for(&s, &n, Duration::from_secs(10), "the attempt should be recorded", |n| attempted(n, "tg")).await;
    let after = s.engine.now();
    let d = delivery(&n, "tg");
    assert_eq!((d["status"].as_str(), d["last_status"].as_i64()), (Some("pending"), Some(429)), "{d}");
    let next = millis(&d["next_at"]);
    assert!(
        (before + 3_000..=after + 3_000).contains(&next),
        "retried after the 3 s in the body, not the 10 s default: next at {next}, attempt in [{before}, {after}]"
    );
    tokio::time::advance(Duration::from_secs(3)).await;
    arrived(&telegram, 2).await;
    let n = wait_for(&s, &n, Duration::from_secs(10), "the retry should be delivered", delivered).await;
    assert_eq!(delivery(&n, "tg")["attempts"], 2, "{n}");
}

#[tokio::test]
async fn pushover_gets_its_keys_devices_limits_and_a_priority_per_severity() {
    let (pushover, url) = Sink::start(&[200]).await;
    let (user, app) = ("uFAKEuserkey".repeat(3)[..30].to_string(), "aFAKEapptoken".repeat(3)[..30].to_string());
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("po", &format!("pover://{user}@{app}/phone?base={url}")));
    })
    .await;
    let _project = add_project(&s, "trading").await;
    let body = "y".repeat(3000);
    notify_delivered(&s, json!({"project": "trading", "title": "T".repeat(200), "body": body, "severity": "critical"}))
        .await;
    notify_delivered(&s, json!({"title": "fyi"})).await;
    let got = pushover.received();
    assert_eq!(got.len(), 2, "{got:?}");
    let r = &got[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/1/messages.json"));
    assert_eq!((r.body["token"].as_str(), r.body["user"].as_str()), (Some(app.as_str()), Some(user.as_str())));
    assert_eq!((r.body["device"].as_str(), r.body["priority"].as_i64()), (Some("phone"), Some(1)));
    // The API's longest title (200) with its project stays within Pushover's 250 (longer ones
    // are cut: the channel's unit test).
    assert_eq!(r.body["title"], format!("{} · trading", "T".repeat(200)));
    let message = r.body["message"].as_str().unwrap();
    assert_eq!(message.chars().count(), channel::PUSHOVER_MESSAGE_LIMIT, "message cut at 1,024");
    assert!(message.ends_with("(cut: too long for this channel)"));
    assert_eq!((got[1].body["message"].as_str(), got[1].body["priority"].as_i64()), (Some("fyi"), Some(-1)));
}

#[tokio::test]
async fn gotify_gets_its_message_api_with_the_app_token_in_a_header() {
    let (gotify, url) = Sink::start(&[200]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("g", &format!("gotify://{}/gotify/AFAKE.tok-en", authority(&url))));
    })
    .await;
    let _project = add_project(&s, "trading").await;
    notify_delivered(&s, json!({"project": "trading", "title": "Spike", "body": "ETH moved", "severity": "critical"}))
        .await;
    let got = gotify.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].method.as_str(), got[0].path.as_str(), got[0].query.as_str()), ("POST", "/gotify/message", ""));
    assert_eq!(got[0].header("x-gotify-key"), "AFAKE.tok-en");
    assert_eq!(got[0].body, json!({"title": "Spike · trading", "message": "ETH moved", "priority": 10}));
}

#[tokio::test]
async fn mattermost_gets_one_webhook_post_per_channel_cut_at_its_limit() {
    let (mattermost, url) = Sink::start(&[200]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("mm", &format!("mmost://agent-os@{}/FAKEhooktoken?channel=ops,alerts", authority(&url))));
    })
    .await;
    notify_delivered(&s, json!({"title": "Disk full", "body": "/var at 91%", "severity": "critical"})).await;
    let got = mattermost.received();
    assert_eq!(got.len(), 2, "{got:?}");
    for (r, channel) in got.iter().zip(["ops", "alerts"]) {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/hooks/FAKEhooktoken"));
        assert_eq!(
            r.body,
            json!({"text": "🔴 **Disk full**\n/var at 91%", "channel": channel, "username": "agent-os"}),
        );
    }
    let long = "z".repeat(20_000);
    let m = channel::Message {
        id: "n",
        project: None,
        title: "t",
        body: &long,
        severity: "info",
        tags: &[],
        at: "",
        incident: None,
        resolves: false,
    };
    let text = channel::payload(channel::Kind::Mattermost, None, &m)["text"].as_str().unwrap().to_string();
    assert_eq!(text.chars().count(), channel::MATTERMOST_LIMIT, "a longer text is cut visibly");
}

#[tokio::test]
async fn google_chat_gets_the_spaces_message_api_with_key_and_token_in_the_query() {
    let (gchat, url) = Sink::start(&[200]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("gc", &format!("gchat://AAAAfake/FAKEkey-1/FAKEtok_2%3D?base={url}")));
    })
    .await;
    let _project = add_project(&s, "trading").await;
    notify_delivered(&s, json!({"project": "trading", "title": "Spike", "body": "ETH moved"})).await;
    let got = gchat.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("POST", "/v1/spaces/AAAAfake/messages"));
    assert_eq!(got[0].query, "key=FAKEkey-1&token=FAKEtok_2%3D");
    assert_eq!(got[0].body, json!({"text": "🔵 *Spike* · trading\nETH moved"}));
}

#[tokio::test]
async fn pagerduty_triggers_on_an_incident_and_resolves_it_with_the_same_dedup_key() {
    let (pagerduty, url) = Sink::start(&[202]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("pd", &format!("pagerduty://FAKEroutingkey@FAKEapikey/trading-host?base={url}")));
    })
    .await;
    let _project = add_project(&s, "trading").await;
    let opened = notify_delivered(
        &s,
        json!({"project": "trading", "title": "Feed stale", "body": "no ticks for 5 min", "severity": "critical", "dedup_key": "feed"}),
    )
    .await;
    let incident = opened["incident_id"].as_str().unwrap_or_else(|| panic!("an incident: {opened}")).to_string();
    let (st, r) =
        s.post("/api/v1/notifications", json!({"project": "trading", "dedup_key": "feed", "resolve": true})).await;
    assert_eq!(st, 201, "{r}");
    wait_for(&s, &r, Duration::from_secs(10), "the resolution should be delivered", delivered).await;
    let got = pagerduty.received();
    assert_eq!(got.len(), 2, "{got:?}");
    for r in &got {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v2/enqueue"));
        assert_eq!(
            (r.body["routing_key"].as_str(), r.body["dedup_key"].as_str()),
            (Some("FAKEroutingkey"), Some(incident.as_str()))
        );
        assert!(!r.headers.values().any(|v| v.contains("FAKEapikey")), "the API key is not sent: {r:?}");
    }
    assert_eq!(got[0].body["event_action"], "trigger");
    let p = &got[0].body["payload"];
    assert_eq!(
        (p["summary"].as_str(), p["severity"].as_str(), p["source"].as_str()),
        (Some("Feed stale · trading"), Some("critical"), Some("trading-host"))
    );
    assert_eq!(p["custom_details"]["body"], "no ticks for 5 min");
    assert!(p["timestamp"].as_str().is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()), "{p}");
    assert_eq!(got[1].body["event_action"], "resolve", "{}", got[1].body);
}

#[tokio::test]
async fn teams_gets_its_workflow_trigger_with_the_signature_and_an_adaptive_card() {
    let (teams, url) = Sink::start(&[202]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan(
            "teams",
            &format!("workflows://prod-01.westus.logic.azure.com:443/FAKEworkflow/FAKE-sig_1?base={url}"),
        ));
    })
    .await;
    let _project = add_project(&s, "trading").await;
    notify_delivered(
        &s,
        json!({"project": "trading", "title": "Spike", "body": "ETH moved", "severity": "warning", "tags": ["eth"]}),
    )
    .await;
    let got = teams.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/workflows/FAKEworkflow/triggers/manual/paths/invoke"));
    assert_eq!(r.query, "api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=FAKE-sig_1");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.body["type"], "message");
    let card = &r.body["attachments"][0];
    assert_eq!(card["contentType"], "application/vnd.microsoft.card.adaptive");
    assert_eq!(
        (card["content"]["type"].as_str(), card["content"]["version"].as_str()),
        (Some("AdaptiveCard"), Some("1.4"))
    );
    let texts: Vec<&str> =
        card["content"]["body"].as_array().unwrap().iter().filter_map(|b| b["text"].as_str()).collect();
    assert_eq!(texts, ["🟠 Spike · trading", "ETH moved", "eth"]);
}

#[tokio::test]
async fn matrix_gets_a_put_per_room_with_a_stable_transaction_id_after_looking_up_an_alias() {
    let (matrix, url) = Sink::answering(&[200])
        .replying(json!({"room_id": "!looked-up:example.org", "event_id": "$e1"}))
        .listen("127.0.0.1:0")
        .await
        .unwrap();
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan(
            "mx",
            &format!("matrix://syt_FAKE_token@{}/!room:example.org/%23ops:example.org", authority(&url)),
        ));
    })
    .await;
    let _project = add_project(&s, "trading").await;
    let n = notify_delivered(
        &s,
        json!({"project": "trading", "title": "Spike", "body": "ETH moved", "severity": "critical"}),
    )
    .await;
    let key = delivery(&n, "mx")["id"].as_str().unwrap().to_string();
    let got = matrix.received();
    assert_eq!(got.len(), 3, "{got:?}");
    for r in &got {
        assert_eq!(r.header("authorization"), "Bearer syt_FAKE_token");
    }
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str()),
        ("GET", "/_matrix/client/v3/directory/room/%23ops%3Aexample.org")
    );
    let txn = |i: usize| format!("{}.{i}", agent_os_core::url::encode_component(&key));
    assert_eq!(
        (got[1].method.as_str(), got[1].path.clone()),
        ("PUT", format!("/_matrix/client/v3/rooms/%21room%3Aexample.org/send/m.room.message/{}", txn(0)))
    );
    assert_eq!(
        (got[2].method.as_str(), got[2].path.clone()),
        ("PUT", format!("/_matrix/client/v3/rooms/%21looked-up%3Aexample.org/send/m.room.message/{}", txn(1))),
        "the alias is sent to as the id the directory named"
    );
    assert_eq!(got[1].body, json!({"msgtype": "m.text", "body": "🔴 Spike · trading\nETH moved"}));
}

// On held time: the throttle's window ends when the test moves the clock.
#[tokio::test(start_paused = true)]
async fn a_held_pagerduty_resolution_is_sent_as_its_own_resolve_event_not_in_a_digest() {
    let (pagerduty, url) = Sink::start(&[202]).await;
    let s = start_held(|c| {
        c.allow_private_targets = true;
        c.channels.push(chan("pd", &format!("pagerduty://FAKEroutingkey@FAKEapikey?base={url}")));
        c.alerting.channels.insert(
            "pd".into(),
            agent_os_core::alerting::ChannelRules {
                throttle: Some(agent_os_core::alerting::Throttle { count: 1, per: Duration::from_secs(2) }),
                ..Default::default()
            },
        );
    })
    .await;
    let _project = add_project(&s, "trading").await;
    let opened = notify_delivered(
        &s,
        json!({"project": "trading", "title": "Feed stale", "severity": "critical", "dedup_key": "feed"}),
    )
    .await;
    let incident = opened["incident_id"].as_str().unwrap().to_string();
    let (st, r) =
        s.post("/api/v1/notifications", json!({"project": "trading", "dedup_key": "feed", "resolve": true})).await;
    assert_eq!((st, r["deliveries"][0]["status"].as_str()), (201, Some("held")), "over the throttle: {r}");
    tokio::time::advance(Duration::from_millis(2_001)).await;
    arrived(&pagerduty, 2).await;
    let got = pagerduty.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[1].body["event_action"].as_str(), got[1].body["dedup_key"].as_str()),
        (Some("resolve"), Some(incident.as_str())),
        "the held resolution resolves the alert: {}",
        got[1].body
    );
    assert_eq!(got[1].body["payload"]["summary"], "Resolved: Feed stale · trading", "not a digest");
}
