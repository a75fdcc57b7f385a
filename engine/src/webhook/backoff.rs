//! When a failed delivery is tried again: exponential backoff from
//! [`FIRST_RETRY`] doubling up to [`LONGEST_WAIT`], each wait jittered by
//! ±20 %, for [`GIVE_UP_AFTER`] after the first failure; then the webhook
//! is disabled.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The wait after the first failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(10);
/// The longest wait between two tries.
pub const LONGEST_WAIT: Duration = Duration::from_secs(3600);
/// How long a delivery is retried after its first failure.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What follows a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// It has failed for [`GIVE_UP_AFTER`]: disable the webhook.
    GiveUp,
}

/// The decision after try number `attempts` (1 for the first) failed at
/// `now`, the first failure having been at `first_failed_at`; `jitter` is
/// uniform in [0, 1).
pub fn after_failure(
    attempts: u32,
    first_failed_at: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: f64,
) -> AfterFailure {
    let failing = (now - first_failed_at).to_std().unwrap_or(Duration::ZERO);
    if failing >= GIVE_UP_AFTER {
        return AfterFailure::GiveUp;
    }
    let doublings = attempts.saturating_sub(1).min(20);
    let wait = FIRST_RETRY
        .saturating_mul(1 << doublings)
        .min(LONGEST_WAIT)
        .mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0));
    let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
    AfterFailure::RetryAt(now + wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_up_to_an_hour_then_give_up_after_a_day() {
        let t0 = Utc::now();
        let at = |n, jitter| match after_failure(n, t0, t0, jitter) {
            AfterFailure::RetryAt(t) => (t - t0).num_milliseconds(),
            AfterFailure::GiveUp => -1,
        };
        assert_eq!(at(1, 0.5), 10_000);
        assert_eq!(at(2, 0.5), 20_000);
        assert_eq!(at(1, 0.0), 8_000);
        assert_eq!(at(1, 1.0), 12_000);
        assert_eq!(at(30, 0.5), 3_600_000);
        let late = t0 + chrono::Duration::hours(24);
        assert_eq!(after_failure(40, t0, late, 0.5), AfterFailure::GiveUp);
        let almost = t0 + chrono::Duration::hours(23);
        assert!(matches!(
            after_failure(40, t0, almost, 0.5),
            AfterFailure::RetryAt(_)
        ));
    }
}
