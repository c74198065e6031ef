//! `agent-os serve` and `agent-os demo`: open the home, the database and the admin token, start
//! the engine and the HTTP server, and stop cleanly on SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use agent_os_core::config::Config;
use agent_os_engine::engine::reload::{MissingVars, ReloadTrigger, resolve_channels};
use agent_os_engine::secrets::{TokenKind, hash_token, new_token, token_record};
use agent_os_engine::{Clock, Engine, EngineConfig, SystemClock};
use agent_os_store::{Durability, SqlStore, Store, StoreError, StoreOptions, redact_url, sqlite_url};

use crate::home::{self, ClientConfig};
use crate::settings;

/// Settings given on the command line (they win over config.yaml).
#[derive(Default, Clone)]
pub struct ServeFlags {
    pub bind: Option<String>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    /// Whether a hosting platform's `PORT` and `DATABASE_URL` count (`serve`; `demo` never
    /// runs hosted, and must not take a database meant for another program).
    pub platform_env: bool,
    /// `${VAR}` values for channel URLs that the process provides itself (the demo's inbox
    /// port); the environment is read for the rest.
    pub vars: std::collections::HashMap<String, String>,
}

/// A server that is up: the engine, the bound address and what to tell the user.
pub struct Running {
    pub engine: Arc<Engine>,
    pub url: String,
    /// Set when the admin token was created now (shown once).
    pub new_admin_token: Option<String>,
    /// Where the listen address, database and public URL came from, one line each, and what
    /// the environment set that lost to them (`settings`).
    pub origins: Vec<String>,
    pub notes: Vec<String>,
    listener: Option<tokio::net::TcpListener>,
    config: Config,
    _lock: home::HomeLock,
}

/// The home's `config.yaml`, validated; `None` when the home has none (the defaults apply).
pub(crate) fn read_config(home: &Path) -> Result<Option<Config>> {
    let path = home.join("config.yaml");
    match std::fs::read_to_string(&path) {
        Ok(text) => Config::parse(&path.display().to_string(), &text).map(Some).map_err(|e| anyhow::anyhow!("{e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The home's `config.yaml`; a home without one gets the commented default file written.
fn load_config(home: &Path) -> Result<Config> {
    match read_config(home)? {
        Some(config) => Ok(config),
        None => {
            let _ = std::fs::write(home.join("config.yaml"), home::DEFAULT_CONFIG);
            Ok(Config::default())
        }
    }
}

/// The config's channels with their `${VAR}`s resolved and their addresses checked, as every
/// reload does too (`agent_os_engine::engine::reload`): a channel every delivery would refuse,
/// or one whose variable is not set, stops the start with its place in the file; a name that
/// does not resolve now is only a warning.
async fn channels(home: &Path, config: &Config, flags: &ServeFlags) -> Result<Vec<agent_os_core::channel::Channel>> {
    let file = home.join("config.yaml").display().to_string();
    let vars = flags.vars.clone();
    let lookup = move |var: &str| vars.get(var).cloned().or_else(|| std::env::var(var).ok());
    let resolved = resolve_channels(&file, config, &lookup, MissingVars::Error).await;
    for w in &resolved.warnings {
        eprintln!("warning: {w}");
    }
    match resolved.into_result() {
        Ok((channels, _)) => Ok(channels),
        Err(errors) => bail!("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
    }
}

/// Ensures an admin token exists. `AGENT_OS_ADMIN_TOKEN` sets it (and retires the others);
/// otherwise one is generated on first start. Returns a newly generated token. Servers that
/// start together on one PostgreSQL database take turns in the store, so each finds the token
/// the first one stored (and only one token is generated).
async fn admin_token(store: &dyn Store, now: i64) -> Result<(Option<String>, Option<String>)> {
    if let Some(given) = std::env::var("AGENT_OS_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()) {
        if given.len() < 24 {
            bail!("AGENT_OS_ADMIN_TOKEN is too short: use at least 24 random characters");
        }
        let record = token_record(TokenKind::Admin, "from AGENT_OS_ADMIN_TOKEN", hash_token(&given), None, now);
        match store.set_admin_token(&record, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                bail!("AGENT_OS_ADMIN_TOKEN matches a revoked or non-admin token; choose a new value")
            }
            Err(e) => return Err(e.into()),
        }
        return Ok((None, Some(given)));
    }
    let (token, hash) = new_token(TokenKind::Admin);
    if store
        .insert_first_admin_token(&token_record(TokenKind::Admin, "generated on first start", hash, None, now))
        .await?
    {
        return Ok((Some(token.clone()), Some(token)));
    }
    Ok((None, None))
}

/// Opens everything and binds the listener, but does not serve yet.
pub async fn start(home: &Path, flags: &ServeFlags) -> Result<Running> {
    home::ensure(home)?;
    let lock = home::lock(home)?;
    let config = load_config(home)?;
    // Channels are checked before anything is created: a config that cannot work stops here.
    let channels = channels(home, &config, flags).await?;
    let clock = SystemClock;
    let now = clock.now_ms();

    let lookup = |name: &str| std::env::var(name).ok();
    let env = settings::Env::new(&lookup, flags.platform_env);
    let mut notes = Vec::new();
    let public = settings::public_url(flags.public_url.as_deref(), config.public_url.as_deref(), &env)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bind = settings::listen_address(flags.bind.as_deref(), config.bind.as_deref(), &env, &mut notes)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind(&bind.value)
        .await
        .with_context(|| format!("cannot listen on {} ({})", bind.value, bind.source))?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let local_url = format!("http://{host}:{}", addr.port());

    // The database and the admin token come after the listener: a first start that cannot
    // bind must not create (and lose) the admin token.
    let database = settings::database_url(
        flags.database_url.as_deref(),
        config.database_url.as_deref(),
        &env,
        &sqlite_url(&home.join("agent-os.db")),
        &mut notes,
    );
    let url = database.value.clone();
    let mut opts = StoreOptions::new(url.clone());
    opts.durability = match config.durability {
        agent_os_core::config::Durability::Full => Durability::Full,
        agent_os_core::config::Durability::Normal => Durability::Normal,
    };
    let store =
        SqlStore::open(&opts, now).await.with_context(|| format!("cannot open the database {}", redact_url(&url)))?;
    let store: Arc<dyn Store> = Arc::new(store);
    store.init_setting("install_id", &agent_os_core::id::new_id()).await?;
    let (new_admin_token, known_token) = admin_token(store.as_ref(), now).await?;

    let links_url = public.as_ref().map(|p| p.value.clone());
    let public_url = public.clone().map_or_else(|| local_url.clone(), |p| p.value);
    if let Some(warning) = settings::exposure_warning(addr, &public_url) {
        eprintln!("warning: {warning}");
        tracing::warn!("{warning}");
    }
    let origins = vec![
        format!("listen address: {addr} ({})", bind.source),
        match database.source {
            settings::Source::Default => {
                format!("database: the SQLite file {} (default)", home.join("agent-os.db").display())
            }
            source => format!("database: {} ({source})", redact_url(&database.value)),
        },
        match &public {
            Some(p) => format!("public URL: {} ({})", p.value, p.source),
            None => format!("public URL: {public_url} (the listen address)"),
        },
    ];

    // The local client config: the URL always, the admin token when we know it.
    let previous = home::read_client_config(home);
    let token = known_token.or_else(|| previous.and_then(|c| c.token));
    home::write_client_config(home, &ClientConfig { url: local_url.clone(), token })?;

    let mut ecfg = EngineConfig::new(agent_os_core::id::new_id(), public_url, home.join("run"));
    ecfg.links_url = links_url;
    ecfg.apply_file(&config, channels);
    ecfg.config_file = Some(home.join("config.yaml"));
    ecfg.config_vars = flags.vars.clone();
    let workflows = home.join("workflows");
    std::fs::create_dir_all(&workflows).with_context(|| format!("cannot create {}", workflows.display()))?;
    ecfg.workflows_dir = Some(workflows);
    let engine = Engine::start(store, Arc::new(clock), ecfg).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Running {
        engine,
        url: local_url,
        new_admin_token,
        origins,
        notes,
        listener: Some(listener),
        config,
        _lock: lock,
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Applies config.yaml again on each SIGHUP, and says on stderr what it did.
async fn reload_on_hangup(engine: Arc<Engine>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else { return };
        while hangup.recv().await.is_some() {
            let r = engine.reload_config(ReloadTrigger::Signal).await;
            if r.applied {
                let changed = if r.changed.is_empty() { "nothing changed".to_string() } else { r.changed.join(", ") };
                eprintln!("SIGHUP: config.yaml applied ({changed})");
                if !r.restart_required.is_empty() {
                    eprintln!("  a restart applies: {}", r.restart_required.join(", "));
                }
            } else {
                eprintln!("SIGHUP: config.yaml refused; the settings in force are kept:");
                for e in &r.errors {
                    eprintln!("  {e}");
                }
            }
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await;
}

impl Running {
    /// Serves until SIGINT/SIGTERM, then lets running tasks finish (up to 10 s) and stops. When
    /// the engine stops on its own (a loop that could not be kept running), the server stops
    /// the same way and this returns the reason, so the process exits non-zero.
    pub async fn serve(mut self) -> Result<()> {
        let listener = self.listener.take().context("server already started")?;
        let opts = agent_os_server::ServerOptions {
            max_body_bytes: self.config.max_body_bytes as usize,
            trusted_proxies: self.config.trusted_proxies.clone(),
            request_timeout: self.config.request_timeout,
        };
        let engine = self.engine.clone();
        let stop = async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                why = engine.failed() => eprintln!("error: the engine stopped: {why}"),
            }
            // Stop claiming work and end long waits first, so the HTTP server drains quickly.
            engine.begin_shutdown();
        };
        let trimming = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(crate::memory::trim_loop()));
        let hangups = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(reload_on_hangup(self.engine.clone())));
        agent_os_server::run(listener, self.engine.clone(), opts, stop).await?;
        drop(trimming);
        drop(hangups);
        eprintln!("stopping: waiting up to 10s for running tasks");
        self.engine.shutdown(Duration::from_secs(10)).await;
        // Last: on SQLite this truncates the write-ahead log, so the next start reads nothing back.
        self.engine.store().close().await;
        match self.engine.failure() {
            Some(why) => bail!("Agent OS stopped because {why}"),
            None => Ok(()),
        }
    }
}

pub async fn serve(home: &Path, flags: &ServeFlags) -> Result<()> {
    let running = start(home, flags).await?;
    println!("Agent OS {} listening on {}", env!("CARGO_PKG_VERSION"), running.url);
    println!("dashboard: {}/", running.url.trim_end_matches('/'));
    println!("home: {}", home.display());
    for line in &running.origins {
        println!("{line}");
    }
    for note in &running.notes {
        eprintln!("note: {note}");
    }
    if let Some(token) = &running.new_admin_token {
        println!(
            "admin token (shown once; also saved for the local CLI in {}):\n  {token}",
            home::client_config_path(home).display()
        );
    }
    running.serve().await
}

include!(concat!(env!("OUT_DIR"), "/examples.rs"));

/// Writes the embedded example projects under `dir`.
pub fn write_examples(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut roots = std::collections::BTreeSet::new();
    for (rel, bytes, exec) in EXAMPLE_FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        if *exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        if let Some(project) = Path::new(rel).components().next() {
            roots.insert(dir.join(project.as_os_str()));
        }
    }
    Ok(roots.into_iter().collect())
}

/// `examples/workflows`.
const DEMO_WORKFLOWS: [(&str, &str); 2] = [
    ("volatility-to-memories.yaml", include_str!("../../../examples/workflows/volatility-to-memories.yaml")),
    ("market-watch.yaml", include_str!("../../../examples/workflows/market-watch.yaml")),
];

/// `examples/config.yaml`.
const DEMO_CONFIG: &str = include_str!("../../../examples/config.yaml");

pub async fn demo(home: Option<&Path>, flags: &ServeFlags) -> Result<()> {
    let home = match home {
        Some(h) => h.to_path_buf(),
        None => {
            let base = std::env::temp_dir().join(format!("agent-os-demo-{}", &agent_os_core::id::new_id()[..13]));
            std::fs::create_dir_all(&base)?;
            base
        }
    };
    // The demo's own settings (a shared openai resource, budgets), unless the home has some.
    let config = home.join("config.yaml");
    if !config.exists() {
        std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
        std::fs::write(&config, DEMO_CONFIG).with_context(|| format!("cannot write {}", config.display()))?;
    }
    // The inbox the demo config's `inbox` channel points at.
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let inbox_port = crate::inbox::start(&home).await?;
    let mut flags = flags.clone();
    flags.vars.insert("AGENT_OS_DEMO_INBOX_PORT".into(), inbox_port.to_string());
    let running = start(&home, &flags).await?;
    let projects_dir = home.join("projects");
    let roots = write_examples(&projects_dir)?;
    let mut names = Vec::new();
    for root in roots {
        let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match running.engine.register_path(&root).await {
            Ok((p, _)) => names.push(p.record.name.clone()),
            Err(agent_os_engine::EngineError::Conflict(_)) => {
                running.engine.reload(&name, None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                names.push(name);
            }
            Err(e) => bail!("cannot register the example project {}: {e}", root.display()),
        }
    }
    // The example workflows, unless the home has its own version of one.
    for (file, text) in DEMO_WORKFLOWS {
        let path = home.join("workflows").join(file);
        if !path.exists() {
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    for e in running.engine.load_workflows().await.map_err(|e| anyhow::anyhow!("{e}"))? {
        eprintln!("workflow not loaded: {}", e.message);
    }
    let token =
        home::read_client_config(&home).and_then(|c| c.token).unwrap_or_else(|| "(see AGENT_OS_ADMIN_TOKEN)".into());
    println!("Agent OS demo {} listening on {}", env!("CARGO_PKG_VERSION"), running.url);
    println!("home: {}", home.display());
    println!("admin token: {token}");
    println!("dashboard: open {}/ in a browser and log in with the admin token", running.url.trim_end_matches('/'));
    println!("example projects: {} (in {})", names.join(", "), projects_dir.display());
    println!("alerts land in the inbox: {}", crate::inbox::inbox_path(&home).display());
    println!();
    println!("Try, in another terminal:");
    println!("  export AGENT_OS_HOME={}", home.display());
    if let Ok(exe) = std::env::current_exe() {
        println!("  alias agent-os={}", exe.display());
    }
    println!("  agent-os project list");
    println!("  agent-os run trading scan_market --input '{{\"symbols\": [\"BTC\", \"ETH\"]}}' --wait");
    println!("  agent-os runs");
    println!(
        "  agent-os run trading scan_market --input '{{\"fail\": true}}' --wait   # an incident, told to the inbox"
    );
    println!("  agent-os incidents --open");
    println!(
        "  agent-os run trading scan_market --input '{{\"force_spike\": \"ETH\"}}' --wait   # a spike event starts volatility-to-memories"
    );
    println!("  agent-os workflow runs");
    println!(
        "  curl -s -H \"Authorization: Bearer $(python3 -c 'import json;print(json.load(open(\"{}\"))[\"token\"])')\" {}/api/v1/projects",
        home::client_config_path(&home).display(),
        running.url
    );
    running.serve().await
}
