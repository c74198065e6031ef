//! How the server keeps its memory small over months (glibc only; other C libraries already
//! behave so or are left alone). glibc gives each thread that allocates its own arena, up to
//! eight per core, and keeps what a burst freed (registering thousands of schedules, a large
//! listing, the scheduler's once-a-minute rebuild) for the process: measured with 10,000
//! schedules, that doubled the resident size of a server whose live heap was half of it. The
//! server limits the arenas at start and hands freed pages back every few seconds.

use std::time::Duration;

/// How often freed memory is handed back: cheap (a walk of the free lists), and soon enough
/// that a burst does not stay resident.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Limits the allocator's arenas; call before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called at start, before the runtime or any other thread exists; mallopt only
    // changes the allocator's parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands memory the allocator holds free back to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims every [`TRIM_EVERY`] for as long as the server runs.
pub async fn trim_loop() {
    let mut every = tokio::time::interval(TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // Off the runtime's threads: it walks the heap under the allocator's lock.
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}
