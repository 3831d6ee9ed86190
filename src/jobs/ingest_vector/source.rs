//! The source file, read with OGR: which driver opens which extension, the checks that refuse a
//! file for good (a Shapefile missing a part, no geometry column, an empty layer, no CRS), the
//! report of prepare, and one chunk's rows (a feature range) as EWKB in the target SRID,
//! reprojected, promoted to multi and repaired. Runs on local files inside `spawn_blocking`.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDate};
use gdal::cpl::CslStringList;
use gdal::spatial_ref::{CoordTransform, SpatialRef};
use gdal::vector::{
    Geometry, Layer, LayerAccess, OGRwkbGeometryType, geometry_type_flatten, geometry_type_has_z,
    geometry_type_to_name,
};
use gdal::{Dataset, DatasetOptions, GdalOpenFlags};
use serde::{Deserialize, Serialize};

use super::VectorError;
use super::naming;
use super::table::{Column, GeometryKind, PgType, TableDef};
use crate::jobs::process_raster::inspect::{CrsInfo, crs_info, parse_crs};

/// A source format, from `file_extension` or the blob name's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `.gpkg`.
    GeoPackage,
    /// `.zip` holding one Shapefile's `.shp`, `.shx`, `.dbf` (and `.prj`).
    ZippedShapefile,
    /// `.geojson` / `.json`.
    GeoJson,
    /// `.fgb`.
    FlatGeobuf,
    /// `.csv` with coordinate or WKT columns.
    Csv,
    /// `.kml`.
    Kml,
}

/// The extensions `file_extension` accepts.
pub const EXTENSIONS: [&str; 9] = [
    "gpkg", "zip", "shp", "geojson", "json", "fgb", "csv", "kml", "txt",
];

impl Format {
    /// The format of an extension (without the dot, any case); `shp` is refused later with the
    /// reason (a lone .shp has no attributes or index).
    pub fn from_extension(ext: &str) -> Result<Self, VectorError> {
        Ok(
            match ext.trim_start_matches('.').to_ascii_lowercase().as_str() {
                "gpkg" => Self::GeoPackage,
                "zip" => Self::ZippedShapefile,
                "geojson" | "json" => Self::GeoJson,
                "fgb" => Self::FlatGeobuf,
                "csv" | "txt" => Self::Csv,
                "kml" => Self::Kml,
                "shp" => {
                    return Err(VectorError::new(
                        "ShapefileIncomplete",
                        "a lone .shp cannot be loaded: upload the Shapefile as one .zip holding its .shp, .shx, .dbf and .prj",
                    ));
                }
                other => {
                    return Err(VectorError::new(
                        "UnknownFormat",
                        format!(
                            "extension {other:?} is not a vector format this job reads (gpkg, zip (Shapefile), geojson, json, fgb, csv, kml); set file_extension if the name has none"
                        ),
                    ));
                }
            },
        )
    }

    /// The local file name the blob is downloaded to (the drivers go by extension).
    pub fn local_name(self) -> &'static str {
        match self {
            Self::GeoPackage => "source.gpkg",
            Self::ZippedShapefile => "source.zip",
            Self::GeoJson => "source.geojson",
            Self::FlatGeobuf => "source.fgb",
            Self::Csv => "source.csv",
            Self::Kml => "source.kml",
        }
    }

    fn drivers(self) -> &'static [&'static str] {
        match self {
            Self::GeoPackage => &["GPKG"],
            Self::ZippedShapefile => &["ESRI Shapefile"],
            Self::GeoJson => &["GeoJSON"],
            Self::FlatGeobuf => &["FlatGeobuf"],
            Self::Csv => &["CSV"],
            Self::Kml => &["LIBKML", "KML"],
        }
    }

    /// The CRS a format implies when the file declares none (GeoJSON per RFC 7946, KML, and
    /// coordinates in a CSV are longitude/latitude in WGS 84).
    fn implied_crs(self) -> Option<&'static str> {
        matches!(self, Self::GeoJson | Self::Kml | Self::Csv).then_some("EPSG:4326")
    }
}

/// How to read a CSV (`converter_params`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CsvOptions {
    /// Latitude column.
    pub lat_name: Option<String>,
    /// Longitude column.
    pub lon_name: Option<String>,
    /// WKT geometry column.
    pub wkt_column: Option<String>,
    /// Field separator (`,` `;` `\t` `|` or a word: comma, semicolon, tab, space, pipe).
    pub delimiter: Option<String>,
}

/// What to open and how: shared by prepare and every load task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceSpec {
    /// The format.
    pub format: Format,
    /// The layer to read (None: the first layer with a geometry).
    pub layer: Option<String>,
    /// CSV options.
    pub csv: CsvOptions,
    /// CRS overriding the file's (`converter_params.source_crs`).
    pub source_crs: Option<String>,
    /// `container/blob`, for messages.
    pub label: String,
}

/// A field of the source and its column.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldInfo {
    /// Name in the source.
    pub name: String,
    /// OGR's type name.
    pub ogr_type: String,
}

/// What prepare reports of the source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceReport {
    /// The OGR driver that opened it.
    pub driver: String,
    /// The layer read.
    pub layer: String,
    /// Every layer of the file.
    pub layers: Vec<String>,
    /// Features in the layer (counted by reading them all).
    pub feature_count: u64,
    /// Features without a geometry (loaded with a NULL geometry).
    pub null_geometries: u64,
    /// Distinct geometry types met, e.g. `["MultiPolygon", "Polygon"]`.
    pub geometry_types: Vec<String>,
    /// Whether any geometry has Z.
    pub has_z: bool,
    /// The source CRS.
    pub crs: CrsInfo,
    /// Where the CRS came from: `file`, `source_crs` or `format` (implied by GeoJSON/KML/CSV).
    pub crs_source: String,
    /// The fields.
    pub fields: Vec<FieldInfo>,
    /// The first FID of a GeoPackage layer whose FIDs run without gaps in reading order: its
    /// chunks then read their FID range (an indexed rowid range in SQLite) instead of seeking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_fid: Option<u64>,
}

fn last_gdal_error() -> String {
    // SAFETY: CPLGetLastErrorMsg returns a pointer to a thread-local, NUL-terminated buffer that
    // stays valid until the next GDAL call on this thread; it is copied at once.
    let msg = unsafe { CStr::from_ptr(gdal_sys::CPLGetLastErrorMsg()) };
    msg.to_string_lossy().trim().to_string()
}

fn reset_gdal_error() {
    // SAFETY: resets this thread's GDAL error state; no arguments.
    unsafe { gdal_sys::CPLErrorReset() }
}

/// The names inside a zip (GDAL's /vsizip/ listing).
fn zip_entries(zip: &Path) -> Result<Vec<PathBuf>, String> {
    gdal::vsi::read_dir(format!("/vsizip/{}", zip.display()), true).map_err(|e| e.to_string())
}

/// The path OGR opens: the file itself, or the one `.shp` inside a zip after checking that its
/// `.shx` and `.dbf` are there too.
fn open_path(spec: &SourceSpec, local: &Path) -> Result<String, VectorError> {
    if spec.format != Format::ZippedShapefile {
        return Ok(local.display().to_string());
    }
    let entries = zip_entries(local).map_err(|e| {
        VectorError::new(
            "NotAZip",
            format!("{} is not a readable zip: {e}", spec.label),
        )
    })?;
    let names: Vec<String> = entries
        .iter()
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .collect();
    let shps: Vec<&String> = names
        .iter()
        .filter(|n| n.to_ascii_lowercase().ends_with(".shp") && !n.contains("__MACOSX"))
        .collect();
    let shp = match shps.as_slice() {
        [] => {
            return Err(VectorError::new(
                "ShapefileIncomplete",
                format!(
                    "{} holds no .shp (entries: {})",
                    spec.label,
                    names.join(", ")
                ),
            ));
        }
        [one] => (*one).clone(),
        many => {
            let wanted = spec
                .layer
                .as_deref()
                .map(|l| format!("{}.shp", l.to_ascii_lowercase()));
            match many.iter().find(|n| {
                wanted
                    .as_ref()
                    .is_some_and(|w| n.to_ascii_lowercase().ends_with(w.as_str()))
            }) {
                Some(n) => (*n).clone(),
                None => {
                    return Err(VectorError::new(
                        "LayerNotFound",
                        format!(
                            "{} holds several Shapefiles ({}); name one with layer",
                            spec.label,
                            many.iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
    };
    let stem = &shp[..shp.len() - 4];
    let missing: Vec<&str> = ["shx", "dbf"]
        .into_iter()
        .filter(|ext| {
            !names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&format!("{stem}.{ext}")))
        })
        .collect();
    if !missing.is_empty() {
        return Err(VectorError::new(
            "ShapefileIncomplete",
            format!(
                "{} holds {shp} but not its {}: a Shapefile needs .shp, .shx and .dbf (and .prj for its CRS) side by side",
                spec.label,
                missing
                    .iter()
                    .map(|e| format!(".{e}"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        ));
    }
    Ok(format!("/vsizip/{}/{shp}", local.display()))
}

fn separator(d: &str) -> Result<&'static str, VectorError> {
    Ok(match d.to_ascii_lowercase().as_str() {
        "," | "comma" => "COMMA",
        ";" | "semicolon" => "SEMICOLON",
        "\t" | "tab" | "\\t" => "TAB",
        " " | "space" => "SPACE",
        "|" | "pipe" => "PIPE",
        other => {
            return Err(VectorError::new(
                "BadDelimiter",
                format!("delimiter {other:?}: use one of , ; tab space |"),
            ));
        }
    })
}

fn csv_open_options(csv: &CsvOptions) -> Result<Vec<String>, VectorError> {
    let mut o = vec![
        "AUTODETECT_TYPE=YES".to_string(),
        "KEEP_GEOM_COLUMNS=NO".to_string(),
        "EMPTY_STRING_AS_NULL=YES".to_string(),
    ];
    match (&csv.lat_name, &csv.lon_name, &csv.wkt_column) {
        (_, _, Some(w)) => o.push(format!("GEOM_POSSIBLE_NAMES={w}")),
        (Some(lat), Some(lon), None) => {
            o.push(format!("X_POSSIBLE_NAMES={lon}"));
            o.push(format!("Y_POSSIBLE_NAMES={lat}"));
        }
        (None, None, None) => {
            o.push("X_POSSIBLE_NAMES=lon,lng,long,longitude,x".into());
            o.push("Y_POSSIBLE_NAMES=lat,latitude,y".into());
            o.push("GEOM_POSSIBLE_NAMES=wkt,geom,geometry,the_geom".into());
        }
        _ => {
            return Err(VectorError::new(
                "BadCsvColumns",
                "converter_params needs both lat_name and lon_name (or wkt_column)",
            ));
        }
    }
    if let Some(d) = &csv.delimiter {
        o.push(format!("SEPARATOR={}", separator(d)?));
    }
    Ok(o)
}

/// Opens the source read-only with only the format's drivers.
pub fn open(spec: &SourceSpec, local: &Path) -> Result<Dataset, VectorError> {
    let path = open_path(spec, local)?;
    let opts = if spec.format == Format::Csv {
        csv_open_options(&spec.csv)?
    } else {
        Vec::new()
    };
    let opt_refs: Vec<&str> = opts.iter().map(String::as_str).collect();
    reset_gdal_error();
    Dataset::open_ex(
        &path,
        DatasetOptions {
            open_flags: GdalOpenFlags::GDAL_OF_VECTOR | GdalOpenFlags::GDAL_OF_READONLY,
            allowed_drivers: Some(spec.format.drivers()),
            open_options: (!opt_refs.is_empty()).then_some(opt_refs.as_slice()),
            sibling_files: None,
        },
    )
    .map_err(|e| {
        let detail = last_gdal_error();
        VectorError::new(
            "Unreadable",
            format!(
                "{} cannot be opened as {}: {}",
                spec.label,
                spec.format.drivers().join(" or "),
                if detail.is_empty() {
                    e.to_string()
                } else {
                    detail
                }
            ),
        )
    })
}

fn has_geometry_field(l: &Layer<'_>) -> bool {
    l.defn().geom_fields().next().is_some()
}

/// Picks the layer: the named one, else the first with a geometry column.
pub fn pick_layer<'a>(ds: &'a Dataset, spec: &SourceSpec) -> Result<Layer<'a>, VectorError> {
    let names: Vec<String> = ds.layers().map(|l| l.name()).collect();
    if names.is_empty() {
        return Err(VectorError::new(
            "EmptyLayer",
            format!("{} holds no layer", spec.label),
        ));
    }
    let layer = match &spec.layer {
        // A zip's Shapefile was chosen by name already; its layer is the only one.
        Some(name) if spec.format != Format::ZippedShapefile => {
            ds.layer_by_name(name).map_err(|_| {
                VectorError::new(
                    "LayerNotFound",
                    format!(
                        "{} has no layer {name:?}; its layers: {}",
                        spec.label,
                        names.join(", ")
                    ),
                )
            })?
        }
        _ => match ds.layers().find(has_geometry_field) {
            Some(l) => l,
            None => ds
                .layer(0)
                .map_err(|e| VectorError::new("Unreadable", format!("{}: {e}", spec.label)))?,
        },
    };
    if !has_geometry_field(&layer) {
        let fields: Vec<String> = layer.defn().fields().map(|f| f.name()).collect();
        let hint = if spec.format == Format::Csv {
            format!(
                "; no coordinate columns were found among {}: set converter_params.lat_name and lon_name, or wkt_column",
                fields.join(", ")
            )
        } else {
            String::new()
        };
        return Err(VectorError::new(
            "NoGeometry",
            format!(
                "layer {:?} of {} has no geometry column{hint}",
                layer.name(),
                spec.label
            ),
        ));
    }
    Ok(layer)
}

/// The source CRS: `source_crs`, else the layer's, else the format's implied one; and where it
/// came from.
pub fn source_srs(
    layer: &Layer<'_>,
    spec: &SourceSpec,
) -> Result<(SpatialRef, &'static str), VectorError> {
    if let Some(def) = &spec.source_crs {
        let sr = parse_crs(def).map_err(|e| VectorError::new("BadCrs", e))?;
        return Ok((sr, "source_crs"));
    }
    if let Some(mut sr) = layer.spatial_ref() {
        sr.set_axis_mapping_strategy(gdal::spatial_ref::AxisMappingStrategy::TraditionalGisOrder);
        return Ok((sr, "file"));
    }
    if let Some(def) = spec.format.implied_crs() {
        let sr = parse_crs(def).map_err(|e| VectorError::new("BadCrs", e))?;
        return Ok((sr, "format"));
    }
    Err(VectorError::new(
        "NoCrs",
        format!(
            "{} declares no CRS (a Shapefile without .prj?): set converter_params.source_crs, e.g. EPSG:4326",
            spec.label
        ),
    ))
}

/// Tells OGR not to decode the attribute fields (and the style string) of `layer`'s features:
/// inspect needs only the FIDs and geometries, and decoding every field of a wide layer was most
/// of its time. Best effort: a driver that cannot ignore fields decodes them.
fn ignore_attributes(layer: &gdal::vector::Layer, fields: &[FieldInfo]) {
    let mut names = CslStringList::new();
    for f in fields {
        if names.add_string(&f.name).is_err() {
            return;
        }
    }
    if names.add_string("OGR_STYLE").is_err() {
        return;
    }
    // SAFETY: the layer handle is live; OGR copies the NULL-terminated list it is given.
    unsafe {
        gdal_sys::OGR_L_SetIgnoredFields(layer.c_layer(), names.as_ptr() as *mut *const _);
    }
}

/// Reads every feature once: count, geometry types, and whether the file reads to its end.
pub fn inspect(spec: &SourceSpec, local: &Path) -> Result<SourceReport, VectorError> {
    let ds = open(spec, local)?;
    let layers: Vec<String> = ds.layers().map(|l| l.name()).collect();
    let mut layer = pick_layer(&ds, spec)?;
    let (sr, crs_source) = source_srs(&layer, spec)?;
    let fields: Vec<FieldInfo> = layer
        .defn()
        .fields()
        .map(|f| FieldInfo {
            name: f.name(),
            ogr_type: gdal::vector::field_type_to_name(f.field_type()),
        })
        .collect();
    let declared = layer.try_feature_count();
    ignore_attributes(&layer, &fields);
    let mut count = 0u64;
    let mut nulls = 0u64;
    let mut has_z = false;
    // Flattened OGR type codes seen (named once at the end, not per feature).
    let mut codes: Vec<OGRwkbGeometryType::Type> = Vec::new();
    let mut first_fid = None;
    let mut contiguous = ds.driver().short_name() == "GPKG";
    reset_gdal_error();
    for f in layer.features() {
        if contiguous {
            match (f.fid(), first_fid) {
                (Some(fid), None) => first_fid = Some(fid),
                (Some(fid), Some(first)) if fid == first + count => {}
                _ => contiguous = false,
            }
        }
        count += 1;
        match f.geometry() {
            Some(g) if !g.is_empty() => {
                let t = g.geometry_type();
                has_z |= geometry_type_has_z(t);
                let flat = geometry_type_flatten(t);
                if !codes.contains(&flat) {
                    codes.push(flat);
                }
            }
            _ => nulls += 1,
        }
    }
    let err = last_gdal_error();
    if declared.is_some_and(|d| d != count) || (!err.is_empty() && count == 0) {
        return Err(VectorError::new(
            "Unreadable",
            format!(
                "{} layer {:?}: read {count} features of the {} it declares; the file is truncated or corrupt{}",
                spec.label,
                layer.name(),
                declared.map_or("?".into(), |d| d.to_string()),
                if err.is_empty() {
                    String::new()
                } else {
                    format!(" ({err})")
                }
            ),
        ));
    }
    if count == 0 {
        return Err(VectorError::new(
            "EmptyLayer",
            format!("layer {:?} of {} has no features", layer.name(), spec.label),
        ));
    }
    if nulls == count {
        return Err(VectorError::new(
            "NoGeometry",
            format!(
                "layer {:?} of {}: none of its {count} features has a geometry",
                layer.name(),
                spec.label
            ),
        ));
    }
    let mut types: Vec<String> = codes.into_iter().map(geometry_type_to_name).collect();
    types.sort();
    types.dedup();
    Ok(SourceReport {
        driver: ds.driver().short_name(),
        layer: layer.name(),
        layers,
        feature_count: count,
        null_geometries: nulls,
        geometry_types: types,
        has_z,
        crs: crs_info(&sr),
        crs_source: crs_source.into(),
        fields,
        first_fid: first_fid.filter(|_| contiguous),
    })
}

/// The column type of an OGR field type (lists, times and binaries as text).
pub fn pg_type_of(ogr_type: &str) -> PgType {
    match ogr_type {
        "Integer" => PgType::Int4,
        "Integer64" => PgType::Int8,
        "Real" => PgType::Float8,
        "Date" => PgType::Date,
        "DateTime" => PgType::Timestamptz,
        _ => PgType::Text,
    }
}

/// One attribute value, typed as its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// integer.
    Int4(i32),
    /// bigint.
    Int8(i64),
    /// double precision.
    Float8(f64),
    /// text.
    Text(String),
    /// date.
    Date(NaiveDate),
    /// timestamptz.
    Timestamptz(DateTime<FixedOffset>),
}

/// One row: the attributes in column order and the geometry as EWKB (None: NULL).
#[derive(Debug, Clone)]
pub struct Row {
    /// Attribute cells.
    pub cells: Vec<Cell>,
    /// EWKB with the SRID.
    pub ewkb: Option<Vec<u8>>,
}

/// A chunk read from the source.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The rows to load.
    pub rows: Vec<Row>,
    /// Invalid geometries repaired with MakeValid.
    pub repaired: u64,
    /// Features left out: a geometry that could not be reprojected, or whose repair left nothing
    /// of the column's type.
    pub dropped: u64,
    /// Invalid geometries loaded as they are (`make_valid` false).
    pub invalid_kept: u64,
    /// Features loaded with a NULL geometry.
    pub null_geometries: u64,
}

/// EWKB from OGR's (old-style) WKB: the SRID flag and the SRID after the byte-order and type
/// header. Z keeps the 0x80000000 flag both formats share; M was removed before.
pub fn ewkb(wkb: &[u8], srid: i32) -> Option<Vec<u8>> {
    if wkb.len() < 5 {
        return None;
    }
    let little = wkb[0] == 1;
    let raw: [u8; 4] = wkb[1..5].try_into().ok()?;
    let ty = if little {
        u32::from_le_bytes(raw)
    } else {
        u32::from_be_bytes(raw)
    } | 0x2000_0000;
    let mut out = Vec::with_capacity(wkb.len() + 4);
    out.push(wkb[0]);
    if little {
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&srid.to_le_bytes());
    } else {
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&srid.to_be_bytes());
    }
    out.extend_from_slice(&wkb[5..]);
    Some(out)
}

/// How load turns each source geometry into the column's.
pub struct GeometryPipeline {
    transform: Option<CoordTransform>,
    kind: GeometryKind,
    has_z: bool,
    make_valid: bool,
    srid: i32,
}

enum Fitted {
    Geometry(Geometry),
    Dropped,
}

impl GeometryPipeline {
    /// For `table` from a layer in `source`.
    pub fn new(
        source: &SpatialRef,
        table: &TableDef,
        make_valid: bool,
    ) -> Result<Self, VectorError> {
        let target = SpatialRef::from_epsg(table.srid as u32)
            .map(|mut s| {
                s.set_axis_mapping_strategy(
                    gdal::spatial_ref::AxisMappingStrategy::TraditionalGisOrder,
                );
                s
            })
            .map_err(|e| VectorError::new("BadCrs", format!("target_srid {}: {e}", table.srid)))?;
        let transform = if *source == target {
            None
        } else {
            Some(CoordTransform::new(source, &target).map_err(|e| {
                VectorError::new(
                    "BadCrs",
                    format!("no transformation to EPSG:{}: {e}", table.srid),
                )
            })?)
        };
        Ok(Self {
            transform,
            kind: table.geometry.kind,
            has_z: table.geometry.has_z,
            make_valid,
            srid: table.srid,
        })
    }

    /// The parts of `g` (itself when not a collection) whose flattened type is `want`.
    fn parts_of(g: &Geometry, want: OGRwkbGeometryType::Type, out: &mut Vec<Geometry>) {
        let t = geometry_type_flatten(g.geometry_type());
        if t == want {
            out.push(g.clone());
        } else if g.geometry_count() > 0
            && matches!(
                t,
                OGRwkbGeometryType::wkbMultiPoint
                    | OGRwkbGeometryType::wkbMultiLineString
                    | OGRwkbGeometryType::wkbMultiPolygon
                    | OGRwkbGeometryType::wkbGeometryCollection
            )
        {
            for i in 0..g.geometry_count() {
                let part = g.get_geometry(i);
                Self::parts_of(&part, want, out);
            }
        }
    }

    /// Fits `g` to the column's type: promoted to multi, or a repaired collection's parts of the
    /// right type; `Dropped` when nothing of that type is left.
    fn fit(&self, g: Geometry) -> Result<Fitted, VectorError> {
        let Some((single, multi)) = self.kind.ogr_types() else {
            return Ok(Fitted::Geometry(g));
        };
        let t = geometry_type_flatten(g.geometry_type());
        let want_multi = self.kind.is_multi();
        if (want_multi && t == multi) || (!want_multi && t == single) {
            return Ok(Fitted::Geometry(g));
        }
        let mut parts = Vec::new();
        Self::parts_of(&g, single, &mut parts);
        if parts.is_empty() {
            return Ok(Fitted::Dropped);
        }
        if !want_multi {
            return Ok(if parts.len() == 1 {
                Fitted::Geometry(parts.remove(0))
            } else {
                Fitted::Dropped
            });
        }
        let mut m = Geometry::empty(multi)
            .map_err(|e| VectorError::new("Geometry", format!("creating a {multi}: {e}")))?;
        for p in parts {
            m.add_geometry(p).map_err(|e| {
                VectorError::new("Geometry", format!("building a multi geometry: {e}"))
            })?;
        }
        Ok(Fitted::Geometry(m))
    }

    fn process(&self, g: &Geometry, chunk: &mut Chunk) -> Result<Option<Vec<u8>>, VectorError> {
        if g.is_empty() {
            chunk.null_geometries += 1;
            return Ok(None);
        }
        let mut g = g.clone();
        // SAFETY: `g` is an owned clone; OGR_G_SetMeasured only drops its M values.
        unsafe { gdal_sys::OGR_G_SetMeasured(g.c_geometry(), 0) };
        if !self.has_z {
            g.flatten_to_2d();
        }
        if let Some(t) = &self.transform
            && g.transform_inplace(t).is_err()
        {
            chunk.dropped += 1;
            return Ok(Some(Vec::new()));
        }
        if !point_validity(&g).unwrap_or_else(|| g.is_valid()) {
            if self.make_valid {
                match g.make_valid(&CslStringList::new()) {
                    Ok(v) if !v.is_empty() && v.is_valid() => {
                        g = v;
                        chunk.repaired += 1;
                    }
                    _ => {
                        chunk.dropped += 1;
                        return Ok(Some(Vec::new()));
                    }
                }
            } else {
                chunk.invalid_kept += 1;
            }
        }
        let g = match self.fit(g)? {
            Fitted::Geometry(g) => g,
            Fitted::Dropped => {
                chunk.dropped += 1;
                return Ok(Some(Vec::new()));
            }
        };
        let wkb = g
            .wkb()
            .map_err(|e| VectorError::new("Geometry", format!("writing WKB: {e}")))?;
        Ok(Some(ewkb(&wkb, self.srid).ok_or_else(|| {
            VectorError::new("Geometry", "OGR wrote an empty WKB")
        })?))
    }
}

/// The validity of a point or multipoint without GEOS: valid when every coordinate is finite,
/// which is GEOS's (and `ST_IsValid`'s) only rule for points. `None` for other types. GEOS's
/// check converts the geometry first and was a large share of loading a point layer.
fn point_validity(g: &Geometry) -> Option<bool> {
    let finite = |g: &Geometry| {
        // SAFETY: `g` is a live point geometry; OGR_G_GetX/Y/Z read its first vertex.
        let h = unsafe { g.c_geometry() };
        unsafe {
            gdal_sys::OGR_G_GetX(h, 0).is_finite()
                && gdal_sys::OGR_G_GetY(h, 0).is_finite()
                && gdal_sys::OGR_G_GetZ(h, 0).is_finite()
        }
    };
    match geometry_type_flatten(g.geometry_type()) {
        OGRwkbGeometryType::wkbPoint => Some(finite(g)),
        OGRwkbGeometryType::wkbMultiPoint => Some((0..g.geometry_count()).all(|i| {
            // SAFETY: `i` is below the geometry count; the part stays owned by `g`.
            // (OGR counts a point with a NaN coordinate as empty, so emptiness is not asked.)
            finite(&unsafe { g.get_unowned_geometry(i) })
        })),
        _ => None,
    }
}

fn cell(f: &gdal::vector::Feature<'_>, idx: usize, ty: PgType) -> Cell {
    let r = match ty {
        PgType::Int4 => f.field_as_integer(idx).ok().flatten().map(Cell::Int4),
        PgType::Int8 => f.field_as_integer64(idx).ok().flatten().map(Cell::Int8),
        PgType::Float8 => f.field_as_double(idx).ok().flatten().map(Cell::Float8),
        PgType::Date => f
            .field_as_datetime(idx)
            .ok()
            .flatten()
            .map(|d| Cell::Date(d.date_naive())),
        PgType::Timestamptz => f
            .field_as_datetime(idx)
            .ok()
            .flatten()
            .map(Cell::Timestamptz),
        PgType::Text => f.field_as_string(idx).ok().flatten().map(Cell::Text),
    };
    r.unwrap_or(Cell::Null)
}

/// Reads features `start..start+count` of the layer into rows for `table`.
pub fn read_chunk(
    spec: &SourceSpec,
    local: &Path,
    table: &TableDef,
    make_valid: bool,
    start: u64,
    count: u64,
    fid_start: Option<u64>,
) -> Result<Chunk, VectorError> {
    let ds = open(spec, local)?;
    let mut layer = pick_layer(&ds, spec)?;
    let (sr, _) = source_srs(&layer, spec)?;
    let pipeline = GeometryPipeline::new(&sr, table, make_valid)?;
    let attrs: Vec<(usize, &Column)> = table
        .columns
        .iter()
        .map(|c| {
            layer
                .defn()
                .field_index(&c.source)
                .map(|i| (i, c))
                .map_err(|_| {
                    VectorError::new(
                        "SourceChanged",
                        format!(
                            "{} no longer has the field {:?} prepare found",
                            spec.label, c.source
                        ),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    if let Some(first) = fid_start {
        // SAFETY: the layer handle is live for `ds`'s lifetime; the returned string belongs to
        // the layer and is copied at once.
        let fid_col = unsafe { CStr::from_ptr(gdal_sys::OGR_L_GetFIDColumn(layer.c_layer())) }
            .to_string_lossy()
            .into_owned();
        let fid_col = if fid_col.is_empty() {
            "fid".into()
        } else {
            fid_col
        };
        let filter = format!(
            "\"{}\" >= {first} AND \"{}\" < {}",
            fid_col.replace('"', "\"\""),
            fid_col.replace('"', "\"\""),
            first + count
        );
        layer.set_attribute_filter(&filter).map_err(|e| {
            VectorError::new(
                "Unreadable",
                format!(
                    "{}: cannot select features by FID ({filter}): {e}",
                    spec.label
                ),
            )
        })?;
        layer.reset_feature_reading();
    } else {
        layer.reset_feature_reading();
        if start > 0 {
            // SAFETY: the layer handle is live for `ds`'s lifetime; SetNextByIndex only moves
            // the read cursor (iterating for drivers without fast random access).
            let rc = unsafe { gdal_sys::OGR_L_SetNextByIndex(layer.c_layer(), start as i64) };
            if rc != gdal_sys::OGRErr::OGRERR_NONE {
                return Err(VectorError::new(
                    "Unreadable",
                    format!("{}: cannot seek to feature {start}", spec.label),
                ));
            }
        }
    }
    let mut chunk = Chunk {
        rows: Vec::with_capacity(count as usize),
        ..Chunk::default()
    };
    let mut read = 0u64;
    // features() resets reading, so iterate with the raw cursor through feature handles.
    while read < count {
        // SAFETY: GetNextFeature returns an owned feature (or NULL at the end / on error), which
        // Feature takes ownership of and destroys on drop.
        let h = unsafe { gdal_sys::OGR_L_GetNextFeature(layer.c_layer()) };
        if h.is_null() {
            break;
        }
        let f = unsafe { gdal::vector::Feature::from_c_feature(layer.defn(), h) };
        read += 1;
        let cells = attrs.iter().map(|(i, c)| cell(&f, *i, c.pg_type)).collect();
        let ewkb = match f.geometry() {
            Some(g) => pipeline.process(g, &mut chunk)?,
            None => {
                chunk.null_geometries += 1;
                None
            }
        };
        if ewkb.as_ref().is_some_and(Vec::is_empty) {
            continue; // dropped, counted
        }
        chunk.rows.push(Row { cells, ewkb });
    }
    if read < count {
        return Err(VectorError::new(
            "Unreadable",
            format!(
                "{}: the file ended at feature {} while reading features {start}..{} ({})",
                spec.label,
                start + read,
                start + count,
                last_gdal_error()
            ),
        ));
    }
    Ok(chunk)
}

/// The column type of the geometry for what prepare found, and the attribute columns.
pub fn table_for(
    report: &SourceReport,
    schema: &str,
    table: &str,
    srid: i32,
    promote_to_multi: bool,
) -> TableDef {
    let names: Vec<String> = report.fields.iter().map(|f| f.name.clone()).collect();
    let columns = naming::column_names(&names)
        .into_iter()
        .zip(&report.fields)
        .map(|(name, f)| Column {
            name,
            source: f.name.clone(),
            pg_type: pg_type_of(&f.ogr_type),
        })
        .collect();
    TableDef {
        schema: schema.into(),
        table: table.into(),
        columns,
        geometry: super::table::GeometryColumn {
            kind: GeometryKind::for_types(&report.geometry_types, promote_to_multi),
            has_z: report.has_z,
        },
        srid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_pick_formats_and_refuse_the_rest() {
        assert_eq!(Format::from_extension("GPKG").unwrap(), Format::GeoPackage);
        assert_eq!(
            Format::from_extension(".zip").unwrap(),
            Format::ZippedShapefile
        );
        assert_eq!(
            Format::from_extension("shp").unwrap_err().check,
            "ShapefileIncomplete"
        );
        let e = Format::from_extension("docx").unwrap_err();
        assert_eq!(e.check, "UnknownFormat");
        assert!(e.message.contains("docx"));
    }

    #[test]
    fn points_are_valid_exactly_when_their_coordinates_are_finite() {
        let point = |x: f64, y: f64| {
            let mut g = Geometry::empty(OGRwkbGeometryType::wkbPoint).unwrap();
            g.set_point_2d(0, (x, y));
            g
        };
        assert_eq!(point_validity(&point(1.0, 2.0)), Some(true));
        assert_eq!(point_validity(&point(f64::NAN, 2.0)), Some(false));
        assert_eq!(point_validity(&point(1.0, f64::INFINITY)), Some(false));
        let mut multi = Geometry::empty(OGRwkbGeometryType::wkbMultiPoint).unwrap();
        multi.add_geometry(point(1.0, 2.0)).unwrap();
        assert_eq!(point_validity(&multi), Some(true));
        multi.add_geometry(point(3.0, f64::NAN)).unwrap();
        assert_eq!(point_validity(&multi), Some(false));
        // The same answer as GEOS for the valid ones; other types are left to GEOS.
        assert!(point(1.0, 2.0).is_valid());
        let square = Geometry::from_wkt("POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))").unwrap();
        assert_eq!(point_validity(&square), None);
    }

    #[test]
    fn ewkb_carries_the_srid_after_the_header() {
        // POINT(1 2), little endian.
        let mut wkb = vec![1u8, 1, 0, 0, 0];
        wkb.extend_from_slice(&1f64.to_le_bytes());
        wkb.extend_from_slice(&2f64.to_le_bytes());
        let e = ewkb(&wkb, 4326).unwrap();
        assert_eq!(&e[..9], &[1, 1, 0, 0, 0x20, 0xE6, 0x10, 0, 0]);
        assert_eq!(&e[9..], &wkb[5..]);
        assert!(ewkb(&[1, 2], 4326).is_none());
    }
}
