//! Test support (feature `testing`), for this and other crates' tests: time that moves only
//! when a test says so, and a real-time wait that leaves it alone.
//!
//! Tokio's paused clock moves by itself whenever the runtime has nothing to do: it jumps to the
//! next timer. With a real database, real processes or real sockets the runtime is idle while
//! it waits for them, so time would jump ahead at random moments (SQLite's connections live on
//! threads of their own, which tokio cannot see). A test that times the engine therefore runs
//! with `#[tokio::test(start_paused = true)]` and calls [`hold_time`] first: the clock no
//! longer moves on its own, the way tokio holds it while a blocking task runs, and time moves
//! only through `tokio::time::advance`, so a test of a grace period, a retry or a schedule says
//! exactly when it has passed. The engine's clock must follow tokio's
//! ([`crate::clock::TokioClock`]).
//!
//! Why `start_paused` rather than `tokio::time::pause()` later: tokio rounds a timer's deadline
//! up to its next whole millisecond since the runtime started. Paused from the start, and moved
//! by whole milliseconds, the clock stays on those ticks, so advancing by exactly a delay ends
//! it; paused later, it sits between ticks and every deadline lands up to 1 ms late.
//!
//! While time is held, nothing timed happens unless the test advances past it: a retry's delay,
//! the log writer's 50 ms flush, a task's timeout and kill grace, a waiter's deadline. Waiting
//! for something real (a process, a request) is done with [`nap`], never `tokio::time::sleep`,
//! which would wait forever.

use std::time::Duration;

/// Keeps tokio's paused clock still while it lives (see the module's documentation).
/// Dropping it lets the clock move on its own again.
#[must_use = "time moves on its own again once the guard is dropped"]
pub struct HeldTime {
    /// Ends the blocking task whose life keeps the clock from auto-advancing.
    _release: std::sync::mpsc::Sender<()>,
}

/// Holds tokio's paused clock: from now on only `tokio::time::advance` moves it. For a test
/// with `#[tokio::test(start_paused = true)]`.
pub fn hold_time() -> HeldTime {
    let (release, released) = std::sync::mpsc::channel::<()>();
    // Tokio does not move a paused clock while a blocking task runs; this one runs until the
    // guard is dropped.
    tokio::task::spawn_blocking(move || {
        let _ = released.recv();
    });
    HeldTime { _release: release }
}

/// Waits `real` of real time without moving tokio's clock, letting the runtime work meanwhile
/// (for polling something a process or a socket does while time is held).
pub async fn nap(real: Duration) {
    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(real)).await;
}

/// Asks `check` until it gives a value, napping between tries; panics with `what` after
/// `within` of real time.
pub async fn eventually<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{what}");
        nap(Duration::from_millis(20)).await;
    }
}

/// Store options for a test on held time: a query waits for a free connection as long as it
/// takes. The pool's 30 s wait is a tokio timer, so one advance of more than that while a query
/// waits (the SQLite writer is one connection) would fail the query at once.
pub fn store_options(url: impl Into<String>) -> agent_os_store::StoreOptions {
    let mut opts = agent_os_store::StoreOptions::new(url);
    opts.acquire_timeout = Duration::from_secs(365 * 24 * 3600);
    opts
}
