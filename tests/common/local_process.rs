//! `coremachine local` as a child process (the real binary), its output captured.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The function key the child accepts.
pub const FUNCTION_KEY: &str = "fk-Secret-111";
/// The admin key the child accepts.
pub const ADMIN_KEY: &str = "mk-Secret-222";

fn capture(
    r: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let mut s = into.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    })
}

/// `coremachine local` as a child process, its stdout and stderr captured together.
pub struct LocalProcess {
    child: tokio::process::Child,
    out: Arc<Mutex<String>>,
    readers: (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>),
    pub base: String,
}

impl LocalProcess {
    /// Starts it on `database_url` with keys, admin routes and debug logging, plus `env`.
    pub async fn start(database_url: &str, env: &[(&str, String)]) -> Self {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"));
        cmd.args([
            "local",
            "--port",
            "0",
            "--app-root",
            env!("CARGO_MANIFEST_DIR"),
        ])
        .env("DATABASE_URL", database_url)
        .env("LOCAL_FUNCTION_KEYS", FUNCTION_KEY)
        .env("LOCAL_ADMIN_KEY", ADMIN_KEY)
        .env("COREMACHINE_ADMIN_ENABLED", "true")
        .env("RUST_LOG", "debug")
        .env("LOCAL_QUEUE_POLL_MS", "25");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("coremachine local starts");
        let out = Arc::new(Mutex::new(String::new()));
        let h1 = capture(child.stdout.take().unwrap(), out.clone());
        let h2 = capture(child.stderr.take().unwrap(), out.clone());
        let start = Instant::now();
        let base = loop {
            if let Some(u) = out.lock().unwrap().lines().find_map(|l| {
                l.split("listening on ")
                    .nth(1)
                    .map(|u| u.trim().to_string())
            }) {
                break u;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no listening line:\n{}",
                out.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Self {
            child,
            out,
            readers: (h1, h2),
            base,
        }
    }

    /// Submits a job with the function key; its id.
    pub async fn submit(&self, job_type: &str, params: Value) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/api/jobs/submit/{job_type}", self.base))
            .header("x-functions-key", FUNCTION_KEY)
            .json(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let v: Value = r.json().await.unwrap();
        v["job_id"].as_str().unwrap().to_string()
    }

    /// SIGTERM, as the Functions host stops a worker (the exporter flushes what it buffered);
    /// everything it printed.
    pub async fn stop(mut self) -> String {
        let pid = self.child.id().expect("child pid").to_string();
        let term = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(term.success());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let _ = self.child.start_kill();
        let _ = tokio::join!(self.readers.0, self.readers.1);
        self.out.lock().unwrap().clone()
    }

    /// `kill -9`: the process dies at once, nothing is flushed or settled; everything it printed.
    pub async fn kill9(mut self) -> String {
        let pid = self.child.id().expect("child pid").to_string();
        let kill = tokio::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .await
            .unwrap();
        assert!(kill.success());
        let _ = self.child.wait().await;
        let _ = tokio::join!(self.readers.0, self.readers.1);
        self.out.lock().unwrap().clone()
    }
}
