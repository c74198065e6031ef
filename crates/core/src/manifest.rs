//! The project manifest, `agent-os.yaml`: parsed into a raw spec, then validated into a
//! [`Manifest`] plan that cannot hold an invalid state.
//!
//! Validation here is pure. Checks that need the file system (paths escaping the project root,
//! symlinks) belong to the engine's project loader, which runs them on top of this.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::cron::{Cron, Zone};
use crate::duration::parse_duration;
use crate::name::{MAX_TAGS, check_project_name, check_tag, check_task_name};
use crate::text::text_enum;
use crate::yaml::{self, Pos, SourceError};

/// The file name Agent OS looks for at a project's root.
pub const MANIFEST_FILE: &str = "agent-os.yaml";

/// Default interval of the status probe (plugin `get_status`).
pub const DEFAULT_STATUS_EVERY: Duration = Duration::from_secs(300);
/// Default interval of the cost probe (plugin `report_cost`).
pub const DEFAULT_COST_EVERY: Duration = Duration::from_secs(3600);
/// Default time a probe may take.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default base delay between attempts of a task.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);
/// Most retries a task may ask for.
pub const MAX_RETRIES: u32 = 20;

text_enum! {
    /// Where a schedule is fired from: Agent OS itself, or a scheduler the project keeps.
    pub enum ManagedBy("scheduler") {
        AgentOs = "agent-os",
        Railway = "railway",
        Launchd = "launchd",
        Cron = "cron",
        Systemd = "systemd",
        Github = "github",
    }
}

text_enum! {
    /// Where a stored schedule came from.
    pub enum ScheduleSource("schedule source") {
        /// The manifest's `schedules:`.
        Manifest = "manifest",
        /// The plugin's `get_schedule` answer.
        Plugin = "plugin",
        /// Registered from `schedules discover`; survives manifest reloads.
        Discovered = "discovered",
    }
}

text_enum! {
    /// What the API says of a schedule: for one Agent OS fires, its last run (or that it is
    /// paused or has none yet); for one kept elsewhere, the state of its check.
    pub enum ScheduleStatus("schedule state") {
        /// No run yet, or a check never pinged.
        New = "new",
        Queued = "queued",
        Running = "running",
        /// The last run succeeded.
        Ok = "ok",
        /// The last run failed or timed out.
        Failing = "failing",
        Cancelled = "cancelled",
        Paused = "paused",
        Up = "up",
        Late = "late",
        Down = "down",
        /// Kept elsewhere and watched by no check.
        Unwatched = "unwatched",
    }
}

impl From<crate::check::CheckState> for ScheduleStatus {
    fn from(s: crate::check::CheckState) -> Self {
        use crate::check::CheckState;
        match s {
            CheckState::New => ScheduleStatus::New,
            CheckState::Up => ScheduleStatus::Up,
            CheckState::Late => ScheduleStatus::Late,
            CheckState::Down => ScheduleStatus::Down,
        }
    }
}

text_enum! {
    /// What a probe asks (or, for `health`, the HTTP health check).
    pub enum ProbeKind("probe kind") {
        Status = "status",
        Cost = "cost",
        Schedule = "schedule",
        Health = "health",
    }
}

text_enum! {
    /// What a status probe (or a health check: `ok` or `down`) says of the project.
    pub enum ProbeStatus("probe status") {
        Ok = "ok",
        Degraded = "degraded",
        Down = "down",
    }
}

text_enum! {
    /// The kind of a project's plugin transport, as stored and shown.
    pub enum TransportKind("transport") {
        Command = "command",
        Http = "http",
        /// Served by `agent-os worker` processes: command tasks run on the worker's machine.
        Worker = "worker",
    }
}

// ---------------------------------------------------------------------------------------------
// Raw spec: what the YAML says, nothing checked beyond its shape.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    env_file: Option<Spanned<String>>,
    #[serde(default)]
    keys: BTreeMap<String, Spanned<RawKey>>,
    #[serde(default)]
    tasks: BTreeMap<String, Spanned<RawTask>>,
    #[serde(default)]
    status: Option<Spanned<RawProbe>>,
    #[serde(default)]
    cost: Option<Spanned<RawProbe>>,
    #[serde(default)]
    schedule: Option<Spanned<RawProbe>>,
    #[serde(default)]
    health: Option<Spanned<RawHealth>>,
    #[serde(default)]
    schedules: Vec<Spanned<RawSchedule>>,
    #[serde(default)]
    checks: Vec<Spanned<RawCheck>>,
    #[serde(default)]
    plugin: Option<Spanned<RawPlugin>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    service: String,
    #[serde(default)]
    key_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    #[serde(default)]
    run: Option<Spanned<RawCommand>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    retries: Option<Spanned<u32>>,
    #[serde(default)]
    retry_delay: Option<Spanned<String>>,
    #[serde(default)]
    kill_grace: Option<Spanned<String>>,
    #[serde(default)]
    resources: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    priority: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCommand {
    Shell(String),
    Argv(Vec<Word>),
}

/// One argv item. YAML reads `[sleep, 5]` or `[true]` as a number or a boolean; in a command
/// line they are words, so any scalar is taken as its text.
struct Word(String);

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Word;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a word (string, number or boolean)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    #[serde(default)]
    run: Option<Spanned<RawCommand>>,
    #[serde(default)]
    every: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    url: Spanned<String>,
    #[serde(default)]
    every: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    expect: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    task: Spanned<String>,
    cron: Spanned<String>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    managed_by: Option<Spanned<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    catch_up: Option<Spanned<String>>,
    #[serde(default)]
    overlap: Option<Spanned<String>>,
    #[serde(default)]
    jitter: Option<Spanned<String>>,
    #[serde(default)]
    check: Option<Spanned<String>>,
    #[serde(default)]
    grace: Option<Spanned<String>>,
    #[serde(default)]
    tags: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    slug: Spanned<String>,
    #[serde(default)]
    every: Option<Spanned<String>>,
    #[serde(default)]
    cron: Option<Spanned<String>>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    grace: Option<Spanned<String>>,
    #[serde(default)]
    start_grace: Option<Spanned<String>>,
    #[serde(default)]
    min_duration: Option<Spanned<String>>,
    #[serde(default)]
    max_duration: Option<Spanned<String>>,
    #[serde(default)]
    max_pings: Option<Spanned<RawMaxPings>>,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaxPings {
    count: Spanned<u32>,
    within: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    url: Spanned<String>,
}

// ---------------------------------------------------------------------------------------------
// Plan: validated.

/// A validated project manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    /// Path of the project's own env file, relative to its root. Agent OS never reads values
    /// from it; it is shown and audited by path only.
    pub env_file: Option<String>,
    /// Credentials the project uses, by variable name; never values.
    pub keys: Vec<KeyDecl>,
    pub tasks: BTreeMap<String, Task>,
    pub status: Option<Probe>,
    pub cost: Option<Probe>,
    /// Optional `get_schedule` probe, asked at registration and reload.
    pub schedule_probe: Option<Probe>,
    /// Optional HTTP health check of the project's own service.
    pub health: Option<HealthCheck>,
    pub schedules: Vec<Schedule>,
    /// Heartbeat checks: one for each schedule a project keeps elsewhere, plus `checks:`.
    pub checks: Vec<CheckDecl>,
    pub transport: Transport,
    /// Where each task was declared, for errors found later (paths that escape the root).
    pub task_positions: BTreeMap<String, Pos>,
    pub env_file_position: Option<Pos>,
}

/// How Agent OS talks to the project's plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Programs in the project's directory (tasks' and probes' `run`).
    Command,
    /// The project's own HTTP endpoint; requests are signed.
    Http { url: String },
}

impl Transport {
    pub fn kind(&self) -> TransportKind {
        match self {
            Transport::Command => TransportKind::Command,
            Transport::Http { .. } => TransportKind::Http,
        }
    }
}

/// A credential a project declares by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDecl {
    pub variable: String,
    pub service: String,
    pub key_name: Option<String>,
}

/// A program to start: a shell line (run by `/bin/sh -c`) or an argv list (no shell).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Argv(Vec<String>),
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Shell(s) => f.write_str(s),
            Command::Argv(v) => f.write_str(&v.join(" ")),
        }
    }
}

/// One task of a project.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub name: String,
    pub description: String,
    /// `None` for HTTP plugins, whose endpoint runs the task.
    pub run: Option<Command>,
    /// `None` means the server's default timeout.
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub retry_delay: Duration,
    /// Time between SIGTERM and SIGKILL on timeout or cancel; `None` means the server default.
    pub kill_grace: Option<Duration>,
    /// Named resources (from the config's `resources:`) a run holds while it runs.
    pub resources: Vec<String>,
    /// 0 to 100 (default 50): who goes first when runs wait for a resource.
    pub priority: i64,
}

/// A status, cost or schedule probe.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// `None` for HTTP plugins.
    pub run: Option<Command>,
    pub every: Duration,
    pub timeout: Duration,
}

/// An HTTP health check: `GET url` every `every` must answer `expect` within `timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub url: String,
    pub every: Duration,
    pub timeout: Duration,
    pub expect: u16,
}

/// Default interval of a health check.
pub const DEFAULT_HEALTH_EVERY: Duration = Duration::from_secs(60);
/// Default timeout of a health check.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// A schedule as declared; evaluated by the scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub task: String,
    pub cron: Cron,
    pub timezone: Zone,
    pub managed_by: ManagedBy,
    pub description: String,
    /// Slots missed while Agent OS was down (managed schedules only).
    pub catch_up: CatchUp,
    /// What to do when a slot comes while the previous run still goes (managed only).
    pub overlap: Overlap,
    /// A random delay of up to this much after each slot (managed only).
    pub jitter: Option<Duration>,
    /// The slug of the check watching a schedule kept elsewhere (`None` for managed ones).
    pub check: Option<String>,
}

/// A heartbeat expectation: the job pings Agent OS when it runs; a ping that does not come in
/// time (plus grace) makes the check late, then down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckDecl {
    /// Unique within the project; part of the slug ping URL.
    pub slug: String,
    pub expect: Expect,
    pub grace: Duration,
    /// A start ping is expected within this long of each due time.
    pub start_grace: Option<Duration>,
    /// A success that comes sooner than this after its start counts as a failure.
    pub min_duration: Option<Duration>,
    /// A run going longer than this after its start is late, then down after `grace`.
    pub max_duration: Option<Duration>,
    /// More success pings than this within a window is a warning (pinged too often).
    pub max_pings: Option<MaxPings>,
    /// Checks upstream of this one: a slug of this project, or `project/slug` of another. While
    /// one is late or down, this check going late or down is held under the upstream's
    /// incident instead of paging on its own.
    pub depends_on: Vec<String>,
    pub description: String,
    /// Labels that group checks across projects (`nightly`, `trading`): a badge and a filter
    /// per tag. Unique, in the order written, at most [`MAX_TAGS`].
    pub tags: Vec<String>,
}

/// At most `count` success pings within `within`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPings {
    pub count: u32,
    pub within: Duration,
}

/// When pings are expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// At least once per period.
    Period(Duration),
    /// At each fire of a cron expression in a zone.
    Cron { cron: Cron, timezone: Zone },
}

/// Grace of a check that names none.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(15 * 60);

text_enum! {
    /// Slots missed while Agent OS was not running.
    pub enum CatchUp("catch_up") {
        /// Drop them; fire only slots that come while running.
        Skip = "skip",
        /// Fire the most recent missed slot once (the default).
        Latest = "latest",
        /// Fire every missed slot, oldest first, up to [`MAX_CATCH_UP`].
        All = "all",
    }
}

/// Most missed slots `catch_up: all` fires after downtime.
pub const MAX_CATCH_UP: usize = 100;

text_enum! {
    /// A slot that comes while the schedule's previous run is still queued or running.
    pub enum Overlap("overlap") {
        /// Record the slot as skipped (the default).
        Skip = "skip",
        /// Queue the new run: it starts when the previous one ends.
        Queue = "queue",
        /// Cancel the previous run and start the new one.
        Replace = "replace",
        /// Start another run anyway.
        Allow = "allow",
    }
}

/// All problems found in one manifest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError(pub Vec<SourceError>);

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

struct Collector<'a> {
    file: &'a str,
    errors: Vec<SourceError>,
}

impl Collector<'_> {
    fn at(&mut self, pos: Pos, path: impl Into<String>, message: impl Into<String>, hint: Option<&str>) {
        self.errors.push(SourceError {
            file: self.file.to_string(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            path: path.into(),
            message: message.into(),
            hint: hint.map(str::to_string),
        });
    }

    /// A check's `tags:`, each a valid tag ([`check_tag`]), unique, at most [`MAX_TAGS`]. A
    /// tag written twice is kept once: a list of labels, not a count.
    fn tags(&mut self, raw: &Option<Spanned<Vec<Spanned<String>>>>, path: String) -> Vec<String> {
        let Some(raw) = raw else { return Vec::new() };
        if raw.value.len() > MAX_TAGS {
            self.at(
                raw.referenced.into(),
                path.clone(),
                format!("a check may carry at most {MAX_TAGS} tags, got {}", raw.value.len()),
                Some("keep the tags that group checks you look at together"),
            );
        }
        let mut tags: Vec<String> = Vec::new();
        for (i, t) in raw.value.iter().enumerate() {
            if let Err(e) = check_tag(&t.value) {
                self.at(t.referenced.into(), format!("{path}[{i}]"), e, Some("e.g. tags: [nightly, trading]"));
            } else if !tags.contains(&t.value) {
                tags.push(t.value.clone());
            }
        }
        tags
    }

    fn duration(&mut self, raw: &Option<Spanned<String>>, path: String) -> Option<Duration> {
        let raw = raw.as_ref()?;
        match parse_duration(&raw.value) {
            Ok(d) if d.is_zero() => {
                self.at(
                    raw.referenced.into(),
                    path,
                    "duration must be more than zero",
                    Some("write e.g. 30s, 5m or 1h"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.at(raw.referenced.into(), path, e, Some("write e.g. 30s, 5m or 1h"));
                None
            }
        }
    }
}

impl Manifest {
    /// Parses and validates a manifest. `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = yaml::parse(file, text).map_err(|e| ManifestError(vec![e]))?;
        let mut c = Collector { file, errors: Vec::new() };
        let manifest = validate(raw, &mut c);
        if c.errors.is_empty() { Ok(manifest) } else { Err(ManifestError(c.errors)) }
    }

    /// The task named `name`, if declared.
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.get(name)
    }
}

fn validate(raw: RawManifest, c: &mut Collector<'_>) -> Manifest {
    if let Err(e) = check_project_name(&raw.name.value) {
        c.at(raw.name.referenced.into(), "name", e, Some("e.g. name: image-workflow"));
    }

    let transport = match &raw.plugin {
        Some(p) => {
            let url = p.value.url.value.trim().to_string();
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                c.at(
                    p.value.url.referenced.into(),
                    "plugin.url",
                    format!("{url:?} is not an http(s) URL"),
                    Some("e.g. plugin: { url: https://trading.example.com/agent-os }"),
                );
            }
            Transport::Http { url: url.trim_end_matches('/').to_string() }
        }
        None => Transport::Command,
    };
    let http = matches!(transport, Transport::Http { .. });

    let env_file = raw.env_file.as_ref().map(|e| e.value.clone());
    if let Some(e) = &raw.env_file {
        if e.value.trim().is_empty() {
            c.at(e.referenced.into(), "env_file", "env_file is empty", Some("e.g. env_file: .env"));
        } else if e.value.starts_with('/') || e.value.split('/').any(|part| part == "..") {
            c.at(
                e.referenced.into(),
                "env_file",
                format!("{:?} points outside the project", e.value),
                Some("a project keeps its own env file inside its directory, e.g. env_file: .env"),
            );
        }
    }

    let mut keys = Vec::new();
    for (variable, key) in &raw.keys {
        let path = format!("keys.{variable}");
        let valid_var = variable.starts_with(|ch: char| ch.is_ascii_uppercase() || ch == '_')
            && variable.chars().all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_');
        if !valid_var {
            c.at(
                key.referenced.into(),
                path.clone(),
                format!("{variable:?} is not an environment variable name"),
                Some("use upper case, digits and '_', e.g. OPENAI_API_KEY"),
            );
        }
        if key.value.service.trim().is_empty() {
            c.at(
                key.referenced.into(),
                format!("{path}.service"),
                "service is empty",
                Some("name the provider, e.g. service: openai"),
            );
        }
        keys.push(KeyDecl {
            variable: variable.clone(),
            service: key.value.service.clone(),
            key_name: key.value.key_name.clone(),
        });
    }

    let mut tasks = BTreeMap::new();
    let mut task_positions = BTreeMap::new();
    for (name, task) in &raw.tasks {
        let path = format!("tasks.{name}");
        let pos: Pos = task.referenced.into();
        if let Err(e) = check_task_name(name) {
            c.at(pos, path.clone(), e, None);
        }
        let t = &task.value;
        let run = command(c, &t.run, &format!("{path}.run"));
        match (&run, http, &t.run) {
            (None, false, None) => c.at(
                pos,
                path.clone(),
                "task has no `run`",
                Some("add run: \"scripts/do_it.sh\" or run: [python3, do_it.py]"),
            ),
            (Some(_), true, Some(r)) => c.at(
                r.referenced.into(),
                format!("{path}.run"),
                "tasks of an HTTP plugin run on the plugin's endpoint",
                Some("remove `run`, or remove `plugin` to run the task as a command"),
            ),
            _ => {}
        }
        let retries = match &t.retries {
            Some(r) if r.value > MAX_RETRIES => {
                c.at(
                    r.referenced.into(),
                    format!("{path}.retries"),
                    format!("{} retries is more than the limit of {MAX_RETRIES}", r.value),
                    None,
                );
                0
            }
            Some(r) => r.value,
            None => 0,
        };
        let timeout = c.duration(&t.timeout, format!("{path}.timeout"));
        let retry_delay = c.duration(&t.retry_delay, format!("{path}.retry_delay")).unwrap_or(DEFAULT_RETRY_DELAY);
        let kill_grace = c.duration(&t.kill_grace, format!("{path}.kill_grace"));
        let mut resources: Vec<String> = Vec::new();
        if let Some(r) = &t.resources {
            for name in &r.value {
                if let Err(e) = check_task_name(name) {
                    c.at(
                        r.referenced.into(),
                        format!("{path}.resources"),
                        e.replace("task name", "resource name"),
                        None,
                    );
                } else if !resources.contains(name) {
                    resources.push(name.clone());
                }
            }
            if resources.len() > 8 {
                c.at(r.referenced.into(), format!("{path}.resources"), "a task may use at most 8 resources", None);
            }
        }
        resources.sort();
        let priority = match &t.priority {
            Some(p) if !(0..=crate::resource::MAX_PRIORITY).contains(&p.value) => {
                c.at(
                    p.referenced.into(),
                    format!("{path}.priority"),
                    format!("{} is out of range", p.value),
                    Some("0 to 100; higher goes first"),
                );
                crate::resource::DEFAULT_PRIORITY
            }
            Some(p) => p.value,
            None => crate::resource::DEFAULT_PRIORITY,
        };
        task_positions.insert(name.clone(), pos);
        tasks.insert(
            name.clone(),
            Task {
                name: name.clone(),
                description: t.description.clone().unwrap_or_default(),
                run,
                timeout,
                retries,
                retry_delay,
                kill_grace,
                resources,
                priority,
            },
        );
    }

    let status = probe(c, &raw.status, "status", DEFAULT_STATUS_EVERY, http);
    let cost = probe(c, &raw.cost, "cost", DEFAULT_COST_EVERY, http);
    let schedule_probe = probe(c, &raw.schedule, "schedule", DEFAULT_STATUS_EVERY, http);
    let health = raw.health.as_ref().and_then(|h| health_check(c, h));

    let mut schedules = Vec::new();
    let mut checks: Vec<(Pos, String, String, Option<CheckDecl>)> = Vec::new();
    for (i, s) in raw.schedules.iter().enumerate() {
        let path = format!("schedules[{i}]");
        let v = &s.value;
        if !tasks.contains_key(&v.task.value) {
            let known: Vec<&str> = tasks.keys().map(String::as_str).collect();
            let hint = suggest(&v.task.value, &known).map(|k| format!("did you mean {k:?}?")).unwrap_or_else(|| {
                format!(
                    "declare it under tasks (declared: {})",
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                )
            });
            c.at(
                v.task.referenced.into(),
                format!("{path}.task"),
                format!("unknown task {:?}", v.task.value),
                Some(&hint),
            );
        }
        let cron = Cron::parse(&v.cron.value).map_err(|e| {
            c.at(
                v.cron.referenced.into(),
                format!("{path}.cron"),
                e.to_string(),
                Some("five fields: minute hour day-of-month month day-of-week, e.g. \"0 22 * * *\", or @daily"),
            );
        });
        let timezone = match &v.timezone {
            None => Ok(Zone::utc()),
            Some(tz) => Zone::parse(&tz.value).map_err(|e| {
                c.at(
                    tz.referenced.into(),
                    format!("{path}.timezone"),
                    e,
                    Some("use an IANA zone name such as Europe/Berlin or America/Los_Angeles"),
                );
            }),
        };
        let managed_by = match &v.managed_by {
            None => Some(ManagedBy::AgentOs),
            Some(m) => m.value.parse().ok().or_else(|| {
                c.at(
                    m.referenced.into(),
                    format!("{path}.managed_by"),
                    format!("unknown scheduler {:?}", m.value),
                    Some(&format!("one of: {}", ManagedBy::SPELLINGS.join(", "))),
                );
                None
            }),
        };
        let managed = managed_by == Some(ManagedBy::AgentOs);
        let mut policy = |raw: &Option<Spanned<String>>, field: &str, allowed: &[&str]| -> Option<String> {
            let r = raw.as_ref()?;
            if !managed {
                c.at(
                    r.referenced.into(),
                    format!("{path}.{field}"),
                    format!("{field} applies only to schedules Agent OS fires"),
                    Some("remove it, or set managed_by: agent-os"),
                );
                return None;
            }
            if !allowed.contains(&r.value.as_str()) {
                c.at(
                    r.referenced.into(),
                    format!("{path}.{field}"),
                    format!("unknown {field} {:?}", r.value),
                    Some(&format!("one of: {}", allowed.join(", "))),
                );
                return None;
            }
            Some(r.value.clone())
        };
        let catch_up =
            policy(&v.catch_up, "catch_up", CatchUp::SPELLINGS).and_then(|c| c.parse().ok()).unwrap_or(CatchUp::Latest);
        let overlap =
            policy(&v.overlap, "overlap", Overlap::SPELLINGS).and_then(|o| o.parse().ok()).unwrap_or(Overlap::Skip);
        let jitter = c.duration(&v.jitter, format!("{path}.jitter"));
        let grace = c.duration(&v.grace, format!("{path}.grace")).unwrap_or(DEFAULT_GRACE);
        let tags = c.tags(&v.tags, format!("{path}.tags"));
        if let (true, Some(t)) = (managed, &v.tags) {
            c.at(
                t.referenced.into(),
                format!("{path}.tags"),
                "tags label the check of a schedule a project keeps elsewhere; Agent OS watches its own runs",
                Some("remove it, or declare a check under checks: with these tags"),
            );
        }
        if managed {
            for (raw, field) in [(&v.check, "check"), (&v.grace, "grace")] {
                if let Some(r) = raw {
                    c.at(
                        r.referenced.into(),
                        format!("{path}.{field}"),
                        format!(
                            "{field} applies to schedules a project keeps elsewhere (Agent OS watches its own runs)"
                        ),
                        Some("remove it"),
                    );
                }
            }
        }
        let check_slug =
            (!managed).then(|| v.check.as_ref().map(|x| x.value.clone()).unwrap_or_else(|| v.task.value.clone()));
        if let Some(slug) = check_slug.clone() {
            if let Some(x) = &v.check
                && let Err(e) = check_task_name(&x.value)
            {
                c.at(x.referenced.into(), format!("{path}.check"), e.replace("task name", "check slug"), None);
            }
            let expect =
                cron.clone().ok().zip(timezone.clone().ok()).map(|(cron, timezone)| Expect::Cron { cron, timezone });
            checks.push((
                s.referenced.into(),
                path.to_string(),
                slug.clone(),
                expect.map(|expect| CheckDecl {
                    slug,
                    expect,
                    grace,
                    start_grace: None,
                    min_duration: None,
                    max_duration: None,
                    max_pings: None,
                    depends_on: Vec::new(),
                    description: v.description.clone().unwrap_or_default(),
                    tags,
                }),
            ));
        }
        if let (Some(j), false) = (&v.jitter, managed) {
            c.at(
                j.referenced.into(),
                format!("{path}.jitter"),
                "jitter applies only to schedules Agent OS fires",
                None,
            );
        }
        // With an error the manifest is refused, so a schedule that did not parse is not needed.
        if let (Ok(cron), Ok(timezone), Some(managed_by)) = (cron, timezone, managed_by) {
            schedules.push(Schedule {
                task: v.task.value.clone(),
                cron,
                timezone,
                managed_by,
                description: v.description.clone().unwrap_or_default(),
                catch_up,
                overlap,
                jitter,
                check: check_slug,
            });
        }
    }

    for (i, k) in raw.checks.iter().enumerate() {
        let path = format!("checks[{i}]");
        let v = &k.value;
        if let Err(e) = check_task_name(&v.slug.value) {
            c.at(v.slug.referenced.into(), format!("{path}.slug"), e.replace("task name", "check slug"), None);
        }
        let grace = c.duration(&v.grace, format!("{path}.grace")).unwrap_or(DEFAULT_GRACE);
        let tags = c.tags(&v.tags, format!("{path}.tags"));
        let start_grace = c.duration(&v.start_grace, format!("{path}.start_grace"));
        let min_duration = c.duration(&v.min_duration, format!("{path}.min_duration"));
        let max_duration = c.duration(&v.max_duration, format!("{path}.max_duration"));
        if let (Some(min), Some(max), Some(raw)) = (min_duration, max_duration, &v.min_duration)
            && min >= max
        {
            c.at(
                raw.referenced.into(),
                format!("{path}.min_duration"),
                "min_duration must be shorter than max_duration: no run could be both",
                Some("lower min_duration or raise max_duration, e.g. { min_duration: 1m, max_duration: 1h }"),
            );
        }
        let max_pings = v.max_pings.as_ref().and_then(|m| {
            let hint = Some("e.g. max_pings: { count: 1, within: 10m }");
            let within = match &m.value.within {
                None => {
                    c.at(m.referenced.into(), format!("{path}.max_pings.within"), "the window is missing", hint);
                    None
                }
                Some(_) => c.duration(&m.value.within, format!("{path}.max_pings.within")),
            };
            if m.value.count.value == 0 {
                c.at(
                    m.value.count.referenced.into(),
                    format!("{path}.max_pings.count"),
                    "count must be 1 or more: it is how many success pings the window allows",
                    hint,
                );
                return None;
            }
            within.map(|within| MaxPings { count: m.value.count.value, within })
        });
        let expect = match (&v.every, &v.cron) {
            (Some(_), None) => c.duration(&v.every, format!("{path}.every")).map(|d| Some(Expect::Period(d))),
            (None, Some(cron)) => {
                let cron = Cron::parse(&cron.value).map_err(|e| {
                    c.at(cron.referenced.into(), format!("{path}.cron"), e.to_string(), None);
                });
                let timezone = match &v.timezone {
                    None => Ok(Zone::utc()),
                    Some(tz) => Zone::parse(&tz.value).map_err(|e| {
                        c.at(tz.referenced.into(), format!("{path}.timezone"), e, None);
                    }),
                };
                // Refused with the errors above when either did not parse.
                Some(cron.ok().zip(timezone.ok()).map(|(cron, timezone)| Expect::Cron { cron, timezone }))
            }
            _ => {
                c.at(
                    k.referenced.into(),
                    path.clone(),
                    "a check needs exactly one of `every` or `cron`",
                    Some("e.g. { slug: backup, every: 1h, grace: 10m }"),
                );
                None
            }
        };
        if let Some(expect) = expect {
            checks.push((
                k.referenced.into(),
                path,
                v.slug.value.clone(),
                expect.map(|expect| CheckDecl {
                    slug: v.slug.value.clone(),
                    expect,
                    grace,
                    start_grace,
                    min_duration,
                    max_duration,
                    max_pings,
                    depends_on: Vec::new(),
                    description: v.description.clone().unwrap_or_default(),
                    tags,
                }),
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (pos, path, slug, _) in &checks {
        if !seen.insert(slug.clone()) {
            c.at(
                *pos,
                path.clone(),
                format!("two checks share the slug {slug:?}"),
                Some("give one of the schedules `check: another-name`"),
            );
        }
    }
    let mut checks: Vec<CheckDecl> = checks.into_iter().filter_map(|(_, _, _, check)| check).collect();
    depends_on(c, &raw.name.value, &raw.checks, &mut checks);

    Manifest {
        name: raw.name.value.clone(),
        description: raw.description.clone().unwrap_or_default(),
        env_file,
        keys,
        tasks,
        status,
        cost,
        schedule_probe,
        health,
        schedules,
        checks,
        transport,
        task_positions,
        env_file_position: raw.env_file.as_ref().map(|e| e.referenced.into()),
    }
}

/// Checks the `depends_on` of the `checks:` entries and sets them on their checks: a slug of
/// this project must be one of its checks and not the check itself; `project/slug` names a
/// check of another project, which may be registered later (it holds nothing until it
/// exists), so only its shape is checked. `name/slug` with this project's own name is a slug.
fn depends_on(c: &mut Collector<'_>, project: &str, raw: &[Spanned<RawCheck>], checks: &mut [CheckDecl]) {
    let known: Vec<String> = checks.iter().map(|k| k.slug.clone()).collect();
    for (i, k) in raw.iter().enumerate() {
        let mut deps: Vec<String> = Vec::new();
        for (j, d) in k.value.depends_on.iter().enumerate() {
            let path = format!("checks[{i}].depends_on[{j}]");
            let (other, slug) = match d.value.split_once('/') {
                Some((p, slug)) if p != project => (Some(p), slug),
                Some((_, slug)) => (None, slug),
                None => (None, d.value.as_str()),
            };
            if let Some(p) = other
                && let Err(e) = check_project_name(p)
            {
                c.at(d.referenced.into(), &path, e, Some("name another project's check as project/slug"));
                continue;
            }
            if let Err(e) = check_task_name(slug) {
                c.at(d.referenced.into(), &path, e.replace("task name", "check slug"), None);
                continue;
            }
            if other.is_none() && slug == k.value.slug.value {
                c.at(d.referenced.into(), &path, "a check cannot depend on itself", Some("remove it"));
                continue;
            }
            if other.is_none() && !known.iter().any(|x| x == slug) {
                let names: Vec<&str> = known.iter().map(String::as_str).collect();
                let hint = suggest(slug, &names).map(|x| format!("did you mean {x:?}?")).unwrap_or_else(|| {
                    format!(
                        "name one of this project's checks ({}), or another project's as project/slug",
                        names.join(", ")
                    )
                });
                c.at(d.referenced.into(), &path, format!("unknown check {slug:?}"), Some(&hint));
                continue;
            }
            let name = match other {
                Some(p) => format!("{p}/{slug}"),
                None => slug.to_string(),
            };
            if deps.contains(&name) {
                c.at(d.referenced.into(), &path, format!("{name:?} is named twice"), Some("remove one"));
                continue;
            }
            deps.push(name);
        }
        if let Some(check) = checks.iter_mut().find(|x| x.slug == k.value.slug.value) {
            check.depends_on = deps;
        }
    }
}

fn command(c: &mut Collector<'_>, raw: &Option<Spanned<RawCommand>>, path: &str) -> Option<Command> {
    let r = raw.as_ref()?;
    match &r.value {
        RawCommand::Shell(s) if s.trim().is_empty() => {
            c.at(r.referenced.into(), path, "run is empty", Some("give a command line or an argv list"));
            None
        }
        RawCommand::Shell(s) => Some(Command::Shell(s.clone())),
        RawCommand::Argv(v) if v.is_empty() || v[0].0.trim().is_empty() => {
            c.at(
                r.referenced.into(),
                path,
                "run has no program",
                Some("the first item is the program, e.g. [python3, scripts/query.py]"),
            );
            None
        }
        RawCommand::Argv(v) => Some(Command::Argv(v.iter().map(|w| w.0.clone()).collect())),
    }
}

fn probe(
    c: &mut Collector<'_>,
    raw: &Option<Spanned<RawProbe>>,
    field: &str,
    default_every: Duration,
    http: bool,
) -> Option<Probe> {
    let p = raw.as_ref()?;
    let run = command(c, &p.value.run, &format!("{field}.run"));
    if http && p.value.run.is_some() {
        c.at(
            p.referenced.into(),
            format!("{field}.run"),
            "an HTTP plugin answers probes at its endpoint",
            Some("remove `run`; keep `every`"),
        );
    }
    if !http && run.is_none() && p.value.run.is_none() {
        c.at(
            p.referenced.into(),
            field,
            "probe has no `run`",
            Some("e.g. status: { run: [python3, scripts/status.py], every: 5m }"),
        );
    }
    let every = c.duration(&p.value.every, format!("{field}.every")).unwrap_or(default_every);
    if every < Duration::from_secs(1) {
        c.at(
            p.referenced.into(),
            format!("{field}.every"),
            "a probe runs at most once a second",
            Some("use 1s or more"),
        );
    }
    let timeout = c.duration(&p.value.timeout, format!("{field}.timeout")).unwrap_or(DEFAULT_PROBE_TIMEOUT);
    Some(Probe { run, every, timeout })
}

fn health_check(c: &mut Collector<'_>, h: &Spanned<RawHealth>) -> Option<HealthCheck> {
    let url = h.value.url.value.trim();
    let parsed = crate::url::parse_http(url);
    if let Err(e) = &parsed {
        c.at(
            h.value.url.referenced.into(),
            "health.url",
            e,
            Some("e.g. health: { url: http://127.0.0.1:8000/healthz }"),
        );
    }
    let every = c.duration(&h.value.every, "health.every".into()).unwrap_or(DEFAULT_HEALTH_EVERY);
    if every < Duration::from_secs(1) {
        c.at(h.referenced.into(), "health.every", "a health check runs at most once a second", Some("use 1s or more"));
    }
    let timeout = c.duration(&h.value.timeout, "health.timeout".into()).unwrap_or(DEFAULT_HEALTH_TIMEOUT);
    let expect = match &h.value.expect {
        Some(e) if !(100..=599).contains(&e.value) => {
            c.at(
                e.referenced.into(),
                "health.expect",
                format!("{} is not an HTTP status", e.value),
                Some("e.g. expect: 200"),
            );
            200
        }
        Some(e) => e.value,
        None => 200,
    };
    parsed.ok()?;
    Some(HealthCheck { url: url.to_string(), every, timeout, expect })
}

/// Checks one schedule a plugin reported through `get_schedule`, as the manifest's are checked,
/// and gives its parsed expression, zone and scheduler.
pub fn check_schedule(
    tasks: &BTreeMap<String, Task>,
    task: &str,
    cron: &str,
    timezone: &str,
    managed_by: &str,
) -> Result<(Cron, Zone, ManagedBy), String> {
    if !tasks.contains_key(task) {
        return Err(format!("unknown task {task:?}"));
    }
    let cron = Cron::parse(cron).map_err(|e| e.to_string())?;
    // Schedules keep IANA zone names (never fixed offsets) so DST is right.
    let zone = Zone::parse(timezone)?;
    let managed_by = managed_by
        .parse()
        .map_err(|_| format!("unknown scheduler {managed_by:?}; one of: {}", ManagedBy::SPELLINGS.join(", ")))?;
    Ok((cron, zone, managed_by))
}

/// The closest of `known` to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known.iter().map(|k| (edit_distance(word, k), *k)).filter(|(d, k)| *d <= 2.max(k.len() / 3)).min().map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
