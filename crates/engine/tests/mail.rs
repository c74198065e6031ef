//! E-mail channels against a real SMTP server: a small receiver written here (tokio, one task
//! per connection on a free port of 127.0.0.1) that speaks enough of RFC 5321 to take a message,
//! and checks what the client does on the way: EHLO first, STARTTLS (when it offers it) before
//! any AUTH or MAIL, a new EHLO after the handshake, the AUTH credentials, MAIL → RCPT → DATA in
//! order. Anything out of order is answered 503 and recorded as a violation, which fails the
//! test. Each accepted message is decoded (unfolded headers, RFC 2047 subjects, the
//! quoted-printable body) and kept for the test to read.
//!
//! The STARTTLS test makes its own throwaway certificate (an Ed25519 key from `ring`, the
//! X.509 structure built below) and runs itself again in a child process with
//! `SSL_CERT_FILE` naming it, so that the client's ordinary certificate check trusts it there.
//! Nothing outside Rust is needed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_os_core::channel::{self, Message};
use agent_os_engine::mail::send_mail;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const USER: &str = "bot";
const PASSWORD: &str = "s3cr:t/";

/// What the receiver offers and requires.
#[derive(Clone)]
enum Mode {
    /// AUTH PLAIN and LOGIN over plain text, required before MAIL.
    Auth,
    /// AUTH LOGIN only, required.
    LoginOnly,
    /// No AUTH, no STARTTLS.
    Open,
    /// STARTTLS with this certificate and key; AUTH PLAIN offered (and required) only after it.
    StartTls(Arc<tokio_rustls::TlsAcceptor>),
}

/// A message as the receiver decoded it.
#[derive(Clone, Debug, Default)]
struct Mail {
    mail_from: String,
    rcpt_to: Vec<String>,
    authenticated: bool,
    /// Whether the message came over TLS.
    tls: bool,
    /// Headers in order, names as sent, values unfolded and decoded.
    headers: Vec<(String, String)>,
    body: String,
}

impl Mail {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

#[derive(Default)]
struct Record {
    mails: Vec<Mail>,
    /// Every command as received, `plain:` or `tls:` first (AUTH payloads as sent).
    commands: Vec<String>,
    /// What the client did out of order.
    violations: Vec<String>,
}

struct Sink {
    port: u16,
    record: Arc<Mutex<Record>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Sink {
    async fn start(mode: Mode) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let record = Arc::new(Mutex::new(Record::default()));
        let rec = record.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, mode.clone(), rec.clone()));
            }
        });
        Sink { port, record, _task: task }
    }

    /// The messages received; a client that broke the protocol fails the test here.
    fn mails(&self) -> Vec<Mail> {
        let r = self.record.lock().unwrap();
        assert!(
            r.violations.is_empty(),
            "the client broke the protocol: {:?}; commands: {:?}",
            r.violations,
            r.commands
        );
        r.mails.clone()
    }

    fn commands(&self) -> Vec<String> {
        self.record.lock().unwrap().commands.clone()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The state of one SMTP session.
#[derive(Default)]
struct State {
    greeted: bool,
    tls: bool,
    authenticated: bool,
    mail: Option<Mail>,
}

async fn session(stream: tokio::net::TcpStream, mode: Mode, record: Arc<Mutex<Record>>) {
    let mut io: BufReader<Box<dyn Io>> = BufReader::new(Box::new(stream));
    let mut st = State::default();
    let violation = |what: String| record.lock().unwrap().violations.push(what);
    if io.get_mut().write_all(b"220 sink.test ESMTP ready\r\n").await.is_err() {
        return;
    }
    loop {
        let Some(line) = read_line(&mut io).await else { return };
        record.lock().unwrap().commands.push(format!("{}: {line}", if st.tls { "tls" } else { "plain" }));
        let upper = line.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or("").to_string();
        let starttls_offered = matches!(mode, Mode::StartTls(_)) && !st.tls;
        let auth_offered = match &mode {
            Mode::Auth => "PLAIN LOGIN",
            Mode::LoginOnly => "LOGIN",
            Mode::Open => "",
            Mode::StartTls(_) if st.tls => "PLAIN",
            Mode::StartTls(_) => "",
        };
        let auth_required = !matches!(mode, Mode::Open);
        let reply: String = match verb.as_str() {
            "EHLO" | "HELO" => {
                if line.split(' ').nth(1).is_none_or(str::is_empty) {
                    violation(format!("{verb} without a name"));
                    "501 a name, please".into()
                } else {
                    st.greeted = true;
                    st.mail = None;
                    let mut r = String::from("250-sink.test\r\n");
                    if starttls_offered {
                        r.push_str("250-STARTTLS\r\n");
                    }
                    if !auth_offered.is_empty() {
                        r.push_str(&format!("250-AUTH {auth_offered}\r\n"));
                    }
                    r.push_str("250 8BITMIME");
                    r
                }
            }
            "STARTTLS" if starttls_offered && st.greeted => {
                let Mode::StartTls(acceptor) = &mode else { unreachable!() };
                if io.get_mut().write_all(b"220 go ahead\r\n").await.is_err() {
                    return;
                }
                if !io.buffer().is_empty() {
                    violation("data sent after STARTTLS before the handshake".into());
                    return;
                }
                let Ok(tls) = acceptor.accept(io.into_inner()).await else {
                    record.lock().unwrap().commands.push("plain: (TLS handshake failed)".into());
                    return;
                };
                io = BufReader::new(Box::new(tls));
                // RFC 3207: everything learned before the handshake is forgotten.
                st = State { tls: true, ..State::default() };
                continue;
            }
            _ if !st.greeted => {
                violation(format!("{verb} before EHLO"));
                "503 EHLO first".into()
            }
            _ if starttls_offered && matches!(verb.as_str(), "AUTH" | "MAIL") => {
                violation(format!("{verb} before STARTTLS although the server offered it"));
                "530 STARTTLS first".into()
            }
            "AUTH" => {
                let mechanism = upper.split(' ').nth(1).unwrap_or("");
                if !auth_offered.split(' ').any(|m| m == mechanism) {
                    violation(format!("AUTH {mechanism}, which was not offered"));
                    "504 not offered".to_string()
                } else if st.authenticated {
                    violation("AUTH twice".into());
                    "503 already authenticated".into()
                } else {
                    let (user, password) = if mechanism == "PLAIN" {
                        let given = line.split(' ').nth(2).unwrap_or("");
                        let text = decode64(given);
                        let mut parts = text.split('\0').skip(1);
                        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string())
                    } else {
                        let _ = io.get_mut().write_all(b"334 VXNlcm5hbWU6\r\n").await;
                        let user = read_line(&mut io).await.map(|l| decode64(&l)).unwrap_or_default();
                        let _ = io.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n").await;
                        let password = read_line(&mut io).await.map(|l| decode64(&l)).unwrap_or_default();
                        (user, password)
                    };
                    if user == USER && password == PASSWORD {
                        st.authenticated = true;
                        "235 welcome".into()
                    } else {
                        "535 5.7.8 bad credentials".into()
                    }
                }
            }
            "MAIL" if auth_required && !st.authenticated => {
                violation("MAIL without AUTH".into());
                "530 5.7.0 authentication required".into()
            }
            "MAIL" => match address(&line, "MAIL FROM:") {
                Some(from) => {
                    st.mail =
                        Some(Mail { mail_from: from, authenticated: st.authenticated, tls: st.tls, ..Mail::default() });
                    "250 sender ok".into()
                }
                None => {
                    violation(format!("bad MAIL command {line:?}"));
                    "501 MAIL FROM:<address>".into()
                }
            },
            "RCPT" => match (&mut st.mail, address(&line, "RCPT TO:")) {
                (Some(m), Some(to)) => {
                    m.rcpt_to.push(to);
                    "250 recipient ok".into()
                }
                _ => {
                    violation(format!("RCPT out of order or malformed: {line:?}"));
                    "503 MAIL first".into()
                }
            },
            "DATA" => match st.mail.take() {
                Some(mut m) if !m.rcpt_to.is_empty() => {
                    if io.get_mut().write_all(b"354 end with <CRLF>.<CRLF>\r\n").await.is_err() {
                        return;
                    }
                    let mut raw = Vec::new();
                    loop {
                        let Some(l) = read_line(&mut io).await else { return };
                        if l == "." {
                            break;
                        }
                        // RFC 5321 4.5.2: a leading dot was doubled by the client.
                        raw.push(l.strip_prefix('.').map(str::to_string).unwrap_or(l));
                    }
                    let (headers, body) = parse_message(&raw);
                    m.headers = headers;
                    m.body = body;
                    record.lock().unwrap().mails.push(m);
                    "250 queued".into()
                }
                _ => {
                    violation("DATA without MAIL and RCPT".into());
                    "503 MAIL and RCPT first".into()
                }
            },
            "QUIT" => {
                let _ = io.get_mut().write_all(b"221 bye\r\n").await;
                return;
            }
            "RSET" | "NOOP" => "250 ok".into(),
            _ => {
                violation(format!("unknown command {line:?}"));
                "500 unknown command".into()
            }
        };
        if io.get_mut().write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One line without its CRLF; `None` at the end of the stream.
async fn read_line(io: &mut BufReader<Box<dyn Io>>) -> Option<String> {
    let mut buf = Vec::new();
    let n = io.read_until(b'\n', &mut buf).await.ok()?;
    if n == 0 {
        return None;
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    Some(text.strip_suffix("\r\n").or_else(|| text.strip_suffix('\n')).unwrap_or(&text).to_string())
}

fn decode64(text: &str) -> String {
    String::from_utf8_lossy(&BASE64.decode(text.trim()).unwrap_or_default()).into_owned()
}

/// `MAIL FROM:<a@b>` → `a@b`.
fn address(line: &str, prefix: &str) -> Option<String> {
    let rest = line
        .get(prefix.len()..)
        .filter(|_| line.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix)))?;
    let inner = rest.trim().strip_prefix('<')?.split('>').next()?;
    Some(inner.to_string())
}

/// Headers (unfolded, RFC 2047 words decoded) and the body (quoted-printable decoded when it
/// says so), from the lines of a message.
fn parse_message(lines: &[String]) -> (Vec<(String, String)>, String) {
    let split = lines.iter().position(|l| l.is_empty()).unwrap_or(lines.len());
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in &lines[..split] {
        if l.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push_str(l);
            }
        } else if let Some((name, value)) = l.split_once(':') {
            headers.push((name.to_string(), value.trim().to_string()));
        }
    }
    for h in &mut headers {
        h.1 = decode_words(&h.1);
    }
    let raw_body = lines.get(split + 1..).unwrap_or(&[]).join("\r\n") + "\r\n";
    let qp = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("Content-Transfer-Encoding") && v.eq_ignore_ascii_case("quoted-printable")
    });
    let body = if qp { decode_qp(&raw_body) } else { raw_body };
    (headers, body)
}

/// RFC 2047: `=?utf-8?B?…?=` words; the white space between two adjacent words goes away.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut pending_space = String::new();
    let mut last_was_word = false;
    for token in value.split_inclusive([' ', '\t']) {
        let word = token.trim_end_matches([' ', '\t']);
        let space = &token[word.len()..];
        let decoded = word.strip_prefix("=?").and_then(|w| w.strip_suffix("?=")).and_then(|w| {
            let mut p = w.splitn(3, '?');
            let (charset, encoding, text) = (p.next()?, p.next()?, p.next()?);
            (charset.eq_ignore_ascii_case("utf-8") && encoding.eq_ignore_ascii_case("B")).then(|| decode64(text))
        });
        match decoded {
            Some(d) => {
                if !last_was_word {
                    out.push_str(&pending_space);
                }
                out.push_str(&d);
                last_was_word = true;
            }
            None => {
                out.push_str(&pending_space);
                out.push_str(word);
                last_was_word = false;
            }
        }
        pending_space = space.to_string();
    }
    out.push_str(&pending_space);
    out.trim_end().to_string()
}

/// RFC 2045 quoted-printable, soft line breaks included; line ends become `\n`.
fn decode_qp(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let mut bytes = Vec::new();
    let raw = joined.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'='
            && let Some(b) = joined.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            bytes.push(b);
            i += 3;
            continue;
        }
        bytes.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
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
        incident: None,
        resolves: false,
    }
}

/// Waits until the receiver saw a command matching `done` (the client's QUIT, say), within 5 s.
async fn until_seen(sink: &Sink, done: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !sink.commands().iter().any(|c| done(c)) {
        assert!(tokio::time::Instant::now() < deadline, "not seen; commands: {:?}", sink.commands());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_mail_arrives_with_its_headers_body_and_the_key_as_message_id() {
    let sink = Sink::start(Mode::Auth).await;
    let url = format!(
        "mailto://bot:s3cr%3At%2F@127.0.0.1:{}?to=ops@example.com,oncall@example.com&from=alerts@example.com&tls=off",
        sink.port
    );
    let ch = channel::parse("mail", &url).unwrap();
    let tags = vec!["disk".to_string()];
    let body = "94% used on /data, größer als gestern\n.a line starting with a dot\n";
    send_mail(&ch, &message(&tags, body), "dlv-0001", true).await.unwrap();

    let got = sink.mails();
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m.mail_from, "alerts@example.com");
    assert_eq!(m.rcpt_to, ["ops@example.com", "oncall@example.com"]);
    assert!(m.authenticated && !m.tls, "{m:?}");
    assert_eq!(m.header("Subject"), "[warning] Disk full ✓ · trading");
    assert_eq!(m.header("Message-ID"), "<dlv-0001@agent-os>");
    assert_eq!(m.header("From"), "Agent OS <alerts@example.com>");
    assert_eq!(m.header("To"), "ops@example.com, oncall@example.com");
    assert_eq!(m.header("Content-Type"), "text/plain; charset=utf-8");
    assert_eq!(m.header("MIME-Version"), "1.0");
    assert!(m.header("Date").ends_with("+0000"), "{m:?}");
    assert_eq!(
        m.body,
        "94% used on /data, größer als gestern\n.a line starting with a dot\n\nSeverity: warning\nProject: trading\n\
         Tags: disk\nAt: 2025-01-02T03:04:05.000Z\nNotification: ntf-1\n\n-- \nSent by Agent OS\n"
    );
    let commands = sink.commands();
    assert!(commands[0].starts_with("plain: EHLO [127.0.0.1]"), "{commands:?}");
    assert!(commands.iter().any(|c| c.starts_with("plain: AUTH PLAIN ")), "{commands:?}");
}

#[tokio::test]
async fn auth_login_is_used_when_plain_is_not_offered_and_a_wrong_password_is_not_retried() {
    let sink = Sink::start(Mode::LoginOnly).await;
    let ok =
        channel::parse("mail", &format!("mailto://bot:s3cr%3At%2F@127.0.0.1:{}?to=a@example.com&tls=off", sink.port))
            .unwrap();
    send_mail(&ok, &message(&[], "b"), "k1", true).await.unwrap();
    let got = sink.mails();
    assert_eq!((got[0].authenticated, got[0].mail_from.as_str()), (true, "agent-os@[127.0.0.1]"));
    assert!(sink.commands().iter().any(|c| c == "plain: AUTH LOGIN"), "{:?}", sink.commands());

    let wrong =
        channel::parse("mail", &format!("mailto://bot:nope@127.0.0.1:{}?to=a@example.com&tls=off", sink.port)).unwrap();
    let e = send_mail(&wrong, &message(&[], "b"), "k2", true).await.unwrap_err();
    assert!(!e.retryable && e.message.contains("answered 535"), "{e:?}");
    // send_mail has returned: whatever it sent has been received and answered.
    let commands = sink.commands();
    let second = commands.iter().rposition(|c| c == "plain: AUTH LOGIN").unwrap();
    assert!(second > 0 && commands[second..].iter().all(|c| !c.contains("MAIL")), "{commands:?}");
    assert_eq!(sink.mails().len(), 1, "nothing more arrived");
}

#[tokio::test]
async fn a_private_address_is_refused_before_any_connection_unless_allowed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let ch = channel::parse("mail", &format!("mailto://127.0.0.1:{port}?to=ops@example.com&tls=off")).unwrap();
    let e = send_mail(&ch, &message(&[], "b"), "k", false).await.unwrap_err();
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("127.0.0.1, a private or local address (loopback"), "{e}");
    assert!(e.message.contains("allow_private_targets"), "{e}");
    let nobody = listener.accept().map(|_| ()).map_err(|e| e.kind());
    assert_eq!(nobody, Err(std::io::ErrorKind::WouldBlock), "no connection was made");
}

#[tokio::test]
async fn starttls_is_required_by_default_and_a_server_without_it_gets_nothing() {
    let sink = Sink::start(Mode::Open).await;
    let ch = channel::parse("mail", &format!("mailto://bot:s3cr%3At%2F@127.0.0.1:{}?to=ops@example.com", sink.port))
        .unwrap();
    let e = send_mail(&ch, &message(&[], "b"), "k", true).await.unwrap_err();
    assert!(!e.retryable, "a server's missing STARTTLS is its configuration; retrying cannot help: {e:?}");
    assert!(e.message.contains("does not offer STARTTLS"), "{e}");
    assert!(e.message.contains("nothing was sent"), "{e}");
    assert!(sink.mails().is_empty(), "nothing arrived");
    assert!(sink.commands().iter().all(|c| !c.contains("AUTH") && !c.contains("MAIL")), "{:?}", sink.commands());
}

/// Where the child process of the STARTTLS test finds the certificate and key.
const CERT_DIR_VAR: &str = "AGENT_OS_TEST_SMTP_CERT_DIR";

#[test]
fn starttls_comes_before_the_login_and_the_message_and_an_untrusted_certificate_gets_nothing() {
    if let Ok(dir) = std::env::var(CERT_DIR_VAR) {
        // The child: SSL_CERT_FILE names the throwaway certificate.
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        return rt.block_on(starttls_child(Path::new(&dir)));
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert_der, key_der) = throwaway_certificate();
    std::fs::write(dir.path().join("cert.der"), &cert_der).unwrap();
    std::fs::write(dir.path().join("key.der"), &key_der).unwrap();
    let mut pem = std::fs::File::create(dir.path().join("cert.pem")).unwrap();
    writeln!(pem, "-----BEGIN CERTIFICATE-----").unwrap();
    for line in BASE64.encode(&cert_der).as_bytes().chunks(64) {
        writeln!(pem, "{}", std::str::from_utf8(line).unwrap()).unwrap();
    }
    writeln!(pem, "-----END CERTIFICATE-----").unwrap();
    drop(pem);

    // Without the certificate trusted (this process's own trust store): nothing is sent.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let sink = Sink::start(Mode::StartTls(acceptor(&cert_der, &key_der))).await;
        let ch =
            channel::parse("mail", &format!("mailto://bot:s3cr%3At%2F@127.0.0.1:{}?to=ops@example.com", sink.port))
                .unwrap();
        let e = send_mail(&ch, &message(&[], "b"), "k", true).await.unwrap_err();
        assert!(e.retryable && e.message.contains("TLS with 127.0.0.1"), "{e:?}");
        until_seen(&sink, |c| c.contains("TLS handshake failed")).await;
        let commands = sink.commands();
        assert!(commands.iter().all(|c| !c.contains("AUTH") && !c.contains("MAIL")), "{commands:?}");
        assert!(sink.mails().is_empty());
    });

    // With it trusted, in a child process (environment variables are per process).
    let name = "starttls_comes_before_the_login_and_the_message_and_an_untrusted_certificate_gets_nothing";
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CERT_DIR_VAR, dir.path())
        .env("SSL_CERT_FILE", dir.path().join("cert.pem"))
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "the child failed:\n{text}");
}

async fn starttls_child(dir: &Path) {
    let cert_der = std::fs::read(dir.join("cert.der")).unwrap();
    let key_der = std::fs::read(dir.join("key.der")).unwrap();
    let sink = Sink::start(Mode::StartTls(acceptor(&cert_der, &key_der))).await;
    let ch = channel::parse(
        "mail",
        &format!("mailto://bot:s3cr%3At%2F@127.0.0.1:{}?to=ops@example.com&from=alerts@example.com", sink.port),
    )
    .unwrap();
    let tags = vec!["tls".to_string()];
    send_mail(&ch, &message(&tags, "sent over TLS"), "dlv-tls", true).await.unwrap();
    let got = sink.mails();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].tls && got[0].authenticated, "{:?}", got[0]);
    assert_eq!(got[0].header("Message-ID"), "<dlv-tls@agent-os>");
    assert!(got[0].body.starts_with("sent over TLS\n\nSeverity: warning\n"), "{:?}", got[0].body);
    let commands = sink.commands();
    let verbs: Vec<String> = commands.iter().map(|c| c.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(
        verbs,
        [
            "plain: EHLO",
            "plain: STARTTLS",
            "tls: EHLO",
            "tls: AUTH",
            "tls: MAIL",
            "tls: RCPT",
            "tls: DATA",
            "tls: QUIT"
        ],
        "{commands:?}"
    );
}

fn acceptor(cert_der: &[u8], key_der: &[u8]) -> Arc<tokio_rustls::TlsAcceptor> {
    agent_os_engine::plugin::install_crypto_provider();
    let cert = rustls::pki_types::CertificateDer::from(cert_der.to_vec());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.to_vec().into());
    let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(vec![cert], key).unwrap();
    Arc::new(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A self-signed X.509 v3 certificate for 127.0.0.1 and localhost with a new Ed25519 key:
/// (certificate DER, PKCS#8 key DER). Valid 2020–2049; made for this test run only.
fn throwaway_certificate() -> (Vec<u8>, Vec<u8>) {
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();

    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    let algorithm = der(0x30, ED25519);
    let common_name = der(0x06, &[0x55, 0x04, 0x03]);
    let name = der(0x30, &der(0x31, &der(0x30, &[common_name, der(0x0c, b"agent-os test SMTP")].concat())));
    let validity = der(0x30, &[der(0x17, b"200101000000Z"), der(0x17, b"491231235959Z")].concat());
    let public_key =
        der(0x30, &[algorithm.clone(), der(0x03, &[&[0u8][..], key.public_key().as_ref()].concat())].concat());
    let alt_names = der(0x30, &[der(0x87, &[127, 0, 0, 1]), der(0x82, b"localhost")].concat());
    let subject_alt_name = der(0x30, &[der(0x06, &[0x55, 0x1d, 0x11]), der(0x04, &alt_names)].concat());
    let extensions = der(0xa3, &der(0x30, &subject_alt_name));
    let tbs = der(
        0x30,
        &[
            der(0xa0, &der(0x02, &[2])),
            der(0x02, &[0x01, 0x5e, 0x11]),
            algorithm.clone(),
            name.clone(),
            validity,
            name,
            public_key,
            extensions,
        ]
        .concat(),
    );
    let signature = key.sign(&tbs);
    let cert = der(0x30, &[tbs, algorithm, der(0x03, &[&[0u8][..], signature.as_ref()].concat())].concat());
    (cert, pkcs8.as_ref().to_vec())
}

/// One DER element: tag, definite length, content.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}
