//! SQLite's write-ahead log stays bounded while readers and writers keep it busy, and a closed
//! store leaves none behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent_os_store::*;

/// Small, so that the test passes it many times over in a few seconds.
const LIMIT: u64 = 1 << 20;

fn wal_size(db: &Path) -> u64 {
    std::fs::metadata(db.with_extension("db-wal")).map_or(0, |m| m.len())
}

fn event(data: &str) -> NewEvent {
    NewEvent {
        id: agent_os_core::id::new_id(),
        kind: "test.load".into(),
        project: None,
        subject: None,
        data: data.into(),
        at: 1_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sqlite_wal_stays_bounded_while_readers_keep_it_busy() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent-os.db");
    let mut opts = StoreOptions::new(sqlite_url(&db));
    opts.wal_limit_bytes = LIMIT;
    let store = Arc::new(SqlStore::open(&opts, 1_000).await.unwrap());

    // Readers that never pause: a PASSIVE checkpoint alone then never lets the log start over.
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (store, stop) = (store.clone(), stop.clone());
        readers.spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                store.list_events(None, None, None, 20).await.unwrap();
                reads += 1;
            }
            reads
        });
    }

    // Forty times the bound, in commits of ~16 KiB (four events of 4 KiB).
    let data = format!("{{\"pad\":\"{}\"}}", "x".repeat(4000));
    let (mut largest, mut previous, mut cuts) = (0, 0, 0);
    let mut written = 0u64;
    while written < 40 * LIMIT {
        let batch: Vec<(NewEvent, Option<String>)> = (0..4).map(|_| (event(&data), None)).collect();
        store.emit_events(&batch).await.unwrap();
        written += 4 * data.len() as u64;
        let size = wal_size(&db);
        if size < previous {
            cuts += 1;
        }
        (largest, previous) = (largest.max(size), size);
    }
    assert!(largest > LIMIT, "the test never reached the bound (largest WAL {largest} bytes)");
    // How far past the bound the log gets between two looks depends on the machine's speed;
    // that it is cut while the writes and reads go on does not.
    assert!(cuts > 0, "the WAL (largest {largest} bytes) was never cut back while {written} bytes were written");

    // Readers still busy: the keeper brings the log back under the bound.
    let deadline = Instant::now() + Duration::from_secs(20);
    while wal_size(&db) > LIMIT && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = wal_size(&db);
    stop.store(true, Ordering::Relaxed);
    let mut reads = 0;
    while let Some(r) = readers.join_next().await {
        reads += r.unwrap();
    }
    assert!(reads > 0);
    assert!(after <= LIMIT, "the WAL is {after} bytes, past its bound of {LIMIT} (largest seen {largest})");
    assert_eq!(store.list_events(None, None, None, 1).await.unwrap().len(), 1);

    store.close().await;
    assert_eq!(wal_size(&db), 0, "a closed store leaves no WAL behind");
}
