//! `POST /api/platform/submit` (the earlier system's front door) end to end in local mode: real
//! files in Azurite (terra's DEM, Natural Earth's zipped Shapefile, nc.gpkg), the job picked from
//! the extension, run to its end, and its outputs found where the naming rule says; the request
//! recorded with its job in one transaction (concurrent repeats give one request and one job);
//! refusals (UPDATE/DELETE, unknown types, limits, hostile names) name the field and record
//! nothing; the status list is paged.
//!
//! Needs (scripts/test.sh provides them): PGSTAC_SQL, COREMACHINE_TERRA_DIR,
//! COREMACHINE_VECTOR_DIR, Azurite.

use std::path::{Path, PathBuf};
use std::time::Duration;

use coremachine::jobs::ingest_vector::{self, PostgisDatabase, VectorDeps};
use coremachine::jobs::list_container_contents::{self, BlobSource};
use coremachine::jobs::process_raster::{self, RasterDeps, StacDatabase};
use coremachine::jobs::process_raster_collection;
use coremachine::storage::{BlobClient, transfer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api_cli::cli;
use crate::blob_job::{client, container_name};
use crate::common::files::Scratch;
use crate::common::{Opts, TestApp, fresh_db_with_pgstac};
use crate::raster_job::terra;
use crate::vector_job::{data as vector, zip};

const WAIT: Duration = Duration::from_secs(300);

/// A test app on a database with pgSTAC (the PostGIS target too) with the platform's job types
/// reading and writing through `blobs`; `emulator: false` leaves the jobs queued.
pub(crate) async fn platform_app(blobs: BlobClient, emulator: bool) -> TestApp {
    let (name, url) = fresh_db_with_pgstac().await;
    let mut o = Opts::new(&url);
    o.emulator = emulator;
    let pool = coremachine::store::connect_pool(&url, 6).expect("PostGIS pool");
    let raster = RasterDeps {
        blobs: BlobSource::fixed(blobs.clone()),
        stac: StacDatabase::fixed(pool.clone()),
        work_dir: None,
    };
    list_container_contents::register(&mut o.registry, BlobSource::fixed(blobs.clone()));
    process_raster::register(&mut o.registry, raster.clone());
    process_raster_collection::register(&mut o.registry, raster);
    ingest_vector::register(
        &mut o.registry,
        VectorDeps {
            blobs: BlobSource::fixed(blobs),
            postgis: PostgisDatabase::fixed(pool.clone()),
            stac: StacDatabase::fixed(pool),
            work_dir: None,
        },
    );
    TestApp::start_with(name, url, o).await
}

pub(crate) async fn upload(c: &BlobClient, container: &str, blob: &str, path: &Path) {
    transfer::upload_file(c, container, blob, path, "application/octet-stream")
        .await
        .unwrap_or_else(|e| panic!("upload {blob}: {e}"));
}

pub(crate) async fn input_container(c: &BlobClient, tag: &str) -> String {
    let name = container_name(tag);
    c.create_container(&name).await.expect("create container");
    name
}

/// The earlier recipe, computed here independently.
fn recipe(d: &str, r: &str, v: &str) -> String {
    hex::encode(Sha256::digest(format!("{d}|{r}|{v}").as_bytes()))[..32].to_string()
}

pub(crate) fn request(d: &str, r: &str, v: &str, container: &str, files: Value) -> Value {
    json!({
        "dataset_id": d, "resource_id": r, "version_id": v, "operation": "CREATE",
        "container_name": container, "file_name": files, "service_name": "test service",
        "access_level": "OUO", "description": "a test request", "tags": ["test"], "client_id": "ddh",
    })
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.db().await.query_one(sql, &[]).await.unwrap().get(0)
}

/// Waits for the request's job to end; returns the request's status body.
async fn finished(app: &TestApp, request_id: &str) -> Value {
    let (s, b) = app.get(&format!("/api/platform/status/{request_id}")).await;
    assert_eq!(s, 200, "{b}");
    let job_id = b["job_id"].as_str().expect("job_id").to_string();
    app.wait_terminal(&job_id, WAIT).await;
    let (s, b) = app.get(&format!("/api/platform/status/{request_id}")).await;
    assert_eq!(s, 200, "{b}");
    b
}

async fn item_count(app: &TestApp, collection: &str, item: &str) -> i64 {
    app.db()
        .await
        .query_one(
            "SELECT count(*) FROM pgstac.items WHERE collection = $1 AND id = $2",
            &[&collection, &item],
        )
        .await
        .unwrap()
        .get(0)
}

/// terra's DEM uploaded as `dem/elev.tif`, an app, and the request of `Aerial-Imagery` /
/// `Site Alpha` / `v1.0` for it writing into `output`; returns (app, body).
pub(crate) async fn dem_request(c: &BlobClient, tag: &str, output: &str) -> (TestApp, Value) {
    let input = input_container(c, tag).await;
    upload(c, &input, "dem/elev.tif", &terra("elev.tif")).await;
    let app = platform_app(c.clone(), true).await;
    let mut body = request(
        "Aerial-Imagery",
        "Site Alpha",
        "v1.0",
        &input,
        json!("dem/elev.tif"),
    );
    body["processing_options"] = json!({"output_container": output, "processing_mode": "function"});
    (app, body)
}

#[tokio::test]
async fn one_raster_becomes_process_raster_with_derived_names_and_a_repeat_answers_200() {
    let c = client();
    let output = container_name("plat-r1-out");
    let (app, mut body) = dem_request(&c, "plat-r1", &output).await;

    let (s, b) = app.post("/api/platform/submit", &body).await;
    assert_eq!(s, 202, "{b}");
    let request_id = recipe("Aerial-Imagery", "Site Alpha", "v1.0");
    assert_eq!(b["request_id"], request_id.as_str());
    assert_eq!(b["job_type"], "process_raster");
    assert_eq!(b["data_type"], "raster");
    assert_eq!(b["success"], true);
    assert_eq!(
        b["monitor_url"],
        format!("/api/platform/status/{request_id}")
    );
    assert_eq!(b["ignored_processing_options"], json!(["processing_mode"]));
    assert_eq!(
        b["outputs"],
        json!({"table_name": "aerial_imagery_site_alpha_v10", "output_folder": "aerial-imagery/site-alpha/v1.0",
               "collection_id": "aerial-imagery", "item_id": "aerial-imagery-site-alpha-v10"})
    );
    let job_id = b["job_id"].as_str().unwrap().to_string();

    let st = finished(&app, &request_id).await;
    assert_eq!(st["job_status"], "completed", "{st}");
    assert_eq!(st["job_id"], job_id.as_str());
    assert_eq!(st["dataset_id"], "Aerial-Imagery");
    assert_eq!(st["data_type"], "raster");
    assert_eq!(st["job_stage"], 3);
    assert!(st["job_result"].is_object(), "{st}");
    assert_eq!(
        st["urls"]["job_status"],
        format!("/api/jobs/status/{job_id}")
    );
    assert_eq!(st["urls"]["job_page"], format!("/api/ui/jobs/{job_id}"));
    // The COG is in the derived folder, the item in the derived collection.
    c.get_properties(
        &output,
        "aerial-imagery/site-alpha/v1.0/elev_cog_analysis.tif",
    )
    .await
    .expect("the COG is in the folder derived from dataset/resource/version");
    assert_eq!(
        item_count(&app, "aerial-imagery", "aerial-imagery-site-alpha-v10").await,
        1
    );

    // The same dataset/resource/version again (another file even): the existing request, 200.
    body["file_name"] = json!("dem/other.tif");
    let (s, again) = app.post("/api/platform/submit", &body).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["idempotent"], true);
    assert_eq!(again["request_id"], request_id.as_str());
    assert_eq!(again["job_id"], job_id.as_str());
    assert_eq!(again["job_status"], "completed");
    assert_eq!(count(&app, "SELECT count(*) FROM app.jobs").await, 1);
    assert_eq!(
        count(&app, "SELECT count(*) FROM app.platform_requests").await,
        1
    );
    app.cleanup().await;
}

#[tokio::test]
async fn three_rasters_become_one_process_raster_collection() {
    let c = client();
    let input = input_container(&c, "plat-r3").await;
    let output = container_name("plat-r3-out");
    let dir = Scratch::new("platform");
    // Three tiles of terra's DEM, cut with gdal_translate.
    let mut files = Vec::new();
    for (i, (x, w)) in [(0, 32), (32, 32), (64, 31)].into_iter().enumerate() {
        let out = dir.path(&format!("tile{i}.tif"));
        let o = std::process::Command::new("gdal_translate")
            .args(["-q", "-srcwin", &x.to_string(), "0", &w.to_string(), "90"])
            .arg(terra("elev.tif"))
            .arg(&out)
            .output()
            .expect("gdal_translate runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let blob = format!("tiles/tile{i}.tif");
        upload(&c, &input, &blob, &out).await;
        files.push(blob);
    }
    let app = platform_app(c.clone(), true).await;
    let mut body = request("tiles", "dem", "v1", &input, json!(files));
    body["processing_options"] = json!({"output_container": output, "max_failures": 0});
    let (s, b) = app.post("/api/platform/submit", &body).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["job_type"], "process_raster_collection");
    let st = finished(&app, b["request_id"].as_str().unwrap()).await;
    assert_eq!(st["job_status"], "completed", "{st}");
    for i in 0..3 {
        c.get_properties(&output, &format!("tiles/dem/v1/tile{i}_cog_analysis.tif"))
            .await
            .unwrap_or_else(|e| panic!("COG {i} in the derived folder: {e}"));
    }
    c.get_properties(&output, "tiles/dem/v1/tiles.mosaic.json")
        .await
        .expect("the MosaicJSON in the derived folder, named after the dataset's collection");
    let items = count(
        &app,
        "SELECT count(*) FROM pgstac.items WHERE collection = 'tiles'",
    )
    .await;
    assert_eq!(items, 3, "one item per raster in the dataset's collection");
    app.cleanup().await;
}

/// The table a vector request loaded: rows, and every geometry valid in EPSG:4326.
async fn table_rows(app: &TestApp, table: &str) -> (i64, i64) {
    let r = app
        .db()
        .await
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE ST_IsValid(geom) AND ST_SRID(geom) = 4326) FROM geo.{table}"
            ),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("geo.{table} is readable: {e}"));
    (r.get(0), r.get(1))
}

#[tokio::test]
async fn a_zipped_shapefile_and_a_geopackage_become_ingest_vector_tables() {
    let c = client();
    let input = input_container(&c, "plat-v").await;
    let dir = Scratch::new("platform");
    let zipped = dir.path("countries.zip");
    let parts: Vec<PathBuf> = ["shp", "shx", "dbf", "prj", "cpg"]
        .iter()
        .map(|e| vector(&format!("naturalearth_lowres/naturalearth_lowres.{e}")))
        .collect();
    zip(&zipped, &parts);
    upload(&c, &input, "ne/countries.zip", &zipped).await;
    upload(&c, &input, "nc/nc.gpkg", &vector("nc/nc.gpkg")).await;
    let app = platform_app(c.clone(), true).await;

    // Both at once, into a schema that does not exist yet: neither may lose the race to create
    // it (CREATE SCHEMA IF NOT EXISTS failed one of them with 23505 before).
    let zip_body = request(
        "World",
        "Countries",
        "2024-01",
        &input,
        json!("ne/countries.zip"),
    );
    let mut gpkg_body = request(
        "north-carolina",
        "counties",
        "v2",
        &input,
        json!(["nc/nc.gpkg"]),
    );
    gpkg_body["processing_options"] = json!({"chunk_size": 30, "overwrite": true});
    let ((s1, zip), (s2, gpkg)) = tokio::join!(
        app.post("/api/platform/submit", &zip_body),
        app.post("/api/platform/submit", &gpkg_body)
    );
    assert_eq!((s1, s2), (202, 202), "{zip} {gpkg}");
    assert_eq!(zip["job_type"], "ingest_vector");
    assert_eq!(zip["data_type"], "vector");
    assert_eq!(zip["outputs"]["table_name"], "world_countries_2024_01");
    assert_eq!(gpkg["outputs"]["table_name"], "north_carolina_counties_v2");

    let z = finished(&app, zip["request_id"].as_str().unwrap()).await;
    let g = finished(&app, gpkg["request_id"].as_str().unwrap()).await;
    assert_eq!(z["job_status"], "completed", "{z}");
    assert_eq!(g["job_status"], "completed", "{g}");
    assert_eq!(
        table_rows(&app, "world_countries_2024_01").await,
        (177, 177)
    );
    assert_eq!(
        table_rows(&app, "north_carolina_counties_v2").await,
        (100, 100)
    );
    // processing_options reached the job: 100 features in chunks of 30 are 4 load tasks.
    let chunks = app
        .count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND task_type = 'load_vector_chunk'",
            g["job_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(chunks, 4);
    assert_eq!(
        item_count(&app, "world", "world-countries-2024-01").await,
        1
    );
    assert_eq!(
        item_count(&app, "north-carolina", "north-carolina-counties-v2").await,
        1
    );
    app.cleanup().await;
}

#[tokio::test]
async fn unknown_types_and_update_or_delete_answer_501_naming_them_and_record_nothing() {
    let app = platform_app(client(), false).await;
    let (s, b) = app
        .post(
            "/api/platform/submit",
            &request("d", "r", "v", "bronze", json!("scan/points.las")),
        )
        .await;
    assert_eq!(s, 501, "{b}");
    assert_eq!(b["error"], "not_implemented");
    assert!(b["message"].as_str().unwrap().contains("\"las\""), "{b}");
    assert_eq!(b["details"][0]["field"], "file_name");
    assert_eq!(b["details"][0]["value"], "las");
    for op in ["UPDATE", "DELETE"] {
        let mut body = request("d", "r", "v", "bronze", json!("a.tif"));
        body["operation"] = json!(op);
        let (s, b) = app.post("/api/platform/submit", &body).await;
        assert_eq!(s, 501, "{b}");
        assert_eq!(b["details"][0]["field"], "operation");
        let msg = b["message"].as_str().unwrap();
        assert!(msg.contains(op) && msg.contains("only CREATE"), "{b}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM app.jobs").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM app.platform_requests").await,
        0
    );
    app.cleanup().await;
}

#[tokio::test]
async fn field_limits_and_hostile_names_are_400_naming_the_field_and_record_nothing() {
    let app = platform_app(client(), false).await;
    let ok = request("d", "r", "v", "bronze", json!("a.tif"));
    let cases: Vec<(&str, Value, &str)> = vec![
        ("dataset_id", json!("d".repeat(256)), "max_length"),
        ("resource_id", json!("r".repeat(256)), "max_length"),
        ("version_id", json!("v".repeat(51)), "max_length"),
        (
            "dataset_id",
            json!("x'; DROP TABLE app.jobs; --"),
            "characters",
        ),
        ("resource_id", json!("../../etc/passwd"), "characters"),
        ("version_id", json!("v1\u{7}"), "characters"),
        ("dataset_id", json!("données"), "characters"),
        ("dataset_id", json!(null), "required"),
        ("container_name", json!("Bad_Container"), "container_name"),
        ("operation", json!("MERGE"), "enum"),
        ("access_level", json!("secret"), "enum"),
        ("tags", json!("not-a-list"), "type"),
        ("file_name", json!([]), "min_items"),
        ("file_name", json!("../outside.tif"), "blob_name"),
        ("file_name", json!(7), "type"),
        ("file_name", json!("noextension"), "extension"),
        ("processing_options", json!("fast"), "type"),
        ("surprise", json!(1), "unknown_field"),
    ];
    for (field, value, rule) in cases {
        let mut body = ok.clone();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(field);
        } else {
            body[field] = value.clone();
        }
        let (s, b) = app.post("/api/platform/submit", &body).await;
        assert_eq!(s, 400, "{field}={value}: {b}");
        let d = &b["details"][0];
        assert_eq!(
            (d["field"].as_str(), d["rule"].as_str()),
            (Some(field), Some(rule)),
            "{field}={value}: {b}"
        );
    }
    // Options are checked by the job they reach, and named as options.
    let mut body = ok.clone();
    body["processing_options"] = json!({"output_tier": "bogus"});
    let (s, b) = app.post("/api/platform/submit", &body).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["details"][0]["field"], "processing_options.output_tier");
    body["processing_options"] = json!({"table_name": "mine"});
    let (s, b) = app.post("/api/platform/submit", &body).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["details"][0]["field"], "processing_options.table_name");
    // A vector request takes one file; one request holds one data type.
    let (s, b) = app
        .post(
            "/api/platform/submit",
            &request("d", "r", "v", "bronze", json!(["a.gpkg", "b.gpkg"])),
        )
        .await;
    assert_eq!(
        (s, b["details"][0]["field"].as_str()),
        (400, Some("file_name")),
        "{b}"
    );
    let (s, b) = app
        .post(
            "/api/platform/submit",
            &request("d", "r", "v", "bronze", json!(["a.tif", "b.gpkg"])),
        )
        .await;
    assert_eq!(
        (s, b["details"][0]["field"].as_str()),
        (400, Some("file_name[1]")),
        "{b}"
    );
    let (s, b) = app.get("/api/platform/status/not-a-request-id").await;
    assert_eq!(
        (s, b["details"][0]["field"].as_str()),
        (400, Some("path.request_id")),
        "{b}"
    );
    let (s, _) = app
        .get(&format!("/api/platform/status/{}", recipe("d", "r", "v")))
        .await;
    assert_eq!(s, 404);
    assert_eq!(count(&app, "SELECT count(*) FROM app.jobs").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM app.platform_requests").await,
        0
    );
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_repeats_record_one_request_with_one_job() {
    let app = platform_app(client(), false).await;
    // The same dataset/resource/version with eight different files at once: each would be its
    // own job, but only one request (and so only its job) may commit.
    let bodies: Vec<Value> = (0..8)
        .map(|i| request("race", "r", "v1", "bronze", json!(format!("f{i}.tif"))))
        .collect();
    let answers =
        futures::future::join_all(bodies.iter().map(|b| app.post("/api/platform/submit", b))).await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 202)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    let job_id = created[0]["job_id"].as_str().unwrap();
    for (s, b) in &answers {
        assert!(*s == 202 || *s == 200, "{b}");
        assert_eq!(b["job_id"], job_id, "every answer names the one job");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM app.jobs").await, 1);
    assert_eq!(
        count(&app, "SELECT count(*) FROM app.platform_requests").await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM app.job_events WHERE event_type = 'job_created'"
        )
        .await,
        1
    );
    // Ids that differ only in case and separators would write the same table and item: 409.
    let (s, b) = app
        .post(
            "/api/platform/submit",
            &request("RACE", "r", "v1", "bronze", json!("x.tif")),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["details"][0]["field"], "dataset_id");
    assert_eq!(count(&app, "SELECT count(*) FROM app.jobs").await, 1);
    app.cleanup().await;
}

#[tokio::test]
async fn the_status_list_is_paged_newest_first_and_filters_by_dataset() {
    let app = platform_app(client(), false).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let d = if i % 2 == 0 { "even" } else { "odd" };
        let (s, b) = app
            .post(
                "/api/platform/submit",
                &request(d, &format!("r{i}"), "v", "bronze", json!("a.tif")),
            )
            .await;
        assert_eq!(s, 202, "{b}");
        ids.push(b["request_id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/platform/status?limit=2&cursor={c}"),
            None => "/api/platform/status?limit=2".into(),
        };
        let (s, b) = app.get(&path).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["success"], true);
        assert_eq!(b["count"], b["requests"].as_array().unwrap().len());
        assert!(b["count"].as_u64().unwrap() <= 2);
        for r in b["requests"].as_array().unwrap() {
            assert_eq!(r["job_status"], "queued");
            assert_eq!(r["job_type"], "process_raster");
            seen.push(r["request_id"].as_str().unwrap().to_string());
        }
        pages += 1;
        match b["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first, "every request once, newest first");
    let (_, odd) = app.get("/api/platform/status?dataset_id=odd").await;
    assert_eq!(odd["count"], 2);
    let (s, b) = app.get("/api/platform/status?cursor=bogus").await;
    assert_eq!(
        (s, b["details"][0]["field"].as_str()),
        (400, Some("query.cursor")),
        "{b}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn platform_statements_prepare_against_the_migrated_schema() {
    let (name, url) = crate::common::fresh_db().await;
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // The platform routes' statements (now in store::sql).
    let ours = coremachine::store::sql::ALL
        .iter()
        .filter(|(n, _)| n.starts_with("platform_request"));
    for (stmt, sql) in ours {
        c.prepare(sql)
            .await
            .unwrap_or_else(|e| panic!("{stmt} does not prepare: {e}"));
    }
    drop(c);
    crate::common::drop_db(&name).await;
}

#[tokio::test]
async fn the_cli_submits_and_reads_platform_requests() {
    let t = platform_app(client(), false).await;
    let (code, out, err) = cli(
        &t,
        &[
            "platform",
            "submit",
            "dataset_id=cli-data",
            "resource_id=res",
            "version_id=1.0",
            "container_name=bronze",
            "file_name=[\"maps/a.tif\"]",
            "processing_options={\"output_tier\": \"all\"}",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let r: Value = serde_json::from_str(out.trim()).expect("the submit response as JSON");
    let request_id = recipe("cli-data", "res", "1.0");
    assert_eq!(
        r["request_id"],
        request_id.as_str(),
        "version_id stays the string 1.0"
    );
    assert_eq!(r["job_type"], "process_raster");
    let job_id = r["job_id"].as_str().unwrap();
    let stored = t
        .db()
        .await
        .query_one(
            "SELECT parameters FROM app.jobs WHERE job_id = $1",
            &[&job_id],
        )
        .await
        .unwrap()
        .get::<_, Value>(0);
    assert_eq!(
        stored["output_tier"], "all",
        "processing_options reached the job"
    );

    let (code, out, _) = cli(&t, &["platform", "status", &request_id]).await;
    assert_eq!(code, 0);
    let s: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (s["job_id"].as_str(), s["job_status"].as_str()),
        (Some(job_id), Some("queued"))
    );
    let (code, out, _) = cli(&t, &["platform", "status"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&request_id) && out.contains("cli-data/res/1.0") && out.contains("queued"),
        "{out}"
    );

    // The API's refusals: a bad field is a usage error naming it; UPDATE is 501 (exit 1).
    let (code, _, err) = cli(
        &t,
        &[
            "platform",
            "submit",
            "dataset_id=a/b",
            "resource_id=r",
            "version_id=v",
            "container_name=bronze",
            "file_name=x.tif",
        ],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("dataset_id"), "{err}");
    let (code, _, err) = cli(
        &t,
        &[
            "platform",
            "submit",
            "dataset_id=a",
            "resource_id=r",
            "version_id=v",
            "container_name=bronze",
            "file_name=x.tif",
            "operation=UPDATE",
        ],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("501") && err.contains("UPDATE"), "{err}");
    t.cleanup().await;
}

#[tokio::test]
async fn a_request_whose_job_failed_is_resubmitted_and_its_status_follows_the_new_attempt() {
    let c = client();
    let input = input_container(&c, "plat-re").await;
    let app = platform_app(c.clone(), true).await;
    let mut body = request("retry", "dem", "v1", &input, json!("dem/late.tif"));
    body["processing_options"] = json!({"output_container": container_name("plat-re-out")});
    let (s, b) = app.post("/api/platform/submit", &body).await;
    assert_eq!(s, 202, "{b}");
    let request_id = b["request_id"].as_str().unwrap().to_string();
    let job_id = b["job_id"].as_str().unwrap().to_string();
    let st = finished(&app, &request_id).await;
    assert_eq!(
        st["job_status"], "failed",
        "the blob is not there yet: {st}"
    );
    assert!(
        st["error_details"]
            .as_str()
            .unwrap()
            .contains("dem/late.tif"),
        "the error names the blob: {st}"
    );
    // The repeat does not start another job; the operator resubmits the request's job.
    let (s, again) = app.post("/api/platform/submit", &body).await;
    assert_eq!(
        (s, again["job_status"].as_str()),
        (200, Some("failed")),
        "{again}"
    );
    upload(&c, &input, "dem/late.tif", &terra("elev.tif")).await;
    let (s, r) = app
        .post(
            &format!("/api/jobs/{job_id}/resubmit?from=start"),
            &json!({}),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    let st = finished(&app, &request_id).await;
    assert_eq!(st["job_status"], "completed", "{st}");
    assert_eq!(st["job_id"], job_id.as_str());
    assert_eq!(count(&app, "SELECT count(*) FROM app.jobs").await, 1);
    app.cleanup().await;
}
