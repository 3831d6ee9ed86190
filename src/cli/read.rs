//! The read commands' output: `-o table` (aligned lines for people, the default) or `-o json`
//! (the API's documents, one per line for lists, for `jq`), written so that a closed pipe
//! (`| head`) ends the command quietly instead of panicking.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::{CliError, Client, enc};

const TERMINAL: &[&str] = &["completed", "completed_with_errors", "failed", "cancelled"];

/// Output format of a read command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON: the API's document (lists: one JSON object per line).
    Json,
}

/// Writes one line to stdout. When the reader went away (`| head`), the command ends here with
/// exit 0: everything it was asked for that the reader wanted has been written.
pub(super) fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{line}").and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("coremachine: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Pretty JSON of one document.
pub(super) fn out_json(v: &Value) {
    out(&serde_json::to_string_pretty(v).unwrap_or_default());
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `jobs`: one line per job.
pub(super) fn jobs(r: &Value, output: Output) {
    for j in r["jobs"].as_array().into_iter().flatten() {
        match output {
            Output::Json => out(&j.to_string()),
            Output::Table => out(&format!(
                "{}  {:<22} {:<16} stage {}/{}  attempt {}  {}",
                s(&j["job_id"]),
                s(&j["status"]),
                s(&j["job_type"]),
                j["stage"],
                j["total_stages"],
                j["attempt"],
                s(&j["created_at"])
            )),
        }
    }
}

fn event_line(e: &Value) -> String {
    let mut line = format!(
        "{}  {:<24} {:<8}",
        s(&e["created_at"]),
        e["event_type"].as_str().unwrap_or("?"),
        s(&e["event_status"])
    );
    if let Some(st) = e["stage"].as_i64() {
        line.push_str(&format!(" stage {st}"));
    }
    if let Some(t) = e["task_id"].as_str() {
        line.push_str(&format!(" task {}", &t[..t.len().min(12)]));
    }
    if let Some(a) = e["job_attempt"].as_i64().filter(|a| *a > 1) {
        line.push_str(&format!(" job attempt {a}"));
    }
    if let Some(m) = e["error_message"].as_str() {
        line.push_str(&format!("  error: {m}"));
    }
    line
}

/// `events`: every event of a job, following pages; with `follow`, then the new ones as they
/// come (polled with the `after` cursor) until the job is terminal. Tolerates a bare array or an
/// object with an `events` array, and a `next_cursor` (or `next_page`) to continue.
pub(super) async fn events(
    c: &Client,
    job_id: &str,
    follow: bool,
    output: Output,
) -> Result<ExitCode, CliError> {
    let base = format!("/api/jobs/{}/events", enc(job_id));
    let mut path = base.clone();
    let mut last_id: Option<i64> = None;
    loop {
        let page = c.get(&path).await?;
        let list = page
            .as_array()
            .or_else(|| page["events"].as_array())
            .cloned()
            .unwrap_or_default();
        for e in &list {
            match output {
                Output::Json => out(&e.to_string()),
                Output::Table => out(&event_line(e)),
            }
            last_id = e["event_id"].as_i64().or(last_id);
        }
        let next = match (&page["next_cursor"], &page["next_page"]) {
            (Value::String(c), _) if !c.is_empty() => Some(format!("cursor={}", enc(c))),
            (Value::Number(n), _) => Some(format!("cursor={n}")),
            (_, Value::Number(n)) => Some(format!("page={n}")),
            (_, Value::String(p)) if !p.is_empty() => Some(format!("page={}", enc(p))),
            _ => None,
        };
        if let Some(next) = next.filter(|_| !list.is_empty()) {
            path = format!("{base}?{next}");
            continue;
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        // Caught up: stop once the job has ended (its last events are written with its end).
        let job = c.get(&format!("/api/jobs/{}", enc(job_id))).await?;
        if list.is_empty() && TERMINAL.contains(&s(&job["status"])) {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(if list.is_empty() {
            1000
        } else {
            0
        }))
        .await;
        path = format!("{base}?after={}", last_id.unwrap_or(0));
    }
}

/// `tasks`: one page of a job's tasks, failures first, with the totals.
pub(super) async fn tasks(
    c: &Client,
    job_id: &str,
    status: Option<&str>,
    limit: u32,
    output: Output,
) -> Result<ExitCode, CliError> {
    let mut q = format!("limit={limit}");
    if let Some(st) = status {
        q.push_str(&format!("&status={}", enc(st)));
    }
    let r = c
        .get(&format!("/api/ui/data/jobs/{}/tasks?{q}", enc(job_id)))
        .await?;
    if output == Output::Json {
        out_json(&r);
        return Ok(ExitCode::SUCCESS);
    }
    let totals: Vec<String> = r["totals"]["by_status"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    out(&format!(
        "{} of {} matching, {} task(s) in all: {} (failures first)",
        r["count"],
        r["matching"],
        r["total"],
        totals.join(", ")
    ));
    for t in r["tasks"].as_array().into_iter().flatten() {
        let err = t["error_details"]
            .as_str()
            .map(|e| format!("  {}", e.chars().take(160).collect::<String>()))
            .unwrap_or_default();
        out(&format!(
            "{}  stage {:<3} #{:<6} {:<11} attempts {:<2} job attempt {}{err}",
            s(&t["task_id"]),
            t["stage"],
            t["task_index"].as_str().unwrap_or(""),
            s(&t["status"]),
            t["attempts"],
            t["job_attempt"]
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `types`: the job types with their stages and parameters.
pub(super) async fn types(c: &Client, output: Output) -> Result<ExitCode, CliError> {
    let r = c.get("/api/jobs/types").await?;
    for t in r["job_types"].as_array().into_iter().flatten() {
        if output == Output::Json {
            out(&t.to_string());
            continue;
        }
        let stages: Vec<&str> = t["stages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|st| s(&st["name"]))
            .collect();
        let params: Vec<&str> = t["parameters"]["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect();
        out(&format!(
            "{:<28} stages: {:<40} parameters: {}  ({})",
            s(&t["job_type"]),
            stages.join(" > "),
            params.join(", "),
            s(&t["description"])
        ));
    }
    Ok(ExitCode::SUCCESS)
}
