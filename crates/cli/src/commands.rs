//! Client commands: each one calls the HTTP API and prints a table, or the API's JSON with
//! `--json`. Exit codes: 0 success, 1 failure (including a run that did not succeed under
//! `run --wait`), 2 bad usage.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use agent_os_core::alerting::DeliveryStatus;
use agent_os_core::manifest::{ManagedBy, ProbeKind};
use agent_os_core::resource::HolderKind;
use agent_os_core::run::{LogStream, RunStatus};
use agent_os_server::retention::{PruneView, RetentionView};
use agent_os_server::views::{CostView, LogChunkView, LogView, ProjectView, RunList, RunView, ScheduleView, TokenView};
use agent_os_server::{CostsAccepted, CreatedToken, Registered, SigningSecretView};

use crate::client::Client;
use crate::home;
use crate::table::{duration_ms, render, short_time};

#[derive(Subcommand)]
pub enum ProjectCmd {
    /// Register the project in a directory (it holds agent-os.yaml).
    Add {
        path: String,
        #[arg(long)]
        json: bool,
    },
    /// List registered projects.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one project: tasks, schedules, keys by name, latest probes.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Unregister a project (its runs and costs stay as history).
    Remove { name: String },
    /// Re-read a project's agent-os.yaml.
    Reload {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Show or rotate a hosted project's signing secret (admin token).
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Quiet the alerts of all a project's checks until a time (`2h`, `1d` or RFC 3339);
    /// states are still evaluated and shown, and a check still late or down pages when it ends.
    Snooze(SnoozeArgs),
    /// End a project's snooze now.
    Unsnooze {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

/// `agent-os checks`: the list, or an action on one check.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ChecksArgs {
    #[command(subcommand)]
    pub sub: Option<CheckCmd>,
    /// Only this project's checks.
    #[arg(long)]
    pub project: Option<String>,
    /// Only the checks carrying this tag (across projects), e.g. `nightly`.
    #[arg(long)]
    pub tag: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum CheckCmd {
    /// Quiet a check's alerts until a time (REF: its id or PROJECT/SLUG); its state is still
    /// evaluated and shown, and if it is still late or down when the snooze ends, it pages then.
    Snooze(SnoozeArgs),
    /// End a check's snooze now (REF: its id or PROJECT/SLUG).
    Unsnooze {
        #[arg(value_name = "REF")]
        check: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct SnoozeArgs {
    /// The check (id or PROJECT/SLUG), or the project's name.
    #[arg(value_name = "REF")]
    pub target: String,
    /// How long (`2h`, `1d`) or until when (RFC 3339); at most 90 days.
    pub until: String,
    /// Why; shown wherever the snooze is.
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum SecretCmd {
    /// Show the secret requests to the project's endpoint are signed with.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Make a new secret; the old one still signs requests during the grace period.
    Rotate {
        name: String,
        /// How long requests also carry a signature under the old secret (`0s` after a leak).
        #[arg(long, default_value = "24h")]
        grace: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct RunArgs {
    pub project: String,
    pub task: String,
    /// Input JSON object handed to the task on stdin.
    #[arg(long, value_name = "JSON")]
    pub input: Option<String>,
    /// Wait for the run to end; exit 0 only if it succeeded.
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub show: Option<RunsSub>,
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub task: Option<String>,
    /// queued, running, succeeded, failed, timed_out or cancelled.
    #[arg(long)]
    pub status: Option<String>,
    /// How many (newest first; default 50).
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Show runs older than this run id (the `next` of a previous page).
    #[arg(long)]
    pub before: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum RunsSub {
    /// Show one run with its attempts, input and outputs.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct LogsArgs {
    pub run_id: String,
    /// Keep printing output as it arrives, until the run ends.
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Args)]
pub struct CostsArgs {
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub run: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum CostCmd {
    /// Record one cost (e.g. spend a project cannot report itself).
    Add {
        #[arg(long)]
        project: String,
        #[arg(long)]
        service: String,
        /// Decimal amount, e.g. 0.0123. Without it, Agent OS prices --model's tokens.
        #[arg(long, required_unless_present_any = ["tokens_in", "tokens_out"])]
        amount: Option<String>,
        /// ISO 4217 code (default USD; tokens are priced in USD).
        #[arg(long)]
        currency: Option<String>,
        #[arg(long)]
        key_name: Option<String>,
        #[arg(long, required_unless_present = "amount")]
        model: Option<String>,
        /// Input tokens (cached ones included).
        #[arg(long)]
        tokens_in: Option<i64>,
        #[arg(long)]
        tokens_out: Option<i64>,
        /// Of --tokens-in, those read from the provider's cache.
        #[arg(long)]
        tokens_cached_in: Option<i64>,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// The token prices records without an amount are priced with: built-in and config.yaml's
    /// `prices:`.
    Prices {
        /// Only models whose name contains this.
        model: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Exact totals of the ledger, grouped (per currency; amounts in different currencies are
    /// never added).
    Report {
        /// project, service, key, model, day or month (UTC).
        #[arg(long, default_value = "project")]
        by: String,
        /// Start, inclusive: RFC 3339 or a date (2026-11-01).
        #[arg(long)]
        from: Option<String>,
        /// End, exclusive: RFC 3339 or a date.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Comma-separated values with a header line, for a spreadsheet.
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Args)]
pub struct NotifyArgs {
    #[arg(long, default_value = "", required_unless_present = "resolve")]
    pub title: String,
    #[arg(long, default_value = "")]
    pub body: String,
    /// info (default), warning or critical.
    #[arg(long)]
    pub severity: Option<String>,
    /// A tag (repeat for more).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Notifications with the same key within 10 minutes count once; a warning or critical
    /// one with a key also opens an incident, open until `--resolve`.
    #[arg(long)]
    pub dedup_key: Option<String>,
    /// Resolve the incident opened under --dedup-key (the channels are told).
    #[arg(long, requires = "dedup_key")]
    pub resolve: bool,
    /// The project it is about (a project token's own project is always used).
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ChannelCmd {
    /// The channels in config.yaml (secrets masked).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Send a test notification to one channel and show how its delivery went.
    Test {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum BudgetCmd {
    /// Budgets with this period's spend, forecast and any pause they caused.
    List {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Set the budget of a project (and service) for a period, replacing the one it had.
    Set {
        #[arg(long)]
        project: String,
        /// Only this service's spend (default: all of the project's).
        #[arg(long)]
        service: Option<String>,
        /// daily or monthly (UTC).
        #[arg(long, default_value = "monthly")]
        period: String,
        /// Decimal, e.g. 50.00.
        #[arg(long)]
        amount: String,
        #[arg(long, default_value = "USD")]
        currency: String,
        /// Percentages, e.g. 50,80,100 (the default).
        #[arg(long, value_delimiter = ',')]
        thresholds: Option<Vec<i64>>,
        /// alert (default) or pause: at 100 %, refuse the project's runs, slots and leases.
        #[arg(long, default_value = "alert")]
        on_exceed: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a budget by id.
    Remove { id: String },
    /// Lift a project's budget pause.
    Resume { project: String },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a token that acts only for one project (--project), another admin token
    /// (--admin), or a worker's (--worker, with each --project it may serve).
    Create {
        /// The project a project token acts for; with --worker, a project the worker may serve
        /// (repeat it for several; they need not be registered yet).
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        project: Vec<String>,
        /// An admin token: acts for everything and logs in to the dashboard.
        #[arg(long)]
        admin: bool,
        /// A worker's token (for `agent-os worker`): it may call only the worker operations,
        /// for the projects given with --project.
        #[arg(long, conflicts_with = "admin")]
        worker: bool,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List admin and project tokens (never their values).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id.
    Revoke { id: String },
}

pub enum ClientCommand<'a> {
    Project(&'a ProjectCmd),
    Run(&'a RunArgs),
    Runs(&'a RunsArgs),
    Logs(&'a LogsArgs),
    Cancel { run_id: &'a str, json: bool },
    Schedules { project: Option<&'a str>, json: bool, upcoming: Option<&'a str> },
    ScheduleAction(&'a crate::discover::SchedulesSub),
    Resources { json: bool },
    Workers { json: bool },
    Prune { dry_run: bool, json: bool },
    Retention { json: bool },
    Checks { project: Option<&'a str>, tag: Option<&'a str>, json: bool },
    CheckAction(&'a CheckCmd),
    Badges { project: Option<&'a str>, json: bool },
    Events { kind: Option<&'a str>, limit: i64, json: bool },
    Costs(&'a CostsArgs),
    Cost(&'a CostCmd),
    Token(&'a TokenCmd),
    Budget(&'a BudgetCmd),
    Notify(&'a NotifyArgs),
    Notifications { project: Option<&'a str>, json: bool },
    Channel(&'a ChannelCmd),
    Nothing,
}

/// The id of the check `reference` names: an id as given, or `PROJECT/SLUG` looked up.
async fn check_id(c: &Client, reference: &str) -> Result<String> {
    let Some((project, slug)) = reference.split_once('/') else { return Ok(reference.to_string()) };
    let list: Vec<agent_os_server::CheckView> =
        c.get(&format!("/api/v1/checks{}", query(&[("project", Some(project.to_string()))]))).await?;
    list.into_iter().find(|x| x.slug == slug).map(|x| x.id).with_context(|| {
        format!("project {project:?} has no check {slug:?}; `agent-os checks --project {project}` lists them")
    })
}

/// The server and token: flags/environment first, else the home's client config.
pub fn connect(home_flag: Option<&Path>, url: Option<String>, token: Option<String>) -> Result<Client> {
    let stored = home::resolve(home_flag).ok().and_then(|h| home::read_client_config(&h));
    let url = url
        .or_else(|| stored.as_ref().map(|c| c.url.clone()))
        .unwrap_or_else(|| format!("http://{}", agent_os_core::config::DEFAULT_BIND));
    let token = token.or_else(|| stored.and_then(|c| c.token)).context("no API token: pass --token or set AGENT_OS_TOKEN (or run on the machine whose home holds client.json, written by `agent-os serve`)")?;
    Ok(Client::new(url, token))
}

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// What a list command prints: the API's JSON with `--json`; else `empty` (what to do to have
/// something) when the list is empty, or a table of one row per item under `header`.
/// A prune pass as a table: what each kind kept, its cutoff, rows pruned and longest batch.
fn print_pass(pass: &PruneView) {
    let rows: Vec<Vec<String>> = pass
        .kinds
        .iter()
        .map(|k| {
            vec![
                k.kind.to_string(),
                k.keep.clone(),
                k.cutoff.as_deref().map_or("-".to_string(), |c| format!("{} UTC", short_time(c))),
                k.rows.to_string(),
                if pass.dry_run { "-".into() } else { format!("{}ms", k.longest_batch_ms) },
            ]
        })
        .collect();
    let pruned = if pass.dry_run { "WOULD PRUNE" } else { "PRUNED" };
    print!("{}", render(&["KIND", "KEPT FOR", "CUTOFF", pruned, "LONGEST BATCH"], &rows));
    if pass.dry_run {
        println!("dry run: {} records would be pruned; nothing was deleted", pass.rows);
    } else {
        println!(
            "{} records pruned; longest batch {}ms; {} pages given back to the disk",
            pass.rows, pass.longest_batch_ms, pass.pages_reclaimed
        );
    }
}

pub(crate) fn print_list<T: serde::Serialize>(
    json: bool,
    list: &[T],
    empty: &str,
    header: &[&str],
    row: impl FnMut(&T) -> Vec<String>,
) -> Result<()> {
    if json {
        return print_json(&list);
    }
    if list.is_empty() {
        println!("{empty}");
    } else {
        let rows: Vec<Vec<String>> = list.iter().map(row).collect();
        print!("{}", render(header, &rows));
    }
    Ok(())
}

use agent_os_core::url::encode_component as enc;

pub(crate) fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v)))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

pub async fn run(c: &Client, cmd: ClientCommand<'_>) -> Result<u8> {
    match cmd {
        ClientCommand::Project(p) => project(c, p).await,
        ClientCommand::Run(r) => start_run(c, r).await,
        ClientCommand::Runs(r) => runs(c, r).await,
        ClientCommand::Logs(l) => logs(c, l).await,
        ClientCommand::Cancel { run_id, json } => {
            let run: RunView = c.post(&format!("/api/v1/runs/{}/cancel", enc(run_id)), &json!({})).await?;
            if json {
                print_json(&run)?;
            } else if run.status == RunStatus::Running {
                println!("run {} is stopping (SIGTERM sent to its process group)", run.id);
            } else {
                println!("run {} is {}", run.id, run.status);
            }
            Ok(0)
        }
        ClientCommand::Schedules { project, json, upcoming: Some(period) } => {
            let span = agent_os_core::parse_duration(period).map_err(|e| anyhow::anyhow!("--upcoming: {e}"))?;
            let from = jiff::Timestamp::now();
            let to = from + jiff::SignedDuration::from_millis(span.as_millis() as i64);
            let q = query(&[
                ("project", project.map(str::to_string)),
                ("from", Some(from.to_string())),
                ("to", Some(to.to_string())),
            ]);
            let tl: agent_os_server::Timeline = c.get(&format!("/api/v1/schedules/timeline{q}")).await?;
            if json {
                print_json(&tl)?;
                return Ok(0);
            }
            let mut flagged: std::collections::HashMap<usize, Vec<String>> = Default::default();
            for c in &tl.collisions {
                for i in &c.fires {
                    let on = flagged.entry(*i).or_default();
                    if !on.contains(&c.service) {
                        on.push(c.service.clone());
                    }
                }
            }
            let rows: Vec<Vec<String>> = tl
                .fires
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let note = flagged.get(&i).map(|s| format!("collides: {}", s.join(", "))).unwrap_or_default();
                    vec![f.at.replace('T', " "), f.project.clone(), f.task.clone(), f.managed_by.to_string(), note]
                })
                .collect();
            if rows.is_empty() {
                println!("nothing fires in the next {period}");
            } else {
                print!("{}", render(&["AT (ZONE TIME)", "PROJECT", "TASK", "MANAGED BY", "NOTE"], &rows));
            }
            if tl.truncated {
                println!("(cut at 10000 fires)");
            }
            Ok(0)
        }
        ClientCommand::ScheduleAction(sub) => schedule_action(c, sub).await,
        ClientCommand::Prune { dry_run, json } => {
            let pass: PruneView = c.post("/api/v1/prune", &json!({ "dry_run": dry_run })).await?;
            if json {
                print_json(&pass)?;
            } else {
                print_pass(&pass);
            }
            Ok(0)
        }
        ClientCommand::Retention { json } => {
            let r: RetentionView = c.get("/api/v1/retention").await?;
            if json {
                return print_json(&r).map(|_| 0);
            }
            let rows: Vec<Vec<String>> = r.policy.iter().map(|k| vec![k.key.clone(), k.keep.clone()]).collect();
            print!("{}", render(&["KIND", "KEPT FOR"], &rows));
            println!("passes run {} after start, then every {}", r.first_after, r.every);
            match &r.last_pass {
                Some(pass) => {
                    println!("\nlast pass:");
                    print_pass(pass);
                }
                None => println!("no pass has run since the server started"),
            }
            Ok(0)
        }
        ClientCommand::Workers { json } => {
            let list: Vec<agent_os_server::workers::WorkerView> = c.get("/api/v1/workers").await?;
            print_list(
                json,
                &list,
                "no workers yet: make a token (agent-os token create --worker --project NAME) and start agent-os worker with it",
                &["WORKER", "HOST", "VERSION", "STATE", "PROJECTS", "RUNNING"],
                |w| {
                    let state = if w.connected {
                        "connected".to_string()
                    } else {
                        format!("last seen {} UTC", short_time(&w.last_contact))
                    };
                    vec![
                        w.name.clone(),
                        w.hostname.clone(),
                        w.version.clone(),
                        state,
                        w.projects.join(","),
                        format!("{}/{}", w.running.len(), w.capacity),
                    ]
                },
            )?;
            Ok(0)
        }
        ClientCommand::Resources { json } => {
            let list: Vec<agent_os_server::views::ResourceView> = c.get("/api/v1/resources").await?;
            print_list(
                json,
                &list,
                "no resources: declare them under `resources:` in config.yaml, e.g. openai: { concurrency: 1, rate: 60/min }",
                &["RESOURCE", "HELD/MAX", "RATE LIMIT", "HOLDERS", "WAITING (IN ORDER)"],
                |r| {
                    let limit = r.concurrency.map_or("-".to_string(), |c| format!("{}/{c}", r.holders.len()));
                    // The limit, then its token bucket: how many starts it allows at once
                    // (the burst) and how many of those are left now.
                    let rate = match (&r.rate, r.tokens, r.burst) {
                        (Some(rate), Some(t), Some(b)) => format!("{rate}, burst {b}: {t:.1} left now"),
                        _ => "-".into(),
                    };
                    // Others' holders come without a label (another project's, or an admin lease): named by kind.
                    let name = |label: &Option<String>, kind: &HolderKind| {
                        label.clone().unwrap_or_else(|| format!("(someone else's {kind})"))
                    };
                    let holders: Vec<String> = r.holders.iter().map(|h| name(&h.label, &h.kind)).collect();
                    let waiters: Vec<String> = r.waiters.iter().map(|w| name(&w.label, &w.kind)).collect();
                    vec![
                        r.name.clone(),
                        limit,
                        rate,
                        if holders.is_empty() { "-".into() } else { holders.join(", ") },
                        if waiters.is_empty() { "-".into() } else { waiters.join(", ") },
                    ]
                },
            )?;
            Ok(0)
        }
        ClientCommand::Schedules { project, json, upcoming: None } => {
            let list: Vec<ScheduleView> =
                c.get(&format!("/api/v1/schedules{}", query(&[("project", project.map(str::to_string))]))).await?;
            print_list(
                json,
                &list,
                "no schedules yet: declare them under `schedules:` in a project's agent-os.yaml",
                &["ID", "PROJECT", "TASK", "CRON", "TIMEZONE", "MANAGED BY", "NEXT (ZONE TIME)", "STATE", "LAST (UTC)"],
                |s| {
                    let next = match (s.paused, s.next.first()) {
                        (true, _) => "(paused)".into(),
                        (false, Some(t)) => t.replace('T', " "),
                        (false, None) => "-".into(),
                    };
                    let mut state = s.state.to_string();
                    if s.late && s.managed_by == ManagedBy::AgentOs {
                        state.push_str(", behind");
                    }
                    if s.late || s.down {
                        state = format!("{} !", state.to_uppercase());
                    }
                    let last = match (&s.last_run, &s.check) {
                        (Some(r), _) => {
                            format!("{} {}", r.status, r.slot.get(..16).unwrap_or(&r.slot).replace('T', " "))
                        }
                        (None, Some(c)) => c
                            .last_ping_at
                            .as_deref()
                            .map(|t| format!("ping {}", t.get(..16).unwrap_or(t).replace('T', " ")))
                            .unwrap_or_else(|| "no ping yet".into()),
                        (None, None) => "-".into(),
                    };
                    vec![
                        s.id.clone(),
                        s.project.clone(),
                        s.task.clone(),
                        s.cron.clone(),
                        s.timezone.clone(),
                        s.managed_by.to_string(),
                        next,
                        state.to_string(),
                        last,
                    ]
                },
            )?;
            Ok(0)
        }
        ClientCommand::Checks { project, tag, json } => {
            let list: Vec<agent_os_server::CheckView> = c
                .get(&format!(
                    "/api/v1/checks{}",
                    query(&[("project", project.map(str::to_string)), ("tag", tag.map(str::to_string))])
                ))
                .await?;
            let none = match tag {
                Some(t) => format!("no check carries the tag {t:?}; tags are declared in the manifest: tags: [{t}]"),
                None => "no checks yet: schedules a project keeps elsewhere (managed_by: cron, launchd, railway, …) get one each".into(),
            };
            print_list(
                json,
                &list,
                &none,
                &["PROJECT", "CHECK", "STATE", "EXPECTED", "TAGS", "LAST PING (UTC)", "PING URL"],
                |x| {
                    let expect = match (&x.cron, x.period_ms) {
                        (Some(cron), _) => format!("{cron} {}", x.timezone.as_deref().unwrap_or("")),
                        (None, Some(ms)) => {
                            format!("every {}", agent_os_core::format_duration(Duration::from_millis(ms as u64)))
                        }
                        _ => "-".into(),
                    };
                    // Quiet checks say so where their state is.
                    let mut state = x.state.as_str().to_uppercase();
                    if let Some(by) = x.held_by.as_deref().filter(|b| *b != "snooze") {
                        state.push_str(&format!(" held by {by}"));
                    }
                    if let Some(until) = &x.snoozed_until {
                        state.push_str(&format!(" snoozed until {}", short_time(until)));
                    }
                    vec![
                        x.project.clone(),
                        x.slug.clone(),
                        state,
                        expect,
                        if x.tags.is_empty() { "-".into() } else { x.tags.join(",") },
                        x.last_ping_at.as_deref().map(short_time).unwrap_or_else(|| "never".into()),
                        x.ping_url.clone(),
                    ]
                },
            )?;
            Ok(0)
        }
        ClientCommand::Badges { project, json } => {
            let list: Vec<agent_os_server::BadgeView> =
                c.get(&format!("/api/v1/badges{}", query(&[("project", project.map(str::to_string))]))).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(0);
            }
            if list.is_empty() {
                println!("no projects yet: register one, and its badge is listed here");
                return Ok(0);
            }
            // Markdown to paste, one badge a paragraph; the status says what it shows now.
            for b in &list {
                let checks = if b.total == 1 { "check" } else { "checks" };
                println!(
                    "{} {}: {} ({} {checks}, {} late, {} down)",
                    b.kind, b.name, b.status, b.total, b.late, b.down
                );
                println!("{}", b.markdown);
                println!("JSON: {}", b.json_url);
                println!();
            }
            Ok(0)
        }
        ClientCommand::CheckAction(cmd) => {
            let (target, json) = match cmd {
                CheckCmd::Snooze(a) => (&a.target, a.json),
                CheckCmd::Unsnooze { check, json } => (check, *json),
            };
            let id = check_id(c, target).await?;
            let path = format!("/api/v1/checks/{}/snooze", enc(&id));
            let x: agent_os_server::CheckView = match cmd {
                CheckCmd::Snooze(a) => c.post(&path, &json!({"until": a.until, "reason": a.reason})).await?,
                CheckCmd::Unsnooze { .. } => c.call(Method::DELETE, &path, None).await?,
            };
            if json {
                print_json(&x)?;
            } else {
                match (&x.snoozed_until, x.project_snoozed) {
                    (Some(until), false) => println!(
                        "{}/{} snoozed until {} UTC{}",
                        x.project,
                        x.slug,
                        short_time(until),
                        x.snooze_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                    ),
                    (Some(until), true) => println!(
                        "{}/{}: its own snooze is over, but project {} is snoozed until {} UTC",
                        x.project,
                        x.slug,
                        x.project,
                        short_time(until)
                    ),
                    (None, _) => println!("{}/{} is no longer snoozed; it alerts again", x.project, x.slug),
                }
            }
            Ok(0)
        }
        ClientCommand::Events { kind, limit, json } => {
            let list: Vec<agent_os_server::EventView> = c
                .get(&format!(
                    "/api/v1/events{}",
                    query(&[("type", kind.map(str::to_string)), ("limit", Some(limit.to_string()))])
                ))
                .await?;
            print_list(json, &list, "no events yet", &["AT (UTC)", "TYPE", "PROJECT", "SUBJECT", "REASON"], |e| {
                vec![
                    short_time(&e.at),
                    e.kind.clone(),
                    e.project.clone().unwrap_or_default(),
                    e.subject.clone().unwrap_or_default(),
                    e.data.get("reason").and_then(|r| r.as_str()).unwrap_or("").to_string(),
                ]
            })?;
            Ok(0)
        }
        ClientCommand::Costs(a) => {
            let list: Vec<CostView> = c
                .get(&format!(
                    "/api/v1/costs{}",
                    query(&[
                        ("project", a.project.clone()),
                        ("run", a.run.clone()),
                        ("limit", Some(a.limit.to_string()))
                    ])
                ))
                .await?;
            print_list(
                a.json,
                &list,
                "no costs reported yet",
                &["AT (UTC)", "PROJECT", "SERVICE", "KEY", "AMOUNT", "MODEL", "TOKENS IN/OUT", "RUN", "SOURCE"],
                |x| {
                    vec![
                        short_time(&x.at),
                        x.project.clone(),
                        x.service.clone(),
                        x.key_name.clone().unwrap_or_default(),
                        match &x.amount {
                            Some(a) => format!("{a} {}", x.currency),
                            None => "unpriced".into(),
                        },
                        x.model.clone().unwrap_or_default(),
                        match (x.tokens_in, x.tokens_out) {
                            (None, None) => "-".into(),
                            (i, o) => format!("{}/{}", i.unwrap_or(0), o.unwrap_or(0)),
                        },
                        x.run_id.clone().unwrap_or_else(|| "-".into()),
                        x.source.to_string(),
                    ]
                },
            )?;
            Ok(0)
        }
        ClientCommand::Cost(CostCmd::Add {
            project,
            service,
            amount,
            currency,
            key_name,
            model,
            tokens_in,
            tokens_out,
            tokens_cached_in,
            idempotency_key,
        }) => {
            let mut body = json!({"project": project, "service": service});
            for (field, value) in [
                ("amount", amount.clone().map(Value::from)),
                ("currency", currency.clone().map(Value::from)),
                ("key_name", key_name.clone().map(Value::from)),
                ("model", model.clone().map(Value::from)),
                ("tokens_in", tokens_in.map(Value::from)),
                ("tokens_out", tokens_out.map(Value::from)),
                ("tokens_cached_in", tokens_cached_in.map(Value::from)),
                ("idempotency_key", idempotency_key.clone().map(Value::from)),
            ] {
                if let Some(v) = value {
                    body[field] = v;
                }
            }
            let r: CostsAccepted = c.post("/api/v1/costs", &body).await?;
            if r.accepted == 0 {
                println!("already recorded (same idempotency key)");
            } else if r.unpriced > 0 {
                println!(
                    "recorded as unpriced: {} has no price; add it under prices: in config.yaml (agent-os cost prices lists them)",
                    model.as_deref().unwrap_or("the model")
                );
            } else {
                println!("recorded");
            }
            Ok(0)
        }
        ClientCommand::Cost(CostCmd::Prices { model, json }) => {
            let list: Vec<agent_os_server::PriceView> =
                c.get(&format!("/api/v1/prices{}", query(&[("model", model.clone())]))).await?;
            print_list(
                *json,
                &list,
                "no price matches; add one under prices: in config.yaml",
                &["MODEL", "INPUT", "CACHED INPUT", "OUTPUT", "SOURCE"],
                |p| vec![p.model.clone(), p.input.clone(), p.cached_input.clone(), p.output.clone(), p.source.clone()],
            )?;
            if !*json && !list.is_empty() {
                println!("USD per million tokens");
            }
            Ok(0)
        }
        ClientCommand::Cost(CostCmd::Report { by, from, to, project, service, json, csv }) => {
            let q = query(&[
                ("by", Some(by.clone())),
                ("from", from.clone()),
                ("to", to.clone()),
                ("project", project.clone()),
                ("service", service.clone()),
            ]);
            let r: agent_os_server::CostSummary = c.get(&format!("/api/v1/costs/summary{q}")).await?;
            if *json {
                print_json(&r)?;
            } else if *csv {
                print!("{}", report_csv(by, &r));
            } else if r.groups.is_empty() {
                println!("no costs recorded in that period");
            } else {
                let mut rows: Vec<Vec<String>> = r
                    .groups
                    .iter()
                    .map(|g| {
                        let name = if g.group.is_empty() { "(none)".to_string() } else { g.group.clone() };
                        vec![
                            name,
                            g.amount.clone(),
                            g.currency.clone(),
                            g.records.to_string(),
                            tokens(g),
                            g.unpriced.to_string(),
                        ]
                    })
                    .collect();
                for t in &r.totals {
                    rows.push(vec![
                        "TOTAL".into(),
                        t.amount.clone(),
                        t.currency.clone(),
                        t.records.to_string(),
                        tokens(t),
                        t.unpriced.to_string(),
                    ]);
                }
                print!(
                    "{}",
                    render(&[&by.to_uppercase(), "AMOUNT", "CURRENCY", "RECORDS", "TOKENS IN/OUT", "UNPRICED"], &rows)
                );
                let unpriced: i64 = r.totals.iter().map(|t| t.unpriced).sum();
                if unpriced > 0 {
                    println!(
                        "{unpriced} records are of models without a price: their tokens are counted, their amounts are not; add the models under prices: in config.yaml"
                    );
                }
            }
            Ok(0)
        }
        ClientCommand::Budget(b) => budget(c, b).await,
        ClientCommand::Notify(n) => {
            let body = json!({"project": n.project, "title": n.title, "body": n.body, "severity": n.severity, "tags": n.tags, "dedup_key": n.dedup_key, "resolve": n.resolve});
            let v: agent_os_server::NotificationView = c.post("/api/v1/notifications", &body).await?;
            if n.json {
                print_json(&v)?;
            } else if let Some(why) = &v.suppressed {
                println!("stored as {}, not sent: {why}", v.id);
            } else if v.deduplicated {
                println!("already sent as {} (same dedup key within 10 minutes)", v.id);
            } else if v.deliveries.is_empty() {
                println!("stored as {}, but config.yaml declares no channels (notifications.channels)", v.id);
            } else {
                let to: Vec<&str> = v.deliveries.iter().map(|d| d.channel.as_str()).collect();
                println!("notification {} queued for {}", v.id, to.join(", "));
            }
            Ok(0)
        }
        ClientCommand::Notifications { project, json } => {
            let list: Vec<agent_os_server::NotificationView> =
                c.get(&format!("/api/v1/notifications{}", query(&[("project", project.map(str::to_string))]))).await?;
            print_list(
                json,
                &list,
                "no notifications yet: `agent-os notify --title …` or POST /api/v1/notifications",
                &["AT (UTC)", "PROJECT", "SEVERITY", "TITLE", "DELIVERIES"],
                |n| {
                    let deliveries: Vec<String> =
                        n.deliveries.iter().map(|d| format!("{} {} ({}×)", d.channel, d.status, d.attempts)).collect();
                    vec![
                        short_time(&n.created_at),
                        n.project.clone().unwrap_or_else(|| "-".into()),
                        n.severity.to_string(),
                        n.title.clone(),
                        if deliveries.is_empty() { "-".into() } else { deliveries.join(", ") },
                    ]
                },
            )?;
            Ok(0)
        }
        ClientCommand::Channel(ChannelCmd::List { json }) => {
            let list: Vec<agent_os_server::ChannelView> = c.get("/api/v1/channels").await?;
            print_list(
                *json,
                &list,
                "no channels: add them under notifications.channels in config.yaml",
                &["NAME", "KIND", "ENDPOINT"],
                |ch| vec![ch.name.clone(), ch.kind.clone(), ch.endpoint.clone()],
            )?;
            Ok(0)
        }
        ClientCommand::Channel(ChannelCmd::Test { name, json }) => {
            let v: agent_os_server::NotificationView =
                c.post(&format!("/api/v1/channels/{}/test", enc(name)), &json!({})).await?;
            // Wait (up to 5 s) for the first attempt's outcome, then say how it went.
            let mut last = v.deliveries.first().cloned();
            for _ in 0..50 {
                let list: Vec<agent_os_server::NotificationView> = c.get("/api/v1/notifications?limit=20").await?;
                last = list.into_iter().find(|n| n.id == v.id).and_then(|n| n.deliveries.into_iter().next());
                if last.as_ref().is_some_and(|d| d.status != DeliveryStatus::Pending || d.last_error.is_some()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let Some(d) = last else { bail!("the test notification has no delivery") };
            if *json {
                print_json(&d)?;
            }
            match d.status {
                DeliveryStatus::Delivered => {
                    if !json {
                        println!("delivered to {name}");
                    }
                    Ok(0)
                }
                status => {
                    eprintln!(
                        "{name}: {status}{}",
                        d.last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                    );
                    Ok(1)
                }
            }
        }
        ClientCommand::Token(t) => token(c, t).await,
        ClientCommand::Nothing => Ok(0),
    }
}

async fn project(c: &Client, cmd: &ProjectCmd) -> Result<u8> {
    match cmd {
        ProjectCmd::Add { path, json } => {
            let abs = std::fs::canonicalize(path).with_context(|| format!("{path}: no such directory"))?;
            let r: Registered = c.post("/api/v1/projects", &json!({"path": abs.display().to_string()})).await?;
            if *json {
                print_json(&r)?;
            } else {
                println!(
                    "registered {} ({} tasks, {} schedules) from {}",
                    r.project.name,
                    r.project.tasks.len(),
                    r.project.schedules.len(),
                    abs.display()
                );
                if let Some(secret) = r.signing_secret {
                    println!("signing secret for its HTTP plugin: {secret}");
                    println!(
                        "  configure it in the project so it accepts Agent OS's requests (`agent-os project secret show {}` shows it again)",
                        r.project.name
                    );
                }
            }
        }
        ProjectCmd::List { json } => {
            let list: Vec<ProjectView> = c.get("/api/v1/projects").await?;
            print_list(
                *json,
                &list,
                "no projects yet: add one with `agent-os project add PATH` (the directory holds agent-os.yaml)",
                &["NAME", "TRANSPORT", "TASKS", "SCHEDULES", "STATUS", "DESCRIPTION"],
                |p| {
                    let status = p
                        .probes
                        .iter()
                        .find(|x| x.kind == ProbeKind::Status)
                        .map(|x| match (x.ok, x.status) {
                            (true, Some(status)) => status.to_string(),
                            (true, None) => String::new(),
                            (false, _) => "probe failed".into(),
                        })
                        .unwrap_or_else(|| "-".into());
                    vec![
                        p.name.clone(),
                        p.transport.to_string(),
                        p.tasks.len().to_string(),
                        p.schedules.len().to_string(),
                        status.to_string(),
                        p.description.clone(),
                    ]
                },
            )?;
        }
        ProjectCmd::Show { name, json } => {
            let p: ProjectView = c.get(&format!("/api/v1/projects/{}", enc(name))).await?;
            if *json {
                print_json(&p)?;
            } else {
                print_project(&p);
                // The key audit of the project, run by the server on its directory.
                match c.get::<agent_os_server::AuditView>(&format!("/api/v1/projects/{}/audit", enc(name))).await {
                    Ok(a) if !a.audited => println!("  key audit: nothing to read (the project runs elsewhere)"),
                    Ok(a) if a.errors + a.warnings == 0 => println!("  key audit: clean"),
                    Ok(a) => {
                        println!("  key audit: {} errors, {} warnings", a.errors, a.warnings);
                        for f in &a.findings {
                            let place = match (f["file"].as_str(), f["line"].as_u64()) {
                                (Some(file), Some(line)) => format!("{file}:{line}: "),
                                (Some(file), None) => format!("{file}: "),
                                _ => String::new(),
                            };
                            println!(
                                "    {} {place}{}",
                                f["severity"].as_str().unwrap_or(""),
                                f["message"].as_str().unwrap_or("")
                            );
                        }
                        println!("    (agent-os keys audit {} shows the fixes)", p.root.as_deref().unwrap_or(name));
                    }
                    Err(e) => println!("  key audit: unavailable ({e:#})"),
                }
            }
        }
        ProjectCmd::Remove { name } => {
            c.delete(&format!("/api/v1/projects/{}", enc(name))).await?;
            println!("removed {name} (its runs and costs stay as history)");
        }
        ProjectCmd::Reload { name, json } => {
            let p: ProjectView = c.post(&format!("/api/v1/projects/{}/reload", enc(name)), &json!({})).await?;
            if *json {
                print_json(&p)?;
            } else {
                println!("reloaded {} ({} tasks, {} schedules)", p.name, p.tasks.len(), p.schedules.len());
            }
        }
        ProjectCmd::Snooze(a) => {
            let p: ProjectView = c
                .post(
                    &format!("/api/v1/projects/{}/snooze", enc(&a.target)),
                    &json!({"until": a.until, "reason": a.reason}),
                )
                .await?;
            if a.json {
                print_json(&p)?;
            } else {
                println!(
                    "{} snoozed until {} UTC: its checks open no incident until then",
                    p.name,
                    p.snoozed_until.as_deref().map(short_time).unwrap_or_default()
                );
            }
        }
        ProjectCmd::Unsnooze { name, json } => {
            let p: ProjectView =
                c.call(Method::DELETE, &format!("/api/v1/projects/{}/snooze", enc(name)), None).await?;
            if *json {
                print_json(&p)?;
            } else {
                println!("{} is no longer snoozed; its checks alert again", p.name);
            }
        }
        ProjectCmd::Secret(SecretCmd::Show { name, json }) => {
            let s: SigningSecretView = c.get(&format!("/api/v1/projects/{}/signing-secret", enc(name))).await?;
            print_secret(&s, *json, false)?;
        }
        ProjectCmd::Secret(SecretCmd::Rotate { name, grace, json }) => {
            let s: SigningSecretView = c
                .post(&format!("/api/v1/projects/{}/signing-secret/rotate", enc(name)), &json!({"grace": grace}))
                .await?;
            print_secret(&s, *json, true)?;
        }
    }
    Ok(0)
}

fn print_secret(s: &SigningSecretView, json: bool, rotated: bool) -> Result<()> {
    if json {
        return print_json(s);
    }
    println!("{}", s.signing_secret);
    let what = if rotated { "new signing secret" } else { "signing secret" };
    match &s.previous_valid_until {
        Some(until) => eprintln!(
            "{} of {}; requests also carry a signature under the previous secret until {until}: configure the new one in the project before then",
            what, s.project
        ),
        None => eprintln!("{what} of {}: the project verifies Agent OS's requests with it", s.project),
    }
    Ok(())
}

fn print_project(p: &ProjectView) {
    println!("{} — {}", p.name, p.description);
    match (&p.root, &p.plugin_url) {
        (Some(root), _) => println!("  directory: {root}"),
        (_, Some(url)) => println!("  plugin:    {url}"),
        _ if p.transport == agent_os_core::manifest::TransportKind::Worker => {
            println!("  served by: workers (agent-os workers lists them)")
        }
        _ => {}
    }
    if let Some(env) = &p.env_file {
        println!("  env file:  {env} (the project's own; Agent OS never reads its values)");
    }
    if !p.keys.is_empty() {
        println!("  keys:");
        for k in &p.keys {
            println!("    {:<24} {} {}", k.variable, k.service, k.key_name.as_deref().unwrap_or(""));
        }
    }
    println!("  tasks:");
    for t in &p.tasks {
        let timeout = t
            .timeout_ms
            .map(|ms| agent_os_core::format_duration(Duration::from_millis(ms)))
            .unwrap_or_else(|| "default".into());
        println!(
            "    {:<20} timeout {timeout}, retries {}  {}",
            t.name,
            t.retries,
            t.run.as_deref().unwrap_or("(runs on the plugin)")
        );
    }
    if !p.schedules.is_empty() {
        println!("  schedules:");
        for s in &p.schedules {
            println!("    {:<20} {:<14} {:<20} managed by {}", s.task, s.cron, s.timezone, s.managed_by);
        }
    }
    for probe in &p.probes {
        let what = if probe.ok {
            let status = probe.status.unwrap_or(agent_os_core::manifest::ProbeStatus::Ok);
            format!("{status} {}", probe.message.as_deref().unwrap_or(""))
        } else {
            format!("failed: {}", probe.error.as_deref().unwrap_or(""))
        };
        println!("  {} probe at {}: {}", probe.kind, short_time(&probe.at), what.trim());
    }
}

async fn start_run(c: &Client, a: &RunArgs) -> Result<u8> {
    let input: Value = match &a.input {
        None => json!({}),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                eprintln!("error: --input must be a JSON object, e.g. --input '{{\"symbol\": \"BTC\"}}'");
                return Ok(2);
            }
            Err(e) => {
                eprintln!("error: --input is not valid JSON: {e}");
                return Ok(2);
            }
        },
    };
    let run: RunView = c
        .post("/api/v1/runs", &json!({"project": a.project, "task": a.task, "input": input, "trigger": "cli"}))
        .await?;
    if !a.wait {
        if a.json {
            print_json(&run)?;
        } else {
            println!("{}", run.id);
        }
        return Ok(0);
    }
    let mut run = run;
    loop {
        run = c
            .call_with_timeout(
                reqwest::Method::GET,
                &format!("/api/v1/runs/{}/wait?timeout=60s", run.id),
                None,
                Duration::from_secs(90),
            )
            .await?;
        if run.status.is_terminal() {
            break;
        }
    }
    if a.json {
        print_json(&run)?;
    } else {
        print_run(&run);
    }
    Ok(if run.status == RunStatus::Succeeded { 0 } else { 1 })
}

fn print_run(r: &RunView) {
    println!("run {}  {}.{}  {}", r.id, r.project, r.task, r.status);
    println!(
        "  attempts: {} of {}   duration: {}   exit code: {}",
        r.attempt,
        r.max_attempts,
        duration_ms(r.duration_ms),
        r.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into())
    );
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
    println!(
        "  queued: {}   started: {}   finished: {}",
        short_time(&r.queued_at),
        r.started_at.as_deref().map(short_time).unwrap_or_else(|| "-".into()),
        r.finished_at.as_deref().map(short_time).unwrap_or_else(|| "-".into())
    );
    println!("  input: {}", r.input);
    if !r.outputs.is_null() {
        println!("  outputs: {}", r.outputs);
    }
    if r.log_dropped_bytes > 0 {
        println!("  log: {} bytes kept, {} oldest bytes dropped", r.log_bytes, r.log_dropped_bytes);
    }
    for a in &r.attempts {
        println!(
            "  attempt {}: {} {}{}",
            a.attempt,
            a.status,
            a.error.as_deref().unwrap_or(""),
            a.exit_code.map(|c| format!(" (exit {c})")).unwrap_or_default()
        );
    }
}

async fn runs(c: &Client, a: &RunsArgs) -> Result<u8> {
    if let Some(RunsSub::Show { id, json }) = &a.show {
        let run: RunView = c.get(&format!("/api/v1/runs/{}", enc(id))).await?;
        if *json {
            print_json(&run)?
        } else {
            print_run(&run)
        }
        return Ok(0);
    }
    let q = query(&[
        ("project", a.project.clone()),
        ("task", a.task.clone()),
        ("status", a.status.clone()),
        ("before", a.before.clone()),
        ("limit", Some(a.limit.to_string())),
    ]);
    let list: RunList = c.get(&format!("/api/v1/runs{q}")).await?;
    if a.json {
        print_json(&list)?;
        return Ok(0);
    }
    if list.runs.is_empty() {
        println!("no runs yet: start one with `agent-os run PROJECT TASK`");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .runs
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.project.clone(),
                r.task.clone(),
                r.status.to_string(),
                format!("{}/{}", r.attempt, r.max_attempts),
                short_time(&r.queued_at),
                duration_ms(r.duration_ms),
            ]
        })
        .collect();
    print!("{}", render(&["ID", "PROJECT", "TASK", "STATUS", "ATTEMPT", "QUEUED (UTC)", "DURATION"], &rows));
    if let Some(next) = list.next {
        println!("(older runs: --before {next})");
    }
    Ok(0)
}

fn emit(chunk: &LogChunkView) {
    use std::io::Write;
    match chunk.stream {
        LogStream::Stdout => {
            let mut out = std::io::stdout();
            let _ = out.write_all(chunk.data.as_bytes());
            let _ = out.flush();
        }
        LogStream::System => {
            for line in chunk.data.lines() {
                eprintln!("[agent-os] {line}");
            }
        }
        LogStream::Stderr => {
            let mut err = std::io::stderr();
            let _ = err.write_all(chunk.data.as_bytes());
        }
    }
}

async fn logs(c: &Client, a: &LogsArgs) -> Result<u8> {
    let id = enc(&a.run_id);
    if !a.follow {
        let mut after = 0;
        let mut first = true;
        loop {
            let page: LogView = c.get(&format!("/api/v1/runs/{id}/logs?after={after}&limit=1000")).await?;
            if first && page.dropped_bytes > 0 {
                eprintln!(
                    "[agent-os] … {} earlier bytes were dropped to keep the log under its cap",
                    page.dropped_bytes
                );
            }
            first = false;
            if page.chunks.is_empty() {
                break;
            }
            page.chunks.iter().for_each(emit);
            after = page.next_after;
        }
        return Ok(0);
    }
    let mut resp = c.stream(&format!("/api/v1/runs/{id}/logs")).await?;
    let mut buf = String::new();
    while let Some(bytes) = resp.chunk().await? {
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let mut kind = "message";
            let mut data = String::new();
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    kind = if v.trim() == "end" {
                        "end"
                    } else if v.trim() == "log" {
                        "log"
                    } else {
                        "other"
                    };
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            match kind {
                "log" => {
                    if let Ok(chunk) = serde_json::from_str::<LogChunkView>(&data) {
                        emit(&chunk);
                    }
                }
                "end" => {
                    if let Ok(run) = serde_json::from_str::<RunView>(&data) {
                        eprintln!("[agent-os] run {} {}", run.id, run.status);
                    }
                    return Ok(0);
                }
                _ => {}
            }
        }
    }
    bail!("the server closed the log stream before the run ended")
}

async fn token(c: &Client, cmd: &TokenCmd) -> Result<u8> {
    match cmd {
        TokenCmd::Create { project, admin, worker, name, json } => {
            let body = match (*admin, *worker, project.as_slice()) {
                (true, _, _) => json!({"name": name, "kind": "admin"}),
                (_, true, projects) => json!({"name": name, "kind": "worker", "projects": projects}),
                (_, _, [one]) => json!({"name": name, "kind": "project", "project": one}),
                _ => bail!("a project token acts for one project: give --project once (several are for --worker)"),
            };
            let t: CreatedToken = c.post("/api/v1/tokens", &body).await?;
            if *json {
                print_json(&t)?;
            } else if !t.projects.is_empty() {
                println!(
                    "worker token for {} (shown once; Agent OS keeps only its hash):\n{}",
                    t.projects.join(", "),
                    t.token
                );
                eprintln!(
                    "start the worker with it in AGENT_OS_WORKER_TOKEN: agent-os worker --server {} --project DIR",
                    c.base
                );
            } else if let Some(p) = &t.project {
                println!("token for project {p} (shown once; Agent OS keeps only its hash):\n{}", t.token);
            } else {
                println!("admin token (shown once; Agent OS keeps only its hash):\n{}", t.token);
            }
        }
        TokenCmd::List { json } => {
            let list: Vec<TokenView> = c.get("/api/v1/tokens").await?;
            if *json {
                print_json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.kind.to_string(),
                            match (&t.project, t.projects.is_empty()) {
                                (_, false) => t.projects.join(","),
                                (Some(p), true) => p.clone(),
                                (None, true) => "-".into(),
                            },
                            t.name.clone(),
                            short_time(&t.created_at),
                            t.revoked_at.as_deref().map(short_time).unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print!("{}", render(&["ID", "KIND", "PROJECT", "NAME", "CREATED (UTC)", "REVOKED"], &rows));
            }
        }
        TokenCmd::Revoke { id } => {
            c.delete(&format!("/api/v1/tokens/{}", enc(id))).await?;
            println!("revoked {id}");
        }
    }
    Ok(0)
}

async fn schedule_action(c: &Client, sub: &crate::discover::SchedulesSub) -> Result<u8> {
    use crate::discover::SchedulesSub as S;
    let (target, verb) = match sub {
        S::Pause(t) => (t, "pause"),
        S::Resume(t) => (t, "resume"),
        S::Run(t) => (t, "run"),
        S::Forget(f) => {
            match &f.project {
                Some(project) => {
                    c.delete(&format!("/api/v1/projects/{}/schedules/{}", enc(project), enc(&f.schedule))).await?
                }
                None => c.delete(&format!("/api/v1/schedules/{}", enc(&f.schedule))).await?,
            }
            println!("schedule {} is no longer watched (its check is gone)", f.schedule);
            return Ok(0);
        }
        S::Discover(_) => return Ok(0),
    };
    let path = format!("/api/v1/schedules/{}/{verb}", enc(&target.schedule));
    if verb == "run" {
        let run: RunView = c.post(&path, &json!({})).await?;
        if target.json {
            print_json(&run)?;
        } else {
            println!("run {} of {}.{} is {} (agent-os logs {} -f)", run.id, run.project, run.task, run.status, run.id);
        }
        return Ok(0);
    }
    let s: ScheduleView = c.post(&path, &json!({})).await?;
    if target.json {
        print_json(&s)?;
    } else if s.paused {
        println!("schedule {} ({}.{} {}) is paused", s.id, s.project, s.task, s.cron);
    } else {
        let next = s.next.first().map(|t| format!("; next fire {t}")).unwrap_or_default();
        println!("schedule {} ({}.{} {}) is active{next}", s.id, s.project, s.task, s.cron);
    }
    Ok(0)
}

fn tokens(g: &agent_os_server::CostGroupView) -> String {
    if g.tokens_in == 0 && g.tokens_out == 0 { "-".into() } else { format!("{}/{}", g.tokens_in, g.tokens_out) }
}

/// `cost report --csv`: a header and one line per group, through the dashboard export's writer
/// (a group a spreadsheet would run as a formula is disarmed).
fn report_csv(by: &str, r: &agent_os_server::CostSummary) -> String {
    let mut out =
        agent_os_core::csv::record(&[by, "currency", "amount", "records", "tokens_in", "tokens_out", "unpriced"]);
    out.push('\n');
    for g in &r.groups {
        let (records, tokens_in, tokens_out, unpriced) =
            (g.records.to_string(), g.tokens_in.to_string(), g.tokens_out.to_string(), g.unpriced.to_string());
        out.push_str(&agent_os_core::csv::record(&[
            &g.group,
            &g.currency,
            &g.amount,
            &records,
            &tokens_in,
            &tokens_out,
            &unpriced,
        ]));
        out.push('\n');
    }
    out
}

async fn budget(c: &Client, cmd: &BudgetCmd) -> Result<u8> {
    match cmd {
        BudgetCmd::List { project, json } => {
            let list: Vec<agent_os_server::BudgetView> =
                c.get(&format!("/api/v1/budgets{}", query(&[("project", project.clone())]))).await?;
            print_list(
                *json,
                &list,
                "no budgets: `agent-os budget set --project P --amount 50` or `budgets:` in config.yaml",
                &["ID", "PROJECT", "SERVICE", "PERIOD", "SPENT / LIMIT", "USED", "FORECAST", "ON EXCEED", "STATE"],
                |b| {
                    vec![
                        b.id.clone(),
                        b.project.clone(),
                        if b.service.is_empty() { "(all)".into() } else { b.service.clone() },
                        b.period.to_string(),
                        format!("{} / {} {}", b.spent, b.limit, b.currency),
                        format!("{:.1}%", b.percent),
                        format!("{} {}", b.forecast, b.currency),
                        b.on_exceed.to_string(),
                        b.paused.clone().map(|p| format!("PAUSED: {p}")).unwrap_or_else(|| "-".into()),
                    ]
                },
            )?;
            Ok(0)
        }
        BudgetCmd::Set { project, service, period, amount, currency, thresholds, on_exceed, json } => {
            let body = json!({"project": project, "service": service, "period": period, "amount": amount, "currency": currency, "thresholds": thresholds, "on_exceed": on_exceed});
            let b: agent_os_server::BudgetView = c.call(Method::PUT, "/api/v1/budgets", Some(&body)).await?;
            if *json {
                print_json(&b)?;
            } else {
                println!(
                    "{} budget of {} {} for {}{}: {} spent so far ({:.1}%), forecast {}",
                    b.period,
                    b.limit,
                    b.currency,
                    b.project,
                    if b.service.is_empty() { String::new() } else { format!(" ({})", b.service) },
                    b.spent,
                    b.percent,
                    b.forecast
                );
            }
            Ok(0)
        }
        BudgetCmd::Remove { id } => {
            c.delete(&format!("/api/v1/budgets/{}", enc(id))).await?;
            println!("budget {id} removed");
            Ok(0)
        }
        BudgetCmd::Resume { project } => {
            let _: Value = c.post(&format!("/api/v1/projects/{}/resume", enc(project)), &json!({})).await?;
            println!("project {project} may spend again");
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_report_csv_disarms_formulas() {
        let group = |name: &str| agent_os_server::CostGroupView {
            group: name.into(),
            currency: "USD".into(),
            amount: "1.5".into(),
            amount_nanos: 1_500_000_000,
            records: 2,
            tokens_in: 10,
            tokens_out: 20,
            unpriced: 1,
        };
        let r = agent_os_server::CostSummary {
            by: agent_os_core::cost::GroupBy::Model,
            from: None,
            to: None,
            groups: ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "gpt, mini"].into_iter().map(group).collect(),
            totals: Vec::new(),
        };
        let csv = report_csv("model", &r);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines,
            [
                "model,currency,amount,records,tokens_in,tokens_out,unpriced",
                "\"'=HYPERLINK(\"\"x\"\")\",USD,1.5,2,10,20,1",
                "'+1,USD,1.5,2,10,20,1",
                "'-2,USD,1.5,2,10,20,1",
                "'@SUM(A1),USD,1.5,2,10,20,1",
                "\"gpt, mini\",USD,1.5,2,10,20,1",
            ]
        );
    }
}
