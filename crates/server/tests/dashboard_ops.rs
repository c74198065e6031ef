//! The dashboard's schedules, events and resources pages against a real server: what they
//! show, that hostile text comes out escaped, the schedule actions and their CSRF guard, and
//! the events pager.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

use agent_os_core::manifest::ProbeKind;

/// A project with two tasks, a schedule Agent OS fires and one kept by cron (watched by a
/// check), both using the `openai` service.
fn project(dir: &std::path::Path, name: &str, minute: u32) -> std::path::PathBuf {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        format!(
            "name: {name}\nkeys:\n  OPENAI_API_KEY: {{ service: openai, key_name: {name}-openai }}\ntasks:\n  sync: {{ run: \"true\" }}\n  nightly: {{ run: \"true\" }}\nschedules:\n  - {{ task: sync, cron: \"{minute} * * * *\", description: \"hourly sync\" }}\n  - {{ task: nightly, cron: \"{minute} 4 * * *\", managed_by: cron }}\n"
        ),
    )
    .unwrap();
    root
}

async fn schedule(s: &TestServer, project: &str, task: &str) -> Value {
    let (st, list) = s.get(&format!("/api/v1/schedules?project={project}")).await;
    assert_eq!(st, 200, "{list}");
    list.as_array().unwrap().iter().find(|x| x["task"] == task).cloned().unwrap_or_else(|| panic!("{list}"))
}

/// The `<tr>` of one schedule.
fn row<'a>(body: &'a str, id: &str) -> &'a str {
    let at = body.find(&format!(r#"data-schedule="{id}""#)).unwrap_or_else(|| panic!("no row for {id}: {body}"));
    let start = body[..at].rfind("<tr").unwrap();
    let end = at + body[at..].find("</tr>").unwrap();
    &body[start..end]
}

#[tokio::test]
async fn schedules_page_shows_every_schedule_with_a_timeline() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    s.add(&project(dir.path(), "alpha", 7)).await;
    s.add(&project(dir.path(), "beta", 8)).await;
    let b = s.browser().await;

    let page = b.get("/schedules").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let echo = schedule(&s, "fixture", "echo").await;
    let fixture_row = row(&page.body, echo["id"].as_str().unwrap());
    assert!(fixture_row.contains(r#"<a href="/projects/fixture">fixture</a>.echo"#), "{fixture_row}");
    assert!(fixture_row.contains("*/15 * * * *") && fixture_row.contains("Europe/Berlin"), "{fixture_row}");
    assert!(fixture_row.contains(">Pause<") && fixture_row.contains(">Run now<"), "{fixture_row}");
    let next = echo["next"][0].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert!(fixture_row.contains(&format!(r#"datetime="{next:.0}""#)), "the next fire: {next} in {fixture_row}");

    // Kept by cron: no buttons, its check's state, and flagged once the job reports a failure.
    let nightly = schedule(&s, "alpha", "nightly").await;
    let nightly_id = nightly["id"].as_str().unwrap();
    let r = row(&page.body, nightly_id);
    assert!(r.contains("cron") && r.contains("no ping yet") && !r.contains(">Pause<"), "{r}");
    assert!(!r.contains(r#"class="flag""#), "{r}");
    let check = nightly["check"]["id"].as_str().unwrap();
    let ping = reqwest::get(format!("{}/ping/{check}/fail", s.url)).await.unwrap();
    assert_eq!(ping.status().as_u16(), 200);
    let page = b.get("/schedules").await;
    let r = row(&page.body, nightly_id);
    assert!(r.contains(r#"class="flag""#) && r.contains(">down</span>"), "a down check is flagged in words: {r}");
    assert!(!page.body.contains(&format!("/ping/{check}")), "ping URLs are secrets");

    // The timeline: a row per project.task with its fires, hour labels, and the collision of
    // alpha and beta (same service, a minute apart) drawn and listed.
    assert!(
        page.body.contains(r#"<svg class="timeline" role="img" aria-label="Timeline of schedule fires"#),
        "{}",
        page.body
    );
    assert!(page.body.contains("Times in UTC"));
    let svg = &page.body[page.body.find("<svg class=\"timeline\"").unwrap()..];
    let svg = &svg[..svg.find("</svg>").unwrap()];
    assert!(svg.contains(">fixture.echo</text>") && svg.contains(">alpha.sync</text>"), "{svg}");
    assert!(svg.matches(r#"class="fire""#).count() >= 24 * 3, "every fire has a mark: {svg}");
    assert!(svg.contains(r#"class="axis-label""#) && svg.contains(":00</text>"), "hour labels: {svg}");
    assert!(svg.contains(r#"<polygon class="clash""#), "collisions are drawn as another shape: {svg}");
    let table = &page.body[page.body.find(r#"<table class="collisions""#).expect("a table of collisions")..];
    assert!(table.contains("openai") && table.contains("alpha</a>.sync") && table.contains("beta</a>.sync"), "{table}");

    // Seven days: day labels; a project filter keeps only its schedules.
    let week = b.get("/schedules?range=7d&project=alpha").await;
    assert_eq!(week.status, 200);
    assert!(week.body.contains("Timeline: Next 7 days"), "{}", week.body);
    let svg = &week.body[week.body.find("<svg class=\"timeline\"").unwrap()..];
    assert!(svg.contains(">alpha.sync</text>") && !svg.contains(">fixture.echo</text>"));
    assert!(!week.body.contains(echo["id"].as_str().unwrap()), "filtered out");

    // The live part alone is the table, without the timeline.
    let part = b.get("/schedules?_fragment=schedules").await;
    assert_eq!(part.status, 200);
    assert!(
        part.body.contains(nightly_id)
            && !part.body.contains("<svg class=\"timeline\"")
            && !part.body.contains("<html")
    );
}

#[tokio::test]
async fn schedule_actions_pause_resume_and_run_now_only_with_the_csrf_token() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let b = s.browser().await;
    let id = schedule(&s, "fixture", "echo").await["id"].as_str().unwrap().to_string();

    let refused = b.post_raw(&format!("/schedules/{id}/pause"), &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(schedule(&s, "fixture", "echo").await["paused"], false, "nothing changed");

    let paused = b.post(&format!("/schedules/{id}/pause"), &[]).await;
    assert_eq!((paused.status, paused.location.as_deref()), (303, Some(format!("/schedules#s-{id}").as_str())));
    assert_eq!(schedule(&s, "fixture", "echo").await["paused"], true);
    let page = b.get("/schedules").await;
    let r = row(&page.body, &id);
    assert!(r.contains(">Resume<") && !r.contains(">Pause<") && r.contains(">paused</span>"), "{r}");

    // Back to the filtered view it came from.
    let resumed = b.post(&format!("/schedules/{id}/resume"), &[("project", "fixture"), ("range", "7d")]).await;
    assert_eq!(resumed.location.as_deref(), Some(format!("/schedules?project=fixture&range=7d#s-{id}").as_str()));
    assert_eq!(schedule(&s, "fixture", "echo").await["paused"], false);
    let r = b.get("/schedules").await.body;
    assert!(row(&r, &id).contains(">Pause<"));

    let ran = b.post(&format!("/schedules/{id}/run"), &[]).await;
    assert_eq!(ran.status, 303, "{}", ran.body);
    let run_id = ran.location.as_deref().and_then(|l| l.strip_prefix("/runs/")).expect("lands on the run").to_string();
    let run = s.wait(&run_id).await;
    assert_eq!((run["task"].as_str(), run["status"].as_str()), (Some("echo"), Some("succeeded")), "{run}");

    // A schedule kept elsewhere cannot be paused: an error page, nothing changed.
    s.add(&project(dir.path(), "alpha", 7)).await;
    let nightly = schedule(&s, "alpha", "nightly").await["id"].as_str().unwrap().to_string();
    let refused = b.post(&format!("/schedules/{nightly}/pause"), &[]).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("kept by cron"), "{}", refused.body);
}

#[tokio::test]
async fn schedules_page_says_how_to_add_one_when_there_are_none() {
    let s = start().await;
    let b = s.browser().await;
    let page = b.get("/schedules").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("No schedules yet.") && page.body.contains("agent-os schedules discover"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<svg class=\"timeline\""));
}

#[tokio::test]
async fn events_page_shows_events_escaped_and_filtered() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let b = s.browser().await;
    let empty = b.get("/events").await;
    assert!(empty.body.contains("No events yet.") && empty.body.contains("agent-os event emit"), "{}", empty.body);

    let (st, ev) = s
        .post(
            "/api/v1/events",
            json!({"type": "ops.note", "data": {"<script>alert(1)</script>": "<script>alert(2)</script>", "n": 7}}),
        )
        .await;
    assert_eq!(st, 201, "{ev}");
    let (st, token) = s.post("/api/v1/tokens", json!({"project": "fixture"})).await;
    assert_eq!(st, 201, "{token}");
    let (st, own) = s
        .req(
            reqwest::Method::POST,
            "/api/v1/events",
            token["token"].as_str(),
            Some(json!({"type": "fixture.done", "data": {"rows": 12}})),
        )
        .await;
    assert_eq!(st, 201, "{own}");

    let page = b.get("/events").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<code>ops.note</code>") && page.body.contains("<code>fixture.done</code>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert"), "event data is escaped: {}", page.body);
    assert!(page.body.contains("&lt;script&gt;alert(2)&lt;/script&gt;"), "{}", page.body);
    assert!(page.body.contains("n: 7") && page.body.contains("rows: 12"), "one-line summaries");
    assert!(page.body.contains(r#"<pre class="json"><code>{"#), "the full JSON on demand");
    assert!(page.body.contains(r#"<a href="/projects/fixture">fixture</a>"#));

    let by_type = b.get("/events?type=fixture.").await;
    assert!(by_type.body.contains("fixture.done") && !by_type.body.contains("ops.note"));
    let by_project = b.get("/events?project=fixture").await;
    assert!(by_project.body.contains("fixture.done") && !by_project.body.contains("ops.note"));
    let none = b.get("/events?type=check.").await;
    assert!(none.body.contains("No events match these filters."));
    let part = b.get("/events?_fragment=events").await;
    assert!(part.body.contains("ops.note") && !part.body.contains("<form class=\"filters\""));

    // The API's project filter keeps a project token to its own project.
    let (st, _) = s.req(reqwest::Method::GET, "/api/v1/events?project=other", token["token"].as_str(), None).await;
    assert_eq!(st, 403);
}

#[tokio::test]
async fn events_pager_goes_to_older_events() {
    let s = start().await;
    let b = s.browser().await;
    for i in 0..30 {
        let (st, v) = s.post("/api/v1/events", json!({"type": "bulk.tick", "data": {"seq": format!("s-{i}-e")}})).await;
        assert_eq!(st, 201, "{v}");
    }
    let seen = |body: &str| -> Vec<usize> { (0..30).filter(|i| body.contains(&format!("seq: s-{i}-e"))).collect() };
    let first = b.get("/events?limit=25").await;
    assert_eq!(first.status, 200);
    let on_first = seen(&first.body);
    assert_eq!(on_first.len(), 25, "{}", first.body);
    let href = first.body.split(r#"<a href=""#).find_map(|a| a.split_once(r#"" rel="next""#).map(|(h, _)| h));
    let older = href.expect("an Older link").replace("&amp;", "&");
    assert!(older.starts_with("/events?limit=25&before="), "{older}");
    let second = b.get(&older).await;
    let on_second = seen(&second.body);
    assert_eq!(on_second.len(), 5, "{}", second.body);
    assert!(on_second.iter().all(|i| !on_first.contains(i)), "no event twice");
    assert!(on_second.contains(&0), "the oldest is last");
    assert!(second.body.contains("← Newest"));
    assert!(!second.body.contains(r#"rel="next""#), "no page after the last");

    // The API's cursor, directly.
    let (_, all) = s.get("/api/v1/events?type=bulk.&limit=10").await;
    let last = all[9]["id"].as_str().unwrap();
    let (_, next) = s.get(&format!("/api/v1/events?type=bulk.&limit=100&before={last}")).await;
    assert_eq!(next.as_array().unwrap().len(), 20);
    let (_, unknown) = s.get("/api/v1/events?before=no-such-event").await;
    assert_eq!(unknown, json!([]));
}

#[tokio::test]
async fn resources_page_shows_limits_holders_and_waiters() {
    let s = start_with(|c| {
        c.resources.insert("openai".into(), limits(Some(1), Some((60, 60, 5))));
        c.resources.insert("gpu".into(), limits(Some(2), None));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("res");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), "name: res\ntasks:\n  ask: { run: \"true\", resources: [openai] }\n")
        .unwrap();
    s.add(&root).await;
    let b = s.browser().await;

    let page = b.get("/resources").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"data-resource="openai""#) && page.body.contains(r#"data-resource="gpu""#));
    assert!(page.body.contains("0 of 1 held") && page.body.contains("60/min") && page.body.contains("burst 5"));
    assert!(page.body.contains("of 5 tokens in the bucket now"), "{}", page.body);
    assert!(page.body.contains("no rate limit"), "gpu has none");

    let (st, lease) = s
        .post("/api/v1/resources/openai/leases", json!({"ttl": "1m", "label": "<script>alert(3)</script> cron"}))
        .await;
    assert_eq!(st, 201, "{lease}");
    let (_, run) = s.post("/api/v1/runs", json!({"project": "res", "task": "ask"})).await;
    let run_id = run["id"].as_str().unwrap().to_string();
    let page =
        agent_os_engine::testing::eventually("the run should wait in line", Duration::from_secs(10), async || {
            let page = b.get("/resources?_fragment=resources").await;
            page.body.contains("Waiting, in serving order").then_some(page)
        })
        .await;
    assert!(page.body.contains("1 of 1 held") && page.body.contains(">full</span>"), "{}", page.body);
    assert!(!page.body.contains("<script>alert"), "a lease's label is escaped");
    assert!(page.body.contains("&lt;script&gt;alert(3)&lt;/script&gt; cron"));
    assert!(page.body.contains("Waiting, in serving order"), "{}", page.body);
    assert!(
        page.body.contains(&format!(r#"<a href="/runs/{run_id}">res.ask</a>"#)),
        "the waiting run links: {}",
        page.body
    );

    let id = lease["id"].as_str().unwrap();
    let (st, _) =
        s.req(reqwest::Method::DELETE, &format!("/api/v1/resources/openai/leases/{id}"), Some(&s.admin), None).await;
    assert_eq!(st, 204);
    assert_eq!(s.wait(&run_id).await["status"], "succeeded");
    let page = b.get("/resources").await;
    assert!(page.body.contains("0 of 1 held") && !page.body.contains("Waiting, in serving order"));
}

#[tokio::test]
async fn resources_page_says_how_to_declare_one() {
    let s = start().await;
    let b = s.browser().await;
    let page = b.get("/resources").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("No resources are declared."), "{}", page.body);
    assert!(
        page.body.contains("openai: { concurrency: 1, rate: 60/min, burst: 5 }")
            && page.body.contains("resources: [openai]")
    );
}

#[tokio::test]
async fn project_pages_belong_to_projects_which_lists_every_project() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    s.add(&project(dir.path(), "alpha", 7)).await;
    let b = s.browser().await;
    let list = b.get("/projects").await;
    assert_eq!(list.status, 200, "{}", list.body);
    for name in ["fixture", "alpha"] {
        assert!(list.body.contains(&format!(r#"<a href="/projects/{name}">{name}</a>"#)), "{}", list.body);
    }
    let page = b.get("/projects/alpha").await;
    assert!(page.body.contains(r#"<a href="/projects" aria-current="page">Projects</a>"#), "{}", page.body);
    assert!(!page.body.contains(r#"<a href="/" aria-current="page">"#), "a project page is not the overview");
}

#[tokio::test]
async fn health_history_shows_repeated_results_once_with_their_count() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let p = s.engine.project("fixture").await.unwrap();
    for _ in 0..4 {
        s.engine.run_probe(&p, ProbeKind::Status).await;
    }
    let body = s.browser().await.get("/projects/fixture").await.body;
    let history = &body[body.find("Health history").unwrap()..];
    let history = &history[..history.find("</table>").unwrap()];
    assert_eq!(history.matches("disk 91% full").count(), 1, "four identical results, one line: {history}");
    assert!(history.contains(r#"data-repeats="4""#) && history.contains("×4 since"), "{history}");
}

// On held time: the check's period and grace pass when the test moves the clock.
#[tokio::test(start_paused = true)]
async fn late_or_down_on_schedules_counts_a_down_heartbeat_check_of_its_own() {
    let s = start_held(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("worker");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), "name: worker\nchecks:\n  - { slug: feed, every: 1s, grace: 1s }\n")
        .unwrap();
    s.add(&root).await;
    let (_, checks) = s.get("/api/v1/checks").await;
    reqwest::get(checks[0]["ping_url"].as_str().unwrap()).await.unwrap();
    // The check goes down once its period and grace pass.
    tokio::time::advance(Duration::from_millis(2_100)).await;
    agent_os_engine::testing::eventually("the check should go down", Duration::from_secs(10), async || {
        let (_, checks) = s.get("/api/v1/checks").await;
        (checks[0]["state"] == "down").then_some(())
    })
    .await;
    let body = s.browser().await.get("/schedules").await.body;
    let stat = &body[body.find("Late or down").unwrap()..];
    let value = &stat[..stat.find("</div>").unwrap()];
    assert!(value.contains(">1<"), "the down check counts: {value}");
    let lone = &body[body.find("lone-checks").unwrap_or_else(|| panic!("no list of lone checks: {body}"))..];
    assert!(lone.contains(r#"<a href="/projects/worker">worker</a>/feed"#), "{lone}");
}

#[tokio::test]
async fn a_service_and_its_resource_shared_by_the_same_fires_are_one_collision() {
    let s = start_with(|c| {
        c.resources.insert("openai".into(), limits(Some(1), None));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    for (name, minute) in [("alpha", 7), ("beta", 8)] {
        let root = dir.path().join(name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(
            root.join("agent-os.yaml"),
            format!("name: {name}\nkeys:\n  OPENAI_API_KEY: {{ service: openai, key_name: {name}-openai }}\ntasks:\n  nightly: {{ run: \"true\", resources: [openai] }}\nschedules:\n  - {{ task: nightly, cron: \"{minute} 4 * * *\", managed_by: cron }}\n"),
        )
        .unwrap();
        s.add(&root).await;
    }
    let body = s.browser().await.get("/schedules").await.body;
    let table = &body[body.find("table class=\"collisions\"").unwrap_or_else(|| panic!("{body}"))..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr class=\"flag\"").count(), 1, "{table}");
    assert!(table.contains("openai (service and resource)"), "{table}");
}

#[tokio::test]
async fn a_hosted_project_page_shows_and_rotates_its_signing_secret_on_a_post_only() {
    let s = start().await;
    let manifest = "name: hosted\nplugin: { url: http://127.0.0.1:9/agent-os }\n";
    let (st, reg) = s.post("/api/v1/projects", json!({"manifest": manifest})).await;
    assert_eq!(st, 201, "{reg}");
    let first = reg["signing_secret"].as_str().unwrap();
    let b = s.browser().await;
    let page = b.get("/projects/hosted").await;
    assert!(page.body.contains(">Show secret<") && page.body.contains(">Rotate secret<"), "{}", page.body);
    assert!(!page.body.contains(first), "a page a GET opens never holds the secret");

    let shown = b.post("/projects/hosted/secret", &[]).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body.contains(first), "{}", shown.body);
    assert_eq!(b.post_raw("/projects/hosted/secret", &[]).await.status, 403, "no CSRF token, no secret");

    let rotated = b.post("/projects/hosted/secret/rotate", &[]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let (_, now) = s.get("/api/v1/projects/hosted/signing-secret").await;
    let second = now["signing_secret"].as_str().unwrap();
    assert_ne!(second, first);
    assert!(rotated.body.contains(second) && rotated.body.contains("previous secret until"), "{}", rotated.body);
}
