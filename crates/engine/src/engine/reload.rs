//! `config.yaml` applied again while the server runs: noticed by a watch on the file, asked for
//! by `SIGHUP` or by `POST /api/v1/config/reload`. The new text is validated whole (every
//! channel, route, budget and resource, as at start) before anything changes; a file with
//! errors leaves the settings in force as they were, says why with file:line places, and opens
//! a `config` incident that the next good version resolves. What a running server cannot
//! change (its listen address, database, public URL and the HTTP edge's limits) waits for a
//! restart and is reported as such.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use agent_os_core::alerting::{IncidentSource, Severity};
use agent_os_core::channel::Channel;
use agent_os_core::config::Config;
use agent_os_core::yaml::SourceError;

use super::Engine;
use super::notify::{TargetProblem, check_channel_targets};
use crate::EngineConfig;
use crate::engine::incidents::Alert;

/// The subject of the `config` incident a refused file opens.
const SUBJECT: &str = "config.yaml";

/// What asked for a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// The watch saw the file change.
    File,
    /// `SIGHUP`.
    Signal,
    /// `POST /api/v1/config/reload` (`agent-os config reload`).
    Api,
}

impl ReloadTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadTrigger::File => "file",
            ReloadTrigger::Signal => "signal",
            ReloadTrigger::Api => "api",
        }
    }
}

/// What one reload did.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigReload {
    pub at: i64,
    pub trigger: ReloadTrigger,
    /// True when the file was valid: its live sections are in force now (even if none changed).
    pub applied: bool,
    /// The sections whose new values were applied (`resources`, `notifications`, …).
    pub changed: Vec<String>,
    /// Settings the file changes that only a restart applies, compared with what the server
    /// started with (`bind`, `database_url`, …).
    pub restart_required: Vec<String>,
    /// Why the file was refused, each with its place; empty when applied.
    pub errors: Vec<SourceError>,
    /// What works but deserves a look (a channel host that does not resolve now).
    pub warnings: Vec<String>,
}

/// The config file's standing, for `GET /api/v1/config` and the dashboard.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigStatus {
    /// The file watched; none when the settings are fixed.
    pub file: Option<PathBuf>,
    /// When the settings in force were applied (the start, or the last reload that changed them).
    pub applied_at: i64,
    /// The last reload, applied or refused.
    pub last: Option<ConfigReload>,
}

/// The file's modification time and length, which the watch compares.
type Stamp = Option<(Option<SystemTime>, u64)>;

/// The engine's record of the config file.
pub(crate) struct ConfigState {
    /// Reloads take turns: the watch, a signal and the API may ask at once.
    turn: tokio::sync::Mutex<()>,
    /// The file as the server started with it: what restart-only settings are compared with.
    started: Option<Config>,
    status: std::sync::Mutex<ConfigStatus>,
    /// The text last applied or refused, so the watch acts on a change of content only (a
    /// `touch` or an editor's save of the same text does nothing).
    last_text: std::sync::Mutex<Option<String>>,
}

impl ConfigState {
    pub(crate) fn new(cfg: &EngineConfig, now: i64) -> Self {
        let text = cfg.config_file.as_deref().and_then(|p| std::fs::read_to_string(p).ok());
        ConfigState {
            turn: tokio::sync::Mutex::new(()),
            started: cfg.file_config.clone(),
            status: std::sync::Mutex::new(ConfigStatus { file: cfg.config_file.clone(), applied_at: now, last: None }),
            last_text: std::sync::Mutex::new(text),
        }
    }
}

/// Whether a `${VAR}` the environment lacks stops the file (the server needs every channel
/// working) or is only a warning (`agent-os config check` on a machine without the secrets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingVars {
    Error,
    Warn,
}

/// The config's channels with their `${VAR}`s resolved and each address checked against the
/// private-address rule (docs/config.md): a channel every delivery would refuse is an error at
/// its place in the file; a host that does not resolve now is a warning (each delivery
/// resolves it again). Channels whose variables are missing are left out when `missing` is
/// [`MissingVars::Warn`].
pub async fn resolve_channels(
    file: &str,
    config: &Config,
    lookup: &(dyn Fn(&str) -> Option<String> + Sync),
    missing: MissingVars,
) -> ResolvedChannels {
    let place = |name: &str| config.channel_places.get(name).copied().unwrap_or((1, 1));
    let error = |name: &str, message: String, hint: Option<String>| {
        let (line, column) = place(name);
        SourceError {
            file: file.to_string(),
            line,
            column,
            path: format!("notifications.channels.{name}"),
            message,
            hint,
        }
    };
    let mut channels = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for (name, url) in &config.channels {
        let expanded = agent_os_core::channel::expand(url, lookup);
        if let (Err(e), MissingVars::Warn) = (&expanded, missing) {
            let (line, _) = place(name);
            warnings.push(format!("{file}:{line}: notifications.channels.{name}: {e} (the server needs it)"));
            continue;
        }
        match expanded.and_then(|u| agent_os_core::channel::parse(name, &u)) {
            Ok(ch) => channels.push(ch),
            Err(e) => errors.push(error(name, e, None)),
        }
    }
    for (name, problem) in check_channel_targets(&channels, config.allow_private_targets).await {
        match problem {
            TargetProblem::Refused(why) => errors.push(error(
                &name,
                why,
                Some(
                    "allow private addresses only for a receiver on this machine or your own network; \
                     otherwise point the channel at a public address"
                        .into(),
                ),
            )),
            TargetProblem::Unresolved(why) => {
                let (line, _) = place(&name);
                warnings.push(format!(
                    "{file}:{line}: notifications.channels.{name}: {why}; each delivery resolves it again"
                ));
            }
        }
    }
    ResolvedChannels { channels, errors, warnings }
}

/// The channels of a config, resolved: usable only when `errors` is empty.
pub struct ResolvedChannels {
    pub channels: Vec<Channel>,
    pub errors: Vec<SourceError>,
    /// Said whether or not there are errors (a host that does not resolve now).
    pub warnings: Vec<String>,
}

impl ResolvedChannels {
    pub fn into_result(self) -> Result<(Vec<Channel>, Vec<String>), Vec<SourceError>> {
        if self.errors.is_empty() { Ok((self.channels, self.warnings)) } else { Err(self.errors) }
    }
}

/// The sections of `new` whose values differ from `old`, split into those a running server
/// applies and those that wait for a restart.
pub fn changed_sections(old: &Config, new: &Config) -> (Vec<String>, Vec<String>) {
    let mut live = Vec::new();
    let mut restart = Vec::new();
    let note = |differs: bool, name: &str, list: &mut Vec<String>| {
        if differs {
            list.push(name.to_string());
        }
    };
    note(
        (old.max_concurrent_runs, old.default_timeout, old.kill_grace, old.max_retry_delay, old.log_max_bytes)
            != (new.max_concurrent_runs, new.default_timeout, new.kill_grace, new.max_retry_delay, new.log_max_bytes),
        "runs",
        &mut live,
    );
    note(old.resources != new.resources, "resources", &mut live);
    note(old.budgets != new.budgets, "budgets", &mut live);
    note(old.prices != new.prices, "prices", &mut live);
    note(
        old.channels != new.channels
            || old.allow_private_targets != new.allow_private_targets
            || old.alerting.channels != new.alerting.channels
            || old.alerting.routing != new.alerting.routing
            || old.alerting.flapping != new.alerting.flapping,
        "notifications",
        &mut live,
    );
    note(old.alerting.maintenance != new.alerting.maintenance, "maintenance", &mut live);
    note(old.workers != new.workers, "workers", &mut live);
    note(old.shared_env_files != new.shared_env_files, "keys", &mut live);
    note(old.retention != new.retention, "retention", &mut live);
    note(old.bind != new.bind, "bind", &mut restart);
    note(old.public_url != new.public_url, "public_url", &mut restart);
    note(old.database_url != new.database_url, "database_url", &mut restart);
    note(old.durability != new.durability, "durability", &mut restart);
    note(
        (old.max_body_bytes, &old.trusted_proxies, old.request_timeout)
            != (new.max_body_bytes, &new.trusted_proxies, new.request_timeout),
        "api",
        &mut restart,
    );
    (live, restart)
}

/// A config file that could not be read, as the problem with its place (the file itself).
fn unreadable(file: &str, e: &std::io::Error, hint: &str) -> SourceError {
    SourceError {
        file: file.to_string(),
        line: 1,
        column: 1,
        path: String::new(),
        message: format!("cannot read the file: {e}"),
        hint: Some(hint.into()),
    }
}

/// Reads and validates a config file the way the server does, without one: for
/// `agent-os config check` (a `${VAR}` this environment lacks is only a warning).
pub async fn check_file(path: &Path) -> Result<(Config, Vec<String>), Vec<SourceError>> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![unreadable(&file, &e, "give the path of a config.yaml")])?;
    let config = Config::parse(&file, &text).map_err(|e| e.0)?;
    let lookup = |var: &str| std::env::var(var).ok();
    let (_, warnings) = resolve_channels(&file, &config, &lookup, MissingVars::Warn).await.into_result()?;
    Ok((config, warnings))
}

impl Engine {
    /// The config file's standing: where it is, when its settings were applied, the last reload.
    pub fn config_status(&self) -> ConfigStatus {
        self.config_state.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads `config.yaml` again and applies it if it is valid (see the module's docs).
    pub async fn reload_config(&self, trigger: ReloadTrigger) -> ConfigReload {
        let _turn = self.config_state.turn.lock().await;
        let now = self.now();
        let current = self.cfg();
        let mut outcome = ConfigReload {
            at: now,
            trigger,
            applied: false,
            changed: Vec::new(),
            restart_required: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let Some(path) = current.config_file.clone() else {
            outcome.errors.push(SourceError {
                file: String::new(),
                line: 1,
                column: 1,
                path: String::new(),
                message: "this server's settings do not come from a config file".into(),
                hint: None,
            });
            return outcome;
        };
        let file = path.display().to_string();
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => Some(t),
            Err(e) => {
                outcome.errors.push(unreadable(&file, &e, "put config.yaml back (an empty file means the defaults)"));
                None
            }
        };
        let parsed = match &text {
            Some(text) => Config::parse(&file, text).map_err(|e| e.0),
            None => Err(Vec::new()),
        };
        let resolved = match parsed {
            Ok(config) => {
                let vars = current.config_vars.clone();
                let lookup = move |var: &str| vars.get(var).cloned().or_else(|| std::env::var(var).ok());
                resolve_channels(&file, &config, &lookup, MissingVars::Error).await.into_result().map(|r| (config, r))
            }
            Err(errors) => Err(errors),
        };
        *self.config_state.last_text.lock().unwrap_or_else(|p| p.into_inner()) = text;
        match resolved {
            Ok((config, (channels, warnings))) => {
                outcome.applied = true;
                outcome.warnings = warnings;
                let old = current.file_config.clone().unwrap_or_default();
                let (live, _) = changed_sections(&old, &config);
                let started = self.config_state.started.clone().unwrap_or_default();
                outcome.restart_required = changed_sections(&started, &config).1;
                let mut next = (*current).clone();
                next.apply_file(&config, channels);
                *self.cfg.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
                outcome.changed = live;
                if !outcome.changed.is_empty() {
                    self.config_applied(&current, &outcome.changed).await;
                }
                if let Err(e) = self.resolve(IncidentSource::Config, SUBJECT, "config.yaml is valid again").await {
                    tracing::warn!(error = %e, "the config incident could not be resolved");
                }
            }
            Err(errors) => {
                outcome.errors = errors;
                let reason: Vec<String> = outcome.errors.iter().take(5).map(|e| e.to_string()).collect();
                let alert = Alert {
                    source: IncidentSource::Config,
                    subject: SUBJECT.into(),
                    project: None,
                    severity: Severity::Warning,
                    title: "config.yaml has errors; the settings in force are kept".into(),
                    reason: reason.join("\n"),
                    tags: Vec::new(),
                    worse: false,
                };
                if let Err(e) = self.raise(alert).await {
                    tracing::warn!(error = %e, "the config incident could not be recorded");
                }
            }
        }
        self.report_reload(&outcome);
        let mut status = self.config_state.status.lock().unwrap_or_else(|p| p.into_inner());
        if outcome.applied && !outcome.changed.is_empty() {
            status.applied_at = now;
        }
        status.last = Some(outcome.clone());
        outcome
    }

    fn report_reload(&self, outcome: &ConfigReload) {
        let trigger = outcome.trigger.as_str();
        if outcome.applied {
            tracing::info!(
                trigger,
                changed = %outcome.changed.join(", "),
                restart_required = %outcome.restart_required.join(", "),
                "config.yaml applied"
            );
            for w in &outcome.warnings {
                tracing::warn!(trigger, "{w}");
            }
        } else {
            for e in &outcome.errors {
                tracing::error!(trigger, "config.yaml refused, the settings in force are kept: {e}");
            }
        }
        self.touch();
    }

    /// What a new version of some sections needs besides being in force: run slots added or
    /// taken away, config budgets stored, records priced, and the loops that wait on these
    /// settings woken.
    async fn config_applied(&self, old: &EngineConfig, changed: &[String]) {
        let new = self.cfg();
        let (before, after) = (old.max_concurrent_runs.max(1), new.max_concurrent_runs.max(1));
        if after > before {
            self.slots.add_permits(after - before);
        } else if after < before {
            // Slots in use are given back by their runs: this waits for as many as are
            // removed and keeps them, so no new run starts until fewer than the new limit run.
            let slots = self.slots.clone();
            let fewer = u32::try_from(before - after).unwrap_or(u32::MAX);
            self.tasks.spawn(async move {
                if let Ok(permits) = slots.acquire_many_owned(fewer).await {
                    permits.forget();
                }
            });
        }
        let now = self.now();
        if changed.iter().any(|c| c == "budgets") {
            let budgets: Vec<_> = new.budgets.iter().map(|b| super::budgets::record_of(b, now)).collect();
            if let Err(e) = self.store.sync_config_budgets(&budgets).await {
                tracing::warn!(error = %e, "the budgets of config.yaml could not be stored; they are tried at the next reload");
            }
        }
        if changed.iter().any(|c| c == "prices") {
            match self.price_unpriced_costs().await {
                Ok(n) if n > 0 => tracing::info!(records = n, "cost records priced with the new prices"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "unpriced cost records could not be priced"),
            }
        }
        self.resources_changed.notify_waiters();
        self.alerts_changed.notify_one();
        self.deliveries_changed.notify_one();
        self.wake.notify_one();
    }

    /// Watches `config.yaml` and applies it when its content changes. A change is acted on once
    /// the file has stood still for one look, so an editor's half-written save is not read.
    pub(super) async fn config_loop(self: Arc<Self>) {
        let Some(path) = self.cfg().config_file.clone() else { return };
        let every = self.cfg().config_poll_every.max(std::time::Duration::from_millis(50));
        let closing = self.loops.closing().clone();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stamp = |p: &Path| -> Stamp { std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len())) };
        let mut seen = stamp(&path);
        let mut settling = false;
        loop {
            tokio::select! {
                _ = closing.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = stamp(&path);
            if now != seen {
                seen = now;
                settling = true;
                continue;
            }
            if !settling {
                continue;
            }
            settling = false;
            let text = tokio::fs::read_to_string(&path).await.ok();
            let same = *self.config_state.last_text.lock().unwrap_or_else(|p| p.into_inner()) == text;
            if !same {
                self.reload_config(ReloadTrigger::File).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse("config.yaml", text).expect("valid")
    }

    #[test]
    fn each_section_is_reported_once_as_live_or_as_waiting_for_a_restart() {
        let old = parse("");
        let cases = [
            ("runs: { max_concurrent: 2 }", "runs", true),
            ("runs: { log_max_bytes: 4096 }", "runs", true),
            ("resources: { gpu: { concurrency: 1 } }", "resources", true),
            ("budgets: [{ project: trading, period: monthly, amount: 5 }]", "budgets", true),
            ("prices: { acme: { input: 1, output: 2 } }", "prices", true),
            ("notifications: { channels: { ops: \"ntfy://ntfy.sh/ops\" } }", "notifications", true),
            ("notifications: { allow_private_targets: true }", "notifications", true),
            ("maintenance: [{ cron: \"0 3 * * *\", duration: 1h }]", "maintenance", true),
            ("workers: { grace: 20m }", "workers", true),
            ("keys: { shared: [/srv/.env] }", "keys", true),
            ("retention: { runs: 30d }", "retention", true),
            ("retention: { costs: 1095d }", "retention", true),
            ("bind: 127.0.0.1:7701", "bind", false),
            ("public_url: https://ops.example.com", "public_url", false),
            ("database_url: postgres://u@h/db", "database_url", false),
            ("durability: full", "durability", false),
            ("api: { request_timeout: 5s }", "api", false),
        ];
        for (text, section, live) in cases {
            let (l, r) = changed_sections(&old, &parse(text));
            let want = vec![section.to_string()];
            if live {
                assert_eq!((l, r), (want, Vec::new()), "{text}");
            } else {
                assert_eq!((l, r), (Vec::new(), want), "{text}");
            }
        }
        assert_eq!(changed_sections(&old, &parse("# only a comment\n")), (Vec::new(), Vec::new()));
    }
}
