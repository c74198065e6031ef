//! `agent-os backup FILE` and `agent-os restore FILE`: a checked copy of a home's SQLite
//! database, taken while its server runs (a snapshot by `VACUUM INTO`, or the server's
//! `GET /api/v1/backup` with `--from-server`), and putting such a copy back while no server
//! uses the home, keeping the database it replaces. The database is found as `serve` finds it
//! (`settings::database_url`); on PostgreSQL both commands say how `pg_dump` and `pg_restore`
//! do it, and do nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use agent_os_store::backup::{self, Inspection};
use agent_os_store::sqlite_url;

use crate::client::Client;
use crate::home;
use crate::settings;

#[derive(Args)]
pub struct BackupArgs {
    /// Where to write the copy (refused if it exists, unless --force).
    pub file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// Ask the server (--url, --token, else the home's client.json) for the copy over its API
    /// (GET /api/v1/backup, admin token), instead of reading the home's database file.
    #[arg(long)]
    pub from_server: bool,
    /// The database to copy, as `serve --database-url` takes it (else as `serve` finds it).
    #[arg(long, value_name = "URL", conflicts_with = "from_server")]
    pub database_url: Option<String>,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A copy made by `agent-os backup` (an Agent OS SQLite database).
    pub file: PathBuf,
    /// The database to replace, as `serve --database-url` takes it (else as `serve` finds it).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// The database `serve` would open for `home`: the flag, `AGENT_OS_DATABASE_URL`,
/// `database_url` in config.yaml, a PostgreSQL `DATABASE_URL`, else `HOME/agent-os.db`.
fn database_url(home: &Path, flag: Option<&str>) -> Result<String> {
    let config = crate::serve::read_config(home)?.unwrap_or_default();
    let lookup = |name: &str| std::env::var(name).ok();
    let env = settings::Env::new(&lookup, true);
    let mut notes = Vec::new();
    let chosen = settings::database_url(
        flag,
        config.database_url.as_deref(),
        &env,
        &sqlite_url(&home.join("agent-os.db")),
        &mut notes,
    );
    for note in notes {
        eprintln!("note: {note}");
    }
    Ok(chosen.value)
}

/// Where an SQLite database URL's file is; on PostgreSQL, the advice as the error.
fn sqlite_file(url: &str) -> Result<PathBuf> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        bail!("{}", backup::postgres_advice(url));
    }
    match backup::sqlite_path(url) {
        Some(path) => home::absolute(&path),
        None => bail!("{}: not a database file Agent OS can copy", agent_os_store::redact_url(url)),
    }
}

/// A file name next to `target`, private to this process, for writing before the rename.
fn temporary_beside(target: &Path, what: &str) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "agent-os.db".into());
    target.with_file_name(format!(".{name}.{what}-{}", std::process::id()))
}

/// Now, UTC, as it goes into file names.
fn stamp() -> String {
    jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Checks the copy at `tmp` and moves it to `dest`; the copy is removed if it fails.
async fn check_and_place(tmp: &Path, dest: &Path) -> Result<Inspection> {
    let checked = match backup::inspect(tmp).await {
        Ok(i) => i,
        Err(e) => {
            let _ = std::fs::remove_file(tmp);
            bail!("the copy failed its check, so nothing was written to {}: {e}", dest.display());
        }
    };
    if let Err(e) = std::fs::rename(tmp, dest) {
        let _ = std::fs::remove_file(tmp);
        return Err(e).with_context(|| format!("cannot move the checked copy to {}", dest.display()));
    }
    Ok(Inspection { path: dest.to_path_buf(), ..checked })
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1_u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1_u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

/// `agent-os backup FILE [--force] [--from-server]`.
pub async fn backup(a: &BackupArgs, home_flag: Option<&Path>, client: Option<&Client>) -> Result<u8> {
    let dest = home::absolute(&a.file)?;
    if dest.exists() && !a.force {
        bail!("{} exists; choose another file, or pass --force to replace it", dest.display());
    }
    if dest.is_dir() {
        bail!("{} is a directory; give the backup's file name", dest.display());
    }
    if let Some(parent) = dest.parent()
        && !parent.is_dir()
    {
        bail!("the directory {} does not exist; create it first or choose another place", parent.display());
    }
    let tmp = temporary_beside(&dest, "partial");
    let _ = std::fs::remove_file(&tmp);
    let source = match client {
        Some(client) => {
            download(client, &tmp).await?;
            format!("the server at {}", client.base)
        }
        None => {
            let home = home::resolve(home_flag)?;
            let file = sqlite_file(&database_url(&home, a.database_url.as_deref())?)?;
            if !file.is_file() {
                bail!(
                    "there is no database at {}: has `agent-os serve` run with the home {}? (give --home or --database-url)",
                    file.display(),
                    home.display()
                );
            }
            if let Err(e) = backup::snapshot_file(&file, &tmp).await {
                let _ = std::fs::remove_file(&tmp);
                bail!("cannot copy {}: {e}", file.display());
            }
            file.display().to_string()
        }
    };
    let done = check_and_place(&tmp, &dest).await?;
    println!(
        "backed up {source} to {}: {} ({} bytes), schema version {}, integrity check ok",
        dest.display(),
        human_size(done.bytes),
        done.bytes,
        done.schema.version
    );
    Ok(0)
}

/// Saves the server's `GET /api/v1/backup` answer to `tmp`, checking its length.
async fn download(client: &Client, tmp: &Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    // The snapshot is made before the first byte comes; a large database takes a while.
    let mut resp = client.download("/api/v1/backup", Duration::from_secs(3600)).await?;
    let expected = resp.content_length();
    let mut file = tokio::fs::File::create(tmp).await.with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut written: u64 = 0;
    let outcome: Result<()> = async {
        while let Some(chunk) = resp.chunk().await.context("the server's answer was cut off")? {
            file.write_all(&chunk).await.with_context(|| format!("cannot write {}", tmp.display()))?;
            written += chunk.len() as u64;
        }
        file.sync_all().await.with_context(|| format!("cannot write {}", tmp.display()))?;
        if let Some(n) = expected
            && n != written
        {
            bail!("the server's answer was cut off: {written} of {n} bytes came; try again");
        }
        Ok(())
    }
    .await;
    if outcome.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    outcome
}

/// `agent-os restore FILE`.
pub async fn restore(a: &RestoreArgs, home_flag: Option<&Path>) -> Result<u8> {
    let home = home::resolve(home_flag)?;
    let target = sqlite_file(&database_url(&home, a.database_url.as_deref())?)?;
    let source = home::absolute(&a.file)?;
    let checked = backup::inspect(&source).await.map_err(|e| anyhow::anyhow!("{e}; nothing was restored"))?;
    checked.require_known().map_err(|e| anyhow::anyhow!("{e}; nothing was restored"))?;
    if source == target {
        bail!("{} is the database itself; give a backup made by `agent-os backup`", source.display());
    }
    home::ensure(&home)?;
    // Held until the restore is done, so no server starts on a half-restored home.
    let _lock = match home::lock(&home) {
        Ok(lock) => lock,
        Err(_) => {
            let who = match home::lock_holder(&home, "agent-os.lock") {
                Some(pid) => format!("process {pid}"),
                None => "another process".to_string(),
            };
            bail!(
                "a server is using the home {} ({who} holds {}); stop it first (Ctrl-C where it runs, \
                 `kill {}`, or stop its service), then restore; nothing was restored",
                home.display(),
                home.join("agent-os.lock").display(),
                home::lock_holder(&home, "agent-os.lock").map_or("PID".to_string(), |p| p.to_string())
            );
        }
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // The copy goes next to the database first, so the last step is one rename.
    let tmp = temporary_beside(&target, "restoring");
    let _ = std::fs::remove_file(&tmp);
    std::fs::copy(&source, &tmp).with_context(|| format!("cannot copy {} to {}", source.display(), tmp.display()))?;
    if let Err(e) = std::fs::File::open(&tmp).and_then(|f| f.sync_all()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    let kept = keep_previous(&target)?;
    if let Err(e) = std::fs::rename(&tmp, &target) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot move the restored copy to {}", target.display()));
    }
    println!(
        "restored {} into {} ({}, schema version {}, integrity check ok)",
        source.display(),
        target.display(),
        human_size(checked.bytes),
        checked.schema.version
    );
    if checked.schema.version < checked.schema.newest_known {
        println!(
            "the next `agent-os serve` migrates it from schema version {} to {}",
            checked.schema.version, checked.schema.newest_known
        );
    }
    match kept {
        Some(path) => println!("the database it replaced is kept as {}", path.display()),
        None => println!("there was no database there before"),
    }
    Ok(0)
}

/// Renames the database at `target` (with its `-wal` and `-shm`) to
/// `TARGET.before-restore-STAMP`; the new name, or `None` when there was none.
fn keep_previous(target: &Path) -> Result<Option<PathBuf>> {
    if !target.exists() {
        return Ok(None);
    }
    let kept = PathBuf::from(format!("{}.before-restore-{}", target.display(), stamp()));
    if kept.exists() {
        bail!("{} exists already; wait a second and try again", kept.display());
    }
    // The log first: a log left beside the restored copy could be read into it.
    for suffix in ["-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", target.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{suffix}", kept.display()));
            std::fs::rename(&from, &to)
                .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        }
    }
    std::fs::rename(target, &kept)
        .with_context(|| format!("cannot move {} to {}", target.display(), kept.display()))?;
    Ok(Some(kept))
}
