//! A platform request (the earlier system's DDH body), checked field by field; the data type and
//! job chosen from the file extension; the names derived from dataset / resource / version; the
//! job's parameters. Pure: the routes in the parent module do the I/O.
//!
//! Naming (the earlier `PlatformConfig` patterns, kept; documented in docs/api.md):
//! - table `{dataset}_{resource}_{version}`: lowercased, spaces and `-` to `_`, other characters
//!   dropped, runs of `_` collapsed, trimmed; `t_` in front when it would start with a digit or
//!   `pg_`; longer than 63: the first 54 characters, `_` and 8 hex of the sha256 of the whole name.
//! - folder `{dataset}/{resource}/{version}`: lowercased, spaces to `-`, only `a-z0-9-_.` kept.
//! - collection `{dataset}`, item `{dataset}_{resource}_{version}`: lowercased, spaces and `_` to
//!   `-`, only `a-z0-9-` kept, runs of `-` collapsed, trimmed.
//!
//! Unlike the earlier system, identifiers that the rules would silently mangle are refused
//! instead: only ASCII letters, digits, space, `-`, `_` and `.` (no `..`), at least one letter or
//! digit.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::jobs::list_container_contents::filter::check_container_name;
use crate::jobs::{FieldError, ParamKind, ParamSpec, params};

/// Extensions read as vector data (one file: `ingest_vector`).
pub(crate) const VECTOR_EXTENSIONS: [&str; 7] =
    ["geojson", "gpkg", "shp", "zip", "csv", "fgb", "kml"];
/// Extensions read as raster data (one: `process_raster`, several: `process_raster_collection`).
pub(crate) const RASTER_EXTENSIONS: [&str; 2] = ["tif", "tiff"];
/// The job of one raster.
pub(crate) const RASTER_JOB: &str = "process_raster";
/// The job of several rasters.
pub(crate) const RASTER_COLLECTION_JOB: &str = "process_raster_collection";
/// The job of a vector file.
pub(crate) const VECTOR_JOB: &str = "ingest_vector";
/// Most files of one request.
pub(crate) const MAX_FILES: usize = 10_000;
/// Access levels (the earlier `PLATFORM_ACCESS_LEVELS` default).
pub(crate) const ACCESS_LEVELS: [&str; 3] = ["public", "OUO", "restricted"];
/// Operations; only CREATE is implemented.
pub(crate) const OPERATIONS: [&str; 3] = ["CREATE", "UPDATE", "DELETE"];

/// Job parameters the platform derives itself; `processing_options` may not set them.
const DERIVED: [&str; 10] = [
    "blob_name",
    "blob_list",
    "container_name",
    "file_extension",
    "table_name",
    "collection_id",
    "item_id",
    "output_folder",
    "prefix",
    "suffix",
];

/// What the file extension says the data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataType {
    /// GeoTIFF.
    Raster,
    /// A vector format `ingest_vector` reads.
    Vector,
}

impl DataType {
    /// The stored name (`raster`, `vector`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Raster => "raster",
            Self::Vector => "vector",
        }
    }
}

/// A validated request.
#[derive(Debug, Clone)]
pub(crate) struct PlatformRequest {
    /// DDH dataset id.
    pub dataset_id: String,
    /// DDH resource id.
    pub resource_id: String,
    /// DDH version id.
    pub version_id: String,
    /// CREATE, UPDATE or DELETE.
    pub operation: String,
    /// Container of the files.
    pub container_name: String,
    /// The files (`file_name`, a string or a list).
    pub files: Vec<String>,
    /// Client (`ddh` by default).
    pub client_id: String,
    /// Options passed to the job where they apply.
    pub processing_options: Map<String, Value>,
    /// The validated body, defaults applied (stored with the request).
    pub body: Value,
}

/// The names derived from dataset / resource / version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct Outputs {
    /// PostGIS table (vector requests).
    pub table_name: String,
    /// Folder of the COGs in the output container (raster requests).
    pub output_folder: String,
    /// STAC collection.
    pub collection_id: String,
    /// STAC item (one raster, a vector).
    pub item_id: String,
}

/// The job a request becomes.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Data type.
    pub data_type: DataType,
    /// Job type.
    pub job_type: &'static str,
    /// The job's parameters.
    pub parameters: Map<String, Value>,
    /// Derived names.
    pub outputs: Outputs,
    /// `processing_options` keys the job does not take (ignored, reported).
    pub ignored_options: Vec<String>,
}

/// Why a request cannot be served.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    /// 400: the fields at fault.
    Invalid(Vec<FieldError>),
    /// 501: what is not implemented and why.
    NotImplemented {
        /// The field that asked for it (`operation`, `file_name`).
        field: &'static str,
        /// What was asked for (`UPDATE`, `las`).
        value: String,
        /// Why.
        message: String,
    },
}

fn invalid(
    field: impl Into<String>,
    rule: &str,
    value: Value,
    message: impl Into<String>,
) -> Refusal {
    Refusal::Invalid(vec![FieldError {
        field: field.into(),
        rule: rule.into(),
        value,
        message: message.into(),
    }])
}

/// The earlier recipe: the first 32 hex of sha256 of `dataset_id|resource_id|version_id`.
pub(crate) fn request_id(dataset_id: &str, resource_id: &str, version_id: &str) -> String {
    let h = Sha256::digest(format!("{dataset_id}|{resource_id}|{version_id}").as_bytes());
    hex::encode(h)[..32].to_string()
}

/// The check of dataset_id, resource_id and version_id.
fn check_ddh_id(s: &str) -> Result<(), (&'static str, String)> {
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.')))
    {
        return Err((
            "characters",
            format!(
                "{c:?} is not accepted: use ASCII letters, digits, space, '-', '_' and '.' (the id becomes a table, a folder and STAC ids)"
            ),
        ));
    }
    if s.contains("..") {
        return Err((
            "characters",
            "'..' is not accepted (the id becomes a folder)".into(),
        ));
    }
    if !s.chars().any(|c| c.is_ascii_alphanumeric()) {
        return Err(("characters", "needs at least one letter or digit".into()));
    }
    Ok(())
}

fn specs() -> Vec<ParamSpec> {
    let id = |name, max: f64, what| {
        ParamSpec::new(name, ParamKind::String, what)
            .required()
            .max(max)
            .check(check_ddh_id)
    };
    vec![
        id("dataset_id", 255.0, "DDH dataset id"),
        id("resource_id", 255.0, "DDH resource id"),
        id("version_id", 50.0, "DDH version id"),
        ParamSpec::new(
            "operation",
            ParamKind::String,
            "CREATE (UPDATE, DELETE: 501)",
        )
        .allowed(&OPERATIONS)
        .default(json!("CREATE")),
        ParamSpec::new(
            "container_name",
            ParamKind::String,
            "Container of the files",
        )
        .required()
        .max(63.0)
        .check(check_container_name),
        ParamSpec::new("service_name", ParamKind::String, "Service name").max(255.0),
        ParamSpec::new("access_level", ParamKind::String, "Access level")
            .allowed(&ACCESS_LEVELS)
            .default(json!("OUO")),
        ParamSpec::new("description", ParamKind::String, "Description").max(4096.0),
        ParamSpec::new(
            "tags",
            ParamKind::Array(Box::new(ParamKind::String)),
            "Tags",
        )
        .max(100.0)
        .check(|s| {
            if s.chars().count() > 100 || s.chars().any(char::is_control) {
                Err((
                    "tag",
                    "at most 100 characters, no control characters".into(),
                ))
            } else {
                Ok(())
            }
        })
        .default(json!([])),
        ParamSpec::new("client_id", ParamKind::String, "Client")
            .max(100.0)
            .default(json!("ddh")),
    ]
}

fn file_error(field: String, rule: &str, value: &Value, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        rule: rule.into(),
        value: value.clone(),
        message: message.into(),
    }
}

/// `file_name`: a blob name or a list of them.
fn files(v: Option<&Value>, errors: &mut Vec<FieldError>) -> Vec<String> {
    let check = |field: String, v: &Value, errors: &mut Vec<FieldError>| -> Option<String> {
        let Some(s) = v.as_str() else {
            errors.push(file_error(
                field,
                "type",
                v,
                "expected a blob name (a string)",
            ));
            return None;
        };
        let problem = if s.is_empty() {
            Some(("min_length", "must not be empty".to_string()))
        } else if s.chars().count() > 1024 {
            Some(("max_length", "at most 1024 characters".to_string()))
        } else if s.chars().any(char::is_control) {
            Some((
                "characters",
                "control characters are not accepted".to_string(),
            ))
        } else if s.ends_with('/') || s.starts_with('/') || s.split('/').any(|p| p == "..") {
            Some((
                "blob_name",
                "a blob name relative to the container: no leading or trailing '/', no '..'"
                    .to_string(),
            ))
        } else {
            None
        };
        match problem {
            Some((rule, message)) => {
                errors.push(file_error(
                    field,
                    rule,
                    &crate::api::error::echo(s),
                    message,
                ));
                None
            }
            None => Some(s.to_string()),
        }
    };
    match v {
        None | Some(Value::Null) => {
            errors.push(file_error(
                "file_name".into(),
                "required",
                &Value::Null,
                "this parameter is required",
            ));
            Vec::new()
        }
        Some(Value::Array(a)) => {
            if a.is_empty() || a.len() > MAX_FILES {
                errors.push(file_error(
                    "file_name".into(),
                    if a.is_empty() {
                        "min_items"
                    } else {
                        "max_items"
                    },
                    &json!(format!("array of {} items", a.len())),
                    format!("one to {MAX_FILES} blob names"),
                ));
                return Vec::new();
            }
            a.iter()
                .enumerate()
                .filter_map(|(i, x)| check(format!("file_name[{i}]"), x, errors))
                .collect()
        }
        Some(other) => check("file_name".into(), other, errors)
            .into_iter()
            .collect(),
    }
}

/// Validates a request body; every field at fault is reported.
pub(crate) fn parse(body: &Value) -> Result<PlatformRequest, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![file_error(
            "(body)".into(),
            "type",
            body,
            "expected a JSON object",
        )]);
    };
    let mut rest = obj.clone();
    let file_value = rest.remove("file_name");
    let options = rest.remove("processing_options");
    let mut errors = Vec::new();
    let validated = params::validate(&specs(), &Value::Object(rest)).unwrap_or_else(|mut e| {
        for err in &mut e {
            if err.rule == "unknown_field" {
                err.message = format!(
                    "unknown field; known fields: {}, file_name, processing_options",
                    specs()
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        errors.append(&mut e);
        Map::new()
    });
    let files = files(file_value.as_ref(), &mut errors);
    let processing_options = match options {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            errors.push(file_error(
                "processing_options".into(),
                "type",
                &other,
                "expected a JSON object",
            ));
            Map::new()
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let s = |k: &str| {
        validated
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut stored = validated.clone();
    stored.insert("file_name".into(), file_value.unwrap_or(Value::Null));
    stored.insert(
        "processing_options".into(),
        Value::Object(processing_options.clone()),
    );
    Ok(PlatformRequest {
        dataset_id: s("dataset_id"),
        resource_id: s("resource_id"),
        version_id: s("version_id"),
        operation: s("operation"),
        container_name: s("container_name"),
        client_id: s("client_id"),
        files,
        processing_options,
        body: Value::Object(stored),
    })
}

fn slug(
    text: &str,
    keep: impl Fn(char) -> bool,
    to: impl Fn(char) -> Option<char>,
    sep: char,
) -> String {
    let mut out = String::new();
    for c in text.to_ascii_lowercase().chars() {
        let c = to(c).unwrap_or(c);
        if !keep(c) {
            continue;
        }
        if c == sep && out.ends_with(sep) {
            continue;
        }
        out.push(c);
    }
    out.trim_matches(sep).to_string()
}

fn table_slug(text: &str) -> String {
    let s = slug(
        text,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        |c| matches!(c, ' ' | '-').then_some('_'),
        '_',
    );
    let s = if s.starts_with(|c: char| c.is_ascii_digit()) || s.starts_with("pg_") {
        format!("t_{s}")
    } else {
        s
    };
    if s.len() <= 63 {
        return s;
    }
    let h = hex::encode(Sha256::digest(s.as_bytes()));
    format!("{}_{}", s[..54].trim_end_matches('_'), &h[..8])
}

fn stac_slug(text: &str) -> String {
    slug(
        text,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        |c| matches!(c, ' ' | '_').then_some('-'),
        '-',
    )
}

fn path_slug(text: &str) -> String {
    let s = slug(
        text,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | '/'),
        |c| (c == ' ').then_some('-'),
        '-',
    );
    // Runs of '/' collapse too (the earlier rule); the ids carry none, so this only trims.
    s.split('/')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// The names of a request (see the module doc).
pub(crate) fn outputs(dataset_id: &str, resource_id: &str, version_id: &str) -> Outputs {
    let joined = format!("{dataset_id}_{resource_id}_{version_id}");
    Outputs {
        table_name: table_slug(&joined),
        output_folder: path_slug(&format!("{dataset_id}/{resource_id}/{version_id}")),
        collection_id: stac_slug(dataset_id),
        item_id: stac_slug(&joined),
    }
}

/// The extension of a blob name (lowercase, without the dot), if it has one.
pub(crate) fn extension(blob: &str) -> Option<String> {
    let file = blob.rsplit('/').next().unwrap_or(blob);
    file.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .filter(|e| !e.is_empty())
}

/// The data type of the files: all of one type, known extensions only.
fn data_type(files: &[String]) -> Result<DataType, Refusal> {
    let mut found: Option<(DataType, &str)> = None;
    for (i, f) in files.iter().enumerate() {
        let field = if files.len() == 1 {
            "file_name".to_string()
        } else {
            format!("file_name[{i}]")
        };
        let Some(ext) = extension(f) else {
            return Err(invalid(
                field,
                "extension",
                json!(f),
                format!(
                    "has no extension; the data type comes from it (vector: {}; raster: {})",
                    VECTOR_EXTENSIONS.join(", "),
                    RASTER_EXTENSIONS.join(", ")
                ),
            ));
        };
        let t = if RASTER_EXTENSIONS.contains(&ext.as_str()) {
            DataType::Raster
        } else if VECTOR_EXTENSIONS.contains(&ext.as_str()) {
            DataType::Vector
        } else {
            return Err(Refusal::NotImplemented {
                field: "file_name",
                value: ext.clone(),
                message: format!(
                    "{field}: files of type {ext:?} are not processed (vector: {}; raster: {})",
                    VECTOR_EXTENSIONS.join(", "),
                    RASTER_EXTENSIONS.join(", ")
                ),
            });
        };
        match found {
            Some((first, first_file)) if first != t => {
                return Err(invalid(
                    field,
                    "data_type",
                    json!(f),
                    format!(
                        "is {} data but {first_file:?} is {}: one request holds one data type",
                        t.as_str(),
                        first.as_str()
                    ),
                ));
            }
            _ => found = Some((t, f)),
        }
    }
    Ok(found.map(|(t, _)| t).unwrap_or(DataType::Raster))
}

/// Maps a field of the job's parameters back to the request field it came from.
pub(crate) fn request_field(job_field: &str) -> String {
    let (head, tail) = match job_field.find(['.', '[']) {
        Some(i) => job_field.split_at(i),
        None => (job_field, ""),
    };
    match head {
        "blob_name" | "file_extension" => "file_name".into(),
        "blob_list" => format!("file_name{tail}"),
        "container_name" => "container_name".into(),
        "table_name" | "collection_id" | "item_id" | "output_folder" => {
            format!("(derived from dataset_id, resource_id, version_id) {head}")
        }
        _ => format!("processing_options.{job_field}"),
    }
}

/// The job of a request: the data type from the extension, the names, and the parameters
/// (`processing_options` where the job takes them). `job_parameters` gives a job type's
/// parameters, `None` when this deployment does not have it.
pub(crate) fn plan(
    req: &PlatformRequest,
    job_parameters: impl Fn(&str) -> Option<Vec<ParamSpec>>,
) -> Result<Plan, Refusal> {
    if req.operation != "CREATE" {
        return Err(Refusal::NotImplemented {
            field: "operation",
            value: req.operation.clone(),
            message: format!(
                "operation {}: not implemented; only CREATE is (as in the earlier system, {} comes in a later phase: submit a new version_id to publish a new version)",
                req.operation, req.operation
            ),
        });
    }
    let data_type = data_type(&req.files)?;
    if data_type == DataType::Vector && req.files.len() > 1 {
        return Err(invalid(
            "file_name",
            "max_items",
            json!(format!("array of {} items", req.files.len())),
            "a vector request takes one file (a Shapefile: one .zip of its parts)",
        ));
    }
    let outputs = outputs(&req.dataset_id, &req.resource_id, &req.version_id);
    let job_type = match (data_type, req.files.len()) {
        (DataType::Vector, _) => VECTOR_JOB,
        (DataType::Raster, 1) => RASTER_JOB,
        (DataType::Raster, _) => RASTER_COLLECTION_JOB,
    };
    let Some(specs) = job_parameters(job_type) else {
        return Err(Refusal::NotImplemented {
            field: "file_name",
            value: job_type.into(),
            message: format!(
                "{} {} data maps to the job type {job_type}, which this deployment does not have",
                req.files.len(),
                data_type.as_str()
            ),
        });
    };
    let mut p = Map::new();
    p.insert("container_name".into(), json!(req.container_name));
    match job_type {
        VECTOR_JOB => {
            p.insert("blob_name".into(), json!(req.files[0]));
            p.insert(
                "file_extension".into(),
                json!(extension(&req.files[0]).unwrap_or_default()),
            );
            p.insert("table_name".into(), json!(outputs.table_name));
            p.insert("collection_id".into(), json!(outputs.collection_id));
            p.insert("item_id".into(), json!(outputs.item_id));
        }
        RASTER_JOB => {
            p.insert("blob_name".into(), json!(req.files[0]));
            p.insert("output_folder".into(), json!(outputs.output_folder));
            p.insert("collection_id".into(), json!(outputs.collection_id));
            p.insert("item_id".into(), json!(outputs.item_id));
        }
        _ => {
            p.insert("blob_list".into(), json!(req.files));
            p.insert("output_folder".into(), json!(outputs.output_folder));
            p.insert("collection_id".into(), json!(outputs.collection_id));
        }
    }
    let takes = |k: &str| specs.iter().any(|s| s.name == k);
    let mut errors = Vec::new();
    let mut ignored = Vec::new();
    for (key, value) in &req.processing_options {
        // The earlier system's option names.
        let (target, nested) = match key.as_str() {
            "crs" => ("target_crs", None),
            "lon_column" => ("converter_params", Some("lon_name")),
            "lat_column" => ("converter_params", Some("lat_name")),
            "wkt_column" => ("converter_params", Some("wkt_column")),
            k => (k, None),
        };
        if DERIVED.contains(&target) {
            errors.push(file_error(
                format!("processing_options.{key}"),
                "derived",
                value,
                format!(
                    "{target} is set by the platform (from file_name, container_name or dataset_id/resource_id/version_id) and cannot be an option"
                ),
            ));
            continue;
        }
        if !takes(target) {
            ignored.push(key.clone());
            continue;
        }
        match nested {
            None => {
                p.insert(target.into(), value.clone());
            }
            Some(inner) => {
                let entry = p.entry(target).or_insert_with(|| json!({}));
                if let Some(o) = entry.as_object_mut() {
                    o.entry(inner).or_insert(value.clone());
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(Refusal::Invalid(errors));
    }
    Ok(Plan {
        data_type,
        job_type,
        parameters: p,
        outputs,
        ignored_options: ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(files: Value) -> Value {
        json!({"dataset_id": "Aerial-Imagery", "resource_id": "Site Alpha", "version_id": "v1.0",
               "container_name": "bronze-rasters", "file_name": files})
    }

    fn spec_names(job: &str) -> Option<Vec<ParamSpec>> {
        match job {
            VECTOR_JOB => Some(crate::jobs::ingest_vector::parameters()),
            RASTER_JOB => Some(crate::jobs::process_raster::parameters()),
            _ => None,
        }
    }

    #[test]
    fn request_id_is_the_earlier_recipe() {
        // sha256("aerial-2024|site-alpha|v1.0"), first 32 hex (computed with Python's hashlib).
        let id = request_id("aerial-2024", "site-alpha", "v1.0");
        assert_eq!(id.len(), 32);
        assert_eq!(
            id,
            hex::encode(Sha256::digest(b"aerial-2024|site-alpha|v1.0"))[..32]
        );
        assert_ne!(request_id("a", "bc", "d"), request_id("ab", "c", "d"));
    }

    #[test]
    fn names_follow_the_earlier_patterns() {
        let o = outputs("Aerial-Imagery", "Site Alpha", "v1.0");
        assert_eq!(o.table_name, "aerial_imagery_site_alpha_v10");
        assert_eq!(o.output_folder, "aerial-imagery/site-alpha/v1.0");
        assert_eq!(o.collection_id, "aerial-imagery");
        assert_eq!(o.item_id, "aerial-imagery-site-alpha-v10");
        assert_eq!(outputs("2024", "a", "b").table_name, "t_2024_a_b");
        assert_eq!(outputs("pg-x", "a", "b").table_name, "t_pg_x_a_b");
        let long = outputs(&"d".repeat(255), &"r".repeat(255), "v");
        assert_eq!(long.table_name.len(), 63);
        assert!(crate::jobs::ingest_vector::naming::check_identifier(&long.table_name).is_ok());
        assert_ne!(
            long.table_name,
            outputs(&"d".repeat(255), &"r".repeat(255), "w").table_name,
            "cut names keep a hash of the whole"
        );
    }

    #[test]
    fn hostile_ids_are_refused_naming_the_field() {
        for (field, bad) in [
            ("dataset_id", "x; DROP TABLE app.jobs"),
            ("resource_id", "../../etc"),
            ("version_id", "v1\u{0}"),
            ("dataset_id", "データ"),
            ("resource_id", "---"),
            ("version_id", "a/b"),
        ] {
            let mut b = body(json!("a.tif"));
            b[field] = json!(bad);
            let errors = parse(&b).unwrap_err();
            assert!(
                errors.iter().any(|e| e.field == field),
                "{bad:?} in {field}: {errors:?}"
            );
        }
        let mut b = body(json!("a.tif"));
        b["version_id"] = json!("v".repeat(51));
        assert_eq!(parse(&b).unwrap_err()[0].rule, "max_length");
    }

    #[test]
    fn the_extension_picks_the_job() {
        let pick =
            |files: Value| plan(&parse(&body(files)).unwrap(), spec_names).map(|p| p.job_type);
        assert_eq!(pick(json!("a/b.TIF")), Ok(RASTER_JOB));
        assert_eq!(pick(json!(["a.gpkg"])), Ok(VECTOR_JOB));
        assert_eq!(pick(json!("x.zip")), Ok(VECTOR_JOB));
        assert!(
            matches!(
                pick(json!(["a.tif", "b.tif"])),
                Err(Refusal::NotImplemented { .. })
            ),
            "the collection job is not in this registry"
        );
        assert!(
            matches!(pick(json!("cloud.las")), Err(Refusal::NotImplemented { value, .. }) if value == "las")
        );
        assert!(
            matches!(pick(json!(["a.tif", "b.gpkg"])), Err(Refusal::Invalid(e)) if e[0].field == "file_name[1]")
        );
        assert!(matches!(
            pick(json!(["a.gpkg", "b.gpkg"])),
            Err(Refusal::Invalid(_))
        ));
        assert!(matches!(pick(json!("noext")), Err(Refusal::Invalid(_))));
    }

    #[test]
    fn options_pass_where_the_job_takes_them() {
        let mut b = body(json!("a.tif"));
        b["processing_options"] =
            json!({"crs": "EPSG:3857", "output_tier": "all", "processing_mode": "docker"});
        let p = plan(&parse(&b).unwrap(), spec_names).unwrap();
        assert_eq!(p.parameters["target_crs"], "EPSG:3857");
        assert_eq!(p.parameters["output_tier"], "all");
        assert_eq!(
            p.parameters["output_folder"],
            "aerial-imagery/site-alpha/v1.0"
        );
        assert_eq!(p.ignored_options, ["processing_mode"]);
        b["processing_options"] = json!({"table_name": "mine"});
        assert!(
            matches!(plan(&parse(&b).unwrap(), spec_names), Err(Refusal::Invalid(e)) if e[0].field == "processing_options.table_name")
        );
        b["operation"] = json!("DELETE");
        assert!(matches!(
            plan(&parse(&b).unwrap(), spec_names),
            Err(Refusal::NotImplemented {
                field: "operation",
                ..
            })
        ));
    }
}
