//! The demo's inbox: a receiver on 127.0.0.1 that the demo's `inbox` channel points at, so a
//! new user sees alerts arrive without configuring Discord or Slack. Each notification is
//! appended to `HOME/inbox.jsonl` and printed as one line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

/// The file the inbox writes, one JSON notification per line.
pub fn inbox_path(home: &Path) -> PathBuf {
    home.join("inbox.jsonl")
}

/// Starts the inbox and returns its port.
pub async fn start(home: &Path) -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot start the demo inbox")?;
    let port = listener.local_addr()?.port();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(inbox_path(home))
        .with_context(|| format!("cannot open {}", inbox_path(home).display()))?;
    let app = axum::Router::new().route("/inbox", axum::routing::post(receive)).with_state(Arc::new(Mutex::new(file)));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the demo inbox stopped");
        }
    });
    Ok(port)
}

async fn receive(State(file): State<Arc<Mutex<std::fs::File>>>, body: axum::body::Bytes) -> StatusCode {
    let Ok(note) = serde_json::from_slice::<Value>(&body) else { return StatusCode::BAD_REQUEST };
    let line = format!("{note}\n");
    let written = file.lock().map(|mut f| f.write_all(line.as_bytes()).is_ok()).unwrap_or(false);
    println!(
        "inbox: [{}] {}{}",
        note["severity"].as_str().unwrap_or("info"),
        note["title"].as_str().unwrap_or(""),
        note["project"].as_str().map(|p| format!(" · {p}")).unwrap_or_default()
    );
    if written { StatusCode::NO_CONTENT } else { StatusCode::INTERNAL_SERVER_ERROR }
}
