//! What a worker runs with: its flags, or a config file (YAML: `server`, `name`, `projects`,
//! `capacity`, `allow_http`) whose values the flags override; its token from `--token` or
//! `AGENT_OS_WORKER_TOKEN`; its home. Also the rule for the server's address: HTTPS, or plain
//! HTTP only to this machine unless `--allow-http` says the network is private.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use agent_os_core::token::TokenKind;

/// The environment variable a worker reads its token from (the service files set it).
pub const TOKEN_ENV: &str = "AGENT_OS_WORKER_TOKEN";

/// Runs at once when neither a flag nor the config file says.
pub const DEFAULT_CAPACITY: usize = 4;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct WorkerArgs {
    /// The Agent OS server to serve: https://…, or http:// to this machine (127.0.0.1, ::1,
    /// localhost) unless --allow-http.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// A project directory this worker serves (its agent-os.yaml is registered with the
    /// server); repeat for several.
    #[arg(long = "project", value_name = "DIR")]
    pub projects: Vec<PathBuf>,
    /// The worker's name on the server (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Most runs at once (default 4).
    #[arg(long)]
    pub capacity: Option<usize>,
    /// A YAML file with `server`, `name`, `projects` (directories, relative to the file) and
    /// `capacity`; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Allow plain http:// to a server that is not on this machine (a private network such as
    /// WireGuard or Tailscale: the token and the task's output cross it unencrypted otherwise).
    #[arg(long)]
    pub allow_http: bool,
}

/// The config file, as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<String>,
    name: Option<String>,
    #[serde(default)]
    projects: Vec<PathBuf>,
    capacity: Option<usize>,
    #[serde(default)]
    allow_http: bool,
}

/// Everything the worker needs to start.
#[derive(Debug)]
pub struct Settings {
    /// The server's URL without a trailing slash.
    pub server: String,
    pub token: String,
    pub name: String,
    pub projects: Vec<PathBuf>,
    pub capacity: usize,
    pub home: PathBuf,
    /// A warning to print: plain HTTP over a network.
    pub warning: Option<String>,
}

/// Puts the flags, the config file, the token and the home together, or says what is missing
/// and how to give it. `token_flag` is `--token` only when given on the command line (the
/// `AGENT_OS_TOKEN` of a client must not become a worker's token by accident); `env_token` is
/// `AGENT_OS_WORKER_TOKEN`.
pub fn settings(
    args: &WorkerArgs,
    token_flag: Option<String>,
    env_token: Option<String>,
    home_flag: Option<&Path>,
) -> Result<Settings> {
    let file = match &args.config {
        Some(path) => read_config(path)?,
        None => FileConfig::default(),
    };
    let base = args.config.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let server = args
        .server
        .clone()
        .or(file.server)
        .context("no server: pass --server https://agent-os.example.com (or `server:` in the --config file)")?;
    let allow_http = args.allow_http || file.allow_http;
    let (server, warning) = check_server(&server, allow_http)?;
    let projects: Vec<PathBuf> = if args.projects.is_empty() {
        file.projects.iter().map(|p| if p.is_absolute() { p.clone() } else { base.join(p) }).collect()
    } else {
        args.projects.clone()
    };
    if projects.is_empty() {
        bail!(
            "no project: pass --project DIR for each project directory this worker serves (or `projects:` in the --config file)"
        );
    }
    let capacity = args.capacity.or(file.capacity).unwrap_or(DEFAULT_CAPACITY);
    if !(1..=256).contains(&capacity) {
        bail!("--capacity {capacity}: give a number of runs at once between 1 and 256");
    }
    let name = args.name.clone().or(file.name).unwrap_or_else(agent_os_engine::process::hostname);
    check_name(&name)?;
    let token = token_flag.or(env_token).filter(|t| !t.is_empty()).with_context(|| {
        format!("no worker token: pass --token or set {TOKEN_ENV} (an admin makes one with `agent-os token create --worker --project NAME --name {name}`)")
    })?;
    let prefix = TokenKind::Worker.prefix();
    if !token.starts_with(prefix) {
        bail!(
            "the token is not a worker token (those start with {prefix}); an admin makes one with `agent-os token create --worker --project NAME --name {name}`"
        );
    }
    let home = match home_flag {
        Some(h) => crate::home::absolute(h)?,
        None => {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .context("HOME is not set; pass --home DIR for the worker's spool")?;
            crate::home::absolute(&PathBuf::from(home).join(".agent-os-worker"))?
        }
    };
    Ok(Settings { server, token, name, projects, capacity, home, warning })
}

fn read_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    agent_os_core::yaml::parse(&path.display().to_string(), &text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The server's URL if it may be used: `https://`, or `http://` to a loopback address, or to
/// anywhere with `allow_http` (then with a warning).
pub fn check_server(text: &str, allow_http: bool) -> Result<(String, Option<String>)> {
    let url = agent_os_core::url::parse_http(text).map_err(|e| anyhow::anyhow!("--server: {e}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        bail!("--server {text:?}: give the server's address without a query or fragment");
    }
    let base = text.trim_end_matches('/').to_string();
    if url.scheme() == "https" {
        return Ok((base, None));
    }
    let host = url.host_str().unwrap_or("");
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok((base, None));
    }
    if allow_http {
        let warning = format!(
            "warning: talking to {base} over plain HTTP: the worker token and the tasks' output cross the network unencrypted; use this only on a private network (WireGuard, Tailscale)"
        );
        return Ok((base, Some(warning)));
    }
    bail!(
        "--server {text:?} is plain HTTP to another machine: the worker token would cross the network unencrypted. Use https://, or pass --allow-http on a private network (WireGuard, Tailscale)"
    )
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        bail!("--name {name:?}: give the worker a name of 1 to 100 printable characters, e.g. --name mac-mini");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "aosw_0123456789abcdef0123456789abcdef";

    #[test]
    fn plain_http_only_to_this_machine_unless_allowed() {
        for ok in [
            "http://127.0.0.1:7700",
            "http://127.1.2.3/",
            "http://[::1]:7700",
            "http://localhost:7700",
            "https://a.example.com/aos/",
        ] {
            let (base, warning) = check_server(ok, false).unwrap();
            assert!(!base.ends_with('/') && warning.is_none(), "{ok}");
        }
        let err = check_server("http://10.0.0.2:7700", false).unwrap_err().to_string();
        assert!(err.contains("--allow-http") && err.contains("https://"), "{err}");
        let (_, warning) = check_server("http://10.0.0.2:7700", true).unwrap();
        assert!(warning.unwrap().contains("unencrypted"));
        assert!(check_server("ftp://x", false).is_err());
        assert!(check_server("http://user:pw@127.0.0.1", false).is_err());
    }

    #[test]
    fn flags_override_the_config_file_whose_directories_are_relative_to_it() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("worker.yaml");
        std::fs::write(
            &file,
            "server: https://aos.example.com\nname: mac-mini\nprojects: [cortana, /abs/image-workflow]\ncapacity: 2\n",
        )
        .unwrap();
        let args = WorkerArgs { config: Some(file.clone()), ..Default::default() };
        let s = settings(&args, None, Some(TOKEN.into()), Some(tmp.path())).unwrap();
        assert_eq!(s.server, "https://aos.example.com");
        assert_eq!((s.name.as_str(), s.capacity), ("mac-mini", 2));
        assert_eq!(s.projects, [tmp.path().join("cortana"), PathBuf::from("/abs/image-workflow")]);
        let args =
            WorkerArgs { config: Some(file), capacity: Some(8), name: Some("other".into()), ..Default::default() };
        let s = settings(&args, Some(TOKEN.into()), None, Some(tmp.path())).unwrap();
        assert_eq!((s.name.as_str(), s.capacity), ("other", 8));
    }

    #[test]
    fn what_is_missing_or_wrong_is_said_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let args = WorkerArgs {
            server: Some("http://127.0.0.1:7700".into()),
            projects: vec![tmp.path().into()],
            ..Default::default()
        };
        let err = settings(&args, None, None, Some(tmp.path())).unwrap_err().to_string();
        assert!(err.contains("AGENT_OS_WORKER_TOKEN") && err.contains("token create --worker"), "{err}");
        let err = settings(&args, Some("aosa_admin".into()), None, Some(tmp.path())).unwrap_err().to_string();
        assert!(err.contains("not a worker token"), "{err}");
        let err = settings(&WorkerArgs::default(), Some(TOKEN.into()), None, None).unwrap_err().to_string();
        assert!(err.contains("--server"), "{err}");
        let file = tmp.path().join("w.yaml");
        std::fs::write(&file, "server: https://a.example.com\nprojets: [x]\n").unwrap();
        let err = settings(&WorkerArgs { config: Some(file), ..Default::default() }, Some(TOKEN.into()), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("w.yaml:2:"), "{err}");
    }
}
