//! The worker's spool: every attempt's log chunks and end are written to disk before they are
//! sent, and deleted once the server has them, so a result survives an outage of the server
//! and a kill -9 of the worker. One directory per attempt under `HOME/spool`:
//!
//! ```text
//! spool/<run id>~<attempt>/attempt.json      what runs (run, attempt, project, task, pid, start time)
//! spool/<run id>~<attempt>/log/<seq>.json    one chunk each, until acknowledged
//! spool/<run id>~<attempt>/end.json          how it ended, once it has
//! ```
//!
//! Each file is written whole to a temporary name and renamed into place, so a kill -9 never
//! leaves half of one. What is not yet acknowledged is bounded per attempt and in total: output
//! beyond the bound is dropped (counted, and said in the log once there is room again), never
//! the end.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use agent_os_core::run::LogStream;

use super::client::{AttemptRef, Chunk, End};

/// What the spool records about an attempt when it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub run_id: String,
    pub attempt: i64,
    pub project: String,
    pub task: String,
    /// The task's process group (its pid) once it has started, and the start time that tells
    /// it from a later process with the same pid.
    #[serde(default)]
    pub pid: Option<i64>,
    #[serde(default)]
    pub proc_start: Option<i64>,
}

impl Meta {
    pub fn key(&self) -> AttemptRef {
        AttemptRef { run_id: self.run_id.clone(), attempt: self.attempt }
    }
}

/// An attempt found in the spool when the worker starts.
#[derive(Debug)]
pub enum Found {
    /// It ended and its end waits to be delivered.
    Pending(AttemptRef),
    /// It was running when the worker stopped: its process group may still be there.
    Interrupted(Meta),
}

/// The bounds of what the spool holds unacknowledged.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub per_attempt: u64,
    pub total: u64,
}

struct Entry {
    dir: PathBuf,
    meta: Meta,
    /// Chunks not yet acknowledged, oldest first.
    chunks: VecDeque<Chunk>,
    /// Bytes of their data.
    bytes: u64,
    next_seq: i64,
    end: Option<End>,
    /// Output dropped for want of room, not yet said in the log.
    dropped: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<AttemptRef, Entry>,
    total: u64,
}

pub struct Spool {
    dir: PathBuf,
    bounds: Bounds,
    state: Mutex<State>,
}

const ATTEMPT_FILE: &str = "attempt.json";
const END_FILE: &str = "end.json";

impl Spool {
    /// Opens the spool in `dir` (created if missing) and reads what an earlier run of the
    /// worker left there.
    pub fn open(dir: &Path, bounds: Bounds) -> Result<(Spool, Vec<Found>)> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the spool {}", dir.display()))?;
        let mut state = State::default();
        let mut found = Vec::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the spool {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        names.sort();
        for path in names {
            let meta: Meta = match read_json(&path.join(ATTEMPT_FILE)) {
                Some(m) => m,
                None => {
                    // Not one of ours, or cut off before its first file was in place.
                    tracing::warn!(dir = %path.display(), "removing a spool entry without its attempt.json");
                    let _ = std::fs::remove_dir_all(&path);
                    continue;
                }
            };
            let end: Option<End> = read_json(&path.join(END_FILE));
            let mut chunks = BTreeMap::new();
            if let Ok(files) = std::fs::read_dir(path.join("log")) {
                for f in files.flatten() {
                    if let Some(c) = read_json::<Chunk>(&f.path()) {
                        chunks.insert(c.seq, c);
                    } else {
                        let _ = std::fs::remove_file(f.path());
                    }
                }
            }
            let bytes: u64 = chunks.values().map(|c| c.data.len() as u64).sum();
            let next_seq = end
                .as_ref()
                .map(|e| e.last_seq + 1)
                .into_iter()
                .chain(chunks.keys().next_back().map(|s| s + 1))
                .max()
                .unwrap_or(1);
            match &end {
                Some(_) => found.push(Found::Pending(meta.key())),
                None => found.push(Found::Interrupted(meta.clone())),
            }
            state.total += bytes;
            state.entries.insert(
                meta.key(),
                Entry { dir: path, meta, chunks: chunks.into_values().collect(), bytes, next_seq, end, dropped: 0 },
            );
        }
        Ok((Spool { dir: dir.to_path_buf(), bounds, state: Mutex::new(state) }, found))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; carry on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that an attempt starts. Its directory's name is the run id, percent-encoded so
    /// that whatever the server sends stays one path component, and the attempt.
    pub fn begin(&self, meta: Meta) -> Result<()> {
        let key = meta.key();
        let name = format!("{}~{}", agent_os_core::url::encode_component(&meta.run_id), meta.attempt);
        let dir = self.dir.join(name);
        std::fs::create_dir_all(dir.join("log")).with_context(|| format!("cannot create {}", dir.display()))?;
        write_json(&dir.join(ATTEMPT_FILE), &meta)?;
        let entry = Entry { dir, meta, chunks: VecDeque::new(), bytes: 0, next_seq: 1, end: None, dropped: 0 };
        self.lock().entries.insert(key, entry);
        Ok(())
    }

    /// Records the task's process once it has started.
    pub fn set_process(&self, key: &AttemptRef, pid: i64, proc_start: Option<i64>) {
        let mut state = self.lock();
        if let Some(e) = state.entries.get_mut(key) {
            e.meta.pid = Some(pid);
            e.meta.proc_start = proc_start;
            if let Err(err) = write_json(&e.dir.join(ATTEMPT_FILE), &e.meta) {
                tracing::warn!(error = %err, "could not record a task's process in the spool");
            }
        }
    }

    /// Numbers and stores log pieces (stream, time, text) of a running attempt. What finds no
    /// room is dropped and counted; once there is room again, a system chunk says how much.
    pub fn append(&self, key: &AttemptRef, pieces: Vec<(LogStream, String, String)>) {
        let mut state = self.lock();
        let State { entries, total } = &mut *state;
        let Some(e) = entries.get_mut(key) else { return };
        let bounds = self.bounds;
        let fits = |e: &Entry, total: u64, len: u64| e.bytes + len <= bounds.per_attempt && total + len <= bounds.total;
        for (stream, at, data) in pieces {
            let len = data.len() as u64;
            if e.dropped > 0 {
                let note = format!(
                    "[agent-os worker] {} bytes of output were dropped here: the server was out of reach and the spool was full\n",
                    e.dropped
                );
                let n = note.len() as u64;
                if fits(e, *total, n + len) {
                    e.dropped = 0;
                    push(e, total, LogStream::System, at.clone(), note);
                }
            }
            if e.dropped == 0 && fits(e, *total, len) {
                push(e, total, stream, at, data);
            } else {
                e.dropped += len;
            }
        }
    }

    /// Records how the attempt ended (after its last chunk).
    pub fn finish(&self, key: &AttemptRef, mut end: End) -> Result<()> {
        let mut state = self.lock();
        let Some(e) = state.entries.get_mut(key) else { return Ok(()) };
        end.last_seq = e.next_seq - 1;
        write_json(&e.dir.join(END_FILE), &end)?;
        e.end = Some(end);
        Ok(())
    }

    /// Chunks not yet acknowledged, oldest first, up to about `max_bytes` and at most
    /// `max_chunks` (at least one).
    pub fn unsent(&self, key: &AttemptRef, max_bytes: usize, max_chunks: usize) -> Vec<Chunk> {
        let state = self.lock();
        let Some(e) = state.entries.get(key) else { return Vec::new() };
        let mut out = Vec::new();
        let mut size = 0;
        for c in &e.chunks {
            if !out.is_empty() && (size + c.data.len() > max_bytes || out.len() >= max_chunks) {
                break;
            }
            size += c.data.len();
            out.push(c.clone());
        }
        out
    }

    /// The server holds every chunk up to `seq`: they are deleted.
    pub fn ack(&self, key: &AttemptRef, seq: i64) {
        let mut state = self.lock();
        let State { entries, total } = &mut *state;
        let Some(e) = entries.get_mut(key) else { return };
        while e.chunks.front().is_some_and(|c| c.seq <= seq) {
            if let Some(c) = e.chunks.pop_front() {
                let _ = std::fs::remove_file(chunk_path(&e.dir, c.seq));
                e.bytes -= c.data.len() as u64;
                *total -= c.data.len() as u64;
            }
        }
    }

    /// The end, once every chunk before it is acknowledged.
    pub fn end_to_send(&self, key: &AttemptRef) -> Option<End> {
        let state = self.lock();
        let e = state.entries.get(key)?;
        if e.chunks.is_empty() { e.end.clone() } else { None }
    }

    /// Whether the spool still holds the attempt.
    pub fn holds(&self, key: &AttemptRef) -> bool {
        self.lock().entries.contains_key(key)
    }

    /// Attempts that ended and whose end waits to be delivered.
    pub fn pending(&self) -> Vec<AttemptRef> {
        let mut keys: Vec<AttemptRef> =
            self.lock().entries.iter().filter(|(_, e)| e.end.is_some()).map(|(k, _)| k.clone()).collect();
        keys.sort();
        keys
    }

    /// Forgets the attempt and deletes its directory.
    pub fn remove(&self, key: &AttemptRef) {
        let mut state = self.lock();
        if let Some(e) = state.entries.remove(key) {
            state.total -= e.bytes;
            if let Err(err) = std::fs::remove_dir_all(&e.dir) {
                tracing::warn!(dir = %e.dir.display(), error = %err, "could not delete a delivered attempt from the spool");
            }
        }
    }

    /// Bytes of output held unacknowledged, in all.
    #[cfg(test)]
    fn held_bytes(&self) -> u64 {
        self.lock().total
    }
}

fn push(e: &mut Entry, total: &mut u64, stream: LogStream, at: String, data: String) {
    let chunk = Chunk { seq: e.next_seq, stream, at, data };
    if let Err(err) = write_json(&chunk_path(&e.dir, chunk.seq), &chunk) {
        // Kept in memory all the same: it is still delivered unless the worker dies first.
        tracing::warn!(error = %err, "could not write a log chunk to the spool");
    }
    e.next_seq += 1;
    e.bytes += chunk.data.len() as u64;
    *total += chunk.data.len() as u64;
    e.chunks.push_back(chunk);
}

fn chunk_path(dir: &Path, seq: i64) -> PathBuf {
    dir.join("log").join(format!("{seq:012}.json"))
}

/// Writes `value` to `path` whole: to a temporary name first, then renamed into place.
fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value)?;
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_os_core::run::RunStatus;

    fn meta(run: &str) -> Meta {
        Meta { run_id: run.into(), attempt: 1, project: "p".into(), task: "t".into(), pid: None, proc_start: None }
    }

    fn end() -> End {
        End {
            end: RunStatus::Succeeded,
            exit_code: Some(0),
            error: None,
            retryable: false,
            interrupted: false,
            outputs: None,
            last_seq: 0,
        }
    }

    fn line(text: &str) -> (LogStream, String, String) {
        (LogStream::Stdout, "2026-01-01T00:00:00.000Z".into(), text.into())
    }

    const ROOMY: Bounds = Bounds { per_attempt: 1 << 20, total: 1 << 24 };

    #[test]
    fn chunks_and_the_end_survive_a_restart_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let key = meta("r1").key();
        {
            let (spool, found) = Spool::open(dir.path(), ROOMY).unwrap();
            assert!(found.is_empty());
            spool.begin(meta("r1")).unwrap();
            spool.append(&key, vec![line("a\n"), line("b\n"), line("c\n")]);
            spool.ack(&key, 1);
            spool.finish(&key, end()).unwrap();
            assert_eq!(spool.end_to_send(&key), None, "logs go before the end");
        }
        let (spool, found) = Spool::open(dir.path(), ROOMY).unwrap();
        assert!(matches!(&found[..], [Found::Pending(k)] if *k == key), "{found:?}");
        let unsent = spool.unsent(&key, 1024, 100);
        assert_eq!(unsent.iter().map(|c| (c.seq, c.data.as_str())).collect::<Vec<_>>(), [(2, "b\n"), (3, "c\n")]);
        assert_eq!(spool.unsent(&key, 1024, 1).len(), 1, "at most as many chunks as asked");
        assert_eq!(spool.unsent(&key, 1, 100).len(), 1, "at least one");
        spool.ack(&key, 3);
        let end = spool.end_to_send(&key).unwrap();
        assert_eq!(end.last_seq, 3);
        spool.remove(&key);
        assert!(!spool.holds(&key));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left on disk");
    }

    #[test]
    fn an_attempt_without_its_end_is_found_interrupted_with_its_process() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _) = Spool::open(dir.path(), ROOMY).unwrap();
            spool.begin(meta("r/../2")).unwrap();
            spool.set_process(&meta("r/../2").key(), 4242, Some(99));
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["r%2F..%2F2~1"], "the run id stays one path component");
        let (_, found) = Spool::open(dir.path(), ROOMY).unwrap();
        match &found[..] {
            [Found::Interrupted(m)] => {
                assert_eq!((m.run_id.as_str(), m.pid, m.proc_start), ("r/../2", Some(4242), Some(99)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn output_beyond_the_bound_is_dropped_and_said_once_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), Bounds { per_attempt: 200, total: 1000 }).unwrap();
        let key = meta("r1").key();
        spool.begin(meta("r1")).unwrap();
        let line100 = "x".repeat(99) + "\n";
        spool.append(&key, vec![line(&line100), line(&line100), line(&line100), line(&line100)]);
        assert_eq!(spool.held_bytes(), 200);
        assert_eq!(spool.unsent(&key, 1 << 20, 100).len(), 2);
        spool.ack(&key, 2);
        spool.append(&key, vec![line("after\n")]);
        let unsent = spool.unsent(&key, 1 << 20, 100);
        assert_eq!(unsent.len(), 2, "{unsent:?}");
        assert_eq!(unsent[0].seq, 3, "numbers stay consecutive");
        assert_eq!(unsent[0].stream, LogStream::System);
        assert!(unsent[0].data.contains("200 bytes of output were dropped"), "{}", unsent[0].data);
        assert_eq!(unsent[1].data, "after\n");
        spool.finish(&key, end()).unwrap();
        spool.ack(&key, 4);
        assert_eq!(spool.end_to_send(&key).unwrap().last_seq, 4);
    }

    #[test]
    fn the_total_bound_holds_across_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), Bounds { per_attempt: 1000, total: 150 }).unwrap();
        for run in ["a", "b"] {
            spool.begin(meta(run)).unwrap();
            spool.append(&meta(run).key(), vec![line(&"y".repeat(100))]);
        }
        assert_eq!(spool.held_bytes(), 100);
        assert!(spool.unsent(&meta("b").key(), 1 << 20, 100).is_empty());
    }
}
