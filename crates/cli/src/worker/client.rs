//! The worker's side of the wire (docs/worker-protocol.md): the requests it sends, the answers
//! it reads, and what a failed call means for it — the server is out of reach (try again after
//! saying hello), it speaks another protocol (stop), or it refused this one call.

use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use agent_os_core::run::{LogStream, RunStatus};

/// The protocol version this worker speaks.
pub const PROTOCOL: u32 = 1;

/// The header every worker request carries.
pub const PROTOCOL_HEADER: &str = "Agent-OS-Worker-Protocol";

/// One attempt of a run, as both sides name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct AttemptRef {
    pub run_id: String,
    pub attempt: i64,
}

impl std::fmt::Display for AttemptRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "run {} attempt {}", self.run_id, self.attempt)
    }
}

#[derive(Serialize)]
pub struct ProjectManifest<'a> {
    pub name: &'a str,
    pub manifest: &'a str,
}

#[derive(Serialize)]
pub struct Hello<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub hostname: &'a str,
    pub capacity: usize,
    pub projects: Vec<ProjectManifest<'a>>,
    pub running: Vec<AttemptRef>,
    pub pending: Vec<AttemptRef>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct HelloAnswer {
    pub worker_id: String,
    pub poll_wait_ms: u64,
    pub public_url: String,
    #[serde(default)]
    pub projects: Vec<ProjectCursor>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ProjectCursor {
    pub name: String,
    #[serde(default)]
    pub cost_cursor: Option<String>,
}

/// A run the server claimed for this worker.
#[derive(Clone, Debug, Deserialize)]
pub struct Claimed {
    pub run_id: String,
    pub attempt: i64,
    pub project: String,
    pub task: String,
    #[serde(default)]
    pub input: Value,
    /// The attempt's run token (the task's `AGENT_OS_TOKEN`).
    pub token: String,
    pub max_attempts: i64,
    #[serde(default)]
    pub trigger: String,
}

impl Claimed {
    pub fn key(&self) -> AttemptRef {
        AttemptRef { run_id: self.run_id.clone(), attempt: self.attempt }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PollAnswer {
    #[serde(default)]
    pub runs: Vec<Claimed>,
    #[serde(default)]
    pub cancel: Vec<AttemptRef>,
}

/// One piece of an attempt's log, numbered from 1 per attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub seq: i64,
    pub stream: LogStream,
    /// RFC 3339 UTC.
    pub at: String,
    pub data: String,
}

/// How an attempt ended, as the worker reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct End {
    /// `succeeded`, `failed`, `timed_out` or `cancelled`.
    pub end: RunStatus,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub retryable: bool,
    /// The worker itself was stopping: retried at once without using up an attempt.
    pub interrupted: bool,
    pub outputs: Option<Value>,
    /// The last log chunk's number (0 for none).
    pub last_seq: i64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct EndAnswer {
    pub recorded: bool,
    #[serde(default)]
    pub run_status: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct Acked {
    acked_seq: i64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CursorAnswer {
    #[serde(default)]
    pub cost_cursor: Option<String>,
}

/// A probe's result, as the worker sends it.
#[derive(Serialize)]
pub struct ProbeReport<'a> {
    pub worker_id: &'a str,
    pub project: &'a str,
    /// `status`, `cost` or `schedule`.
    pub kind: &'a str,
    pub answer: Option<Value>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub since: Option<&'a str>,
}

/// Why a call did not do what it asked.
#[derive(Debug)]
pub enum CallError {
    /// No answer, a time-out or a server error: the server is out of reach for now.
    Unreachable(String),
    /// The server does not speak this worker's protocol; its message says what to do.
    Protocol(String),
    /// A refusal of this call: the status, the error's code and message, and the whole body.
    Refused { status: u16, code: String, message: String, body: Value },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(why) | CallError::Protocol(why) => f.write_str(why),
            CallError::Refused { status, message, body, .. } => {
                write!(f, "HTTP {status}: {message}")?;
                // An invalid manifest lists each problem with its place.
                if let Some(errors) = body["error"]["errors"].as_array() {
                    for e in errors {
                        write!(
                            f,
                            "\n  {}:{}:{}: {}{}",
                            e["file"].as_str().unwrap_or(""),
                            e["line"],
                            e["column"],
                            e["path"].as_str().filter(|p| !p.is_empty()).map(|p| format!("{p}: ")).unwrap_or_default(),
                            e["message"].as_str().unwrap_or("")
                        )?;
                        if let Some(h) = e["hint"].as_str() {
                            write!(f, "\n    hint: {h}")?;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// The HTTP client of one worker: its server, its token.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// `base` is the server's URL without a trailing slash. No proxy from the environment is
    /// used (a worker talks to its own server), and redirects are not followed.
    pub fn new(base: String, token: String) -> anyhow::Result<Client> {
        agent_os_engine::plugin::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("agent-os-worker/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
        Ok(Client { base, token, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl Serialize,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token)
            .header(PROTOCOL_HEADER, PROTOCOL.to_string())
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| CallError::Unreachable(format!("{method} {url}: {}", chain(&e))))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| CallError::Unreachable(format!("{method} {url}: {}", chain(&e))))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| CallError::Refused {
                status: status.as_u16(),
                code: "unexpected_answer".into(),
                message: format!("{method} {path}: the answer does not follow the worker protocol: {e}"),
                body: Value::Null,
            });
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("").to_string();
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().chars().take(300).collect());
        if code == "worker_protocol" {
            return Err(CallError::Protocol(message));
        }
        // A server error or an overloaded proxy says nothing about this call: try again later.
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
        {
            return Err(CallError::Unreachable(format!("{method} {url}: HTTP {status}: {message}")));
        }
        Err(CallError::Refused { status: status.as_u16(), code, message, body })
    }

    pub async fn hello(&self, hello: &Hello<'_>) -> Result<HelloAnswer, CallError> {
        self.call(reqwest::Method::POST, "/api/v1/worker/hello", hello, Duration::from_secs(60)).await
    }

    /// The long poll: held by the server up to `wait`.
    pub async fn poll(
        &self,
        worker_id: &str,
        capacity: usize,
        running: &[AttemptRef],
        wait: Duration,
    ) -> Result<PollAnswer, CallError> {
        let body = json!({"worker_id": worker_id, "capacity": capacity, "running": running});
        self.call(reqwest::Method::POST, "/api/v1/worker/poll", &body, wait + Duration::from_secs(15)).await
    }

    pub async fn manifest(&self, worker_id: &str, name: &str, manifest: &str) -> Result<CursorAnswer, CallError> {
        let path = format!("/api/v1/worker/projects/{}", agent_os_core::url::encode_component(name));
        let body = json!({"worker_id": worker_id, "manifest": manifest});
        self.call(reqwest::Method::PUT, &path, &body, Duration::from_secs(60)).await
    }

    /// Sends log chunks; the answer is the highest chunk the server holds for the attempt.
    pub async fn logs(&self, worker_id: &str, key: &AttemptRef, chunks: &[Chunk]) -> Result<i64, CallError> {
        let path = format!("/api/v1/worker/attempts/{}/{}/logs", enc(&key.run_id), key.attempt);
        let body = json!({"worker_id": worker_id, "chunks": chunks});
        let acked: Acked = self.call(reqwest::Method::POST, &path, &body, Duration::from_secs(60)).await?;
        Ok(acked.acked_seq)
    }

    pub async fn end(&self, worker_id: &str, key: &AttemptRef, end: &End) -> Result<EndAnswer, CallError> {
        let path = format!("/api/v1/worker/attempts/{}/{}/end", enc(&key.run_id), key.attempt);
        let mut body = serde_json::to_value(end).unwrap_or(Value::Null);
        body["worker_id"] = json!(worker_id);
        self.call(reqwest::Method::POST, &path, &body, Duration::from_secs(60)).await
    }

    pub async fn probe(&self, report: &ProbeReport<'_>) -> Result<CursorAnswer, CallError> {
        self.call(reqwest::Method::POST, "/api/v1/worker/probes", report, Duration::from_secs(60)).await
    }
}

fn enc(s: &str) -> String {
    agent_os_core::url::encode_component(s)
}

/// An error with its causes ("error sending request: connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_shows_each_manifest_problem_with_its_place() {
        let body = json!({"error": {"code": "invalid", "message": "the manifest is invalid", "field": "projects[0].manifest",
            "errors": [{"file": "agent-os.yaml", "line": 3, "column": 5, "path": "tasks.a.run", "message": "missing", "hint": "add run"}]}});
        let e =
            CallError::Refused { status: 400, code: "invalid".into(), message: "the manifest is invalid".into(), body };
        assert_eq!(
            e.to_string(),
            "HTTP 400: the manifest is invalid\n  agent-os.yaml:3:5: tasks.a.run: missing\n    hint: add run"
        );
    }

    #[test]
    fn an_end_reads_back_as_it_was_written() {
        let end = End {
            end: RunStatus::TimedOut,
            exit_code: None,
            error: Some("timed out after 1s".into()),
            retryable: true,
            interrupted: false,
            outputs: None,
            last_seq: 3,
        };
        let text = serde_json::to_string(&end).unwrap();
        assert!(text.contains(r#""end":"timed_out""#), "{text}");
        assert_eq!(serde_json::from_str::<End>(&text).unwrap(), end);
    }
}
