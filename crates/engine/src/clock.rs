//! The clock, injected so tests can control time.

/// Wall-clock time in milliseconds since the Unix epoch, UTC.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// Wall-clock time that follows tokio's clock from a fixed start: `start_ms` plus the time
/// tokio's clock has moved since the clock was made. Running free it keeps pace with the system
/// clock; in a test that pauses tokio's time, `tokio::time::advance` moves `now_ms` and every
/// timer of the engine together (see `testing::hold_time`), so a retry's delay, a grace period
/// or a schedule's next slot can be reached without waiting for it.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    start: tokio::time::Instant,
    start_ms: i64,
}

impl TokioClock {
    /// A clock that reads `start_ms` now. Must be made inside a tokio runtime when its time
    /// is paused, so that it follows that runtime's clock.
    pub fn starting_at(start_ms: i64) -> Self {
        TokioClock { start: tokio::time::Instant::now(), start_ms }
    }

    /// A clock that starts at the system clock's time.
    pub fn starting_now() -> Self {
        Self::starting_at(SystemClock.now_ms())
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        self.start_ms + tokio::time::Instant::now().duration_since(self.start).as_millis() as i64
    }
}
