//! `agent-os badges` and `agent-os checks --tag` against the real `agent-os serve`: the admin
//! sees every project's and tag's badge, a project token its own project's and its checks'
//! tags'; the printed Markdown names addresses the server answers without a token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;
use common::*;

use serde_json::json;

fn tagged(dir: &std::path::Path, name: &str, checks: &str) -> std::path::PathBuf {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), format!("name: {name}\nchecks:\n{checks}")).unwrap();
    root
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "stdout: {}\nstderr: {}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

/// The Markdown image lines of `agent-os badges`: (alt text, address).
fn markdown(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("![")?;
            let (alt, url) = rest.split_once("](")?;
            Some((alt.to_string(), url.strip_suffix(')')?.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn badges_prints_markdown_for_what_the_token_may_show() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("home"), None).await;
    let api = server.api();
    register(&api, &tagged(dir.path(), "alpha", "  - { slug: a, every: 1h, tags: [nightly] }\n")).await;
    register(&api, &tagged(dir.path(), "beta", "  - { slug: b, every: 1h, tags: [ops] }\n")).await;

    let out = ok(&server.cli(&["badges"]));
    let lines = markdown(&out);
    let alts: Vec<&str> = lines.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(alts, ["alpha status", "beta status", "nightly status", "ops status"], "{out}");
    assert!(out.contains("project alpha: up (1 check, 0 late, 0 down)"), "{out}");
    let http = http();
    for (_, url) in &lines {
        assert!(url.starts_with(&server.base), "{url}");
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{url}");
        assert!(r.text().await.unwrap().starts_with("<svg"), "{url}");
    }

    // A project token: its project and its checks' tags only.
    let (st, tok) = api.post("/api/v1/tokens", json!({"project": "beta", "name": "readme"})).await;
    assert_eq!(st, 201, "{tok}");
    let beta = tok["token"].as_str().unwrap();
    let out = ok(&agent_os(None, &["--url", &server.base, "--token", beta, "badges"]));
    let mine = markdown(&out);
    assert_eq!(mine.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["beta status", "ops status"], "{out}");
    assert_eq!(mine[0], lines[1], "the same address whoever lists it");
    let refused = agent_os(None, &["--url", &server.base, "--token", beta, "badges", "--project", "alpha"]);
    assert!(!refused.status.success(), "another project's badge is refused");

    // The JSON form and the tag filter of checks.
    let listed: serde_json::Value = serde_json::from_str(&ok(&server.cli(&["badges", "--json"]))).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 4);
    let checks = ok(&server.cli(&["checks", "--tag", "ops"]));
    assert!(checks.contains("TAGS") && checks.contains("beta") && !checks.contains("alpha"), "{checks}");
    let none = ok(&server.cli(&["checks", "--tag", "weekly"]));
    assert!(none.contains("no check carries the tag \"weekly\""), "{none}");
    server.stop();
}
