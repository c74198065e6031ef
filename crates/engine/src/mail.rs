//! E-mail notifications: one message to an e-mail channel's recipients through its SMTP server
//! (RFC 5321 submission: EHLO, STARTTLS, AUTH PLAIN or LOGIN, MAIL, RCPT, DATA). Like the
//! webhooks in `engine::notify`, the server's name is resolved here, a private or local address
//! is refused unless allowed, and the checked address is the one connected to. `mailto://`
//! requires STARTTLS (a server that does not offer it is sent nothing), `mailtos://` speaks TLS
//! from the first byte, and credentials are only sent over TLS or when the channel says
//! `tls=off`. The delivery's idempotency key becomes the `Message-ID`, the same on every retry,
//! so a receiver can drop a duplicate sent after a lost reply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agent_os_core::channel::{self, Channel, EmailTarget, MailTls, Message};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_platform_verifier::ConfigVerifierExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::engine::notify::{first_special, refused_target};

/// Everything up to the server's answer to the message itself; with `QUIT_WAIT`, a send takes
/// at most 30 s.
const WHOLE: Duration = Duration::from_secs(28);
/// Polite leave-taking after the message was accepted; its failure changes nothing.
const QUIT_WAIT: Duration = Duration::from_secs(2);
/// Resolving, connecting, a TLS handshake, or one command and its reply.
const STEP: Duration = Duration::from_secs(10);
/// The server's answer to the end of the message, when it may scan it first.
const DATA_WAIT: Duration = Duration::from_secs(20);
/// RFC 5321 allows 512 bytes per reply line; this leaves room for chatty servers.
const MAX_REPLY_LINE: u64 = 2048;
const MAX_REPLY_LINES: usize = 100;

/// Why an e-mail was not sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MailError {
    /// False when trying again cannot help until the configuration or the server changes: a
    /// refused private address, a permanent (5xx) reply, a server without STARTTLS for a
    /// `mailto://` channel, or no usable AUTH mechanism. True for connection errors, timeouts,
    /// temporary (4xx) replies and broken answers.
    pub retryable: bool,
    pub message: String,
}

fn retry(message: impl Into<String>) -> MailError {
    MailError { retryable: true, message: message.into() }
}

fn fail(message: impl Into<String>) -> MailError {
    MailError { retryable: false, message: message.into() }
}

/// Sends `msg` to the channel's recipients. `idempotency_key` (the delivery's id, the same on
/// every attempt) becomes the `Message-ID`. Ok means the server accepted the message for all
/// recipients; nothing is sent unless every recipient was accepted.
pub async fn send_mail(
    ch: &Channel,
    msg: &Message<'_>,
    idempotency_key: &str,
    allow_private: bool,
) -> Result<(), MailError> {
    let Some(target) = &ch.email else {
        return Err(fail(format!("channel {:?} is not an e-mail channel", ch.name)));
    };
    // The addresses go into SMTP commands and headers as they are.
    if let Some(bad) = std::iter::once(&target.from).chain(&target.to).find(|a| !channel::is_address(a)) {
        return Err(fail(format!("{}: {bad:?} is not an e-mail address", ch.display)));
    }
    if target.to.is_empty() {
        return Err(fail(format!("{}: no recipients", ch.display)));
    }
    let data = compose(target, msg, idempotency_key, jiff::Timestamp::now());
    let mut session = match timeout(WHOLE, deliver(ch, target, &data, allow_private)).await {
        Ok(session) => session?,
        Err(_) => {
            return Err(retry(format!(
                "{}: no answer within {} s (the message may have been accepted; its Message-ID lets the receiver drop a duplicate)",
                server(target),
                WHOLE.as_secs()
            )));
        }
    };
    let _ = timeout(QUIT_WAIT, session.command("QUIT", "QUIT")).await;
    Ok(())
}

fn server(t: &EmailTarget) -> String {
    if t.host.contains(':') { format!("[{}]:{}", t.host, t.port) } else { format!("{}:{}", t.host, t.port) }
}

/// Everything up to the server's acceptance of the message; the session is left open for QUIT.
async fn deliver(ch: &Channel, t: &EmailTarget, data: &str, allow_private: bool) -> Result<Session, MailError> {
    let name = server(t);
    let addrs: Vec<SocketAddr> = timeout(STEP, tokio::net::lookup_host((t.host.as_str(), t.port)))
        .await
        .map_err(|_| retry(format!("cannot resolve {}: no answer within {} s", t.host, STEP.as_secs())))?
        .map_err(|e| retry(format!("cannot resolve {}: {e}", t.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(retry(format!("{} resolves to no address", t.host)));
    }
    if !allow_private && let Some((ip, kind)) = first_special(&addrs) {
        return Err(fail(refused_target(&ch.display, ip, kind)));
    }
    let mut last = String::new();
    let mut stream = None;
    for addr in &addrs {
        match timeout(STEP, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => last = format!("cannot connect to {name} ({addr}): {e}"),
            Err(_) => last = format!("cannot connect to {name} ({addr}): no answer within {} s", STEP.as_secs()),
        }
    }
    let stream = stream.ok_or_else(|| retry(last))?;
    // We name ourselves by the address the server sees us from (an address literal).
    let hello = match stream.local_addr() {
        Ok(SocketAddr::V4(a)) => format!("[{}]", a.ip()),
        Ok(SocketAddr::V6(a)) => format!("[IPv6:{}]", a.ip()),
        Err(_) => "[127.0.0.1]".into(),
    };
    let _ = stream.set_nodelay(true);
    let io: Box<dyn Io> = match t.tls {
        MailTls::Implicit => handshake(Box::new(stream), &t.host, &name).await?,
        MailTls::StartTls | MailTls::Off => Box::new(stream),
    };
    let mut s = Session { io: BufReader::new(io), server: name.clone() };
    s.expect_reply(&[220], "the greeting").await?;
    let mut extensions = s.hello(&hello).await?;
    if t.tls == MailTls::StartTls {
        if !extensions.has("STARTTLS") {
            return Err(fail(format!(
                "{name} does not offer STARTTLS, and mailto:// sends only over TLS; nothing was sent. \
                 Use mailtos:// if the server takes TLS from the start (port 465), or tls=off for a relay on a trusted network"
            )));
        }
        s.expect("STARTTLS", "STARTTLS", &[220]).await?;
        // Anything the server sent before the handshake could be an injected reply.
        if !s.io.buffer().is_empty() {
            return Err(retry(format!("{name} sent data before the TLS handshake; nothing was sent")));
        }
        let io = handshake(s.io.into_inner(), &t.host, &name).await?;
        s.io = BufReader::new(io);
        extensions = s.hello(&hello).await?;
    }
    if let Some(login) = &t.login {
        let mechanisms = extensions.auth();
        if mechanisms.iter().any(|m| m == "PLAIN") {
            let token = BASE64.encode(format!("\0{}\0{}", login.user, login.password));
            s.expect(&format!("AUTH PLAIN {token}"), "AUTH PLAIN", &[235]).await?;
        } else if mechanisms.iter().any(|m| m == "LOGIN") {
            s.expect("AUTH LOGIN", "AUTH LOGIN", &[334]).await?;
            s.expect(&BASE64.encode(&login.user), "the AUTH LOGIN user name", &[334]).await?;
            s.expect(&BASE64.encode(&login.password), "the AUTH LOGIN password", &[235]).await?;
        } else {
            return Err(fail(format!(
                "{name} offers no AUTH PLAIN or LOGIN (it offers: {}), so the channel's user and password cannot be used; nothing was sent",
                if mechanisms.is_empty() { "none".to_string() } else { mechanisms.join(" ") }
            )));
        }
    }
    let from = format!("MAIL FROM:<{}>", t.from);
    s.expect(&from, &from, &[250]).await?;
    for to in &t.to {
        let rcpt = format!("RCPT TO:<{to}>");
        s.expect(&rcpt, &rcpt, &[250, 251]).await?;
    }
    s.expect("DATA", "DATA", &[354]).await?;
    let mut stuffed = dot_stuff(data);
    stuffed.push_str(".\r\n");
    s.write(&stuffed).await?;
    let reply = s.reply(DATA_WAIT).await?;
    if reply.code != 250 {
        return Err(reply.error(&name, "the message"));
    }
    Ok(s)
}

/// The TLS client for the server's name, checked against the system's trusted roots.
async fn handshake(io: Box<dyn Io>, host: &str, name: &str) -> Result<Box<dyn Io>, MailError> {
    crate::plugin::install_crypto_provider();
    let config = rustls::ClientConfig::with_platform_verifier()
        .map_err(|e| fail(format!("cannot set up TLS for {name}: {e}")))?;
    let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| fail(format!("{host:?} cannot be checked against a certificate: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match timeout(STEP, connector.connect(server_name, io)).await {
        Ok(Ok(tls)) => Ok(Box::new(tls)),
        Ok(Err(e)) => Err(retry(format!("TLS with {name} failed: {e}"))),
        Err(_) => Err(retry(format!("TLS with {name}: no answer within {} s", STEP.as_secs()))),
    }
}

/// A connection before or after TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Session {
    io: BufReader<Box<dyn Io>>,
    /// `host:port`, for messages.
    server: String,
}

/// A server's reply: its code and the text of each line.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// 5xx is permanent; 4xx and anything unexpected may pass.
    fn error(&self, server: &str, to_what: &str) -> MailError {
        let text: String = self.lines.join(" ").chars().filter(|c| !c.is_control()).take(300).collect();
        let message = format!("{server} answered {} {} to {to_what}", self.code, text.trim());
        MailError { retryable: self.code < 500, message }
    }
}

/// What EHLO said the server can do: its reply lines after the first, upper-cased.
struct Extensions(Vec<String>);

impl Extensions {
    fn has(&self, keyword: &str) -> bool {
        self.0.iter().any(|l| l.split_whitespace().next() == Some(keyword))
    }

    /// The AUTH mechanisms (`AUTH PLAIN LOGIN`, or the old `AUTH=PLAIN LOGIN`).
    fn auth(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|l| l.strip_prefix("AUTH ").or_else(|| l.strip_prefix("AUTH=")))
            .flat_map(|m| m.split_whitespace().map(str::to_string))
            .collect()
    }
}

impl Session {
    async fn write(&mut self, text: &str) -> Result<(), MailError> {
        let io = &mut self.io;
        let sent = timeout(STEP, async {
            io.write_all(text.as_bytes()).await?;
            io.flush().await
        })
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(retry(format!("{}: {e}", self.server))),
            Err(_) => Err(retry(format!("{}: could not send within {} s", self.server, STEP.as_secs()))),
        }
    }

    /// Sends one command line (`shown` names it in messages: never a secret).
    async fn command(&mut self, line: &str, shown: &str) -> Result<Reply, MailError> {
        self.write(&format!("{line}\r\n")).await.map_err(|e| retry(format!("{} (sending {shown})", e.message)))?;
        self.reply(STEP).await
    }

    async fn expect(&mut self, line: &str, shown: &str, ok: &[u16]) -> Result<Reply, MailError> {
        let reply = self.command(line, shown).await?;
        if ok.contains(&reply.code) { Ok(reply) } else { Err(reply.error(&self.server, shown)) }
    }

    async fn expect_reply(&mut self, ok: &[u16], to_what: &str) -> Result<Reply, MailError> {
        let reply = self.reply(STEP).await?;
        if ok.contains(&reply.code) { Ok(reply) } else { Err(reply.error(&self.server, to_what)) }
    }

    /// EHLO, or HELO for a server that does not know it (then without extensions).
    async fn hello(&mut self, name: &str) -> Result<Extensions, MailError> {
        let reply = self.command(&format!("EHLO {name}"), "EHLO").await?;
        if reply.code == 250 {
            let lines = reply.lines.iter().skip(1).map(|l| l.trim().to_ascii_uppercase()).collect();
            return Ok(Extensions(lines));
        }
        if matches!(reply.code, 500..=502) {
            self.expect(&format!("HELO {name}"), "HELO", &[250]).await?;
            return Ok(Extensions(Vec::new()));
        }
        Err(reply.error(&self.server, "EHLO"))
    }

    /// Reads one reply, all of its lines (`250-…` continues, `250 …` ends).
    async fn reply(&mut self, wait: Duration) -> Result<Reply, MailError> {
        let server = self.server.clone();
        let io = &mut self.io;
        let read = async {
            let mut code = None;
            let mut lines = Vec::new();
            loop {
                let mut buf = Vec::new();
                let n = (&mut *io)
                    .take(MAX_REPLY_LINE)
                    .read_until(b'\n', &mut buf)
                    .await
                    .map_err(|e| retry(format!("{server}: {e}")))?;
                if n == 0 {
                    return Err(retry(format!("{server} closed the connection")));
                }
                if !buf.ends_with(b"\n") {
                    return Err(retry(format!("{server} sent a reply line longer than {MAX_REPLY_LINE} bytes")));
                }
                let line = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_string();
                let this = line.get(..3).and_then(|d| d.parse::<u16>().ok()).filter(|c| (200..600).contains(c));
                let (Some(this), true) = (this, code.is_none_or(|c| Some(c) == this)) else {
                    return Err(retry(format!(
                        "{server} sent no SMTP reply: {:?}",
                        line.chars().take(100).collect::<String>()
                    )));
                };
                code = Some(this);
                let rest = &line[3..];
                lines.push(rest.get(1..).unwrap_or("").to_string());
                match rest.as_bytes().first() {
                    Some(b'-') if lines.len() < MAX_REPLY_LINES => {}
                    Some(b'-') => return Err(retry(format!("{server} sent a reply of over {MAX_REPLY_LINES} lines"))),
                    None | Some(b' ') => return Ok(Reply { code: this, lines }),
                    Some(_) => return Err(retry(format!("{server} sent no SMTP reply: {line:?}"))),
                }
            }
        };
        timeout(wait, read)
            .await
            .map_err(|_| retry(format!("{}: no answer within {} s", self.server, wait.as_secs())))?
    }
}

/// The message as it goes after DATA (before dot-stuffing): headers and a quoted-printable
/// UTF-8 body, every line ending in CRLF.
fn compose(t: &EmailTarget, msg: &Message<'_>, key: &str, now: jiff::Timestamp) -> String {
    let (subject, body) = channel::mail_text(msg);
    let date = jiff::fmt::rfc2822::to_string(&now.to_zoned(jiff::tz::TimeZone::UTC)).unwrap_or_default();
    // A Message-ID is a dot-atom: anything else in the key becomes `-`.
    let id: String =
        key.chars().map(|c| if c.is_ascii_alphanumeric() || "-_+=".contains(c) { c } else { '-' }).collect();
    let to = t.to.join(", ");
    let to = if to.len() > 70 { t.to.join(",\r\n ") } else { to };
    let mut out = String::new();
    if !date.is_empty() {
        out.push_str(&format!("Date: {date}\r\n"));
    }
    out.push_str(&format!("From: Agent OS <{}>\r\n", t.from));
    out.push_str(&format!("To: {to}\r\n"));
    out.push_str(&format!("Subject: {}\r\n", encode_header(&subject)));
    out.push_str(&format!("Message-ID: <{id}@agent-os>\r\n"));
    out.push_str("Auto-Submitted: auto-generated\r\n");
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    out.push_str("Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    out.push_str(&quoted_printable(&body));
    out
}

/// A header value as it is when it is short printable ASCII, else as RFC 2047 `B` encoded
/// words of at most 75 characters, one per folded line.
fn encode_header(text: &str) -> String {
    if text.len() <= 900 && !text.contains("=?") && text.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
        return text.to_string();
    }
    // 45 bytes make 60 base64 characters, plus 12 for `=?utf-8?B?` and `?=`.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?utf-8?B?{}?=", BASE64.encode(&chunk)));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?utf-8?B?{}?=", BASE64.encode(&chunk)));
    }
    words.join("\r\n ")
}

/// RFC 2045 quoted-printable: printable ASCII stays readable, lines end in CRLF and are at most
/// 76 characters (with soft breaks `=`), trailing spaces and all other bytes become `=XX`.
fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    let text = text.strip_suffix('\n').unwrap_or(text);
    for line in text.split('\n') {
        let bytes = line.strip_suffix('\r').unwrap_or(line).as_bytes();
        let mut width = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let trailing = i + 1 == bytes.len();
            let literal = ((b'!'..=b'~').contains(&b) && b != b'=') || (matches!(b, b' ' | b'\t') && !trailing);
            let token = if literal { (b as char).to_string() } else { format!("={b:02X}") };
            if width + token.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            width += token.len();
            out.push_str(&token);
        }
        out.push_str("\r\n");
    }
    out
}

/// RFC 5321 transparency: a line that starts with `.` gets another one.
fn dot_stuff(data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 8);
    for line in data.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_keeps_ascii_readable_and_lines_short() {
        assert_eq!(quoted_printable("Disk 94% full\n"), "Disk 94% full\r\n");
        assert_eq!(quoted_printable("a=b \nü\r\n"), "a=3Db=20\r\n=C3=BC\r\n");
        let long = quoted_printable(&"x".repeat(200));
        assert!(long.split("\r\n").all(|l| l.len() <= 76), "{long}");
        assert_eq!(long.replace("=\r\n", ""), format!("{}\r\n", "x".repeat(200)));
        let wide = quoted_printable(&"ü".repeat(40));
        assert!(wide.split("\r\n").all(|l| l.len() <= 76 && !l.ends_with("=C")), "{wide}");
    }

    #[test]
    fn non_ascii_subjects_become_encoded_words_of_at_most_75_characters() {
        assert_eq!(encode_header("[info] ok"), "[info] ok");
        assert_eq!(encode_header("[info] ok · x"), "=?utf-8?B?W2luZm9dIG9rIMK3IHg=?=");
        let long = encode_header(&"ü".repeat(100));
        assert!(long.split("\r\n ").all(|w| w.len() <= 75 && w.starts_with("=?utf-8?B?")), "{long}");
        assert!(encode_header("=?utf-8?B?x?=").starts_with("=?utf-8?B?PT91"), "an encoded word is not passed on");
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed() {
        assert_eq!(dot_stuff("a\r\n.\r\n..b\r\nc.\r\n"), "a\r\n..\r\n...b\r\nc.\r\n");
    }

    #[test]
    fn multi_line_replies_are_read_whole() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (client, mut server) = tokio::io::duplex(1024);
            server
                .write_all(b"250-mx.example.com\r\n250-STARTTLS\r\n250-AUTH=LOGIN\r\n250 AUTH PLAIN LOGIN\r\n")
                .await
                .unwrap();
            server.write_all(b"451 4.3.0 try later\r\n").await.unwrap();
            server.write_all(b"HTTP/1.1 400 Bad Request\r\n").await.unwrap();
            let mut s = Session { io: BufReader::new(Box::new(client)), server: "mx:25".into() };
            let r = s.reply(STEP).await.unwrap();
            assert_eq!((r.code, r.lines.len()), (250, 4));
            let ext = Extensions(r.lines.iter().skip(1).map(|l| l.to_ascii_uppercase()).collect());
            assert!(ext.has("STARTTLS") && !ext.has("SMTPUTF8"));
            assert_eq!(ext.auth(), ["LOGIN", "PLAIN", "LOGIN"]);
            let later = s.reply(STEP).await.unwrap();
            let e = later.error("mx:25", "RCPT TO:<a@b>");
            assert_eq!(e, retry("mx:25 answered 451 4.3.0 try later to RCPT TO:<a@b>"));
            let e = s.reply(STEP).await.err().unwrap();
            assert!(e.retryable && e.message.contains("sent no SMTP reply"), "{e}");
        });
    }

    #[test]
    fn the_message_carries_the_key_as_its_id_and_encodes_its_subject() {
        let ch = channel::parse("m", "mailto://127.0.0.1:25?to=ops@example.com&from=bot@example.com&tls=off").unwrap();
        let tags: Vec<String> = Vec::new();
        let msg = Message {
            id: "n1",
            project: Some("trading"),
            title: "Café",
            body: ".hidden line",
            severity: "critical",
            tags: &tags,
            at: "2025-01-02T03:04:05.000Z",
            incident: None,
            resolves: false,
        };
        let at = jiff::Timestamp::from_second(1_735_787_045).unwrap();
        let text = compose(ch.email.as_ref().unwrap(), &msg, "dlv/1", at);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            head,
            "Date: Thu, 2 Jan 2025 03:04:05 +0000\r\nFrom: Agent OS <bot@example.com>\r\nTo: ops@example.com\r\n\
             Subject: =?utf-8?B?W2NyaXRpY2FsXSBDYWbDqSDCtyB0cmFkaW5n?=\r\nMessage-ID: <dlv-1@agent-os>\r\n\
             Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable"
        );
        assert!(body.starts_with(".hidden line\r\n\r\nSeverity: critical\r\n"), "{body}");
        assert!(dot_stuff(&text).contains("\r\n..hidden line\r\n"));
    }
}
