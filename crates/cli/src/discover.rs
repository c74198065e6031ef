//! `agent-os schedules discover`: finds the schedules a user keeps outside Agent OS (crontabs,
//! launchd jobs, systemd timers, Railway cron, GitHub Actions) in the files under the given
//! paths, and with `--crontab` in the user's crontab, and reports each with its cron expression
//! and zone, or why it has none. It runs locally and needs no server.
//!
//! The file system walk, the reading and the machine's zone live here; the readers of each
//! format are pure, in `agent_os_core::discover`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_os_core::discover::{self, CRONTAB_L, Finding, LOCAL, Outcome};
use agent_os_core::manifest::ScheduleSource;
use agent_os_engine::runner;
use clap::{Args, Subcommand};

use crate::client::Client;
use crate::table;

/// `agent-os schedules`: the server's list, or `schedules discover`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SchedulesArgs {
    #[command(subcommand)]
    pub sub: Option<SchedulesSub>,
    /// Only this project's schedules.
    #[arg(long)]
    pub project: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
    /// Every fire in the coming period (e.g. `24h`, `7d`) in time order, with collisions of
    /// projects that use the same service.
    #[arg(long, value_name = "DURATION")]
    pub upcoming: Option<String>,
}

#[derive(Subcommand)]
pub enum SchedulesSub {
    /// Find schedules kept elsewhere (crontabs, launchd, systemd timers, Railway, GitHub Actions); no server needed.
    Discover(DiscoverArgs),
    /// Pause a schedule Agent OS fires (by id, or PROJECT/TASK when the task has one schedule).
    Pause(ScheduleTarget),
    /// Resume a paused schedule; slots that passed while paused are not caught up.
    Resume(ScheduleTarget),
    /// Run a schedule's task now, outside its slots.
    Run(ScheduleTarget),
    /// Remove a schedule registered with `discover --register` (by id, or PROJECT/NAME).
    Forget(ForgetArgs),
}

#[derive(Args)]
pub struct ForgetArgs {
    /// The schedule's id (first column of `agent-os schedules`) or PROJECT/NAME; with
    /// `--project`, its name alone.
    pub schedule: String,
    /// The project it was registered for (then SCHEDULE is its name).
    #[arg(long)]
    pub project: Option<String>,
}

#[derive(Args)]
pub struct ScheduleTarget {
    /// The schedule's id (first column of `agent-os schedules`) or PROJECT/TASK.
    pub schedule: String,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DiscoverArgs {
    /// Files or directories to search (default: the current directory).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Print the findings as a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Also read this user's crontab (`crontab -l`).
    #[arg(long)]
    pub crontab: bool,
    /// Register what was found (translatable entries only) as schedules kept elsewhere of the
    /// project whose directory holds each file; each gets a check with ping URLs.
    #[arg(long)]
    pub register: bool,
    /// With --register: register everything found under this project (needed for `--crontab`
    /// entries and files outside any project's directory).
    #[arg(long, requires = "register")]
    pub project: Option<String>,
}

/// Files looked at, at most, across all paths: a home directory holds far more than schedules.
const MAX_FILES: usize = 5000;
/// Larger files are not schedules anyone wrote by hand.
const MAX_BYTES: u64 = 1024 * 1024;
/// Directories that hold dependencies, build output or state, never a user's schedules.
const SKIP_DIRS: [&str; 4] = [".git", "node_modules", "target", "var"];
const WHAT_IS_READ: &str = "crontab*, *.cron, crontabs/*, cron.d/*, /etc/crontab, *.plist, *.timer, railway.json, railway.toml, .github/workflows/*.yml";

/// Runs `schedules discover`; the exit code is 0 whatever is found, 2 when a path is missing,
/// 1 when `--register` could not register everything.
pub async fn run(a: &DiscoverArgs, client: Option<&Client>) -> u8 {
    let paths = if a.paths.is_empty() { vec![PathBuf::from(".")] } else { a.paths.clone() };
    for p in &paths {
        if std::fs::symlink_metadata(p).is_err() {
            eprintln!("error: {}: no such file or directory", p.display());
            return 2;
        }
    }
    let mut walk = Walk::default();
    for p in &paths {
        walk.root(p);
    }
    let mut findings = Vec::new();
    for file in &walk.candidates {
        if let Some(text) = read(file, &mut walk.notes) {
            findings.extend(discover::discover_file(&source_name(file), &text));
        }
    }
    if a.crontab
        && let Some(text) = user_crontab(&mut walk.notes).await
    {
        findings.extend(discover::discover_file(CRONTAB_L, &text));
    }
    // Before the machine's zone stands in for it: such a job follows the clock of whichever
    // machine runs it, which the manifest may state better.
    let from_machine: Vec<bool> = findings
        .iter()
        .map(|f| matches!(&f.outcome, Outcome::Schedule { timezone, .. } if timezone.as_str() == LOCAL))
        .collect();
    local_zone(&mut findings, &mut walk.notes);
    for note in &walk.notes {
        eprintln!("note: {note}");
    }
    if a.json && a.register {
        // Printed with what was registered, as one object.
    } else if a.json {
        match serde_json::to_string_pretty(&findings) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    } else {
        print_human(&findings, &paths, &walk);
    }
    match (a.register, client) {
        (false, _) => 0,
        (true, Some(c)) => match register(c, &findings, &from_machine, a.project.as_deref(), a.json).await {
            Ok((code, done)) if a.json => {
                let (recognised, registered): (Vec<_>, Vec<_>) =
                    done.into_iter().partition(|s| s.source == ScheduleSource::Manifest);
                let all =
                    serde_json::json!({ "findings": findings, "registered": registered, "recognised": recognised });
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
                code
            }
            Ok((code, _)) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        },
        (true, None) => {
            eprintln!(
                "error: --register needs the server: pass --url and --token (or run where `agent-os serve` wrote client.json)"
            );
            1
        }
    }
}

/// A schedule name from what it runs (docs/cli.md): the script's name (`python3
/// jobs/rebalance.py` → `rebalance`), else the program's (`cd ~/newsletter && npm run send` →
/// `npm`; a directory `cd` goes to is not a program), else the scheduler and line.
pub fn name_for(f: &Finding) -> String {
    let runs = discover::what_it_runs(&f.command);
    let pick = runs.script.or(runs.program).map(|w| {
        let base = w.trim_end_matches('/').rsplit('/').next().unwrap_or(&w).to_string();
        base.split_once('.').map_or(base.clone(), |(stem, _)| stem.to_string())
    });
    let mut name: String = pick
        .as_deref()
        .unwrap_or("")
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    name = name.trim_matches(|c| c == '-' || c == '_').chars().take(40).collect();
    if name.is_empty() {
        name = format!("{}-{}", f.managed_by, f.line);
    }
    name
}

/// The registered project whose directory holds `source` (the deepest one).
fn owner<'a>(source: &str, projects: &'a [agent_os_server::views::ProjectView]) -> Option<&'a str> {
    let path = std::fs::canonicalize(source).ok()?;
    projects
        .iter()
        .filter_map(|p| {
            let root = std::fs::canonicalize(p.root.as_deref()?).ok()?;
            path.starts_with(&root).then_some((root.components().count(), p.name.as_str()))
        })
        .max()
        .map(|(_, name)| name)
}

/// The names of `project`'s checks that its manifest declares: a registered schedule may not
/// take one.
async fn manifest_checks(c: &Client, project: &str) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let q = agent_os_core::url::encode_component(project);
    let checks: Vec<agent_os_server::CheckView> = c.get(&format!("/api/v1/checks?project={q}")).await?;
    let schedules: Vec<agent_os_server::views::ScheduleView> = c.get(&format!("/api/v1/schedules?project={q}")).await?;
    let discovered: std::collections::BTreeSet<&str> =
        schedules.iter().filter(|s| s.source == ScheduleSource::Discovered).map(|s| s.task.as_str()).collect();
    Ok(checks.into_iter().map(|c| c.slug).filter(|s| !discovered.contains(s.as_str())).collect())
}

async fn register(
    c: &Client,
    findings: &[Finding],
    from_machine: &[bool],
    project: Option<&str>,
    json: bool,
) -> anyhow::Result<(u8, Vec<agent_os_server::views::ScheduleView>)> {
    let projects: Vec<agent_os_server::views::ProjectView> = c.get("/api/v1/projects").await?;
    let mut batches: std::collections::BTreeMap<String, Vec<agent_os_server::DiscoveredEntry>> = Default::default();
    let mut taken: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    let mut code = 0;
    for (i, f) in findings.iter().enumerate() {
        let Outcome::Schedule { cron, timezone } = &f.outcome else { continue };
        let Some(target) = project.or_else(|| owner(&f.source, &projects)) else {
            eprintln!(
                "not registered: {}:{}: no registered project's directory holds it; pass --project NAME",
                f.source, f.line
            );
            code = 1;
            continue;
        };
        if !taken.contains_key(target) {
            taken.insert(target.to_string(), manifest_checks(c, target).await?);
        }
        let in_manifest = &taken[target];
        let batch = batches.entry(target.to_string()).or_default();
        let base = name_for(f);
        let mut name = base.clone();
        let mut n = 2;
        while batch.iter().any(|e| e.name == name) || in_manifest.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let command = if f.command.is_empty() { "(command not stated)".to_string() } else { shorten(&f.command, 200) };
        batch.push(agent_os_server::DiscoveredEntry {
            name,
            cron: cron.clone(),
            timezone: (timezone != LOCAL).then(|| timezone.clone()),
            managed_by: f.managed_by.to_string(),
            description: format!("{command} ({}:{})", f.source, f.line),
            command: (!f.command.is_empty()).then(|| f.command.clone()),
            zone_from_machine: from_machine.get(i).copied().unwrap_or(false),
        });
    }
    let mut registered = Vec::new();
    for (project, entries) in batches {
        let path = format!("/api/v1/projects/{}/schedules", agent_os_core::url::encode_component(&project));
        match c
            .post::<Vec<agent_os_server::views::ScheduleView>>(&path, &serde_json::json!({ "schedules": entries }))
            .await
        {
            Ok(views) => registered.extend(views),
            Err(e) => {
                eprintln!("error: registering for project {project:?}: {e:#}");
                code = 1;
            }
        }
    }
    let recognised: Vec<&agent_os_server::views::ScheduleView> =
        registered.iter().filter(|s| s.source == ScheduleSource::Manifest).collect();
    if !json && !recognised.is_empty() {
        println!();
        println!("Already in the manifest (watched by its check; nothing registered):");
        let rows: Vec<Vec<String>> = recognised
            .iter()
            .map(|s| {
                vec![s.project.clone(), s.task.clone(), s.cron.clone(), s.timezone.clone(), s.managed_by.to_string()]
            })
            .collect();
        print!("{}", table::render(&["PROJECT", "TASK", "CRON", "ZONE", "MANAGED BY"], &rows));
    }
    let new: Vec<&agent_os_server::views::ScheduleView> =
        registered.iter().filter(|s| s.source != ScheduleSource::Manifest).collect();
    if !json && !new.is_empty() {
        println!();
        println!(
            "Registered (each is watched by a check; make the job ping its URL, or wrap it with `agent-os exec --check NAME --project PROJECT -- …`):"
        );
        let rows: Vec<Vec<String>> = new
            .iter()
            .map(|s| {
                let url = s.check.as_ref().map(|c| c.ping_url.clone()).unwrap_or_default();
                vec![s.project.clone(), s.task.clone(), s.cron.clone(), s.timezone.clone(), url]
            })
            .collect();
        print!("{}", table::render(&["PROJECT", "NAME", "CRON", "ZONE", "PING URL"], &rows));
    }
    Ok((code, registered))
}

#[derive(Default)]
struct Walk {
    candidates: Vec<PathBuf>,
    notes: Vec<String>,
    /// Files looked at so far, toward [`MAX_FILES`].
    seen: usize,
    stopped: bool,
}

impl Walk {
    fn root(&mut self, root: &Path) {
        match std::fs::metadata(root) {
            Ok(m) if m.is_file() => {
                self.seen += 1;
                if discover::kind_of(&path_text(root)).is_some() {
                    self.candidates.push(root.to_path_buf());
                } else {
                    self.notes.push(format!("{}: not a kind of file discover reads ({WHAT_IS_READ})", root.display()));
                }
            }
            Ok(m) if m.is_dir() => {
                let first = self.candidates.len();
                self.dir(root);
                self.candidates[first..].sort();
            }
            Ok(_) => self.notes.push(format!("{}: not a file or directory; skipped", root.display())),
            Err(e) => self.notes.push(format!("{}: {e}; skipped", root.display())),
        }
    }

    /// Every file under `root`, skipping [`SKIP_DIRS`] and hidden entries except `.github`.
    fn dir(&mut self, root: &Path) {
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let mut entries: Vec<(PathBuf, std::fs::FileType)> = match std::fs::read_dir(&dir) {
                Ok(rd) => rd.filter_map(Result::ok).filter_map(|e| Some((e.path(), e.file_type().ok()?))).collect(),
                Err(e) => {
                    self.notes.push(format!("{}: {e}; skipped", dir.display()));
                    continue;
                }
            };
            // Name order, so the same files are looked at first when the limit cuts the walk short.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut subdirs = Vec::new();
            for (path, kind) in entries {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let hidden = name.starts_with('.');
                if kind.is_dir() {
                    if !SKIP_DIRS.contains(&name.as_str()) && (!hidden || name == ".github") {
                        subdirs.push(path);
                    }
                    continue;
                }
                // Symbolic links to directories are not followed: they can loop.
                let is_file = kind.is_file() || (kind.is_symlink() && path.is_file());
                if !is_file || hidden {
                    continue;
                }
                if self.seen >= MAX_FILES {
                    if !self.stopped {
                        self.stopped = true;
                        self.notes.push(format!(
                            "stopped after looking at {MAX_FILES} files; name the directories that hold schedules"
                        ));
                    }
                    return;
                }
                self.seen += 1;
                if discover::kind_of(&path_text(&path)).is_some() {
                    self.candidates.push(path);
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
    }
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The path as the user would type it: without a leading `./`.
fn source_name(p: &Path) -> String {
    let text = path_text(p);
    text.strip_prefix("./").map(str::to_string).unwrap_or(text)
}

fn read(file: &Path, notes: &mut Vec<String>) -> Option<String> {
    match std::fs::metadata(file) {
        Ok(m) if m.len() > MAX_BYTES => {
            notes.push(format!("{}: larger than 1 MiB; skipped", file.display()));
            return None;
        }
        Ok(_) => {}
        Err(e) => {
            notes.push(format!("{}: {e}; skipped", file.display()));
            return None;
        }
    }
    match std::fs::read(file) {
        // Lossy, so a binary property list still shows what it is.
        Ok(bytes) => {
            Some(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
        }
        Err(e) => {
            notes.push(format!("{}: {e}; skipped", file.display()));
            None
        }
    }
}

/// The text of `crontab -l`, or a note why there is none. The process is started by the
/// engine's runner, the one place that starts processes.
async fn user_crontab(notes: &mut Vec<String>) -> Option<String> {
    let command = agent_os_core::manifest::Command::Argv(vec!["crontab".into(), "-l".into()]);
    let root = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let spec = runner::ProcessSpec {
        root: &root,
        command: &command,
        env: runner::base_env(),
        stdin: Vec::new(),
        timeout: Duration::from_secs(10),
        kill_grace: Duration::from_secs(1),
    };
    let out = runner::run_captured(spec, MAX_BYTES as usize).await;
    match out.exit {
        runner::Exit::Code(0) => Some(out.stdout),
        runner::Exit::SpawnFailed(why) if why.starts_with("program not found") => {
            notes.push("--crontab: there is no `crontab` command on this machine's PATH; skipped".into());
            None
        }
        runner::Exit::SpawnFailed(why) => {
            notes.push(format!("--crontab: could not run `crontab -l`: {why}"));
            None
        }
        _ if out.stderr_tail.to_ascii_lowercase().contains("no crontab") => {
            notes.push("--crontab: this user has no crontab".into());
            None
        }
        exit => {
            let why = exit.describe(Duration::from_secs(10));
            let stderr = out.stderr_tail.trim();
            notes.push(format!(
                "--crontab: `crontab -l` failed ({why}){}",
                if stderr.is_empty() { String::new() } else { format!(": {stderr}") }
            ));
            None
        }
    }
}

/// Replaces [`LOCAL`] with this machine's IANA zone: cron, launchd and systemd follow the
/// machine's clock unless a file names a zone.
fn local_zone(findings: &mut [Finding], notes: &mut Vec<String>) {
    let uses_local =
        |f: &Finding| matches!(&f.outcome, Outcome::Schedule { timezone, .. } if timezone.as_str() == LOCAL);
    if !findings.iter().any(uses_local) {
        return;
    }
    let zone = match jiff::tz::TimeZone::system().iana_name() {
        Some(name) => name.to_string(),
        None => {
            notes.push(
                "cannot tell this machine's time zone by name; schedules that follow the machine's clock are shown in UTC"
                    .into(),
            );
            "UTC".to_string()
        }
    };
    for f in findings.iter_mut() {
        if let Outcome::Schedule { timezone, .. } = &mut f.outcome
            && timezone.as_str() == LOCAL
        {
            *timezone = zone.clone();
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.is_empty() {
        return "-".into();
    }
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max - 1).collect();
    format!("{cut}…")
}

fn print_human(findings: &[Finding], paths: &[PathBuf], walk: &Walk) {
    let place = |f: &Finding| format!("{}:{}", f.source, f.line);
    let schedules: Vec<Vec<String>> = findings
        .iter()
        .filter_map(|f| match &f.outcome {
            Outcome::Schedule { cron, timezone } => {
                Some(vec![place(f), f.managed_by.to_string(), cron.clone(), timezone.clone(), shorten(&f.command, 70)])
            }
            Outcome::Untranslatable { .. } => None,
        })
        .collect();
    let refused: Vec<Vec<String>> = findings
        .iter()
        .filter_map(|f| match &f.outcome {
            Outcome::Untranslatable { reason } => {
                Some(vec![place(f), f.managed_by.to_string(), shorten(&f.command, 40), reason.clone()])
            }
            Outcome::Schedule { .. } => None,
        })
        .collect();
    if findings.is_empty() {
        let where_ = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        println!("no schedules found in {where_} (looked at {} files; discover reads {WHAT_IS_READ})", walk.seen);
        return;
    }
    if !schedules.is_empty() {
        print!("{}", table::render(&["SOURCE", "MANAGED BY", "CRON", "ZONE", "COMMAND"], &schedules));
    }
    if !refused.is_empty() {
        if !schedules.is_empty() {
            println!();
        }
        println!("Not translatable to cron exactly:");
        print!("{}", table::render(&["SOURCE", "MANAGED BY", "COMMAND", "REASON"], &refused));
    }
    println!();
    println!(
        "{} schedule{}, {} not translatable, in {} files read ({} looked at)",
        schedules.len(),
        if schedules.len() == 1 { "" } else { "s" },
        refused.len(),
        walk.candidates.len(),
        walk.seen
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_os_core::manifest::ManagedBy;

    #[test]
    fn long_commands_are_shortened() {
        assert_eq!(shorten("", 10), "-");
        assert_eq!(shorten("abc", 10), "abc");
        assert_eq!(shorten("abcdefghijkl", 5), "abcd…");
    }

    #[test]
    fn sources_drop_a_leading_dot_slash() {
        assert_eq!(source_name(Path::new("./crontab.txt")), "crontab.txt");
        assert_eq!(source_name(Path::new("/etc/crontab")), "/etc/crontab");
    }

    #[test]
    fn registered_names_come_from_what_the_job_runs() {
        let f = |command: &str| Finding {
            source: "crontab".into(),
            line: 7,
            managed_by: ManagedBy::Cron,
            command: command.into(),
            outcome: Outcome::Schedule { cron: "* * * * *".into(), timezone: "UTC".into() },
        };
        assert_eq!(name_for(&f("cd /srv/app && python3 jobs/Rebalance.py --live")), "rebalance");
        assert_eq!(name_for(&f("PATH=/bin /usr/local/bin/backup-db")), "backup-db");
        assert_eq!(name_for(&f("sh -c ./run_nightly.sh")), "run_nightly");
        assert_eq!(name_for(&f("")), "cron-7");
        assert_eq!(name_for(&f("cd / && ...")), "cron-7", "nothing usable is left");
    }

    #[test]
    fn a_directory_cd_goes_to_is_not_the_program_a_schedule_is_named_after() {
        let f = |command: &str| Finding {
            source: "crontab".into(),
            line: 3,
            managed_by: ManagedBy::Cron,
            command: command.into(),
            outcome: Outcome::Schedule { cron: "0 9 * * 1".into(), timezone: "UTC".into() },
        };
        assert_eq!(name_for(&f("cd /home/me/newsletter && npm run send")), "npm");
        assert_eq!(name_for(&f("cd \"$HOME/my site\" && make deploy >> /var/log/deploy.sh 2>&1")), "make");
        assert_eq!(
            name_for(&f("cd \"$HOME/projects/image-workflow\" && ./scripts/backup.sh >> \"$HOME/x.log\" 2>&1")),
            "backup"
        );
        assert_eq!(
            name_for(&f("/bin/sh /Users/you/cortana/scripts/automation/run_daily_update.sh")),
            "run_daily_update"
        );
        assert_eq!(name_for(&f("bash -c 'cd /srv && exec ./nightly.py'")), "nightly");
    }
}
