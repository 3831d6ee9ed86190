//! The STAC item of a loaded table (pure): the table's extent as geometry and bbox, its row
//! count, geometry type and columns in the STAC table extension's fields, and a `data` asset
//! naming `schema.table`.

use serde_json::{Value, json};

use super::naming::GEOMETRY_COLUMN;
use super::table::TableDef;

/// The STAC table extension.
pub const TABLE_EXTENSION: &str = "https://stac-extensions.github.io/table/v1.2.0/schema.json";

/// What the item is built from.
#[derive(Debug)]
pub struct ItemInput<'a> {
    /// Item id.
    pub id: &'a str,
    /// Collection id.
    pub collection: &'a str,
    /// The table.
    pub table: &'a TableDef,
    /// Rows loaded.
    pub rows: i64,
    /// Extent in EPSG:4326 (None: every geometry NULL).
    pub bbox: Option<[f64; 4]>,
    /// prepare's report of the source.
    pub source: &'a Value,
}

/// The item as JSON (STAC 1.1.0).
pub fn build_item(i: &ItemInput<'_>) -> Value {
    let t = i.table;
    let mut columns = vec![json!({"name": "id", "type": "bigint"})];
    columns.extend(
        t.columns
            .iter()
            .map(|c| json!({"name": c.name, "type": c.pg_type.sql()})),
    );
    columns.push(json!({"name": GEOMETRY_COLUMN, "type": format!("geometry({}, {})", t.geometry.kind.sql(), t.srid)}));
    let (geometry, bbox) = match i.bbox {
        Some(b) => (
            crate::jobs::process_raster::stac_item::bbox_polygon(&b),
            json!(b),
        ),
        None => (Value::Null, Value::Null),
    };
    let mut item = json!({
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [TABLE_EXTENSION],
        "id": i.id,
        "collection": i.collection,
        "geometry": geometry,
        "properties": {
            "datetime": chrono::Utc::now().to_rfc3339(),
            "title": format!("PostGIS table {}", t.display()),
            "table:row_count": i.rows,
            "table:primary_geometry": GEOMETRY_COLUMN,
            "table:columns": columns,
            "coremachine:geometry_type": t.geometry.kind.sql(),
            "coremachine:srid": t.srid,
            "coremachine:source": {
                "driver": i.source.get("driver"),
                "layer": i.source.get("layer"),
                "feature_count": i.source.get("feature_count"),
                "crs": i.source.get("crs").and_then(|c| c.get("code")),
            },
        },
        "links": [],
        "assets": {
            "data": {
                "href": format!("postgis:{}", t.display()),
                "title": format!("table {}", t.display()),
                "type": "application/vnd.postgresql.table",
                "roles": ["data"],
                "table:storage_options": {"schema": t.schema, "table": t.table},
            }
        },
    });
    if !bbox.is_null() {
        item["bbox"] = bbox;
    }
    item
}

/// A collection for vector items, created when the first item of `id` arrives.
pub fn new_collection(id: &str) -> Value {
    json!({
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": id,
        "description": format!("PostGIS tables loaded by CoreMachine's ingest_vector into collection {id}"),
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[null, null]]},
        },
        "links": [],
    })
}
