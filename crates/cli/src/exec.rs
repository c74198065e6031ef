//! `agent-os exec --check SLUG -- CMD …`: wraps a job that crontab, launchd or Railway runs, so
//! its check hears about it. It pings start, runs the command with its own stdin, environment
//! and working directory (its output still goes where it went, and is also kept for the ping),
//! pings success or the exit status with the tail of the output, and exits with the command's
//! own status. Agent OS being unreachable never fails the job: pings are retried a few times,
//! then a warning goes to stderr.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How much of the end of the output goes with the final ping.
const TAIL: usize = 10 * 1024;

#[derive(Args)]
pub struct ExecArgs {
    /// The check's slug (by default the task name of the schedule it watches).
    #[arg(long)]
    pub check: String,
    /// The project (default: AGENT_OS_PROJECT, else the name in ./agent-os.yaml).
    #[arg(long)]
    pub project: Option<String>,
    /// The check's ping URL, when this machine has no API token (e.g. on Railway).
    #[arg(long, env = "AGENT_OS_PING_URL")]
    pub ping_url: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn project_name(flag: Option<&str>) -> Option<String> {
    if let Some(p) = flag {
        return Some(p.to_string());
    }
    if let Ok(p) = std::env::var("AGENT_OS_PROJECT") {
        return Some(p);
    }
    let text = std::fs::read_to_string(Path::new("agent-os.yaml")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("name:")).map(|n| n.split('#').next().unwrap_or("").trim().to_string())
}

/// Finds the check's ping URL through the API.
async fn lookup(client: Option<&crate::client::Client>, project: Option<String>, slug: &str) -> Result<String, String> {
    let client = client.ok_or("no Agent OS URL and token here; pass --ping-url")?;
    let project = project.ok_or("which project? pass --project")?;
    let path = format!("/api/v1/checks?project={}", agent_os_core::url::encode_component(&project));
    let checks: Vec<agent_os_server::CheckView> = client.get(&path).await.map_err(|e| format!("{e:#}"))?;
    checks
        .into_iter()
        .find(|c| c.slug == slug)
        .map(|c| c.ping_url)
        .ok_or_else(|| format!("project {project:?} has no check {slug:?}"))
}

async fn ping(http: &reqwest::Client, url: &str, body: Vec<u8>) -> bool {
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
        }
        match http.post(url).timeout(Duration::from_secs(10)).body(body.clone()).send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) if r.status().is_client_error() => {
                eprintln!("agent-os exec: warning: {url} answered {}", r.status());
                return false;
            }
            _ => {}
        }
    }
    eprintln!("agent-os exec: warning: could not reach {url}; the job ran anyway");
    false
}

async fn pump(mut from: impl tokio::io::AsyncRead + Unpin, mut to: impl tokio::io::AsyncWrite + Unpin) -> Vec<u8> {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let _ = to.write_all(&buf[..n]).await;
                let _ = to.flush().await;
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * TAIL {
                    tail.drain(..tail.len() - TAIL);
                }
            }
        }
    }
    tail
}

pub async fn run(a: &ExecArgs, client: Option<&crate::client::Client>) -> u8 {
    agent_os_engine::plugin::install_crypto_provider();
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().unwrap_or_default();
    let url = match &a.ping_url {
        Some(u) => Some(u.trim_end_matches('/').to_string()),
        None => match lookup(client, project_name(a.project.as_deref()), &a.check).await {
            Ok(u) => Some(u),
            Err(why) => {
                eprintln!("agent-os exec: warning: {why}; running without pings");
                None
            }
        },
    };
    let rid = agent_os_core::id::new_id();
    if let Some(u) = &url {
        ping(&http, &format!("{u}/start?rid={rid}"), Vec::new()).await;
    }
    let mut child = match tokio::process::Command::new(&a.command[0])
        .args(&a.command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agent-os exec: cannot start {:?}: {e}", a.command[0]);
            if let Some(u) = &url {
                ping(
                    &http,
                    &format!("{u}/127?rid={rid}"),
                    format!("cannot start {:?}: {e}", a.command[0]).into_bytes(),
                )
                .await;
            }
            return 127;
        }
    };
    // Both were asked for as pipes above, so both are there.
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return 127;
    };
    let out = tokio::spawn(pump(stdout, tokio::io::stdout()));
    let err = tokio::spawn(pump(stderr, tokio::io::stderr()));
    let status = child.wait().await;
    let mut tail = out.await.unwrap_or_default();
    tail.extend(err.await.unwrap_or_default());
    if tail.len() > TAIL {
        tail.drain(..tail.len() - TAIL);
    }
    let code = exit_code(status);
    if let Some(u) = &url {
        ping(&http, &format!("{u}/{code}?rid={rid}"), tail).await;
    }
    code
}

/// The shell's view of how a command ended: its exit code, 128+N for signal N, 1 when it could
/// not be waited for.
pub fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => c as u8,
            (None, Some(sig)) => 128u8.saturating_add(sig as u8),
            _ => 1,
        },
        Err(_) => 1,
    }
}
