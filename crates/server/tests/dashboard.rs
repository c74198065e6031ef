//! The dashboard's sessions and safety on every route, against a real server over HTTP: a page
//! needs a session, a state change needs the session's CSRF token, hostile text comes out
//! escaped, and the overview, project and run pages show what the API knows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const HOSTILE: &str = "<script>alert(1)</script>";
const HOSTILE_IMG: &str = "<img src=x onerror=alert(2)>";

/// Every dashboard route, read from the page modules' sources, so a new route cannot miss
/// these checks: (method, path with `{param}`s).
fn dashboard_routes() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dashboard");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Join lines so a route call rustfmt split over several lines reads as one.
        let flat: String = text.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        for (i, _) in flat.match_indices(".route(\"") {
            let rest = &flat[i + 8..];
            let Some(end) = rest.find('"') else { continue };
            let route = &rest[..end];
            // The handlers: the rest of this `.route(...)` call, to its closing parenthesis.
            let tail = &rest[end..];
            let mut depth = 1;
            let stop = tail
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(tail.len(), |(i, _)| i);
            let call = &tail[..stop];
            for m in ["get", "post", "put", "delete"] {
                if call.contains(&format!("{m}(")) {
                    out.push((m.to_uppercase(), route.to_string()));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn fill(route: &str) -> String {
    let mut s = String::new();
    let mut rest = route;
    while let Some(a) = rest.find('{') {
        s.push_str(&rest[..a]);
        let b = rest[a..].find('}').unwrap() + a;
        s.push('x');
        rest = &rest[b + 1..];
    }
    s.push_str(rest);
    s
}

#[tokio::test]
async fn every_route_needs_a_session_and_every_change_a_csrf_token() {
    let s = start().await;
    let routes = dashboard_routes();
    assert!(routes.len() >= 12, "the route scan found too little: {routes:?}");
    assert!(routes.contains(&("POST".into(), "/runs/{id}/cancel".into())), "{routes:?}");
    let anon = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let b = s.browser().await;
    for (method, route) in &routes {
        if route == "/login" || route.starts_with("/assets/") {
            continue;
        }
        let url = format!("{}{}", s.url, fill(route));
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        // A signed link's page needs no session: its token is the credential, and without one
        // it is refused (tests/links.rs tries the rest).
        if route.starts_with("/links/") {
            let r = anon.request(m, &url).header("accept", "text/html").form(&[("x", "1")]).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 403, "{method} {route} without a token");
            continue;
        }
        // No session: a page goes to the login; anything else is 401.
        let stream = route == "/live" || route.ends_with("/log");
        let accept = if stream { "text/event-stream" } else { "text/html" };
        let r = anon.request(m.clone(), &url).header("accept", accept).send().await.unwrap();
        let status = r.status().as_u16();
        if method == "GET" && !stream {
            assert_eq!(status, 303, "{method} {route} without a session");
            assert!(r.headers()["location"].to_str().unwrap().starts_with("/login?next="), "{method} {route}");
        } else {
            assert_eq!(status, 401, "{method} {route} without a session");
        }
        if method == "GET" {
            continue;
        }
        // A session but no CSRF token, a wrong one, or another site's origin: refused.
        let r = b.post_raw(&fill(route), &[("x", "1")]).await;
        assert_eq!(r.status, 403, "{method} {route} without a CSRF token: {}", r.body);
        assert!(r.body.contains("CSRF"), "{}", r.body);
        let r = b.post_raw(&fill(route), &[("_csrf", "0000")]).await;
        assert_eq!(r.status, 403, "{method} {route} with a wrong CSRF token");
        let r = b
            .http
            .post(&url)
            .header("cookie", &b.cookie)
            .header("origin", "https://evil.example")
            .form(&[("_csrf", b.csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{method} {route} from another origin");
    }
}

#[tokio::test]
async fn a_refused_change_changes_nothing() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let b = s.browser().await;
    let r = b.post_raw("/runs", &[("project", "fixture"), ("task", "echo"), ("input", "{}")]).await;
    assert_eq!(r.status, 403);
    let (_, runs) = s.get("/api/v1/runs").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0, "a refused form must not start a run");
    // With the token the same form starts the run and shows it.
    let r = b.post("/runs", &[("project", "fixture"), ("task", "echo"), ("input", r#"{"word": "hi"}"#)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.location.unwrap();
    assert!(to.starts_with("/runs/"), "{to}");
    let id = to.trim_start_matches("/runs/");
    let run = s.wait(id).await;
    assert_eq!(run["trigger"], "dashboard");
    assert_eq!(run["input"]["word"], "hi");
    let page = b.get(&to).await;
    assert!(page.body.contains(">succeeded<"), "{}", page.body);
}

#[tokio::test]
async fn bad_run_input_is_named_and_starts_nothing() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let b = s.browser().await;
    let r = b.post("/runs", &[("project", "fixture"), ("task", "echo"), ("input", "{not json")]).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("input is not valid JSON"), "{}", r.body);
    let r = b.post("/runs", &[("project", "fixture"), ("task", "echo"), ("input", "[1, 2]")]).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("input must be a JSON object"), "{}", r.body);
    let r = b.post("/runs", &[("project", "fixture"), ("task", "nope"), ("input", "")]).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let (_, runs) = s.get("/api/v1/runs").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn hostile_text_is_escaped_on_every_page() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path());
    let manifest = std::fs::read_to_string(root.join("agent-os.yaml")).unwrap();
    let manifest = manifest
        .replace("description: tasks that misbehave on purpose", &format!("description: \"{HOSTILE} {HOSTILE_IMG}\""));
    std::fs::write(root.join("agent-os.yaml"), manifest).unwrap();
    s.add(&root).await;
    // A run whose input, log and outputs carry markup.
    let run = s.run("fixture", "echo", json!({"note": HOSTILE, "img": HOSTILE_IMG})).await;
    let id = run["id"].as_str().unwrap().to_string();
    // An event, a notification (so an incident) and a cost, each with markup in its text.
    let (st, v) = s.post("/api/v1/events", json!({"type": "fixture.alert", "data": {"html": HOSTILE}})).await;
    assert!(st == 201 || st == 200 || st == 202, "{st} {v}");
    let (st, v) = s
        .post(
            "/api/v1/notifications",
            json!({"project": "fixture", "title": HOSTILE, "body": HOSTILE_IMG, "severity": "critical", "dedup_key": "x"}),
        )
        .await;
    assert!(st < 300, "{st} {v}");
    let (st, v) = s
        .post(
            "/api/v1/costs",
            json!({"project": "fixture", "service": "openai", "model": HOSTILE, "amount": "0.5", "currency": "USD", "idempotency_key": "h1"}),
        )
        .await;
    assert!(st < 300, "{st} {v}");
    let b = s.browser().await;
    let mut pages = 0;
    for (method, route) in dashboard_routes() {
        if method != "GET" || route == "/live" || route.ends_with("/log") || route.starts_with("/assets/") {
            continue;
        }
        let path = route.replace("{name}", "fixture").replace("{id}", &id);
        if path.contains('{') {
            continue;
        }
        let page = b.get(&path).await;
        assert!(page.status < 500, "GET {path}: {} {}", page.status, page.body);
        let html = page.headers.get("content-type").is_some_and(|t| t.to_str().unwrap().starts_with("text/html"));
        if !html {
            // A download (the costs CSV) carries the data as stored; it is never rendered.
            assert_eq!(page.headers["x-content-type-options"], "nosniff", "GET {path}");
            continue;
        }
        assert!(!page.body.contains("<script>alert"), "GET {path} let a script through");
        assert!(!page.body.contains("<img src=x"), "GET {path} let an element through");
        if page.status == 200 {
            pages += 1;
            assert!(page.headers["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
            assert_eq!(page.headers["x-frame-options"], "DENY");
        }
    }
    assert!(pages >= 5, "only {pages} pages rendered");
    // Where the text shows, it shows escaped.
    let project = b.get("/projects/fixture").await;
    assert!(project.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", project.body);
    let run = b.get(&format!("/runs/{id}")).await;
    assert!(run.body.contains("&lt;img src=x onerror=alert(2)&gt;"), "{}", run.body);
}

#[tokio::test]
async fn the_overview_and_project_page_show_the_projects_state() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let failed = s.run("fixture", "no_retry", json!({})).await;
    assert_eq!(failed["status"], "failed");
    let b = s.browser().await;
    let home = b.get("/").await;
    assert!(home.body.contains(r#"href="/projects/fixture""#), "{}", home.body);
    assert!(home.body.contains("tasks that misbehave on purpose"));
    // The failed run opened an incident, shown among the open ones.
    let mut found = false;
    for _ in 0..50 {
        let page = b.get("/?_fragment=incidents").await;
        assert_eq!(page.status, 200);
        assert!(!page.body.contains("<html"), "a fragment is only its part");
        if page.body.contains("fixture/no_retry") || page.body.contains("no_retry") {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "the failed run's incident should be on the overview");
    // All live parts at once, as the script asks for them.
    let all = b.get("/?_fragment=*").await;
    assert_eq!(all.status, 200);
    let parts: serde_json::Value = serde_json::from_str(&all.body).unwrap();
    for name in ["stats", "projects", "running", "incidents"] {
        assert!(parts[name].as_str().is_some_and(|h| !h.is_empty()), "{name} in {parts}");
    }
    assert!(parts["projects"].as_str().unwrap().contains("/projects/fixture"));
    let project = b.get("/projects/fixture").await;
    for task in ["echo", "fail", "no_retry", "envdump"] {
        assert!(project.body.contains(&format!(r#"name="task" value="{task}""#)), "a run form for {task}");
    }
    assert!(project.body.contains(r#"class="run-task stack""#));
    assert!(project.body.contains("*/15 * * * *"), "the schedule");
    assert!(project.body.contains("OPENAI_API_KEY"), "the key's name");
    assert!(project.body.contains(&failed["id"].as_str().unwrap()[..8]), "the recent run");
    let unknown = b.get("/projects/nope").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("nope"), "{}", unknown.body);
}

#[tokio::test]
async fn runs_filter_and_page_and_a_run_can_be_cancelled_and_run_again() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    for _ in 0..3 {
        s.run("fixture", "echo", json!({})).await;
    }
    s.run("fixture", "no_retry", json!({})).await;
    let b = s.browser().await;
    let failed = b.get("/runs?status=failed").await;
    assert!(failed.body.contains("fixture.no_retry") && !failed.body.contains("fixture.echo"), "{}", failed.body);
    let bad = b.get("/runs?status=nonsense").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("unknown status"), "{}", bad.body);
    // A long-running run: cancel it from its page.
    let (_, run) = s.post("/api/v1/runs", json!({"project": "fixture", "task": "sleeper"})).await;
    let id = run["id"].as_str().unwrap().to_string();
    for _ in 0..100 {
        let (_, r) = s.get(&format!("/api/v1/runs/{id}")).await;
        if r["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = b.get(&format!("/runs/{id}")).await;
    assert!(page.body.contains("Cancel run"), "{}", page.body);
    assert!(page.body.contains(&format!(r#"data-log="/runs/{id}/log""#)), "a running run's log is tailed");
    let r = b.post(&format!("/runs/{id}/cancel"), &[]).await;
    assert_eq!(r.status, 303);
    let ended = s.wait(&id).await;
    assert_eq!(ended["status"], "cancelled");
    let again = b.post(&format!("/runs/{id}/retry"), &[]).await;
    assert_eq!(again.status, 303);
    let new_id = again.location.unwrap().trim_start_matches("/runs/").to_string();
    assert_ne!(new_id, id);
    let (_, new_run) = s.get(&format!("/api/v1/runs/{new_id}")).await;
    assert_eq!(new_run["task"], "sleeper");
    s.post(&format!("/api/v1/runs/{new_id}/cancel"), json!({})).await;
    // Pages of 50: 55 runs make an "Older" link whose page holds the rest.
    for _ in 0..51 {
        s.post("/api/v1/runs", json!({"project": "fixture", "task": "echo"})).await;
    }
    let first = b.get("/runs").await;
    let older = first.body.split(r#"rel="next""#).next().unwrap().rsplit("href=\"").next().unwrap().to_string();
    let older = older.split('"').next().unwrap().replace("&amp;", "&");
    assert!(older.starts_with("/runs?before="), "{older}");
    let second = b.get(&older).await;
    assert_eq!(second.status, 200);
    assert!(second.body.contains("Newest"), "{}", second.body);
}

#[tokio::test]
async fn the_live_stream_tells_of_a_change_and_the_log_tails() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let b = s.browser().await;
    let mut live = b
        .http
        .get(format!("{}/live", s.url))
        .header("cookie", &b.cookie)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status().as_u16(), 200);
    let run = s.run("fixture", "echo", json!({"word": "tail-me"})).await;
    let chunk = tokio::time::timeout(Duration::from_secs(10), live.chunk()).await.expect("a change within 10 s");
    let text = String::from_utf8(chunk.unwrap().unwrap().to_vec()).unwrap();
    assert!(text.contains("event: change"), "{text}");
    let id = run["id"].as_str().unwrap();
    let log = b
        .http
        .get(format!("{}/runs/{id}/log?after=0", s.url))
        .header("cookie", &b.cookie)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(10), log.text()).await.unwrap().unwrap();
    assert!(body.contains("event: log") && body.contains("event: end"), "{body}");
}

#[tokio::test]
async fn logout_ends_the_session_and_the_login_page_refuses_other_tokens() {
    let s = start().await;
    let b = s.browser().await;
    let r = b.post("/logout", &[]).await;
    assert_eq!(r.status, 303);
    assert!(r.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let after = b.get("/").await;
    assert_eq!(after.status, 303, "the old cookie no longer works");
    // A project token does not log in; the message says what does.
    let (st, tok) = s.post("/api/v1/tokens", json!({"name": "p", "kind": "admin"})).await;
    assert_eq!(st, 201, "{tok}");
    let other_admin = tok["token"].as_str().unwrap().to_string();
    let anon = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = anon.post(format!("{}/login", s.url)).form(&[("secret", "aosp_nothing")]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().await.unwrap().contains("needs the admin token"));
    // A cookie carries the attributes the issue asks for.
    let r = anon.post(format!("{}/login", s.url)).form(&[("secret", other_admin.as_str())]).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains("Secure"),
        "{cookie}"
    );
    // X-Forwarded-Proto from a peer that is not a trusted proxy is the client's own word: ignored.
    let r = anon
        .post(format!("{}/login", s.url))
        .header("x-forwarded-proto", "https")
        .form(&[("secret", other_admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(!r.headers()["set-cookie"].to_str().unwrap().contains("Secure"), "no proxy is trusted");
    // A next= naming another site is ignored.
    let r = anon
        .post(format!("{}/login", s.url))
        .form(&[("secret", other_admin.as_str()), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");
}

/// Posts a login as `client`; the status and the `Retry-After` header, if any.
async fn try_login(
    s: &TestServer,
    client: &reqwest::Client,
    secret: &str,
    forwarded_for: Option<&str>,
) -> (u16, Option<String>) {
    let mut r = client.post(format!("{}/login", s.url)).form(&[("secret", secret), ("next", "/")]);
    if let Some(f) = forwarded_for {
        r = r.header("x-forwarded-for", f);
    }
    let resp = r.send().await.unwrap();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), retry)
}

#[tokio::test]
async fn failed_logins_from_another_client_do_not_lock_out_the_admin() {
    let s = start().await;
    let attacker = client_from("127.0.0.2");
    for i in 0..10 {
        assert_eq!(try_login(&s, &attacker, &format!("guess {i}"), None).await.0, 401, "guess {i}");
    }
    let (st, retry) = try_login(&s, &attacker, "guess 11", None).await;
    assert_eq!(st, 429);
    assert!(retry.is_some_and(|r| (1..=60).contains(&r.parse::<u64>().unwrap())), "Retry-After in seconds");
    // Even the right token is not tried for the client over its limit…
    assert_eq!(try_login(&s, &attacker, &s.admin, None).await.0, 429);
    // …while the admin on another address logs in, and another client still gets its answers.
    assert_eq!(try_login(&s, &client_from("127.0.0.1"), &s.admin, None).await.0, 303);
    assert_eq!(try_login(&s, &client_from("127.0.0.3"), "a typo", None).await.0, 401);
    // Writing X-Forwarded-For changes nothing when no proxy is trusted: the peer is the client.
    assert_eq!(try_login(&s, &attacker, "guess 12", Some("198.51.100.1")).await.0, 429);
}

/// The session cookie a login sets, and the login's status.
async fn login_cookie(s: &TestServer, client: &reqwest::Client, headers: &[(&str, &str)]) -> (u16, String) {
    let mut r = client.post(format!("{}/login", s.url)).form(&[("secret", s.admin.as_str()), ("next", "/")]);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let cookie = resp.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (resp.status().as_u16(), cookie)
}

#[tokio::test]
async fn x_forwarded_proto_makes_the_cookie_secure_only_from_a_trusted_proxy() {
    let opts = agent_os_server::ServerOptions {
        max_body_bytes: 64 * 1024,
        trusted_proxies: vec![agent_os_core::net::IpRange::parse("127.0.0.1").unwrap()],
        ..Default::default()
    };
    let s = start_with_options(|_| {}, opts).await;
    let https = [("x-forwarded-proto", "https")];
    let (st, cookie) = login_cookie(&s, &client_from("127.0.0.1"), &https).await;
    assert_eq!(st, 303);
    assert!(cookie.contains("; Secure"), "the trusted proxy saw HTTPS: {cookie}");
    let (_, cookie) = login_cookie(&s, &client_from("127.0.0.1"), &[("x-forwarded-proto", "http")]).await;
    assert!(!cookie.contains("Secure"), "the trusted proxy saw plain HTTP: {cookie}");
    // A client that writes the header itself, straight to the server, is not believed.
    let (st, cookie) = login_cookie(&s, &client_from("127.0.0.5"), &https).await;
    assert_eq!(st, 303);
    assert!(!cookie.contains("Secure"), "not from a trusted proxy: {cookie}");
    // Logging out clears the cookie with the same attribute.
    let proxy = client_from("127.0.0.1");
    let (_, cookie) = login_cookie(&s, &proxy, &https).await;
    let session = cookie.split(';').next().unwrap().to_string();
    let page = proxy.get(format!("{}/", s.url)).header("cookie", &session).send().await.unwrap();
    let csrf = meta_csrf(&page.text().await.unwrap()).unwrap();
    let out = proxy
        .post(format!("{}/logout", s.url))
        .header("cookie", &session)
        .header("x-forwarded-proto", "https")
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let cleared = out.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0") && cleared.contains("; Secure"), "{cleared}");
}

#[tokio::test]
async fn an_https_public_url_makes_the_cookie_secure_and_names_the_site_behind_a_proxy() {
    let s = start_with(|c| c.public_url = "https://aos.example.test".into()).await;
    let client = client_from("127.0.0.1");
    let (st, cookie) = login_cookie(&s, &client, &[]).await;
    assert_eq!(st, 303);
    assert!(cookie.contains("; Secure"), "public_url is https: {cookie}");
    // A proxy that rewrites Host to the server's own address: the browser's origin is the
    // public one, which is this site.
    let (st, _) = login_cookie(&s, &client, &[("origin", "https://aos.example.test")]).await;
    assert_eq!(st, 303, "the public origin is this site");
    let (st, _) = login_cookie(&s, &client, &[("origin", "https://AOS.example.test")]).await;
    assert_eq!(st, 303, "names compare without case");
    // Another site, or the public name over another scheme, is not.
    for other in ["https://evil.example", "http://aos.example.test", "https://aos.example.test.evil.example", "null"] {
        let (st, _) = login_cookie(&s, &client, &[("origin", other)]).await;
        assert_eq!(st, 403, "{other}");
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let opts = agent_os_server::ServerOptions {
        max_body_bytes: 64 * 1024,
        trusted_proxies: vec![agent_os_core::net::IpRange::parse("127.0.0.1").unwrap()],
        ..Default::default()
    };
    let s = start_with_options(|_| {}, opts).await;
    let proxy = client_from("127.0.0.1");
    for i in 0..10 {
        assert_eq!(try_login(&s, &proxy, &format!("guess {i}"), Some("203.0.113.7")).await.0, 401);
    }
    assert_eq!(try_login(&s, &proxy, "guess 11", Some("203.0.113.7")).await.0, 429);
    // The same proxy, for another client: the right login goes through.
    assert_eq!(try_login(&s, &proxy, &s.admin, Some("203.0.113.8")).await.0, 303);
    // A client that prepends a made-up address is still known by what the proxy appended.
    assert_eq!(try_login(&s, &proxy, &s.admin, Some("192.0.2.99, 203.0.113.7")).await.0, 429);
    // A peer that is not a trusted proxy is the client, whatever it forwards.
    let direct = client_from("127.0.0.4");
    assert_eq!(try_login(&s, &direct, &s.admin, Some("203.0.113.7")).await.0, 303);
}
