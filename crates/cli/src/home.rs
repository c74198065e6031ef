//! Agent OS's home directory: `config.yaml`, the SQLite database, the local client config
//! (`client.json`, the URL and admin token the CLI uses when given neither), scratch files,
//! and a lock so two servers never share one home.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// `--home`, else `$AGENT_OS_HOME`, else `~/.agent-os`; always absolute.
pub fn resolve(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(h) = flag {
        return absolute(h);
    }
    if let Some(h) = std::env::var_os("AGENT_OS_HOME").filter(|v| !v.is_empty()) {
        return absolute(Path::new(&h));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("neither --home, AGENT_OS_HOME nor HOME is set; pass --home DIR")?;
    absolute(&PathBuf::from(home).join(".agent-os"))
}

/// `path` made absolute against the working directory. A task runs in its project's directory,
/// so a path handed to it (its outputs file lives under the home) must not be relative.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} an absolute path", path.display()))
}

/// Creates the home (private to its owner) if it does not exist.
pub fn ensure(home: &Path) -> Result<()> {
    std::fs::create_dir_all(home).with_context(|| format!("cannot create the Agent OS home {}", home.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// What `serve` leaves for local clients.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub struct ClientConfig {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

pub fn client_config_path(home: &Path) -> PathBuf {
    home.join("client.json")
}

pub fn read_client_config(home: &Path) -> Option<ClientConfig> {
    let text = std::fs::read_to_string(client_config_path(home)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes `client.json` readable by its owner only.
pub fn write_client_config(home: &Path, cfg: &ClientConfig) -> Result<()> {
    let path = client_config_path(home);
    let tmp = home.join(".client.json.tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(cfg)?.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// An exclusive lock on a home, held while the server (or a worker) runs.
pub struct HomeLock(#[allow(dead_code)] std::fs::File);

pub fn lock(home: &Path) -> Result<HomeLock> {
    let message = format!(
        "another Agent OS server is already running with the home {} (it holds {}); stop it first or use another --home",
        home.display(),
        home.join("agent-os.lock").display()
    );
    lock_file(home, "agent-os.lock", &message)
}

/// Takes the lock file `name` in `home`, or fails with `busy` when another process holds it.
pub fn lock_file(home: &Path, name: &str, busy: &str) -> Result<HomeLock> {
    let path = home.join(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor we own; non-blocking exclusive lock.
        let rc = unsafe { libc_flock(file.as_raw_fd()) };
        if rc != 0 {
            bail!("{busy}");
        }
    }
    // Who holds it, for the message of whoever finds it held (`lock_holder`).
    let mut file = file;
    if file.set_len(0).is_ok() {
        let _ = file.write_all(format!("{}\n", std::process::id()).as_bytes());
        let _ = file.flush();
    }
    Ok(HomeLock(file))
}

/// The process id the holder of the lock file `name` wrote into it, when there is one.
pub fn lock_holder(home: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(home.join(name)).ok()?.trim().parse().ok()
}

#[cfg(unix)]
unsafe fn libc_flock(fd: i32) -> i32 {
    unsafe extern "C" {
        fn flock(fd: i32, operation: i32) -> i32;
    }
    const LOCK_EX: i32 = 2;
    const LOCK_NB: i32 = 4;
    unsafe { flock(fd, LOCK_EX | LOCK_NB) }
}

/// The default config file written on first start: every setting, commented out.
pub const DEFAULT_CONFIG: &str = "# Agent OS settings (docs/config.md). Every line is optional; flags and AGENT_OS_* variables override them.\n\
# bind: 127.0.0.1:7700            # listen address; 127.0.0.1 keeps Agent OS private to this machine (unset: 0.0.0.0:$PORT when PORT is set)\n\
# public_url: https://agent-os.example.com  # the URL tasks and browsers use to reach Agent OS (AGENT_OS_URL)\n\
# database_url: postgres://agent_os@db.example.internal/agent_os  # default: a postgres:// DATABASE_URL, else SQLite file agent-os.db here\n\
# durability: normal              # normal: survives a crash of Agent OS; full: also power loss (slower)\n\
# runs:\n\
#   max_concurrent: 16\n\
#   default_timeout: 1h\n\
#   kill_grace: 10s\n\
#   max_retry_delay: 10m\n\
#   log_max_bytes: 1048576\n\
# api:\n\
#   max_body_bytes: 1048576\n\
#   request_timeout: 30s            # longest a call or page may take (waits and streams excepted)\n\
# retention:                        # how long history is kept: a duration (90d, 720h) or forever\n\
#   runs: 90d                       # finished runs with attempts and logs (the latest of each task stays)\n\
#   logs: 30d                       # log lines of finished runs (the run stays, marked as pruned)\n\
#   events: 90d\n\
#   pings: 30d\n\
#   health: 30d                     # probe results (one row per change)\n\
#   notifications: 90d\n\
#   incidents: 180d                 # resolved ones, from when they were resolved\n\
#   workflow_runs: 90d\n\
#   tokens: 7d                      # run tokens and dashboard sessions, from expiry or revocation\n\
#   costs: forever                  # cost records; totals read the daily rollup, which is kept\n";
