//! The real `agent-os` binary: `serve` and `demo` as separate processes, and the client
//! commands a user types. Includes the kill -9 story and the scrubbed-environment canary.
//! They run on real time: the server is another process, which no test clock reaches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");

struct Server {
    child: Child,
    stdout: PathBuf,
    /// Where its stderr (the log) goes: a file, as under a service manager.
    stderr: PathBuf,
}

impl Server {
    fn start(home: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Server {
        Self::start_cmd("serve", home, extra_env, args)
    }

    fn start_cmd(cmd: &str, home: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut s = Self::spawn(cmd, home, extra_env, args);
        s.wait_ready();
        s
    }

    /// Starts the process without waiting for it to answer (to start several at once).
    fn spawn(cmd: &str, home: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Server {
        let stdout = home.with_extension(format!("{}.out", std::process::id()));
        let mut c = Command::new(BIN);
        c.arg(cmd).arg("--home").arg(home).arg("--bind").arg("127.0.0.1:0").args(args);
        c.env_remove("AGENT_OS_ADMIN_TOKEN")
            .env_remove("AGENT_OS_URL")
            .env_remove("AGENT_OS_TOKEN")
            .env_remove("AGENT_OS_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .env_remove("AGENT_OS_PUBLIC_URL");
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let stderr = home.with_extension(format!("{}.err", std::process::id()));
        c.stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()));
        let child = c.spawn().unwrap();
        Server { child, stdout, stderr }
    }

    /// The URL this server announced on its first line of output.
    fn url(&self) -> Option<String> {
        let out = self.output();
        let line = out.lines().find(|l| l.contains(" listening on "))?;
        Some(line.rsplit(' ').next()?.to_string())
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.url().is_some_and(|u| http_get(&u, "/healthz").is_some_and(|(s, _)| s == 200)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited ({status}) before it answered; output: {}{}", self.output(), self.errors());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not come up; output: {}{}", self.output(), self.errors());
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(&mut self) -> bool {
        // SAFETY: sending SIGTERM to our own child.
        unsafe { kill(self.child.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_file(&self.stdout);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// A home under `dir` whose config.yaml sends notifications to a JSON receiver on `port`.
fn home_with_hook(dir: &Path, port: u16) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("config.yaml"),
        format!(
            "notifications:\n  allow_private_targets: true\n  channels:\n    hook: \"json://127.0.0.1:{port}/in\"\n"
        ),
    )
    .unwrap();
    home
}

/// A minimal HTTP/1.1 GET, to check health without the CLI.
fn http_get(url: &str, path: &str) -> Option<(u16, String)> {
    http(url, "GET", path, "")
}

/// A minimal HTTP/1.1 request with a form body (empty for none): the status and the body.
fn http(url: &str, method: &str, path: &str, form: &str) -> Option<(u16, String)> {
    let addr = url.strip_prefix("http://")?;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

fn cli(home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("AGENT_OS_HOME", home)
        .env_remove("AGENT_OS_URL")
        .env_remove("AGENT_OS_TOKEN")
        .output()
        .unwrap()
}

/// Runs `agent-os ARGS` against the home's server with `stdin` as its input.
fn cli_stdin(home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("AGENT_OS_HOME", home)
        .env_remove("AGENT_OS_URL")
        .env_remove("AGENT_OS_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap()
}

fn fixture(dir: &Path) -> PathBuf {
    let root = dir.join("fixture");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        r#"name: fixture
tasks:
  hello:
    run: "echo hello from $AGENT_OS_TASK; cat; echo"
  fail:
    run: "echo broken >&2; exit 4"
  envdump:
    run: [env]
  envout:
    run: [sh, envout.sh]
  crashy:
    run: [sh, crashy.sh]
    retries: 1
    retry_delay: 100ms
  sleeper:
    run: "sleep 30"
"#,
    )
    .unwrap();
    std::fs::write(
        root.join("envout.sh"),
        "env > env.txt\npython3 -c 'import json, os; json.dump({\"env\": open(\"env.txt\").read()}, open(os.environ[\"AGENT_OS_OUTPUT\"], \"w\"))'\n",
    )
    .unwrap();
    std::fs::write(
        root.join("crashy.sh"),
        "if [ ! -f first-attempt ]; then\n  touch first-attempt\n  echo $$ > main.pid\n  sleep 60 &\n  echo $! > child.pid\n  echo first attempt running\n  wait\nelse\n  echo second attempt\nfi\n",
    )
    .unwrap();
    root
}

fn wait_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(t) = std::fs::read_to_string(path)
            && !t.trim().is_empty()
        {
            return t.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} never appeared", path.display());
}

fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()), Some("Z") | Some("X")),
        Err(_) => false,
    }
}

#[test]
fn serve_writes_the_client_config_and_shows_the_admin_token_once() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut s = Server::start(&home, &[], &[]);
    let out = s.output();
    assert!(out.contains("admin token (shown once"), "{out}");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(home.join("client.json")).unwrap()).unwrap();
    let token = cfg["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("aosa_") && out.contains(&token));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(home.join("client.json")).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(home.join("config.yaml").exists(), "a commented default config is written");
    ok(&cli(&home, &["project", "list"]));

    // A second server on the same home is refused.
    let second =
        Command::new(BIN).args(["serve", "--home"]).arg(&home).args(["--bind", "127.0.0.1:0"]).output().unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    assert!(s.stop(), "SIGTERM stops the server cleanly");
    let mut s = Server::start(&home, &[], &[]);
    assert!(!s.output().contains("admin token"), "the token is shown only on first start");
    ok(&cli(&home, &["project", "list"]));
    s.stop();

    // AGENT_OS_ADMIN_TOKEN replaces the admin token: the old one stops working.
    let given = "aosa_given0000000000000000000000000000000000000000";
    let _s = Server::start(&home, &[("AGENT_OS_ADMIN_TOKEN", given)], &[]);
    let with_old =
        Command::new(BIN).args(["project", "list", "--token", &token]).env("AGENT_OS_HOME", &home).output().unwrap();
    assert!(!with_old.status.success());
    assert!(String::from_utf8_lossy(&with_old.stderr).contains("unknown, revoked or expired"));
    ok(&Command::new(BIN).args(["project", "list", "--token", given]).env("AGENT_OS_HOME", &home).output().unwrap());
}

/// An engine loop that dies and may not be started again (the heartbeat) stops the server, which
/// exits non-zero and says why. The binary built for these tests has the engine's `testing`
/// feature, which makes the loop named by `AGENT_OS_TEST_LOOP_PANIC` panic once it runs.
#[test]
fn serve_exits_non_zero_when_an_engine_loop_dies_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut s = Server::spawn("serve", &home, &[("AGENT_OS_TEST_LOOP_PANIC", "heartbeat")], &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(status)) = s.child.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server should stop: {}{}", s.output(), s.errors());
        std::thread::sleep(Duration::from_millis(50));
    };
    let errors = s.errors();
    assert_eq!(status.code(), Some(1), "{errors}");
    assert!(errors.contains("engine loop died and is not started again"), "logged at error level: {errors}");
    assert!(
        errors.contains(
            "error: Agent OS stopped because the heartbeat loop panicked: fault injected into the heartbeat loop"
        ),
        "{errors}"
    );
}

#[test]
fn a_user_drives_projects_and_runs_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = fixture(tmp.path());
    let _s = Server::start(&home, &[], &[]);

    let out = ok(&cli(&home, &["project", "add", root.to_str().unwrap()]));
    assert!(out.contains("registered fixture (6 tasks"), "{out}");
    let list = json(&cli(&home, &["project", "list", "--json"]));
    assert_eq!(list[0]["name"], "fixture");
    let show = ok(&cli(&home, &["project", "show", "fixture"]));
    assert!(show.contains("crashy") && show.contains("retries 1"), "{show}");

    let out = ok(&cli(&home, &["run", "fixture", "hello", "--input", r#"{"q": 1}"#, "--wait"]));
    assert!(out.contains("succeeded"), "{out}");
    let failed = cli(&home, &["run", "fixture", "fail", "--wait"]);
    assert_eq!(failed.status.code(), Some(1), "run --wait exits 1 when the run fails");
    assert!(String::from_utf8_lossy(&failed.stdout).contains("exit status 4"));
    let bad_input = cli(&home, &["run", "fixture", "hello", "--input", "[1]"]);
    assert_eq!(bad_input.status.code(), Some(2));
    let unknown = cli(&home, &["run", "fixture", "helo"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("did you mean \"hello\"?"));

    let runs = json(&cli(&home, &["runs", "--json", "--project", "fixture"]));
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let hello = runs.iter().find(|r| r["task"] == "hello").unwrap()["id"].as_str().unwrap().to_string();
    let table = ok(&cli(&home, &["runs", "--status", "failed"]));
    assert!(table.starts_with("ID") && table.contains("fail") && !table.contains("hello"), "{table}");
    let shown = json(&cli(&home, &["runs", "show", &hello, "--json"]));
    assert_eq!(shown["input"]["q"], 1);
    let log = ok(&cli(&home, &["logs", &hello]));
    assert!(log.contains("hello from hello") && log.contains("{\"q\":1}"), "{log}");

    let id = ok(&cli(&home, &["run", "fixture", "sleeper"])).trim().to_string();
    std::thread::sleep(Duration::from_millis(300));
    ok(&cli(&home, &["cancel", &id]));
    let follow = ok(&cli(&home, &["logs", "--follow", &id]));
    let _ = follow;
    let shown = json(&cli(&home, &["runs", "show", &id, "--json"]));
    assert_eq!(shown["status"], "cancelled");

    let created = json(&cli(&home, &["token", "create", "--project", "fixture", "--name", "railway", "--json"]));
    let tok = created["token"].as_str().unwrap();
    let scoped =
        Command::new(BIN).args(["runs", "--json", "--token", tok]).env("AGENT_OS_HOME", &home).output().unwrap();
    assert_eq!(json(&scoped)["runs"].as_array().unwrap().len(), 3);
    let tokens = ok(&cli(&home, &["token", "list"]));
    assert!(tokens.contains("railway") && !tokens.contains(tok));
    ok(&cli(&home, &["token", "revoke", created["id"].as_str().unwrap()]));
    // A second admin token acts for everything; one asks for --project or --admin, not both.
    let admin = json(&cli(&home, &["token", "create", "--admin", "--name", "laptop", "--json"]));
    assert_eq!(admin["kind"], "admin");
    assert!(admin["project"].is_null());
    let all = Command::new(BIN)
        .args(["project", "list", "--token"])
        .arg(admin["token"].as_str().unwrap())
        .env("AGENT_OS_HOME", &home)
        .output()
        .unwrap();
    assert!(all.status.success() && String::from_utf8_lossy(&all.stdout).contains("fixture"));
    assert!(!cli(&home, &["token", "create", "--admin", "--project", "fixture"]).status.success());
    assert!(!cli(&home, &["token", "create"]).status.success());
    ok(&cli(&home, &["token", "revoke", admin["id"].as_str().unwrap()]));

    // A broken manifest is reported with its place; nothing changes.
    std::fs::write(root.join("agent-os.yaml"), "name: fixture\ntasks:\n  a:\n    run: a.sh\n    timeout: 30\n")
        .unwrap();
    let reload = cli(&home, &["project", "reload", "fixture"]);
    assert!(!reload.status.success());
    let err = String::from_utf8_lossy(&reload.stderr);
    assert!(err.contains("agent-os.yaml:5:14: tasks.a.timeout:") && err.contains("hint:"), "{err}");
    assert!(ok(&cli(&home, &["project", "show", "fixture"])).contains("crashy"), "the old manifest stays");
    ok(&cli(&home, &["project", "remove", "fixture"]));
    assert!(ok(&cli(&home, &["project", "list"])).contains("no projects yet"));
    assert_eq!(json(&cli(&home, &["runs", "--json"]))["runs"].as_array().unwrap().len(), 3, "runs stay as history");

    let spec = ok(&cli(&home, &["openapi"]));
    assert!(spec.contains("\"/api/v1/runs\""));
}

#[test]
fn project_secret_show_and_rotate_give_a_hosted_project_its_signing_secret_again() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let _s = Server::start(&home, &[], &[]);
    let root = tmp.path().join("hosted");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), "name: hosted\nplugin: { url: http://127.0.0.1:9/agent-os }\n").unwrap();
    let added = ok(&cli(&home, &["project", "add", root.to_str().unwrap()]));
    let first =
        added.split_whitespace().find(|w| w.starts_with("whsec_")).expect("the secret at registration").to_string();
    assert!(added.contains("`agent-os project secret show hosted` shows it again"), "{added}");

    let shown = cli(&home, &["project", "secret", "show", "hosted"]);
    assert_eq!(ok(&shown).trim(), first, "stdout holds the secret alone, for scripts");
    let rotated = cli(&home, &["project", "secret", "rotate", "hosted", "--grace", "1h"]);
    let second = ok(&rotated).trim().to_string();
    assert!(second.starts_with("whsec_") && second != first, "{second}");
    let note = String::from_utf8_lossy(&rotated.stderr);
    assert!(note.contains("previous secret until"), "{note}");
    let v = json(&cli(&home, &["project", "secret", "show", "hosted", "--json"]));
    assert_eq!(v["signing_secret"], second.as_str());
    assert!(v["previous_valid_until"].is_string(), "{v}");

    let bad = cli(&home, &["project", "secret", "rotate", "hosted", "--grace", "9d"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("at most 7d"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn agent_os_environment_never_reaches_a_task() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = fixture(tmp.path());
    let canary = "sk-canary-0123456789abcdefghijklmnopqrstuv";
    let admin = "aosa_canaryadmin00000000000000000000000000000000";
    let _s = Server::start(
        &home,
        &[
            ("OPENAI_API_KEY", canary),
            ("DISCORD_WEBHOOK_URL", "https://discord.example/canary-hook"),
            ("AGENT_OS_ADMIN_TOKEN", admin),
        ],
        &[],
    );
    ok(&cli(&home, &["project", "add", root.to_str().unwrap()]));
    let run = json(&cli(&home, &["run", "fixture", "envdump", "--wait", "--json"]));
    assert_eq!(run["status"], "succeeded");
    let log = ok(&cli(&home, &["logs", run["id"].as_str().unwrap()]));
    assert!(log.contains("AGENT_OS_RUN_ID="), "the env dump ran: {log}");
    for secret in [canary, "canary-hook", admin, "OPENAI_API_KEY", "DISCORD_WEBHOOK_URL", "AGENT_OS_ADMIN_TOKEN"] {
        assert!(!log.contains(secret), "{secret} reached the task: {log}");
        assert!(!run.to_string().contains(secret), "{secret} in the run");
    }
    // Outputs are stored too: a task that writes its whole environment there leaks nothing.
    let out = json(&cli(&home, &["run", "fixture", "envout", "--wait", "--json"]));
    assert_eq!(out["status"], "succeeded", "{out}");
    let env = out["outputs"]["env"].as_str().unwrap();
    assert!(env.contains("AGENT_OS_TOKEN="), "{env}");
    for secret in [canary, "canary-hook", admin] {
        assert!(!env.contains(secret), "{secret} reached the task's outputs");
    }
    for file in ["agent-os.db", "agent-os.db-wal"] {
        let bytes = std::fs::read(home.join(file)).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains(canary), "the canary is in {file}");
    }
}

#[test]
fn the_server_log_has_no_colour_codes_when_stderr_is_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = fixture(tmp.path());
    let mut s = Server::start(&home, &[("AGENT_OS_LOG", "debug"), ("NO_COLOR", "")], &[]);
    ok(&cli(&home, &["project", "add", root.to_str().unwrap()]));
    let run = json(&cli(&home, &["run", "fixture", "hello", "--wait", "--json"]));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(s.stop(), "the server stops cleanly");
    let log = std::fs::read(&s.stderr).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("DEBUG") && text.contains("attempt ended"), "the log was written: {text}");
    assert!(!log.contains(&0x1b), "an escape code in the log: {text:?}");
}

#[test]
fn a_run_survives_kill_9_of_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = fixture(tmp.path());
    let mut s = Server::start(&home, &[], &[]);
    ok(&cli(&home, &["project", "add", root.to_str().unwrap()]));
    let id = ok(&cli(&home, &["run", "fixture", "crashy"])).trim().to_string();
    let child = wait_file(&root.join("child.pid"));
    let main = wait_file(&root.join("main.pid"));
    assert!(alive(&child) && alive(&main));
    let before = json(&cli(&home, &["runs", "show", &id, "--json"]));
    assert_eq!(before["status"], "running");
    // Kill only once the first attempt's output is stored (the script prints it after writing
    // its pid files): what a crash may lose is output not yet written, never acknowledged work.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok(&cli(&home, &["logs", &id])).contains("first attempt running") {
        assert!(Instant::now() < deadline, "the first attempt's output never reached the log");
        std::thread::sleep(Duration::from_millis(20));
    }

    s.kill9();
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(&child), "the task outlives the server (it is in its own process group)");

    let _s = Server::start(&home, &[], &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        let run = json(&cli(&home, &["runs", "show", &id, "--json"]));
        if run["status"] == "succeeded" || run["status"] == "failed" || Instant::now() > deadline {
            break run;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 2);
    let attempts = run["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["status"], "failed");
    assert!(attempts[0]["error"].as_str().unwrap().contains("lost"), "{run}");
    assert!(
        attempts[0]["error"].as_str().unwrap().contains("process group was still running and has been killed"),
        "{run}"
    );
    assert!(!alive(&child), "the orphaned grandchild was killed on restart");
    assert!(!alive(&main), "the orphaned task was killed on restart");
    let log = ok(&cli(&home, &["logs", &id]));
    assert!(log.contains("first attempt running") && log.contains("second attempt"), "{log}");
    let listed = json(&cli(&home, &["runs", "--json"]));
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1, "acknowledged work is neither lost nor duplicated");
}

/// Lines of the demo's inbox that contain `what`, waiting up to `within` for the first.
fn inbox_lines(home: &Path, what: &str, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(home.join("inbox.jsonl")).unwrap_or_default();
        let found: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|n| n["title"].as_str().is_some_and(|t| t.contains(what)))
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_demos_failures_and_a_missed_check_reach_its_inbox() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let s = Server::start_cmd("demo", &home, &[], &[]);
    assert!(s.output().contains("alerts land in the inbox"), "{}", s.output());

    let fail = cli(&home, &["run", "trading", "scan_market", "--input", r#"{"fail": true}"#, "--wait"]);
    assert_eq!(fail.status.code(), Some(1));
    let failed = inbox_lines(&home, "trading/scan_market failed", Duration::from_secs(20));
    assert_eq!(failed.len(), 1, "told once");
    assert_eq!((failed[0]["project"].as_str(), failed[0]["severity"].as_str()), (Some("trading"), Some("warning")));

    // The price-feed worker pings once, then stops: 30 s later the check is late.
    let checks = json(&cli(&home, &["checks", "--json"]));
    let feed = checks.as_array().unwrap().iter().find(|c| c["slug"] == "price-feed").expect("the price-feed check");
    let ping = feed["ping_url"].as_str().unwrap();
    let (base, path) = ping.split_at(ping.find("/ping/").unwrap());
    assert_eq!(http_get(base, path).map(|(st, _)| st), Some(200));
    let late = inbox_lines(&home, "trading/price-feed is late", Duration::from_secs(60));
    assert_eq!(late.len(), 1, "the missed ping reaches the inbox");

    let open = json(&cli(&home, &["incidents", "--open", "--json"]));
    let subjects: Vec<&str> = open.as_array().unwrap().iter().map(|i| i["subject"].as_str().unwrap()).collect();
    assert!(subjects.contains(&"trading/scan_market") && subjects.contains(&"trading/price-feed"), "{subjects:?}");
    let run_incident = open.as_array().unwrap().iter().find(|i| i["subject"] == "trading/scan_market").unwrap();
    let acked = json(&cli(&home, &["ack", run_incident["id"].as_str().unwrap(), "--by", "me", "--json"]));
    assert_eq!(acked["acked_by"], "me");
    let table = ok(&cli(&home, &["incidents"]));
    assert!(table.starts_with("ID") && table.contains("acked by me"), "{table}");
    let health = ok(&cli(&home, &["health", "trading"]));
    assert!(health.contains("check price-feed is"), "{health}");
    let started =
        ok(&cli(&home, &["maintenance", "start", "--project", "trading", "--for", "1h", "--reason", "upgrade"]));
    assert!(started.starts_with("maintenance ") && started.contains("for trading"), "{started}");
    let listed = ok(&cli(&home, &["maintenance", "list"]));
    assert!(listed.contains("upgrade") && listed.contains("nightly memory rebuild"), "{listed}");
    assert!(s.output().contains("inbox: [warning] trading/scan_market failed · trading"), "{}", s.output());

    // A project's own warning opens an incident its `--resolve` closes, both told to the inbox.
    let warn = [
        "notify",
        "--project",
        "image-workflow",
        "--title",
        "Feed stale",
        "--severity",
        "warning",
        "--dedup-key",
        "feed",
    ];
    assert!(ok(&cli(&home, &warn)).contains("queued for inbox"));
    let resolved = ok(&cli(&home, &["notify", "--project", "image-workflow", "--dedup-key", "feed", "--resolve"]));
    assert!(resolved.contains("queued for inbox"), "{resolved}");
    assert_eq!(inbox_lines(&home, "Resolved: Feed stale", Duration::from_secs(10)).len(), 1);
    let again = cli(&home, &["notify", "--project", "image-workflow", "--dedup-key", "feed", "--resolve"]);
    assert_eq!(again.status.code(), Some(1), "nothing open any more");
}

#[test]
fn a_spike_in_the_demo_runs_the_example_workflow_across_projects() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let _s = Server::start_cmd("demo", &home, &[], &[]);
    let list = json(&cli(&home, &["workflow", "list", "--json"]));
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["market-watch", "volatility-to-memories"], "{list}");

    // trading's scan emits trading.volatility_spike; the workflow asks cortana and tells the inbox.
    let scan = cli(
        &home,
        &["run", "trading", "scan_market", "--input", r#"{"symbols": ["BTC", "ETH"], "force_spike": "ETH"}"#, "--wait"],
    );
    assert_eq!(scan.status.code(), Some(0), "{}", String::from_utf8_lossy(&scan.stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let runs = json(&cli(&home, &["workflow", "runs", "volatility-to-memories", "--json"]));
        let ended =
            runs.as_array().unwrap().iter().find(|r| r["status"] != "queued" && r["status"] != "running").cloned();
        if let Some(r) = ended {
            break r;
        }
        assert!(Instant::now() < deadline, "the workflow did not end: {runs}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["event"]["data"]["symbol"], "ETH", "{run}");
    let detail = json(&cli(&home, &["workflow", "run-status", run["id"].as_str().unwrap(), "--json"]));
    let steps: Vec<(&str, &str)> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step_id"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert!(steps.contains(&("recall", "succeeded")) && steps.contains(&("tell", "succeeded")), "{detail}");
    // Each step's task ran through its own project: the runs list shows them with the workflow.
    let runs = json(&cli(&home, &["runs", "--json"]));
    let by_workflow: Vec<String> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger"].as_str().is_some_and(|t| t.starts_with("workflow:")))
        .map(|r| format!("{}.{}", r["project"].as_str().unwrap(), r["task"].as_str().unwrap()))
        .collect();
    assert!(by_workflow.contains(&"cortana.query_memories".to_string()), "{by_workflow:?}");
    assert_eq!(inbox_lines(&home, "ETH moved", Duration::from_secs(10)).len(), 1, "the notify step reached the inbox");
    let events = json(&cli(&home, &["events", "--type", "agent-os.summary_ready", "--json"]));
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
}

#[test]
fn the_demo_runs_every_example_project() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let s = Server::start_cmd("demo", &home, &[], &[]);
    let out = s.output();
    assert!(out.contains("example projects: cortana, image-workflow, trading"), "{out}");
    assert!(out.contains("admin token: aosa_"), "{out}");
    let list = json(&cli(&home, &["project", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 3);

    let scan = json(&cli(
        &home,
        &[
            "run",
            "trading",
            "scan_market",
            "--input",
            r#"{"symbols": ["BTC", "ETH"], "force_spike": "ETH"}"#,
            "--wait",
            "--json",
        ],
    ));
    assert_eq!(scan["status"], "succeeded", "{scan}");
    assert_eq!(scan["outputs"]["spikes"], serde_json::json!(["ETH"]));
    let recall = json(&cli(
        &home,
        &["run", "cortana", "query_memories", "--input", r#"{"query": "BTC volatility"}"#, "--wait", "--json"],
    ));
    assert_eq!(recall["status"], "succeeded", "{recall}");
    assert!(recall["outputs"]["count"].as_i64().unwrap() > 0);
    let batch = json(&cli(
        &home,
        &["run", "image-workflow", "process_batch", "--input", r#"{"count": 3}"#, "--wait", "--json"],
    ));
    assert_eq!(batch["status"], "succeeded", "{batch}");
    let backup = json(&cli(&home, &["run", "image-workflow", "backup", "--wait", "--json"]));
    assert_eq!(backup["status"], "succeeded", "{backup}");
    let fail = cli(&home, &["run", "trading", "scan_market", "--input", r#"{"fail": true}"#, "--wait"]);
    assert_eq!(fail.status.code(), Some(1));

    let costs = json(&cli(&home, &["costs", "--json"]));
    let costs = costs.as_array().unwrap();
    assert!(
        costs
            .iter()
            .any(|c| c["project"] == "trading" && c["key_name"] == "trading-openai" && c["run_id"] == scan["id"]),
        "{costs:?}"
    );
    assert!(costs.iter().any(|c| c["project"] == "cortana" && c["key_name"] == "cortana-openai"), "{costs:?}");
    // The table attributes each cost to its run, as the README promises.
    let table = ok(&cli(&home, &["costs"]));
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert!(header.contains(&"RUN"), "{table}");
    let scan_id = scan["id"].as_str().unwrap();
    assert!(table.lines().any(|l| l.contains("trading-openai") && l.contains(scan_id)), "{table}");
    // cortana's 22:00 Los Angeles job and trading's 06:00 UTC scan both call OpenAI at once.
    let upcoming = ok(&cli(&home, &["schedules", "--upcoming", "2d"]));
    assert!(upcoming.starts_with("AT (ZONE TIME)") && upcoming.contains("scan_market"), "{upcoming}");
    assert!(upcoming.lines().any(|l| l.contains("daily_update") && l.contains("collides: openai")), "{upcoming}");
    let schedules = ok(&cli(&home, &["schedules"]));
    for want in ["railway", "launchd", "cron", "America/Los_Angeles"] {
        assert!(schedules.contains(want), "{schedules}");
    }

    // The demo's config shares one openai resource among the projects and sets budgets.
    let resources = json(&cli(&home, &["resources", "--json"]));
    assert_eq!((resources[0]["name"].as_str(), resources[0]["concurrency"].as_i64()), (Some("openai"), Some(1)));
    assert_eq!(resources[0]["rate"], "60/min");
    // The table says what the rate's figures are, not a bare `60/min (1.4/5 left)`.
    let table = ok(&cli(&home, &["resources"]));
    assert!(table.contains("RATE LIMIT") && table.contains("60/min, burst "), "{table}");
    assert!(table.contains(" left now"), "{table}");
    assert_eq!(scan["resources"], serde_json::json!(["openai"]), "scan_market held openai while it ran");
    let report = json(&cli(&home, &["cost", "report", "--by", "project", "--json"]));
    let projects: Vec<&str> =
        report["groups"].as_array().unwrap().iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert!(projects.contains(&"cortana") && projects.contains(&"trading"), "{report}");
    let csv = ok(&cli(&home, &["cost", "report", "--by", "service", "--csv"]));
    assert!(csv.starts_with("service,currency,amount,records,tokens_in,tokens_out,unpriced\nopenai,USD,"), "{csv}");
    let budgets = json(&cli(&home, &["budget", "list", "--json"]));
    assert_eq!(budgets.as_array().unwrap().len(), 2, "{budgets}");
}

/// A database made for one test on the PostgreSQL server that `AGENT_OS_TEST_POSTGRES_URL`
/// names, dropped with the guard; `None` (with a note) when no server is named outside CI.
struct PgDatabase {
    base: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(name: &str) -> Option<PgDatabase> {
        let Ok(base) = std::env::var("AGENT_OS_TEST_POSTGRES_URL") else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but AGENT_OS_TEST_POSTGRES_URL is not set");
            }
            eprintln!("NOTE: PostgreSQL run not tried: set AGENT_OS_TEST_POSTGRES_URL");
            return None;
        };
        let name = format!("{name}_{}", std::process::id());
        let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
        let db = PgDatabase { base, name, url };
        db.psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name));
        db.psql(&format!("CREATE DATABASE {}", db.name));
        Some(db)
    }

    fn psql(&self, sql: &str) {
        let o = Command::new("psql")
            .arg(&self.base)
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql is needed for this test");
        assert!(o.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        self.psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

#[test]
fn the_same_binary_runs_on_postgresql() {
    let Some(db) = PgDatabase::create("aos_cli") else { return };
    let url = db.url.clone();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = fixture(tmp.path());
    {
        let mut s = Server::start(&home, &[], &["--database-url", &url]);
        assert!(!home.join("agent-os.db").exists(), "no SQLite file when PostgreSQL is named");
        ok(&cli(&home, &["project", "add", root.to_str().unwrap()]));
        let id = ok(&cli(&home, &["run", "fixture", "crashy"])).trim().to_string();
        wait_file(&root.join("child.pid"));
        s.kill9();
        let _s = Server::start(&home, &[], &["--database-url", &url]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let run = loop {
            let run = json(&cli(&home, &["runs", "show", &id, "--json"]));
            if run["status"] == "succeeded" || Instant::now() > deadline {
                break run;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["attempt"], 2);
        let hello = json(&cli(&home, &["run", "fixture", "hello", "--wait", "--json"]));
        assert_eq!(hello["status"], "succeeded");
    }
}

/// Servers started at the same moment on a fresh PostgreSQL database: each must migrate or wait
/// for the one migrating, and find the admin token another stored, not fail on a duplicate.
/// (8 servers: each keeps 8 connections open, and PostgreSQL allows 100 by default.)
#[test]
fn servers_started_together_on_a_fresh_postgresql_database_all_come_up() {
    const SERVERS: usize = 8;
    let tmp = tempfile::tempdir().unwrap();
    let start_together = |db: &PgDatabase, wave: &str, env: &[(&str, &str)]| -> Vec<(PathBuf, Server)> {
        let homes: Vec<PathBuf> = (0..SERVERS).map(|i| tmp.path().join(format!("{wave}-{i}"))).collect();
        let mut servers: Vec<(PathBuf, Server)> = homes
            .into_iter()
            .map(|home| {
                let s = Server::spawn("serve", &home, env, &["--database-url", &db.url]);
                (home, s)
            })
            .collect();
        for (_, s) in &mut servers {
            s.wait_ready();
        }
        servers
    };

    // With the same AGENT_OS_ADMIN_TOKEN (fake, made here): all up, all accept it, one token.
    let Some(db) = PgDatabase::create("aos_cli_together") else { return };
    let admin = format!("aosa_{}", "5eed".repeat(12));
    let mut servers = start_together(&db, "given", &[("AGENT_OS_ADMIN_TOKEN", &admin)]);
    for (home, _) in &servers {
        assert_eq!(json(&cli(home, &["project", "list", "--json"])), serde_json::json!([]), "{}", home.display());
    }
    let tokens = json(&cli(&servers[0].0, &["token", "list", "--json"]));
    let live: Vec<&Value> =
        tokens.as_array().unwrap().iter().filter(|t| t["kind"] == "admin" && t["revoked_at"].is_null()).collect();
    assert_eq!(live.len(), 1, "one admin token for all the servers: {tokens}");
    for (home, s) in &mut servers {
        assert!(s.stop(), "{} stops cleanly: {}", home.display(), s.errors());
    }
    drop(db);

    // Without it: all up, and exactly one of them generated (and showed) the admin token.
    let Some(db) = PgDatabase::create("aos_cli_together_gen") else { return };
    let mut servers = start_together(&db, "generated", &[]);
    let shown = servers.iter().filter(|(_, s)| s.output().contains("admin token (shown once")).count();
    assert_eq!(shown, 1, "one server generates the admin token, the others find it");
    let (home, _) = servers.iter().find(|(_, s)| s.output().contains("admin token (shown once")).unwrap();
    let tokens = json(&cli(home, &["token", "list", "--json"]));
    assert_eq!(tokens.as_array().unwrap().iter().filter(|t| t["kind"] == "admin").count(), 1, "{tokens}");
    for (_, s) in &mut servers {
        assert!(s.stop());
    }
}

/// A SIGTERM closes the database: SQLite's write-ahead log is truncated instead of being left
/// for the next start to read back.
#[test]
fn a_stopped_server_leaves_no_sqlite_wal_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = fixture(tmp.path());
    let mut s = Server::start(&home, &[], &[]);
    ok(&cli(&home, &["project", "add", root.to_str().unwrap()]));
    let hello = json(&cli(&home, &["run", "fixture", "hello", "--wait", "--json"]));
    assert_eq!(hello["status"], "succeeded");
    let wal = home.join("agent-os.db-wal");
    let size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(size() > 0, "the running server writes to its WAL");
    assert!(s.stop(), "{}", s.errors());
    assert_eq!(size(), 0, "the WAL is empty (or gone) once the server has stopped");
    // And the next start finds everything in the database file.
    let _s = Server::start(&home, &[], &[]);
    assert_eq!(json(&cli(&home, &["runs", "show", hello["id"].as_str().unwrap(), "--json"]))["status"], "succeeded");
}

#[test]
fn cron_next_is_crontab_guru_in_the_terminal() {
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    let out = run(&[
        "cron",
        "next",
        "30 2 * * *",
        "--tz",
        "America/Los_Angeles",
        "--after",
        "2026-03-07T08:00:00Z",
        "--count",
        "3",
    ]);
    assert_eq!(
        ok(&out),
        "2026-03-07T02:30:00-08:00\n2026-03-08T03:00:00-07:00\n2026-03-09T02:30:00-07:00\n",
        "the skipped 02:30 runs right after the jump"
    );
    let out = run(&[
        "cron",
        "next",
        "30 * * * *",
        "--tz",
        "America/Los_Angeles",
        "--after",
        "2026-11-01T07:00:00Z",
        "--count",
        "3",
        "--json",
    ]);
    assert_eq!(
        json(&out),
        serde_json::json!(["2026-11-01T00:30:00-07:00", "2026-11-01T01:30:00-07:00", "2026-11-01T01:30:00-08:00"])
    );
    let bad = run(&["cron", "next", "0 0 * * FRY"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("day-of-week field: bad token \"FRY\""),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let zone = run(&["cron", "next", "@daily", "--tz", "+02:00"]);
    assert_eq!(zone.status.code(), Some(2));
}

#[test]
fn exec_wraps_a_cron_job_and_its_check_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = tmp.path().join("nightly");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), "name: nightly\ntasks:\n  backup: { run: \"true\" }\nschedules:\n  - { task: backup, cron: \"30 3 * * *\", managed_by: cron }\n").unwrap();
    let _s = Server::start(&home, &[], &[]);
    ok(&cli(&home, &["project", "add", root.to_str().unwrap()]));

    let failed = cli(
        &home,
        &[
            "exec",
            "--check",
            "backup",
            "--project",
            "nightly",
            "--",
            "sh",
            "-c",
            "echo copying; echo no space left >&2; exit 3",
        ],
    );
    assert_eq!(failed.status.code(), Some(3), "exec exits with the job's status");
    assert_eq!(String::from_utf8_lossy(&failed.stdout), "copying\n", "the job's output still goes where it went");
    assert!(String::from_utf8_lossy(&failed.stderr).contains("no space left"));
    let checks = json(&cli(&home, &["checks", "--json"]));
    assert_eq!(checks[0]["state"], "down", "{checks}");
    let events = json(&cli(&home, &["events", "--type", "check.", "--json"]));
    assert_eq!(events[0]["type"], "check.down");
    assert!(events[0]["data"]["reason"].as_str().unwrap().contains("status 3"), "{events}");

    let url = checks[0]["ping_url"].as_str().unwrap().to_string();
    let good = Command::new(BIN)
        .args(["exec", "--check", "backup", "--ping-url", &url, "--", "true"])
        .env_remove("AGENT_OS_URL")
        .output()
        .unwrap();
    assert_eq!(good.status.code(), Some(0));
    assert_eq!(json(&cli(&home, &["checks", "--json"]))[0]["state"], "up");
    let table = ok(&cli(&home, &["checks"]));
    assert!(table.contains("UP") && table.contains("30 3 * * *"), "{table}");

    // Agent OS unreachable: the job runs all the same, with a warning.
    let offline = Command::new(BIN)
        .args([
            "exec",
            "--check",
            "backup",
            "--ping-url",
            "http://127.0.0.1:9/ping/x",
            "--",
            "sh",
            "-c",
            "echo still ran",
        ])
        .output()
        .unwrap();
    assert_eq!(offline.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&offline.stdout), "still ran\n");
    assert!(String::from_utf8_lossy(&offline.stderr).contains("could not reach"));
}

#[test]
fn discovered_schedules_are_registered_and_schedules_are_paused_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = tmp.path().join("nightly");
    std::fs::create_dir_all(root.join("ops")).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        "name: nightly\ntasks:\n  sync: { run: \"true\" }\nschedules:\n  - { task: sync, cron: \"0 4 * * *\", timezone: UTC }\n",
    )
    .unwrap();
    std::fs::write(
        root.join("ops/crontab.txt"),
        "CRON_TZ=Europe/Berlin\n15 2 * * * cd /srv/nightly && ./scripts/rotate-logs.sh >> /var/log/rotate.log 2>&1\n",
    )
    .unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("crontab"), "0 * * * * /usr/local/bin/poll\n").unwrap();
    let _s = Server::start(&home, &[], &[]);
    ok(&cli(&home, &["project", "add", root.to_str().unwrap()]));

    let out = cli(&home, &["schedules", "discover", "--register", root.to_str().unwrap(), elsewhere.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "one finding had no project: {stdout}\n{stderr}");
    assert!(stderr.contains("elsewhere/crontab:1: no registered project's directory holds it"), "{stderr}");
    assert!(stdout.contains("Registered") && stdout.contains("rotate-logs") && stdout.contains("/ping/"), "{stdout}");

    let list = json(&cli(&home, &["schedules", "--json"]));
    let rotate = list.as_array().unwrap().iter().find(|s| s["task"] == "rotate-logs").unwrap().clone();
    assert_eq!((rotate["source"].as_str(), rotate["managed_by"].as_str()), (Some("discovered"), Some("cron")));
    assert_eq!((rotate["cron"].as_str(), rotate["timezone"].as_str()), (Some("15 2 * * *"), Some("Europe/Berlin")));
    assert!(rotate["description"].as_str().unwrap().contains("crontab.txt:2"), "{rotate}");

    // The registered schedule's check takes pings from `exec`, like any other.
    let exec = cli(&home, &["exec", "--check", "rotate-logs", "--project", "nightly", "--", "true"]);
    assert_eq!(exec.status.code(), Some(0));
    let list = json(&cli(&home, &["schedules", "--json"]));
    assert_eq!(list.as_array().unwrap().iter().find(|s| s["task"] == "rotate-logs").unwrap()["state"], "up");

    // Pause, resume and run now, by PROJECT/TASK or by id.
    let paused = json(&cli(&home, &["schedules", "pause", "nightly/sync", "--json"]));
    assert_eq!(paused["paused"], true);
    let table = ok(&cli(&home, &["schedules"]));
    assert!(table.contains("(paused)") && table.contains(paused["id"].as_str().unwrap()), "{table}");
    let resumed = ok(&cli(&home, &["schedules", "resume", paused["id"].as_str().unwrap()]));
    assert!(resumed.contains("is active; next fire"), "{resumed}");
    let run = json(&cli(&home, &["schedules", "run", "nightly/sync", "--json"]));
    assert_eq!(run["trigger"], "manual");
    let refused = cli(&home, &["schedules", "pause", "nightly/rotate-logs"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("kept by cron"));

    // Forget takes PROJECT/NAME or the id, as pause and resume do, and still --project NAME.
    ok(&cli(&home, &["schedules", "forget", "nightly/rotate-logs"]));
    let list = json(&cli(&home, &["schedules", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let refused = cli(&home, &["schedules", "forget", "nightly/sync"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("comes from its manifest"), "{refused:?}");
    ok(&cli(&home, &["schedules", "discover", "--register", root.to_str().unwrap()]));
    let list = json(&cli(&home, &["schedules", "--json"]));
    let id = list.as_array().unwrap().iter().find(|s| s["task"] == "rotate-logs").unwrap()["id"].clone();
    ok(&cli(&home, &["schedules", "forget", id.as_str().unwrap()]));
    ok(&cli(&home, &["schedules", "discover", "--register", root.to_str().unwrap()]));
    ok(&cli(&home, &["schedules", "forget", "--project", "nightly", "rotate-logs"]));
    let list = json(&cli(&home, &["schedules", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

/// The README's tour on a machine whose zone is not the one the manifests state: the crontab
/// entry and the launchd job the example manifests declare are recognised, not registered a
/// second time beside them (which also failed half-way on the name of the manifest's check).
#[test]
fn discover_register_in_the_readme_tour_recognises_what_the_manifests_declare() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let _s = Server::start_cmd("demo", &home, &[], &[]);
    let projects = home.join("projects");
    let register = || {
        Command::new(BIN)
            .args(["schedules", "discover", projects.to_str().unwrap(), "--register"])
            .env("AGENT_OS_HOME", &home)
            .env("TZ", "Etc/UTC")
            .env_remove("AGENT_OS_URL")
            .env_remove("AGENT_OS_TOKEN")
            .output()
            .unwrap()
    };
    let before = json(&cli(&home, &["schedules", "--json"]));
    for _ in 0..2 {
        let out = register();
        let stdout = ok(&out);
        assert!(stdout.contains("Already in the manifest"), "{stdout}");
        assert!(stdout.contains("image-workflow") && stdout.contains("backup"), "{stdout}");
        assert!(stdout.contains("cortana") && stdout.contains("daily_update"), "{stdout}");
        assert!(!stdout.contains("Registered"), "nothing is new: {stdout}");
    }
    let after = json(&cli(&home, &["schedules", "--json"]));
    assert!(after.as_array().unwrap().iter().all(|s| s["source"] != "discovered"), "{after:#}");
    assert_eq!(after.as_array().unwrap().len(), before.as_array().unwrap().len());
    let checks = json(&cli(&home, &["checks", "--json"]));
    let slugs: Vec<&str> = checks.as_array().unwrap().iter().filter_map(|c| c["slug"].as_str()).collect();
    assert!(!slugs.contains(&"run_daily_update"), "no second check for cortana's job: {slugs:?}");
}

#[test]
fn lease_keeps_two_jobs_apart_and_passes_their_status_through() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("config.yaml"), "resources:\n  openai: { concurrency: 1 }\n").unwrap();
    let _s = Server::start(&home, &[], &[]);
    let log = tmp.path().join("log");
    let job = format!("echo start >> {0}; sleep 0.4; echo end >> {0}", log.display());
    let spawn = |extra: &[&str]| {
        Command::new(BIN)
            .args(["lease", "openai", "--wait", "20s", "--ttl", "2s", "--label", "job"])
            .args(extra)
            .args(["--", "sh", "-c", &job])
            .env("AGENT_OS_HOME", &home)
            .env_remove("AGENT_OS_URL")
            .env_remove("AGENT_OS_TOKEN")
            .spawn()
            .unwrap()
    };
    let mut jobs: Vec<Child> = (0..3).map(|_| spawn(&[])).collect();
    // While they run, the resource shows one holder and the others in line.
    std::thread::sleep(Duration::from_millis(300));
    let table = ok(&cli(&home, &["resources"]));
    assert!(table.contains("openai") && table.contains("1/1") && table.contains("job, job"), "{table}");
    for j in &mut jobs {
        assert!(j.wait().unwrap().success());
    }
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines, "start\nend\n".repeat(3), "the jobs ran one after another");

    // The command's status comes back; a lease that cannot be had means the command never runs.
    let failed = cli(&home, &["lease", "openai", "--", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3));
    let mut holder = spawn(&[]);
    std::thread::sleep(Duration::from_millis(150));
    let refused = cli(
        &home,
        &["lease", "openai", "--wait", "0s", "--", "sh", "-c", &format!("touch {}", tmp.path().join("ran").display())],
    );
    assert_eq!(refused.status.code(), Some(75), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("held by job"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!tmp.path().join("ran").exists());
    assert!(holder.wait().unwrap().success());
    let json = json(&cli(&home, &["resources", "--json"]));
    assert_eq!(json[0]["holders"], serde_json::json!([]), "every lease was released");
}

/// What a [`receiver`] got: the request line, the `Idempotency-Key` and the body.
#[derive(Clone, Debug)]
struct Request {
    line: String,
    key: String,
    body: String,
}

/// A tiny HTTP receiver on 127.0.0.1: answers 204 to every request (the first one only after
/// `first_delay`) and records each. Returns its port and the record.
fn receiver(first_delay: Duration) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Request>>>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Request>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap_or(0);
                let (mut key, mut length) = (String::new(), 0);
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    let lower = header.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("idempotency-key:") {
                        key = v.trim().to_string();
                    }
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                let first = {
                    let mut l = log.lock().unwrap();
                    l.push(Request {
                        line: line.trim().to_string(),
                        key,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    l.len() == 1
                };
                if first {
                    std::thread::sleep(first_delay);
                }
                let mut out = stream;
                let _ = out.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            });
        }
    });
    (port, seen)
}

#[test]
fn notify_and_channel_test_from_the_command_line() {
    let (port, seen) = receiver(Duration::ZERO);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("config.yaml"),
        format!("notifications:\n  allow_private_targets: true\n  channels:\n    team: \"slack://T1/B1/${{TEAM_SECRET}}?base=http://127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let _s = Server::start(&home, &[("TEAM_SECRET", "s3cr3t-value")], &[]);
    let channels = ok(&cli(&home, &["channel", "list"]));
    assert!(channels.contains("slack://T1/B1/s3c…") && !channels.contains("s3cr3t-value"), "{channels}");
    let tested = cli(&home, &["channel", "test", "team"]);
    assert_eq!(tested.status.code(), Some(0), "{}", String::from_utf8_lossy(&tested.stderr));
    let sent = ok(&cli(
        &home,
        &["notify", "--title", "Backup done", "--body", "3 files", "--severity", "info", "--tag", "backup"],
    ));
    assert!(sent.contains("queued for team"), "{sent}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the receiver got {:?}", seen.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = seen.lock().unwrap().clone();
    assert!(got.iter().all(|r| r.line == "POST /services/T1/B1/s3cr3t-value HTTP/1.1"), "{got:?}");
    assert!(got[1].body.contains("Backup done") && got[1].body.contains("3 files"), "{got:?}");
    let list = json(&cli(&home, &["notifications", "--json"]));
    assert_eq!(list[0]["title"], "Backup done");
    // A missing variable stops the server with the channel's name.
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("config.yaml"),
        "notifications:\n  channels:\n    team: \"discord://1/${NOT_SET_ANYWHERE}\"\n",
    )
    .unwrap();
    let out =
        Command::new(BIN).args(["serve", "--home"]).arg(&broken).args(["--bind", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("notifications.channels.team: ${NOT_SET_ANYWHERE} is not set"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A delivery connects to the very address it checked: a proxy named in the server's
/// environment would resolve the channel's name again, after the check (an SSRF around the
/// private-address rule), so channels never use one.
#[test]
fn a_delivery_never_goes_through_a_proxy_from_the_environment() {
    let (port, seen) = receiver(Duration::ZERO);
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let home = home_with_hook(tmp.path(), port);
    let env: Vec<(&str, &str)> = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"]
        .into_iter()
        .map(|k| (k, proxy_url.as_str()))
        .chain([("NO_PROXY", ""), ("no_proxy", "")])
        .collect();
    let _s = Server::start(&home, &env, &[]);
    let tested = cli(&home, &["channel", "test", "hook"]);
    assert_eq!(tested.status.code(), Some(0), "{}", String::from_utf8_lossy(&tested.stderr));
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "the receiver itself got the test: {got:?}");
    assert_eq!(got[0].line, "POST /in HTTP/1.1");
    let proxied = proxy.accept().map(|_| ()).map_err(|e| e.kind());
    assert_eq!(proxied, Err(std::io::ErrorKind::WouldBlock), "nothing connected to the proxy");
}

/// A channel that every delivery would refuse stops the start, naming the file, the channel
/// and the fix, before anything is created; a name that does not resolve now only warns.
#[test]
fn a_channel_refused_by_the_private_address_rule_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("config.yaml");
    std::fs::write(
        &config,
        "notifications:\n  channels:\n    hook: \"json://127.0.0.1:9/in\"\n    later: \"json://agent-os-test.invalid/in\"\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["serve", "--home"]).arg(&home).args(["--bind", "127.0.0.1:0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // The place in the file, line and column, as every error in config.yaml has.
    let place = format!("{}:3:", config.display());
    assert!(stderr.contains(&place), "{stderr}");
    assert!(stderr.contains("notifications.channels.hook: "), "{stderr}");
    assert!(stderr.contains("resolves to 127.0.0.1, a private or local address (loopback"), "{stderr}");
    assert!(stderr.contains("set notifications.allow_private_targets: true"), "{stderr}");
    assert!(stderr.contains("notifications.channels.later: cannot resolve agent-os-test.invalid"), "{stderr}");
    assert!(!home.join("agent-os.db").exists(), "nothing was created");

    // Unresolved now is not a reason to stay down; the refused channel allowed is fine too.
    std::fs::write(&config, "notifications:\n  channels:\n    later: \"json://agent-os-test.invalid/in\"\n").unwrap();
    drop(Server::start(&home, &[], &[]));
    std::fs::write(
        &config,
        "notifications:\n  allow_private_targets: true\n  channels:\n    hook: \"json://127.0.0.1:9/in\"\n",
    )
    .unwrap();
    drop(Server::start(&home, &[], &[]));
}

#[test]
fn a_notification_in_flight_when_the_server_is_killed_is_delivered_after_the_restart() {
    // The receiver holds its first answer for 3 s, time to kill the server mid-attempt.
    let (port, keys) = receiver(Duration::from_secs(3));
    let tmp = tempfile::tempdir().unwrap();
    let home = home_with_hook(tmp.path(), port);
    let mut s = Server::start(&home, &[], &[]);
    ok(&cli(&home, &["notify", "--title", "nightly backup failed"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while keys.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the first attempt never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill9();

    let _s = Server::start(&home, &[], &[]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = json(&cli(&home, &["notifications", "--json"]));
        if list[0]["deliveries"][0]["status"] == "delivered" {
            assert_eq!(list[0]["deliveries"][0]["attempts"], 2, "{list}");
            break;
        }
        assert!(Instant::now() < deadline, "not delivered after the restart: {list}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let keys: Vec<String> = keys.lock().unwrap().iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), 2, "at least once: the cut-off attempt and the one after the restart");
    assert_eq!(keys[0], keys[1], "both with the same idempotency key, so the receiver can drop one");
}

/// `agent-os dashboard password` as a user runs it: the password comes from stdin (never the
/// command line), logs in to the dashboard, and `--clear` takes it away again.
#[test]
fn the_dashboard_password_is_read_from_stdin_and_cleared_with_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let s = Server::start(&home, &[], &[]);
    let url = s.url().unwrap();
    // What logging in to the dashboard with a secret answers: 303 when it lets the browser in.
    let login = |secret: &str| {
        http(&url, "POST", "/login", &format!("secret={}&next=%2F", secret.replace(' ', "+"))).unwrap().0
    };
    let text =
        |o: &Output| (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());

    // A password is never an argument: it would land in the shell's history.
    let o = cli_stdin(&home, &["dashboard", "password", "correct horse battery"], "");
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));

    let o = cli_stdin(&home, &["dashboard", "password"], "too short\n");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("at least 12 characters") && err.contains("password"), "{err}");
    assert_eq!(login("too short"), 401);

    let o = cli_stdin(&home, &["dashboard", "password"], "");
    assert_eq!(o.status.code(), Some(1), "an empty stdin sets nothing: {:?}", text(&o));

    let o = cli_stdin(&home, &["dashboard", "password"], "correct horse battery\n");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("dashboard password set"), "{out}");
    assert!(!out.contains("correct horse") && !err.contains("correct horse"), "the password is never echoed");
    assert_eq!(login("correct horse battery"), 303, "the password logs in");

    let o = cli_stdin(&home, &["dashboard", "password", "--clear"], "");
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(login("correct horse battery"), 401, "a cleared password no longer logs in");
}

/// A worker's request, as `agent-os worker` sends it: JSON, its token and the protocol's
/// header. The status and the body.
fn worker_post(url: &str, path: &str, token: &str, body: &Value) -> (u16, String) {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAgent-OS-Worker-Protocol: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn worker_tokens_and_the_list_of_workers_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let s = Server::start(&home, &[], &[]);
    let url = s.url().unwrap();

    let created = json(&cli(
        &home,
        &[
            "token",
            "create",
            "--worker",
            "--project",
            "cortana",
            "--project",
            "image-workflow",
            "--name",
            "mac-mini",
            "--json",
        ],
    ));
    assert_eq!(
        (created["kind"].as_str(), &created["projects"]),
        (Some("worker"), &serde_json::json!(["cortana", "image-workflow"]))
    );
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("aosw_"), "{token}");
    let plain = cli(&home, &["token", "create", "--worker", "--project", "cortana"]);
    assert!(ok(&plain).contains("worker token for cortana (shown once"), "{plain:?}");
    assert!(String::from_utf8_lossy(&plain.stderr).contains("agent-os worker --server"), "{plain:?}");
    let two = cli(&home, &["token", "create", "--project", "a", "--project", "b"]);
    assert!(!two.status.success() && String::from_utf8_lossy(&two.stderr).contains("acts for one project"), "{two:?}");
    assert!(!cli(&home, &["token", "create", "--worker", "--admin"]).status.success());
    assert!(ok(&cli(&home, &["token", "list"])).contains("cortana,image-workflow"));

    assert!(ok(&cli(&home, &["workers"])).contains("no workers yet"));
    let manifest = "name: cortana\ntasks:\n  daily: { run: scripts/daily.sh }\n";
    let hello = serde_json::json!({"name": "mac-mini", "version": "0.9.0", "hostname": "mac-mini.local", "capacity": 2,
        "projects": [{"name": "cortana", "manifest": manifest}], "running": [], "pending": []});
    let (status, body) = worker_post(&url, "/api/v1/worker/hello", &token, &hello);
    assert_eq!(status, 200, "{body}");

    let table = ok(&cli(&home, &["workers"]));
    let row = table.lines().find(|l| l.starts_with("mac-mini")).unwrap_or_default();
    for part in ["mac-mini.local", "0.9.0", "connected", "cortana", "0/2"] {
        assert!(row.contains(part), "{part} in {table}");
    }
    let list = json(&cli(&home, &["workers", "--json"]));
    assert_eq!((list[0]["name"].as_str(), list[0]["connected"].as_bool()), (Some("mac-mini"), Some(true)));
    let shown = json(&cli(&home, &["project", "show", "cortana", "--json"]));
    assert_eq!(shown["transport"], "worker");
}

#[test]
fn tokens_are_priced_by_the_server_and_an_unknown_model_waits_for_its_price() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = fixture(tmp.path());
    let _s = Server::start(&home, &[], &[]);
    ok(&cli(&home, &["project", "add", root.to_str().unwrap()]));

    // A known model's tokens are priced from the built-in table: 1000 in (400 of them cached)
    // and 500 out of gpt-4o-mini at 0.15 / 0.075 / 0.60 per million.
    let add = |model: &str, key: &str| {
        cli(
            &home,
            &[
                "cost",
                "add",
                "--project",
                "fixture",
                "--service",
                "openai",
                "--model",
                model,
                "--tokens-in",
                "1000",
                "--tokens-cached-in",
                "400",
                "--tokens-out",
                "500",
                "--idempotency-key",
                key,
            ],
        )
    };
    assert_eq!(ok(&add("gpt-4o-mini-2024-07-18", "k1")).trim(), "recorded");
    let out = ok(&add("acme-large", "k2"));
    assert!(out.contains("recorded as unpriced: acme-large has no price"), "{out}");
    ok(&add("acme-large", "k3"));
    let costs = json(&cli(&home, &["costs", "--json", "--project", "fixture"]));
    let by_key = |k: &str| costs.as_array().unwrap().iter().find(|c| c["idempotency_key"] == k).unwrap().clone();
    let priced = by_key("k1");
    assert_eq!(priced["amount"], "0.00042", "{priced}");
    assert_eq!(priced["price"]["model"], "gpt-4o-mini");
    assert_eq!(priced["price"]["cached_input"], "0.075");
    assert_eq!(priced["tokens_cached_in"], 400);
    let unpriced = by_key("k2");
    assert_eq!((unpriced["amount"].clone(), unpriced["unpriced"].clone()), (Value::Null, Value::Bool(true)));
    assert_eq!(unpriced["tokens_in"], 1000);
    let table = ok(&cli(&home, &["costs", "--project", "fixture"]));
    assert!(table.contains("unpriced") && table.contains("1000/500"), "{table}");

    // The total counts the priced amount and says how many records it could not count.
    let report = json(&cli(&home, &["cost", "report", "--json"]));
    assert_eq!(report["totals"][0]["amount"], "0.00042", "{report}");
    assert_eq!(report["totals"][0]["records"], 3);
    assert_eq!(report["totals"][0]["unpriced"], 2);
    let text = ok(&cli(&home, &["cost", "report"]));
    assert!(text.contains("2 records are of models without a price"), "{text}");

    // One warning for the model, however many records: an incident that tells once.
    let incidents = json(&cli(&home, &["incidents", "--json"]));
    let pricing: Vec<&Value> = incidents.as_array().unwrap().iter().filter(|i| i["source"] == "pricing").collect();
    assert_eq!(pricing.len(), 1, "{incidents}");
    assert_eq!(pricing[0]["subject"], "acme-large");
    assert_eq!(pricing[0]["status"], "open");

    // Bad input names the field and stores nothing.
    let bad = cli(
        &home,
        &[
            "cost",
            "add",
            "--project",
            "fixture",
            "--service",
            "openai",
            "--model",
            "gpt-4o",
            "--tokens-in",
            "5",
            "--tokens-cached-in",
            "6",
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("tokens_cached_in"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // config.yaml gives the model a price; applied live, the records are priced and the
    // incident resolves (a start prices them the same way).
    std::fs::write(home.join("config.yaml"), "prices:\n  acme-large: { input: 2, output: 8, cached_input: \"0.5\" }\n")
        .unwrap();
    // (The file watch may apply it a moment before this asks: then nothing is left to change.)
    let reloaded = json(&cli(&home, &["config", "reload", "--json"]));
    assert_eq!(reloaded["applied"], true, "{reloaded}");
    let prices = ok(&cli(&home, &["cost", "prices", "acme"]));
    assert!(prices.contains("acme-large") && prices.contains("config"), "{prices}");
    let listed = json(&cli(&home, &["cost", "prices", "gpt-4o-mini", "--json"]));
    assert_eq!(listed[0]["input"], "0.15", "{listed}");
    // 600 * 2 + 400 * 0.5 + 500 * 8 per million = 0.0054 each.
    let report = json(&cli(&home, &["cost", "report", "--json"]));
    assert_eq!(report["totals"][0]["amount"], "0.01122", "{report}");
    assert_eq!(report["totals"][0]["unpriced"], 0);
    let costs = json(&cli(&home, &["costs", "--json", "--project", "fixture"]));
    let repriced = costs.as_array().unwrap().iter().find(|c| c["idempotency_key"] == "k2").unwrap();
    assert_eq!(repriced["amount"], "0.0054");
    assert_eq!(repriced["price"]["source"], "config");
    let incidents = json(&cli(&home, &["incidents", "--json"]));
    let pricing = incidents.as_array().unwrap().iter().find(|i| i["source"] == "pricing").unwrap();
    assert_eq!(pricing["status"], "resolved", "{pricing}");
}

/// Polls `agent-os config status --json` until `done` holds for it (at most 20 s).
fn config_status_until(home: &Path, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = json(&cli(home, &["config", "status", "--json"]));
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: the config status stayed {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn resource_names(home: &Path) -> Vec<(String, Value)> {
    let list = json(&cli(home, &["resources", "--json"]));
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["concurrency"].clone()))
        .collect()
}

#[test]
fn config_yaml_edits_apply_live_and_a_bad_edit_keeps_the_settings_in_force() {
    let (port, seen) = receiver(Duration::ZERO);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("config.yaml");
    std::fs::write(&config, "resources:\n  openai:\n    concurrency: 1\n").unwrap();
    let mut s = Server::start(&home, &[], &[]);
    assert_eq!(resource_names(&home), [("openai".to_string(), Value::from(1))]);

    // An edit of the file is applied within seconds: a new resource and a new channel.
    std::fs::write(
        &config,
        format!(
            "resources:\n  openai:\n    concurrency: 1\n  gpu:\n    concurrency: 2\nnotifications:\n  allow_private_targets: true\n  channels:\n    hook: \"json://127.0.0.1:{port}/in\"\n"
        ),
    )
    .unwrap();
    let status = config_status_until(&home, "the edit", |s| s["last_reload"]["trigger"] == "file");
    assert_eq!(status["last_reload"]["applied"], true, "{status}");
    assert_eq!(status["last_reload"]["changed"], serde_json::json!(["resources", "notifications"]), "{status}");
    assert_eq!(status["file"], config.display().to_string());
    let names: Vec<String> = resource_names(&home).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["gpu", "openai"]);
    let tested = cli(&home, &["channel", "test", "hook"]);
    assert_eq!(tested.status.code(), Some(0), "{}", String::from_utf8_lossy(&tested.stderr));
    assert!(seen.lock().unwrap().iter().any(|r| r.line == "POST /in HTTP/1.1"), "the new channel delivered");

    // A bad edit: refused with its place, the settings in force kept, an incident open.
    std::fs::write(&config, "resources:\n  openai:\n    concurrency: 0\n").unwrap();
    let status = config_status_until(&home, "the bad edit", |s| s["last_reload"]["applied"] == false);
    let error = &status["last_reload"]["errors"][0];
    assert_eq!((error["line"].as_u64(), error["path"].as_str()), (Some(3), Some("resources.openai.concurrency")));
    assert_eq!(error["file"], config.display().to_string());
    assert_eq!(resource_names(&home).len(), 2, "the resources in force stay");
    let open = json(&cli(&home, &["incidents", "--open", "--json"]));
    let incident = open.as_array().unwrap().iter().find(|i| i["source"] == "config").cloned();
    let incident = incident.unwrap_or_else(|| panic!("no config incident in {open}"));
    assert!(incident["reason"].as_str().unwrap().contains("resources.openai.concurrency"), "{incident}");
    let again = cli(&home, &["config", "reload"]);
    assert_eq!(again.status.code(), Some(1), "a refused file is exit 1");
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains(&format!("{}:3:", config.display())) && said.contains("kept"), "{said}");

    // SIGHUP applies the fixed file; a setting only a restart applies is reported, not applied.
    std::fs::write(&config, "bind: 127.0.0.1:1\nresources:\n  openai:\n    concurrency: 3\n").unwrap();
    // SAFETY: sending SIGHUP to our own child.
    unsafe { kill(s.child.id() as i32, 1) };
    let status = config_status_until(&home, "SIGHUP", |s| s["last_reload"]["trigger"] == "signal");
    assert_eq!(status["last_reload"]["applied"], true, "{status}");
    assert_eq!(status["last_reload"]["restart_required"], serde_json::json!(["bind"]), "{status}");
    assert_eq!(resource_names(&home), [("openai".to_string(), Value::from(3))]);
    let open = json(&cli(&home, &["incidents", "--open", "--json"]));
    assert!(open.as_array().unwrap().iter().all(|i| i["source"] != "config"), "resolved: {open}");
    assert!(http_get(&s.url().unwrap(), "/healthz").is_some_and(|(code, _)| code == 200), "still serving where it was");
    assert!(s.stop(), "{}", s.errors());
    assert!(s.errors().contains("SIGHUP: config.yaml applied"), "{}", s.errors());
}

#[test]
fn config_check_validates_a_file_without_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("config.yaml");
    std::fs::write(
        &file,
        "budgets:\n  - project: trading\n    period: monthly\n    amount: \"ten\"\nnotifications:\n  routes:\n    - channels: [nowhere]\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["config", "check"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&format!("{}:4:", file.display())) && said.contains("budgets[0].amount"), "{said}");
    assert!(said.contains("notifications.routes[0].channels") && said.contains("nowhere"), "{said}");
    assert!(said.contains("2 errors"), "{said}");
    let out = Command::new(BIN).args(["config", "check", "--json"]).arg(&file).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["valid"].as_bool(), report["errors"].as_array().map(Vec::len)), (Some(false), Some(2)));

    // A secret this machine does not have is a warning: CI checks the file without it.
    std::fs::write(&file, "notifications:\n  channels:\n    team: \"discord://1/${CHECK_NOT_SET}\"\n").unwrap();
    let out = Command::new(BIN).args(["config", "check"]).arg(&file).env_remove("CHECK_NOT_SET").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("${CHECK_NOT_SET} is not set"));
    // A file that is not there says so.
    let out = Command::new(BIN).args(["config", "check"]).arg(tmp.path().join("missing.yaml")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

/// The status of each of the fixture's runs, by id.
fn run_states(home: &Path) -> std::collections::HashMap<String, String> {
    let runs = json(&cli(home, &["runs", "--json", "--project", "fixture"]));
    runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string()))
        .collect()
}

fn wait_state(home: &Path, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while run_states(home).get(id).map(String::as_str) != Some(status) {
        assert!(Instant::now() < deadline, "run {id} never became {status}: {:?}", run_states(home));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_live_change_of_runs_max_concurrent_adds_and_takes_away_slots() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("config.yaml");
    std::fs::write(&config, "runs:\n  max_concurrent: 1\n").unwrap();
    let root = fixture(tmp.path());
    let _s = Server::start(&home, &[], &[]);
    ok(&cli(&home, &["project", "add", root.to_str().unwrap()]));
    let start = || json(&cli(&home, &["run", "fixture", "sleeper", "--json"]))["id"].as_str().unwrap().to_string();
    let (a, b) = (start(), start());
    wait_state(&home, &a, "running");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(run_states(&home)[&b], "queued", "one slot");

    std::fs::write(&config, "runs:\n  max_concurrent: 2\n").unwrap();
    let r = json(&cli(&home, &["config", "reload", "--json"]));
    assert_eq!(r["applied"], true, "{r}");
    wait_state(&home, &b, "running");

    // Back to one: the two running go on, and a new run waits until fewer than one run.
    std::fs::write(&config, "runs:\n  max_concurrent: 1\n").unwrap();
    ok(&cli(&home, &["config", "reload"]));
    ok(&cli(&home, &["cancel", &a]));
    wait_state(&home, &a, "cancelled");
    let c = start();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!((run_states(&home)[&b].as_str(), run_states(&home)[&c].as_str()), ("running", "queued"));
    ok(&cli(&home, &["cancel", &b]));
    wait_state(&home, &c, "running");
    ok(&cli(&home, &["cancel", &c]));
}

#[test]
fn prune_and_retention_show_the_policy_of_config_yaml_and_what_a_pass_prunes() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("config.yaml"), "retention:\n  runs: 30d\n  costs: 400d\n").unwrap();
    let _s = Server::start(&home, &[], &[]);

    let dry = ok(&cli(&home, &["prune", "--dry-run"]));
    for want in ["KIND", "KEPT FOR", "CUTOFF", "WOULD PRUNE", "workflow_runs", "sessions", "400d", "30d"] {
        assert!(dry.contains(want), "{want} missing in {dry}");
    }
    assert!(dry.contains("dry run: 0 records would be pruned; nothing was deleted"), "{dry}");
    let runs = dry.lines().find(|l| l.starts_with("runs ")).expect("a runs line");
    assert!(runs.contains("30d") && runs.contains("UTC"), "the cutoff 30 days back: {runs}");

    let pass = ok(&cli(&home, &["prune"]));
    assert!(pass.contains("PRUNED") && pass.contains("records pruned; longest batch"), "{pass}");

    let r = json(&cli(&home, &["retention", "--json"]));
    let keep = |key: &str| {
        r["policy"].as_array().unwrap().iter().find(|k| k["key"] == key).map(|k| k["keep"].clone()).unwrap()
    };
    assert_eq!(keep("runs"), "30d");
    assert_eq!(keep("costs"), "400d");
    assert_eq!(keep("logs"), "30d", "a key not set keeps its default");
    assert_eq!(r["last_pass"]["dry_run"], false, "the pass just run: {r}");
    let table = ok(&cli(&home, &["retention"]));
    assert!(table.contains("notifications") && table.contains("90d") && table.contains("last pass:"), "{table}");

    // A new policy in config.yaml applies without a restart.
    std::fs::write(home.join("config.yaml"), "retention:\n  runs: 10d\n  costs: forever\n").unwrap();
    let reloaded = json(&cli(&home, &["config", "reload", "--json"]));
    assert_eq!(reloaded["applied"], true, "{reloaded}");
    let r = json(&cli(&home, &["retention", "--json"]));
    let keep = |key: &str| {
        r["policy"].as_array().unwrap().iter().find(|k| k["key"] == key).map(|k| k["keep"].clone()).unwrap()
    };
    assert_eq!((keep("runs"), keep("costs")), (Value::from("10d"), Value::from("forever")), "{r}");

    // Not with a project's token.
    let bad = Command::new(BIN)
        .args(["prune"])
        .env("AGENT_OS_HOME", &home)
        .env("AGENT_OS_TOKEN", "aosp_not-a-real-token")
        .env_remove("AGENT_OS_URL")
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn checks_and_projects_are_snoozed_and_woken_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = tmp.path().join("nightly");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        "name: nightly\ntasks:\n  backup: { run: \"true\" }\nschedules:\n  - { task: backup, cron: \"30 3 * * *\", managed_by: cron }\n",
    )
    .unwrap();
    let _s = Server::start(&home, &[], &[]);
    ok(&cli(&home, &["project", "add", root.to_str().unwrap()]));

    let out = ok(&cli(&home, &["checks", "snooze", "nightly/backup", "2h", "--reason", "disk swap"]));
    assert!(out.starts_with("nightly/backup snoozed until ") && out.contains("(disk swap)"), "{out}");
    let checks = json(&cli(&home, &["checks", "--json"]));
    let c = &checks[0];
    assert!(c["snoozed_until"].is_string(), "{c}");
    assert_eq!((c["snooze_reason"].as_str(), c["snoozed_by"].as_str()), (Some("disk swap"), Some("admin")));
    assert_eq!(c["project_snoozed"], false);
    let table = ok(&cli(&home, &["checks"]));
    assert!(table.contains("NEW snoozed until"), "{table}");
    let schedules = json(&cli(&home, &["schedules", "--json"]));
    assert!(schedules[0]["check"]["snoozed_until"].is_string(), "{schedules}");

    // By id too; waking it takes the snooze away everywhere.
    let woke = json(&cli(&home, &["checks", "unsnooze", c["id"].as_str().unwrap(), "--json"]));
    assert!(woke["snoozed_until"].is_null(), "{woke}");
    assert!(json(&cli(&home, &["checks", "--json"]))[0]["snoozed_until"].is_null());

    // Bad input is refused with what to do.
    let bad = cli(&home, &["checks", "snooze", "nightly/backup", "100d"]);
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(!bad.status.success() && err.contains("until \"100d\" is more than 90d away"), "{err}");
    let bad = cli(&home, &["checks", "snooze", "nightly/nope", "1h"]);
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(!bad.status.success() && err.contains("has no check \"nope\""), "{err}");

    // A project snooze shows on the project and on each of its checks.
    let out = ok(&cli(&home, &["project", "snooze", "nightly", "1d", "--reason", "holiday"]));
    assert!(out.starts_with("nightly snoozed until "), "{out}");
    let p = json(&cli(&home, &["project", "show", "nightly", "--json"]));
    assert!(p["snoozed_until"].is_string(), "{p}");
    assert_eq!(p["snooze_reason"], "holiday");
    let c = json(&cli(&home, &["checks", "--json"]))[0].clone();
    assert_eq!((c["project_snoozed"].as_bool(), c["snooze_reason"].as_str()), (Some(true), Some("holiday")), "{c}");
    let out = ok(&cli(&home, &["project", "unsnooze", "nightly"]));
    assert!(out.contains("no longer snoozed"), "{out}");
    assert!(json(&cli(&home, &["project", "show", "nightly", "--json"]))["snoozed_until"].is_null());
}
