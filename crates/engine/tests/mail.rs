//! E-mail channels against a real SMTP server: Python's `aiosmtpd`, started per test on a free
//! local port, writes each message it accepts (envelope, decoded headers and body) to a JSON
//! file the test reads back. Without python3 and aiosmtpd these tests fail, saying what to
//! install.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agent_os_core::channel::{self, Message};
use agent_os_engine::mail::send_mail;
use serde_json::Value;

/// Accepts mail on 127.0.0.1, with AUTH allowed without TLS (user `bot`, password `s3cr:t/`),
/// and writes each message as `N.json` into the directory it is given. Never offers STARTTLS.
const SINK: &str = r#"
import email, email.policy, json, os, socket, sys
import warnings
warnings.simplefilter("ignore")
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

out, mode = sys.argv[1], sys.argv[2]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "authenticated": bool(session.authenticated),
            "headers": {k: str(v) for k, v in msg.items()},
            "body": msg.get_content(),
        }
        n = len([f for f in os.listdir(out) if f.endswith(".json")])
        path = os.path.join(out, f"{n}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK"

def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"bot" and auth_data.password == b"s3cr:t/"
    return AuthResult(success=ok, handled=False)

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
options = {"authenticator": authenticate, "auth_require_tls": False, "auth_required": mode != "open"}
if mode == "login-only":
    options["auth_exclude_mechanism"] = ["PLAIN"]
controller = Controller(Handler(), hostname="127.0.0.1", port=port, **options)
controller.start()
print(port, flush=True)
sys.stdin.read()
controller.stop()
"#;

const INSTALL: &str = "the e-mail tests need python3 with the aiosmtpd package: `python3 -m pip install aiosmtpd` \
                       (and python3 itself, e.g. `apt-get install python3 python3-pip`)";

struct Sink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    /// `mode`: `auth` (AUTH required, PLAIN and LOGIN), `login-only`, or `open` (no AUTH needed).
    fn start(mode: &str) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let mut child = match Command::new("python3")
            .arg("-c")
            .arg(SINK)
            .arg(dir.path())
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!("cannot start python3 ({e}); {INSTALL}"),
        };
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let mut stderr = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            if stderr.contains("No module named 'aiosmtpd'") {
                panic!("{INSTALL}");
            }
            panic!("the SMTP sink did not start: {stderr}");
        };
        Sink { child, port, dir }
    }

    /// The messages received so far, once `count` have arrived (or after 5 s).
    fn received(&self, count: usize) -> Vec<Value> {
        for _ in 0..100 {
            if files(self.dir.path()).len() >= count {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        files(self.dir.path())
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    out.sort();
    out
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn message<'a>(tags: &'a [String], body: &'a str) -> Message<'a> {
    Message {
        id: "ntf-1",
        project: Some("trading"),
        title: "Disk full ✓",
        body,
        severity: "warning",
        tags,
        at: "2025-01-02T03:04:05.000Z",
    }
}

#[tokio::test]
async fn a_mail_arrives_with_its_headers_body_and_the_key_as_message_id() {
    let sink = Sink::start("auth");
    let url = format!(
        "mailto://bot:s3cr%3At%2F@127.0.0.1:{}?to=ops@example.com,oncall@example.com&from=alerts@example.com&tls=off",
        sink.port
    );
    let ch = channel::parse("mail", &url).unwrap();
    let tags = vec!["disk".to_string()];
    let body = "94% used on /data, größer als gestern\n.a line starting with a dot\n";
    send_mail(&ch, &message(&tags, body), "dlv-0001", true).await.unwrap();

    let got = sink.received(1);
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m["mail_from"], "alerts@example.com");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["ops@example.com", "oncall@example.com"]));
    assert_eq!(m["authenticated"], true);
    let h = &m["headers"];
    assert_eq!(h["Subject"], "[warning] Disk full ✓ · trading");
    assert_eq!(h["Message-ID"], "<dlv-0001@agent-os>");
    assert_eq!(h["From"], "Agent OS <alerts@example.com>");
    assert_eq!(h["To"], "ops@example.com, oncall@example.com");
    assert_eq!(h["Content-Type"], "text/plain; charset=\"utf-8\"");
    assert!(h["Date"].as_str().unwrap().ends_with("+0000"), "{h}");
    let text = m["body"].as_str().unwrap().replace("\r\n", "\n");
    assert_eq!(
        text,
        "94% used on /data, größer als gestern\n.a line starting with a dot\n\nSeverity: warning\nProject: trading\n\
         Tags: disk\nAt: 2025-01-02T03:04:05.000Z\nNotification: ntf-1\n\n-- \nSent by Agent OS\n"
    );
}

#[tokio::test]
async fn auth_login_is_used_when_plain_is_not_offered_and_a_wrong_password_is_not_retried() {
    let sink = Sink::start("login-only");
    let ok =
        channel::parse("mail", &format!("mailto://bot:s3cr%3At%2F@127.0.0.1:{}?to=a@example.com&tls=off", sink.port))
            .unwrap();
    send_mail(&ok, &message(&[], "b"), "k1", true).await.unwrap();
    let got = sink.received(1);
    assert_eq!(
        (got[0]["authenticated"].as_bool(), got[0]["mail_from"].as_str()),
        (Some(true), Some("agent-os@[127.0.0.1]"))
    );

    let wrong =
        channel::parse("mail", &format!("mailto://bot:nope@127.0.0.1:{}?to=a@example.com&tls=off", sink.port)).unwrap();
    let e = send_mail(&wrong, &message(&[], "b"), "k2", true).await.unwrap_err();
    assert!(!e.retryable && e.message.contains("answered 535"), "{e:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.received(1).len(), 1, "nothing more arrived");
}

#[tokio::test]
async fn a_private_address_is_refused_before_any_connection_unless_allowed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let ch = channel::parse("mail", &format!("mailto://127.0.0.1:{port}?to=ops@example.com&tls=off")).unwrap();
    let e = send_mail(&ch, &message(&[], "b"), "k", false).await.unwrap_err();
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("127.0.0.1, a private or local address"), "{e}");
    assert!(e.message.contains("allow_private_targets"), "{e}");
    let nobody = listener.accept().map(|_| ()).map_err(|e| e.kind());
    assert_eq!(nobody, Err(std::io::ErrorKind::WouldBlock), "no connection was made");
}

#[tokio::test]
async fn starttls_is_required_by_default_and_a_server_without_it_gets_nothing() {
    let sink = Sink::start("open");
    let ch = channel::parse("mail", &format!("mailto://bot:s3cr%3At%2F@127.0.0.1:{}?to=ops@example.com", sink.port))
        .unwrap();
    let e = send_mail(&ch, &message(&[], "b"), "k", true).await.unwrap_err();
    assert!(!e.retryable, "a server's missing STARTTLS is its configuration; retrying cannot help: {e:?}");
    assert!(e.message.contains("does not offer STARTTLS"), "{e}");
    assert!(e.message.contains("nothing was sent"), "{e}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(sink.received(0).is_empty(), "nothing arrived");
}
