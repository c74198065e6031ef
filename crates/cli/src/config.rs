//! `agent-os config`: check a config.yaml without a server (for CI and before a deploy), ask the
//! running server to apply its config.yaml now, and show how the server's config stands.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use agent_os_server::{ConfigReloadView, ConfigStatusView, SourcePlace};

use crate::client::Client;
use crate::commands::print_json;

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Validate a config.yaml the way the server does, without one (every channel, route,
    /// budget, resource and price, with file:line places). Exit 1 when it has errors; a
    /// `${VAR}` this environment lacks is only a warning. No server needed.
    Check {
        /// The file (default: config.yaml in the home).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Ask the running server to apply its config.yaml now (it also does when the file changes,
    /// and on SIGHUP). Exit 1 when the file was refused: the settings in force are kept.
    Reload {
        #[arg(long)]
        json: bool,
    },
    /// The server's config file, when its settings were applied, and the last reload.
    Status {
        #[arg(long)]
        json: bool,
    },
}

/// `config check`: no server, so it runs before the client is made.
pub async fn check(home: Option<&Path>, file: Option<&Path>, json: bool) -> Result<u8> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => crate::home::resolve(home)?.join("config.yaml"),
    };
    let outcome = agent_os_engine::engine::reload::check_file(&path).await;
    let (errors, warnings) = match &outcome {
        Ok((_, warnings)) => (Vec::new(), warnings.clone()),
        Err(errors) => (errors.clone(), Vec::new()),
    };
    if json {
        let errors: Vec<SourcePlace> = errors.into_iter().map(SourcePlace::from).collect();
        print_json(
            &json!({"file": path.display().to_string(), "valid": outcome.is_ok(), "errors": errors, "warnings": warnings}),
        )?;
    } else {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        match &outcome {
            Ok(_) => println!("{}: valid", path.display()),
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                eprintln!("{}: {} error{}", path.display(), errors.len(), if errors.len() == 1 { "" } else { "s" });
            }
        }
    }
    Ok(if outcome.is_ok() { 0 } else { 1 })
}

fn print_reload(r: &ConfigReloadView) {
    if r.applied {
        match r.changed.len() {
            0 => println!("config.yaml applied: nothing changed"),
            _ => println!("config.yaml applied: {} changed", r.changed.join(", ")),
        }
    } else {
        eprintln!("config.yaml refused; the settings in force are kept:");
        for e in &r.errors {
            let place = if e.path.is_empty() { String::new() } else { format!("{}: ", e.path) };
            eprintln!("  {}:{}:{}: {place}{}", e.file, e.line, e.column, e.message);
            if let Some(h) = &e.hint {
                eprintln!("    hint: {h}");
            }
        }
    }
    if !r.restart_required.is_empty() {
        println!("changed, applied at the next restart: {}", r.restart_required.join(", "));
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
}

/// `config reload` and `config status` (`config check` needs no server: [`check`]).
pub async fn run(c: &Client, cmd: &ConfigCmd) -> Result<u8> {
    match cmd {
        ConfigCmd::Check { file, json } => check(None, file.as_deref(), *json).await,
        ConfigCmd::Reload { json } => {
            let r: ConfigReloadView = c.post("/api/v1/config/reload", &json!({})).await?;
            if *json {
                print_json(&r)?;
            } else {
                print_reload(&r);
            }
            Ok(if r.applied { 0 } else { 1 })
        }
        ConfigCmd::Status { json } => {
            let s: ConfigStatusView = c.get("/api/v1/config").await?;
            if *json {
                print_json(&s)?;
                return Ok(0);
            }
            println!("file: {}", s.file.as_deref().unwrap_or("(none: the settings are fixed)"));
            println!("applied at: {}", s.applied_at);
            match &s.last_reload {
                None => println!("last reload: none since the start"),
                Some(r) => {
                    println!("last reload: {} ({})", r.at, r.trigger);
                    print_reload(r);
                }
            }
            Ok(0)
        }
    }
}
