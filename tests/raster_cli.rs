//! `coremachine raster ...`: process_raster's validation and COG step on local files, as
//! scripts/check-bundle.sh runs them from the unpacked zip, and the benchmark against GDAL's
//! tools (a tiny raster, not timed). Outputs are checked with GDAL's own gdalinfo and, when the
//! test set-up installed it (COREMACHINE_RIO), rio-cogeo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn coremachine(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coremachine"))
        .arg("raster")
        .args(args)
        .args(paths)
        .output()
        .expect("coremachine runs")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON report on stdout")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cm-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn raster_cog_turns_a_striped_dem_into_a_cog_that_gdal_accepts_and_refuses_bad_input() {
    let dir = temp_dir("raster-cli");
    let input = dir.join("dem.tif");
    let cog = dir.join("dem-cog.tif");
    json_of(&coremachine(
        &["generate", "--size", "1100", "--kind", "dem"],
        &[&input],
    ));
    let v = json_of(&coremachine(
        &["cog", "--target-crs", "EPSG:3857"],
        &[&input, &cog],
    ));
    assert_eq!(v["validation"]["raster_type"], "dem", "{v}");
    assert_eq!(v["validation"]["tiled"], false, "the input is striped");
    let checks = &v["cog"]["checks"];
    for c in ["layout_cog", "tiled", "overviews_to_512", "crs_is_target"] {
        assert_eq!(checks[c], true, "{c}: {checks}");
    }
    assert!(
        v["timings"]["create_cog_s"]
            .as_f64()
            .is_some_and(|s| s > 0.0)
    );

    // The same file through GDAL's own eyes.
    let info = Command::new("gdalinfo").arg(&cog).output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("LAYOUT=COG"), "{info}");
    assert!(info.contains("Block=512x512"), "{info}");
    assert!(info.contains("NoData Value=-32768"), "nodata kept: {info}");
    assert!(info.contains("Overviews:"), "{info}");
    assert!(info.contains(r#"ID["EPSG",3857]]"#), "{info}");
    if let Ok(rio) = std::env::var("COREMACHINE_RIO") {
        let out = Command::new(rio)
            .args(["cogeo", "validate"])
            .arg(&cog)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("is a valid cloud optimized GeoTIFF"),
            "{said}"
        );
    }

    // A text file named .tif: refused, exit code 1, the file and the check named.
    let bad = dir.join("notes.tif");
    std::fs::write(&bad, "not a raster\n").unwrap();
    let out = coremachine(&["validate"], &[&bad]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("NotARaster") && err.contains(&bad.display().to_string()),
        "{err}"
    );
    // A tier that does not exist: refused before any work.
    let out = coremachine(&["cog", "--tier", "gold"], &[&input, &cog]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--tier \"gold\""), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn raster_bench_runs_coremachine_and_gdal_on_the_same_raster_with_the_same_options() {
    let dir = temp_dir("raster-bench");
    let out = Command::new(env!("CARGO_BIN_EXE_coremachine"))
        .args([
            "raster",
            "bench",
            "--sizes",
            "700",
            "--emit",
            "json",
            "--work-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let v = json_of(&out);
    let cases = v["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 2, "same CRS and reprojected: {v}");
    for case in cases {
        let tools: &[&str] = if case["target_crs"] == "EPSG:32633" {
            &["coremachine", "gdal_translate"]
        } else {
            &["coremachine", "gdal_translate", "gdalwarp"]
        };
        for t in tools {
            for k in ["wall_s", "cpu_s", "peak_rss_mb", "output_bytes"] {
                let x = case[t][k].as_f64().unwrap_or(f64::NAN);
                assert!(x > 0.0, "{t} {k} = {x}: {case}");
            }
        }
        assert!(
            case["overhead_create_cog_vs_gdal_translate"]
                .as_f64()
                .is_some_and(f64::is_finite),
            "{case}"
        );
        let options = case["creation_options"].as_array().unwrap();
        assert!(
            options.contains(&Value::from(format!(
                "TARGET_SRS={}",
                case["target_crs"].as_str().unwrap()
            ))),
            "{case}"
        );
    }
    assert_eq!(cases[1]["target_crs"], "EPSG:4326");
    assert!(
        cases[1]["gdalwarp"].is_object() && cases[0]["gdalwarp"].is_null(),
        "gdalwarp only when reprojecting"
    );
    // The inputs and outputs are removed after each size.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
