//! The dashboard's workflows and costs pages against a real server over HTTP: a workflow file
//! shows with its step graph, its start form starts a run that is followed to its end, a broken
//! file shows its errors; reported costs show in the totals, the tables and the CSV export, whose
//! fields are escaped and disarmed for spreadsheets; hostile text comes out escaped; and a form
//! without the CSRF token changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const HOSTILE: &str = "<script>alert(1)</script>";
const HOSTILE_IMG: &str = "<img src=x onerror=alert(2)>";

/// A manual workflow over the fixture's echo task: echo, then announce, then finish (which
/// needs both), with one input of each kind the form offers.
fn pipeline() -> String {
    format!(
        r#"name: pipeline
description: "Echo, then announce {HOSTILE}"
on:
  manual:
    inputs:
      symbol: {{ type: string, required: true, description: "Ticker {HOSTILE_IMG}" }}
      limit: {{ type: integer, default: 5 }}
      loud: {{ type: boolean, default: false }}
      tags: {{ type: array, default: [] }}
steps:
  - id: echo
    run: fixture.echo
    with: {{ symbol: "{{{{ inputs.symbol }}}}", limit: "{{{{ inputs.limit }}}}" }}
  - id: announce
    needs: [echo]
    emit: {{ type: fixture.echoed, data: {{ symbol: "{{{{ inputs.symbol }}}}" }} }}
  - id: finish
    needs: [echo, announce]
    emit: {{ type: fixture.finished }}
"#
    )
}

/// A file whose step names a task the fixture does not have.
const BROKEN: &str = "name: broken\non: { manual: {} }\nsteps:\n  - id: go\n    run: fixture.no_such_task\n";

/// A server with the fixture project registered and `files` in its workflows directory, loaded.
async fn server_with_workflows(files: &[(&str, &str)]) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let workflows = dir.path().join("workflows");
    std::fs::create_dir(&workflows).unwrap();
    let s = start_with(|cfg| cfg.workflows_dir = Some(workflows.clone())).await;
    s.add(&fixture(dir.path())).await;
    for (name, text) in files {
        std::fs::write(workflows.join(name), text).unwrap();
    }
    let (st, r) = s.post("/api/v1/workflows/reload", json!({})).await;
    assert_eq!(st, 200, "{r}");
    (s, dir)
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The text of the element carrying `attr` (up to its first tag inside or its end).
fn text_of<'a>(html: &'a str, attr: &str) -> Option<&'a str> {
    let at = html.find(attr)?;
    let start = html[at..].find('>')? + at + 1;
    let end = html[start..].find('<')? + start;
    Some(&html[start..end])
}

/// The run's status on its page: the `data-run-status` element's value, and its text (the
/// badge inside it).
fn run_status(html: &str) -> Option<String> {
    let at = html.find("data-run-status=\"")? + "data-run-status=\"".len();
    let value = html[at..].split('"').next()?.to_string();
    let inner = &html[at..];
    let badge = &inner[inner.find("<span class=\"badge")?..];
    let text = &badge[badge.find('>')? + 1..badge.find("</span>")?];
    assert_eq!(text, value.replace('_', " "), "the badge says the status");
    Some(value)
}

/// The `<tr>` whose opening tag carries `attr`, whole.
fn row<'a>(html: &'a str, attr: &str) -> &'a str {
    let at = html.find(attr).unwrap_or_else(|| panic!("no row with {attr}: {html}"));
    let start = html[..at].rfind("<tr").unwrap_or_else(|| panic!("{attr} is not in a row: {html}"));
    let end = html[at..].find("</tr>").unwrap() + at;
    &html[start..end]
}

async fn workflow_runs(s: &TestServer) -> Vec<Value> {
    let (st, list) = s.get("/api/v1/workflows/runs").await;
    assert_eq!(st, 200, "{list}");
    list.as_array().unwrap().clone()
}

#[tokio::test]
async fn a_workflow_shows_its_graph_and_its_form_starts_a_run_followed_to_the_end() {
    let text = pipeline();
    let (s, _dir) = server_with_workflows(&[("pipeline.yaml", &text)]).await;
    let b = s.browser().await;

    let list = b.get("/workflows").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let entry = row(&list.body, r#"data-workflow="pipeline""#);
    assert!(entry.contains(r#"href="/workflows/pipeline""#), "{entry}");
    assert!(entry.contains("manual"), "the trigger is listed: {entry}");
    assert!(entry.contains("never run"), "{entry}");
    assert!(entry.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the description shows, escaped: {entry}");
    assert!(!list.body.contains("<script>alert"), "{}", list.body);

    let page = b.get("/workflows/pipeline").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("<script>alert") && !page.body.contains("<img src=x"), "{}", page.body);
    let svg_at = page.body.find(r#"<svg class="dag" role="img" aria-label=""#).expect("the step graph");
    let svg = &page.body[svg_at..page.body[svg_at..].find("</svg>").unwrap() + svg_at];
    assert_eq!(count(svg, r#"<g class="node""#), 3, "a box per step: {svg}");
    for step in ["echo", "announce", "finish"] {
        assert!(svg.contains(&format!(r#"data-node="{step}""#)), "{step}: {svg}");
    }
    assert_eq!(count(svg, r#"class="edge""#), 3, "an edge per need: {svg}");
    let long = &svg[svg.find(r#"data-from="echo" data-to="finish""#).expect("echo to finish")..];
    let long = &long[..long.find("/>").unwrap()];
    assert!(long.contains(" L"), "an edge that skips a layer goes round the step between: {long}");
    assert!(svg.contains(r#"marker-end="url(#dag-arrow)""#), "{svg}");
    // finish needs announce, which needs echo: three layers, left to right.
    let x_of = |step: &str| -> usize {
        let g = &svg[svg.find(&format!(r#"data-node="{step}""#)).unwrap()..];
        let x = &g[g.find("<rect x=\"").unwrap() + 9..];
        x[..x.find('"').unwrap()].parse().unwrap()
    };
    assert!(x_of("echo") < x_of("announce") && x_of("announce") < x_of("finish"), "{svg}");

    // The form: a typed field per input, the required one marked.
    let form_at = page.body.find(r#"<form class="start-workflow"#).expect("the start form");
    let form = &page.body[form_at..page.body[form_at..].find("</form>").unwrap() + form_at];
    assert!(form.contains(r#"method="post""#) && form.contains(r#"action="/workflows/pipeline/run""#), "{form}");
    assert!(form.contains(r#"type="text" id="input-symbol" name="input.symbol""#), "{form}");
    assert!(form.contains("required"), "{form}");
    assert!(form.contains(r#"type="number" id="input-limit" name="input.limit" step="1" value="5""#), "{form}");
    assert!(form.contains(r#"type="checkbox" id="input-loud" name="input.loud""#), "{form}");
    assert!(form.contains(r#"<textarea id="input-tags" name="input.tags""#), "{form}");
    assert!(form.contains("&lt;img src=x onerror=alert(2)&gt;"), "the description shows, escaped: {form}");
    assert!(form.contains(">Start run</button>"), "{form}");

    // Without the CSRF token nothing starts.
    let refused = b.post_raw("/workflows/pipeline/run", &[("input.symbol", "ETH")]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(workflow_runs(&s).await.is_empty(), "a refused form must not start a run");
    // A wrong type is named, and starts nothing either.
    let bad = b.post("/workflows/pipeline/run", &[("input.symbol", "ETH"), ("input.limit", "many")]).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("input limit: expected a whole number"), "{}", bad.body);
    assert!(workflow_runs(&s).await.is_empty());

    let started = b
        .post("/workflows/pipeline/run", &[("input.symbol", "ETH"), ("input.limit", "7"), ("input.loud", "true")])
        .await;
    assert_eq!(started.status, 303, "{}", started.body);
    let to = started.location.unwrap();
    assert!(to.starts_with("/workflows/runs/"), "{to}");
    let id = to.trim_start_matches("/workflows/runs/").to_string();
    let runs = workflow_runs(&s).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"], id.as_str());
    assert_eq!(runs[0]["trigger"], "manual");
    assert_eq!(runs[0]["inputs"], json!({"symbol": "ETH", "limit": 7, "loud": true, "tags": []}));

    // Follow the live part as the page's script does, until the run ends.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let live = loop {
        let part = b.get(&format!("{to}?_fragment=run")).await;
        assert_eq!(part.status, 200, "{}", part.body);
        let status = run_status(&part.body).unwrap_or_default();
        if !matches!(status.as_str(), "queued" | "running") {
            break part.body;
        }
        assert!(std::time::Instant::now() < until, "the run should end: {}", part.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(run_status(&live).as_deref(), Some("succeeded"), "{live}");
    assert!(!live.contains("Cancel run"), "an ended run has nothing to cancel: {live}");
    for step in ["echo", "announce", "finish"] {
        let r = row(&live, &format!(r#"data-step="{step}""#));
        assert!(r.contains(r#"class="badge good">succeeded<"#), "{step}: {r}");
    }
    let echo = row(&live, r#"data-step="echo""#);
    let (_, detail) = s.get(&format!("/api/v1/workflows/runs/{id}")).await;
    let task_run =
        detail["steps"].as_array().unwrap().iter().find(|st| st["step_id"] == "echo").unwrap()["task_run_id"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(echo.contains(&format!(r#"href="/runs/{task_run}""#)), "the step links its task run: {echo}");
    assert!(live.contains(r#"<g class="node succeeded" data-node="finish">"#), "the graph shows the states: {live}");
    // The whole page: the inputs, and the live part where the script finds it.
    let full = b.get(&to).await;
    assert!(full.body.contains(r#"id="live-run" data-live="run""#), "{}", full.body);
    assert!(full.body.contains("&quot;ETH&quot;"), "the inputs show: {}", full.body);

    // The list now shows the last run, linked.
    let list = b.get("/workflows").await;
    let entry = row(&list.body, r#"data-workflow="pipeline""#);
    assert!(entry.contains(&format!(r#"href="/workflows/runs/{id}""#)) && entry.contains(">succeeded<"), "{entry}");
    assert!(list.body.contains(&format!(r#"data-run="{id}""#)), "the recent runs list it: {}", list.body);
    let page = b.get("/workflows/pipeline?_fragment=runs").await;
    assert!(page.body.contains(&format!(r#"href="/workflows/runs/{id}""#)), "{}", page.body);
}

#[tokio::test]
async fn a_running_workflow_run_can_be_cancelled_but_not_without_the_token() {
    let waits = "name: waits\non: { manual: {} }\nsteps:\n  - id: pause\n    wait: 10m\n  - id: after\n    needs: [pause]\n    emit: { type: fixture.after }\n";
    let (s, _dir) = server_with_workflows(&[("waits.yaml", waits)]).await;
    let b = s.browser().await;
    let started = b.post("/workflows/waits/run", &[]).await;
    assert_eq!(started.status, 303, "{}", started.body);
    let to = started.location.unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = b.get(&to).await;
        if page.body.contains(r#"data-step="pause""#) && row(&page.body, r#"data-step="pause""#).contains(">waiting<") {
            break page.body;
        }
        assert!(std::time::Instant::now() < until, "the step should wait: {}", page.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(row(&page, r#"data-step="pause""#).contains("Looks again at"), "{page}");
    assert!(row(&page, r#"data-step="after""#).contains(">pending<"), "{page}");
    assert!(page.contains(r#"<g class="node waiting" data-node="pause">"#), "{page}");
    let cancel = format!("{to}/cancel");
    assert!(page.contains(&format!(r#"action="{cancel}""#)), "{page}");
    let refused = b.post_raw(&cancel, &[]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(workflow_runs(&s).await[0]["status"], "running");
    let done = b.post(&cancel, &[]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some(to.as_str()));
    assert_eq!(workflow_runs(&s).await[0]["status"], "cancelled");
    let page = b.get(&to).await;
    assert_eq!(run_status(&page.body).as_deref(), Some("cancelled"));
}

#[tokio::test]
async fn a_file_that_does_not_load_shows_its_errors() {
    let hostile = format!(
        "name: hostile\non: {{ manual: {{}} }}\n\"{HOSTILE}\": 1\nsteps:\n  - id: go\n    emit: {{ type: fixture.go }}\n"
    );
    let (s, _dir) = server_with_workflows(&[("broken.yaml", BROKEN), ("hostile.yaml", &hostile)]).await;
    let b = s.browser().await;
    let page = b.get("/workflows").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Files that did not load"), "{}", page.body);
    let card_at = page.body.find(r#"data-file=""#).unwrap();
    let errors = &page.body[card_at..];
    // file:line:column, the message and the hint.
    assert!(errors.contains("broken.yaml:5:"), "{errors}");
    assert!(errors.contains("no_such_task"), "{errors}");
    assert!(errors.contains("hostile.yaml:3:"), "{errors}");
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;"), "the bad key shows, escaped: {}", page.body);
    // Nothing loaded: the empty state says where files go.
    assert!(page.body.contains("every workflow file has errors"), "{}", page.body);
    let dir = s.engine.config().workflows_dir.clone().unwrap();
    assert!(page.body.contains(&dir.display().to_string()), "{}", page.body);
    // Fixed, the file loads and its error goes.
    std::fs::write(dir.join("broken.yaml"), BROKEN.replace("no_such_task", "echo")).unwrap();
    let (_, r) = s.post("/api/v1/workflows/reload", json!({})).await;
    assert_eq!(r["workflows"], json!(["broken"]), "{r}");
    let page = b.get("/workflows").await;
    assert!(!page.body.contains("no_such_task"), "{}", page.body);
    assert!(page.body.contains(r#"data-workflow="broken""#), "{}", page.body);
}

#[tokio::test]
async fn no_workflows_says_where_they_go() {
    let (s, _dir) = server_with_workflows(&[]).await;
    let b = s.browser().await;
    let page = b.get("/workflows").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("No workflows yet."), "{}", page.body);
    assert!(page.body.contains("docs/workflows.md"), "{}", page.body);
    assert!(page.body.contains("No workflow runs yet."), "{}", page.body);
    assert_eq!(b.get("/workflows/nope").await.status, 404);
    assert_eq!(b.get("/workflows/runs/nope").await.status, 404);
}

async fn post_costs(s: &TestServer, records: Vec<Value>) {
    for chunk in records.chunks(300) {
        let (st, v) = s.post("/api/v1/costs", json!({"records": chunk})).await;
        assert_eq!(st, 201, "{v}");
    }
}

fn cost(service: &str, amount: &str, key: &str) -> Value {
    json!({"project": "fixture", "service": service, "amount": amount, "currency": "USD", "idempotency_key": key})
}

#[tokio::test]
async fn reported_costs_show_in_the_totals_and_the_tables_escaped() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let b = s.browser().await;

    let empty = b.get("/costs").await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(text_of(&empty.body, r#"id="cost-total""#), Some("$0.00"));
    assert!(
        empty.body.contains("POST /api/v1/costs") && empty.body.contains("docs/plugin-protocol.md"),
        "{}",
        empty.body
    );
    assert!(empty.body.contains("No budgets.") && empty.body.contains("agent-os budget set"), "{}", empty.body);

    let mut hostile = cost(HOSTILE, "0.25", "h1");
    hostile["model"] = json!(HOSTILE_IMG);
    post_costs(&s, vec![cost("openai", "1.25", "a"), cost("openai", "0.50", "b"), hostile]).await;

    let page = b.get("/costs").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(text_of(&page.body, r#"id="cost-total""#), Some("$2.00"), "{}", page.body);
    let project = row(&page.body, r#"data-group="fixture""#);
    assert!(project.contains("$2.00"), "{project}");
    let table = &page.body[page.body.find(r#"id="cost-by-service""#).unwrap()..];
    assert!(row(table, r#"data-group="openai""#).contains("$1.75"), "{table}");
    assert!(!page.body.contains("<script>alert") && !page.body.contains("<img src=x"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", page.body);
    assert!(page.body.contains("&lt;img src=x onerror=alert(2)&gt;"), "{}", page.body);
    // Charts with their words for a screen reader.
    assert!(page.body.contains(r#"role="img" aria-label="Spend per day from "#), "{}", page.body);
    assert!(page.body.contains(r#"aria-label="Spend by project in USD: fixture $2.00""#), "{}", page.body);
    // The live part re-renders on its own.
    let part = b.get("/costs?_fragment=costs").await;
    assert_eq!(text_of(&part.body, r#"id="cost-total""#), Some("$2.00"));
    // Another range that holds none of them.
    let old = b.get("/costs?range=custom&from=2025-01-01&to=2025-01-31").await;
    assert_eq!(text_of(&old.body, r#"id="cost-total""#), Some("$0.00"), "{}", old.body);
    assert!(old.body.contains(r#"href="/costs.csv?from=2025-01-01&amp;to=2025-02-01""#), "{}", old.body);
    let wrong = b.get("/costs?range=custom&from=2025-02-01&to=2025-01-01").await;
    assert_eq!(wrong.status, 200);
    assert!(wrong.body.contains("the last day is before the first"), "{}", wrong.body);
    assert_eq!(text_of(&wrong.body, r#"id="cost-total""#), Some("$2.00"));
    // A project filter.
    let other = b.get("/costs?project=nobody").await;
    assert_eq!(text_of(&other.body, r#"id="cost-total""#), Some("$0.00"), "{}", other.body);

    // Tokens of a model without a price: not in the total, counted and marked as unpriced.
    let unknown = json!({"project": "fixture", "service": "acme", "model": "acme-large", "tokens_in": 700, "idempotency_key": "u1"});
    post_costs(&s, vec![unknown]).await;
    let page = b.get("/costs").await;
    assert_eq!(text_of(&page.body, r#"id="cost-total""#), Some("$2.00"), "{}", page.body);
    assert!(page.body.contains(r#"id="cost-unpriced""#) && page.body.contains("1 records"), "{}", page.body);
    let records = &page.body[page.body.find(r#"id="cost-records""#).unwrap()..];
    let acme = records.split("<tr").find(|r| r.contains("acme-large")).expect("the unpriced record's row");
    assert!(acme.contains(">unpriced<") && !acme.contains("$0"), "{acme}");
    let csv = b.get("/costs.csv").await;
    let line = csv.body.lines().find(|l| l.contains("acme-large")).unwrap();
    assert!(line.contains(",700,,,USD,") && line.ends_with(",true"), "{line}");
}

/// Splits CSV text into records of fields (quotes and doubled quotes undone).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

#[tokio::test]
async fn the_csv_export_has_every_record_of_the_range_escaped_and_disarmed() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    // More records than one page of the export, all at the same instant, so a page ends inside
    // a run of equal times; one before and one after the range.
    let at = "2026-01-15T12:00:00Z";
    let mut records: Vec<Value> = (0..5_200)
        .map(|i| {
            let mut c = cost("openai", "0.001", &format!("bulk-{i:05}"));
            c["at"] = json!(at);
            c
        })
        .collect();
    let mut tricky = cost("=HYPERLINK(\"http://evil.example\")", "2", "tricky,\"quoted\"\nkey");
    tricky["at"] = json!("2026-01-20T08:30:00Z");
    tricky["model"] = json!("@SUM(1+1)");
    tricky["key_name"] = json!("+plus, and \"more\"");
    tricky["tokens_in"] = json!(12);
    records.push(tricky);
    for (when, key) in [("2025-12-31T23:59:59Z", "before"), ("2026-02-01T00:00:00Z", "after")] {
        let mut c = cost("openai", "5", key);
        c["at"] = json!(when);
        records.push(c);
    }
    post_costs(&s, records).await;

    let b = s.browser().await;
    let page = b.get("/costs?range=custom&from=2026-01-01&to=2026-01-31").await;
    assert_eq!(text_of(&page.body, r#"id="cost-total""#), Some("$7.20"), "{}", page.body);
    let link_at = page.body.find(r#"id="cost-csv""#).expect("the CSV link");
    let tag = &page.body[page.body[..link_at].rfind("<a").unwrap()..];
    let href = tag[tag.find("href=\"").unwrap() + 6..].split('"').next().unwrap().replace("&amp;", "&");
    assert_eq!(href, "/costs.csv?from=2026-01-01&to=2026-02-01");

    let csv = b.get(&href).await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let disposition = csv.headers["content-disposition"].to_str().unwrap();
    assert_eq!(disposition, r#"attachment; filename="agent-os-costs-2026-01-01-to-2026-01-31.csv""#);
    let rows = parse_csv(&csv.body);
    assert_eq!(
        rows[0],
        [
            "at",
            "project",
            "service",
            "key_name",
            "model",
            "tokens_in",
            "tokens_out",
            "amount",
            "currency",
            "run_id",
            "idempotency_key",
            "tokens_cached_in",
            "unpriced"
        ]
    );
    assert_eq!(rows.len(), 1 + 5_201, "every record of the range once, no more");
    let keys: std::collections::HashSet<&str> = rows[1..].iter().map(|r| r[10].as_str()).collect();
    assert_eq!(keys.len(), 5_201, "no record twice");
    assert!(!keys.contains("before") && !keys.contains("after"));
    assert!(rows[1..].iter().all(|r| r.len() == 13), "every row has every column");
    let bulk = rows.iter().find(|r| r[10] == "bulk-00000").unwrap();
    assert_eq!(bulk[..3], ["2026-01-15T12:00:00.000Z", "fixture", "openai"]);
    assert_eq!(bulk[7..9], ["0.001", "USD"]);
    // The tricky one, last (oldest first), quoted where needed and disarmed.
    let last = rows.last().unwrap();
    assert_eq!(last[2], "'=HYPERLINK(\"http://evil.example\")");
    assert_eq!(last[3], "'+plus, and \"more\"");
    assert_eq!(last[4], "'@SUM(1+1)");
    assert_eq!(last[5], "12");
    assert_eq!(last[7], "2.00");
    assert_eq!(last[10], "tricky,\"quoted\"\nkey");
    let raw = csv.body.lines().find(|l| l.contains("HYPERLINK")).unwrap();
    assert!(raw.contains(r#","'=HYPERLINK(""http://evil.example"")","#), "{raw}");
    assert!(
        csv.body.contains(
            r#""tricky,""quoted""
key""#
        ),
        "{}",
        csv.body
    );

    // One project's, and a range given as times.
    let none = b.get("/costs.csv?from=2026-01-01&to=2026-02-01&project=nobody").await;
    assert_eq!(parse_csv(&none.body).len(), 1, "just the header: {}", none.body);
    assert!(none.headers["content-disposition"].to_str().unwrap().contains("agent-os-costs-nobody-2026-01-01"));
    let narrow = b.get("/costs.csv?from=2026-01-20T00:00:00Z&to=2026-01-21T00:00:00Z").await;
    assert_eq!(parse_csv(&narrow.body).len(), 2, "{}", narrow.body);
    let bad = b.get("/costs.csv?from=2026-02-01&to=2026-01-01").await;
    assert_eq!(bad.status, 400);
    let bad = b.get("/costs.csv?from=soon").await;
    assert_eq!(bad.status, 400);
}

async fn wait_paused(s: &TestServer, paused: bool) -> Value {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (st, list) = s.get("/api/v1/budgets?project=fixture").await;
        assert_eq!(st, 200, "{list}");
        if list[0]["paused"].is_null() != paused {
            return list;
        }
        assert!(std::time::Instant::now() < until, "paused should be {paused}: {list:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_budget_shows_its_state_and_a_paused_project_is_resumed_only_with_the_token() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let (st, v) = s
        .req(
            reqwest::Method::PUT,
            "/api/v1/budgets",
            Some(&s.admin),
            Some(json!({"project": "fixture", "period": "monthly", "amount": "2", "thresholds": [50, 100], "on_exceed": "pause"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let budget = v["id"].as_str().unwrap().to_string();
    post_costs(&s, vec![cost("openai", "3", "over")]).await;
    wait_paused(&s, true).await;

    let b = s.browser().await;
    let page = b.get("/costs").await;
    let r = row(&page.body, &format!(r#"data-budget="{budget}""#));
    assert!(r.contains("$3.00") && r.contains("$2.00"), "spent and limit: {r}");
    assert!(r.contains("150 %"), "{r}");
    assert!(r.contains("50 % crossed") && r.contains("100 % crossed"), "{r}");
    assert!(r.contains(">paused<"), "{r}");
    assert!(r.contains(r#"action="/costs/resume/fixture""#) && r.contains(">Resume project<"), "{r}");

    let refused = b.post_raw("/costs/resume/fixture", &[]).await;
    assert_eq!(refused.status, 403);
    wait_paused(&s, true).await;
    let done = b.post("/costs/resume/fixture", &[]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(done.location.unwrap().starts_with("/costs"));
    wait_paused(&s, false).await;
    let page = b.get("/costs").await;
    let r = row(&page.body, &format!(r#"data-budget="{budget}""#));
    assert!(!r.contains("Resume project"), "{r}");
}
