//! `agent-os service install|uninstall|status`: runs `agent-os serve` (or, with `--worker`,
//! `agent-os worker`) as a service of the user's own session: a launchd LaunchAgent on macOS, a
//! systemd user unit elsewhere. Install writes the unit (or property list) and the service's
//! env file, shows its plan first, changes nothing when everything is already as planned, and
//! asks the service manager to load and start it; when the manager cannot be reached it leaves
//! the files and prints the exact commands that finish the job. It needs no server.
//!
//! Secrets never go into the unit, the property list or a command line: the service starts
//! `agent-os --env-file FILE …`, and the binary reads the file itself before anything else
//! ([`read_env_file`]), so the values are in neither the unit, `ps` output nor the process's
//! initial environment. The env file is created with mode 0600 and never widened; its values
//! are never printed.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_os_core::envfile;
use agent_os_core::shell::quote;
use agent_os_engine::runner;
use clap::{Args, Subcommand, ValueEnum};

#[derive(Subcommand)]
pub enum ServiceCmd {
    /// Install the server (or with --worker, a worker) as a service of your session, and start
    /// it: a launchd LaunchAgent on macOS, a systemd user unit on Linux. Shows the plan first;
    /// a second install with the same plan changes nothing.
    Install(InstallArgs),
    /// Stop the service and remove its unit (the env file and the log stay unless --purge).
    Uninstall(UninstallArgs),
    /// Whether the service is installed, its files, and what the service manager says of it.
    Status(StatusArgs),
}

#[derive(Args)]
pub struct InstallArgs {
    /// Install a worker (`agent-os worker`) instead of the server (`agent-os serve`).
    #[arg(long)]
    pub worker: bool,
    /// The Agent OS server the worker connects to (with --worker).
    #[arg(long, value_name = "URL", requires = "worker")]
    pub server: Option<String>,
    /// A project directory the worker serves (with --worker; repeat it for several).
    #[arg(long = "project", value_name = "DIR", requires = "worker")]
    pub projects: Vec<PathBuf>,
    /// The worker's name (with --worker; default: the host name).
    #[arg(long, requires = "worker")]
    pub name: Option<String>,
    /// How many runs the worker runs at once (with --worker).
    #[arg(long, value_name = "N", requires = "worker", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub capacity: Option<u32>,
    /// Let the worker reach its server over plain http:// on a private network (with --worker).
    #[arg(long, requires = "worker")]
    pub allow_http: bool,
    /// Print the files install would write (secret values hidden), and write nothing.
    #[arg(long)]
    pub print: bool,
    #[arg(long, value_enum, hide = true)]
    pub platform: Option<Platform>,
}

#[derive(Args)]
pub struct UninstallArgs {
    /// The worker's service instead of the server's.
    #[arg(long)]
    pub worker: bool,
    /// Also remove the env file and the service's log.
    #[arg(long)]
    pub purge: bool,
    #[arg(long, value_enum, hide = true)]
    pub platform: Option<Platform>,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The worker's service instead of the server's.
    #[arg(long)]
    pub worker: bool,
    #[arg(long, value_enum, hide = true)]
    pub platform: Option<Platform>,
}

/// Which service manager the files are for. macOS uses launchd, everything else systemd; the
/// hidden `--platform` flag picks one explicitly, so both can be produced and tested anywhere.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Launchd,
    Systemd,
}

impl Platform {
    fn of(flag: Option<Platform>) -> Platform {
        flag.unwrap_or(if cfg!(target_os = "macos") { Platform::Launchd } else { Platform::Systemd })
    }

    fn manager(self) -> &'static str {
        match self {
            Platform::Launchd => "launchctl",
            Platform::Systemd => "systemctl",
        }
    }
}

/// What the service runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Serve,
    Worker,
}

impl Role {
    fn of(worker: bool) -> Role {
        if worker { Role::Worker } else { Role::Serve }
    }

    /// The word used in file names: `serve.env`, `dev.agent-os.worker.plist`, `worker.log`.
    fn word(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Worker => "worker",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Role::Serve => "Agent OS server",
            Role::Worker => "Agent OS worker",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Role::Serve => "",
            Role::Worker => " --worker",
        }
    }
}

/// Why a service command stopped.
enum Stop {
    /// The command line or the environment asked for something impossible: exit 2.
    Usage(String),
    /// A file could not be read or written: exit 1.
    Failed(String),
}

impl Stop {
    fn report(self) -> u8 {
        match self {
            Stop::Usage(m) => {
                eprintln!("error: {m}");
                2
            }
            Stop::Failed(m) => {
                eprintln!("error: {m}");
                1
            }
        }
    }
}

fn io_failed(what: &str, path: &Path, e: std::io::Error) -> Stop {
    Stop::Failed(format!("cannot {what} {}: {e}", path.display()))
}

/// The user's own directories, from `HOME` and `XDG_CONFIG_HOME`.
struct UserDirs {
    home: PathBuf,
    /// `XDG_CONFIG_HOME` when it is an absolute path (the XDG rule), else `HOME/.config`.
    config: PathBuf,
}

fn user_dirs() -> Result<UserDirs, Stop> {
    let home =
        std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).filter(|h| h.is_absolute()).ok_or_else(
            || Stop::Usage("HOME is not set to an absolute path; a service belongs to a user's home".into()),
        )?;
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|c| c.is_absolute())
        .unwrap_or_else(|| home.join(".config"));
    Ok(UserDirs { home, config })
}

/// Where one service's files are.
struct Layout {
    platform: Platform,
    role: Role,
    /// The systemd unit or the launchd property list.
    unit: PathBuf,
    /// The service's name for its manager: the unit's file name, or the launchd label.
    name: String,
    env_file: PathBuf,
}

impl Layout {
    fn new(platform: Platform, role: Role, dirs: &UserDirs) -> Layout {
        let (unit, name) = match (platform, role) {
            (Platform::Systemd, Role::Serve) => ("agent-os.service".to_string(), "agent-os.service".to_string()),
            (Platform::Systemd, Role::Worker) => {
                ("agent-os-worker.service".to_string(), "agent-os-worker.service".to_string())
            }
            (Platform::Launchd, role) => {
                let label = format!("dev.agent-os.{}", role.word());
                (format!("{label}.plist"), label)
            }
        };
        let unit = match platform {
            Platform::Systemd => dirs.config.join("systemd").join("user").join(unit),
            Platform::Launchd => dirs.home.join("Library").join("LaunchAgents").join(unit),
        };
        let env_file = dirs.config.join("agent-os").join(format!("{}.env", role.word()));
        Layout { platform, role, unit, name, env_file }
    }

    fn describe(&self) -> String {
        match self.platform {
            Platform::Systemd => format!("{} as a systemd user service ({})", self.role.title(), self.name),
            Platform::Launchd => format!("{} as a launchd agent ({})", self.role.title(), self.name),
        }
    }

    /// The symlink `systemctl enable` makes; removed with a unit systemd could not be told of.
    fn wants_link(&self) -> Option<PathBuf> {
        let dir = self.unit.parent()?;
        (self.platform == Platform::Systemd).then(|| dir.join("default.target.wants").join(&self.name))
    }
}

/// What the service runs, and where.
struct Spec {
    /// The program and its arguments, the program's absolute path first.
    argv: Vec<String>,
    /// The service's Agent OS home: its working directory, and where its log goes.
    home: PathBuf,
    log: PathBuf,
}

/// A path as text for a unit or a property list: UTF-8, without control characters.
fn path_text(path: &Path, what: &str) -> Result<String, Stop> {
    let text = path.to_str().ok_or_else(|| {
        Stop::Usage(format!("{what} {} is not UTF-8; a service file cannot name it: use another path", path.display()))
    })?;
    if text.chars().any(char::is_control) {
        return Err(Stop::Usage(format!(
            "{what} {text:?} holds a control character; a service file cannot name it: use another path"
        )));
    }
    Ok(text.to_string())
}

fn absolute(path: &Path, what: &str) -> Result<PathBuf, Stop> {
    std::path::absolute(path).map_err(|e| Stop::Usage(format!("{what} {}: {e}", path.display())))
}

/// The absolute path of the running binary with its symlinks resolved, which the service
/// starts: a later `cargo install` to the same path is picked up on the next start, while a
/// binary moved elsewhere needs `service install` again (`service status` says so).
fn current_binary() -> Result<PathBuf, Stop> {
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| Stop::Failed(format!("cannot find the path of this agent-os binary: {e}")))?;
    Ok(exe)
}

fn spec(a: &InstallArgs, role: Role, home_flag: Option<&Path>, dirs: &UserDirs, env_file: &Path) -> Result<Spec, Stop> {
    let binary = current_binary()?;
    let home = match (home_flag, role) {
        (Some(h), _) => absolute(h, "--home")?,
        (None, Role::Serve) => {
            absolute(&crate::home::resolve(None).map_err(|e| Stop::Usage(format!("{e:#}")))?, "the home")?
        }
        // The worker's own default home (its spool and lock), never the server's.
        (None, Role::Worker) => dirs.home.join(".agent-os-worker"),
    };
    let log = home.join("logs").join(format!("{}.log", role.word()));
    let mut argv = vec![
        path_text(&binary, "the agent-os binary")?,
        "--env-file".to_string(),
        path_text(env_file, "the env file")?,
        role.word().to_string(),
        "--home".to_string(),
        path_text(&home, "--home")?,
    ];
    if role == Role::Worker {
        let server = a.server.as_deref().ok_or_else(|| {
            Stop::Usage("--worker needs --server URL: the Agent OS server the worker connects to".into())
        })?;
        agent_os_core::url::parse_http(server).map_err(|e| Stop::Usage(format!("--server: {e}")))?;
        argv.extend(["--server".to_string(), server.to_string()]);
        if a.projects.is_empty() {
            return Err(Stop::Usage(
                "--worker needs at least one --project DIR: a directory holding agent-os.yaml that the worker serves"
                    .into(),
            ));
        }
        for dir in &a.projects {
            let root =
                std::fs::canonicalize(dir).map_err(|e| Stop::Usage(format!("--project {}: {e}", dir.display())))?;
            if !root.join(agent_os_core::manifest::MANIFEST_FILE).is_file() {
                return Err(Stop::Usage(format!(
                    "--project {}: there is no {} in it; set the project up first with `agent-os init {}`",
                    dir.display(),
                    agent_os_core::manifest::MANIFEST_FILE,
                    quote(&dir.to_string_lossy())
                )));
            }
            argv.extend(["--project".to_string(), path_text(&root, "--project")?]);
        }
        if let Some(name) = &a.name {
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                return Err(Stop::Usage(format!(
                    "--name {name:?}: give the worker a name without control characters, e.g. --name mac-mini"
                )));
            }
            argv.extend(["--name".to_string(), name.clone()]);
        }
        if let Some(n) = a.capacity {
            argv.extend(["--capacity".to_string(), n.to_string()]);
        }
        if a.allow_http {
            argv.push("--allow-http".to_string());
        }
    }
    Ok(Spec { argv, home, log })
}

// ---------------------------------------------------------------------------------------------
// The files

/// A word of `ExecStart=`, in double quotes: systemd's specifiers (`%`) and variables (`$`)
/// doubled, backslashes and quotes escaped.
fn systemd_word(word: &str) -> String {
    // A lone `;` separates commands even in quotes; `\;` is systemd's literal semicolon.
    if word == ";" {
        return "\\;".to_string();
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A path in a setting systemd does not unquote (`WorkingDirectory=`, `append:`): only its
/// specifiers need escaping, and it may not end in a blank, which systemd would trim.
fn systemd_path(path: &str) -> Result<String, Stop> {
    if path.ends_with(char::is_whitespace) || path.starts_with(char::is_whitespace) {
        return Err(Stop::Usage(format!(
            "{path:?} starts or ends with a blank, which a systemd unit cannot keep: use another path"
        )));
    }
    Ok(path.replace('%', "%%"))
}

fn systemd_unit(layout: &Layout, spec: &Spec) -> Result<String, Stop> {
    let exec = spec.argv.iter().map(|w| systemd_word(w)).collect::<Vec<_>>().join(" ");
    let home = systemd_path(&path_text(&spec.home, "--home")?)?;
    let log = systemd_path(&path_text(&spec.log, "the log")?)?;
    let description = match layout.role {
        Role::Serve => "Agent OS server",
        Role::Worker => "Agent OS worker",
    };
    Ok(format!(
        "# Written by `agent-os service install{flag}`; `agent-os service uninstall{flag}` removes it.\n\
         # Secrets are in the env file named on the command line, never here.\n\
         [Unit]\n\
         Description={description}\n\
         \n\
         [Service]\n\
         ExecStart={exec}\n\
         WorkingDirectory={home}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         StandardOutput=append:{log}\n\
         StandardError=append:{log}\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        flag = layout.role.flag()
    ))
}

fn launchd_plist(layout: &Layout, spec: &Spec) -> Result<String, Stop> {
    use plist::{Dictionary, Value};
    let home = path_text(&spec.home, "--home")?;
    let log = path_text(&spec.log, "the log")?;
    let mut keep_alive = Dictionary::new();
    // Restarted when it fails, like systemd's Restart=on-failure; a clean stop (exit 0 on
    // SIGTERM) stays stopped.
    keep_alive.insert("SuccessfulExit".into(), Value::Boolean(false));
    let mut d = Dictionary::new();
    d.insert("Label".into(), Value::String(layout.name.clone()));
    d.insert("ProgramArguments".into(), Value::Array(spec.argv.iter().cloned().map(Value::String).collect()));
    d.insert("RunAtLoad".into(), Value::Boolean(true));
    d.insert("KeepAlive".into(), Value::Dictionary(keep_alive));
    d.insert("WorkingDirectory".into(), Value::String(home));
    d.insert("StandardOutPath".into(), Value::String(log.clone()));
    d.insert("StandardErrorPath".into(), Value::String(log));
    let mut out = Vec::new();
    Value::Dictionary(d)
        .to_writer_xml(&mut out)
        .map_err(|e| Stop::Failed(format!("cannot write the property list: {e}")))?;
    out.push(b'\n');
    String::from_utf8(out).map_err(|e| Stop::Failed(format!("cannot write the property list: {e}")))
}

/// A variable install copies from its own environment into the env file.
struct Passed {
    name: &'static str,
    /// Its value is never shown, not even by `--print`.
    secret: bool,
}

const fn passed(name: &'static str, secret: bool) -> Passed {
    Passed { name, secret }
}

/// What the server's env file takes from install's environment, in the file's order.
const SERVE_VARS: [Passed; 9] = [
    passed("AGENT_OS_ADMIN_TOKEN", true),
    passed("AGENT_OS_DATABASE_URL", true),
    passed("DATABASE_URL", true),
    passed("PORT", false),
    passed("AGENT_OS_PUBLIC_URL", false),
    passed("AGENT_OS_LOG", false),
    // A service manager starts programs with a minimal PATH; tasks find their interpreters
    // (Homebrew's python3, nvm's node) on the PATH Agent OS passes them, so it is the user's.
    passed("PATH", false),
    passed("LANG", false),
    passed("TZ", false),
];

const WORKER_VARS: [Passed; 5] = [
    passed("AGENT_OS_WORKER_TOKEN", true),
    passed("AGENT_OS_LOG", false),
    passed("PATH", false),
    passed("LANG", false),
    passed("TZ", false),
];

fn vars_of(role: Role) -> &'static [Passed] {
    match role {
        Role::Serve => &SERVE_VARS,
        Role::Worker => &WORKER_VARS,
    }
}

/// The env file as install plans it: the variables in the file now, with those set in
/// install's environment taking their new values.
struct EnvPlan {
    /// Names and values in the file's order: the known variables, then the user's own.
    vars: Vec<(String, String)>,
    /// Names whose value is new or changed.
    changed: Vec<String>,
    /// The file exists, and what it holds.
    existing: Option<Vec<(String, String)>>,
    /// The existing file's mode, when group or others may read it.
    too_open: Option<u32>,
}

/// An env file as it is on disk.
struct ExistingEnv {
    vars: Vec<(String, String)>,
    mode: u32,
}

fn read_existing_env(path: &Path) -> Result<Option<ExistingEnv>, Stop> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_failed("read", path, e)),
    };
    let file = envfile::parse(&text);
    if let Some(p) = file.problems.first() {
        return Err(Stop::Failed(format!(
            "{}:{}: {}; fix or remove that line (the service reads this file at start)",
            path.display(),
            p.line,
            p.message
        )));
    }
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).map_err(|e| io_failed("read", path, e))?.permissions().mode() & 0o777
    };
    // The last assignment of a name wins, as the reader takes it.
    let mut vars: Vec<(String, String)> = Vec::new();
    for e in file.entries {
        match vars.iter_mut().find(|(k, _)| *k == e.key) {
            Some(slot) => slot.1 = e.value,
            None => vars.push((e.key, e.value)),
        }
    }
    Ok(Some(ExistingEnv { vars, mode }))
}

fn plan_env(role: Role, path: &Path) -> Result<EnvPlan, Stop> {
    let existing = read_existing_env(path)?;
    let old: &[(String, String)] = existing.as_ref().map(|e| e.vars.as_slice()).unwrap_or(&[]);
    let lookup = |name: &str| old.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut vars = Vec::new();
    let mut changed = Vec::new();
    for p in vars_of(role) {
        let now = std::env::var(p.name).ok().filter(|v| !v.is_empty());
        let before = lookup(p.name);
        match (now, before) {
            (Some(now), before) => {
                if before.as_deref() != Some(now.as_str()) {
                    changed.push(p.name.to_string());
                }
                vars.push((p.name.to_string(), now));
            }
            (None, Some(before)) => vars.push((p.name.to_string(), before)),
            (None, None) => {}
        }
    }
    for (k, v) in old {
        if !vars_of(role).iter().any(|p| p.name == k) {
            vars.push((k.clone(), v.clone()));
        }
    }
    if role == Role::Worker {
        match vars.iter().find(|(k, _)| k == "AGENT_OS_WORKER_TOKEN") {
            None => {
                return Err(Stop::Usage(
                    "a worker needs its token, and AGENT_OS_WORKER_TOKEN is not set. Make one on the server with \
                     `agent-os token create --worker --project P` (one --project per project the worker serves), \
                     then run install again with it in the environment: \
                     AGENT_OS_WORKER_TOKEN=aosw_… agent-os service install --worker …"
                        .into(),
                ));
            }
            Some((_, token)) if !token.starts_with("aosw_") => {
                return Err(Stop::Usage(
                    "AGENT_OS_WORKER_TOKEN is not a worker token (those start with aosw_); make one with \
                     `agent-os token create --worker --project P`"
                        .into(),
                ));
            }
            Some(_) => {}
        }
    }
    let too_open = existing.as_ref().map(|e| e.mode).filter(|m| m & 0o077 != 0);
    Ok(EnvPlan { vars, changed, existing: existing.map(|e| e.vars), too_open })
}

impl EnvPlan {
    /// Same names and values as the file has now (its comments and order are then kept).
    fn same_as_file(&self) -> bool {
        self.existing
            .as_ref()
            .is_some_and(|old| old.len() == self.vars.len() && old.iter().all(|kv| self.vars.contains(kv)))
    }

    fn text(&self, role: Role, show_secrets: bool) -> String {
        let mut out = format!(
            "# The environment of the {} service (written by `agent-os service install{}`).\n\
             # `agent-os --env-file` reads it at start: KEY=value lines, nothing expanded.\n\
             # It holds secrets: keep it readable by you alone (mode 0600).\n",
            role.title(),
            role.flag()
        );
        for (k, v) in &self.vars {
            let secret = vars_of(role).iter().find(|p| p.name == k).is_none_or(|p| p.secret);
            let shown = if show_secrets || !secret { envfile::quote(v) } else { "<hidden>".to_string() };
            out.push_str(&format!("{k}={shown}\n"));
        }
        out
    }

    fn names(&self) -> String {
        if self.vars.is_empty() {
            return "no variables".into();
        }
        self.vars.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// What install does to one file.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Create,
    Rewrite,
    Unchanged,
}

fn change_of(path: &Path, text: &str) -> Result<Change, Stop> {
    match std::fs::read_to_string(path) {
        Ok(old) if old == text => Ok(Change::Unchanged),
        Ok(_) => Ok(Change::Rewrite),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Change::Create),
        // A file we cannot read as text is rewritten (which will say why if it cannot be).
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(Change::Rewrite),
        Err(e) => Err(io_failed("read", path, e)),
    }
}

/// Writes `text` to `path` through a temporary file in the same directory, created with
/// `mode` (so a secret is never readable by others, not even for a moment), then renamed.
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), Stop> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().ok_or_else(|| Stop::Failed(format!("{} has no directory", path.display())))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_failed("write", path, e));
    }
    Ok(())
}

/// Creates a directory and its missing parents, private to the user (existing ones are left
/// as they are).
fn make_private_dir(dir: &Path) -> Result<(), Stop> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io_failed("create", dir, e))
}

fn make_dir(dir: &Path) -> Result<(), Stop> {
    std::fs::create_dir_all(dir).map_err(|e| io_failed("create", dir, e))
}

// ---------------------------------------------------------------------------------------------
// The service manager

/// One command for the service manager.
struct Step {
    argv: Vec<String>,
    /// Its failure is expected and harmless (stopping a service that is not loaded).
    may_fail: bool,
}

fn step(argv: &[&str]) -> Step {
    Step { argv: argv.iter().map(|s| s.to_string()).collect(), may_fail: false }
}

fn shown(argv: &[String]) -> String {
    argv.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn launchd_target(layout: &Layout) -> String {
    format!("gui/{}/{}", uid(), layout.name)
}

/// The commands that load and start a service that is not loaded yet.
fn start_steps(layout: &Layout) -> Vec<Step> {
    match layout.platform {
        Platform::Systemd => {
            vec![
                step(&["systemctl", "--user", "daemon-reload"]),
                step(&["systemctl", "--user", "enable", "--now", &layout.name]),
            ]
        }
        Platform::Launchd => {
            let domain = format!("gui/{}", uid());
            vec![step(&["launchctl", "bootstrap", &domain, &layout.unit.to_string_lossy()])]
        }
    }
}

/// The commands that make a loaded service take its changed files.
fn restart_steps(layout: &Layout) -> Vec<Step> {
    match layout.platform {
        Platform::Systemd => vec![
            step(&["systemctl", "--user", "daemon-reload"]),
            step(&["systemctl", "--user", "enable", &layout.name]),
            step(&["systemctl", "--user", "restart", &layout.name]),
        ],
        Platform::Launchd => {
            let mut bootout = step(&["launchctl", "bootout", &launchd_target(layout)]);
            bootout.may_fail = true;
            let mut steps = vec![bootout];
            steps.extend(start_steps(layout));
            steps
        }
    }
}

fn stop_steps(layout: &Layout) -> Vec<Step> {
    match layout.platform {
        Platform::Systemd => vec![step(&["systemctl", "--user", "disable", "--now", &layout.name])],
        Platform::Launchd => {
            let mut bootout = step(&["launchctl", "bootout", &launchd_target(layout)]);
            bootout.may_fail = true;
            vec![bootout]
        }
    }
}

/// How a manager command went.
enum Ran {
    Ok(String),
    /// It ran and failed: its exit and what it said, and its standard output.
    Failed(String, String),
    /// It could not be started at all.
    Missing(String),
}

/// Runs a service manager's command through the engine's runner (the one place processes are
/// started), with the scrubbed environment plus what reaching the user's manager needs.
async fn run_manager(argv: &[String], dirs: &UserDirs) -> Ran {
    let mut env = runner::base_env();
    for k in ["XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS", "USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(k) {
            env.push((k.to_string(), v));
        }
    }
    let command = agent_os_core::manifest::Command::Argv(argv.to_vec());
    let timeout = Duration::from_secs(60);
    let spec = runner::ProcessSpec {
        root: &dirs.home,
        command: &command,
        env,
        stdin: Vec::new(),
        timeout,
        kill_grace: Duration::from_secs(2),
    };
    let out = runner::run_captured(spec, 64 * 1024).await;
    match out.exit {
        runner::Exit::Code(0) => Ran::Ok(out.stdout),
        runner::Exit::SpawnFailed(why) if why.starts_with("program not found") => {
            let program = argv.first().map(String::as_str).unwrap_or("");
            Ran::Missing(format!("`{program}` is not on this machine's PATH"))
        }
        runner::Exit::SpawnFailed(why) => Ran::Missing(why),
        exit => {
            let said = if out.stderr_tail.trim().is_empty() { out.stdout.trim() } else { out.stderr_tail.trim() };
            let why = exit.describe(timeout);
            Ran::Failed(if said.is_empty() { why } else { format!("{why}: {said}") }, out.stdout)
        }
    }
}

/// Runs `steps` in order until one fails; `Err` says what failed and lists the commands still
/// to run by hand (the failed one first).
async fn run_steps(steps: &[Step], dirs: &UserDirs) -> Result<(), (String, Vec<String>)> {
    for (i, s) in steps.iter().enumerate() {
        match run_manager(&s.argv, dirs).await {
            Ran::Ok(_) => println!("ran        {}", shown(&s.argv)),
            Ran::Failed(..) if s.may_fail => println!("ran        {} (it was not loaded)", shown(&s.argv)),
            Ran::Failed(why, _) => {
                let rest = steps[i..].iter().map(|s| shown(&s.argv)).collect();
                return Err((format!("`{}` failed: {why}", shown(&s.argv)), rest));
            }
            Ran::Missing(why) => {
                let rest = steps[i..].iter().map(|s| shown(&s.argv)).collect();
                return Err((format!("cannot run `{}`: {why}", shown(&s.argv)), rest));
            }
        }
    }
    Ok(())
}

/// Whether the manager has the service loaded (launchd) or enabled (systemd). A manager that
/// cannot be asked counts as "no", so install tries to start it (and says why it cannot).
async fn is_active_there(layout: &Layout, dirs: &UserDirs) -> bool {
    match layout.platform {
        Platform::Systemd => {
            let argv = ["systemctl", "--user", "is-enabled", &layout.name].map(String::from);
            matches!(run_manager(&argv, dirs).await, Ran::Ok(out) if out.trim() == "enabled")
        }
        Platform::Launchd => {
            let argv = ["launchctl".to_string(), "print".to_string(), launchd_target(layout)];
            matches!(run_manager(&argv, dirs).await, Ran::Ok(_))
        }
    }
}

fn linger_hint(layout: &Layout) {
    if layout.platform == Platform::Systemd {
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).map(|u| quote(&u));
        println!(
            "To keep it running while you are logged out, and start it at boot: loginctl enable-linger {}",
            user.unwrap_or_else(|_| "\"$USER\"".into())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The commands

/// Runs a `service` command; the exit code: 0 done, 1 a file or the service manager failed
/// (files written are left, with the commands that finish the job), 2 bad usage, and for
/// `status` 3 when the service is not installed.
pub async fn run(cmd: &ServiceCmd, home_flag: Option<&Path>) -> u8 {
    let result = match cmd {
        ServiceCmd::Install(a) => install(a, home_flag).await,
        ServiceCmd::Uninstall(a) => uninstall(a).await,
        ServiceCmd::Status(a) => status(a).await,
    };
    result.unwrap_or_else(Stop::report)
}

async fn install(a: &InstallArgs, home_flag: Option<&Path>) -> Result<u8, Stop> {
    let platform = Platform::of(a.platform);
    let role = Role::of(a.worker);
    let dirs = user_dirs()?;
    let layout = Layout::new(platform, role, &dirs);
    let spec = spec(a, role, home_flag, &dirs, &layout.env_file)?;
    let unit_text = match platform {
        Platform::Systemd => systemd_unit(&layout, &spec)?,
        Platform::Launchd => launchd_plist(&layout, &spec)?,
    };
    let env = plan_env(role, &layout.env_file)?;

    if a.print {
        println!("# {}", layout.unit.display());
        print!("{unit_text}");
        println!();
        println!("# {} (mode 0600; secret values hidden)", layout.env_file.display());
        print!("{}", env.text(role, false));
        println!();
        println!("Nothing was written. Without --print, install writes these files and runs:");
        for s in start_steps(&layout) {
            println!("  {}", shown(&s.argv));
        }
        return Ok(0);
    }

    let unit_change = change_of(&layout.unit, &unit_text)?;
    let env_change = match (&env.existing, env.same_as_file()) {
        (None, _) => Change::Create,
        (Some(_), true) => Change::Unchanged,
        (Some(_), false) => Change::Rewrite,
    };
    let log_dir = spec.log.parent().map(Path::to_path_buf).unwrap_or_else(|| spec.home.clone());
    let make_log_dir = !log_dir.is_dir();

    println!("{}, running:", layout.describe());
    println!("  {}", shown(&spec.argv));
    println!();
    let verb = |c: &Change| match c {
        Change::Create => "create    ",
        Change::Rewrite => "rewrite   ",
        Change::Unchanged => "unchanged ",
    };
    println!("{} {}", verb(&unit_change), layout.unit.display());
    let env_note = match (&env_change, env.changed.is_empty()) {
        (Change::Rewrite, false) => format!("new values for {}", env.changed.join(", ")),
        _ => format!("mode 0600: {}", env.names()),
    };
    println!("{} {} ({env_note})", verb(&env_change), layout.env_file.display());
    if let Some(mode) = env.too_open {
        println!("tighten    {} (mode {mode:04o} lets others read it; it becomes 0600)", layout.env_file.display());
    }
    if make_log_dir {
        println!("create     {}/ (the log: {})", log_dir.display(), spec.log.display());
    }

    let anything_written = unit_change != Change::Unchanged || env_change != Change::Unchanged;
    make_private_dir(&log_dir)?;
    if let Some(dir) = layout.env_file.parent() {
        make_private_dir(dir)?;
    }
    if env_change != Change::Unchanged {
        write_file(&layout.env_file, &env.text(role, true), 0o600)?;
    } else if env.too_open.is_some() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&layout.env_file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_failed("change the mode of", &layout.env_file, e))?;
    }
    if unit_change != Change::Unchanged {
        if let Some(dir) = layout.unit.parent() {
            make_dir(dir)?;
        }
        write_file(&layout.unit, &unit_text, 0o644)?;
    }

    let steps = if unit_change == Change::Create {
        start_steps(&layout)
    } else if anything_written {
        restart_steps(&layout)
    } else if is_active_there(&layout, &dirs).await {
        println!();
        println!("Nothing to do: {} is installed as planned.", layout.name);
        print_where(&layout, &spec.log);
        return Ok(0);
    } else {
        start_steps(&layout)
    };
    for s in &steps {
        println!("run        {}", shown(&s.argv));
    }
    println!();
    let code = match run_steps(&steps, &dirs).await {
        Ok(()) => {
            println!("Installed and started {}.", layout.name);
            0
        }
        Err((why, rest)) => {
            eprintln!("error: {why}");
            println!(
                "The files are in place, but {} is not running: {} could not load it. \
                 Once you have a session with {} (a login on this machine), run:",
                layout.name,
                platform.manager(),
                match platform {
                    Platform::Systemd => "systemd's user manager",
                    Platform::Launchd => "launchd",
                }
            );
            for r in rest {
                println!("  {r}");
            }
            1
        }
    };
    print_where(&layout, &spec.log);
    linger_hint(&layout);
    Ok(code)
}

fn print_where(layout: &Layout, log: &Path) {
    println!("Its log: {}", log.display());
    println!("Its state: agent-os service status{}", layout.role.flag());
}

/// What an installed unit or property list says: the command it runs and its log.
struct Installed {
    argv: Option<String>,
    program: Option<PathBuf>,
    log: Option<PathBuf>,
}

fn read_installed(layout: &Layout) -> Result<Option<Installed>, Stop> {
    let bytes = match std::fs::read(&layout.unit) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_failed("read", &layout.unit, e)),
    };
    Ok(Some(match layout.platform {
        Platform::Systemd => {
            let text = String::from_utf8_lossy(&bytes);
            let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).map(String::from);
            let exec = value("ExecStart=");
            let program = exec.as_deref().and_then(|e| {
                let rest = e.strip_prefix('"')?;
                let end = rest.find('"')?;
                Some(PathBuf::from(rest[..end].replace("\\\\", "\\").replace("%%", "%").replace("$$", "$")))
            });
            let log = value("StandardOutput=append:").map(|p| PathBuf::from(p.replace("%%", "%")));
            Installed { argv: exec, program, log }
        }
        Platform::Launchd => {
            let value = plist::Value::from_reader(std::io::Cursor::new(&bytes)).ok();
            let dict = value.as_ref().and_then(plist::Value::as_dictionary);
            let args: Option<Vec<String>> = dict
                .and_then(|d| d.get("ProgramArguments"))
                .and_then(plist::Value::as_array)
                .map(|a| a.iter().filter_map(plist::Value::as_string).map(String::from).collect());
            Installed {
                program: args.as_ref().and_then(|a| a.first()).map(PathBuf::from),
                argv: args.as_ref().map(|a| shown(a)),
                log: dict.and_then(|d| d.get("StandardOutPath")).and_then(plist::Value::as_string).map(PathBuf::from),
            }
        }
    }))
}

async fn uninstall(a: &UninstallArgs) -> Result<u8, Stop> {
    let platform = Platform::of(a.platform);
    let role = Role::of(a.worker);
    let dirs = user_dirs()?;
    let layout = Layout::new(platform, role, &dirs);
    let installed = read_installed(&layout)?;
    let mut code = 0;
    match &installed {
        None => println!("{} is not installed (there is no {}).", layout.name, layout.unit.display()),
        Some(_) => {
            println!("Removing {}:", layout.describe());
            let steps = stop_steps(&layout);
            for s in &steps {
                println!("run        {}", shown(&s.argv));
            }
            println!("remove     {}", layout.unit.display());
            if platform == Platform::Systemd {
                println!("run        systemctl --user daemon-reload");
            }
            println!();
            let stopped = run_steps(&steps, &dirs).await;
            std::fs::remove_file(&layout.unit).map_err(|e| io_failed("remove", &layout.unit, e))?;
            println!("removed    {}", layout.unit.display());
            // The link `enable` made, if systemd could not be asked to remove it.
            if let Some(link) = layout.wants_link()
                && std::fs::symlink_metadata(&link).is_ok()
                && !link.exists()
            {
                std::fs::remove_file(&link).map_err(|e| io_failed("remove", &link, e))?;
                println!("removed    {}", link.display());
            }
            match stopped {
                Ok(()) => {
                    if platform == Platform::Systemd {
                        let reload = step(&["systemctl", "--user", "daemon-reload"]);
                        if let Err((why, _)) = run_steps(&[reload], &dirs).await {
                            eprintln!("warning: {why}");
                        }
                    }
                }
                Err((why, _)) => {
                    eprintln!("error: {why}");
                    let stop = match platform {
                        Platform::Systemd => {
                            format!("systemctl --user stop {} && systemctl --user daemon-reload", layout.name)
                        }
                        Platform::Launchd => format!("launchctl bootout {}", launchd_target(&layout)),
                    };
                    println!(
                        "The unit is removed, but {} could not be asked to stop it. If it still runs: {stop}",
                        platform.manager()
                    );
                    code = 1;
                }
            }
        }
    }
    if a.purge {
        let log = installed.and_then(|i| i.log);
        for path in std::iter::once(layout.env_file.clone()).chain(log) {
            match std::fs::remove_file(&path) {
                Ok(()) => println!("removed    {}", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_failed("remove", &path, e)),
            }
        }
    } else if layout.env_file.exists() {
        println!("kept       {} (--purge removes it, and the log)", layout.env_file.display());
    }
    Ok(code)
}

async fn status(a: &StatusArgs) -> Result<u8, Stop> {
    let platform = Platform::of(a.platform);
    let role = Role::of(a.worker);
    let dirs = user_dirs()?;
    let layout = Layout::new(platform, role, &dirs);
    let Some(installed) = read_installed(&layout)? else {
        println!("{}: not installed (there is no {})", layout.describe(), layout.unit.display());
        println!("Install it: agent-os service install{}", role.flag());
        return Ok(3);
    };
    println!("{}: installed", layout.describe());
    println!("  unit:      {}", layout.unit.display());
    let env = match std::fs::metadata(&layout.env_file) {
        Ok(m) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = m.permissions().mode() & 0o777;
            let warn = if mode & 0o077 != 0 { "; others can read it: chmod 600 it" } else { "" };
            format!("{} (mode {mode:04o}{warn})", layout.env_file.display())
        }
        Err(_) => format!("{} (missing: the service cannot start without it)", layout.env_file.display()),
    };
    println!("  env file:  {env}");
    if let Some(log) = &installed.log {
        println!("  log:       {}", log.display());
    }
    if let Some(argv) = &installed.argv {
        println!("  runs:      {argv}");
    }
    if let Some(program) = &installed.program {
        if !program.exists() {
            println!(
                "  warning:   {} no longer exists; run `agent-os service install{}` again with the binary you use now",
                program.display(),
                role.flag()
            );
        } else if current_binary().is_ok_and(|me| &me != program) {
            println!(
                "  note:      it runs {}, not this binary; `agent-os service install{}` switches it to this one",
                program.display(),
                role.flag()
            );
        }
    }
    match platform {
        Platform::Systemd => {
            let argv = ["systemctl", "--user", "is-active", &layout.name].map(String::from);
            // `is-active` prints the state and exits non-zero for every state but active.
            let said = match run_manager(&argv, &dirs).await {
                Ran::Ok(out) => out.trim().to_string(),
                Ran::Failed(_, out) if !out.trim().is_empty() => out.trim().to_string(),
                Ran::Failed(why, _) | Ran::Missing(why) => format!("cannot tell ({why})"),
            };
            println!("  systemd:   {said}");
        }
        Platform::Launchd => {
            let argv = ["launchctl".to_string(), "print".to_string(), launchd_target(&layout)];
            let said = match run_manager(&argv, &dirs).await {
                Ran::Ok(out) => {
                    let wanted = ["state = ", "pid = ", "last exit code = "];
                    let lines: Vec<&str> =
                        out.lines().map(str::trim).filter(|l| wanted.iter().any(|w| l.starts_with(w))).collect();
                    if lines.is_empty() { "loaded".to_string() } else { lines.join(", ") }
                }
                Ran::Failed(..) => "not loaded".to_string(),
                Ran::Missing(why) => format!("cannot tell ({why})"),
            };
            println!("  launchd:   {said}");
        }
    }
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// --env-file

/// The `--env-file FILE` given before the command (`agent-os --env-file FILE serve …`). It is
/// found before clap parses the command line, so that the variables it sets are seen by
/// options that fall back to the environment (`--database-url`, `--token`, …).
pub fn env_file_arg(args: &[OsString]) -> Option<PathBuf> {
    let mut found = None;
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        let text = arg.to_string_lossy();
        if text == "--env-file" {
            found = args.get(i + 1).map(PathBuf::from);
            i += 2;
        } else if let Some(value) = text.strip_prefix("--env-file=") {
            found = Some(PathBuf::from(value));
            i += 1;
        } else if matches!(text.as_ref(), "--home" | "--url" | "--token") {
            i += 2;
        } else if text.starts_with("--home=") || text.starts_with("--url=") || text.starts_with("--token=") {
            i += 1;
        } else {
            break;
        }
    }
    found
}

/// An env file read for `--env-file`.
pub struct EnvFileVars {
    pub vars: Vec<(String, String)>,
    /// Set when others may read the file.
    pub warning: Option<String>,
}

/// Reads an env file for `--env-file`: dotenv syntax, nothing expanded. A line it cannot read
/// is an error naming the file and line.
pub fn read_env_file(path: &Path) -> Result<EnvFileVars, String> {
    const MAX_BYTES: u64 = 1024 * 1024;
    let meta = std::fs::metadata(path).map_err(|e| format!("--env-file {}: {e}", path.display()))?;
    if meta.len() > MAX_BYTES {
        return Err(format!("--env-file {}: larger than 1 MiB; an env file holds a few variables", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("--env-file {}: {e}", path.display()))?;
    let file = envfile::parse(&text);
    if let Some(p) = file.problems.first() {
        return Err(format!("{}:{}: {}; fix or remove that line", path.display(), p.line, p.message));
    }
    let mut vars = Vec::new();
    for e in file.entries {
        if e.key.is_empty() || e.key.contains(['=', '\0']) || e.value.contains('\0') {
            return Err(format!("{}:{}: a variable cannot hold a NUL character", path.display(), e.line));
        }
        vars.push((e.key, e.value));
    }
    let warning = {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "warning: {} may be read by other users (mode {mode:04o}); make it private: chmod 600 {}",
                path.display(),
                quote(&path.to_string_lossy())
            )
        })
    };
    Ok(EnvFileVars { vars, warning })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_env_file_is_found_only_before_the_command() {
        let cases: [(&[&str], Option<&str>); 7] = [
            (&["agent-os", "--env-file", "/a.env", "serve"], Some("/a.env")),
            (&["agent-os", "--env-file=/b.env", "serve"], Some("/b.env")),
            (&["agent-os", "--home", "/h", "--env-file", "/c.env", "worker"], Some("/c.env")),
            (&["agent-os", "--token=x", "--env-file", "/d.env"], Some("/d.env")),
            (&["agent-os", "serve", "--env-file", "/e.env"], None),
            (&["agent-os", "run", "p", "t", "--input", "--env-file"], None),
            (&["agent-os"], None),
        ];
        for (words, want) in cases {
            assert_eq!(env_file_arg(&args(words)), want.map(PathBuf::from), "{words:?}");
        }
    }

    #[test]
    fn exec_start_words_survive_systemd_s_specifiers_variables_and_quotes() {
        assert_eq!(systemd_word("/opt/agent os/bin"), "\"/opt/agent os/bin\"");
        assert_eq!(systemd_word("100%"), "\"100%%\"");
        assert_eq!(systemd_word("$HOME"), "\"$$HOME\"");
        assert_eq!(systemd_word("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(systemd_word(";"), "\\;");
        assert!(systemd_path("/x/ends in blank ").is_err());
        assert_eq!(systemd_path("/x/50%").ok().as_deref(), Some("/x/50%%"));
    }
}
