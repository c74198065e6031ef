//! The HTTP client behind every command that talks to a running server.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub struct Client {
    pub base: String,
    token: String,
    http: reqwest::Client,
}

/// An error answer from the server, shown to the user as it came.
#[derive(Debug)]
pub struct ServerError {
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServerError {}

impl Client {
    pub fn new(base: String, token: String) -> Self {
        agent_os_engine::plugin::install_crypto_provider();
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Client { base: base.trim_end_matches('/').to_string(), token, http }
    }

    /// Sends a request; an error only when the server could not be asked.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url).bearer_auth(&self.token).timeout(timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!("cannot reach Agent OS at {}: is `agent-os serve` running? (set --url / AGENT_OS_URL to reach another server)", self.base)
            } else {
                anyhow!("{method} {url}: {e}")
            }
        })
    }

    /// Sends a request; an error answer becomes a [`ServerError`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<reqwest::Response> {
        let resp = self.request(method, path, body, timeout).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Err(ServerError { message: explain(status, &text) }.into())
    }

    pub async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&Value>) -> Result<T> {
        self.call_with_timeout(method, path, body, Duration::from_secs(60)).await
    }

    pub async fn call_with_timeout<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<T> {
        let resp = self.send(method, path, body, timeout).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return serde_json::from_value(Value::Null).context("empty answer");
        }
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).with_context(|| format!("unexpected answer from {path}"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send(Method::DELETE, path, None, Duration::from_secs(60)).await?;
        Ok(())
    }

    /// A GET whose answer is a file: the response, to be read as it comes.
    pub async fn download(&self, path: &str, timeout: Duration) -> Result<reqwest::Response> {
        self.send(Method::GET, path, None, timeout).await
    }

    /// Opens a Server-Sent Events stream.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach Agent OS at {}: {e}", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(ServerError { message: explain(status, &text) }.into());
        }
        Ok(resp)
    }
}

/// The server's error body as a readable message, manifest problems one per line.
fn explain(status: StatusCode, text: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return format!("HTTP {status}: {}", text.trim());
    };
    let e = &v["error"];
    let mut msg = e["message"].as_str().unwrap_or("request failed").to_string();
    if let Some(errors) = e["errors"].as_array() {
        if errors.len() > 1 || errors.first().is_some_and(|x| x["hint"].is_string()) {
            msg = errors
                .iter()
                .map(|x| {
                    let mut line = format!(
                        "{}:{}:{}: {}{}",
                        x["file"].as_str().unwrap_or(""),
                        x["line"],
                        x["column"],
                        x["path"].as_str().map(|p| format!("{p}: ")).unwrap_or_default(),
                        x["message"].as_str().unwrap_or("")
                    );
                    if let Some(h) = x["hint"].as_str() {
                        line.push_str(&format!("\n  hint: {h}"));
                    }
                    line
                })
                .collect::<Vec<_>>()
                .join("\n");
        }
    } else if let Some(field) = e["field"].as_str() {
        msg = format!("{msg} (field: {field})");
    }
    msg
}
