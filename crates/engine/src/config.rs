//! Settings the engine runs with; the binary fills them from `config.yaml`.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This process's identity in the `nodes` table and on attempts it runs.
    pub node_id: String,
    /// URL tasks use to reach the API (`AGENT_OS_URL`).
    pub public_url: String,
    /// The public URL when one is configured (`public_url` in config.yaml, `--public-url`,
    /// `AGENT_OS_PUBLIC_URL`): the base of the signed links notifications carry. `None` (the
    /// server only knows its listen address): notifications carry no links.
    pub links_url: Option<String>,
    /// Where outputs files and other scratch files live (`HOME/run`).
    pub runtime_dir: PathBuf,
    /// Most task runs executing at once on this node.
    pub max_concurrent_runs: usize,
    /// Cap on a run's stored log; the tail is kept.
    pub log_max_bytes: i64,
    /// Timeout of a task that does not set one.
    pub default_timeout: Duration,
    /// SIGTERM → SIGKILL grace of a task that does not set one.
    pub kill_grace: Duration,
    /// Upper bound of the delay between attempts.
    pub max_retry_delay: Duration,
    /// Largest outputs file accepted.
    pub max_output_bytes: u64,
    /// How often this node records that it is alive.
    pub heartbeat_every: Duration,
    /// A node silent this long is dead, and its running attempts are recovered.
    pub node_dead_after: Duration,
    /// How often queued runs are looked for without a wake-up (other nodes' work, retries).
    pub poll_every: Duration,
    /// Whether probes are polled (tests switch them off when they want quiet).
    pub probes_enabled: bool,
    /// Whether the scheduler fires managed schedules by itself (tests that tick the scheduler
    /// call `Engine::schedule_tick` themselves).
    pub schedules_enabled: bool,
    /// Named resources and their limits (`resources:` in config.yaml).
    pub resources: std::collections::HashMap<String, agent_os_core::resource::Limits>,
    /// Budgets from config.yaml (those set over the API live in the store).
    pub budgets: Vec<agent_os_core::config::BudgetDecl>,
    /// Notification channels, their `${VAR}` references resolved.
    pub channels: Vec<agent_os_core::channel::Channel>,
    /// Whether channels may point at this machine or a private network (local sinks, tests).
    pub allow_private_targets: bool,
    /// Routes, channel rules, flapping and maintenance windows from config.yaml.
    pub alerting: agent_os_core::alerting::Alerting,
    /// Where workflow files are read from (`HOME/workflows`); none: no workflows.
    pub workflows_dir: Option<PathBuf>,
    /// How long a worker's poll is held, when a silent worker has lost its attempts, and how
    /// long a worker project may go without a worker (`workers:` in config.yaml).
    pub workers: agent_os_core::config::Workers,
    /// Token prices: the built-in list with `prices:` from config.yaml over it.
    pub prices: agent_os_core::price::PriceTable,
    /// The `config.yaml` these settings came from, watched and applied again when it changes
    /// (`Engine::reload_config`); none: the settings are fixed (tests, embedded uses).
    pub config_file: Option<PathBuf>,
    /// The file as parsed at start, which a reload compares the new text with.
    pub file_config: Option<agent_os_core::config::Config>,
    /// `${VAR}` values for channel URLs that the process provides itself (the demo's inbox
    /// port); a reload reads the environment for the rest, as the start did.
    pub config_vars: std::collections::HashMap<String, String>,
    /// How often the config file is looked at for changes.
    pub config_poll_every: Duration,
    /// How long history is kept (`retention:` in config.yaml); read through
    /// `Engine::retention` only.
    pub retention: agent_os_core::retention::Retention,
    /// When the first prune pass runs after start: never at start itself, when the node has
    /// other work to do first (a few minutes).
    pub prune_first_after: Duration,
    /// How often prune passes run after the first (hourly).
    pub prune_every: Duration,
}

impl EngineConfig {
    pub fn new(node_id: String, public_url: String, runtime_dir: PathBuf) -> Self {
        EngineConfig {
            node_id,
            public_url,
            links_url: None,
            runtime_dir,
            max_concurrent_runs: 16,
            log_max_bytes: 1024 * 1024,
            default_timeout: Duration::from_secs(3600),
            kill_grace: Duration::from_secs(10),
            max_retry_delay: Duration::from_secs(600),
            max_output_bytes: 1024 * 1024,
            heartbeat_every: Duration::from_secs(10),
            node_dead_after: Duration::from_secs(60),
            poll_every: Duration::from_secs(1),
            probes_enabled: true,
            schedules_enabled: true,
            resources: Default::default(),
            budgets: Vec::new(),
            channels: Vec::new(),
            allow_private_targets: false,
            alerting: Default::default(),
            workflows_dir: None,
            workers: Default::default(),
            prices: agent_os_core::price::PriceTable::built_in(),
            config_file: None,
            file_config: None,
            config_vars: Default::default(),
            config_poll_every: Duration::from_secs(2),
            retention: Default::default(),
            prune_first_after: Duration::from_secs(300),
            prune_every: Duration::from_secs(3600),
        }
    }

    /// Takes the settings `config.yaml` decides and that apply without a restart, with its
    /// channels already resolved. The start and every reload go through here, so the two
    /// cannot disagree on what a setting means.
    pub fn apply_file(
        &mut self,
        config: &agent_os_core::config::Config,
        channels: Vec<agent_os_core::channel::Channel>,
    ) {
        self.resources = config.resources.clone().into_iter().collect();
        self.budgets = config.budgets.clone();
        self.prices = config.prices.clone();
        self.allow_private_targets = config.allow_private_targets;
        self.alerting = config.alerting.clone();
        self.channels = channels;
        self.max_concurrent_runs = config.max_concurrent_runs as usize;
        self.default_timeout = config.default_timeout;
        self.kill_grace = config.kill_grace;
        self.max_retry_delay = config.max_retry_delay;
        self.log_max_bytes = config.log_max_bytes as i64;
        self.workers = config.workers;
        self.retention = config.retention.clone();
        self.file_config = Some(config.clone());
    }
}
