//! The processes the benchmark measures: the `coremachine` binary itself, started as production
//! starts it (`local` for the workload, `serve` for the cold start), and what the kernel says
//! about them (`/proc/<pid>/status`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::BenchError;

/// A free local port (bound and released; the child binds it right after).
pub fn free_port() -> Result<u16, BenchError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BenchError::Process(format!("finding a free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| BenchError::Process(format!("finding a free port: {e}")))
}

/// Starts this binary with `args` and `env`; stdout/stderr go to `log` (or nowhere).
pub fn spawn(
    args: &[&str],
    env: &[(&str, String)],
    log: Option<&Path>,
) -> Result<Child, BenchError> {
    let exe = std::env::current_exe()
        .map_err(|e| BenchError::Process(format!("locating the coremachine binary: {e}")))?;
    let mut cmd = Command::new(&exe);
    cmd.args(args).kill_on_drop(true).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    match log {
        Some(p) => {
            let f = std::fs::File::create(p)
                .map_err(|e| BenchError::Process(format!("creating {}: {e}", p.display())))?;
            let f2 = f
                .try_clone()
                .map_err(|e| BenchError::Process(format!("log file: {e}")))?;
            cmd.stdout(f).stderr(f2);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    cmd.spawn().map_err(|e| {
        BenchError::Process(format!(
            "starting {} {}: {e}",
            exe.display(),
            args.join(" ")
        ))
    })
}

/// One `GET /` over a fresh connection; true when it answered 200.
pub async fn get_root(port: u16) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if s.write_all(req).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"HTTP/1.1 200")
}

/// Polls `GET /` every millisecond until it answers; returns the time since `since`.
pub async fn wait_ready(
    port: u16,
    child: &mut Child,
    since: Instant,
    timeout: Duration,
) -> Result<Duration, BenchError> {
    loop {
        if get_root(port).await {
            return Ok(since.elapsed());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(BenchError::Process(format!(
                "coremachine exited ({status}) before answering GET / on port {port}"
            )));
        }
        if since.elapsed() > timeout {
            return Err(BenchError::Process(format!(
                "coremachine did not answer GET / on port {port} within {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MiB.
pub fn proc_status_mb(pid: u32, field: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
}

/// The 1-minute load average (`uptime`), for the report.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// Size of this binary in MiB.
pub fn binary_mb() -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    Some(std::fs::metadata(exe).ok()?.len() as f64 / (1024.0 * 1024.0))
}
