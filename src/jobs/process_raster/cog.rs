//! Stage 2's GDAL work: one local GeoTIFF in, one verified Cloud-Optimized GeoTIFF out.
//!
//! [`create_cog`] is the whole conversion (the benchmark calls it too): GDAL's COG driver
//! reprojects, tiles and builds overviews in one `create_copy`, spilling its intermediate
//! files to disk, never holding the raster in memory. Then [`verify`] reopens the output and
//! checks what a COG reader relies on; a failed check is an error naming it. Blocking: run it
//! inside `spawn_blocking`.

use std::path::Path;

use gdal::raster::{ColorInterpretation, RasterCreationOptions};
use gdal::{Dataset, DriverManager, Metadata};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::RasterError;
use super::inspect::{self, CrsInfo};
use super::profile::CogProfile;

/// The block (tile) size of every COG written.
pub(crate) const BLOCK_SIZE: usize = 512;

/// Everything [`create_cog`] needs besides the paths.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CogOptions {
    /// `TARGET_SRS`: the CRS of the output (`EPSG:4326`, WKT, ...).
    pub target_crs: String,
    /// A CRS to assign to the source first (the job's `input_crs`, when the file has none).
    pub source_crs: Option<String>,
    /// Whether the source's nodata is to be dropped (a value its data type cannot hold).
    pub drop_nodata: bool,
    /// Compression and resampling.
    pub profile: CogProfile,
    /// `NUM_THREADS` for compression and warping (None: GDAL's default, one).
    pub num_threads: Option<String>,
}

/// The checks run on every output; all must be true before a COG is reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CogChecks {
    /// GDAL reports `LAYOUT=COG` (header, IFDs and overviews before the pixel data).
    pub layout_cog: bool,
    /// Band 1 is tiled in 512 x 512 blocks.
    pub tiled: bool,
    /// Internal overviews go down to 512 pixels or fewer on the longer side.
    pub overviews_to_512: bool,
    /// The output's CRS is the target CRS.
    pub crs_is_target: bool,
}

/// STAC `raster:bands` entry of one output band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandInfo {
    /// STAC data type (`uint8`, `int16`, `float32`, ...).
    pub data_type: String,
    /// Nodata value.
    pub nodata: Option<f64>,
    /// Pixel size in CRS units.
    pub spatial_resolution: f64,
    /// GDAL colour interpretation (`red`, `gray`, `alpha`, ...).
    pub color_interpretation: String,
    /// minimum, maximum, mean, stddev (approximate: from overviews when large).
    pub statistics: Option<Value>,
}

/// A verified COG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CogReport {
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Bands (an alpha band added by the warp included).
    pub bands: Vec<BandInfo>,
    /// Overview sizes, largest first: [width, height].
    pub overviews: Vec<[usize; 2]>,
    /// Compression as GDAL reports it.
    pub compression: Option<String>,
    /// The output CRS.
    pub crs: CrsInfo,
    /// GDAL geotransform of the output.
    pub geotransform: [f64; 6],
    /// STAC `proj:transform`: the geotransform as [gt1, gt2, gt0, gt4, gt5, gt3].
    pub proj_transform: [f64; 6],
    /// Bounds in EPSG:4326 (lon/lat).
    pub bbox_wgs84: [f64; 4],
    /// The checks, all true.
    pub checks: CogChecks,
    /// The creation options given to GDAL.
    pub creation_options: Vec<String>,
}

fn gdal_fail(
    check: &'static str,
    what: String,
) -> impl FnOnce(gdal::errors::GdalError) -> RasterError {
    move |e| RasterError::new(check, format!("{what}: {e}"))
}

/// The COG driver's creation options for `opts`.
pub(crate) fn creation_options(opts: &CogOptions) -> Vec<String> {
    let p = &opts.profile;
    let mut o = vec![
        format!("TARGET_SRS={}", opts.target_crs),
        format!("RESAMPLING={}", p.resampling),
        format!("OVERVIEW_RESAMPLING={}", p.overview_resampling),
        format!("COMPRESS={}", p.compress),
        format!("BLOCKSIZE={BLOCK_SIZE}"),
        "OVERVIEWS=AUTO".into(),
        "BIGTIFF=IF_SAFER".into(),
    ];
    if let Some(pr) = &p.predictor {
        o.push(format!("PREDICTOR={pr}"));
    }
    if let Some(q) = p.quality {
        o.push(format!("QUALITY={q}"));
    }
    if let Some(t) = &opts.num_threads {
        o.push(format!("NUM_THREADS={t}"));
    }
    o
}

/// Converts `input` to a COG at `output` and verifies it. Temporary files (the warped copy,
/// overviews) go to `output`'s directory. `label` names the source in errors (the blob).
pub(crate) fn create_cog(
    input: &Path,
    output: &Path,
    opts: &CogOptions,
    label: &str,
) -> Result<CogReport, RasterError> {
    let tmp_dir = output.parent().unwrap_or(Path::new("."));
    // Per thread: spawn_blocking threads run other tasks' conversions at the same time.
    let _ = gdal::config::set_thread_local_config_option("CPL_TMPDIR", &tmp_dir.to_string_lossy());
    let _ = gdal::config::set_thread_local_config_option("GDAL_PAM_ENABLED", "NO");
    let src = Dataset::open(input).map_err(gdal_fail("NotARaster", format!("opening {label}")))?;
    // A virtual copy carries the fixes (assigned CRS, dropped nodata) without touching the file.
    let vrt = DriverManager::get_driver_by_name("VRT")
        .map_err(gdal_fail("GdalDriver", "the VRT driver".into()))?;
    let mut work = src
        .create_copy(&vrt, "", &RasterCreationOptions::new())
        .map_err(gdal_fail("CorruptRaster", format!("reading {label}")))?;
    if let Some(def) = &opts.source_crs {
        let sr = inspect::parse_crs(def).map_err(|e| RasterError::new("InvalidInputCrs", e))?;
        work.set_spatial_ref(&sr).map_err(gdal_fail(
            "InvalidInputCrs",
            format!("assigning {def} to {label}"),
        ))?;
    }
    let has_nodata = if opts.drop_nodata {
        for i in 1..=work.raster_count() {
            if let Ok(mut b) = work.rasterband(i) {
                let _ = b.set_no_data_value(None);
            }
        }
        false
    } else {
        work.rasterband(1)
            .map(|b| b.no_data_value().is_some())
            .unwrap_or(false)
    };
    let mut options = creation_options(opts);
    if has_nodata {
        // Nodata already marks the empty area around a reprojected raster: no alpha band.
        options.push("ADD_ALPHA=NO".into());
    }
    let mut list = RasterCreationOptions::new();
    for o in &options {
        let (k, v) = o.split_once('=').unwrap_or((o, ""));
        list.set_name_value(k, v)
            .map_err(gdal_fail("CogOptions", format!("creation option {o}")))?;
    }
    let cog = DriverManager::get_driver_by_name("COG")
        .map_err(gdal_fail("GdalDriver", "the COG driver".into()))?;
    let out = work.create_copy(&cog, output, &list).map_err(|e| {
        RasterError::new(
            "CogCreationFailed",
            format!("writing the COG of {label}: {e}"),
        )
    })?;
    drop(out);
    drop(work);
    verify(output, opts, label, options)
}

/// STAC raster data type of a GDAL type name.
pub(crate) fn stac_data_type(gdal: &str) -> String {
    match gdal {
        "Byte" => "uint8".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// Reopens `output` and checks it is a COG in the target CRS; reports what the STAC item needs.
pub(crate) fn verify(
    output: &Path,
    opts: &CogOptions,
    label: &str,
    creation_options: Vec<String>,
) -> Result<CogReport, RasterError> {
    let check = |name: &'static str, what: String| {
        RasterError::new(
            "CogCheckFailed",
            format!("the COG of {label} failed the {name} check: {what}"),
        )
    };
    let size_bytes = std::fs::metadata(output)
        .map_err(|e| RasterError::new("LocalIo", format!("the COG of {label}: {e}")))?
        .len();
    let ds = Dataset::open(output).map_err(gdal_fail(
        "CogCheckFailed",
        format!("reopening the COG of {label}"),
    ))?;
    let layout = ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE");
    if layout.as_deref() != Some("COG") {
        return Err(check("layout", format!("LAYOUT is {layout:?}, not COG")));
    }
    let (width, height) = ds.raster_size();
    let band1 = ds.rasterband(1).map_err(gdal_fail(
        "CogCheckFailed",
        format!("band 1 of the COG of {label}"),
    ))?;
    let block = band1.block_size();
    if block != (BLOCK_SIZE, BLOCK_SIZE) {
        return Err(check(
            "tiling",
            format!(
                "blocks are {}x{}, not {BLOCK_SIZE}x{BLOCK_SIZE}",
                block.0, block.1
            ),
        ));
    }
    let n = band1.overview_count().unwrap_or(0).max(0) as usize;
    let mut overviews = Vec::with_capacity(n);
    for i in 0..n {
        let o = band1.overview(i).map_err(gdal_fail(
            "CogCheckFailed",
            format!("overview {i} of the COG of {label}"),
        ))?;
        let (w, h) = o.size();
        overviews.push([w, h]);
    }
    let smallest = overviews.last().copied().unwrap_or([width, height]);
    if smallest[0].max(smallest[1]) > BLOCK_SIZE {
        return Err(check(
            "overviews",
            format!(
                "{width}x{height} with {n} overviews, the smallest {}x{} (more than {BLOCK_SIZE} px)",
                smallest[0], smallest[1]
            ),
        ));
    }
    let target = inspect::parse_crs(&opts.target_crs)
        .map_err(|e| RasterError::new("InvalidTargetCrs", e))?;
    let mut crs = ds
        .spatial_ref()
        .map_err(|e| check("crs", format!("the output has no CRS ({e})")))?;
    crs.set_axis_mapping_strategy(gdal::spatial_ref::AxisMappingStrategy::TraditionalGisOrder);
    if crs != target {
        return Err(check(
            "crs",
            format!(
                "the output CRS is {}, not {}",
                crs.name().unwrap_or_default(),
                opts.target_crs
            ),
        ));
    }
    let gt = ds
        .geo_transform()
        .map_err(|e| check("georeferencing", e.to_string()))?;
    let bounds = inspect::grid_bounds(&gt, width, height);
    let wgs84 = inspect::parse_crs("EPSG:4326").map_err(|e| RasterError::new("Proj", e))?;
    let bbox_wgs84 = inspect::transform_bounds(&crs, &wgs84, &bounds)
        .map_err(|e| check("bounds", format!("transforming to EPSG:4326: {e}")))?;
    let mut bands = Vec::new();
    for b in ds.rasterbands() {
        let b = b.map_err(gdal_fail(
            "CogCheckFailed",
            format!("a band of the COG of {label}"),
        ))?;
        let statistics = b.get_statistics(true, true).ok().flatten().map(
            |s| json!({"minimum": s.min, "maximum": s.max, "mean": s.mean, "stddev": s.std_dev}),
        );
        let interp = b.color_interpretation();
        bands.push(BandInfo {
            data_type: stac_data_type(&b.band_type().name()),
            nodata: b.no_data_value(),
            spatial_resolution: gt[1].abs(),
            color_interpretation: if interp == ColorInterpretation::AlphaBand {
                "alpha".into()
            } else {
                interp.name().to_ascii_lowercase()
            },
            statistics,
        });
    }
    Ok(CogReport {
        size_bytes,
        width,
        height,
        bands,
        overviews,
        compression: ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE"),
        crs: inspect::crs_info(&crs),
        geotransform: gt,
        proj_transform: [gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]],
        bbox_wgs84,
        checks: CogChecks {
            layout_cog: true,
            tiled: true,
            overviews_to_512: true,
            crs_is_target: true,
        },
        creation_options,
    })
}
