//! `agent-os dashboard password` as a user runs it, against a real `agent-os serve`: the
//! password comes from stdin (never the command line), logs in to the dashboard, and
//! `--clear` takes it away again.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");

/// A server on an ephemeral port, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(home: &Path) -> Server {
        let out = home.with_extension("out");
        let child = Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1:0", "--home"])
            .arg(home)
            .env_remove("AGENT_OS_ADMIN_TOKEN")
            .env_remove("AGENT_OS_URL")
            .env_remove("AGENT_OS_TOKEN")
            .env_remove("AGENT_OS_DATABASE_URL")
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut s = Server { child, url: String::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(" listening on ")) {
                s.url = line.rsplit(' ').next().unwrap().to_string();
                if http(&s.url, "GET /healthz", "").0 == 200 {
                    return s;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not come up: {}", std::fs::read_to_string(&out).unwrap_or_default());
    }

    /// What logging in to the dashboard with `secret` answers: 303 when it lets the browser in.
    fn login(&self, secret: &str) -> u16 {
        http(&self.url, "POST /login", &format!("secret={}&next=%2F", secret.replace(' ', "+"))).0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 request (a form body when one is given): the status and the body.
fn http(url: &str, request_line: &str, form: &str) -> (u16, String) {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{request_line} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// Runs `agent-os ARGS` against the home's server with `stdin` as its input.
fn cli(home: &Path, args: &[&str], stdin: &str) -> Output {
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

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn the_dashboard_password_is_read_from_stdin_and_cleared_with_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let s = Server::start(&home);

    // A password is never an argument: it would land in the shell's history.
    let o = cli(&home, &["dashboard", "password", "correct horse battery"], "");
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));

    let o = cli(&home, &["dashboard", "password"], "too short\n");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("at least 12 characters") && err.contains("password"), "{err}");
    assert_eq!(s.login("too short"), 401);

    let o = cli(&home, &["dashboard", "password"], "");
    assert_eq!(o.status.code(), Some(1), "an empty stdin sets nothing: {:?}", text(&o));

    let o = cli(&home, &["dashboard", "password"], "correct horse battery\n");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("dashboard password set"), "{out}");
    assert!(!out.contains("correct horse") && !err.contains("correct horse"), "the password is never echoed");
    assert_eq!(s.login("correct horse battery"), 303, "the password logs in");

    let o = cli(&home, &["dashboard", "password", "--clear"], "");
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(s.login("correct horse battery"), 401, "a cleared password no longer logs in");
}
