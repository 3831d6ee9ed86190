//! `watch`: polls `GET /api/jobs/{job_id}` and draws one progress bar per stage (indicatif, on
//! stderr, only when it is a terminal) until the job is terminal; prints the outcome on stdout.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

use super::{CliError, Client, enc, exit_for_status};

const TERMINAL: &[&str] = &["completed", "completed_with_errors", "failed", "cancelled"];

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:<28} [{bar:40}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn update(bars: &mut Vec<ProgressBar>, multi: &MultiProgress, job: &Value) {
    let stages = job["stages"].as_array().cloned().unwrap_or_default();
    while bars.len() < stages.len() {
        let bar = multi.add(ProgressBar::new(0));
        bar.set_style(style());
        bars.push(bar);
    }
    for (bar, s) in bars.iter().zip(&stages) {
        let done = ["completed", "failed", "cancelled"]
            .iter()
            .map(|k| s[*k].as_u64().unwrap_or(0))
            .sum::<u64>();
        bar.set_prefix(format!(
            "stage {} {}",
            s["stage"],
            s["name"].as_str().unwrap_or("")
        ));
        let (len, pos) = bar_extent(s["task_count"].as_u64().unwrap_or(0), done, s);
        bar.set_length(len);
        bar.set_position(pos);
        bar.set_message(bar_message(s));
    }
}

/// Length and position of a stage's bar. A stage with no tasks yet (pending, or not started) is
/// drawn empty, not full as a 0/0 bar would be; a completed stage with no tasks is full.
fn bar_extent(task_count: u64, done: u64, s: &Value) -> (u64, u64) {
    if task_count > 0 {
        return (task_count, done.min(task_count));
    }
    let finished = matches!(s["status"].as_str(), Some("completed"));
    (1, u64::from(finished))
}

/// The status, and the failed count only when the status does not already say it.
fn bar_message(s: &Value) -> String {
    let status = s["status"].as_str().unwrap_or("pending").to_string();
    match s["failed"].as_u64().filter(|f| *f > 0) {
        Some(f) => format!("{status}: {f} task(s) failed"),
        None => status,
    }
}

/// Follows a job until it is terminal (or `timeout_s` passes); the exit code follows its status.
pub async fn watch(c: &Client, job_id: &str, timeout_s: Option<u64>) -> Result<ExitCode, CliError> {
    let multi = MultiProgress::new();
    let mut bars = Vec::new();
    let start = Instant::now();
    let path = format!("/api/jobs/{}", enc(job_id));
    loop {
        let job = c.get(&path).await?;
        update(&mut bars, &multi, &job);
        let status = job["status"].as_str().unwrap_or("").to_string();
        if TERMINAL.contains(&status.as_str()) {
            for b in &bars {
                b.finish();
            }
            super::read::out(&format!("job {job_id} {status}"));
            if let Some(e) = job["error_details"].as_str() {
                super::read::out(&format!("error: {e}"));
            }
            return Ok(exit_for_status(&status));
        }
        if timeout_s.is_some_and(|t| start.elapsed() > Duration::from_secs(t)) {
            for b in &bars {
                b.abandon();
            }
            return Err(CliError::Failed(format!(
                "job {job_id} is still {status} after {}s",
                timeout_s.unwrap_or(0)
            )));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pending_stage_is_drawn_empty_and_a_failed_count_is_said_once() {
        assert_eq!(bar_extent(0, 0, &json!({"status": "pending"})), (1, 0));
        assert_eq!(bar_extent(0, 0, &json!({"status": "completed"})), (1, 1));
        assert_eq!(bar_extent(4, 3, &json!({"status": "running"})), (4, 3));
        assert_eq!(
            bar_message(&json!({"status": "failed", "failed": 1})),
            "failed: 1 task(s) failed"
        );
        assert_eq!(bar_message(&json!({"status": "running"})), "running");
    }
}
