//! Durable workflows, proven with the real binary: the server is killed with SIGKILL while a
//! four-step workflow is in its second step, restarted, and the run must end succeeded with
//! every step's task run started exactly once (the interrupted one finishing on a retry of the
//! same run), and no completed step run again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");

struct Server {
    child: Child,
    out: PathBuf,
}

impl Server {
    fn start(home: &Path, n: u32) -> Server {
        Server::start_with(home, n, &[])
    }

    fn start_with(home: &Path, n: u32, env: &[(&str, &str)]) -> Server {
        let out = home.with_extension(format!("{n}.out"));
        let child = Command::new(BIN)
            .envs(env.iter().copied())
            .args(["serve", "--home"])
            .arg(home)
            .args(["--bind", "127.0.0.1:0"])
            .env_remove("AGENT_OS_ADMIN_TOKEN")
            .env_remove("AGENT_OS_URL")
            .env_remove("AGENT_OS_TOKEN")
            .env_remove("AGENT_OS_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .env_remove("AGENT_OS_PUBLIC_URL")
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Server { child, out };
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.url().is_none_or(|u| request(&u, "GET", "/healthz", None, None).is_none_or(|(st, _)| st != 200)) {
            assert!(Instant::now() < deadline, "server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// Waits for the server to die by itself (a crash point).
    fn wait_for_death(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the server did not stop at its crash point");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let line = text.lines().find(|l| l.contains(" listening on "))?;
        Some(line.rsplit(' ').next()?.to_string())
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal HTTP/1.1 request; returns the status and the body.
fn request(url: &str, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Option<(u16, String)> {
    let addr = url.strip_prefix("http://")?;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    // Chunked answers: keep the JSON between the chunk sizes.
    let body = match (body.find('{'), body.find('[')) {
        (Some(a), Some(b)) => body[a.min(b)..].to_string(),
        (Some(a), None) | (None, Some(a)) => body[a..].to_string(),
        _ => body,
    };
    let end = body.rfind(['}', ']']).map_or(body.len(), |i| i + 1);
    Some((status, body[..end].to_string()))
}

fn token(home: &Path) -> String {
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(home.join("client.json")).unwrap()).unwrap();
    cfg["token"].as_str().unwrap().to_string()
}

fn api(s: &Server, home: &Path, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (st, text) =
        request(&s.url().unwrap(), method, path, Some(&token(home)), body.as_ref()).expect("the server answers");
    (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Each step's task appends "STEP RUN_ID ATTEMPT start" to executions.log, works a while
/// (`slow` seconds), then appends "… done" and outputs its step name.
fn project(dir: &Path) -> PathBuf {
    let root = dir.join("chain");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("step.sh"),
        "#!/bin/sh\nstep=$(sed -n 's/.*\"step\": *\"\\([a-z]*\\)\".*/\\1/p')\n\
         echo \"$step $AGENT_OS_RUN_ID $AGENT_OS_ATTEMPT start\" >> executions.log\n\
         if [ \"$step\" = b ]; then sleep 3; fi\n\
         echo \"$step $AGENT_OS_RUN_ID $AGENT_OS_ATTEMPT done\" >> executions.log\n\
         printf '{\"step\": \"%s\"}' \"$step\" > \"$AGENT_OS_OUTPUT\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        "name: chain\ntasks:\n  step: { run: \"sh step.sh\", retries: 2, retry_delay: 1s }\n",
    )
    .unwrap();
    root
}

const WORKFLOW: &str = r#"name: four-steps
on:
  manual: {}
steps:
  - { id: a, run: chain.step, with: { step: a } }
  - { id: b, needs: [a], run: chain.step, with: { step: b } }
  - { id: c, needs: [b], run: chain.step, with: { step: c, after: "{{ steps.b.outputs.step }}" } }
  - { id: d, needs: [c], emit: { type: chain.done, data: { last: "{{ steps.c.outputs.step }}" } } }
outputs: { last: "{{ steps.c.outputs.step }}", before: "{{ steps.b.outputs.step }}" }
"#;

#[test]
fn a_workflow_survives_kill_9_without_running_a_finished_step_again() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = project(tmp.path());
    let mut s = Server::start(&home, 1);
    let (st, p) = api(&s, &home, "POST", "/api/v1/projects", Some(serde_json::json!({"path": root})));
    assert_eq!(st, 201, "{p}");
    std::fs::write(home.join("workflows/four-steps.yaml"), WORKFLOW).unwrap();
    let (st, reload) = api(&s, &home, "POST", "/api/v1/workflows/reload", None);
    assert_eq!(st, 200, "{reload}");
    let (st, run) = api(&s, &home, "POST", "/api/v1/workflows/four-steps/runs", Some(serde_json::json!({})));
    assert_eq!(st, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();

    // Kill the server while step b works.
    let log = root.join("executions.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).unwrap_or_default().lines().any(|l| l.starts_with("b ")) {
        assert!(Instant::now() < deadline, "step b never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill9();
    let _s2 = Server::start(&home, 2);
    let s = &_s2;
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (_, r) = api(s, &home, "GET", &format!("/api/v1/workflows/runs/{id}"), None);
        if r["status"] == "succeeded" || r["status"] == "failed" || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(
        (done["outputs"]["before"].as_str(), done["outputs"]["last"].as_str()),
        (Some("b"), Some("c")),
        "{done:#}"
    );

    // What each task did: a once, b's run started twice (the attempt the kill cut off, then
    // its retry: the same run id), c once; one task run per step.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    let starts = |step: &str| lines.iter().filter(|l| l[0] == step && l[3] == "start").collect::<Vec<_>>();
    assert_eq!(starts("a").len(), 1, "{text}");
    assert_eq!(starts("c").len(), 1, "{text}");
    let b = starts("b");
    assert_eq!(b.len(), 2, "{text}");
    assert_eq!(b[0][1], b[1][1], "the interrupted step was retried as the same task run: {text}");
    assert_eq!((b[0][2], b[1][2]), ("1", "2"), "{text}");
    let runs: std::collections::BTreeSet<&str> = lines.iter().map(|l| l[1]).collect();
    assert_eq!(runs.len(), 3, "one task run per run step: {text}");
    let steps = done["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4, "{done:#}");
    assert!(steps.iter().all(|s| s["status"] == "succeeded"), "{done:#}");
    let (_, events) = api(s, &home, "GET", "/api/v1/events?type=chain.", None);
    assert_eq!(events.as_array().unwrap().len(), 1, "the emit step's event once: {events}");
}

/// The hand-off of a step's end: the server dies (as with kill -9) after step a's process has
/// ended and the next step is decided, but before the transaction that stores a's end and
/// queues b; and, in a second home, right after that transaction, before b's process starts.
/// After a restart the run succeeds with one task run per step: in the first case a's end was
/// never stored, so a's run is retried (a second attempt of the same run, as any run whose
/// node died mid-attempt); in the second a is never run again and b, claimed but never
/// started, starts on a retry of its one run.
#[test]
fn a_kill_at_a_step_hand_off_neither_repeats_a_recorded_step_nor_loses_the_next() {
    for (point, a_starts) in [("step-decided", 2), ("step-committed", 1)] {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let root = tmp.path().join("quick");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(
            root.join("step.sh"),
            "#!/bin/sh\nstep=$(sed -n 's/.*\"step\": *\"\\([a-z]*\\)\".*/\\1/p')\n\
             echo \"$step $AGENT_OS_RUN_ID $AGENT_OS_ATTEMPT start\" >> executions.log\n\
             printf '{\"step\": \"%s\"}' \"$step\" > \"$AGENT_OS_OUTPUT\"\n",
        )
        .unwrap();
        std::fs::write(
            root.join("agent-os.yaml"),
            "name: quick\ntasks:\n  step: { run: \"sh step.sh\", retries: 2, retry_delay: 1s }\n",
        )
        .unwrap();
        // The first server registers the project and the workflow, and is stopped; the second
        // runs the workflow with the crash point armed.
        let mut s = Server::start(&home, 1);
        let (st, p) = api(&s, &home, "POST", "/api/v1/projects", Some(serde_json::json!({"path": root})));
        assert_eq!(st, 201, "{p}");
        std::fs::write(
            home.join("workflows/three.yaml"),
            "name: three\non:\n  manual: {}\nsteps:\n  - { id: a, run: quick.step, with: { step: a } }\n  \
             - { id: b, needs: [a], run: quick.step, with: { step: b } }\n  \
             - { id: c, needs: [b], run: quick.step, with: { step: c } }\n",
        )
        .unwrap();
        s.kill9();
        let mut s = Server::start_with(&home, 2, &[("AGENT_OS_TEST_CRASH_AT", point)]);
        let (st, run) = api(&s, &home, "POST", "/api/v1/workflows/three/runs", Some(serde_json::json!({})));
        assert_eq!(st, 201, "{run}");
        let id = run["id"].as_str().unwrap().to_string();
        s.wait_for_death();
        let log = root.join("executions.log");
        let before = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!before.lines().any(|l| l.starts_with("b ")), "{point}: b started before the crash: {before}");

        let s = Server::start(&home, 3);
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = loop {
            let (_, r) = api(&s, &home, "GET", &format!("/api/v1/workflows/runs/{id}/wait?timeout=5s"), None);
            if r["status"] == "succeeded" || r["status"] == "failed" || Instant::now() > deadline {
                break r;
            }
        };
        assert_eq!(done["status"], "succeeded", "{point}: {done:#}");
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
        let starts = |step: &str| lines.iter().filter(|l| l[0] == step).collect::<Vec<_>>();
        assert_eq!(starts("a").len(), a_starts, "{point}: {text}");
        assert_eq!(starts("b").len(), 1, "{point}: {text}");
        assert_eq!(starts("c").len(), 1, "{point}: {text}");
        let runs: std::collections::BTreeSet<&str> = lines.iter().map(|l| l[1]).collect();
        assert_eq!(runs.len(), 3, "{point}: one task run per step: {text}");
        if point == "step-committed" {
            // b's run was claimed by the dead server and never started: its first process is
            // its second attempt.
            assert_eq!(starts("b")[0][2], "2", "{point}: {text}");
        }
        let steps = done["steps"].as_array().unwrap();
        assert!(steps.iter().all(|s| s["status"] == "succeeded"), "{point}: {done:#}");
    }
}
