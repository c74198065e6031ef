//! Check tags and status badges over real HTTP: tags filter the check list; a badge's address
//! is its own credential (a wrong token, another badge's token and an unknown project are the
//! same 404); the image and the JSON follow the checks from up to late to down on held time;
//! the image is well-formed XML with its text escaped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use agent_os_engine::testing::{eventually, nap};

mod common;
use common::*;

fn project(dir: &Path, name: &str, checks: &str) -> std::path::PathBuf {
    let root = dir.join(name);
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), format!("name: {name}\nchecks:\n{checks}")).unwrap();
    root
}

/// A public GET (no token): status, content type, cache control and body.
async fn public(s: &TestServer, url: &str) -> (u16, String, String, String) {
    let r = s.http.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (ct, cache) = (header("content-type"), header("cache-control"));
    let body = r.text().await.unwrap();
    let path = url.strip_prefix(&s.url).unwrap_or(url);
    assert_documented("get".into(), path, status, &body);
    (status, ct, cache, body)
}

async fn public_json(s: &TestServer, url: &str) -> Value {
    let (status, ct, _, body) = public(s, url).await;
    assert_eq!(status, 200, "{url}: {body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    serde_json::from_str(&body).unwrap()
}

fn badge<'a>(list: &'a Value, kind: &str, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|b| b["kind"] == kind && b["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} badge {name} in {list}"))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|b| format!("{}:{}", b["kind"].as_str().unwrap(), b["name"].as_str().unwrap()))
        .collect()
}

/// Reads `svg` as XML to its end; the texts of its elements, in order, with entities read back.
fn xml_texts(svg: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(svg);
    let (mut depth, mut texts, mut root, mut in_text) = (0i32, Vec::<String>::new(), None, false);
    loop {
        let piece = match reader.read_event().unwrap_or_else(|e| panic!("not well-formed XML ({e}): {svg}")) {
            Event::Start(e) => {
                root.get_or_insert_with(|| e.name().into_inner().to_string());
                depth += 1;
                None
            }
            Event::End(_) => {
                depth -= 1;
                None
            }
            Event::Text(t) => Some(t.to_string()),
            Event::GeneralRef(r) => Some(
                match &*r {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "#39" => "'",
                    other => panic!("unexpected entity {other} in {svg}"),
                }
                .to_string(),
            ),
            Event::Eof => break,
            _ => None,
        };
        // A text and the entities in it come as several events: join them.
        let is_text = piece.is_some();
        match (piece, in_text) {
            (Some(p), true) => texts.last_mut().unwrap().push_str(&p),
            (Some(p), false) => texts.push(p),
            (None, _) => {}
        }
        in_text = is_text;
    }
    assert_eq!(depth, 0, "every element is closed: {svg}");
    assert_eq!(root.as_deref(), Some("svg"), "{svg}");
    texts
}

// On held time: the heartbeat's period and grace pass when the test moves the clock.
#[tokio::test(start_paused = true)]
async fn a_badge_follows_its_checks_from_up_to_late_to_down() {
    let s = start_held(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&project(dir.path(), "alpha", "  - { slug: heartbeat, every: 2s, grace: 1s, tags: [nightly] }\n")).await;
    s.add(&project(dir.path(), "beta", "  - { slug: job, every: 1h, tags: [nightly, ops] }\n")).await;
    let (st, list) = s.get("/api/v1/badges").await;
    assert_eq!(st, 200, "{list}");
    assert_eq!(names(&list), ["project:alpha", "project:beta", "tag:nightly", "tag:ops"]);
    let alpha = badge(&list, "project", "alpha").clone();
    let nightly = badge(&list, "tag", "nightly").clone();
    assert!(alpha["svg_url"].as_str().unwrap().starts_with(&format!("{}/badges/", s.url)), "{alpha}");
    assert!(nightly["svg_url"].as_str().unwrap().contains("/tag/nightly.svg"), "{nightly}");
    let (alpha_svg, alpha_json) = (alpha["svg_url"].as_str().unwrap(), alpha["json_url"].as_str().unwrap());
    let nightly_json = nightly["json_url"].as_str().unwrap();

    // Never pinged: nothing is expected yet, so the badge says up.
    let v = public_json(&s, alpha_json).await;
    assert_eq!(v, json!({"status": "up", "label": "alpha", "total": 1, "up": 0, "late": 0, "down": 0, "new": 1}));
    let (st, ct, cache, svg) = public(&s, alpha_svg).await;
    assert_eq!(st, 200, "{svg}");
    assert!(ct.starts_with("image/svg+xml"), "{ct}");
    assert!(cache.contains("no-cache"), "image proxies must ask again: {cache}");
    assert!(xml_texts(&svg).contains(&"up".to_string()), "{svg}");

    let (_, checks) = s.get("/api/v1/checks?project=alpha").await;
    let ping = checks[0]["slug_url"].as_str().unwrap().to_string();
    assert_eq!(s.http.get(&ping).send().await.unwrap().status().as_u16(), 200);
    assert_eq!(public_json(&s, alpha_json).await["up"], 1);

    let status = async |url: &str, want: &str| {
        eventually(&format!("{url} should say {want}"), Duration::from_secs(10), async || {
            let v = public_json(&s, url).await;
            (v["status"] == want).then_some(v)
        })
        .await
    };
    tokio::time::advance(Duration::from_millis(2_100)).await;
    nap(Duration::from_millis(100)).await;
    let v = status(alpha_json, "late").await;
    assert_eq!((v["late"].as_u64(), v["total"].as_u64()), (Some(1), Some(1)), "{v}");
    let v = status(nightly_json, "late").await;
    assert_eq!((v["late"].as_u64(), v["new"].as_u64(), v["total"].as_u64()), (Some(1), Some(1), Some(2)), "{v}");
    let (_, _, _, svg) = public(&s, alpha_svg).await;
    assert!(xml_texts(&svg).contains(&"late".to_string()), "{svg}");
    assert!(svg.contains("#fe7d37"), "late is orange: {svg}");
    let ops = badge(&list, "tag", "ops")["json_url"].as_str().unwrap().to_string();
    assert_eq!(public_json(&s, &ops).await["status"], "up", "a tag without alpha's check is not late");

    tokio::time::advance(Duration::from_millis(1_500)).await;
    let v = status(alpha_json, "down").await;
    assert_eq!(v["down"], 1, "{v}");
    status(nightly_json, "down").await;
    let (_, _, _, svg) = public(&s, alpha_svg).await;
    assert!(xml_texts(&svg).contains(&"down".to_string()) && svg.contains("#e05d44"), "down is red: {svg}");
    let shields = public_json(&s, &format!("{alpha_json}?style=shields")).await;
    assert_eq!(shields, json!({"schemaVersion": 1, "label": "alpha", "message": "down", "color": "red"}));
    assert_eq!(badge(&s.get("/api/v1/badges").await.1, "project", "alpha")["status"], "down");

    // A ping brings it back up.
    assert_eq!(s.http.get(&ping).send().await.unwrap().status().as_u16(), 200);
    status(alpha_json, "up").await;
}

#[tokio::test]
async fn a_badge_token_opens_its_own_badge_alone() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&project(dir.path(), "alpha", "  - { slug: a, every: 1h, tags: [nightly] }\n")).await;
    s.add(&project(dir.path(), "beta", "  - { slug: b, every: 1h }\n")).await;
    let (_, list) = s.get("/api/v1/badges").await;
    let alpha = badge(&list, "project", "alpha")["svg_url"].as_str().unwrap().to_string();
    let beta = badge(&list, "project", "beta")["svg_url"].as_str().unwrap().to_string();
    let nightly = badge(&list, "tag", "nightly")["svg_url"].as_str().unwrap().to_string();
    let token = |url: &str| url.split('/').rev().nth(1).unwrap().to_string();
    let (alpha_token, nightly_token) = (token(&alpha), token(&nightly.replace("/tag/", "/")));
    assert_eq!(alpha_token.len(), 22, "{alpha}");
    assert_ne!(alpha_token, token(&beta), "each badge has its own token");
    assert_ne!(alpha_token, nightly_token);
    assert_eq!(public(&s, &alpha).await.0, 200);
    assert_eq!(public(&s, &nightly).await.0, 200);

    // Every refusal is the same 404: an altered token, another badge's token (a project's,
    // a tag's for a project of its name), an unknown project, an unknown extension.
    let flip = |t: &str| {
        let mut b = t.as_bytes().to_vec();
        b[0] = if b[0] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let base = format!("{}/badges", s.url);
    let refused = [
        format!("{base}/{}/alpha.svg", flip(&alpha_token)),
        format!("{base}/{alpha_token}/beta.svg"),
        format!("{base}/{alpha_token}/ghost.svg"),
        format!("{base}/{alpha_token}/tag/nightly.svg"),
        format!("{base}/{nightly_token}/nightly.svg"),
        format!("{base}/{}/alpha.json", &alpha_token[..21]),
        format!("{base}/{alpha_token}/alpha.png"),
        format!("{base}/{alpha_token}/alpha"),
    ];
    let mut bodies = Vec::new();
    for url in &refused {
        let (st, _, _, body) = public(&s, url).await;
        assert_eq!(st, 404, "{url}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        bodies.push(v["error"]["message"].as_str().unwrap().to_string());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "one answer for every refusal: {bodies:?}");
    assert!(!bodies[0].contains("alpha") && !bodies[0].contains("ghost"), "{}", bodies[0]);

    // The token is the same on every call; it does not depend on what the badge says.
    let (_, again) = s.get("/api/v1/badges").await;
    assert_eq!(badge(&again, "project", "alpha")["svg_url"], alpha.as_str());

    // Bad queries are refused with the field named, whatever the token.
    for (url, field) in [
        (format!("{}?style=flat", alpha.replace(".svg", ".json")), "style"),
        (format!("{alpha}?style=shields"), "style"),
        (format!("{alpha}?label="), "label"),
        (format!("{alpha}?label={}", "x".repeat(65)), "label"),
    ] {
        let (st, _, _, body) = public(&s, &url).await;
        assert_eq!(st, 400, "{url}: {body}");
        assert!(body.contains(field), "{url}: {body}");
    }

    // A label of the caller's is escaped; the image stays well-formed XML.
    let (st, _, _, svg) = public(&s, &format!("{alpha}?label=%3Cscript%3E%26%22build%22")).await;
    assert_eq!(st, 200, "{svg}");
    assert!(!svg.contains("<script>"), "{svg}");
    let texts = xml_texts(&svg);
    assert!(texts.contains(&"<script>&\"build\"".to_string()), "{texts:?}");

    // A project that goes takes its badge with it.
    let (st, _) = s.req(reqwest::Method::DELETE, "/api/v1/projects/alpha", Some(&s.admin), None).await;
    assert_eq!(st, 204);
    assert_eq!(public(&s, &alpha).await.0, 404);
    // A tag no check carries any more says so, rather than break a README.
    let (st, _, _, svg) = public(&s, &nightly).await;
    assert_eq!(st, 200);
    assert!(xml_texts(&svg).contains(&"no checks".to_string()), "{svg}");
}

#[tokio::test]
async fn tags_filter_checks_and_a_project_token_lists_its_own_badges() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&project(
        dir.path(),
        "alpha",
        "  - { slug: a, every: 1h, tags: [nightly, team_a] }\n  - { slug: b, every: 1h }\n",
    ))
    .await;
    s.add(&project(
        dir.path(),
        "beta",
        "  - { slug: c, every: 1h, tags: [nightly] }\n  - { slug: d, every: 1h, tags: [teamxa] }\n",
    ))
    .await;
    let slugs = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{}/{}", c["project"].as_str().unwrap(), c["slug"].as_str().unwrap()))
            .collect()
    };
    let (_, all) = s.get("/api/v1/checks").await;
    assert_eq!(all[0]["tags"], json!(["nightly", "team_a"]));
    assert_eq!(all[1]["tags"], json!([]));
    assert_eq!(slugs(&s.get("/api/v1/checks?tag=nightly").await.1), ["alpha/a", "beta/c"]);
    assert_eq!(slugs(&s.get("/api/v1/checks?tag=nightly&project=beta").await.1), ["beta/c"]);
    assert_eq!(slugs(&s.get("/api/v1/checks?tag=team_a").await.1), ["alpha/a"], "`_` is no wildcard");
    assert!(slugs(&s.get("/api/v1/checks?tag=night").await.1).is_empty(), "a tag matches whole");
    let (st, v) = s.get("/api/v1/checks?tag=Nightly").await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("tag")), "{v}");

    // A project token: its project's badge and its checks' tags', nothing of another project.
    let beta = project_token(&s, "beta").await;
    let (st, mine) = s.req(reqwest::Method::GET, "/api/v1/badges", Some(&beta), None).await;
    assert_eq!(st, 200, "{mine}");
    assert_eq!(names(&mine), ["project:beta", "tag:nightly", "tag:teamxa"]);
    // A tag's badge counts every project's checks carrying it.
    assert_eq!(badge(&mine, "tag", "nightly")["total"], 2);
    let (st, _) = s.req(reqwest::Method::GET, "/api/v1/badges?project=alpha", Some(&beta), None).await;
    assert_eq!(st, 403);
    let (_, checks) = s.req(reqwest::Method::GET, "/api/v1/checks?tag=team_a", Some(&beta), None).await;
    assert!(slugs(&checks).is_empty(), "a project token's filter stays in its project: {checks}");

    let (_, admin) = s.get("/api/v1/badges").await;
    assert_eq!(names(&admin), ["project:alpha", "project:beta", "tag:nightly", "tag:team_a", "tag:teamxa"]);
    assert_eq!(
        badge(&admin, "tag", "nightly")["svg_url"],
        badge(&mine, "tag", "nightly")["svg_url"],
        "one URL per badge"
    );
    let (_, only) = s.get("/api/v1/badges?project=alpha").await;
    assert_eq!(names(&only), ["project:alpha", "tag:nightly", "tag:team_a"]);
    let b = badge(&only, "project", "alpha");
    assert_eq!(b["markdown"], format!("![alpha status]({})", b["svg_url"].as_str().unwrap()));
    assert!(b["shields_url"].as_str().unwrap().starts_with("https://img.shields.io/endpoint?url=http"), "{b}");
    let (st, _) = s.get("/api/v1/badges?project=ghost").await;
    assert_eq!(st, 404);

    // The dashboard's project page shows the tags and the Markdown to copy.
    let browser = s.browser().await;
    let page = browser.get("/projects/alpha").await;
    assert!(page.body.contains("Status badges"), "{}", page.body);
    assert!(page.body.contains("team_a"), "the check's tags are shown");
    assert!(page.body.contains(&format!("![alpha status]({})", b["svg_url"].as_str().unwrap())), "{}", page.body);
}
