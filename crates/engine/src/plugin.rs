//! Plugin protocol v1 (docs/plugin-protocol.md): get_status, report_cost, get_schedule and
//! run_task, over the command transport (a program in the project's directory reading a JSON
//! request on stdin and answering on stdout) and the HTTP transport (the project's endpoint;
//! every request signed per Standard Webhooks). This module alone knows the wire format.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::costs::CostInput;
use crate::project::LoadedProject;
use crate::runner::{Exit, ProcessSpec, base_env, run_captured};
use crate::secrets::sign_webhook;
use agent_os_core::manifest::{Command, Probe};
use agent_os_store::ProjectTransport;

/// The protocol version Agent OS speaks.
pub const PROTOCOL: u32 = 1;

/// Largest probe answer read.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// `get_status` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct StatusAnswer {
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub details: Option<Value>,
}

/// `report_cost` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct CostAnswer {
    #[serde(default)]
    pub records: Vec<CostInput>,
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `get_schedule` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct ScheduleAnswer {
    #[serde(default)]
    pub schedules: Vec<ScheduleItem>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ScheduleItem {
    pub task: String,
    pub cron: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub managed_by: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `run_task` answer of an HTTP plugin.
#[derive(Clone, Debug, Deserialize)]
pub struct TaskAnswer {
    pub status: String,
    #[serde(default)]
    pub outputs: Option<Value>,
    #[serde(default)]
    pub log: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub retryable: Option<bool>,
}

/// A failed plugin call: why, and whether trying again may help.
#[derive(Clone, Debug)]
pub struct CallError {
    pub message: String,
    pub retryable: bool,
}

impl CallError {
    fn new(message: impl Into<String>, retryable: bool) -> Self {
        CallError { message: message.into(), retryable }
    }
}

/// The HTTP side of the protocol.
#[derive(Clone)]
pub struct HttpPlugins {
    client: reqwest::Client,
}

/// reqwest is built without a default TLS crypto provider; this installs ring for the whole
/// process (idempotent). Anything that builds a reqwest client calls it first.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What a request to an HTTP plugin is signed with: the project's current secret, which an
/// HTTP project always has (`ProjectTransport::Http`), and during a rotation's grace the
/// previous one too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeys {
    pub current: String,
    pub previous: Option<String>,
}

impl SigningKeys {
    /// The current secret first.
    fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.current.as_str()).chain(self.previous.as_deref())
    }
}

impl HttpPlugins {
    /// The signed client. A client that cannot be built is an error: reqwest's default client
    /// would follow redirects, which plugin calls must never do.
    pub fn new() -> Result<Self, reqwest::Error> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("agent-os/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(HttpPlugins { client })
    }

    /// Signs a request with each of `keys` (the current one first; during a rotation's grace
    /// also the previous one): Standard Webhooks lists several signatures separated by spaces,
    /// and a receiver accepts the request when one of them verifies.
    fn signed(
        &self,
        req: reqwest::RequestBuilder,
        keys: &SigningKeys,
        msg_id: &str,
        body: &[u8],
    ) -> Result<reqwest::RequestBuilder, CallError> {
        let ts =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let sigs = keys
            .all()
            .map(|secret| sign_webhook(secret, msg_id, ts, body))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CallError::new(e, false))?;
        let sig = sigs.join(" ");
        Ok(req
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig))
    }

    /// `GET {url}/{path}` with a signature; the JSON answer.
    pub async fn get(&self, base: &str, keys: &SigningKeys, path: &str, timeout: Duration) -> Result<Value, CallError> {
        let url = format!("{base}/{path}");
        let req = self.signed(self.client.get(&url).timeout(timeout), keys, &agent_os_core::id::new_id(), b"")?;
        let resp = req.send().await.map_err(|e| CallError::new(format!("GET {url}: {}", error_chain(&e)), true))?;
        let status = resp.status();
        if !status.is_success() {
            let why = format!("GET {url}: HTTP {status}{}", refused_hint(status));
            return Err(CallError::new(why, status.is_server_error()));
        }
        read_json(resp, &url).await
    }

    /// `POST {url}/tasks/{task}`: runs a task on the plugin. `attempt_key` (`<run>.<attempt>`)
    /// is both the message id and the idempotency key.
    pub async fn run_task(
        &self,
        base: &str,
        keys: &SigningKeys,
        task: &str,
        body: &Value,
        attempt_key: &str,
        timeout: Duration,
    ) -> Result<TaskAnswer, CallError> {
        let url = format!("{base}/tasks/{task}");
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let msg_id = attempt_key.to_string();
        let req = self
            .client
            .post(&url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("idempotency-key", &msg_id)
            .body(bytes.clone());
        let resp = self.signed(req, keys, &msg_id, &bytes)?.send().await.map_err(|e| {
            let timed_out = e.is_timeout();
            CallError::new(
                format!("POST {url}: {}", if timed_out { "timed out".into() } else { error_chain(&e) }),
                true,
            )
        })?;
        let status = resp.status();
        if !status.is_success() {
            let retryable = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            return Err(CallError::new(format!("POST {url}: HTTP {status}{}", refused_hint(status)), retryable));
        }
        let v = read_json(resp, &url).await?;
        serde_json::from_value(v)
            .map_err(|e| CallError::new(format!("POST {url}: answer does not follow the protocol: {e}"), false))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// What a 401 or 403 from a plugin most often means: the project does not check our
/// signatures with the right secret yet (a new project, or a rotation it has not followed).
fn refused_hint(status: reqwest::StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => {
            " (the project does not accept Agent OS's signature yet: configure the signing secret shown at registration; `agent-os project secret show PROJECT` shows it again)"
        }
        _ => "",
    }
}

async fn read_json(resp: reqwest::Response, url: &str) -> Result<Value, CallError> {
    let bytes = resp.bytes().await.map_err(|e| CallError::new(format!("{url}: {e}"), true))?;
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err(CallError::new(format!("{url}: answer larger than {MAX_ANSWER_BYTES} bytes"), false));
    }
    serde_json::from_slice(&bytes).map_err(|e| CallError::new(format!("{url}: answer is not JSON: {e}"), false))
}

/// Asks a project's probe (`status`, `cost` or `schedule`) over its transport; an HTTP request
/// is signed with the project's secret and, during a rotation's grace, `previous_secret`.
pub async fn ask_probe(
    http: &HttpPlugins,
    project: &LoadedProject,
    op: &str,
    probe: &Probe,
    public_url: &str,
    since: Option<&str>,
    previous_secret: Option<String>,
) -> Result<Value, CallError> {
    let name = &project.record.name;
    match (&probe.run, &project.record.transport, project.root()) {
        (Some(cmd), _, Some(root)) => ask_command_probe(root, name, op, cmd, probe.timeout, public_url, since).await,
        (None, ProjectTransport::Http { url, secret, .. }, _) => {
            let path = match (op, since) {
                ("get_status", _) => "status".to_string(),
                ("get_schedule", _) => "schedule".to_string(),
                (_, Some(c)) => format!("cost?since={}", agent_os_core::url::encode_component(c)),
                (_, None) => "cost".to_string(),
            };
            let keys = SigningKeys { current: secret.clone(), previous: previous_secret };
            http.get(url, &keys, &path, probe.timeout).await
        }
        _ => Err(CallError::new("the probe has nothing to run for this project", false)),
    }
}

/// Asks a command probe in the project's directory `root`: the request on stdin, the JSON
/// answer on stdout, within `timeout`. The server's probes of local projects and the worker's
/// probes of the projects it serves both ask through here.
pub async fn ask_command_probe(
    root: &Path,
    project: &str,
    op: &str,
    command: &Command,
    timeout: Duration,
    public_url: &str,
    since: Option<&str>,
) -> Result<Value, CallError> {
    let mut env = base_env();
    env.push(("AGENT_OS_URL".into(), public_url.to_string()));
    env.push(("AGENT_OS_PROJECT".into(), project.to_string()));
    env.push(("AGENT_OS_PROTOCOL".into(), PROTOCOL.to_string()));
    let request = json!({"protocol": PROTOCOL, "op": op, "project": project, "since": since});
    let spec = ProcessSpec {
        root,
        command,
        env,
        stdin: request.to_string().into_bytes(),
        timeout,
        kill_grace: Duration::from_secs(2),
    };
    let out = run_captured(spec, MAX_ANSWER_BYTES).await;
    match out.exit {
        Exit::Code(0) => serde_json::from_str(out.stdout.trim())
            .map_err(|e| CallError::new(format!("probe printed no JSON answer: {e}"), true)),
        other => {
            let tail = agent_os_core::redact::redact_shapes(out.stderr_tail.trim());
            let why = other.describe(timeout);
            Err(CallError::new(if tail.is_empty() { why } else { format!("{why}: {tail}") }, true))
        }
    }
}
