//! `agent-os healthcheck`: asks a server's `/healthz` (no token) whether it is up, for a
//! container's `HEALTHCHECK`, whose image has no curl. The server is `--url`/`AGENT_OS_URL`,
//! else the address `serve` wrote into the home's `client.json` (the one it listens on), else
//! `127.0.0.1:$PORT`, else the default address.

use std::path::Path;
use std::time::Duration;

use crate::home;

/// How long the whole probe may take: a server slower than this is not healthy.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The server to ask.
fn server_url(home_flag: Option<&Path>, url: Option<String>) -> String {
    if let Some(u) = url {
        return u;
    }
    if let Some(stored) = home::resolve(home_flag).ok().and_then(|h| home::read_client_config(&h)) {
        return stored.url;
    }
    match std::env::var("PORT").ok().and_then(|p| p.trim().parse::<u16>().ok()).filter(|p| *p > 0) {
        Some(port) => format!("http://127.0.0.1:{port}"),
        None => format!("http://{}", agent_os_core::config::DEFAULT_BIND),
    }
}

/// Exit 0 when `/healthz` answers 200, else 1 with the reason on stderr.
pub async fn run(home_flag: Option<&Path>, url: Option<String>) -> u8 {
    agent_os_engine::plugin::install_crypto_provider();
    let base = server_url(home_flag, url);
    let target = format!("{}/healthz", base.trim_end_matches('/'));
    let http = match reqwest::Client::builder().timeout(TIMEOUT).no_proxy().build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("unhealthy: cannot make an HTTP client: {e}");
            return 1;
        }
    };
    let resp = match http.get(&target).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("unhealthy: GET {target}: {e}");
            return 1;
        }
    };
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let said = body["status"].as_str().unwrap_or("(no status)");
    if status.is_success() {
        println!(
            "{said}: Agent OS {} on {}",
            body["version"].as_str().unwrap_or("?"),
            body["database"].as_str().unwrap_or("?")
        );
        0
    } else {
        eprintln!("unhealthy: GET {target} answered {status}: {said}");
        1
    }
}
