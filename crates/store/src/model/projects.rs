//! Projects, their plugin transport, probe results and the nodes of a cluster.

use agent_os_core::manifest::{ProbeKind, ProbeStatus, TransportKind};

/// How Agent OS reaches a project's plugin. An HTTP project always has its signing secret, and
/// a command project its directory: neither can be stored or loaded without them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectTransport {
    /// Programs in the project's directory (canonical root).
    Command { root: String },
    /// The project's own endpoint; every request is signed with `secret` (Standard Webhooks,
    /// `whsec_…`). `root` is the directory it was registered from, if it was (admin only).
    Http { url: String, secret: String, root: Option<String> },
    /// Served by workers (`agent-os worker`) from their own machines: the server has neither
    /// its directory nor an address, only the manifest a worker sent.
    Worker,
}

impl ProjectTransport {
    pub fn kind(&self) -> TransportKind {
        match self {
            ProjectTransport::Command { .. } => TransportKind::Command,
            ProjectTransport::Http { .. } => TransportKind::Http,
            ProjectTransport::Worker => TransportKind::Worker,
        }
    }

    /// The directory the project was registered from.
    pub fn root(&self) -> Option<&str> {
        match self {
            ProjectTransport::Command { root } => Some(root),
            ProjectTransport::Http { root, .. } => root.as_deref(),
            ProjectTransport::Worker => None,
        }
    }

    /// The columns `transport`, `root`, `plugin_url` and `signing_secret`: the one place this
    /// type meets its stored form.
    pub fn columns(&self) -> (TransportKind, Option<&str>, Option<&str>, Option<&str>) {
        match self {
            ProjectTransport::Command { root } => (TransportKind::Command, Some(root), None, None),
            ProjectTransport::Http { url, secret, root } => {
                (TransportKind::Http, root.as_deref(), Some(url), Some(secret))
            }
            ProjectTransport::Worker => (TransportKind::Worker, None, None, None),
        }
    }

    /// Reads the transport from a project row (by column name).
    pub(crate) fn from_row(r: &sqlx::any::AnyRow) -> Result<ProjectTransport, sqlx::Error> {
        use sqlx::Row;
        ProjectTransport::from_columns(
            r.try_get("transport")?,
            r.try_get("root")?,
            r.try_get("plugin_url")?,
            r.try_get("signing_secret")?,
        )
        .map_err(|e| sqlx::Error::ColumnDecode { index: "transport".into(), source: e.into() })
    }

    /// Back from those columns; a row that breaks the rule (an HTTP project without its URL or
    /// secret, a command project without its directory) is an error, not a project.
    pub fn from_columns(
        kind: TransportKind,
        root: Option<String>,
        url: Option<String>,
        secret: Option<String>,
    ) -> Result<ProjectTransport, String> {
        match (kind, root, url, secret) {
            (TransportKind::Command, Some(root), _, _) => Ok(ProjectTransport::Command { root }),
            (TransportKind::Command, None, _, _) => Err("a command project is stored without its directory".into()),
            (TransportKind::Http, root, Some(url), Some(secret)) if !secret.is_empty() => {
                Ok(ProjectTransport::Http { url, secret, root })
            }
            (TransportKind::Http, _, None, _) => Err("an HTTP project is stored without its plugin URL".into()),
            (TransportKind::Http, _, _, _) => Err("an HTTP project is stored without its signing secret".into()),
            (TransportKind::Worker, _, _, _) => Ok(ProjectTransport::Worker),
        }
    }
}

/// A project to register.
#[derive(Clone, Debug)]
pub struct NewProject {
    pub id: String,
    pub name: String,
    pub description: String,
    pub transport: ProjectTransport,
    /// The manifest text as registered; re-validated when loaded.
    pub manifest: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProjectRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    pub transport: ProjectTransport,
    pub manifest: String,
    pub cost_cursor: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a status, cost, schedule or health probe answered: one answer as written, or, as
/// stored, a stretch of identical answers (same ok, status, message and error) from `since`
/// to `at`, `repeats` of them, with the latest one's duration and body.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    pub id: String,
    pub project_id: String,
    pub kind: ProbeKind,
    /// When it answered (the stretch's latest answer).
    pub at: i64,
    /// When the stretch began; a new answer is written with `since == at`.
    pub since: i64,
    /// How many answers the stretch counts; a new answer is written with 1.
    pub repeats: i64,
    pub ok: bool,
    pub duration_ms: i64,
    /// For status probes: `ok`, `degraded` or `down`; for health checks `ok` or `down`.
    pub status: Option<ProbeStatus>,
    pub message: Option<String>,
    /// The probe's JSON answer, as received (bounded).
    pub body: Option<String>,
    pub error: Option<String>,
}

/// A running Agent OS process, for telling live work from lost work.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRecord {
    pub id: String,
    pub hostname: String,
    pub pid: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
}
