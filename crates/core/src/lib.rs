//! The pure core of Agent OS: manifests parsed and validated into plans, run states, retry
//! policy, cost amounts, secret redaction and identifiers. Nothing here does I/O, spawns, sleeps
//! or is async; every layer above builds on these types.

pub mod address;
pub mod alerting;
pub mod badge;
pub mod budget;
pub mod channel;
pub mod check;
pub mod config;
pub mod cost;
pub mod cron;
pub mod csv;
pub mod discover;
pub mod duration;
pub mod envfile;
pub mod expr;
pub mod health;
pub mod id;
pub mod manifest;
pub mod name;
pub mod net;
pub mod price;
pub mod redact;
pub mod resource;
pub mod retention;
pub mod run;
pub mod shell;
pub mod text;
pub mod timeline;
pub mod token;
pub mod url;
pub mod workflow;
pub mod yaml;

pub use duration::{format_duration, parse_duration};
pub use manifest::{Manifest, ManifestError};
pub use run::RunStatus;
