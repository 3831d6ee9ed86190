//! `ingest_vector` end to end in local mode: real public files (Natural Earth from PyPI's
//! geopandas wheel, Debian's r-cran-spdata and r-cran-sf, fetched by scripts/lib/geo.sh) go into
//! Azurite, the job is submitted through the real route, and the PostGIS table is checked
//! against the source as GDAL reads it: row count, SRID, validity; redelivered chunks and an
//! overwrite re-run keep the count; bad files end with a clear message and no table.
//!
//! Needs (scripts/test.sh provides them; for one test `source scripts/lib/geo.sh &&
//! ensure_geo_test_tools && ensure_vector_test_data`): PGSTAC_SQL, COREMACHINE_VECTOR_DIR, Azurite.

use std::path::{Path, PathBuf};

use coremachine::jobs::TaskContext;
use coremachine::jobs::ingest_vector::{self, PostgisDatabase, VectorDeps};
use coremachine::jobs::list_container_contents::BlobSource;
use coremachine::jobs::process_raster::StacDatabase;
use coremachine::storage::{BlobClient, transfer};
use coremachine::testing::{Fault, FaultRule};
use gdal::Dataset;
use gdal::vector::LayerAccess;
use serde_json::{Value, json};

use crate::blob_job::{client, container_name, run, stage_tasks};
use crate::common::files::{Scratch, fetched};
use crate::common::{Opts, TestApp, fresh_db_with_pgstac};

pub(crate) fn data(rel: &str) -> PathBuf {
    fetched(
        "COREMACHINE_VECTOR_DIR",
        "the fetched vector files",
        "ensure_vector_test_data",
        rel,
    )
}

/// A zip of `files` (stored under their file names), written with Python's zipfile.
pub(crate) fn zip(out: &Path, files: &[PathBuf]) {
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys, zipfile, os\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    [z.write(f, os.path.basename(f)) for f in sys.argv[2:]]")
        .arg(out)
        .args(files)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "zip {}", out.display());
}

/// The parts of a Shapefile `dir/stem.*` with the given extensions.
fn shapefile_parts(dir: &str, stem: &str, exts: &[&str]) -> Vec<PathBuf> {
    exts.iter()
        .map(|e| data(&format!("{dir}/{stem}.{e}")))
        .collect()
}

/// Features in the first layer (or `layer`) as GDAL counts them.
fn source_count(path: &str) -> u64 {
    let ds = Dataset::open(path).unwrap_or_else(|e| panic!("GDAL opens {path}: {e}"));
    let mut l = ds.layer(0).unwrap();
    l.features().count() as u64
}

/// ogr2ogr `src` into `out` with driver `driver`.
fn convert(src: &Path, out: &Path, driver: &str) {
    let o = std::process::Command::new("ogr2ogr")
        .args(["-f", driver])
        .arg(out)
        .arg(src)
        .output()
        .expect("ogr2ogr runs");
    assert!(
        o.status.success(),
        "ogr2ogr {driver}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A test app on a database with pgSTAC (and so PostGIS) that is also the target database.
async fn vector_app(blobs: BlobClient, f: impl FnOnce(&mut Opts)) -> TestApp {
    let (name, url) = fresh_db_with_pgstac().await;
    let mut o = Opts::new(&url);
    let pool = coremachine::store::connect_pool(&url, 6).expect("PostGIS pool");
    ingest_vector::register(
        &mut o.registry,
        VectorDeps {
            blobs: BlobSource::fixed(blobs),
            postgis: PostgisDatabase::fixed(pool.clone()),
            stac: StacDatabase::fixed(pool),
            work_dir: None,
        },
    );
    f(&mut o);
    TestApp::start_with(name, url, o).await
}

async fn upload(c: &BlobClient, container: &str, blob: &str, path: &Path) {
    transfer::upload_file(c, container, blob, path, "application/octet-stream")
        .await
        .unwrap_or_else(|e| panic!("upload {blob}: {e}"));
}

async fn input_container(c: &BlobClient) -> String {
    let name = container_name("vec");
    c.create_container(&name).await.expect("create container");
    name
}

/// What the loaded table holds.
#[derive(Debug, PartialEq)]
struct Loaded {
    rows: i64,
    valid: i64,
    srids: Vec<i32>,
    geometry_type: String,
    batches: i64,
}

async fn loaded(app: &TestApp, table: &str) -> Loaded {
    let c = app.db().await;
    let r = c
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE ST_IsValid(geom)), \
                 coalesce(array_agg(DISTINCT ST_SRID(geom)) FILTER (WHERE geom IS NOT NULL), '{{}}'), \
                 (SELECT type FROM geometry_columns WHERE f_table_schema = 'geo' AND f_table_name = '{table}'), \
                 count(DISTINCT etl_batch_id) FROM geo.{table}"
            ),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("geo.{table} is readable: {e}"));
    Loaded {
        rows: r.get(0),
        valid: r.get(1),
        srids: r.get(2),
        geometry_type: r.get(3),
        batches: r.get(4),
    }
}

async fn table_exists(app: &TestApp, table: &str) -> bool {
    app.db()
        .await
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("geo.{table}")],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn natural_earth_shapefile_zip_loads_in_chunks_with_redelivered_chunks_and_an_item() {
    let c = client();
    let container = input_container(&c).await;
    let scratch = Scratch::new("vector");
    let zipped = scratch.path("naturalearth_lowres.zip");
    zip(
        &zipped,
        &shapefile_parts(
            "naturalearth_lowres",
            "naturalearth_lowres",
            &["shp", "shx", "dbf", "prj", "cpg"],
        ),
    );
    upload(&c, &container, "ne/naturalearth_lowres.zip", &zipped).await;
    let expected = source_count(
        &data("naturalearth_lowres/naturalearth_lowres.shp")
            .display()
            .to_string(),
    );
    assert_eq!(
        expected, 177,
        "the geopandas wheel's Natural Earth countries"
    );
    let app = vector_app(c, |_| {}).await;
    // Chunk 2's message is delivered twice at once.
    app.fault(
        FaultRule::times(Fault::DeliverTwice, 1)
            .on_task_type("load_vector_chunk")
            .on_index(2),
    );
    let (status, result, err, id) = run(
        &app,
        "ingest_vector",
        json!({
            "blob_name": "ne/naturalearth_lowres.zip",
            "container_name": container,
            "table_name": "countries",
            "chunk_size": 50,
            "indexes": ["iso_a3", "continent"],
        }),
    )
    .await;
    assert_eq!(status, "completed", "{err:?} {result}");
    let t = loaded(&app, "countries").await;
    assert_eq!(
        t,
        Loaded {
            rows: 177,
            valid: 177,
            srids: vec![4326],
            geometry_type: "MULTIPOLYGON".into(),
            batches: 4
        }
    );
    assert_eq!(result["rows"], 177);
    assert_eq!(result["table"], "geo.countries");
    assert_eq!(result["chunks"].as_array().unwrap().len(), 4);
    let per_chunk: Vec<u64> = result["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(per_chunk, [50, 50, 50, 27]);
    assert!(
        result["repaired"].as_u64().is_some() && result["dropped"] == 0,
        "{result}"
    );
    assert_eq!(result["source"]["crs"], "EPSG:4326");
    // Chunk 1 run again after the job (a redelivery after a lost completion), then twice at
    // once: its rows are replaced, never added.
    let loads = stage_tasks(&app, &id, 2).await;
    assert!(loads.iter().all(|t| t.1 == "completed"));
    let handler = app
        .opts
        .registry
        .handler("load_vector_chunk")
        .unwrap()
        .clone();
    let ctx = |attempt: i32| TaskContext {
        job_id: id.clone(),
        job_type: "ingest_vector".into(),
        task_id: loads[1].0.clone(),
        task_type: "load_vector_chunk".into(),
        stage: 2,
        task_index: 1,
        attempt,
        parameters: loads[1].2.clone(),
        correlation_id: None,
    };
    let again = handler(ctx(2)).await.expect("chunk 1 runs again");
    assert_eq!(
        (again["rows"].as_u64(), again["replaced_rows"].as_u64()),
        (Some(50), Some(50))
    );
    let (a, b) = tokio::join!(handler(ctx(3)), handler(ctx(4)));
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_eq!(loaded(&app, "countries").await.rows, 177);
    // The columns came from the .dbf, sanitised; the requested indexes exist.
    let db = app.db().await;
    let names: Vec<String> = db
        .query(
            "SELECT name FROM geo.countries WHERE iso_a3 IN ('FRA', 'BRA') ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["Brazil", "France"]);
    let idx: Vec<String> = db
        .query("SELECT indexname::text FROM pg_indexes WHERE schemaname = 'geo' AND tablename = 'countries' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for want in [
        "countries_geom_gist",
        "countries_iso_a3_idx",
        "countries_continent_idx",
    ] {
        assert!(idx.iter().any(|i| i == want), "{want} in {idx:?}");
    }
    // The STAC item: in pgSTAC, found by a bbox search over France.
    let item: Value = db
        .query_one(
            "SELECT content FROM pgstac.items WHERE id = 'geo.countries'",
            &[],
        )
        .await
        .expect("the item is in pgSTAC")
        .get(0);
    assert_eq!(item["properties"]["table:row_count"], 177, "{item}");
    let found: i64 = db
        .query_one(
            "SELECT count(*) FROM pgstac.items WHERE collection = 'vectors' AND ST_Intersects(geometry, ST_MakeEnvelope(2, 46, 3, 47, 4326))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 1);
    app.cleanup().await;
}

#[tokio::test]
async fn nad27_geopackage_is_reprojected_and_an_overwrite_run_keeps_the_source_count() {
    let c = client();
    let container = input_container(&c).await;
    upload(&c, &container, "nc.gpkg", &data("nc/nc.gpkg")).await;
    let expected = source_count(&data("nc/nc.gpkg").display().to_string()) as i64;
    assert_eq!(expected, 100);
    let app = vector_app(c, |_| {}).await;
    let params = json!({"blob_name": "nc.gpkg", "container_name": container, "table_name": "nc", "chunk_size": 30});
    let (status, result, err, _) = run(&app, "ingest_vector", params.clone()).await;
    assert_eq!(status, "completed", "{err:?} {result}");
    assert_eq!(result["source"]["crs"], "EPSG:4267", "{result}");
    let first = loaded(&app, "nc").await;
    assert_eq!(
        (first.rows, first.valid, first.srids.clone()),
        (expected, expected, vec![4326])
    );
    // Reprojected: NAD27 to WGS 84 moves North Carolina by metres, and the bbox is in lon/lat.
    let db = app.db().await;
    let r = db
        .query_one(
            "SELECT ST_XMin(e), ST_XMax(e), ST_YMin(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM geo.nc) x",
            &[],
        )
        .await
        .unwrap();
    let (x0, x1, y0, y1): (f64, f64, f64, f64) = (r.get(0), r.get(1), r.get(2), r.get(3));
    assert!(
        (-84.4..-84.2).contains(&x0) && (-75.5..-75.4).contains(&x1),
        "{x0} {x1}"
    );
    assert!(
        (33.8..33.9).contains(&y0) && (36.5..36.7).contains(&y1),
        "{y0} {y1}"
    );
    // Another job into the same table is refused without overwrite...
    let mut other = params.clone();
    other["chunk_size"] = json!(40);
    let (status, _, err, _) = run(&app, "ingest_vector", other.clone()).await;
    assert_eq!(status, "failed");
    let err = err.unwrap_or_default();
    assert!(
        err.contains("geo.nc exists") && err.contains("overwrite"),
        "{err}"
    );
    // ... and with overwrite replaces it: still exactly the source's count.
    other["overwrite"] = json!(true);
    let (status, result, err, _) = run(&app, "ingest_vector", other).await;
    assert_eq!(status, "completed", "{err:?} {result}");
    let second = loaded(&app, "nc").await;
    assert_eq!(
        (second.rows, second.valid, second.batches),
        (expected, expected, 3)
    );
    // The schema's batch ledger forgot the dropped table's four chunks and holds the three of
    // the overwrite run, with their row counts.
    let r = db
        .query_one(
            "SELECT count(*), sum(rows)::bigint, count(DISTINCT job_id) FROM geo.coremachine_batches WHERE table_name = 'nc'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)),
        (3, expected, 1)
    );
    app.cleanup().await;
}

#[tokio::test]
async fn every_format_loads_with_the_source_count() {
    let c = client();
    let container = input_container(&c).await;
    let scratch = Scratch::new("vector");
    let fgb = scratch.path("nc.fgb");
    convert(&data("nc/nc.gpkg"), &fgb, "FlatGeobuf");
    let kml = scratch.path("cities.kml");
    convert(
        &data("naturalearth_cities/naturalearth_cities.shp"),
        &kml,
        "KML",
    );
    let cities_zip = scratch.path("cities.zip");
    zip(
        &cities_zip,
        &shapefile_parts(
            "naturalearth_cities",
            "naturalearth_cities",
            &["shp", "shx", "dbf", "prj"],
        ),
    );
    let cases: Vec<(&str, PathBuf, Value, &str)> = vec![
        ("world.gpkg", data("world.gpkg"), json!({}), "MULTIPOLYGON"),
        (
            "cycle_hire.geojson",
            data("cycle_hire.geojson"),
            json!({}),
            "MULTIPOINT",
        ),
        (
            "cycle_hire_xy.csv",
            data("cycle_hire_xy.csv"),
            json!({}),
            "MULTIPOINT",
        ),
        (
            "world_wkt.csv",
            data("world_wkt.csv"),
            json!({"converter_params": {"wkt_column": "WKT"}}),
            "MULTIPOLYGON",
        ),
        ("nc.fgb", fgb.clone(), json!({}), "MULTIPOLYGON"),
        ("cities.kml", kml.clone(), json!({}), "MULTIPOINT"),
        (
            "cities.zip",
            cities_zip.clone(),
            json!({"geometry_params": {"promote_to_multi": false}}),
            "POINT",
        ),
    ];
    for (blob, path, _, _) in &cases {
        upload(&c, &container, blob, path).await;
    }
    let app = vector_app(c, |_| {}).await;
    let mut jobs = Vec::new();
    for (i, (blob, _, extra, _)) in cases.iter().enumerate() {
        let mut p = json!({"blob_name": blob, "container_name": container, "table_name": format!("t{i}"), "chunk_size": 200});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        jobs.push(app.submit("ingest_vector", p).await);
    }
    for (i, ((blob, path, _, geom_type), id)) in cases.iter().zip(&jobs).enumerate() {
        let status = app
            .wait_terminal(id, std::time::Duration::from_secs(240))
            .await;
        assert_eq!(status, "completed", "{blob}: {}", app.dump(id).await);
        let expected = if *blob == "cities.zip" {
            source_count(
                &data("naturalearth_cities/naturalearth_cities.shp")
                    .display()
                    .to_string(),
            ) as i64
        } else if blob.ends_with(".csv") {
            // The CSVs' rows (GDAL counts them the same; the header is not a feature).
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .skip(1)
                .filter(|l| !l.is_empty())
                .count() as i64
        } else {
            source_count(&path.display().to_string()) as i64
        };
        let t = loaded(&app, &format!("t{i}")).await;
        assert_eq!(
            (t.rows, t.valid, t.srids.clone(), t.geometry_type.as_str()),
            (expected, expected, vec![4326], *geom_type),
            "{blob}"
        );
    }
    app.cleanup().await;
}

/// Submits and expects a failed job whose error contains every one of `needles`.
async fn fails_with(app: &TestApp, params: Value, needles: &[&str]) -> String {
    let (status, result, err, _) = run(app, "ingest_vector", params.clone()).await;
    assert_eq!(status, "failed", "{params}: {result}");
    let err = err.unwrap_or_default();
    for n in needles {
        assert!(err.contains(n), "{params}: {n:?} in {err}");
    }
    err
}

#[tokio::test]
async fn bad_inputs_end_with_a_clear_message_and_no_table() {
    let c = client();
    let container = input_container(&c).await;
    let scratch = Scratch::new("vector");
    // A zip without the .shx.
    let no_shx = scratch.path("no_shx.zip");
    zip(
        &no_shx,
        &shapefile_parts("nc", "nc", &["shp", "dbf", "prj"]),
    );
    upload(&c, &container, "no_shx.zip", &no_shx).await;
    // The first half of a GeoPackage.
    let gpkg = std::fs::read(data("world.gpkg")).unwrap();
    let truncated = scratch.path("truncated.gpkg");
    std::fs::write(&truncated, &gpkg[..gpkg.len() / 2]).unwrap();
    upload(&c, &container, "truncated.gpkg", &truncated).await;
    // 10 MB of random bytes named .gpkg.
    let random = scratch.path("random.gpkg");
    let bytes: Vec<u8> = (0..10 * 1024 * 1024)
        .map(|_| rand::random::<u8>())
        .collect();
    std::fs::write(&random, bytes).unwrap();
    upload(&c, &container, "random.gpkg", &random).await;
    // A CSV without coordinate columns.
    let csv = scratch.path("plain.csv");
    std::fs::write(&csv, "name,count\nalpha,1\nbeta,2\n").unwrap();
    upload(&c, &container, "plain.csv", &csv).await;
    // A GeoJSON with a self-intersecting polygon (a bow tie) and a valid one.
    let bowtie = scratch.path("bowtie.geojson");
    std::fs::write(
        &bowtie,
        json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"name": "bowtie"}, "geometry": {"type": "Polygon", "coordinates": [[[0,0],[2,2],[2,0],[0,2],[0,0]]]}},
            {"type": "Feature", "properties": {"name": "square"}, "geometry": {"type": "Polygon", "coordinates": [[[5,5],[6,5],[6,6],[5,6],[5,5]]]}},
        ]})
        .to_string(),
    )
    .unwrap();
    upload(&c, &container, "bowtie.geojson", &bowtie).await;
    let app = vector_app(c, |_| {}).await;
    let p = |blob: &str, table: &str| json!({"blob_name": blob, "container_name": container, "table_name": table});

    fails_with(
        &app,
        p("no_shx.zip", "no_shx"),
        &["no_shx.zip", "nc.shp", ".shx"],
    )
    .await;
    fails_with(&app, p("truncated.gpkg", "truncated"), &["truncated.gpkg"]).await;
    fails_with(
        &app,
        p("random.gpkg", "random"),
        &["random.gpkg", "cannot be opened as GPKG"],
    )
    .await;
    fails_with(
        &app,
        p("plain.csv", "plain"),
        &["plain.csv", "no geometry column", "lat_name"],
    )
    .await;
    fails_with(
        &app,
        p("plain.docx", "docx"),
        &["\"docx\"", "not a vector format"],
    )
    .await;
    for t in ["no_shx", "truncated", "random", "plain", "docx"] {
        assert!(
            !table_exists(&app, t).await,
            "no table {t} after a refused file"
        );
    }
    // A table that exists and is not CoreMachine's is left alone.
    app.db().await.batch_execute("CREATE SCHEMA IF NOT EXISTS geo; CREATE TABLE geo.theirs (x int); INSERT INTO geo.theirs VALUES (1)").await.unwrap();
    fails_with(
        &app,
        p("bowtie.geojson", "theirs"),
        &["geo.theirs exists", "not created by CoreMachine"],
    )
    .await;
    let theirs: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM geo.theirs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(theirs, 1);

    // The bow tie is repaired (and counted), so every stored geometry is valid.
    let (status, result, err, _) = run(&app, "ingest_vector", p("bowtie.geojson", "bowtie")).await;
    assert_eq!(status, "completed", "{err:?}");
    assert_eq!(
        (result["repaired"].as_u64(), result["rows"].as_u64()),
        (Some(1), Some(2)),
        "{result}"
    );
    let t = loaded(&app, "bowtie").await;
    assert_eq!((t.rows, t.valid), (2, 2));

    // A hostile table name is a 400 at submit naming the field; app.jobs is untouched.
    let (code, body) = app
        .post(
            "/api/jobs/submit/ingest_vector",
            &json!({"blob_name": "bowtie.geojson", "container_name": container, "table_name": "x; drop table app.jobs"}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.to_string().contains("table_name"), "{body}");
    // The batch ledger's name is CoreMachine's.
    let (code, body) = app
        .post(
            "/api/jobs/submit/ingest_vector",
            &json!({"blob_name": "a.gpkg", "table_name": "coremachine_batches"}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.to_string().contains("table_name") && body.to_string().contains("ledger"),
        "{body}"
    );
    let (code, body) = app
        .post(
            "/api/jobs/submit/ingest_vector",
            &json!({"blob_name": "a.gpkg", "table_name": "t", "schema": "app"}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.to_string().contains("schema"), "{body}");
    let jobs: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM app.jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert!(jobs >= 7);
    app.cleanup().await;
}

#[tokio::test]
async fn every_ingest_vector_statement_prepares() {
    let (name, url) = fresh_db_with_pgstac().await;
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for (stmt, sql) in ingest_vector::sql::ALL {
        c.prepare(sql)
            .await
            .unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    drop(c);
    crate::common::drop_db(&name).await;
}

/// Resets this process's peak RSS to its current RSS (Linux `clear_refs` 5); returns it (MiB).
fn reset_peak_rss_mib() -> f64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM");
    peak_rss_mib()
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A child process run to its end, which must succeed: its wall seconds.
fn run_timed(cmd: &mut std::process::Command) -> f64 {
    let t = std::time::Instant::now();
    let o = cmd.output().unwrap();
    let wall = t.elapsed().as_secs_f64();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    wall
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The benchmark of docs/performance.md, only with `BENCH_VECTOR=1` (scripts/bench-vector.sh
/// runs it in a release build): a generated GeoPackage of `BENCH_VECTOR_ROWS` (default
/// 1,000,000) points through ingest_vector once per chunk size of `BENCH_VECTOR_CHUNKS`
/// (default `20000,5000`; `BENCH_VECTOR_CALLS` concurrent deliveries, default 8) and through
/// `ogr2ogr -f PostgreSQL` with `PG_USE_COPY=YES`, into the same database in the same run, each
/// after a CHECKPOINT. Prints rows/s, the ratios, where the load tasks' time went, and peak RSS:
/// the job's as this process's VmHWM growth from a reset just before it, ogr2ogr's from
/// `wait4`. Asserts only the row counts.
#[tokio::test]
async fn bench_a_million_points_against_ogr2ogr() {
    if std::env::var("BENCH_VECTOR").as_deref() != Ok("1") {
        eprintln!("skipped: set BENCH_VECTOR=1 to run the ingest_vector benchmark");
        return;
    }
    let n: usize = env_or("BENCH_VECTOR_ROWS", 1_000_000);
    let chunk_sizes: Vec<u64> = std::env::var("BENCH_VECTOR_CHUNKS")
        .unwrap_or_else(|_| "20000,5000".into())
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .expect("BENCH_VECTOR_CHUNKS: chunk sizes, e.g. 20000,5000")
        })
        .collect();
    let calls: usize = env_or("BENCH_VECTOR_CALLS", 8);
    let scratch = Scratch::new("vector");
    let csv = scratch.path("points.csv");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        writeln!(w, "id,name,value,lon,lat").unwrap();
        for i in 0..n {
            let lon = -180.0 + (i as f64 * 0.000_359_7) % 360.0;
            let lat = -85.0 + (i as f64 * 0.000_170_3) % 170.0;
            writeln!(w, "{i},p{i},{},{lon:.6},{lat:.6}", i % 997).unwrap();
        }
    }
    let gpkg = scratch.path("points.gpkg");
    let o = std::process::Command::new("ogr2ogr")
        .args([
            "-f",
            "GPKG",
            "-oo",
            "X_POSSIBLE_NAMES=lon",
            "-oo",
            "Y_POSSIBLE_NAMES=lat",
            "-oo",
            "AUTODETECT_TYPE=YES",
            "-a_srs",
            "EPSG:4326",
            "-nln",
            "points",
        ])
        .arg(&gpkg)
        .arg(&csv)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = client();
    let container = input_container(&c).await;
    upload(&c, &container, "points.gpkg", &gpkg).await;
    let app = vector_app(c, |o| o.max_concurrent_calls = Some(calls)).await;
    let checkpoint = || async {
        // Each run starts without the previous run's dirty pages to write.
        app.db().await.batch_execute("CHECKPOINT").await.unwrap();
    };
    let mut runs = Vec::new();
    for &chunk_size in &chunk_sizes {
        checkpoint().await;
        let base_rss = reset_peak_rss_mib();
        let t0 = std::time::Instant::now();
        let id = app
            .submit(
                "ingest_vector",
                json!({"blob_name": "points.gpkg", "container_name": container, "table_name": format!("points_{chunk_size}"), "chunk_size": chunk_size}),
            )
            .await;
        let status = app
            .wait_terminal(&id, std::time::Duration::from_secs(3600))
            .await;
        let ours = t0.elapsed().as_secs_f64();
        let peak = peak_rss_mib();
        assert_eq!(status, "completed", "{}", app.dump(&id).await);
        let result: Value = app
            .db()
            .await
            .query_one("SELECT result_data FROM app.jobs WHERE job_id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(result["rows"].as_u64(), Some(n as u64));
        let phase = |name: &str| -> f64 {
            result["chunks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["timings_ms"][name].as_f64())
                .sum::<f64>()
                / 1000.0
        };
        let stage_s: Vec<f64> = app
            .db()
            .await
            .query(
                "SELECT EXTRACT(EPOCH FROM max(updated_at) - min(created_at))::float8 FROM app.tasks WHERE parent_job_id = $1 GROUP BY stage ORDER BY stage",
                &[&id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let chunks = result["chunks"].as_array().map_or(0, Vec::len);
        eprintln!(
            "BENCH ingest_vector chunk_size {chunk_size}: {n} rows in {ours:.2} s = {:.0} rows/s (prepare + {chunks} chunks + indexes + ANALYZE + STAC; {calls} concurrent deliveries); peak RSS {peak:.0} MiB = {base_rss:.0} MiB before the job + {:.0} MiB",
            n as f64 / ours,
            peak - base_rss
        );
        eprintln!(
            "BENCH   stages (first task created to last task done, s): {stage_s:.2?}; load tasks' summed time: fetch {:.2} s, OGR read {:.2} s, COPY {:.2} s",
            phase("fetch"),
            phase("read"),
            phase("copy")
        );
        runs.push((chunk_size, ours, peak - base_rss));
    }
    // ogr2ogr into the same database.
    let pg = format!(
        "PG:{}",
        app.db_url
            .replace(
                "postgres://postgres@127.0.0.1:",
                "host=127.0.0.1 user=postgres port="
            )
            .replacen('/', " dbname=", 1)
    );
    checkpoint().await;
    // Under GNU time, which reports ogr2ogr's own peak RSS: a child spawned straight from this
    // process starts with this process's memory high-water mark (Linux keeps it across exec),
    // so wait4 here would report the test's RSS, not ogr2ogr's.
    let rss_file = scratch.path("ogr2ogr.maxrss");
    let theirs = run_timed(
        std::process::Command::new("/usr/bin/time")
            .arg("-o")
            .arg(&rss_file)
            .args(["-f", "%M", "ogr2ogr"])
            .env("PG_USE_COPY", "YES")
            .args(["-f", "PostgreSQL", &pg])
            .arg(&gpkg)
            .args([
                "-nln",
                "geo.ogr_points",
                "-lco",
                "GEOMETRY_NAME=geom",
                "-lco",
                "SPATIAL_INDEX=GIST",
            ]),
    );
    let m: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM geo.ogr_points", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(m as usize, n);
    let their_rss = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0);
    eprintln!(
        "BENCH ogr2ogr PG_USE_COPY=YES: {theirs:.2} s = {:.0} rows/s, peak RSS {their_rss:.0} MiB",
        n as f64 / theirs,
    );
    for (chunk_size, ours, rss) in runs {
        eprintln!(
            "BENCH ratio ingest_vector (chunk_size {chunk_size}) / ogr2ogr rows/s = {:.2}; job's RSS growth {rss:.0} MiB",
            theirs / ours
        );
    }
    app.cleanup().await;
}
