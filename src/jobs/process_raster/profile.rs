//! What kind of raster a file is and how each output tier stores it: the pure decisions of
//! process_raster (type detection, compression, resampling), table-tested without GDAL.

use serde::{Deserialize, Serialize};

/// What the pixels mean; decides resampling and compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RasterType {
    /// Three 8-bit bands: red, green, blue.
    Rgb,
    /// Four 8-bit bands: red, green, blue, alpha.
    Rgba,
    /// One continuous band (elevation, temperature, any measured quantity).
    Dem,
    /// One band of class codes (land cover); never interpolated.
    Categorical,
    /// Several bands of measurements (satellite imagery beyond RGB, or RGB deeper than 8 bits).
    Multispectral,
}

impl RasterType {
    /// Every name `raster_type` accepts besides `auto`.
    pub const NAMES: [&'static str; 5] = ["rgb", "rgba", "dem", "categorical", "multispectral"];

    /// Parses a `raster_type` value (`auto` is None).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rgb" => Some(Self::Rgb),
            "rgba" => Some(Self::Rgba),
            "dem" => Some(Self::Dem),
            "categorical" => Some(Self::Categorical),
            "multispectral" => Some(Self::Multispectral),
            _ => None,
        }
    }

    /// The parameter value naming this type.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Rgb => "rgb",
            Self::Rgba => "rgba",
            Self::Dem => "dem",
            Self::Categorical => "categorical",
            Self::Multispectral => "multispectral",
        }
    }

    /// Whether values between pixels are meaningful (interpolating resampling allowed).
    pub fn is_continuous(&self) -> bool {
        !matches!(self, Self::Categorical)
    }
}

/// What detection looks at, read from the file by `inspect`.
#[derive(Debug, Clone, PartialEq)]
pub struct BandSummary {
    /// Number of bands.
    pub bands: usize,
    /// GDAL data type name of band 1 (`Byte`, `Int16`, `Float32`, ...).
    pub data_type: String,
    /// Whether band 1 has a colour table (a paletted image).
    pub has_color_table: bool,
    /// Whether the last band is marked as alpha.
    pub last_is_alpha: bool,
    /// Distinct values of an 8-bit band 1, when counted.
    pub distinct_values: Option<usize>,
}

/// At most this many distinct values make an 8-bit single band categorical.
pub const CATEGORICAL_MAX_VALUES: usize = 32;

/// Detects the raster type: 3-band Byte is rgb, 4-band Byte rgba, 1-band Byte with a colour table
/// or few values categorical, any other single band dem, anything else multispectral.
pub fn detect(b: &BandSummary) -> RasterType {
    let byte = b.data_type == "Byte";
    match b.bands {
        3 if byte => RasterType::Rgb,
        4 if byte => RasterType::Rgba,
        1 if byte
            && (b.has_color_table
                || b.distinct_values
                    .is_some_and(|n| n <= CATEGORICAL_MAX_VALUES)) =>
        {
            RasterType::Categorical
        }
        1 if b.has_color_table => RasterType::Categorical,
        1 => RasterType::Dem,
        _ => RasterType::Multispectral,
    }
}

/// Why a requested type does not fit the file (None: it fits).
pub fn type_mismatch(requested: RasterType, b: &BandSummary) -> Option<String> {
    let byte = b.data_type == "Byte";
    match requested {
        RasterType::Rgb if !(b.bands == 3 && byte) => Some(format!(
            "raster_type rgb needs 3 Byte bands, the file has {} {} band(s)",
            b.bands, b.data_type
        )),
        RasterType::Rgba if !(b.bands == 4 && byte) => Some(format!(
            "raster_type rgba needs 4 Byte bands, the file has {} {} band(s)",
            b.bands, b.data_type
        )),
        RasterType::Dem | RasterType::Categorical if b.bands != 1 => Some(format!(
            "raster_type {} needs 1 band, the file has {}",
            requested.as_str(),
            b.bands
        )),
        _ => None,
    }
}

/// Data types no tier stores: complex numbers (no predictor, no statistics, no viewer).
pub fn unsupported_data_type(data_type: &str) -> bool {
    data_type.starts_with('C') || data_type == "Unknown"
}

/// An output tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Small and fast to display: JPEG for 8-bit RGB, DEFLATE otherwise.
    Visualization,
    /// Lossless, quick to read: DEFLATE with a predictor.
    Analysis,
    /// Lossless, widest compatibility: LZW with a predictor.
    Archive,
}

impl Tier {
    /// Every tier, in the order `all` creates them.
    pub const ALL: [Tier; 3] = [Tier::Visualization, Tier::Analysis, Tier::Archive];
    /// Values `output_tier` accepts.
    pub const PARAM_VALUES: [&'static str; 4] = ["visualization", "analysis", "archive", "all"];

    /// The tiers an `output_tier` value asks for (`all` is every tier).
    pub fn requested(s: &str) -> Option<Vec<Tier>> {
        match s {
            "all" => Some(Self::ALL.to_vec()),
            _ => Self::parse(s).map(|t| vec![t]),
        }
    }

    /// Parses one tier name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "visualization" => Some(Self::Visualization),
            "analysis" => Some(Self::Analysis),
            "archive" => Some(Self::Archive),
            _ => None,
        }
    }

    /// The tier's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Visualization => "visualization",
            Self::Analysis => "analysis",
            Self::Archive => "archive",
        }
    }
}

/// Resampling methods `resampling` accepts (GDAL's names, lowercase).
pub const RESAMPLING: [&str; 7] = [
    "nearest",
    "bilinear",
    "cubic",
    "cubicspline",
    "lanczos",
    "average",
    "mode",
];

/// How one COG is written: the creation options of GDAL's COG driver that vary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CogProfile {
    /// `COMPRESS` (JPEG, DEFLATE, LZW).
    pub compress: String,
    /// `PREDICTOR` (YES picks horizontal differencing for integers, floating point for floats).
    pub predictor: Option<String>,
    /// `QUALITY` for JPEG.
    pub quality: Option<u8>,
    /// `RESAMPLING`: the warp to the target CRS.
    pub resampling: String,
    /// `OVERVIEW_RESAMPLING`.
    pub overview_resampling: String,
}

/// The profile for a raster type in a tier. JPEG only for 8-bit RGB(A) visualization without
/// nodata (JPEG holds 8-bit samples only, and is lossy: it would smear the nodata value into its
/// neighbours); `eight_bit` is whether the data is Byte, whatever type was asked for; bilinear/cubic
/// for continuous data, nearest (warp) and mode (overviews) for categorical; `resampling`
/// overrides both.
pub fn profile(
    raster_type: RasterType,
    tier: Tier,
    eight_bit: bool,
    has_nodata: bool,
    jpeg_quality: u8,
    resampling: Option<&str>,
) -> CogProfile {
    let jpeg = tier == Tier::Visualization
        && matches!(raster_type, RasterType::Rgb | RasterType::Rgba)
        && eight_bit
        && !has_nodata;
    let (compress, predictor, quality) = match tier {
        _ if jpeg => ("JPEG", None, Some(jpeg_quality)),
        Tier::Visualization | Tier::Analysis => ("DEFLATE", Some("YES"), None),
        Tier::Archive => ("LZW", Some("YES"), None),
    };
    let (warp, overviews) = match raster_type {
        RasterType::Categorical => ("NEAREST", "MODE"),
        RasterType::Rgb | RasterType::Rgba => ("CUBIC", "CUBIC"),
        // AVERAGE overviews keep nodata edges from eating into valid pixels.
        RasterType::Dem | RasterType::Multispectral => ("BILINEAR", "AVERAGE"),
    };
    let over = resampling.map(str::to_ascii_uppercase);
    CogProfile {
        compress: compress.into(),
        predictor: predictor.map(str::to_string),
        quality,
        resampling: over.clone().unwrap_or_else(|| warp.into()),
        overview_resampling: over.unwrap_or_else(|| overviews.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bands(n: usize, ty: &str) -> BandSummary {
        BandSummary {
            bands: n,
            data_type: ty.into(),
            has_color_table: false,
            last_is_alpha: false,
            distinct_values: None,
        }
    }

    #[test]
    fn detection_follows_bands_type_and_palette() {
        let paletted = BandSummary {
            has_color_table: true,
            ..bands(1, "Byte")
        };
        let few = BandSummary {
            distinct_values: Some(7),
            ..bands(1, "Byte")
        };
        let many = BandSummary {
            distinct_values: Some(200),
            ..bands(1, "Byte")
        };
        let cases = [
            (bands(3, "Byte"), RasterType::Rgb),
            (bands(4, "Byte"), RasterType::Rgba),
            (bands(1, "Int16"), RasterType::Dem),
            (bands(1, "Float32"), RasterType::Dem),
            (paletted, RasterType::Categorical),
            (few, RasterType::Categorical),
            (many, RasterType::Dem),
            (bands(3, "UInt16"), RasterType::Multispectral),
            (bands(8, "Byte"), RasterType::Multispectral),
        ];
        for (b, want) in cases {
            assert_eq!(detect(&b), want, "{b:?}");
        }
    }

    #[test]
    fn a_requested_type_must_fit_the_bands() {
        assert!(type_mismatch(RasterType::Rgb, &bands(3, "Byte")).is_none());
        let e = type_mismatch(RasterType::Rgb, &bands(3, "UInt16")).unwrap();
        assert!(e.contains("3 UInt16"), "{e}");
        assert!(type_mismatch(RasterType::Dem, &bands(3, "Byte")).is_some());
        assert!(type_mismatch(RasterType::Multispectral, &bands(1, "Byte")).is_none());
        assert!(unsupported_data_type("CInt16") && unsupported_data_type("CFloat32"));
        assert!(!unsupported_data_type("Float64"));
    }

    #[test]
    fn jpeg_only_for_8_bit_rgb_visualization_without_nodata() {
        let p = profile(RasterType::Rgb, Tier::Visualization, true, false, 85, None);
        assert_eq!((p.compress.as_str(), p.quality), ("JPEG", Some(85)));
        let p = profile(RasterType::Rgb, Tier::Visualization, true, true, 85, None);
        assert_eq!(p.compress, "DEFLATE");
        let p = profile(RasterType::Rgb, Tier::Visualization, false, false, 85, None);
        assert_eq!(p.compress, "DEFLATE", "rgb asked for on 16-bit data");
        let p = profile(RasterType::Dem, Tier::Visualization, true, false, 85, None);
        assert_eq!(p.compress, "DEFLATE");
        let p = profile(RasterType::Rgb, Tier::Analysis, true, false, 85, None);
        assert_eq!(
            (p.compress.as_str(), p.predictor.as_deref()),
            ("DEFLATE", Some("YES"))
        );
        let p = profile(RasterType::Dem, Tier::Archive, true, true, 85, None);
        assert_eq!(p.compress, "LZW");
    }

    #[test]
    fn categorical_data_is_never_interpolated_unless_asked() {
        let p = profile(
            RasterType::Categorical,
            Tier::Analysis,
            true,
            false,
            85,
            None,
        );
        assert_eq!(
            (p.resampling.as_str(), p.overview_resampling.as_str()),
            ("NEAREST", "MODE")
        );
        let p = profile(RasterType::Dem, Tier::Analysis, true, true, 85, None);
        assert_eq!(
            (p.resampling.as_str(), p.overview_resampling.as_str()),
            ("BILINEAR", "AVERAGE")
        );
        let p = profile(
            RasterType::Dem,
            Tier::Analysis,
            true,
            true,
            85,
            Some("lanczos"),
        );
        assert_eq!(
            (p.resampling.as_str(), p.overview_resampling.as_str()),
            ("LANCZOS", "LANCZOS")
        );
    }

    #[test]
    fn all_fans_out_to_every_tier() {
        assert_eq!(Tier::requested("all").unwrap().len(), 3);
        assert_eq!(Tier::requested("archive").unwrap(), vec![Tier::Archive]);
        assert!(Tier::requested("gold").is_none());
    }
}
