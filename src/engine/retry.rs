//! Retry decisions: exponential backoff with full jitter on the upper half, capped.

use std::time::Duration;

use rand::Rng;

use crate::config::RetrySettings;
use crate::jobs::ErrorClass;
use crate::model::TaskStatus;

/// What to do with a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryDecision {
    /// Queue attempt `next_retry_count` after `delay`.
    RetryAfter {
        /// Delay before the retry is delivered.
        delay: Duration,
        /// retry_count of the next attempt.
        next_retry_count: i32,
    },
    /// Fail the task.
    Fail {
        /// Why no retry ("permanent error", "retries exhausted (3)").
        reason: String,
    },
}

/// The backoff before retry number `retry` (0-based): base · 2^retry capped at max, then a random
/// point in its upper half (so retries of many tasks spread out but never come early).
pub fn backoff(settings: &RetrySettings, retry: u32, jitter: f64) -> Duration {
    let exp = settings.base_delay.as_secs_f64() * 2f64.powi(retry.min(30) as i32);
    let capped = exp.min(settings.max_delay.as_secs_f64());
    Duration::from_secs_f64(capped * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
}

/// Decides what happens after attempt `retry_count` (0-based) failed with `class`.
pub fn decide(settings: &RetrySettings, class: ErrorClass, retry_count: i32) -> RetryDecision {
    match class {
        ErrorClass::Permanent => RetryDecision::Fail {
            reason: "permanent error".into(),
        },
        ErrorClass::Transient if retry_count as u32 >= settings.max_retries => {
            RetryDecision::Fail {
                reason: format!("retries exhausted ({} retries)", settings.max_retries),
            }
        }
        ErrorClass::Transient => RetryDecision::RetryAfter {
            delay: backoff(settings, retry_count as u32, rand::rng().random()),
            next_retry_count: retry_count + 1,
        },
    }
}

/// Why re-queueing an attempt for its retry matched nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequeueMiss {
    /// The attempt is still the task's: its job is no longer processing, so the task fails.
    JobStopped,
    /// The attempt is no longer the task's (its lease was lost): nothing to record.
    LeaseLost,
}

/// Judges a re-queue of attempt `retry_count` that matched nothing by the task's `actual` status
/// and attempt (`None`: the task is gone).
pub fn requeue_miss(actual: Option<(TaskStatus, i32)>, retry_count: i32) -> RequeueMiss {
    match actual {
        Some((TaskStatus::Processing, r)) if r == retry_count => RequeueMiss::JobStopped,
        _ => RequeueMiss::LeaseLost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let s = RetrySettings::default();
        assert_eq!(backoff(&s, 0, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(&s, 1, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(&s, 2, 1.0), Duration::from_secs(20));
        assert_eq!(backoff(&s, 10, 1.0), Duration::from_secs(300));
        assert_eq!(backoff(&s, 0, 0.0), Duration::from_secs_f64(2.5));
    }

    #[test]
    fn permanent_fails_and_transient_retries_until_exhausted() {
        let s = RetrySettings::default();
        assert!(matches!(
            decide(&s, ErrorClass::Permanent, 0),
            RetryDecision::Fail { .. }
        ));
        assert!(matches!(
            decide(&s, ErrorClass::Transient, 2),
            RetryDecision::RetryAfter {
                next_retry_count: 3,
                ..
            }
        ));
        assert!(matches!(
            decide(&s, ErrorClass::Transient, 3),
            RetryDecision::Fail { .. }
        ));
    }

    #[test]
    fn a_requeue_that_matched_nothing_fails_the_task_only_while_the_attempt_is_still_its_own() {
        use RequeueMiss::*;
        use TaskStatus as T;
        let cases = [
            (Some((T::Processing, 2)), JobStopped),
            (Some((T::Processing, 3)), LeaseLost),
            (Some((T::Queued, 2)), LeaseLost),
            (Some((T::Completed, 2)), LeaseLost),
            (Some((T::Cancelled, 2)), LeaseLost),
            (None, LeaseLost),
        ];
        for (actual, want) in cases {
            assert_eq!(requeue_miss(actual, 2), want, "{actual:?}");
        }
    }
}
