//! The retention policy (`RETENTION_*`): how long finished jobs and their events are kept, and
//! how big and how long the deleting batches are. `crate::retention` applies it.

use std::time::Duration;

use serde_json::json;

use super::ConfigError;
use super::parse::{MS, SECOND, num, num_f, whole};

/// Seconds in a day (the policy is written in days).
const DAY: f64 = 86_400.0;

/// The retention policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionSettings {
    /// Completed jobs are deleted this long after completion (None: kept).
    pub completed: Option<Duration>,
    /// Failed and cancelled jobs likewise.
    pub failed: Option<Duration>,
    /// Events of completed jobs likewise (the job stays).
    pub events: Option<Duration>,
    /// Rows per delete statement.
    pub batch_rows: i64,
    /// Pause between batches (lets the hot path in).
    pub pause: Duration,
    /// A run stops after this; the next run continues.
    pub max_run: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        let days = |d: f64| Some(Duration::from_secs_f64(d * DAY));
        Self {
            completed: days(30.0),
            failed: days(90.0),
            events: days(14.0),
            batch_rows: 5_000,
            pause: Duration::from_millis(10),
            max_run: Duration::from_secs(60),
        }
    }
}

impl RetentionSettings {
    /// Reads `RETENTION_*` through `get`; an absent variable keeps its [`Default`].
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let days = |name: &'static str,
                    default: Option<Duration>|
         -> Result<Option<Duration>, ConfigError> {
            let default = default.map_or(0.0, |k| k.as_secs_f64() / DAY);
            let n = num_f(get, name, default, 0.0, 36_500.0)?;
            Ok((n > 0.0).then(|| Duration::from_secs_f64(n * DAY)))
        };
        Ok(Self {
            completed: days("RETENTION_COMPLETED_DAYS", d.completed)?,
            failed: days("RETENTION_FAILED_DAYS", d.failed)?,
            events: days("RETENTION_EVENTS_DAYS", d.events)?,
            batch_rows: num(get, "RETENTION_BATCH_ROWS", d.batch_rows, 100, 100_000)?,
            pause: whole(get, "RETENTION_BATCH_PAUSE_MS", MS, d.pause, 0, 10_000)?,
            max_run: whole(get, "RETENTION_MAX_RUN_S", SECOND, d.max_run, 1, 3_600)?,
        })
    }

    /// The policy in days, for `coremachine purge` (null: kept forever).
    pub fn describe(&self) -> serde_json::Value {
        let days = |d: Option<Duration>| d.map(|d| d.as_secs_f64() / DAY);
        json!({
            "completed_days": days(self.completed),
            "failed_days": days(self.failed),
            "events_days": days(self.events),
            "batch_rows": self.batch_rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_30_90_14_days_and_zero_keeps_forever() {
        let none = RetentionSettings::from_lookup(&|_| None).unwrap();
        assert_eq!(none, RetentionSettings::default());
        let s = RetentionSettings::from_lookup(&|k| match k {
            "RETENTION_FAILED_DAYS" => Some("0".into()),
            "RETENTION_EVENTS_DAYS" => Some("0.5".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.failed, None);
        assert_eq!(s.events, Some(Duration::from_secs(43_200)));
        let e = RetentionSettings::from_lookup(&|k| {
            (k == "RETENTION_BATCH_ROWS").then(|| "10".to_string())
        })
        .unwrap_err();
        assert!(e.to_string().contains("RETENTION_BATCH_ROWS"), "{e}");
    }
}
