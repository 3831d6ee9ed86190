//! `coremachine raster ...`: process_raster's GDAL steps on local files, without a database,
//! a queue or Blob Storage. They call the job's own functions ([`inspect::inspect`],
//! [`profile::profile`], [`cog::create_cog`]), so they prove what the job would do with a file:
//! scripts/check-bundle.sh runs them from the unpacked deployment zip, and
//! `coremachine raster bench` times them against GDAL's own tools.
//!
//! Exit codes: 0 done (the report is printed as JSON on stdout), 1 the file was refused or the
//! conversion failed (the check and the reason on stderr), 2 a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;

use crate::jobs::process_raster::RasterError;
use crate::jobs::process_raster::cog::{self, CogOptions, CogReport};
use crate::jobs::process_raster::inspect::{self, InspectRequest, RasterReport};
use crate::jobs::process_raster::profile::{self, RasterType, Tier};

/// The raster subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RasterCommand {
    /// Stage 1 (validate_raster) on a local file: prints the report, or why it is refused.
    Validate {
        /// The GeoTIFF.
        file: PathBuf,
        /// What the job is asked to convert it to.
        #[command(flatten)]
        request: Request,
    },
    /// Stages 1 and 2 (validate_raster, create_cog) on a local file: writes a verified COG.
    Cog {
        /// The GeoTIFF.
        input: PathBuf,
        /// Where the COG goes (its folder holds GDAL's temporary files meanwhile).
        output: PathBuf,
        /// What the job is asked to convert it to.
        #[command(flatten)]
        request: Request,
        /// `output_tier` (one tier: visualization, analysis or archive).
        #[arg(long, default_value = "analysis")]
        tier: String,
    },
    /// Writes a synthetic striped GeoTIFF (smooth relief plus noise, in 256-row chunks).
    Generate {
        /// Where it goes.
        output: PathBuf,
        /// Width and height in pixels.
        #[arg(long, default_value_t = 4096)]
        size: usize,
        /// `rgb` (3 Byte bands) or `dem` (1 Int16 band with nodata).
        #[arg(long, default_value = "rgb")]
        kind: String,
    },
    /// Benchmark: the COG step against gdal_translate / gdalwarp (docs/performance.md).
    Bench(crate::bench::raster::RasterBenchArgs),
}

/// The job parameters that matter for one local file.
#[derive(Debug, Clone, clap::Args)]
pub struct Request {
    /// `target_crs`.
    #[arg(long, default_value = "EPSG:4326")]
    pub target_crs: String,
    /// `input_crs`: the CRS when the file has none.
    #[arg(long)]
    pub input_crs: Option<String>,
    /// `raster_type` (auto, rgb, rgba, dem, categorical, multispectral).
    #[arg(long, default_value = "auto")]
    pub raster_type: String,
    /// `jpeg_quality` (visualization of rgb).
    #[arg(long, default_value_t = 85)]
    pub jpeg_quality: u8,
    /// `resampling` override.
    #[arg(long)]
    pub resampling: Option<String>,
    /// `strict_mode`: warnings fail.
    #[arg(long)]
    pub strict: bool,
}

impl Request {
    fn raster_type(&self) -> Result<Option<RasterType>, RasterError> {
        if self.raster_type == "auto" {
            return Ok(None);
        }
        RasterType::parse(&self.raster_type)
            .map(Some)
            .ok_or_else(|| {
                RasterError::new(
                    "InvalidParameter",
                    format!(
                        "--raster-type {:?} is not auto or one of {:?}",
                        self.raster_type,
                        RasterType::NAMES
                    ),
                )
            })
    }
}

/// Stage 1 on `file` (`label` names it in errors).
pub fn validate(file: &Path, label: &str, req: &Request) -> Result<RasterReport, RasterError> {
    inspect::inspect(
        file,
        label,
        &InspectRequest {
            input_crs: req.input_crs.as_deref(),
            raster_type: req.raster_type()?,
            strict: req.strict,
            target_crs: &req.target_crs,
        },
    )
}

/// The options stage 2 gets for `report` in `tier`, decided as the job's stage-2 fan-out does.
pub fn cog_options(report: &RasterReport, tier: Tier, req: &Request) -> CogOptions {
    CogOptions {
        target_crs: req.target_crs.clone(),
        source_crs: (report.crs_source == "input_crs")
            .then(|| req.input_crs.clone())
            .flatten(),
        drop_nodata: report.nodata_dropped,
        profile: profile::profile(
            report.raster_type,
            tier,
            report.data_type == "Byte",
            report.nodata.is_some(),
            req.jpeg_quality,
            req.resampling.as_deref(),
        ),
        num_threads: std::env::var("RASTER_NUM_THREADS").ok(),
    }
}

/// What [`convert`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Converted {
    /// Stage 1's report.
    pub validation: RasterReport,
    /// Stage 2's verified COG.
    pub cog: CogReport,
    /// Seconds each stage took: `validate_s`, `create_cog_s`.
    pub timings: serde_json::Value,
}

/// Stages 1 and 2 on `input`: the validation and the verified COG at `output`.
pub fn convert(
    input: &Path,
    output: &Path,
    tier: &str,
    req: &Request,
) -> Result<Converted, RasterError> {
    let tier = Tier::parse(tier).ok_or_else(|| {
        RasterError::new(
            "InvalidParameter",
            format!("--tier {tier:?} is not visualization, analysis or archive"),
        )
    })?;
    let label = input.display().to_string();
    let start = Instant::now();
    let validation = validate(input, &label, req)?;
    let validate_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let cog = cog::create_cog(input, output, &cog_options(&validation, tier, req), &label)?;
    Ok(Converted {
        validation,
        cog,
        timings: json!({ "validate_s": validate_s, "create_cog_s": start.elapsed().as_secs_f64() }),
    })
}

fn print(v: &serde_json::Value) {
    use std::io::Write;
    // A closed pipe (`| head`) is not an error of the conversion.
    let _ = writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_default()
    );
}

fn refused(e: &RasterError) -> ExitCode {
    eprintln!("coremachine raster: {}: {}", e.check, e.message);
    ExitCode::from(1)
}

/// Runs `f` on a blocking thread and prints its report.
async fn blocking(
    f: impl FnOnce() -> Result<serde_json::Value, RasterError> + Send + 'static,
) -> ExitCode {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => {
            print(&v);
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => refused(&e),
        Err(e) => {
            eprintln!("coremachine raster: the GDAL thread failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs a raster subcommand (GDAL work is blocking: it runs on a blocking thread).
pub async fn run(cmd: RasterCommand) -> ExitCode {
    match cmd {
        RasterCommand::Bench(args) => match crate::bench::raster::run(args).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("coremachine raster bench: {e}");
                ExitCode::from(1)
            }
        },
        RasterCommand::Validate { file, request } => {
            blocking(move || {
                validate(&file, &file.display().to_string(), &request)
                    .map(|r| json!({ "validation": r }))
            })
            .await
        }
        RasterCommand::Cog {
            input,
            output,
            request,
            tier,
        } => blocking(move || convert(&input, &output, &tier, &request).map(|c| json!(c))).await,
        RasterCommand::Generate { output, size, kind } => {
            blocking(move || {
                crate::bench::raster::generate(&output, size, &kind)
                    .map(|()| json!({ "generated": output, "size": size, "kind": kind }))
            })
            .await
        }
    }
}
