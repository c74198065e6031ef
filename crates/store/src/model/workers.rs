//! Workers: processes on other machines that serve projects and run their tasks.

use agent_os_core::run::LogStream;

/// A worker as last heard from. Keyed by (token, name): a worker that restarts is the same one.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerRecord {
    pub id: String,
    pub token_id: String,
    pub name: String,
    pub hostname: String,
    pub version: String,
    /// How many attempts it runs at once.
    pub capacity: i64,
    /// The projects it serves (by name), as its last hello said.
    pub projects: Vec<String>,
    pub first_seen: i64,
    /// Its last request of any kind.
    pub last_contact: i64,
}

/// One log chunk a worker sent, with its sequence number within the attempt (from 1).
#[derive(Clone, Debug)]
pub struct WorkerLogChunk {
    pub seq: i64,
    pub stream: LogStream,
    pub at: i64,
    pub data: String,
}

/// What became of a worker's log chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerLog {
    /// Stored, up to this sequence number (a chunk at or below the mark was already stored and
    /// is not stored again).
    Stored { acked_seq: i64 },
    /// The attempt has ended (its end recorded, or judged lost): nothing was stored.
    Ended { acked_seq: i64 },
}
