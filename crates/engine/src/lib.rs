//! The Agent OS engine: everything that acts. It loads projects from their manifests, queues
//! and dispatches task runs, runs tasks (the only code that spawns processes), talks to
//! plugins over the command and HTTP transports, polls status and cost probes, and recovers
//! work a crashed process left behind. It owns no HTTP server; the server crate calls it.

pub mod audit;
pub mod clock;
pub mod command;
pub mod config;
pub mod costs;
pub mod engine;
pub mod mail;
pub mod metrics;
pub mod plugin;
pub mod process;
pub mod project;
pub mod runner;
pub mod secrets;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::{Clock, SystemClock, TokioClock};
pub use config::EngineConfig;
pub use engine::budgets::BudgetInput;
pub use engine::health::{HealthState, ProjectHealth};
pub use engine::incidents::{ActiveMaintenance, Alert};
pub use engine::monitor::{DiscoveredSchedule, Registration};
pub use engine::notify::{Notified, NotifyInput};
pub use engine::resources::{LeaseOptions, explain_wait};
pub use engine::retention::{KindPass, PrunePass, prune_pass};
pub use engine::scheduler::{ScheduleRef, schedule_ident};
pub use engine::signing::SigningSecret;
pub use engine::supervisor::{Loop, LoopHealth};
pub use engine::{Engine, EngineError, RunRequest};
pub use project::LoadedProject;
