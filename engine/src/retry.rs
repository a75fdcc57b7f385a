//! Retry policies: exponential backoff with jitter.
//!
//! The delay is computed here and persisted as the step's `next_attempt_at`;
//! the engine never sleeps in memory for a retry, so a restart keeps it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a step (or its compensation) is retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. 1 means no retry.
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds.
    pub initial_interval_ms: u64,
    /// Each further delay is the previous one times this (≥ 1).
    pub backoff_coefficient: f64,
    /// No delay is longer than this, in milliseconds.
    pub max_interval_ms: u64,
    /// Each delay is spread uniformly over ±`jitter` of itself (0 to 1).
    pub jitter: f64,
    /// Error kinds that are never retried, whatever the handler says.
    pub non_retryable: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_interval_ms: 1_000,
            backoff_coefficient: 2.0,
            max_interval_ms: 60_000,
            jitter: 0.2,
            non_retryable: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// Checks the policy; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1 (1 means: no retry)".into());
        }
        if !(self.backoff_coefficient.is_finite() && self.backoff_coefficient >= 1.0) {
            return Err(format!(
                "backoff_coefficient must be a number ≥ 1.0, not {}",
                self.backoff_coefficient
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "jitter must be between 0.0 and 1.0, not {}",
                self.jitter
            ));
        }
        if self.max_interval_ms < self.initial_interval_ms {
            return Err(format!(
                "max_interval_ms ({}) must be ≥ initial_interval_ms ({})",
                self.max_interval_ms, self.initial_interval_ms
            ));
        }
        Ok(())
    }

    /// Whether another attempt follows attempt number `attempt` (from 1)
    /// that failed with an error of `kind`.
    pub fn should_retry(&self, attempt: u32, retryable: bool, kind: &str) -> bool {
        retryable
            && self.has_attempt_after(attempt)
            && !self.non_retryable.iter().any(|k| k == kind)
    }

    /// Whether the policy allows an attempt after attempt number `attempt`
    /// (from 1), whatever its error: the attempts are not all spent.
    pub fn has_attempt_after(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The delay before the attempt after `attempt` (from 1) without jitter:
    /// `initial × coefficient^(attempt-1)`, capped at `max_interval_ms`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(1_000) as i32;
        let ms = self.initial_interval_ms as f64 * self.backoff_coefficient.powi(exp);
        let capped = ms.min(self.max_interval_ms as f64);
        Duration::from_millis(capped as u64)
    }

    /// The delay with jitter: `base × (1 + jitter × (2u - 1))` for `u` uniform
    /// in [0, 1), still capped at `max_interval_ms`.
    pub fn delay(&self, attempt: u32, u: f64) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64() * 1_000.0;
        let factor = 1.0 + self.jitter * (2.0 * u.clamp(0.0, 1.0) - 1.0);
        let ms = (base * factor).min(self.max_interval_ms as f64).max(0.0);
        Duration::from_micros((ms * 1_000.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            initial_interval_ms: 100,
            backoff_coefficient: 2.0,
            max_interval_ms: 1_000,
            jitter: 0.25,
            non_retryable: vec!["invalid".into()],
        }
    }

    #[test]
    fn base_delay_grows_exponentially_and_is_capped() {
        let p = policy();
        let got: Vec<u64> = (1..=6)
            .map(|a| p.base_delay(a).as_millis() as u64)
            .collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = policy();
        for attempt in 1..=6 {
            let base = p.base_delay(attempt).as_secs_f64();
            for i in 0..=100 {
                let d = p.delay(attempt, i as f64 / 100.0).as_secs_f64();
                assert!(
                    d >= base * 0.75 - 1e-9,
                    "attempt {attempt}: {d} < {base}×0.75"
                );
                assert!(d <= (base * 1.25).min(1.0) + 1e-9);
            }
        }
        assert_eq!(p.delay(1, 0.0).as_millis(), 75);
        assert_eq!(p.delay(1, 0.5).as_millis(), 100);
    }

    #[test]
    fn retry_decision() {
        let p = policy();
        assert!(p.should_retry(1, true, "timeout"));
        assert!(p.should_retry(5, true, "timeout"));
        assert!(!p.should_retry(6, true, "timeout"), "max_attempts reached");
        assert!(!p.should_retry(1, false, "timeout"), "handler said fatal");
        assert!(!p.should_retry(1, true, "invalid"), "kind is non-retryable");
    }

    #[test]
    fn validation_names_the_problem() {
        let mut p = policy();
        p.max_attempts = 0;
        assert!(p.validate().unwrap_err().contains("max_attempts"));
        let mut p = policy();
        p.backoff_coefficient = 0.5;
        assert!(p.validate().unwrap_err().contains("backoff_coefficient"));
        let mut p = policy();
        p.jitter = 1.5;
        assert!(p.validate().unwrap_err().contains("jitter"));
        let mut p = policy();
        p.max_interval_ms = 10;
        assert!(p.validate().unwrap_err().contains("max_interval_ms"));
        assert!(policy().validate().is_ok());
    }
}
