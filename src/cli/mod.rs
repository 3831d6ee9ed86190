//! The client subcommands of the binary: they talk to a running CoreMachine (local mode or the
//! Function app) over its HTTP API. Base URL and key come from `--url`/`--key` or
//! `COREMACHINE_URL`/`COREMACHINE_KEY`.
//!
//! Exit codes: 0 the job completed (or the request succeeded), 1 the job failed, was cancelled
//! or ended with errors, its state refused the action (409), or the service could not be reached;
//! 2 a usage error (bad arguments, or the API refused the request with another 4xx). Job ids may
//! be given by their first characters (the 12 the web page shows).

mod platform;
pub mod raster;
mod read;
mod watch;

pub use platform::PlatformCommand;
pub use read::Output;

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
        /// Job id (or its first characters).
        job_id: String,
        /// Output: `json` (the job document, the default) or `table` (one line per stage).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Json)]
        output: Output,
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
        /// Output: `table` or `json` (one job per line).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Print a job's events, oldest first.
    Events {
        /// Job id (or its first characters).
        job_id: String,
        /// Then print new events as they come, until the job ends.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Output: `table` or `json` (one event per line).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
    /// One page of a job's tasks, failures first, with the totals by status.
    Tasks {
        /// Job id (or its first characters).
        job_id: String,
        /// Only tasks with this status (failed, cancelled, processing, queued, completed).
        #[arg(long)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Output: `table` or `json` (the page document).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
    /// The job types, their stages and parameters.
    Types {
        /// Output: `table` or `json` (one type per line).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
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
        #[arg(long, conflicts_with = "failed_tasks")]
        from_start: bool,
        /// Run again only the failed or cancelled tasks of the stage where the job stopped (its
        /// completed tasks keep their results).
        #[arg(long)]
        failed_tasks: bool,
        /// Wait until the new attempt is terminal.
        #[arg(long)]
        wait: bool,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
    /// The earlier platform routes: `platform submit ...`, `platform status [<request_id>]`.
    Platform {
        /// What to do.
        #[command(subcommand)]
        cmd: PlatformCommand,
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
        if status == reqwest::StatusCode::CONFLICT {
            // A valid request the job's state refuses (cancel of a finished job): not a usage error.
            Err(CliError::Failed(msg))
        } else if status.is_client_error() {
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

    /// The full job id for `id`: a 64-hex id as is, or the one job whose id starts with a shorter
    /// hex prefix (the page shows the first 12 characters, maybe followed by `…`).
    pub async fn resolve_job(&self, id: &str) -> Result<String, CliError> {
        let id = id.trim().trim_end_matches(['…', '.']);
        let hex = !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit());
        if !hex || id.len() >= 64 {
            return Ok(id.to_string()); // the API says what is wrong with it
        }
        if id.len() < 6 {
            return Err(CliError::Usage(format!(
                "job id {id:?} is too short: give the full id or at least its first 6 characters (the page shows 12)"
            )));
        }
        let r = self
            .get(&format!("/api/ui/data/jobs?q={}&limit=2", enc(id)))
            .await?;
        let found: Vec<&str> = r["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| j["job_id"].as_str())
            .collect();
        match found.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(CliError::Usage(format!("no job id starts with {id}"))),
            many => Err(CliError::Usage(format!(
                "job id prefix {id} is ambiguous ({} and more match): give more characters",
                many.join(", ")
            ))),
        }
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

/// `status -o table`: the job, then one line per stage.
fn status_table(j: &Value) {
    let st = |v: &Value| v.as_str().unwrap_or("").to_string();
    read::out(&format!(
        "{}  {} {}  stage {}/{}  attempt {}",
        st(&j["job_id"]),
        st(&j["job_type"]),
        st(&j["status"]),
        j["stage"],
        j["total_stages"],
        j["attempt"]
    ));
    for s in j["stages"].as_array().into_iter().flatten() {
        read::out(&format!(
            "  stage {} {:<20} {:<10} {} task(s): {} completed, {} failed, {} processing, {} queued",
            s["stage"],
            st(&s["name"]),
            st(&s["status"]),
            s["task_count"],
            s["completed"],
            s["failed"],
            s["processing"],
            s["queued"]
        ));
    }
    if let Some(e) = j["error_details"].as_str() {
        read::out(&format!("error: {e}"));
    }
}

/// What a resubmit started and which attempt it follows, in one line.
fn resubmitted_line(r: &Value) -> String {
    let attempt = r["attempt"].as_i64().unwrap_or(0);
    let what = match r["mode"].as_str() {
        Some("failed_tasks") => format!(
            "{} failed task(s) of stage {} run again, {} completed kept",
            r["retried_tasks"], r["from_stage"], r["kept_tasks"]
        ),
        _ => format!("from stage {}", r["from_stage"]),
    };
    let error = r["previous_error"]
        .as_str()
        .map(|e| format!(": {}", e.chars().take(200).collect::<String>()))
        .unwrap_or_default();
    format!(
        "resubmitted job {} as attempt {attempt} ({what}), after attempt {} {}{error}",
        r["job_id"].as_str().unwrap_or(""),
        attempt - 1,
        r["previous_status"].as_str().unwrap_or("")
    )
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
    read::out_json(v);
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
        ClientCommand::Status {
            job_id,
            output,
            conn,
        } => {
            let c = Client::new(&conn)?;
            let job_id = c.resolve_job(&job_id).await?;
            let r = c.get(&format!("/api/jobs/{}", enc(&job_id))).await?;
            match output {
                Output::Json => print_json(&r),
                Output::Table => status_table(&r),
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Tasks {
            job_id,
            status,
            limit,
            output,
            conn,
        } => {
            let c = Client::new(&conn)?;
            let job_id = c.resolve_job(&job_id).await?;
            read::tasks(&c, &job_id, status.as_deref(), limit, output).await
        }
        ClientCommand::Types { output, conn } => {
            let c = Client::new(&conn)?;
            read::types(&c, output).await
        }
        ClientCommand::Jobs {
            status,
            job_type,
            hours,
            limit,
            output,
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
            read::jobs(&r, output);
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Events {
            job_id,
            follow,
            output,
            conn,
        } => {
            let c = Client::new(&conn)?;
            let job_id = c.resolve_job(&job_id).await?;
            read::events(&c, &job_id, follow, output).await
        }
        ClientCommand::Cancel {
            job_id,
            reason,
            conn,
        } => {
            let c = Client::new(&conn)?;
            let job_id = c.resolve_job(&job_id).await?;
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
            failed_tasks,
            wait,
            conn,
        } => {
            let c = Client::new(&conn)?;
            let job_id = c.resolve_job(&job_id).await?;
            let q = match (from_start, failed_tasks) {
                (true, _) => "?from=start",
                (_, true) => "?from=failed_tasks",
                _ => "",
            };
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
            eprintln!("{}", resubmitted_line(&r));
            watch::watch(&c, &job_id, None).await
        }
        ClientCommand::Platform { cmd } => platform::run(cmd).await,
        ClientCommand::Watch {
            job_id,
            timeout,
            conn,
        } => {
            let c = Client::new(&conn)?;
            let job_id = c.resolve_job(&job_id).await?;
            watch::watch(&c, &job_id, timeout).await
        }
    }
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
