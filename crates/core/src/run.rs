//! Task run states and the retry policy.
//!
//! A run moves queued → running → succeeded | failed | timed_out | cancelled. A failed or
//! timed-out attempt with retries left sends the run back to queued with a `not_before` time.

use std::time::Duration;

use crate::text::text_enum;

text_enum! {
    /// The state of a task run (and of each of its attempts).
    pub enum RunStatus("run status") {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        TimedOut = "timed_out",
        Cancelled = "cancelled",
    }
}

impl RunStatus {
    pub fn parse(s: &str) -> Option<RunStatus> {
        s.parse().ok()
    }

    /// True for states a run never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::TimedOut | RunStatus::Cancelled)
    }
}

text_enum! {
    /// Which stream of a run's log a chunk came from.
    pub enum LogStream("log stream") {
        Stdout = "stdout",
        Stderr = "stderr",
        /// Agent OS's own notes in a run's log ("timed out after 5m; sending SIGTERM").
        System = "system",
    }
}

/// How an attempt ended, as the runner saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    /// Exit code 0.
    Succeeded,
    /// Non-zero exit, a signal, a missing program, a plugin error.
    Failed { reason: String, retryable: bool },
    /// The task outlived its timeout and was killed.
    TimedOut,
    /// A user cancelled it.
    Cancelled,
    /// The Agent OS process that ran it died; found on the next start.
    Lost,
}

impl AttemptEnd {
    /// The status the attempt itself is recorded with.
    pub fn status(&self) -> RunStatus {
        match self {
            AttemptEnd::Succeeded => RunStatus::Succeeded,
            AttemptEnd::Failed { .. } | AttemptEnd::Lost => RunStatus::Failed,
            AttemptEnd::TimedOut => RunStatus::TimedOut,
            AttemptEnd::Cancelled => RunStatus::Cancelled,
        }
    }

    /// Whether another attempt may follow (policy permitting).
    pub fn retryable(&self) -> bool {
        match self {
            AttemptEnd::Failed { retryable, .. } => *retryable,
            AttemptEnd::TimedOut | AttemptEnd::Lost => true,
            AttemptEnd::Succeeded | AttemptEnd::Cancelled => false,
        }
    }
}

/// Exit code a task uses to say "failed, and retrying will not help" (sysexits' EX_CONFIG).
pub const EXIT_NO_RETRY: i32 = 78;

/// Delay before attempt `next_attempt` (2 for the first retry): exponential from `base`,
/// capped at `max`, with "equal jitter" — half fixed, half random — so retries of many runs that
/// failed together spread out. `random` is a number in [0, 1) supplied by the caller.
pub fn retry_delay(base: Duration, max: Duration, next_attempt: u32, random: f64) -> Duration {
    let exponent = next_attempt.saturating_sub(2).min(30);
    let full = base.saturating_mul(1u32 << exponent).min(max);
    let half = full / 2;
    half + half.mul_f64(random.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for &st in RunStatus::ALL {
            assert_eq!(RunStatus::parse(st.as_str()), Some(st));
        }
        for &s in LogStream::ALL {
            assert_eq!(s.as_str().parse(), Ok(s));
        }
        assert_eq!(RunStatus::parse("done"), None);
        assert!(RunStatus::TimedOut.is_terminal());
        assert!(!RunStatus::Queued.is_terminal());
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        assert_eq!(retry_delay(base, max, 2, 0.0), Duration::from_millis(500));
        assert_eq!(retry_delay(base, max, 2, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(base, max, 3, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(base, max, 4, 1.0), Duration::from_secs(4));
        assert_eq!(retry_delay(base, max, 40, 1.0), max);
        let d = retry_delay(base, max, 3, 0.5);
        assert!(d > Duration::from_secs(1) && d < Duration::from_secs(2));
    }

    #[test]
    fn attempt_ends() {
        assert!(AttemptEnd::Lost.retryable());
        assert_eq!(AttemptEnd::Lost.status(), RunStatus::Failed);
        assert!(!AttemptEnd::Cancelled.retryable());
        let no_retry = AttemptEnd::Failed { reason: "x".into(), retryable: false };
        assert!(!no_retry.retryable());
    }
}
