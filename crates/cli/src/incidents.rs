//! `agent-os incidents`, `agent-os ack` and `agent-os maintenance`: what is broken, who is on
//! it, and when nothing should alert.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::client::Client;
use crate::commands::{print_json, print_list, query};
use crate::table::{render, short_time};
use agent_os_core::alerting::IncidentStatus;
use agent_os_core::url::encode_component as enc;
use agent_os_server::{IncidentView, MaintenanceView};

#[derive(Args)]
pub struct IncidentsArgs {
    /// Only open incidents.
    #[arg(long)]
    pub open: bool,
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct AckArgs {
    /// The incident's id (from `agent-os incidents`).
    pub id: String,
    /// Who is on it (default: the kind of token used).
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum MaintenanceCmd {
    /// Windows in force or planned (from the API and from config.yaml).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Start a window now (or at --start): nothing about the project (or anything) alerts.
    Start {
        /// The project it covers; without it, everything.
        #[arg(long)]
        project: Option<String>,
        /// How long, e.g. 2h (or give --end).
        #[arg(long = "for")]
        duration: Option<String>,
        /// RFC 3339 start (default now).
        #[arg(long)]
        start: Option<String>,
        /// RFC 3339 end.
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// End a window now.
    End { id: String },
}

fn took(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

pub async fn incidents(c: &Client, a: &IncidentsArgs) -> Result<u8> {
    let q = query(&[
        ("open", a.open.then(|| "true".to_string())),
        ("project", a.project.clone()),
        ("limit", Some(a.limit.to_string())),
    ]);
    let list: Vec<IncidentView> = c.get(&format!("/api/v1/incidents{q}")).await?;
    let empty = if a.open { "no open incidents" } else { "no incidents yet" };
    print_list(a.json, &list, empty, &["ID", "OPENED (UTC)", "FOR", "SEVERITY", "STATE", "TITLE", "REASON"], |i| {
        let mut state = i.status.to_string();
        if i.flapping {
            state.push_str(", flapping");
        }
        if let Some(by) = &i.acked_by {
            state.push_str(&format!(", acked by {by}"));
        }
        if i.status == IncidentStatus::Open && !i.notified {
            state.push_str(", not yet told");
        }
        vec![
            i.id.clone(),
            short_time(&i.opened_at),
            took(i.duration_s),
            i.severity.to_string(),
            state.to_string(),
            i.title.clone(),
            i.reason.clone(),
        ]
    })?;
    Ok(0)
}

pub async fn ack(c: &Client, a: &AckArgs) -> Result<u8> {
    let body = match &a.by {
        Some(by) => json!({ "by": by }),
        None => json!({}),
    };
    let i: IncidentView = c.post(&format!("/api/v1/incidents/{}/ack", enc(&a.id)), &body).await?;
    if a.json {
        print_json(&i)?;
    } else {
        println!(
            "acknowledged {} ({}) by {}; it stays open until it recovers",
            i.id,
            i.title,
            i.acked_by.as_deref().unwrap_or("-")
        );
    }
    Ok(0)
}

pub async fn maintenance(c: &Client, m: &MaintenanceCmd) -> Result<u8> {
    match m {
        MaintenanceCmd::List { json } => {
            let list: Vec<MaintenanceView> = c.get("/api/v1/maintenance").await?;
            print_list(
                *json,
                &list,
                "no maintenance windows: `agent-os maintenance start --for 2h [--project P]`",
                &["ID", "COVERS", "WHEN (UTC)", "ACTIVE", "REASON"],
                |w| {
                    vec![
                        w.id.clone().unwrap_or_else(|| "(config)".into()),
                        w.project.clone().unwrap_or_else(|| "everything".into()),
                        w.recurring.clone().unwrap_or_else(|| {
                            format!(
                                "{} → {}",
                                w.starts_at.as_deref().map(short_time).unwrap_or_default(),
                                w.ends_at.as_deref().map(short_time).unwrap_or_default()
                            )
                        }),
                        if w.active { "now".into() } else { "-".into() },
                        w.reason.clone().unwrap_or_default(),
                    ]
                },
            )?;
            Ok(0)
        }
        MaintenanceCmd::Start { project, duration, start, end, reason, json } => {
            let body = json!({"project": project, "duration": duration, "start": start, "end": end, "reason": reason});
            let w: MaintenanceView = c.post("/api/v1/maintenance", &body).await?;
            if *json {
                print_json(&w)?;
            } else {
                println!(
                    "maintenance {} for {} until {} UTC",
                    w.id.as_deref().unwrap_or("-"),
                    w.project.as_deref().unwrap_or("everything"),
                    w.ends_at.as_deref().map(short_time).unwrap_or_default()
                );
            }
            Ok(0)
        }
        MaintenanceCmd::End { id } => {
            c.delete(&format!("/api/v1/maintenance/{}", enc(id))).await?;
            println!("maintenance {id} ended");
            Ok(0)
        }
    }
}

#[derive(Args)]
pub struct HealthArgs {
    /// One project, with its reasons and probe history; without it, every project.
    pub project: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn health(c: &Client, a: &HealthArgs) -> Result<u8> {
    let names: Vec<String> = match &a.project {
        Some(p) => vec![p.clone()],
        None => {
            let list: Vec<serde_json::Value> = c.get("/api/v1/projects").await?;
            list.iter().filter_map(|p| p["name"].as_str().map(str::to_string)).collect()
        }
    };
    let mut all = Vec::new();
    for name in &names {
        let history = if a.project.is_some() { 10 } else { 0 };
        let h: agent_os_server::ProjectHealthView =
            c.get(&format!("/api/v1/projects/{}/health?history={history}", enc(name))).await?;
        all.push(h);
    }
    if a.json {
        print_json(&all)?;
        return Ok(0);
    }
    if all.is_empty() {
        println!("no projects registered: `agent-os project add PATH`");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|h| {
            let why: Vec<String> = h.reasons.iter().map(|r| format!("{}: {}", r.source, r.message)).collect();
            vec![h.project.clone(), h.state.to_string(), if why.is_empty() { "-".into() } else { why.join("; ") }]
        })
        .collect();
    print!("{}", render(&["PROJECT", "HEALTH", "WHY"], &rows));
    if let [one] = &all[..]
        && !one.history.is_empty()
    {
        println!();
        let rows: Vec<Vec<String>> = one
            .history
            .iter()
            .map(|e| {
                vec![
                    short_time(&e.at),
                    e.kind.to_string(),
                    e.state.to_string(),
                    format!("{} ms", e.duration_ms),
                    e.message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print!("{}", render(&["AT (UTC)", "PROBE", "STATE", "TOOK", "MESSAGE"], &rows));
    }
    Ok(0)
}
