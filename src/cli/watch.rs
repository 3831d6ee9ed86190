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

/// For a failed or cancelled job: what the error class means and the command that goes on.
fn what_next(job_id: &str, job: &Value, summary: &Value) -> String {
    let stopped = job["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["stage"] == job["stage"]);
    let unfinished = stopped.map_or(0, |s| {
        ["failed", "cancelled", "queued"]
            .iter()
            .map(|k| s[*k].as_u64().unwrap_or(0))
            .sum::<u64>()
    });
    let cmd = if unfinished > 0 {
        format!("coremachine resubmit {job_id} --failed-tasks")
    } else {
        format!("coremachine resubmit {job_id}")
    };
    let why = match (
        job["status"].as_str(),
        summary["first_failure"]["error_class"].as_str(),
    ) {
        (Some("cancelled"), _) => "the job was cancelled; to finish it",
        (_, Some("transient")) => {
            "a transient error outlasted its retries (a service or the network was unavailable); retrying may help once it is back"
        }
        (_, Some("permanent")) => {
            "a permanent error: running it again as it is fails the same way; fix what the error names (the input, a missing blob, the job type's code), then"
        }
        _ => "to run it again",
    };
    format!("what next: {why}: {cmd}")
}

/// Follows a job until it is terminal (or `timeout_s` passes); the exit code follows its status.
pub(super) async fn watch(
    c: &Client,
    job_id: &str,
    timeout_s: Option<u64>,
) -> Result<ExitCode, CliError> {
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
            if ["failed", "cancelled"].contains(&status.as_str()) {
                // Best effort: the outcome is already printed if the summary cannot be read.
                let summary = c
                    .get(&format!("/api/jobs/{}/events/summary", enc(job_id)))
                    .await
                    .unwrap_or_default();
                super::read::out(&what_next(job_id, &job, &summary));
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
    fn a_failed_job_is_told_what_to_do_next_by_its_error_class() {
        let job = json!({"status": "failed", "stage": 2, "stages": [{"stage": 2, "failed": 1}]});
        let permanent = json!({"first_failure": {"error_class": "permanent"}});
        let next = what_next("abc", &job, &permanent);
        assert!(
            next.contains("permanent error")
                && next.ends_with("coremachine resubmit abc --failed-tasks"),
            "{next}"
        );
        let transient = json!({"first_failure": {"error_class": "transient"}});
        assert!(what_next("abc", &job, &transient).contains("retrying may help"));
        let finalize =
            json!({"status": "failed", "stage": 2, "stages": [{"stage": 2, "completed": 3}]});
        assert!(what_next("abc", &finalize, &json!({})).ends_with("coremachine resubmit abc"));
    }

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
