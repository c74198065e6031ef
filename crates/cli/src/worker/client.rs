//! The worker's side of the wire (docs/worker-protocol.md): the requests it sends and the
//! answers it reads, in the server's own wire types (`agent_os_server::workers`, so the two
//! sides cannot drift apart), and what a failed call means for it — the server is out of
//! reach (try again after saying hello), it speaks another protocol (stop), or it refused this
//! one call.

use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use agent_os_core::run::{LogStream, RunStatus};
use agent_os_engine::engine::workers::WORKER_PROTOCOL;
pub use agent_os_server::workers::{
    AttemptId, ChunkBody, EndAnswer, EndBody, HelloAnswer, HelloBody, HelloProject, LogsAnswer, LogsBody, ManifestBody,
    PROTOCOL_HEADER, PollAnswer, PollBody, ProbeAnswer, ProbeBody, ProjectCursor, WorkerRun,
};

/// One attempt of a run, as both sides name it: the worker's key for its running set and its
/// spool.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct AttemptRef {
    pub run_id: String,
    pub attempt: i64,
}

impl AttemptRef {
    pub fn of(run: &WorkerRun) -> AttemptRef {
        AttemptRef { run_id: run.run_id.clone(), attempt: run.attempt }
    }
}

impl From<AttemptId> for AttemptRef {
    fn from(a: AttemptId) -> Self {
        AttemptRef { run_id: a.run_id, attempt: a.attempt }
    }
}

impl From<AttemptRef> for AttemptId {
    fn from(a: AttemptRef) -> Self {
        AttemptId { run_id: a.run_id, attempt: a.attempt }
    }
}

impl std::fmt::Display for AttemptRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "run {} attempt {}", self.run_id, self.attempt)
    }
}

/// One piece of an attempt's log as the spool keeps it, numbered from 1 per attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub seq: i64,
    pub stream: LogStream,
    /// RFC 3339 UTC.
    pub at: String,
    pub data: String,
}

/// How an attempt ended, as the spool keeps it until the server has it.
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
            .header(PROTOCOL_HEADER, WORKER_PROTOCOL.to_string())
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

    pub async fn hello(&self, hello: &HelloBody) -> Result<HelloAnswer, CallError> {
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
        let body = PollBody {
            worker_id: worker_id.to_string(),
            capacity: capacity as i64,
            running: running.iter().cloned().map(AttemptId::from).collect(),
        };
        self.call(reqwest::Method::POST, "/api/v1/worker/poll", &body, wait + Duration::from_secs(15)).await
    }

    pub async fn manifest(&self, worker_id: &str, name: &str, manifest: &str) -> Result<ProjectCursor, CallError> {
        let path = format!("/api/v1/worker/projects/{}", enc(name));
        let body = ManifestBody { worker_id: worker_id.to_string(), manifest: manifest.to_string() };
        self.call(reqwest::Method::PUT, &path, &body, Duration::from_secs(60)).await
    }

    /// Sends log chunks; the answer is the highest chunk the server holds for the attempt.
    pub async fn logs(&self, worker_id: &str, key: &AttemptRef, chunks: &[Chunk]) -> Result<i64, CallError> {
        let path = format!("/api/v1/worker/attempts/{}/{}/logs", enc(&key.run_id), key.attempt);
        let body = LogsBody {
            worker_id: worker_id.to_string(),
            chunks: chunks
                .iter()
                .map(|c| ChunkBody { seq: c.seq, stream: c.stream, at: c.at.clone(), data: c.data.clone() })
                .collect(),
        };
        let acked: LogsAnswer = self.call(reqwest::Method::POST, &path, &body, Duration::from_secs(60)).await?;
        Ok(acked.acked_seq)
    }

    pub async fn end(&self, worker_id: &str, key: &AttemptRef, end: &End) -> Result<EndAnswer, CallError> {
        let path = format!("/api/v1/worker/attempts/{}/{}/end", enc(&key.run_id), key.attempt);
        let body = EndBody {
            worker_id: worker_id.to_string(),
            end: end.end,
            exit_code: end.exit_code,
            error: end.error.clone(),
            retryable: end.retryable,
            interrupted: end.interrupted,
            outputs: end.outputs.clone(),
            last_seq: end.last_seq,
        };
        self.call(reqwest::Method::POST, &path, &body, Duration::from_secs(60)).await
    }

    pub async fn probe(&self, report: &ProbeBody) -> Result<ProbeAnswer, CallError> {
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
    use serde_json::json;

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
