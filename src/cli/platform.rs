//! `coremachine platform submit|status`: the platform routes from the command line
//! (`POST /api/platform/submit`, `GET /api/platform/status[/{request_id}]`).

use std::process::ExitCode;

use serde_json::{Value, json};

use super::{CliError, Client, Conn, Output, enc, parse_params, read, watch};

/// `coremachine platform ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PlatformCommand {
    /// Submit a platform request: `platform submit dataset_id=d resource_id=r version_id=v
    /// container_name=c file_name=a.tif [file_name='["a.tif","b.tif"]']
    /// [processing_options='{"output_tier":"all"}'] [--wait]`.
    Submit {
        /// Fields as key=value (the ids and names stay strings; `file_name`, `tags` and
        /// `processing_options` are read as JSON when they parse).
        fields: Vec<String>,
        /// Wait until the request's job is terminal, showing one progress bar per stage.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds (exit 1).
        #[arg(long)]
        timeout: Option<u64>,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
    /// One request with its job (with a request id), or the requests, newest first.
    Status {
        /// Request id (32 hex); without it, the list.
        request_id: Option<String>,
        /// The list: only this dataset's requests.
        #[arg(long)]
        dataset_id: Option<String>,
        /// The list: how many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Output: `table` or `json` (one request: its document; the list: one per line).
        #[arg(short = 'o', long, value_enum)]
        output: Option<Output>,
        /// Where the API is.
        #[command(flatten)]
        conn: Conn,
    },
}

/// The body fields that are strings whatever they look like (`version_id=1.0` stays "1.0").
fn schema() -> Value {
    let string = json!({"type": "string"});
    let props: serde_json::Map<String, Value> = [
        "dataset_id",
        "resource_id",
        "version_id",
        "operation",
        "container_name",
        "service_name",
        "access_level",
        "description",
        "client_id",
    ]
    .into_iter()
    .map(|k| (k.to_string(), string.clone()))
    .collect();
    json!({"properties": props})
}

fn request_line(r: &Value) -> String {
    let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
    format!(
        "{}  {}/{}/{}  {} {}  {:<10} stage {}/{}  job {}",
        s("request_id"),
        s("dataset_id"),
        s("resource_id"),
        s("version_id"),
        s("data_type"),
        s("job_type"),
        s("job_status"),
        r["job_stage"],
        r["total_stages"],
        s("job_id").chars().take(12).collect::<String>()
    )
}

/// Runs a platform subcommand.
pub(super) async fn run(cmd: PlatformCommand) -> Result<ExitCode, CliError> {
    match cmd {
        PlatformCommand::Submit {
            fields,
            wait,
            timeout,
            conn,
        } => {
            let c = Client::new(&conn)?;
            let body = parse_params(&fields, Some(&schema()))?;
            let r = c.post("/api/platform/submit", &body).await?;
            if !wait {
                read::out_json(&r);
                return Ok(ExitCode::SUCCESS);
            }
            let job_id = r["job_id"].as_str().unwrap_or_default().to_string();
            eprintln!(
                "platform request {} -> {} job {job_id} ({})",
                r["request_id"].as_str().unwrap_or(""),
                r["job_type"].as_str().unwrap_or(""),
                if r["idempotent"] == true {
                    "existing request"
                } else {
                    "submitted"
                }
            );
            watch::watch(&c, &job_id, timeout).await
        }
        PlatformCommand::Status {
            request_id: Some(id),
            output,
            conn,
            ..
        } => {
            let c = Client::new(&conn)?;
            let r = c
                .get(&format!("/api/platform/status/{}", enc(id.trim())))
                .await?;
            match output.unwrap_or(Output::Json) {
                Output::Json => read::out_json(&r),
                Output::Table => read::out(&request_line(&r)),
            }
            Ok(ExitCode::SUCCESS)
        }
        PlatformCommand::Status {
            request_id: None,
            dataset_id,
            limit,
            output,
            conn,
        } => {
            let c = Client::new(&conn)?;
            let mut q = format!("limit={limit}");
            if let Some(d) = dataset_id {
                q.push_str(&format!("&dataset_id={}", enc(&d)));
            }
            let r = c.get(&format!("/api/platform/status?{q}")).await?;
            for req in r["requests"].as_array().into_iter().flatten() {
                match output.unwrap_or(Output::Table) {
                    Output::Json => read::out_json(req),
                    Output::Table => read::out(&request_line(req)),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_stay_strings_and_lists_are_json() {
        let v = super::parse_params(
            &[
                "version_id=1.0".into(),
                "file_name=[\"a.tif\",\"b.tif\"]".into(),
                "processing_options={\"chunk_size\": 30}".into(),
                "dataset_id=2024".into(),
            ],
            Some(&super::schema()),
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"version_id": "1.0", "file_name": ["a.tif", "b.tif"],
                               "processing_options": {"chunk_size": 30}, "dataset_id": "2024"})
        );
    }
}
