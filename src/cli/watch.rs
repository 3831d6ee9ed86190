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
        bar.set_length(s["task_count"].as_u64().unwrap_or(0));
        bar.set_position(done);
        let mut msg = s["status"].as_str().unwrap_or("").to_string();
        if let Some(f) = s["failed"].as_u64().filter(|f| *f > 0) {
            msg.push_str(&format!(", {f} failed"));
        }
        bar.set_message(msg);
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
            println!("job {job_id} {status}");
            if let Some(e) = job["error_details"].as_str() {
                println!("error: {e}");
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
