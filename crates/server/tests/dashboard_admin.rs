//! The dashboard's admin pages against a real server: incidents acknowledged from the page,
//! maintenance windows started and ended there, tokens made (shown once) and revoked (ending
//! the sessions they made), channels listed without their secrets and sent a test, and the
//! dashboard password set over the API and the settings page.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const HOSTILE: &str = "<script>alert(1)</script>";

/// The markup of the table row that starts at `marker` (e.g. `data-incident="ID"`).
fn row<'a>(html: &'a str, marker: &str) -> &'a str {
    let at = html.find(marker).unwrap_or_else(|| panic!("no row {marker} in {html}"));
    let end = html[at..].find("</tr>").map_or(html.len(), |e| at + e);
    &html[at..end]
}

/// Logs a browser in with `secret` (a token or the password); `Err(status)` when refused.
async fn login(s: &TestServer, secret: &str) -> Result<Browser, u16> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = http.post(format!("{}/login", s.url)).form(&[("secret", secret), ("next", "/")]).send().await.unwrap();
    if resp.status().as_u16() != 303 {
        return Err(resp.status().as_u16());
    }
    let set = resp.headers().get("set-cookie").expect("a session cookie").to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let mut b = Browser { base: s.url.clone(), cookie, csrf: String::new(), http };
    let home = b.get("/").await;
    assert_eq!(home.status, 200, "{}", home.body);
    b.csrf = meta_csrf(&home.body).expect("pages carry the CSRF token");
    Ok(b)
}

/// Whether this browser's session has ended: a page sends it to log in.
async fn logged_out(b: &Browser) -> bool {
    let p = b.get("/settings").await;
    p.status == 303 && p.location.as_deref().is_some_and(|l| l.starts_with("/login"))
}

/// Runs the fixture's failing task until its incident is open, and returns the incident.
async fn failing_incident(s: &TestServer) -> Value {
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let run = s.run("fixture", "fail", json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    for _ in 0..200 {
        let (st, list) = s.get("/api/v1/incidents?open=true").await;
        assert_eq!(st, 200, "{list}");
        if let Some(i) = list.as_array().unwrap().iter().find(|i| i["subject"] == "fixture/fail") {
            return i.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the failed run opened no incident");
}

/// The value shown in `<code id="new-token">` on the page after creating a token.
fn shown_token(html: &str) -> String {
    let marker = r#"<code id="new-token">"#;
    let at = html.find(marker).unwrap_or_else(|| panic!("no new token on {html}")) + marker.len();
    html[at..].split('<').next().unwrap().to_string()
}

#[tokio::test]
async fn an_incident_acknowledged_from_the_page_is_acknowledged_by_admin() {
    let s = start().await;
    let incident = failing_incident(&s).await;
    let id = incident["id"].as_str().unwrap();
    assert!(incident["acked_by"].is_null());
    let b = s.browser().await;

    let page = b.get("/incidents").await;
    assert_eq!(page.status, 200);
    let r = row(&page.body, &format!(r#"data-incident="{id}""#));
    assert!(r.contains(&format!(r#"action="/incidents/{id}/ack""#)) && r.contains("Acknowledge"), "{r}");
    assert!(r.contains("fixture/fail") && r.contains("warning"), "{r}");

    // Without the CSRF token: refused, and nothing changes.
    let refused = b.post_raw(&format!("/incidents/{id}/ack"), &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let (_, i) = s.get(&format!("/api/v1/incidents/{id}")).await;
    assert!(i["acked_by"].is_null(), "{i}");

    let done = b.post(&format!("/incidents/{id}/ack"), &[]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(done.location.as_deref().unwrap().starts_with("/incidents"), "{:?}", done.location);
    let (_, i) = s.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(i["acked_by"], "admin", "{i}");

    let page = b.get("/incidents").await;
    let r = row(&page.body, &format!(r#"data-incident="{id}""#));
    assert!(r.contains("Acknowledged by admin"), "{r}");
    assert!(!r.contains("/ack"), "no second Acknowledge button: {r}");
    // The live part alone says the same.
    let part = b.get("/incidents?_fragment=incidents").await;
    assert!(part.body.contains("Acknowledged by admin") && !part.body.contains("<html"), "{}", part.body);
    // Filtered to open incidents of another project: not there.
    let none = b.get("/incidents?show=open&project=nope").await;
    assert!(!none.body.contains(&format!(r#"data-incident="{id}""#)));
}

#[tokio::test]
async fn hostile_incident_titles_and_notifications_come_out_escaped() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let (st, n) = s
        .post(
            "/api/v1/notifications",
            json!({"project": "fixture", "title": HOSTILE, "body": HOSTILE, "severity": "critical", "dedup_key": "x"}),
        )
        .await;
    assert_eq!(st, 201, "{n}");
    let (_, list) = s.get("/api/v1/incidents?open=true").await;
    let id = list[0]["id"].as_str().expect("the critical notification opened an incident").to_string();
    let b = s.browser().await;
    let page = b.get("/incidents").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(HOSTILE), "{}", page.body);
    let r = row(&page.body, &format!(r#"data-incident="{id}""#));
    assert!(r.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{r}");
    assert!(
        row(&page.body, &format!(r#"data-notification="{}""#, n["id"].as_str().unwrap()))
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the delivery log escapes it too"
    );
}

#[tokio::test]
async fn maintenance_windows_start_and_end_from_the_incidents_page() {
    let s = start().await;
    let b = s.browser().await;
    let page = b.get("/incidents").await;
    assert!(page.body.contains("No maintenance windows."), "{}", page.body);

    let refused = b.post_raw("/incidents/maintenance", &[("duration", "2h"), ("reason", "db")]).await;
    assert_eq!(refused.status, 403);
    let (_, list) = s.get("/api/v1/maintenance").await;
    assert_eq!(list, json!([]));

    let bad = b.post("/incidents/maintenance", &[("duration", "soon"), ("project", ""), ("reason", "")]).await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    let done = b.post("/incidents/maintenance", &[("duration", "2h"), ("project", ""), ("reason", HOSTILE)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let (_, list) = s.get("/api/v1/maintenance").await;
    assert_eq!((list[0]["reason"].as_str(), list[0]["active"].as_bool()), (Some(HOSTILE), Some(true)), "{list}");
    let page = b.get("/incidents").await;
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.body.contains(HOSTILE));
    let id = list[0]["id"].as_str().unwrap();
    let end = b.post(&format!("/incidents/maintenance/{id}/end"), &[]).await;
    assert_eq!(end.status, 303, "{}", end.body);
    let (_, list) = s.get("/api/v1/maintenance").await;
    assert_eq!(list, json!([]), "an ended window is no longer listed");
}

#[tokio::test]
async fn a_token_made_on_the_settings_page_is_shown_once_and_never_again() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let b = s.browser().await;
    let (_, before) = s.get("/api/v1/tokens").await;

    let refused = b.post_raw("/settings/tokens", &[("name", "ci"), ("kind", "project"), ("project", "fixture")]).await;
    assert_eq!(refused.status, 403);
    let (_, after) = s.get("/api/v1/tokens").await;
    assert_eq!(after.as_array().unwrap().len(), before.as_array().unwrap().len(), "no token was made");

    let made = b.post("/settings/tokens", &[("name", "ci-job"), ("kind", "project"), ("project", "fixture")]).await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(made.headers["cache-control"], "no-store");
    assert!(made.body.contains("not shown again"), "{}", made.body);
    let token = shown_token(&made.body);
    assert!(token.starts_with("aosp_"), "{token}");
    // It is a working project token.
    let (st, _) = s.req(reqwest::Method::GET, "/api/v1/runs", Some(&token), None).await;
    assert_eq!(st, 200);
    let (st, _) = s.req(reqwest::Method::GET, "/api/v1/tokens", Some(&token), None).await;
    assert_eq!(st, 403, "a project token is not an admin");

    let settings = b.get("/settings").await;
    assert_eq!(settings.status, 200);
    assert!(settings.body.contains("ci-job"), "the token is listed by name");
    assert!(!settings.body.contains(&token), "the value is never shown again");
    assert!(!settings.body.contains(&token[5..20]), "not even a part of it");

    // Over the API: an admin token names no project, and there is no third kind.
    let (st, e) = s.post("/api/v1/tokens", json!({"kind": "admin", "project": "fixture"})).await;
    assert_eq!((st, e["error"]["field"].as_str()), (400, Some("project")), "{e}");
    let (st, e) = s.post("/api/v1/tokens", json!({"kind": "run", "project": "fixture"})).await;
    assert_eq!((st, e["error"]["field"].as_str()), (400, Some("kind")), "{e}");

    // A project token needs its project; the error says which field.
    let bad = b.post("/settings/tokens", &[("name", "x"), ("kind", "project"), ("project", "")]).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("needs the project"), "{}", bad.body);
}

#[tokio::test]
async fn revoking_an_admin_token_ends_the_sessions_made_with_it() {
    let s = start().await;
    let first = s.browser().await;
    let made = first.post("/settings/tokens", &[("name", "laptop"), ("kind", "admin"), ("project", "")]).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let second_token = shown_token(&made.body);
    assert!(second_token.starts_with("aosa_"), "{second_token}");
    let second = login(&s, &second_token).await.expect("the new admin token logs in");
    let (_, tokens) = s.get("/api/v1/tokens").await;
    let id =
        tokens.as_array().unwrap().iter().find(|t| t["name"] == "laptop").unwrap()["id"].as_str().unwrap().to_string();
    let page = second.get("/settings").await;
    assert!(row(&page.body, &format!(r#"data-token="{id}""#)).contains("this session logged in with it"));

    let refused = first.post_raw(&format!("/settings/tokens/{id}/revoke"), &[]).await;
    assert_eq!(refused.status, 403);
    assert!(!logged_out(&second).await, "a refused revoke changes nothing");

    let done = first.post(&format!("/settings/tokens/{id}/revoke"), &[]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(logged_out(&second).await, "the session made with the revoked token has ended");
    assert!(!logged_out(&first).await, "the other admin's session stays");
    assert_eq!(login(&s, &second_token).await.err(), Some(401), "the revoked token no longer logs in");
    let page = first.get("/settings").await;
    assert!(row(&page.body, &format!(r#"data-token="{id}""#)).contains("revoked"));

    // Revoking the token this very browser logged in with sends it to log in again.
    let made = first.post("/settings/tokens", &[("name", "phone"), ("kind", "admin")]).await;
    let third = login(&s, &shown_token(&made.body)).await.unwrap();
    let (_, tokens) = s.get("/api/v1/tokens").await;
    let id =
        tokens.as_array().unwrap().iter().find(|t| t["name"] == "phone").unwrap()["id"].as_str().unwrap().to_string();
    let own = third.post(&format!("/settings/tokens/{id}/revoke"), &[]).await;
    assert_eq!(own.location.as_deref(), Some("/login"));
    assert!(logged_out(&third).await);
}

#[tokio::test]
async fn the_dashboard_password_logs_in_and_changing_it_ends_only_password_sessions() {
    let s = start().await;
    let put = |body: Value| s.req(reqwest::Method::PUT, "/api/v1/dashboard/password", Some(&s.admin), Some(body));

    let (st, e) = put(json!({"password": "short"})).await;
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["error"]["field"], "password", "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("at least 12 characters"), "{e}");
    assert_eq!(login(&s, "short").await.err(), Some(401), "nothing was set");
    let (st, e) = put(json!({})).await;
    assert_eq!((st, e["error"]["field"].as_str()), (400, Some("password")), "{e}");

    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let (_, t) = s.post("/api/v1/tokens", json!({"project": "fixture"})).await;
    let (st, _) = s
        .req(
            reqwest::Method::PUT,
            "/api/v1/dashboard/password",
            t["token"].as_str(),
            Some(json!({"password": "a project cannot set this"})),
        )
        .await;
    assert_eq!(st, 403, "admin only");

    let (_, doc) = s.req(reqwest::Method::GET, "/api/openapi.json", None, None).await;
    assert!(doc["paths"]["/api/v1/dashboard/password"]["put"].is_object(), "documented in OpenAPI");

    let (st, e) = put(json!({"password": "correct horse battery"})).await;
    assert_eq!(st, 204, "{e}");
    let by_password = login(&s, "correct horse battery").await.expect("the password logs in");
    let by_token = s.browser().await;
    let settings = by_token.get("/settings").await;
    assert!(settings.body.contains("Change password") && !settings.body.contains("correct horse"));

    // Changed from the settings page of a token session: the password sessions end, this one stays.
    let mismatch = by_token
        .post("/settings/password", &[("password", "staple battery horse"), ("confirm", "staple battery hose")])
        .await;
    assert_eq!(mismatch.status, 400, "{}", mismatch.body);
    assert!(!logged_out(&by_password).await, "a refused change ends nothing");
    let refused = by_token
        .post_raw("/settings/password", &[("password", "staple battery horse"), ("confirm", "staple battery horse")])
        .await;
    assert_eq!(refused.status, 403);
    let changed = by_token
        .post("/settings/password", &[("password", "staple battery horse"), ("confirm", "staple battery horse")])
        .await;
    assert_eq!(changed.status, 303, "{}", changed.body);
    assert!(changed.location.as_deref().unwrap().starts_with("/settings"), "{:?}", changed.location);
    assert!(logged_out(&by_password).await, "the password session has ended");
    assert!(!logged_out(&by_token).await, "the token session stays");
    assert_eq!(login(&s, "correct horse battery").await.err(), Some(401), "the old password is refused");

    // Changed from a password session: that session ends too, and the page says to log in.
    let again = login(&s, "staple battery horse").await.expect("the new password logs in");
    let short = again.post("/settings/password", &[("password", "tiny"), ("confirm", "tiny")]).await;
    assert_eq!(short.status, 400, "the page follows the API's rules");
    assert!(short.body.contains("at least 12 characters"), "{}", short.body);
    let changed = again
        .post("/settings/password", &[("password", "another long password"), ("confirm", "another long password")])
        .await;
    assert_eq!(changed.location.as_deref(), Some("/login"));
    assert!(logged_out(&again).await);

    // Cleared over the API: the password no longer logs in; token sessions stay.
    let third = login(&s, "another long password").await.unwrap();
    let (st, _) = s.req(reqwest::Method::DELETE, "/api/v1/dashboard/password", Some(&s.admin), None).await;
    assert_eq!(st, 204);
    assert!(logged_out(&third).await);
    assert!(!logged_out(&by_token).await);
    assert_eq!(login(&s, "another long password").await.err(), Some(401));
}

/// A password hash stored before hashes became PHC strings (`pbkdf2-sha256$ITER$SALT$HASH`,
/// hex) still logs in, and that login stores the password again in the PHC form.
#[tokio::test]
async fn a_password_hashed_in_the_old_form_still_logs_in_and_is_rehashed() {
    let s = start().await;
    // PBKDF2-HMAC-SHA256 of "correct horse battery", salt "0123456789abcdef", 1000 rounds.
    let old = "pbkdf2-sha256$1000$30313233343536373839616263646566$05500b18c982fcaffc10b12b739560271c8f140a40ac8651090b2a8c4819589e";
    let store = s.engine.store();
    store.set_setting("dashboard.password", old).await.unwrap();
    assert_eq!(login(&s, "correct horse batterz").await.err(), Some(401), "a wrong password is refused");
    assert_eq!(store.get_setting("dashboard.password").await.unwrap().as_deref(), Some(old), "kept as it was");

    login(&s, "correct horse battery").await.expect("the old hash logs in");
    let new = store.get_setting("dashboard.password").await.unwrap().unwrap();
    assert!(new.starts_with("$pbkdf2-sha256$i=600000,l=32$"), "rehashed: {new}");
    login(&s, "correct horse battery").await.expect("the new hash logs in");
    assert_eq!(login(&s, "correct horse batterz").await.err(), Some(401));
}

#[tokio::test]
async fn channel_rows_show_kind_and_host_but_never_the_secret() {
    let s = start_with(|c| {
        c.channels
            .push(agent_os_core::channel::parse("hooks", "jsons://hooks.example.test/services/SECRET123").unwrap());
        c.channels.push(
            agent_os_core::channel::parse("phone", "ntfys://me:Pa55w0rdXYZ@ntfy.example.test/alerts-topic").unwrap(),
        );
    })
    .await;
    let b = s.browser().await;
    let page = b.get("/settings").await;
    assert_eq!(page.status, 200);
    let hooks = row(&page.body, r#"data-channel="hooks""#);
    assert!(hooks.contains("json") && hooks.contains("hooks.example.test") && hooks.contains("Send test"), "{hooks}");
    let phone = row(&page.body, r#"data-channel="phone""#);
    assert!(phone.contains("ntfy") && phone.contains("ntfy.example.test"), "{phone}");
    for secret in ["SECRET123", "services", "Pa55w0rdXYZ", "alerts-topic"] {
        assert!(!page.body.contains(secret), "{secret} shown: {}", page.body);
    }
}

#[tokio::test]
async fn send_test_delivers_to_the_channel_and_the_page_says_so() {
    let (sink, url) = Sink::start(&[200]).await;
    let (gone, gone_url) = Sink::start(&[410]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        let json = |name: &str, url: &str| format!("json://{}/{name}/SECRET123", url.trim_start_matches("http://"));
        c.channels.push(agent_os_core::channel::parse("team", &json("team", &url)).unwrap());
        c.channels.push(agent_os_core::channel::parse("old", &json("old", &gone_url)).unwrap());
    })
    .await;
    let b = s.browser().await;

    let refused = b.post_raw("/settings/channels/team/test", &[]).await;
    assert_eq!(refused.status, 403);
    let (_, log) = s.get("/api/v1/notifications").await;
    assert_eq!(log, serde_json::json!([]), "a refused test stores nothing to send");
    assert!(sink.received().is_empty(), "a refused test sends nothing");

    let sent = b.post("/settings/channels/team/test", &[]).await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let to = sent.location.unwrap();
    assert!(to.starts_with("/settings?test="), "{to}");
    let got = sink.received();
    assert_eq!(got.len(), 1, "the receiver got the test");
    assert!(got[0].body["title"].as_str().unwrap().contains("Test from Agent OS to team"), "{:?}", got[0].body);
    let page = b.get(&to).await;
    assert!(page.body.contains(r#"data-test-result="delivered""#), "{}", page.body);
    let log = wait_delivery(&s, "delivered").await;
    assert_eq!(log["deliveries"][0]["channel"], "team");

    // A receiver that says it is gone: the page shows the failure, without the address's secret.
    let sent = b.post("/settings/channels/old/test", &[]).await;
    let page = b.get(sent.location.as_deref().unwrap()).await;
    assert!(page.body.contains(r#"data-test-result="disabled""#), "{}", page.body);
    assert!(page.body.contains("410 Gone"), "{}", page.body);
    assert!(!page.body.contains("SECRET123"));
    assert_eq!(gone.received().len(), 1);

    let missing = b.post("/settings/channels/nope/test", &[]).await;
    assert_eq!(missing.status, 404);
    let incidents = b.get("/incidents").await;
    assert!(incidents.body.contains("Test from Agent OS to team"), "the delivery log lists the test");
    assert!(!incidents.body.contains("SECRET123"));
}

#[tokio::test]
async fn the_about_section_names_this_installation() {
    let s = start().await;
    let b = s.browser().await;
    let page = b.get("/settings").await;
    assert!(page.body.contains(env!("CARGO_PKG_VERSION")));
    assert!(page.body.contains("sqlite"));
    assert!(page.body.contains(&s.engine.config().node_id));
    assert!(page.body.contains(&s.url), "the public URL");
    assert!(page.body.contains("0 registered"), "{}", page.body);
}
