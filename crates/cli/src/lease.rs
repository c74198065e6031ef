//! `agent-os lease RESOURCE -- CMD …`: lets a job Agent OS does not run (a Railway cron job, a
//! launchd script) take its turn on a named resource. It waits in line for a lease, runs the
//! command with its own stdio and environment, renews the lease while the command runs, lets
//! go when it ends, and exits with the command's status. If no lease can be had, the command
//! does not run: the point of the lease is that two jobs never collide.

use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use reqwest::Method;
use serde_json::json;

use crate::client::Client;

/// Exit status when no lease could be had (`EX_TEMPFAIL`: try again later).
pub const NO_LEASE: u8 = 75;

#[derive(Args)]
pub struct LeaseArgs {
    /// The resource, as declared under `resources:` in config.yaml (e.g. `openai`).
    pub resource: String,
    /// How long the lease lasts without renewal; it is renewed every third of this while the
    /// command runs, so a crashed holder frees the resource within one TTL.
    #[arg(long, default_value = "1m")]
    pub ttl: String,
    /// How long to wait in line before giving up (the command then does not run).
    #[arg(long, default_value = "5m")]
    pub wait: String,
    /// 0 to 100, higher goes first (default 50).
    #[arg(long)]
    pub priority: Option<i64>,
    /// Who holds it, as `agent-os resources` shows (default: the token's project).
    #[arg(long)]
    pub label: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub async fn run(a: &LeaseArgs, client: &Client) -> u8 {
    let (ttl, wait) = match (agent_os_core::parse_duration(&a.ttl), agent_os_core::parse_duration(&a.wait)) {
        (Ok(t), Ok(w)) => (t, w),
        (Err(e), _) => {
            eprintln!("agent-os lease: --ttl: {e}");
            return 2;
        }
        (_, Err(e)) => {
            eprintln!("agent-os lease: --wait: {e}");
            return 2;
        }
    };
    let resource = agent_os_core::url::encode_component(&a.resource);
    let body = json!({"ttl": a.ttl, "wait": a.wait, "priority": a.priority, "label": a.label});
    let lease: agent_os_server::views::LeaseView = match client
        .call_with_timeout(
            Method::POST,
            &format!("/api/v1/resources/{resource}/leases"),
            Some(&body),
            wait + Duration::from_secs(30),
        )
        .await
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("agent-os lease: no lease on {:?}, so {:?} did not run: {e:#}", a.resource, a.command[0]);
            return NO_LEASE;
        }
    };
    let lease_path = format!("/api/v1/resources/{resource}/leases/{}", agent_os_core::url::encode_component(&lease.id));
    let mut child = match tokio::process::Command::new(&a.command[0])
        .args(&a.command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agent-os lease: cannot start {:?}: {e}", a.command[0]);
            let _ = client.delete(&lease_path).await;
            return 127;
        }
    };
    let pid = child.id();
    let renew_every = (ttl / 3).max(Duration::from_millis(500));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut lost = false;
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            _ = ticker.tick() => {
                let renewed: Result<agent_os_server::views::LeaseView, _> =
                    client.post(&format!("{lease_path}/renew"), &json!({})).await;
                if let Err(e) = renewed
                    && !lost
                {
                    eprintln!("agent-os lease: warning: could not renew the lease on {:?}: {e:#}", a.resource);
                    lost = true;
                }
            }
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {
                // Pass the request to stop on to the command; the lease goes when it ends.
                if let Some(pid) = pid {
                    // SAFETY: signalling our own child process.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
            }
        }
    };
    if let Err(e) = client.delete(&lease_path).await {
        eprintln!("agent-os lease: warning: could not release the lease (it expires by itself): {e:#}");
    }
    crate::exec::exit_code(status)
}
