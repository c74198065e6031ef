//! `agent-os`: the one binary. `serve` and `demo` run the server; every other command is a
//! client of a running server's HTTP API (`--url`/`AGENT_OS_URL`, `--token`/`AGENT_OS_TOKEN`,
//! else the client config `serve` wrote into the home).

mod backup;
mod client;
mod commands;
mod config;
mod dashboard;
mod discover;
mod exec;
mod healthcheck;
mod home;
mod inbox;
mod incidents;
mod init;
mod keys;
mod lease;
mod mcp;
mod memory;
mod serve;
mod service;
mod settings;
mod table;
mod worker;
mod workflows;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "agent-os",
    version,
    about = "Orchestrate work across your own projects, without holding their credentials."
)]
struct Cli {
    /// Agent OS's home: config.yaml, the SQLite database, the local client config (for
    /// `worker`: the worker's spool, default ~/.agent-os-worker).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Server to talk to (client commands).
    #[arg(long, global = true, env = "AGENT_OS_URL", value_name = "URL")]
    url: Option<String>,
    /// API token (client commands; for `worker`, its worker token, else AGENT_OS_WORKER_TOKEN).
    #[arg(long, global = true, env = "AGENT_OS_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Set the variables of FILE (KEY=value lines, nothing expanded) before the command starts;
    /// it must come before the command. The services `agent-os service install` writes use it.
    // Declared for the help and for clap to accept it; `main` reads it before clap parses
    // (`service::env_file_arg`), so options that fall back to the environment see the file.
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Listen address (else `bind` in config.yaml, else 0.0.0.0:$PORT when PORT is set (serve),
    /// else 127.0.0.1:7700).
    #[arg(long, value_name = "ADDR:PORT")]
    bind: Option<String>,
    /// sqlite://PATH or postgres://USER@HOST/DB (else $AGENT_OS_DATABASE_URL, `database_url` in
    /// config.yaml, a postgres:// $DATABASE_URL (serve), else agent-os.db in the home).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// URL tasks and browsers reach this server by (else $AGENT_OS_PUBLIC_URL, `public_url` in
    /// config.yaml, else the listen address).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Agent OS server (API, engine).
    Serve(ServeArgs),
    /// Ask a server whether it is healthy (GET /healthz, no token): exit 0 when it answers 200,
    /// 1 otherwise. For a container's HEALTHCHECK.
    Healthcheck,
    /// Run the server with the example projects registered (in a fresh temporary home unless --home is given).
    Demo(ServeArgs),
    /// Register, list, inspect, reload or remove projects.
    #[command(subcommand)]
    Project(commands::ProjectCmd),
    /// Start a run of a project's task.
    Run(commands::RunArgs),
    /// List runs, or show one (`runs show ID`).
    Runs(commands::RunsArgs),
    /// Print a run's log (`--follow` to tail it live).
    Logs(commands::LogsArgs),
    /// Cancel a queued or running run.
    Cancel {
        run_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Every schedule of every project; `schedules discover` finds schedules kept elsewhere.
    Schedules(discover::SchedulesArgs),
    /// Heartbeat checks of schedules kept elsewhere, with their state, tags and ping URLs;
    /// `checks snooze REF 2h`, `checks unsnooze REF`.
    Checks(commands::ChecksArgs),
    /// Status badges for a README: Markdown for each project's badge and each tag's (a project
    /// token: its project and its checks' tags).
    Badges {
        /// Only this project's badge and its checks' tags'.
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Stored events (check.late, check.down, …), newest first.
    Events {
        /// Only types starting with this, e.g. `check.`.
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Emit an event (`event emit TYPE`); the workflows it triggers start.
    #[command(subcommand)]
    Event(workflows::EventCmd),
    /// Workflows: list, show, run (--wait), runs, run-status ID, cancel ID, approve/reject RUN STEP,
    /// reload, validate FILE….
    #[command(subcommand)]
    Workflow(workflows::WorkflowCmd),
    /// Run a job under a check: ping start, run it, ping its exit status with the tail of its
    /// output, exit with its status (for crontab, launchd, Railway).
    Exec(exec::ExecArgs),
    /// Set a project up for Agent OS with its own keys: agent-os.yaml, .env.example, .gitignore
    /// and an "API keys" section in its docs (prints the plan; --yes writes; no server needed).
    Init(init::InitArgs),
    /// Run a job that must not collide with others: wait in line for a lease on a resource,
    /// run it, renew the lease while it runs, release it, exit with its status.
    Lease(lease::LeaseArgs),
    /// Credential isolation: audit that projects keep their own keys, document them by name,
    /// migrate a project off a shared env file. Local; the server only lists projects.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// Named resources: limits, holders, waiters and rate-bucket levels.
    Resources {
        #[arg(long)]
        json: bool,
    },
    /// Workers (agent-os worker) that serve projects: connected or when last seen, their
    /// projects and what they run.
    Workers {
        #[arg(long)]
        json: bool,
    },
    /// Prune old history now, as the hourly pass does (`retention:` in config.yaml; admin
    /// token): rows pruned per kind and the longest batch. --dry-run counts only.
    Prune {
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Serve MCP over stdio for an AI client (Claude Desktop, Claude Code, Cursor): its tools
    /// see and steer the projects through the server's API with this token (docs/mcp.md).
    Mcp,
    /// The retention policy in force and the last prune pass's figures (admin token).
    Retention {
        #[arg(long)]
        json: bool,
    },
    /// List reported costs.
    Costs(commands::CostsArgs),
    /// Report a cost record.
    #[command(subcommand)]
    Cost(commands::CostCmd),
    /// Send a notification: Agent OS fans it out to every channel in its config.
    Notify(commands::NotifyArgs),
    /// Notifications, newest first, with how each delivery went.
    Notifications {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Notification channels: list, or send a test.
    #[command(subcommand)]
    Channel(commands::ChannelCmd),
    /// Incidents, newest first: failed runs, late or down checks, unhealthy projects, budget
    /// thresholds, projects' own warnings.
    Incidents(incidents::IncidentsArgs),
    /// Acknowledge an incident: someone is on it.
    Ack(incidents::AckArgs),
    /// Projects' health: the worst of status probe, health check, checks, failing tasks and
    /// budget pause, with the reasons.
    Health(incidents::HealthArgs),
    /// Maintenance windows, during which nothing alerts.
    #[command(subcommand)]
    Maintenance(incidents::MaintenanceCmd),
    /// Budgets: list, set, remove, and resume a project a budget paused.
    #[command(subcommand)]
    Budget(commands::BudgetCmd),
    /// Create, list or revoke API tokens.
    #[command(subcommand)]
    Token(commands::TokenCmd),
    /// The web dashboard: `dashboard password` sets its login password (read from stdin) or clears it.
    #[command(subcommand)]
    Dashboard(dashboard::DashboardCmd),
    /// Cron tools: `cron next EXPR` prints when an expression fires (no server needed).
    #[command(subcommand)]
    Cron(CronCmd),
    /// Run the server or a worker as a service of your session (launchd on macOS, systemd on
    /// Linux): install, uninstall, status. No server needed.
    #[command(subcommand)]
    Service(service::ServiceCmd),
    /// config.yaml: `config check [FILE]` validates one without a server; `config reload`
    /// makes the server apply its file now; `config status` shows how it stands.
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Copy the home's SQLite database to FILE while its server runs (a checked snapshot), or
    /// with --from-server ask a server for one over its API.
    Backup(backup::BackupArgs),
    /// Put a backup back as the home's database (no server may be using the home); the
    /// database it replaces is kept beside it.
    Restore(backup::RestoreArgs),
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Serve the projects in local directories to a server this machine connects out to: runs
    /// their tasks and probes here (token from --token or AGENT_OS_WORKER_TOKEN; home from
    /// --home, default ~/.agent-os-worker).
    Worker(worker::WorkerArgs),
}

#[derive(Subcommand)]
enum CronCmd {
    /// The next fire times of an expression, with Debian cron's rules (DST included).
    Next {
        /// Five fields or an alias, e.g. "30 2 * * *" or @daily (quote it).
        expr: String,
        /// IANA time zone (default UTC).
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Start after this instant (RFC 3339; default now).
        #[arg(long)]
        after: Option<String>,
        /// How many fire times.
        #[arg(long, default_value_t = 5)]
        count: usize,
        #[arg(long)]
        json: bool,
    },
}

/// `agent-os cron next`: exit 2 with the field and token when the expression is invalid.
fn cron_next(expr: &str, tz: &str, after: Option<&str>, count: usize, json: bool) -> u8 {
    let cron = match agent_os_core::cron::Cron::parse(expr) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let zone = match agent_os_core::cron::zone(tz) {
        Ok(z) => z,
        Err(e) => {
            eprintln!("error: --tz: {e}");
            return 2;
        }
    };
    let after = match after {
        None => jiff::Timestamp::now(),
        Some(text) => match text.parse::<jiff::Timestamp>() {
            Ok(t) => t,
            Err(_) => {
                eprintln!("error: --after {text:?} is not an RFC 3339 time such as 2026-03-08T09:00:00Z");
                return 2;
            }
        },
    };
    if count == 0 || count > 10_000 {
        eprintln!("error: --count must be between 1 and 10000");
        return 2;
    }
    let times: Vec<String> = cron
        .upcoming(&zone, after, count)
        .into_iter()
        .map(|t| t.to_zoned(zone.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
        .collect();
    if times.is_empty() {
        eprintln!("error: {expr:?} never fires (within 30 years)");
        return 1;
    }
    if json {
        println!("{}", serde_json::to_string(&times).unwrap_or_default());
    } else {
        for t in &times {
            println!("{t}");
        }
    }
    0
}

fn flags(a: &ServeArgs, platform_env: bool) -> serve::ServeFlags {
    serve::ServeFlags {
        bind: a.bind.clone(),
        database_url: a.database_url.clone(),
        public_url: a.public_url.clone(),
        platform_env,
        vars: Default::default(),
    }
}

fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENT_OS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let ansi = log_colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// Whether the log is coloured: only on a terminal (a file or a service manager's journal
/// would keep the escape codes as text), and never when `NO_COLOR` is set to anything but
/// the empty string (<https://no-color.org>).
fn log_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(file) = service::env_file_arg(&args) {
        match service::read_env_file(&file) {
            Ok(read) => {
                if let Some(w) = read.warning {
                    eprintln!("{w}");
                }
                for (key, value) in read.vars {
                    // SAFETY: nothing else runs yet: no runtime, no thread has been started, so
                    // no one reads the environment while it changes.
                    unsafe { std::env::set_var(key, value) };
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let matches = Cli::command().get_matches_from(args);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // A worker takes its token from --token or AGENT_OS_WORKER_TOKEN, never from a client's
    // AGENT_OS_TOKEN (which a task, say, has in its environment).
    let token_on_command_line = matches.value_source("token") == Some(clap::parser::ValueSource::CommandLine);
    if matches!(cli.command, Command::Serve(_) | Command::Demo(_)) {
        memory::limit_arenas();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli, token_on_command_line)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn dispatch(cli: Cli, token_on_command_line: bool) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Worker(a) => {
            init_tracing();
            let token = cli.token.clone().filter(|_| token_on_command_line);
            worker::run(a, token, cli.home.as_deref()).await
        }
        Command::Serve(a) => {
            init_tracing();
            let home = home::resolve(cli.home.as_deref())?;
            serve::serve(&home, &flags(a, true)).await?;
            Ok(0)
        }
        Command::Demo(a) => {
            init_tracing();
            serve::demo(cli.home.as_deref(), &flags(a, false)).await?;
            Ok(0)
        }
        Command::Openapi => {
            println!("{}", agent_os_server::openapi_json());
            Ok(0)
        }
        Command::Backup(a) => {
            let client = match a.from_server {
                true => Some(commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?),
                false => None,
            };
            backup::backup(a, cli.home.as_deref(), client.as_ref()).await
        }
        Command::Restore(a) => backup::restore(a, cli.home.as_deref()).await,
        Command::Mcp => mcp::run(commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?).await,
        Command::Healthcheck => Ok(healthcheck::run(cli.home.as_deref(), cli.url.clone()).await),
        Command::Cron(CronCmd::Next { expr, tz, after, count, json }) => {
            Ok(cron_next(expr, tz, after.as_deref(), *count, *json))
        }
        Command::Exec(a) => {
            // The API is only needed to look up the ping URL; without it the job still runs.
            let client = match &a.ping_url {
                Some(_) => None,
                None => commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone()).ok(),
            };
            Ok(exec::run(a, client.as_ref()).await)
        }
        Command::Init(a) => Ok(init::run(a)),
        Command::Service(s) => Ok(service::run(s, cli.home.as_deref()).await),
        Command::Lease(a) => {
            let client = commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?;
            Ok(lease::run(a, &client).await)
        }
        Command::Incidents(a) => {
            incidents::incidents(&commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?, a).await
        }
        Command::Ack(a) => {
            incidents::ack(&commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?, a).await
        }
        Command::Health(a) => {
            incidents::health(&commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?, a).await
        }
        Command::Maintenance(m) => {
            incidents::maintenance(&commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?, m)
                .await
        }
        Command::Dashboard(d) => {
            dashboard::run(&commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?, d).await
        }
        Command::Event(e) => {
            workflows::event(&commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?, e).await
        }
        Command::Config(config::ConfigCmd::Check { file, json }) => {
            config::check(cli.home.as_deref(), file.as_deref(), *json).await
        }
        Command::Config(c) => {
            config::run(&commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?, c).await
        }
        Command::Workflow(w) => {
            workflows::workflow(&commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?, w).await
        }
        Command::Keys(k) => {
            let client = match k.needs_server() {
                true => Some(commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?),
                false => None,
            };
            let home = home::resolve(cli.home.as_deref()).ok();
            Ok(keys::run(k, home.as_deref(), client.as_ref()).await)
        }
        Command::Schedules(discover::SchedulesArgs { sub: Some(discover::SchedulesSub::Discover(d)), .. }) => {
            let client = match d.register {
                true => Some(commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?),
                false => None,
            };
            Ok(discover::run(d, client.as_ref()).await)
        }
        other => {
            let client = commands::connect(cli.home.as_deref(), cli.url.clone(), cli.token.clone())?;
            commands::run(&client, other_command(other)).await
        }
    }
}

fn other_command(c: &Command) -> commands::ClientCommand<'_> {
    use commands::ClientCommand as C;
    match c {
        Command::Project(p) => C::Project(p),
        Command::Run(r) => C::Run(r),
        Command::Runs(r) => C::Runs(r),
        Command::Logs(l) => C::Logs(l),
        Command::Cancel { run_id, json } => C::Cancel { run_id, json: *json },
        Command::Schedules(discover::SchedulesArgs { sub: Some(sub), .. }) => C::ScheduleAction(sub),
        Command::Schedules(s) => {
            C::Schedules { project: s.project.as_deref(), json: s.json, upcoming: s.upcoming.as_deref() }
        }
        Command::Checks(commands::ChecksArgs { sub: Some(sub), .. }) => C::CheckAction(sub),
        Command::Checks(a) => C::Checks { project: a.project.as_deref(), tag: a.tag.as_deref(), json: a.json },
        Command::Badges { project, json } => C::Badges { project: project.as_deref(), json: *json },
        Command::Events { kind, limit, json } => C::Events { kind: kind.as_deref(), limit: *limit, json: *json },
        Command::Resources { json } => C::Resources { json: *json },
        Command::Workers { json } => C::Workers { json: *json },
        Command::Prune { dry_run, json } => C::Prune { dry_run: *dry_run, json: *json },
        Command::Retention { json } => C::Retention { json: *json },
        Command::Costs(c) => C::Costs(c),
        Command::Cost(c) => C::Cost(c),
        Command::Token(t) => C::Token(t),
        Command::Budget(b) => C::Budget(b),
        Command::Notify(n) => C::Notify(n),
        Command::Notifications { project, json } => C::Notifications { project: project.as_deref(), json: *json },
        Command::Channel(ch) => C::Channel(ch),
        Command::Serve(_)
        | Command::Healthcheck
        | Command::Demo(_)
        | Command::Openapi
        | Command::Mcp
        | Command::Backup(_)
        | Command::Restore(_)
        | Command::Cron(_)
        | Command::Exec(_)
        | Command::Lease(_)
        | Command::Incidents(_)
        | Command::Ack(_)
        | Command::Health(_)
        | Command::Maintenance(_)
        | Command::Dashboard(_)
        | Command::Keys(_)
        | Command::Event(_)
        | Command::Workflow(_)
        | Command::Config(_)
        | Command::Worker(_)
        | Command::Init(_)
        | Command::Service(_) => C::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::log_colour;
    use std::ffi::OsStr;

    #[test]
    fn the_log_is_coloured_only_on_a_terminal_without_no_color() {
        let cases = [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (false, None, false),
            (false, Some("1"), false),
        ];
        for (terminal, no_color, want) in cases {
            assert_eq!(log_colour(terminal, no_color.map(OsStr::new)), want, "{terminal} {no_color:?}");
        }
    }
}
