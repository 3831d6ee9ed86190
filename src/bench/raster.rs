//! `coremachine raster bench`: process_raster's COG step against GDAL's own tools, on the same
//! generated rasters, with the same creation options, in the same run (docs/performance.md).
//!
//! Each conversion is a child process, measured the same way for all tools: wall time around
//! the process, CPU time and peak RSS from `wait4`'s resource usage. CoreMachine's side is
//! `coremachine raster cog` (this binary): stage 1's validation, then stage 2's
//! [`cog::create_cog`](crate::jobs::process_raster::cog::create_cog), which reports how long
//! each took. GDAL's side is `gdal_translate -of COG` with the creation options CoreMachine
//! reported using, and, when reprojecting, `gdalwarp -of COG` with the same warp resampling.
//! Inputs are striped, uncompressed GeoTIFFs written in 256-row chunks by [`generate`], so no
//! tool starts from a cache-friendly tiled file and no step holds the whole raster in memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use gdal::DriverManager;
use gdal::raster::{Buffer, ColorInterpretation, RasterCreationOptions};
use gdal::spatial_ref::SpatialRef;
use serde::Serialize;
use serde_json::{Value, json};

use super::{BenchError, Emit};
use crate::jobs::process_raster::RasterError;

/// The CRS of the generated rasters (UTM 33N, 10 m pixels).
pub const SOURCE_CRS: &str = "EPSG:32633";
/// Rows written per chunk by [`generate`].
const CHUNK_ROWS: usize = 256;

/// Options of `coremachine raster bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct RasterBenchArgs {
    /// Raster sizes (width = height), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [4096, 10000])]
    pub sizes: Vec<usize>,
    /// The CRS of the reprojecting case (the job's default target).
    #[arg(long, default_value = "EPSG:4326")]
    pub reproject_to: String,
    /// Runs of each conversion; the report gives each tool's median.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Kind of raster generated: `rgb` (3 Byte bands) or `dem` (1 Int16 band with nodata).
    #[arg(long, default_value = "rgb")]
    pub kind: String,
    /// Folder for the inputs and outputs (default: a new folder in the system's temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// `text` or `json` (one object on stdout with the numbers).
    #[arg(long, value_enum, default_value_t = Emit::Text)]
    pub emit: Emit,
}

/// One child process, measured.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// Wall time from spawn to exit, seconds.
    pub wall_s: f64,
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
    /// Peak resident set size, MiB.
    pub peak_rss_mb: f64,
    /// Size of the file written, bytes.
    pub output_bytes: u64,
    /// What the child printed on stdout.
    #[serde(skip)]
    pub stdout: String,
}

/// Writes a striped, uncompressed GeoTIFF of `size` x `size` pixels in [`SOURCE_CRS`]: smooth
/// relief plus noise (so compression has real work), `CHUNK_ROWS` rows at a time.
pub fn generate(output: &Path, size: usize, kind: &str) -> Result<(), RasterError> {
    let fail = |what: &str| {
        let out = output.display().to_string();
        let what = what.to_string();
        move |e: gdal::errors::GdalError| {
            RasterError::new("Generate", format!("{what} of {out}: {e}"))
        }
    };
    let (bands, dem) = match kind {
        "rgb" => (3, false),
        "dem" => (1, true),
        other => {
            return Err(RasterError::new(
                "InvalidParameter",
                format!("--kind {other:?} is not rgb or dem"),
            ));
        }
    };
    let driver = DriverManager::get_driver_by_name("GTiff").map_err(fail("the GTiff driver"))?;
    let mut opts = RasterCreationOptions::new();
    opts.set_name_value("BIGTIFF", "IF_NEEDED")
        .map_err(fail("creation options"))?;
    let mut ds = if dem {
        driver.create_with_band_type_with_options::<i16, _>(output, size, size, bands, &opts)
    } else {
        driver.create_with_band_type_with_options::<u8, _>(output, size, size, bands, &opts)
    }
    .map_err(fail("creating"))?;
    ds.set_geo_transform(&[300_000.0, 10.0, 0.0, 5_600_000.0, 0.0, -10.0])
        .map_err(fail("the geotransform"))?;
    let sr = SpatialRef::from_definition(SOURCE_CRS).map_err(fail("the CRS"))?;
    ds.set_spatial_ref(&sr).map_err(fail("the CRS"))?;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for b in 1..=bands {
        let mut band = ds.rasterband(b).map_err(fail("a band"))?;
        if dem {
            band.set_no_data_value(Some(-32768.0))
                .map_err(fail("nodata"))?;
        } else {
            let ci = match b {
                1 => ColorInterpretation::RedBand,
                2 => ColorInterpretation::GreenBand,
                _ => ColorInterpretation::BlueBand,
            };
            band.set_color_interpretation(ci)
                .map_err(fail("colour interpretation"))?;
        }
        let phase = b as f64 * 1.7;
        for y0 in (0..size).step_by(CHUNK_ROWS) {
            let rows = CHUNK_ROWS.min(size - y0);
            let mut v = Vec::with_capacity(size * rows);
            for y in y0..y0 + rows {
                for x in 0..size {
                    // xorshift noise
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let noise = (seed % 25) as f64 - 12.0;
                    let (fx, fy) = (x as f64, y as f64);
                    let relief = (fx / 300.0 + phase).sin() * (fy / 410.0).cos() * 60.0
                        + ((fx + fy) / 97.0).sin() * 30.0;
                    v.push(relief + noise);
                }
            }
            if dem {
                // A nodata margin on the left, as around a real scene.
                let data: Vec<i16> = v
                    .iter()
                    .enumerate()
                    .map(|(i, z)| {
                        if i % size < size / 20 {
                            -32768
                        } else {
                            (1000.0 + z * 8.0) as i16
                        }
                    })
                    .collect();
                band.write(
                    (0, y0 as isize),
                    (size, rows),
                    &mut Buffer::new((size, rows), data),
                )
            } else {
                let data: Vec<u8> = v
                    .iter()
                    .map(|z| (128.0 + z).clamp(0.0, 255.0) as u8)
                    .collect();
                band.write(
                    (0, y0 as isize),
                    (size, rows),
                    &mut Buffer::new((size, rows), data),
                )
            }
            .map_err(fail("writing rows"))?;
        }
    }
    ds.flush_cache().map_err(fail("flushing"))?;
    Ok(())
}

/// Runs `cmd` to its end and measures it; `output` is the file it writes.
fn measure(mut cmd: Command, output: &Path) -> Result<Measured, BenchError> {
    let shown = format!("{cmd:?}");
    let _ = std::fs::remove_file(output);
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::Process(format!("starting {shown}: {e}")))?;
    let pid = child.id() as libc::pid_t;
    // Read the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out_pipe = child.stdout;
    let mut err_pipe = child.stderr;
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = std::io::Read::read_to_string(p, &mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = std::io::Read::read_to_string(p, &mut s);
        }
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child `pid`,
    // which nothing else waits for (the Child handle is not used to wait).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_s = start.elapsed().as_secs_f64();
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    if rc != pid {
        return Err(BenchError::Process(format!(
            "waiting for {shown}: {}",
            std::io::Error::last_os_error()
        )));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(BenchError::Workload(format!(
            "{shown} failed (wait status {status}): {}",
            stderr.trim()
        )));
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let output_bytes = std::fs::metadata(output)
        .map_err(|e| BenchError::Workload(format!("{shown} wrote no {}: {e}", output.display())))?
        .len();
    Ok(Measured {
        wall_s,
        cpu_s: secs(usage.ru_utime) + secs(usage.ru_stime),
        // ru_maxrss is in KiB on Linux.
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        output_bytes,
        stdout,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn summary(runs: &[Measured]) -> Value {
    json!({
        "wall_s": median(runs.iter().map(|m| m.wall_s).collect()),
        "cpu_s": median(runs.iter().map(|m| m.cpu_s).collect()),
        "peak_rss_mb": runs.iter().map(|m| m.peak_rss_mb).fold(0.0, f64::max),
        "output_bytes": runs.last().map(|m| m.output_bytes),
        "runs": runs,
    })
}

/// One size and target: CoreMachine's conversion and GDAL's, alternating, `runs` times each.
fn bench_case(
    exe: &Path,
    input: &Path,
    dir: &Path,
    target: &str,
    runs: usize,
) -> Result<Value, BenchError> {
    let reprojecting = target != SOURCE_CRS;
    let ours_out = dir.join("coremachine.tif");
    let translate_out = dir.join("gdal_translate.tif");
    let warp_out = dir.join("gdalwarp.tif");
    let (mut ours, mut translate, mut warp) = (Vec::new(), Vec::new(), Vec::new());
    let (mut create_s, mut validate_s) = (Vec::new(), Vec::new());
    let mut report = Value::Null;
    for _ in 0..runs.max(1) {
        let mut cmd = Command::new(exe);
        cmd.args(["raster", "cog"]).arg(input).arg(&ours_out).args([
            "--target-crs",
            target,
            "--tier",
            "analysis",
        ]);
        let m = measure(cmd, &ours_out)?;
        report = serde_json::from_str(&m.stdout).map_err(|e| {
            BenchError::Workload(format!("coremachine raster cog printed no report: {e}"))
        })?;
        create_s.push(
            report["timings"]["create_cog_s"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
        validate_s.push(report["timings"]["validate_s"].as_f64().unwrap_or(f64::NAN));
        ours.push(m);
        let options: Vec<String> = report["cog"]["creation_options"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut cmd = Command::new("gdal_translate");
        cmd.args(["-q", "-of", "COG"]);
        for o in &options {
            cmd.args(["-co", o]);
        }
        cmd.arg(input).arg(&translate_out);
        translate.push(measure(cmd, &translate_out)?);
        if reprojecting {
            let mut cmd = Command::new("gdalwarp");
            cmd.args(["-q", "-of", "COG", "-t_srs", target]);
            for o in &options {
                match o.split_once('=') {
                    Some(("TARGET_SRS", _)) => {}
                    Some(("RESAMPLING", r)) => {
                        cmd.args(["-r", &r.to_ascii_lowercase()]);
                    }
                    _ => {
                        cmd.args(["-co", o]);
                    }
                }
            }
            cmd.arg(input).arg(&warp_out);
            warp.push(measure(cmd, &warp_out)?);
        }
    }
    for f in [&ours_out, &translate_out, &warp_out] {
        let _ = std::fs::remove_file(f);
    }
    let ours_wall = median(ours.iter().map(|m| m.wall_s).collect());
    let create = median(create_s);
    let gdal_wall = median(translate.iter().map(|m| m.wall_s).collect());
    Ok(json!({
        "target_crs": target,
        "coremachine": summary(&ours),
        "coremachine_create_cog_s": create,
        "coremachine_validate_s": median(validate_s),
        "gdal_translate": summary(&translate),
        "gdalwarp": if reprojecting { summary(&warp) } else { Value::Null },
        "overhead_create_cog_vs_gdal_translate": create / gdal_wall - 1.0,
        "overhead_whole_command_vs_gdal_translate": ours_wall / gdal_wall - 1.0,
        "creation_options": report["cog"]["creation_options"],
        "output": {
            "width": report["cog"]["width"],
            "height": report["cog"]["height"],
            "overviews": report["cog"]["overviews"],
        },
    }))
}

fn on_path(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{:+.1} %", x * 100.0))
        .unwrap_or_else(|| "?".into())
}

fn print_text(case: &Value, size: usize) {
    let line = |name: &str, v: &Value| {
        if v.is_null() {
            return;
        }
        println!(
            "  {name:<15} wall {:>7.2} s  cpu {:>7.2} s  peak RSS {:>7.1} MiB  output {:>6.1} MiB",
            v["wall_s"].as_f64().unwrap_or(f64::NAN),
            v["cpu_s"].as_f64().unwrap_or(f64::NAN),
            v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
            v["output_bytes"].as_f64().unwrap_or(f64::NAN) / 1048576.0
        );
    };
    println!(
        "{size}x{size} -> {} (output {}x{}, {} overviews)",
        case["target_crs"].as_str().unwrap_or("?"),
        case["output"]["width"],
        case["output"]["height"],
        case["output"]["overviews"].as_array().map_or(0, Vec::len)
    );
    line("coremachine", &case["coremachine"]);
    line("gdal_translate", &case["gdal_translate"]);
    line("gdalwarp", &case["gdalwarp"]);
    println!(
        "  create_cog {:.2} s (validation {:.2} s); overhead vs gdal_translate: create_cog {}, whole command {}",
        case["coremachine_create_cog_s"]
            .as_f64()
            .unwrap_or(f64::NAN),
        case["coremachine_validate_s"].as_f64().unwrap_or(f64::NAN),
        pct(&case["overhead_create_cog_vs_gdal_translate"]),
        pct(&case["overhead_whole_command_vs_gdal_translate"])
    );
}

/// Runs the benchmark and prints it; returns the numbers.
pub async fn run(args: RasterBenchArgs) -> Result<Value, BenchError> {
    for tool in ["gdal_translate", "gdalwarp"] {
        if !on_path(tool) {
            return Err(BenchError::Process(format!(
                "{tool} is not on PATH (apt-get install gdal-bin)"
            )));
        }
    }
    let exe = std::env::current_exe()
        .map_err(|e| BenchError::Process(format!("finding this binary: {e}")))?;
    let own_dir = args.work_dir.is_none();
    let dir = args.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("cm-raster-bench-{}", uuid::Uuid::new_v4().simple()))
    });
    std::fs::create_dir_all(&dir)
        .map_err(|e| BenchError::Process(format!("creating {}: {e}", dir.display())))?;
    let mut cases = Vec::new();
    let result = async {
        for &size in &args.sizes {
            let input = dir.join(format!("input-{size}.tif"));
            let (path, kind) = (input.clone(), args.kind.clone());
            let start = Instant::now();
            tokio::task::spawn_blocking(move || generate(&path, size, &kind))
                .await
                .map_err(|e| BenchError::Workload(format!("generating: {e}")))?
                .map_err(|e| BenchError::Workload(e.message))?;
            let generated_s = start.elapsed().as_secs_f64();
            let input_mb = std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
            if args.emit == Emit::Text {
                println!("input {size}x{size} {} ({input_mb:.0} MiB, striped, uncompressed), generated in {generated_s:.1} s", args.kind);
            }
            for target in [SOURCE_CRS, args.reproject_to.as_str()] {
                let (exe, input, dir, target_s, runs) =
                    (exe.clone(), input.clone(), dir.clone(), target.to_string(), args.runs);
                let mut case = tokio::task::spawn_blocking(move || {
                    bench_case(&exe, &input, &dir, &target_s, runs)
                })
                .await
                .map_err(|e| BenchError::Workload(format!("benchmark thread: {e}")))??;
                case["size"] = json!(size);
                case["input_mb"] = json!(input_mb);
                if args.emit == Emit::Text {
                    print_text(&case, size);
                }
                cases.push(case);
            }
            let _ = std::fs::remove_file(&input);
        }
        Ok::<(), BenchError>(())
    }
    .await;
    if own_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result?;
    let out = json!({
        "kind": args.kind,
        "gdal": gdal::version::version_info("RELEASE_NAME"),
        "load_average": super::process::load_average(),
        "cases": cases,
    });
    if args.emit == Emit::Json {
        println!("{out}");
    }
    Ok(out)
}
