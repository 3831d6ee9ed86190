//! The PostGIS table: its definition (decided by prepare, carried to every load task) and the
//! statements that name it.
//!
//! These statements are generated, not kept in `.sql` files like the engine's: the schema, table
//! and column names are the caller's. Each name was validated (`naming::check_identifier`) or
//! sanitised (`naming::column_names`), and every one is inserted through `naming::quote`; values
//! (batch ids, the owner mark) are always bind parameters or, for `COMMENT`, which takes no
//! parameter, a quoted literal of CoreMachine's own text.

use gdal::vector::OGRwkbGeometryType;
use serde::{Deserialize, Serialize};

use super::naming::{self, BATCH_COLUMN, GEOMETRY_COLUMN, ID_COLUMN, LEDGER_TABLE, quote};

/// An attribute column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PgType {
    /// integer.
    Int4,
    /// bigint.
    Int8,
    /// double precision.
    Float8,
    /// text.
    Text,
    /// date.
    Date,
    /// timestamp with time zone.
    Timestamptz,
}

impl PgType {
    /// The SQL type name.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Int4 => "integer",
            Self::Int8 => "bigint",
            Self::Float8 => "double precision",
            Self::Text => "text",
            Self::Date => "date",
            Self::Timestamptz => "timestamptz",
        }
    }
}

/// An attribute column and the source field it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name (sanitised).
    pub name: String,
    /// Field name in the source.
    pub source: String,
    /// Type.
    pub pg_type: PgType,
}

/// The geometry column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GeometryKind {
    /// Point.
    Point,
    /// MultiPoint.
    MultiPoint,
    /// LineString.
    LineString,
    /// MultiLineString.
    MultiLineString,
    /// Polygon.
    Polygon,
    /// MultiPolygon.
    MultiPolygon,
    /// Any geometry (mixed families or collections).
    Geometry,
}

impl GeometryKind {
    /// The column type for the distinct (flattened) type names a source holds: one family gives
    /// its multi type when promoting (or when the source mixes single and multi), else its single
    /// type; several families give `Geometry`.
    pub fn for_types(types: &[String], promote_to_multi: bool) -> Self {
        let family = |t: &str| match t {
            "Point" | "Multi Point" | "MultiPoint" => Some(0),
            "Line String" | "LineString" | "Multi Line String" | "MultiLineString" => Some(1),
            "Polygon" | "Multi Polygon" | "MultiPolygon" => Some(2),
            _ => None,
        };
        let fams: Vec<Option<u8>> = types.iter().map(|t| family(t)).collect();
        let Some(Some(f)) = fams.first().copied() else {
            return Self::Geometry;
        };
        if fams.iter().any(|x| *x != Some(f)) {
            return Self::Geometry;
        }
        let any_multi = types.iter().any(|t| t.starts_with("Multi"));
        match (f, promote_to_multi || any_multi) {
            (0, true) => Self::MultiPoint,
            (0, false) => Self::Point,
            (1, true) => Self::MultiLineString,
            (1, false) => Self::LineString,
            (_, true) => Self::MultiPolygon,
            (_, false) => Self::Polygon,
        }
    }

    /// PostGIS's type modifier name.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Point => "Point",
            Self::MultiPoint => "MultiPoint",
            Self::LineString => "LineString",
            Self::MultiLineString => "MultiLineString",
            Self::Polygon => "Polygon",
            Self::MultiPolygon => "MultiPolygon",
            Self::Geometry => "Geometry",
        }
    }

    /// Whether it is a multi type.
    pub fn is_multi(self) -> bool {
        matches!(
            self,
            Self::MultiPoint | Self::MultiLineString | Self::MultiPolygon
        )
    }

    /// OGR's (single, multi) types of the family; None for `Geometry`.
    pub fn ogr_types(self) -> Option<(OGRwkbGeometryType::Type, OGRwkbGeometryType::Type)> {
        use OGRwkbGeometryType::*;
        match self {
            Self::Point | Self::MultiPoint => Some((wkbPoint, wkbMultiPoint)),
            Self::LineString | Self::MultiLineString => Some((wkbLineString, wkbMultiLineString)),
            Self::Polygon | Self::MultiPolygon => Some((wkbPolygon, wkbMultiPolygon)),
            Self::Geometry => None,
        }
    }
}

/// The geometry column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeometryColumn {
    /// Type.
    pub kind: GeometryKind,
    /// Whether it has Z.
    pub has_z: bool,
}

/// The table a job loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    /// Schema (validated identifier).
    pub schema: String,
    /// Table (validated identifier).
    pub table: String,
    /// Attribute columns in source order.
    pub columns: Vec<Column>,
    /// The geometry column.
    pub geometry: GeometryColumn,
    /// SRID of the geometry column.
    pub srid: i32,
}

/// The owner mark CoreMachine puts in the table's comment: `coremachine:ingest_vector job <id>`.
pub const OWNER_PREFIX: &str = "coremachine:ingest_vector job ";

/// The ledger's comment.
const LEDGER_COMMENT: &str =
    "coremachine:ingest_vector batch ledger: the chunks committed into this schema's tables";

/// The job id in a table comment CoreMachine wrote, if it wrote it.
pub fn owner_job(comment: Option<&str>) -> Option<&str> {
    comment
        .and_then(|c| c.strip_prefix(OWNER_PREFIX))
        .map(str::trim)
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl TableDef {
    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        naming::qualified(&self.schema, &self.table)
    }

    /// `schema.table`, for messages and the STAC item.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// The geometry column's SQL type, e.g. `geometry(MultiPolygonZ, 4326)`; `ext_schema` is the
    /// schema PostGIS is installed in.
    pub fn geometry_sql(&self, ext_schema: &str) -> String {
        format!(
            "{}.geometry({}{}, {})",
            quote(ext_schema),
            self.geometry.kind.sql(),
            if self.geometry.has_z { "Z" } else { "" },
            self.srid
        )
    }

    /// CREATE TABLE IF NOT EXISTS, then the owner comment.
    pub fn create_sql(&self, ext_schema: &str, job_id: &str) -> String {
        let mut cols = vec![format!(
            "{} bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            quote(ID_COLUMN)
        )];
        cols.extend(
            self.columns
                .iter()
                .map(|c| format!("{} {}", quote(&c.name), c.pg_type.sql())),
        );
        cols.push(format!(
            "{} {}",
            quote(GEOMETRY_COLUMN),
            self.geometry_sql(ext_schema)
        ));
        cols.push(format!("{} text NOT NULL", quote(BATCH_COLUMN)));
        format!(
            "CREATE TABLE IF NOT EXISTS {t} (\n  {cols}\n);\n\
             COMMENT ON TABLE {t} IS {owner};",
            t = self.qualified(),
            cols = cols.join(",\n  "),
            owner = literal(&format!("{OWNER_PREFIX}{job_id}")),
        )
    }

    /// The batch ledger of the table's schema: one row per chunk committed into a table of the
    /// schema, written in the chunk's transaction. A load deletes a batch's earlier rows only
    /// when the ledger has it (a redelivery, rare), so the table needs no index on
    /// `etl_batch_id` while it is loaded (that index cost a third of the COPY).
    pub fn ledger(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(LEDGER_TABLE))
    }

    /// CREATE TABLE IF NOT EXISTS of the ledger (callers hold the schema's ledger lock).
    pub fn ledger_create_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {l} (\n  \
             table_name text NOT NULL,\n  \
             batch_id text NOT NULL,\n  \
             job_id text NOT NULL,\n  \
             rows bigint NOT NULL,\n  \
             loaded_at timestamptz NOT NULL DEFAULT now(),\n  \
             PRIMARY KEY (table_name, batch_id)\n);\n\
             COMMENT ON TABLE {l} IS {c};",
            l = self.ledger(),
            c = literal(LEDGER_COMMENT),
        )
    }

    /// The rows the ledger recorded for batch `$2` of table `$1`, if it has it.
    pub fn ledger_lookup_sql(&self) -> String {
        format!(
            "SELECT rows FROM {} WHERE table_name = $1 AND batch_id = $2",
            self.ledger()
        )
    }

    /// Records batch `$2` of table `$1`, loaded by job `$3` with `$4` rows.
    pub fn ledger_record_sql(&self) -> String {
        format!(
            "INSERT INTO {} (table_name, batch_id, job_id, rows) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (table_name, batch_id) DO UPDATE \
             SET job_id = EXCLUDED.job_id, rows = EXCLUDED.rows, loaded_at = now()",
            self.ledger()
        )
    }

    /// Forgets every batch of table `$1` (it was dropped).
    pub fn ledger_forget_sql(&self) -> String {
        format!("DELETE FROM {} WHERE table_name = $1", self.ledger())
    }

    /// DROP TABLE (overwrite).
    pub fn drop_sql(&self) -> String {
        format!("DROP TABLE IF EXISTS {}", self.qualified())
    }

    /// DELETE of one chunk's rows; `$1` is the batch id.
    pub fn delete_batch_sql(&self) -> String {
        format!(
            "DELETE FROM {} WHERE {} = $1",
            self.qualified(),
            quote(BATCH_COLUMN)
        )
    }

    /// The columns COPY writes, in order: attributes, geometry, batch id.
    pub fn copy_columns(&self) -> String {
        let mut cols: Vec<String> = self.columns.iter().map(|c| quote(&c.name)).collect();
        cols.push(quote(GEOMETRY_COLUMN));
        cols.push(quote(BATCH_COLUMN));
        cols.join(", ")
    }

    /// A statement whose result columns have COPY's types (for the binary writer).
    pub fn copy_types_sql(&self) -> String {
        format!(
            "SELECT {} FROM {} LIMIT 0",
            self.copy_columns(),
            self.qualified()
        )
    }

    /// COPY ... FROM STDIN BINARY.
    pub fn copy_sql(&self) -> String {
        format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            self.qualified(),
            self.copy_columns()
        )
    }

    /// The GIST index on the geometry.
    pub fn gist_sql(&self) -> String {
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} USING GIST ({})",
            quote(&naming::derived(&self.table, "geom_gist")),
            self.qualified(),
            quote(GEOMETRY_COLUMN)
        )
    }

    /// The column a requested index names (by column or source field name).
    pub fn find_column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .or_else(|| self.columns.iter().find(|c| c.source == name))
    }

    /// A b-tree index on `column` (one of [`TableDef::columns`]).
    pub fn attribute_index_sql(&self, column: &Column) -> String {
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
            quote(&naming::derived(
                &self.table,
                &format!("{}_idx", column.name)
            )),
            self.qualified(),
            quote(&column.name)
        )
    }

    /// ANALYZE.
    pub fn analyze_sql(&self) -> String {
        format!("ANALYZE {}", self.qualified())
    }

    /// Row count, invalid geometries, and the extent in EPSG:4326 (xmin, ymin, xmax, ymax).
    pub fn summary_sql(&self, ext_schema: &str) -> String {
        let s = quote(ext_schema);
        let g = quote(GEOMETRY_COLUMN);
        format!(
            "WITH s AS (SELECT count(*)::bigint AS n, \
             (count(*) FILTER (WHERE NOT {s}.ST_IsValid({g})))::bigint AS invalid, \
             {s}.ST_Transform({s}.ST_SetSRID({s}.ST_Extent({g})::{s}.geometry, {srid}), 4326) AS e FROM {t}) \
             SELECT n, invalid, {s}.ST_XMin(e) AS xmin, {s}.ST_YMin(e) AS ymin, {s}.ST_XMax(e) AS xmax, \
             {s}.ST_YMax(e) AS ymax FROM s",
            t = self.qualified(),
            srid = self.srid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> TableDef {
        TableDef {
            schema: "geo".into(),
            table: "countries".into(),
            columns: vec![Column {
                name: "name".into(),
                source: "NAME".into(),
                pg_type: PgType::Text,
            }],
            geometry: GeometryColumn {
                kind: GeometryKind::MultiPolygon,
                has_z: false,
            },
            srid: 4326,
        }
    }

    #[test]
    fn geometry_kind_follows_the_types_found() {
        let t = |v: &[&str], p| {
            GeometryKind::for_types(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>(), p)
        };
        assert_eq!(t(&["Polygon"], true), GeometryKind::MultiPolygon);
        assert_eq!(t(&["Polygon"], false), GeometryKind::Polygon);
        assert_eq!(
            t(&["Multi Polygon", "Polygon"], false),
            GeometryKind::MultiPolygon
        );
        assert_eq!(t(&["Point"], true), GeometryKind::MultiPoint);
        assert_eq!(t(&["Point", "Polygon"], true), GeometryKind::Geometry);
        assert_eq!(t(&["Geometry Collection"], true), GeometryKind::Geometry);
    }

    #[test]
    fn statements_quote_every_name() {
        let d = def();
        let sql = d.create_sql("public", "abc");
        assert!(
            sql.contains("CREATE TABLE IF NOT EXISTS \"geo\".\"countries\""),
            "{sql}"
        );
        assert!(
            sql.contains("\"geom\" \"public\".geometry(MultiPolygon, 4326)"),
            "{sql}"
        );
        assert!(
            sql.contains("IS 'coremachine:ingest_vector job abc'"),
            "{sql}"
        );
        assert_eq!(
            d.delete_batch_sql(),
            "DELETE FROM \"geo\".\"countries\" WHERE \"etl_batch_id\" = $1"
        );
        assert_eq!(
            owner_job(Some("coremachine:ingest_vector job abc")),
            Some("abc")
        );
        assert_eq!(owner_job(Some("someone else's")), None);
    }
}
