//! `coremachine bench` itself works end to end (a tiny N, not timed): the numbers the issue asks
//! for are all printed, the workload's counts are right, and the cold-start probe starts `serve`.

use serde_json::Value;

use crate::common::admin_url;

#[tokio::test]
async fn bench_prints_every_number_as_one_json_object() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"))
        .args([
            "bench",
            "--n",
            "25",
            "--runs",
            "1",
            "--floor-seconds",
            "0.5",
            "--emit",
            "json",
            "--allow-non-durable",
        ])
        .env("DATABASE_URL", admin_url())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    for key in [
        "tasks_per_s",
        "floor_tps",
        "ratio",
        "p50_ms",
        "p99_ms",
        "tx_per_task",
        "peak_rss_mb",
        "cold_start_ms",
        "n",
        "wall_s",
    ] {
        let x = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number: {v}"));
        assert!(x.is_finite() && x > 0.0, "{key} = {x}: {v}");
    }
    assert_eq!(v["n"], 25, "{v}");
    let ratio = v["tasks_per_s"].as_f64().unwrap() / v["floor_tps"].as_f64().unwrap();
    assert!(
        (ratio - v["ratio"].as_f64().unwrap()).abs() < 1e-6,
        "ratio is tasks/s ÷ floor: {v}"
    );
}
