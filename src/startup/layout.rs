//! Reads the Functions app layout the way the host does: `host.json` and one `function.json` per
//! folder. Start-up, the host emulator and the deployment validation test share this.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Why the app layout could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct LayoutError {
    /// File.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// A trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Service Bus queue trigger.
    ServiceBus {
        /// Queue name.
        queue: String,
        /// Binding name (the key under `Data`).
        binding: String,
        /// `dataType` ("binary" expected).
        data_type: Option<String>,
        /// `"cardinality": "many"`: the host delivers batches (one at a time per function).
        many: bool,
    },
    /// HTTP trigger.
    Http {
        /// Route template (without the `api/` prefix).
        route: Option<String>,
        /// Allowed methods.
        methods: Vec<String>,
        /// anonymous | function | admin.
        auth_level: String,
    },
    /// Timer trigger.
    Timer {
        /// NCRONTAB schedule.
        schedule: String,
    },
}

/// One function folder.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    /// Folder name = function name = handler path.
    pub name: String,
    /// Its trigger.
    pub trigger: Trigger,
    /// Raw function.json.
    pub raw: Value,
}

/// The parts of host.json the emulator honours.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// `extensions.serviceBus.maxConcurrentCalls` (default 16).
    pub max_concurrent_calls: usize,
    /// `functionTimeout` (default 10 min).
    pub function_timeout: Duration,
    /// `extensions.serviceBus.maxMessageBatchSize` (default 1000): the most messages one
    /// batched invocation carries.
    pub max_message_batch_size: usize,
    /// `extensions.serviceBus.maxAutoLockRenewalDuration` (default 5 min): how long the host
    /// renews the lock of a message whose invocation is still running.
    pub max_auto_lock_renewal: Duration,
    /// Raw host.json.
    pub raw: Value,
}

/// The whole app.
#[derive(Debug, Clone)]
pub struct AppLayout {
    /// App root.
    pub root: PathBuf,
    /// host.json.
    pub host: HostConfig,
    /// Function folders, sorted by name.
    pub functions: Vec<FunctionDef>,
}

fn read_json(path: &Path) -> Result<Value, LayoutError> {
    let text = std::fs::read_to_string(path).map_err(|e| LayoutError {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| LayoutError {
        path: path.display().to_string(),
        reason: format!("invalid JSON: {e}"),
    })
}

/// Parses `hh:mm:ss` (optionally `d.hh:mm:ss`).
pub(crate) fn parse_timespan(s: &str) -> Option<Duration> {
    let (days, rest) = match s.split_once('.') {
        Some((d, r)) if !d.contains(':') => (d.parse::<u64>().ok()?, r),
        _ => (0, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() != 3 {
        return None;
    }
    let h: u64 = parts[0].parse().ok()?;
    let m: u64 = parts[1].parse().ok()?;
    let sec: f64 = parts[2].parse().ok()?;
    Some(Duration::from_secs(days * 86400 + h * 3600 + m * 60) + Duration::from_secs_f64(sec))
}

impl AppLayout {
    /// Reads host.json and every `*/function.json` under `root`.
    pub fn read(root: &Path) -> Result<Self, LayoutError> {
        let host_raw = read_json(&root.join("host.json"))?;
        let max_concurrent_calls = host_raw
            .pointer("/extensions/serviceBus/maxConcurrentCalls")
            .and_then(Value::as_u64)
            .unwrap_or(16) as usize;
        let max_message_batch_size = host_raw
            .pointer("/extensions/serviceBus/maxMessageBatchSize")
            .and_then(Value::as_u64)
            .unwrap_or(1000)
            .max(1) as usize;
        let max_auto_lock_renewal = host_raw
            .pointer("/extensions/serviceBus/maxAutoLockRenewalDuration")
            .and_then(Value::as_str)
            .and_then(parse_timespan)
            .unwrap_or(Duration::from_secs(300));
        let function_timeout = host_raw
            .get("functionTimeout")
            .and_then(Value::as_str)
            .and_then(parse_timespan)
            .unwrap_or(Duration::from_secs(600));
        let mut functions = Vec::new();
        let entries = std::fs::read_dir(root).map_err(|e| LayoutError {
            path: root.display().to_string(),
            reason: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let fj = entry.path().join("function.json");
            if !fj.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            let raw = read_json(&fj)?;
            let bindings = raw
                .get("bindings")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let trigger = bindings
                .iter()
                .find(|b| b.get("direction").and_then(Value::as_str) == Some("in"))
                .ok_or_else(|| LayoutError {
                    path: fj.display().to_string(),
                    reason: "no input (trigger) binding".into(),
                })?;
            let s = |k: &str| trigger.get(k).and_then(Value::as_str).map(str::to_string);
            let trigger = match s("type").as_deref() {
                Some("serviceBusTrigger") => Trigger::ServiceBus {
                    queue: s("queueName").ok_or_else(|| LayoutError {
                        path: fj.display().to_string(),
                        reason: "serviceBusTrigger without queueName".into(),
                    })?,
                    binding: s("name").unwrap_or_else(|| "msg".into()),
                    data_type: s("dataType"),
                    many: s("cardinality").is_some_and(|c| c.eq_ignore_ascii_case("many")),
                },
                Some("httpTrigger") => Trigger::Http {
                    route: s("route"),
                    methods: trigger
                        .get("methods")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|m| m.as_str().map(str::to_ascii_uppercase))
                                .collect()
                        })
                        .unwrap_or_default(),
                    auth_level: s("authLevel").unwrap_or_else(|| "function".into()),
                },
                Some("timerTrigger") => Trigger::Timer {
                    schedule: s("schedule").unwrap_or_default(),
                },
                other => {
                    return Err(LayoutError {
                        path: fj.display().to_string(),
                        reason: format!("unsupported trigger type {other:?}"),
                    });
                }
            };
            functions.push(FunctionDef { name, trigger, raw });
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            root: root.to_path_buf(),
            host: HostConfig {
                max_concurrent_calls,
                function_timeout,
                max_message_batch_size,
                max_auto_lock_renewal,
                raw: host_raw,
            },
            functions,
        })
    }
}

/// The period of a simple NCRONTAB schedule (`0 */N * * * *` → N minutes, `*/N * * * * *` → N
/// seconds); other forms fall back to 5 minutes.
pub(crate) fn timer_period(schedule: &str) -> Duration {
    let f: Vec<&str> = schedule.split_whitespace().collect();
    let every = |s: &str| s.strip_prefix("*/").and_then(|n| n.parse::<u64>().ok());
    match f.as_slice() {
        [sec, ..] if every(sec).is_some() => Duration::from_secs(every(sec).unwrap_or(300)),
        [_, min, ..] if every(min).is_some() => Duration::from_secs(60 * every(min).unwrap_or(5)),
        _ => Duration::from_secs(300),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans_and_schedules() {
        assert_eq!(parse_timespan("00:10:00"), Some(Duration::from_secs(600)));
        assert_eq!(
            parse_timespan("1.00:00:01"),
            Some(Duration::from_secs(86401))
        );
        assert_eq!(timer_period("0 */5 * * * *"), Duration::from_secs(300));
        assert_eq!(timer_period("*/10 * * * * *"), Duration::from_secs(10));
    }
}
