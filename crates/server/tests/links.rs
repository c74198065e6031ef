//! Signed acknowledge links: a notification about an incident carries a link that
//! acknowledges it without a login. Opening it changes nothing; its button posts the token
//! back, once; an altered token, one for another incident, an expired one (held time) and a
//! used one are refused with a page saying why. On SQLite, and on PostgreSQL when
//! `AGENT_OS_TEST_POSTGRES_URL` names a server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

use std::time::Duration;

use agent_os_core::alerting::{IncidentSource, Severity};
use agent_os_core::retention::PruneKind;
use agent_os_engine::Alert;
use agent_os_engine::engine::links::LINK_TTL;
use agent_os_store::testing::PgDatabase;
use common::*;
use serde_json::Value;

async fn raise(s: &TestServer, subject: &str) -> String {
    let alert = Alert {
        source: IncidentSource::Check,
        subject: subject.into(),
        project: None,
        severity: Severity::Warning,
        title: format!("{subject} is late"),
        reason: "no ping".into(),
        tags: Vec::new(),
        worse: false,
    };
    s.engine.raise(alert).await.unwrap().id
}

/// The acknowledge link in the notification that told incident `id`, if it has one.
async fn link_of(s: &TestServer, id: &str) -> Option<String> {
    let (st, list) = s.get("/api/v1/notifications").await;
    assert_eq!(st, 200, "{list}");
    let n = list.as_array().unwrap().iter().find(|n| n["incident_id"] == id).expect("the incident was told");
    let body = n["body"].as_str().unwrap();
    body.split_once("Acknowledge: ").map(|(_, link)| link.trim().to_string())
}

async fn incident(s: &TestServer, id: &str) -> Value {
    let (st, v) = s.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(st, 200, "{v}");
    v
}

/// A browser without a session: the link is all it has.
fn stranger() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn open(link: &str) -> (u16, String) {
    let r = stranger().get(link).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn press(s: &TestServer, id: &str, token: &str) -> (u16, String) {
    let r =
        stranger().post(format!("{}/links/incidents/{id}/ack", s.url)).form(&[("token", token)]).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn token_of(link: &str) -> String {
    link.split_once("?token=").unwrap().1.to_string()
}

async fn link_story(s: &TestServer) {
    let a = raise(s, "trading/nightly").await;
    let b = raise(s, "trading/hourly").await;
    let link_a = link_of(s, &a).await.expect("a public URL is set: the notification carries a link");
    let link_b = link_of(s, &b).await.unwrap();
    assert!(link_a.starts_with(&format!("{}/links/incidents/{a}/ack?token=", s.url)), "{link_a}");
    let (token_a, token_b) = (token_of(&link_a), token_of(&link_b));

    // Opening the link shows the incident and a button, and changes nothing, however often.
    for _ in 0..2 {
        let (st, page) = open(&link_a).await;
        assert_eq!(st, 200, "{page}");
        assert!(page.contains("trading/nightly is late") && page.contains("Acknowledge</button>"), "{page}");
        assert!(page.contains(&format!(r#"name="token" value="{token_a}""#)), "the form posts the token back");
    }
    assert!(incident(s, &a).await["acked_at"].is_null(), "a GET acknowledged the incident");

    // The token of A on B's address, an altered token, and none at all are refused.
    let (st, page) = press(s, &b, &token_a).await;
    assert_eq!(st, 403, "{page}");
    assert!(page.contains("another incident"), "{page}");
    let (st, page) = open(&format!("{}/links/incidents/{b}/ack?token={token_a}", s.url)).await;
    assert_eq!((st, page.contains("another incident")), (403, true), "{page}");
    let mut altered = token_a.clone().into_bytes();
    let last = altered.len() - 3;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let (st, page) = press(s, &a, &altered).await;
    assert_eq!((st, page.contains("altered")), (403, true), "{page}");
    let later = {
        let mut parts: Vec<String> = token_a.split('.').map(str::to_string).collect();
        parts[2] = (parts[2].parse::<i64>().unwrap() + 86_400_000).to_string();
        parts.join(".")
    };
    let (st, page) = press(s, &a, &later).await;
    assert_eq!((st, page.contains("altered")), (403, true), "a longer life is an alteration: {page}");
    let (st, _) = press(s, &a, "").await;
    assert_eq!(st, 403);
    for id in [&a, &b] {
        assert!(incident(s, id).await["acked_at"].is_null(), "a refused link acknowledged {id}");
    }

    // The button acknowledges A, recorded as done through the link.
    let (st, page) = press(s, &a, &token_a).await;
    assert_eq!(st, 200, "{page}");
    assert!(page.contains("Incident acknowledged"), "{page}");
    let acked = incident(s, &a).await;
    assert_eq!(acked["acked_by"], "signed link", "{acked}");
    assert!(acked["acked_at"].is_string(), "{acked}");
    assert!(incident(s, &b).await["acked_at"].is_null(), "only A");

    // Used once: pressing again or opening it says when it was used and who acknowledged.
    let (st, page) = press(s, &a, &token_a).await;
    assert_eq!(st, 409, "{page}");
    assert!(page.contains("already used") && page.contains("signed link"), "{page}");
    let (st, page) = open(&link_a).await;
    assert_eq!((st, page.contains("already used")), (409, true), "{page}");

    // B's own link still works.
    let (st, page) = press(s, &b, &token_b).await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(incident(s, &b).await["acked_by"], "signed link");

    // An incident someone acknowledged meanwhile keeps its acknowledgement; the page says who.
    let c = raise(s, "trading/daily").await;
    let token_c = token_of(&link_of(s, &c).await.unwrap());
    let (st, v) = s.post(&format!("/api/v1/incidents/{c}/ack"), serde_json::json!({"by": "ana"})).await;
    assert_eq!(st, 200, "{v}");
    let (st, page) = press(s, &c, &token_c).await;
    assert_eq!(st, 409, "{page}");
    assert!(page.contains("already acknowledged (by ana"), "{page}");
    assert_eq!(incident(s, &c).await["acked_by"], "ana");
}

#[tokio::test]
async fn an_ack_link_works_once_for_its_incident_on_sqlite() {
    let s = start_with(|c| c.links_url = Some(c.public_url.clone())).await;
    link_story(&s).await;
}

#[tokio::test]
async fn an_ack_link_works_once_for_its_incident_on_postgresql() {
    let Some(db) = PgDatabase::create().await else { return };
    let s = start_on_with(&db.url, |c| c.links_url = Some(c.public_url.clone())).await;
    link_story(&s).await;
    drop(s);
    db.drop_it().await;
}

#[tokio::test]
async fn without_a_public_url_notifications_carry_no_link() {
    let s = start().await;
    let a = raise(&s, "trading/nightly").await;
    assert_eq!(link_of(&s, &a).await, None);
}

// On held time: the link's life passes when the test moves the clock.
#[tokio::test(start_paused = true)]
async fn an_expired_link_is_refused_and_changes_nothing() {
    let s = start_held(|c| c.links_url = Some(c.public_url.clone())).await;
    let a = raise(&s, "trading/nightly").await;
    let link = link_of(&s, &a).await.unwrap();
    tokio::time::advance(LINK_TTL - Duration::from_secs(60)).await;
    assert_eq!(open(&link).await.0, 200, "still good a minute before it expires");
    tokio::time::advance(Duration::from_secs(61)).await;
    let (st, page) = open(&link).await;
    assert_eq!((st, page.contains("expired")), (410, true), "{page}");
    let (st, page) = press(&s, &a, &token_of(&link)).await;
    assert_eq!((st, page.contains("expired")), (410, true), "{page}");
    assert!(incident(&s, &a).await["acked_at"].is_null());
}

// On held time: the record that a link was used goes with the run tokens' retention after the
// link expired, and until then keeps the link refused as used; after, it is refused as expired.
#[tokio::test(start_paused = true)]
async fn a_used_link_is_forgotten_only_once_it_expired_and_the_tokens_retention_passed() {
    let s = start_held(|c| {
        c.links_url = Some(c.public_url.clone());
        c.prune_first_after = Duration::from_secs(365 * 86_400); // the passes are this test's own
    })
    .await;
    let a = raise(&s, "trading/nightly").await;
    let b = raise(&s, "trading/hourly").await;
    let (token_a, link_b) = (token_of(&link_of(&s, &a).await.unwrap()), link_of(&s, &b).await.unwrap());
    assert_eq!(press(&s, &a, &token_a).await.0, 200);
    let used = || async { s.engine.store().settings_with_prefix("links.used:").await.unwrap().len() };
    assert_eq!(used().await, 1, "one use recorded; an unused link records nothing");
    let tokens_kept = s.engine.retention().keep(PruneKind::Tokens).cutoff(0).map(|c| -c).unwrap();

    // Expired, but not yet for as long as the retention keeps run tokens: kept, still "used".
    tokio::time::advance(LINK_TTL + Duration::from_millis(tokens_kept as u64 / 2)).await;
    let pass = s.engine.prune_pass(true).await.unwrap();
    assert_eq!(pass.kinds.iter().find(|k| k.kind == PruneKind::Tokens).unwrap().rows, 0, "{pass:?}");
    s.engine.prune_pass(false).await.unwrap();
    assert_eq!(used().await, 1);
    assert_eq!(press(&s, &a, &token_a).await.0, 409);

    // Past it: a dry run counts it and leaves it; a pass deletes it, counted with the tokens.
    tokio::time::advance(Duration::from_millis(tokens_kept as u64)).await;
    let pass = s.engine.prune_pass(true).await.unwrap();
    assert_eq!(pass.kinds.iter().find(|k| k.kind == PruneKind::Tokens).unwrap().rows, 1, "{pass:?}");
    assert_eq!(used().await, 1, "a dry run deletes nothing");
    let pass = s.engine.prune_pass(false).await.unwrap();
    assert_eq!(pass.kinds.iter().find(|k| k.kind == PruneKind::Tokens).unwrap().rows, 1, "{pass:?}");
    assert_eq!(used().await, 0);
    let (st, page) = press(&s, &a, &token_a).await;
    assert_eq!((st, page.contains("expired")), (410, true), "forgotten, the link is still refused: {page}");
    assert_eq!(incident(&s, &a).await["acked_by"], "signed link", "pruning the record changed nothing else");
    assert_eq!(open(&link_b).await.0, 410, "the unused link expired too");
}
