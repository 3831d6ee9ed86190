//! Stage 1's GDAL work: open a local copy of the blob and report what it is (driver, size, bands,
//! type, nodata, CRS, georeferencing, overviews, tiling, raster type), or say why it cannot be
//! processed. Blocking: run it inside `spawn_blocking`.

use std::path::Path;

use gdal::raster::{ColorInterpretation, GdalDataType};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::{Dataset, Metadata};
use serde::{Deserialize, Serialize};

use super::RasterError;
use super::profile::{self, BandSummary, RasterType};

/// A coordinate reference system as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrsInfo {
    /// `EPSG:nnnn` when the CRS has (or is identified with) an EPSG code.
    pub code: Option<String>,
    /// The CRS's name.
    pub name: Option<String>,
    /// WKT2 of the CRS (what GDAL is given when there is no code).
    pub wkt: String,
}

/// What stage 1 reports about the source raster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RasterReport {
    /// GDAL driver short name (always GTiff for accepted input).
    pub driver: String,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Band count.
    pub band_count: usize,
    /// GDAL data type of band 1.
    pub data_type: String,
    /// Nodata value of band 1 (None: none, or one the data type cannot hold).
    pub nodata: Option<f64>,
    /// Whether the file declares a nodata value its data type cannot hold (dropped from the COG).
    pub nodata_dropped: bool,
    /// The source CRS: from the file, or `input_crs` when the file has none.
    pub crs: CrsInfo,
    /// Where the CRS came from: `file` or `input_crs`.
    pub crs_source: String,
    /// GDAL geotransform.
    pub geotransform: [f64; 6],
    /// Bounds in the source CRS: [minx, miny, maxx, maxy].
    pub bounds: [f64; 4],
    /// Bounds in EPSG:4326 (lon/lat).
    pub bbox_wgs84: [f64; 4],
    /// Internal overview count of band 1.
    pub overview_count: usize,
    /// Whether the file is tiled (blocks narrower than the image).
    pub tiled: bool,
    /// Block size of band 1 [width, height].
    pub block_size: [usize; 2],
    /// TIFF compression, when GDAL reports it.
    pub compression: Option<String>,
    /// Whether the file already is a COG (`LAYOUT=COG`).
    pub is_cog: bool,
    /// Raster type detected from bands, type and palette.
    pub detected_type: RasterType,
    /// The raster type used: `raster_type` when given, else the detected one.
    pub raster_type: RasterType,
    /// Things that did not stop processing.
    pub warnings: Vec<String>,
}

/// What the job asked for, as far as validation is concerned.
#[derive(Debug, Clone)]
pub(crate) struct InspectRequest<'a> {
    /// `input_crs`.
    pub input_crs: Option<&'a str>,
    /// `raster_type` (None: auto).
    pub raster_type: Option<RasterType>,
    /// `strict_mode`: a warning becomes a failure.
    pub strict: bool,
    /// `target_crs`.
    pub target_crs: &'a str,
}

fn fail(check: &'static str, message: impl Into<String>) -> RasterError {
    RasterError::new(check, message)
}

/// Parses a CRS definition (`EPSG:4326`, WKT, PROJ string) as GDAL does for `TARGET_SRS`.
pub(crate) fn parse_crs(definition: &str) -> Result<SpatialRef, String> {
    let mut sr = SpatialRef::from_definition(definition)
        .map_err(|e| format!("{definition:?} is not a CRS GDAL knows: {e}"))?;
    sr.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(sr)
}

/// Describes a CRS: its EPSG code when it has one (or one is identified), name and WKT.
pub(crate) fn crs_info(sr: &SpatialRef) -> CrsInfo {
    let code = |s: &SpatialRef| match (s.auth_name(), s.auth_code()) {
        (Some(a), Ok(c)) if a.eq_ignore_ascii_case("EPSG") => Some(format!("EPSG:{c}")),
        _ => None,
    };
    let mut code_found = code(sr);
    if code_found.is_none()
        && let Ok(mut copy) = sr.to_wkt().and_then(|w| SpatialRef::from_wkt(&w))
        && copy.auto_identify_epsg().is_ok()
    {
        code_found = code(&copy);
    }
    CrsInfo {
        code: code_found,
        name: sr.name(),
        wkt: sr.to_wkt().unwrap_or_default(),
    }
}

/// The [minx, miny, maxx, maxy] of a geotransform over a `width` x `height` grid (rotation too).
pub(crate) fn grid_bounds(gt: &[f64; 6], width: usize, height: usize) -> [f64; 4] {
    let (w, h) = (width as f64, height as f64);
    let corners = [(0.0, 0.0), (w, 0.0), (0.0, h), (w, h)];
    let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    for (px, py) in corners {
        let x = gt[0] + px * gt[1] + py * gt[2];
        let y = gt[3] + px * gt[4] + py * gt[5];
        b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
    }
    b
}

/// `bounds` (in `from`) transformed to `to`, densified along the edges.
pub(crate) fn transform_bounds(
    from: &SpatialRef,
    to: &SpatialRef,
    bounds: &[f64; 4],
) -> Result<[f64; 4], String> {
    let t = CoordTransform::new(from, to).map_err(|e| e.to_string())?;
    t.transform_bounds(bounds, 21).map_err(|e| e.to_string())
}

/// Whether a nodata value fits the data type (GDAL lets a Byte band declare -1).
fn nodata_fits(nodata: f64, data_type: GdalDataType) -> bool {
    if nodata.is_nan() {
        return matches!(data_type, GdalDataType::Float32 | GdalDataType::Float64);
    }
    let (lo, hi) = match data_type {
        GdalDataType::UInt8 => (0.0, 255.0),
        GdalDataType::UInt16 => (0.0, 65535.0),
        GdalDataType::Int16 => (-32768.0, 32767.0),
        GdalDataType::UInt32 => (0.0, 4294967295.0),
        GdalDataType::Int32 => (-2147483648.0, 2147483647.0),
        _ => return true,
    };
    (lo..=hi).contains(&nodata) && nodata.fract() == 0.0
}

/// The largest end (offset + size) of any TIFF block of the dataset, when the driver reports
/// block offsets; a file shorter than that is truncated.
fn tiff_data_end(ds: &Dataset) -> Option<u64> {
    let mut end = 0u64;
    for b in ds.rasterbands() {
        let band = b.ok()?;
        let (bw, bh) = band.block_size();
        let (w, h) = band.size();
        let (nx, ny) = (w.div_ceil(bw.max(1)), h.div_ceil(bh.max(1)));
        for y in 0..ny {
            for x in 0..nx {
                let off: u64 = band
                    .metadata_item(&format!("BLOCK_OFFSET_{x}_{y}"), "TIFF")?
                    .parse()
                    .ok()?;
                let size: u64 = band
                    .metadata_item(&format!("BLOCK_SIZE_{x}_{y}"), "TIFF")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                end = end.max(off + size);
            }
        }
    }
    Some(end)
}

/// Opens `path` (a local copy of `blob`) and reports it, or fails with the check that failed.
pub(crate) fn inspect(
    path: &Path,
    blob: &str,
    req: &InspectRequest<'_>,
) -> Result<RasterReport, RasterError> {
    let mut warnings = Vec::new();
    let file_len = std::fs::metadata(path)
        .map_err(|e| fail("LocalIo", format!("reading the local copy of {blob}: {e}")))?
        .len();
    let ds = Dataset::open(path).map_err(|e| {
        fail(
            "NotARaster",
            format!("{blob} is not a raster GDAL can read ({file_len} bytes): {e}"),
        )
    })?;
    let driver = ds.driver().short_name();
    if driver != "GTiff" {
        return Err(fail(
            "NotAGeoTiff",
            format!(
                "{blob} is a {} file ({driver} driver), not a GeoTIFF; process_raster takes GeoTIFF input",
                ds.driver().long_name()
            ),
        ));
    }
    if let Some(end) = tiff_data_end(&ds)
        && end > file_len
    {
        return Err(fail(
            "TruncatedRaster",
            format!(
                "{blob} is truncated or corrupt: its TIFF directory points at pixel data up to byte {end}, but the file has {file_len} bytes"
            ),
        ));
    }
    let (width, height) = ds.raster_size();
    let band_count = ds.raster_count();
    if band_count == 0 {
        return Err(fail("NoBands", format!("{blob} has no raster bands")));
    }
    let band1 = ds
        .rasterband(1)
        .map_err(|e| fail("CorruptRaster", format!("{blob}: reading band 1: {e}")))?;
    let dtype = band1.band_type();
    let data_type = dtype.name();
    if profile::unsupported_data_type(&data_type) {
        return Err(fail(
            "UnsupportedDataType",
            format!(
                "{blob} has pixels of a type no output tier stores (complex or unknown; GDAL reports {data_type})"
            ),
        ));
    }
    let declared = band1.no_data_value();
    let nodata = match declared {
        Some(v) if !nodata_fits(v, dtype) => {
            warnings.push(format!(
                "nodata value {v} cannot occur in {data_type} data; ignored"
            ));
            None
        }
        v => v,
    };
    let has_color_table = band1.color_table().is_some();
    let last_is_alpha = ds
        .rasterband(band_count)
        .map(|b| b.color_interpretation() == ColorInterpretation::AlphaBand)
        .unwrap_or(false);
    let distinct_values = (band_count == 1 && dtype == GdalDataType::UInt8 && !has_color_table)
        .then(|| band1.histogram(-0.5, 255.5, 256, false, true).ok())
        .flatten()
        .map(|h| h.counts().iter().filter(|c| **c > 0).count());
    let summary = BandSummary {
        bands: band_count,
        data_type: data_type.clone(),
        has_color_table,
        last_is_alpha,
        distinct_values,
    };
    let detected_type = profile::detect(&summary);
    let raster_type = match req.raster_type {
        None => detected_type,
        Some(t) => {
            if let Some(why) = profile::type_mismatch(t, &summary) {
                if req.strict {
                    return Err(fail(
                        "RasterTypeMismatch",
                        format!("{blob}: {why} (strict_mode)"),
                    ));
                }
                warnings.push(format!("{why}; processing it as {} anyway", t.as_str()));
            }
            t
        }
    };

    let geotransform = ds.geo_transform().map_err(|_| {
        fail(
            "NoGeoreferencing",
            format!("{blob} has no geotransform: its pixels cannot be placed on the ground"),
        )
    })?;
    let file_crs = ds
        .spatial_ref()
        .ok()
        .filter(|s| !s.to_wkt().unwrap_or_default().is_empty());
    let (mut src, crs_source) = match (file_crs, req.input_crs) {
        (Some(s), None) => (s, "file"),
        (file, Some(def)) => {
            if let Some(f) = file {
                let note = format!(
                    "input_crs {def} overrides the file's CRS {}",
                    f.name().unwrap_or_default()
                );
                if req.strict {
                    return Err(fail("CrsConflict", format!("{blob}: {note} (strict_mode)")));
                }
                warnings.push(note);
            }
            (
                parse_crs(def)
                    .map_err(|e| fail("InvalidInputCrs", format!("{blob}: input_crs {e}")))?,
                "input_crs",
            )
        }
        (None, None) => {
            return Err(fail(
                "NoCrs",
                format!(
                    "{blob} has no coordinate reference system; give input_crs (e.g. \"EPSG:32633\")"
                ),
            ));
        }
    };
    src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let crs = crs_info(&src);
    let bounds = grid_bounds(&geotransform, width, height);
    let wgs84 = parse_crs("EPSG:4326").map_err(|e| fail("Proj", e))?;
    let bbox_wgs84 = transform_bounds(&src, &wgs84, &bounds).map_err(|e| {
        fail(
            "CrsNotTransformable",
            format!(
                "{blob}: its CRS {} cannot be transformed to EPSG:4326 ({e}); give input_crs if the file's CRS is wrong",
                crs.name.as_deref().unwrap_or("(unnamed)")
            ),
        )
    })?;
    let target = parse_crs(req.target_crs).map_err(|e| fail("InvalidTargetCrs", e))?;
    transform_bounds(&src, &target, &bounds).map_err(|e| {
        fail(
            "CrsNotTransformable",
            format!(
                "{blob} cannot be reprojected to target_crs {}: {e}",
                req.target_crs
            ),
        )
    })?;

    let (bw, bh) = band1.block_size();
    // TIFF tiles are multiples of 16 on both sides; a strip spans the full width.
    let tiled = bw % 16 == 0 && bh % 16 == 0 && !(bw == width && bh < bw);
    let overview_count = band1.overview_count().unwrap_or(0).max(0) as usize;
    let compression = ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE");
    let is_cog = ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE").as_deref() == Some("COG");
    if req.strict && !warnings.is_empty() {
        return Err(fail(
            "StrictMode",
            format!(
                "{blob}: strict_mode refuses warnings: {}",
                warnings.join("; ")
            ),
        ));
    }
    Ok(RasterReport {
        driver,
        width,
        height,
        band_count,
        data_type,
        nodata,
        nodata_dropped: declared.is_some() && nodata.is_none(),
        crs,
        crs_source: crs_source.into(),
        geotransform,
        bounds,
        bbox_wgs84,
        overview_count,
        tiled,
        block_size: [bw, bh],
        compression,
        is_cog,
        detected_type,
        raster_type,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cover_every_corner_of_a_north_up_or_rotated_grid() {
        let gt = [100.0, 10.0, 0.0, 500.0, 0.0, -10.0];
        assert_eq!(grid_bounds(&gt, 20, 30), [100.0, 200.0, 300.0, 500.0]);
        let rotated = [0.0, 1.0, 1.0, 0.0, 1.0, -1.0];
        assert_eq!(grid_bounds(&rotated, 2, 2), [0.0, -2.0, 4.0, 2.0]);
    }

    #[test]
    fn a_nodata_value_outside_the_type_does_not_count() {
        assert!(!nodata_fits(-1.0, GdalDataType::UInt8));
        assert!(nodata_fits(0.0, GdalDataType::UInt8));
        assert!(nodata_fits(-32768.0, GdalDataType::Int16));
        assert!(nodata_fits(-9999.0, GdalDataType::Float32));
        assert!(nodata_fits(f64::NAN, GdalDataType::Float32));
        assert!(!nodata_fits(f64::NAN, GdalDataType::Int16));
    }
}
