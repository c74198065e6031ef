//! Prometheus metrics: runs by state, queue depth, run durations, and HTTP request counts and
//! latencies per route.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, State};
use axum::middleware::Next;
use axum::response::Response;

use agent_os_core::RunStatus;
use agent_os_engine::metrics::{HTTP_BUCKETS, Histogram};

use crate::AppState;
use crate::error::ApiError;

/// Per-route request counts (by status) and latency histograms.
#[derive(Default)]
pub struct HttpMetrics {
    routes: Mutex<HashMap<(String, String), Route>>,
}

struct Route {
    by_status: HashMap<u16, u64>,
    latency: Histogram,
}

/// Middleware: counts and times every request by method and route pattern.
pub async fn track(State(http): State<Arc<HttpMetrics>>, req: axum::extract::Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    let elapsed = started.elapsed().as_secs_f64();
    if let Ok(mut routes) = http.routes.lock() {
        let r = routes
            .entry((method, route))
            .or_insert_with(|| Route { by_status: HashMap::new(), latency: Histogram::new(HTTP_BUCKETS) });
        *r.by_status.entry(resp.status().as_u16()).or_insert(0) += 1;
        r.latency.observe(elapsed);
    }
    resp
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub async fn render(st: &AppState) -> Result<String, ApiError> {
    let mut out = String::new();
    let counts = st.engine.store().count_runs_by_status().await?;
    out.push_str("# HELP agent_os_runs Task runs by state.\n# TYPE agent_os_runs gauge\n");
    for status in RunStatus::ALL {
        let n = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "agent_os_runs{{status=\"{}\"}} {n}", status.as_str());
    }
    let queued = counts.iter().find(|(s, _)| *s == RunStatus::Queued).map_or(0, |(_, n)| *n);
    out.push_str("# HELP agent_os_queue_depth Runs waiting to start.\n# TYPE agent_os_queue_depth gauge\n");
    let _ = writeln!(out, "agent_os_queue_depth {queued}");
    out.push_str("# HELP agent_os_runs_executing Runs executing on this node.\n# TYPE agent_os_runs_executing gauge\n");
    let _ = writeln!(out, "agent_os_runs_executing {}", st.engine.running_here());
    out.push_str("# HELP agent_os_run_duration_seconds Time from a run's first start to its end.\n# TYPE agent_os_run_duration_seconds histogram\n");
    st.engine.run_durations.render(&mut out, "agent_os_run_duration_seconds", "");
    let loops = st.engine.loop_health();
    out.push_str("# HELP agent_os_engine_loop_up Whether an engine loop is running (0: died, waiting to be started again, or stopped).\n# TYPE agent_os_engine_loop_up gauge\n");
    for l in &loops {
        let _ = writeln!(out, "agent_os_engine_loop_up{{loop=\"{}\"}} {}", l.name, u8::from(l.running));
    }
    out.push_str("# HELP agent_os_engine_loop_restarts_total Times an engine loop died and was started again.\n# TYPE agent_os_engine_loop_restarts_total counter\n");
    for l in &loops {
        let _ = writeln!(out, "agent_os_engine_loop_restarts_total{{loop=\"{}\"}} {}", l.name, l.restarts);
    }
    if let Ok(routes) = st.http.routes.lock() {
        let mut keys: Vec<_> = routes.keys().cloned().collect();
        keys.sort();
        out.push_str("# HELP agent_os_http_requests_total HTTP requests by method, route and status.\n# TYPE agent_os_http_requests_total counter\n");
        for k in &keys {
            let mut statuses: Vec<_> = routes[k].by_status.iter().collect();
            statuses.sort();
            for (status, n) in statuses {
                let _ = writeln!(
                    out,
                    "agent_os_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                    label(&k.0),
                    label(&k.1)
                );
            }
        }
        out.push_str("# HELP agent_os_http_request_duration_seconds HTTP request latency by method and route.\n# TYPE agent_os_http_request_duration_seconds histogram\n");
        for k in &keys {
            routes[k].latency.render(
                &mut out,
                "agent_os_http_request_duration_seconds",
                &format!("method=\"{}\",route=\"{}\"", label(&k.0), label(&k.1)),
            );
        }
    }
    Ok(out)
}
