//! The client subcommands of the binary: they talk to a running CoreMachine (local mode or the
//! Function app) over its HTTP API. Base URL and key come from `--url`/`--key` or
//! `COREMACHINE_URL`/`COREMACHINE_KEY`.
//!
//! Exit codes: 0 the job completed (or the request succeeded), 1 the job failed, was cancelled
//! or ended with errors, or the service could not be reached; 2 a usage error (bad arguments, or
//! the API refused the request with a 4xx).

pub mod raster;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Map, Value, json};

/// Where the API is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// Base URL of the service.
    #[arg(long, env = "COREMACHINE_URL", default_value = "http://127.0.0.1:7071")]
    pub url: String,
    /// Function key (sent as x-functions-key).
    #[arg(long, env = "COREMACHINE_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

/// The client subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Submit a job: `submit hello_world n=3 message=hi [--wait]`.
    Submit {
        /// Job type (see `GET /api/jobs/types`).
        job_type: String,
        /// Parameters as key=value; values are typed by the job type's schema (JSON for
        /// non-string parameters, e.g. `tags=["a","b"]`).
        params: Vec<String>,
        /// Wait until the job is terminal, showing one progress bar per stage.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds (exit 1).
        #[arg(long)]
        timeout: Option<u64>,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a job's status (`GET /api/jobs/{job_id}`).
    Status {
        /// Job id.
        job_id: String,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
    /// List jobs, newest first.
    Jobs {
        /// Only jobs with this status.
        #[arg(long)]
        status: Option<String>,
        /// Only jobs of this type.
        #[arg(long)]
        job_type: Option<String>,
        /// Only jobs created within this many hours.
        #[arg(long)]
        hours: Option<u32>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Print a job's events, oldest first.
    Events {
        /// Job id.
        job_id: String,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Cancel a queued or processing job.
    Cancel {
        /// Job id.
        job_id: String,
        /// Why (recorded with the event).
        #[arg(long)]
        reason: Option<String>,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Start a new attempt of a failed or cancelled job.
    Resubmit {
        /// Job id.
        job_id: String,
        /// Rerun every stage instead of resuming at the failed one.
        #[arg(long)]
        from_start: bool,
        /// Wait until the new attempt is terminal.
        #[arg(long)]
        wait: bool,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Follow a job with one progress bar per stage until it is terminal.
    Watch {
        /// Job id.
        job_id: String,
        /// Give up after this many seconds (exit 1).
        #[arg(long)]
        timeout: Option<u64>,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
}

/// Exit code of a usage error.
pub const USAGE: u8 = 2;

/// Why a client command failed.
#[derive(Debug)]
pub enum CliError {
    /// The arguments or the request were wrong (exit 2).
    Usage(String),
    /// The service failed or could not be reached (exit 1).
    Failed(String),
}

impl CliError {
    fn exit(self) -> ExitCode {
        match self {
            CliError::Usage(m) => {
                eprintln!("coremachine: {m}");
                ExitCode::from(USAGE)
            }
            CliError::Failed(m) => {
                eprintln!("coremachine: {m}");
                ExitCode::from(1)
            }
        }
    }
}

/// A small HTTP client for the API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    /// A client for `conn`.
    pub fn new(conn: &Conn) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CliError::Failed(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: conn.url.trim_end_matches('/').to_string(),
            key: conn.key.clone().filter(|k| !k.is_empty()),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value, CliError> {
        let req = match &self.key {
            Some(k) => req.header("x-functions-key", k),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| CliError::Failed(format!("{what}: cannot reach {}: {e}", self.base)))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let mut msg = format!(
            "{what}: HTTP {}: {}",
            status.as_u16(),
            body["message"].as_str().unwrap_or("(no message)")
        );
        for d in body["details"].as_array().into_iter().flatten() {
            msg.push_str(&format!(
                "\n  {}: {} (rule {}, got {})",
                d["field"].as_str().unwrap_or("?"),
                d["message"].as_str().unwrap_or(""),
                d["rule"].as_str().unwrap_or("?"),
                d["value"]
            ));
        }
        if status.is_client_error() {
            Err(CliError::Usage(msg))
        } else {
            Err(CliError::Failed(msg))
        }
    }

    /// GET a path under the base URL.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(
            self.http.get(format!("{}{path}", self.base)),
            &format!("GET {path}"),
        )
        .await
    }

    /// POST JSON to a path under the base URL.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(body),
            &format!("POST {path}"),
        )
        .await
    }
}

/// Exit code for a terminal job status.
pub fn exit_for_status(status: &str) -> ExitCode {
    if status == "completed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Builds the submit body from `key=value` arguments, typing each value by the job type's
/// parameter schema (strings stay strings; other types are parsed as JSON).
pub fn parse_params(args: &[String], schema: Option<&Value>) -> Result<Value, CliError> {
    let mut out = Map::new();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            return Err(CliError::Usage(format!("parameter {a:?} is not key=value")));
        };
        if k.is_empty() {
            return Err(CliError::Usage(format!("parameter {a:?} has no name")));
        }
        let declared = schema
            .and_then(|s| s.pointer(&format!("/properties/{k}/type")))
            .and_then(Value::as_str);
        let value = match declared {
            Some("string") => Value::String(v.to_string()),
            _ => serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string())),
        };
        out.insert(k.to_string(), value);
    }
    Ok(Value::Object(out))
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Runs a client subcommand; returns the process exit code.
pub async fn run(cmd: ClientCommand) -> ExitCode {
    match run_inner(cmd).await {
        Ok(code) => code,
        Err(e) => e.exit(),
    }
}

async fn run_inner(cmd: ClientCommand) -> Result<ExitCode, CliError> {
    match cmd {
        ClientCommand::Submit {
            job_type,
            params,
            wait,
            timeout,
            conn,
        } => {
            let c = Client::new(&conn)?;
            let types = c.get("/api/jobs/types").await.ok();
            let schema = types.as_ref().and_then(|t| {
                t["job_types"]
                    .as_array()?
                    .iter()
                    .find(|j| j["job_type"] == job_type.as_str())
                    .map(|j| j["parameters"].clone())
            });
            let body = parse_params(&params, schema.as_ref())?;
            let r = c
                .post(&format!("/api/jobs/submit/{}", enc(&job_type)), &body)
                .await?;
            let job_id = r["job_id"].as_str().unwrap_or_default().to_string();
            if !wait {
                print_json(&r);
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "submitted job {job_id} ({})",
                r["status"].as_str().unwrap_or("")
            );
            watch::watch(&c, &job_id, timeout).await
        }
        ClientCommand::Status { job_id, conn } => {
            let c = Client::new(&conn)?;
            let r = c.get(&format!("/api/jobs/{}", enc(&job_id))).await?;
            print_json(&r);
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Jobs {
            status,
            job_type,
            hours,
            limit,
            conn,
        } => {
            let c = Client::new(&conn)?;
            let mut q = format!("limit={limit}");
            if let Some(s) = status {
                q.push_str(&format!("&status={}", enc(&s)));
            }
            if let Some(t) = job_type {
                q.push_str(&format!("&job_type={}", enc(&t)));
            }
            if let Some(h) = hours {
                q.push_str(&format!("&hours={h}"));
            }
            let r = c.get(&format!("/api/jobs?{q}")).await?;
            for j in r["jobs"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<22} {:<16} stage {}/{}  attempt {}  {}",
                    j["job_id"].as_str().unwrap_or(""),
                    j["status"].as_str().unwrap_or(""),
                    j["job_type"].as_str().unwrap_or(""),
                    j["stage"],
                    j["total_stages"],
                    j["attempt"],
                    j["created_at"].as_str().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Events { job_id, conn } => {
            let c = Client::new(&conn)?;
            events(&c, &job_id).await
        }
        ClientCommand::Cancel {
            job_id,
            reason,
            conn,
        } => {
            let c = Client::new(&conn)?;
            let q = reason
                .map(|r| format!("?reason={}", enc(&r)))
                .unwrap_or_default();
            let r = c
                .post(&format!("/api/jobs/{}/cancel{q}", enc(&job_id)), &json!({}))
                .await?;
            print_json(&r);
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Resubmit {
            job_id,
            from_start,
            wait,
            conn,
        } => {
            let c = Client::new(&conn)?;
            let q = if from_start { "?from=start" } else { "" };
            let r = c
                .post(
                    &format!("/api/jobs/{}/resubmit{q}", enc(&job_id)),
                    &json!({}),
                )
                .await?;
            if !wait {
                print_json(&r);
                return Ok(ExitCode::SUCCESS);
            }
            watch::watch(&c, &job_id, None).await
        }
        ClientCommand::Watch {
            job_id,
            timeout,
            conn,
        } => {
            let c = Client::new(&conn)?;
            watch::watch(&c, &job_id, timeout).await
        }
    }
}

/// Prints every event of a job, following pages. Tolerates a bare array or an object with an
/// `events` array, and a `next_cursor` (or `next_page`) to continue.
async fn events(c: &Client, job_id: &str) -> Result<ExitCode, CliError> {
    let base = format!("/api/jobs/{}/events", enc(job_id));
    let mut path = base.clone();
    for _ in 0..10_000 {
        let page = c.get(&path).await?;
        let list = page
            .as_array()
            .or_else(|| page["events"].as_array())
            .cloned()
            .unwrap_or_default();
        for e in &list {
            let mut line = format!(
                "{}  {:<24} {:<8}",
                e["created_at"].as_str().unwrap_or(""),
                e["event_type"].as_str().unwrap_or("?"),
                e["event_status"].as_str().unwrap_or("")
            );
            if let Some(s) = e["stage"].as_i64() {
                line.push_str(&format!(" stage {s}"));
            }
            if let Some(t) = e["task_id"].as_str() {
                line.push_str(&format!(" task {}", &t[..t.len().min(12)]));
            }
            if let Some(m) = e["error_message"].as_str() {
                line.push_str(&format!("  error: {m}"));
            }
            println!("{line}");
        }
        let next = match (&page["next_cursor"], &page["next_page"]) {
            (Value::String(c), _) if !c.is_empty() => format!("cursor={}", enc(c)),
            (Value::Number(n), _) => format!("cursor={n}"),
            (_, Value::Number(n)) => format!("page={n}"),
            (_, Value::String(p)) if !p.is_empty() => format!("page={}", enc(p)),
            _ => return Ok(ExitCode::SUCCESS),
        };
        if list.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        path = format!("{base}?{next}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_typed_by_the_schema() {
        let schema = json!({"properties": {"n": {"type": "integer"}, "run": {"type": "string"}}});
        let v = parse_params(
            &["n=3".into(), "run=42".into(), "tags=[\"a\"]".into()],
            Some(&schema),
        )
        .unwrap();
        assert_eq!(v, json!({"n": 3, "run": "42", "tags": ["a"]}));
        assert!(matches!(
            parse_params(&["novalue".into()], None),
            Err(CliError::Usage(_))
        ));
    }
}
