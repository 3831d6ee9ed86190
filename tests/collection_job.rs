//! `process_raster_collection` end to end in local mode: GeoTIFFs generated here with GDAL (two
//! CRSs among them) and corrupt files go into Azurite, the job is submitted through the real
//! route, the MosaicJSON is read back from the output container and checked against quadkeys
//! computed here from the items' footprints (GDAL's own Web Mercator transform), and the
//! collection and its items are read from pgSTAC.
//!
//! Needs PGSTAC_SQL and Azurite (scripts/test.sh provides them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use coremachine::jobs::list_container_contents::{self, BlobSource};
use coremachine::jobs::process_raster::{self, RasterDeps, StacDatabase};
use coremachine::jobs::process_raster_collection;
use coremachine::storage::{BlobClient, transfer};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use serde_json::{Value, json};

use crate::blob_job::{client, container_name};
use crate::common::files::Scratch;
use crate::common::{Opts, TestApp, fresh_db_with_pgstac};
use crate::raster_job::pgstac_search;
use crate::raster_job::synthetic::{self, Spec};

/// GDAL work on a shared machine under load is slow: a generous wait, not a timing assertion.
const WAIT: Duration = Duration::from_secs(600);

/// The grid the rasters tile: 5 x 4 cells of 0.1 degree from (15.0, 47.0).
const COLS: usize = 5;
const ROWS: usize = 4;
const CELL: f64 = 0.1;
const ORIGIN: (f64, f64) = (15.0, 47.0);

/// A test app on a database with pgSTAC whose raster job types read and write through `blobs`.
async fn collection_app(blobs: BlobClient) -> TestApp {
    let (name, url) = fresh_db_with_pgstac().await;
    let mut o = Opts::new(&url);
    let pool = coremachine::store::connect_pool(&url, 4).expect("pgSTAC pool");
    let deps = RasterDeps {
        blobs: BlobSource::fixed(blobs.clone()),
        stac: StacDatabase::fixed(pool),
        work_dir: None,
    };
    list_container_contents::register(&mut o.registry, BlobSource::fixed(blobs));
    process_raster::register(&mut o.registry, deps.clone());
    process_raster_collection::register(&mut o.registry, deps);
    TestApp::start_with(name, url, o).await
}

fn lonlat() -> SpatialRef {
    let mut s = SpatialRef::from_epsg(4326).unwrap();
    s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    s
}

/// The GeoTIFF of grid cell (col, row): 256 x 256 pixels in EPSG:4326, or (every fourth cell)
/// in UTM 33N over the same area, so the collection mixes two CRSs reprojected to one target.
fn cell_raster(dir: &Scratch, col: usize, row: usize) -> std::path::PathBuf {
    let (lon, lat) = (
        ORIGIN.0 + col as f64 * CELL,
        ORIGIN.1 + (row + 1) as f64 * CELL,
    );
    let path = dir.path(&format!("cell-{col}-{row}.tif"));
    if (col + row * COLS) % 4 == 3 {
        let utm = SpatialRef::from_epsg(32633).unwrap();
        let t = CoordTransform::new(&lonlat(), &utm).unwrap();
        let (mut x, mut y) = ([lon], [lat]);
        t.transform_coords(&mut x, &mut y, &mut []).unwrap();
        // 7.7 km across (about 0.1 degree at 47 N), 30 m pixels.
        let spec = Spec::new(
            256,
            256,
            1,
            Some("EPSG:32633"),
            [x[0], 30.0, 0.0, y[0], 0.0, -30.0],
        );
        synthetic::write(&path, &spec, |x, y, _| (100 + x + y) as i16)
    } else {
        let px = CELL / 256.0;
        let spec = Spec::new(
            256,
            256,
            1,
            Some("EPSG:4326"),
            [lon, px, 0.0, lat, 0.0, -px],
        );
        synthetic::write(&path, &spec, |x, y, _| (100 + x + y) as i16)
    }
}

async fn upload(c: &BlobClient, container: &str, blob: &str, path: &Path) {
    transfer::upload_file(c, container, blob, path, "image/tiff")
        .await
        .unwrap_or_else(|e| panic!("upload {blob}: {e}"));
}

/// A TIFF cut in half and a text file, both named .tif.
async fn upload_corrupt(c: &BlobClient, container: &str, blobs: [&str; 2], good: &Path) {
    let bytes = std::fs::read(good).unwrap();
    c.put_blob(
        container,
        blobs[0],
        bytes[..bytes.len() / 2].to_vec(),
        "image/tiff",
    )
    .await
    .unwrap();
    c.put_blob(
        container,
        blobs[1],
        b"not a raster at all".to_vec(),
        "image/tiff",
    )
    .await
    .unwrap();
}

async fn job_row(app: &TestApp, id: &str) -> (String, Value, Option<String>) {
    let r = app
        .db()
        .await
        .query_one(
            "SELECT status::text, result_data, error_details FROM app.jobs WHERE job_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (
        r.get(0),
        r.get::<_, Option<Value>>(1).unwrap_or(Value::Null),
        r.get(2),
    )
}

async fn run(app: &TestApp, params: Value) -> (String, Value, Option<String>, String) {
    let id = app
        .submit(process_raster_collection::JOB_TYPE, params)
        .await;
    app.wait_terminal(&id, WAIT).await;
    let (s, r, e) = job_row(app, &id).await;
    (s, r, e, id)
}

/// The collection's items as pgSTAC's search returns them: id -> item.
async fn items(app: &TestApp, collection: &str) -> BTreeMap<String, Value> {
    pgstac_search(app, json!({"collections": [collection], "limit": 1000}))
        .await
        .into_iter()
        .map(|f| (f["id"].as_str().unwrap().to_string(), f))
        .collect()
}

async fn stac_collection(app: &TestApp, id: &str) -> Option<Value> {
    app.db()
        .await
        .query_opt(
            "SELECT content FROM pgstac.collections WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

async fn download_json(c: &BlobClient, container: &str, blob: &str, dir: &Scratch) -> Value {
    let local = dir.path(&format!("{}.json", uuid::Uuid::new_v4().simple()));
    transfer::download_to_file(c, container, blob, &local)
        .await
        .unwrap_or_else(|e| panic!("{container}/{blob} exists: {e}"));
    serde_json::from_slice(&std::fs::read(&local).unwrap()).unwrap()
}

/// The quadkeys at zoom `z` a lon/lat footprint overlaps with a positive area, computed from its
/// corners in Web Mercator metres (GDAL's EPSG:3857), independently of the job's own tile math.
fn expected_quadkeys(bbox: [f64; 4], z: u8) -> BTreeSet<String> {
    let merc = SpatialRef::from_epsg(3857).unwrap();
    let t = CoordTransform::new(&lonlat(), &merc).unwrap();
    let (mut x, mut y) = ([bbox[0], bbox[2]], [bbox[1], bbox[3]]);
    t.transform_coords(&mut x, &mut y, &mut []).unwrap();
    const HALF: f64 = 20_037_508.342_789_244;
    let n = (1u64 << z) as f64;
    let size = 2.0 * HALF / n;
    let col = |m: f64| (m + HALF) / size;
    let row = |m: f64| (HALF - m) / size;
    let (x0, x1) = (col(x[0]).floor() as u64, col(x[1]).ceil() as u64 - 1);
    let (y0, y1) = (row(y[1]).floor() as u64, row(y[0]).ceil() as u64 - 1);
    let mut out = BTreeSet::new();
    for tx in x0..=x1 {
        for ty in y0..=y1 {
            let mut q = String::new();
            for i in (0..z).rev() {
                let d = ((tx >> i) & 1) + 2 * ((ty >> i) & 1);
                q.push(char::from(b'0' + d as u8));
            }
            out.insert(q);
        }
    }
    out
}

/// Checks that the MosaicJSON's quadkeys are exactly those the items' footprints overlap, each
/// listing exactly the COGs of the items that overlap it.
fn assert_mosaic_covers(mosaic: &Value, items: &BTreeMap<String, Value>) {
    assert_eq!(mosaic["mosaicjson"], "0.0.3");
    let (min, max, qz) = (
        mosaic["minzoom"].as_u64().unwrap(),
        mosaic["maxzoom"].as_u64().unwrap(),
        mosaic["quadkey_zoom"].as_u64().unwrap() as u8,
    );
    assert!(min <= qz as u64 && qz as u64 <= max, "{mosaic}");
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in items.values() {
        let b: Vec<f64> = item["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let href = item["assets"]["analysis"]["href"].as_str().unwrap();
        for q in expected_quadkeys([b[0], b[1], b[2], b[3]], qz) {
            expected.entry(q).or_default().insert(href.to_string());
        }
    }
    let actual: BTreeMap<String, BTreeSet<String>> = mosaic["tiles"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "quadkeys at zoom {qz}"
    );
    assert_eq!(actual, expected, "COGs per quadkey");
}

/// A finished process_raster_collection job over `good` small rasters and the `missing` blobs
/// (listed but never uploaded), within the failure budget: the app and the job id.
pub(crate) async fn finished_collection(good: usize, missing: &[&str]) -> (TestApp, String) {
    let c = client();
    let dir = Scratch::new("collection");
    let (input, output) = (container_name("ui-in"), container_name("ui-out"));
    c.create_container(&input).await.unwrap();
    let mut names = Vec::new();
    for i in 0..good {
        let (col, row) = (i % 10, i / 10);
        let path = dir.path(&format!("small-{i}.tif"));
        let px = CELL / 16.0;
        let (lon, lat) = (
            ORIGIN.0 + col as f64 * CELL,
            ORIGIN.1 + (row + 1) as f64 * CELL,
        );
        let spec = Spec::new(16, 16, 1, Some("EPSG:4326"), [lon, px, 0.0, lat, 0.0, -px]);
        synthetic::write(&path, &spec, |x, y, _| (x + y) as u8);
        let blob = format!("grid/cell-{i:03}.tif");
        upload(&c, &input, &blob, &path).await;
        names.push(blob);
    }
    names.extend(missing.iter().map(|m| m.to_string()));
    let app = collection_app(c).await;
    let (status, _, err, id) = run(
        &app,
        json!({"collection_id": "ui-grid", "container_name": input, "blob_list": names,
               "output_container": output, "max_failures": missing.len()}),
    )
    .await;
    assert_eq!(
        status,
        "completed_with_errors",
        "{err:?} {}",
        app.dump(&id).await
    );
    (app, id)
}

#[tokio::test]
async fn twenty_rasters_two_corrupt_make_one_collection_of_eighteen_with_a_mosaic_covering_them() {
    let c = client();
    let dir = Scratch::new("collection");
    let (input, output) = (container_name("coll-in"), container_name("coll-out"));
    c.create_container(&input).await.unwrap();
    let mut good = Vec::new();
    for row in 0..ROWS {
        for col in 0..COLS {
            good.push((
                format!("tiles/r{row}c{col}.tif"),
                cell_raster(&dir, col, row),
            ));
        }
    }
    // Two of the twenty cells are corrupt; a text file and a blob outside the prefix are ignored.
    let bad = ["tiles/r1c2.tif", "tiles/r3c0.tif"];
    for (blob, path) in &good {
        if !bad.contains(&blob.as_str()) {
            upload(&c, &input, blob, path).await;
        }
    }
    upload_corrupt(&c, &input, bad, &good[0].1).await;
    c.put_blob(&input, "tiles/readme.txt", b"x".to_vec(), "text/plain")
        .await
        .unwrap();
    upload(&c, &input, "other/r0c0.tif", &good[0].1).await;

    let app = collection_app(c.clone()).await;
    let params = json!({"collection_id": "grid-dem", "container_name": input, "prefix": "tiles/",
                        "suffix": ".tif", "output_container": output, "max_failures": 2});
    let (status, r, err, id) = run(&app, params.clone()).await;
    assert_eq!(
        status,
        "completed_with_errors",
        "{err:?} {}",
        app.dump(&id).await
    );
    assert_eq!(
        r["counts"],
        json!({"inputs": 20, "valid": 18, "cogs_written": 18, "items": 18, "failed": 2}),
        "{r}"
    );
    let outcomes = r["inputs"].as_array().unwrap();
    assert_eq!(outcomes.len(), 20);
    for o in outcomes {
        let blob = o["blob_name"].as_str().unwrap();
        if bad.contains(&blob) {
            assert_eq!(o["outcome"], "failed", "{o}");
            assert_eq!(o["stage_name"], "validate", "{o}");
            assert!(o["error"].as_str().unwrap().contains(blob), "{o}");
        } else {
            assert_eq!(o["outcome"], "ok", "{o}");
            assert_eq!(
                o["item_id"],
                process_raster::item_id_from_blob(blob).as_str()
            );
        }
    }

    let items = items(&app, "grid-dem").await;
    assert_eq!(items.len(), 18, "{:?}", items.keys());
    assert!(!items.contains_key("tiles-r1c2") && !items.contains_key("tiles-r3c0"));
    for item in items.values() {
        assert_eq!(
            item["properties"]["proj:code"], "EPSG:4326",
            "one target CRS"
        );
    }
    let coll = stac_collection(&app, "grid-dem").await.expect("collection");
    let bbox = &coll["extent"]["spatial"]["bbox"][0];
    assert!(
        (bbox[0].as_f64().unwrap() - ORIGIN.0).abs() < 0.01
            && (bbox[3].as_f64().unwrap() - (ORIGIN.1 + ROWS as f64 * CELL)).abs() < 0.05,
        "{bbox}"
    );
    assert!(
        coll["extent"]["temporal"]["interval"][0][0].is_string(),
        "{coll}"
    );
    assert_eq!(coll["summaries"]["data_type"], json!(["int16"]));
    // Band counts as the items have them (a warp without nodata adds an alpha band).
    let counts: BTreeSet<usize> = items
        .values()
        .map(|i| {
            i["assets"]["analysis"]["raster:bands"]
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(coll["summaries"]["band_count"], json!(counts));
    assert!(counts.contains(&1), "{counts:?}");
    let mosaic_href = coll["assets"]["mosaicjson"]["href"].as_str().unwrap();
    assert!(
        mosaic_href.ends_with("/grid-dem.mosaic.json"),
        "{mosaic_href}"
    );
    assert_eq!(r["mosaic"]["href"], mosaic_href);

    let mosaic = download_json(&c, &output, "grid-dem.mosaic.json", &dir).await;
    assert_mosaic_covers(&mosaic, &items);
    // The zoom rule (docs/job-types.md): maxzoom is the finest item's native zoom, from its
    // pixel width in Web Mercator metres (as the item's bbox and proj:shape give it).
    let finest = items
        .values()
        .map(|i| {
            let w = i["bbox"][2].as_f64().unwrap() - i["bbox"][0].as_f64().unwrap();
            let px = i["properties"]["proj:shape"][1].as_f64().unwrap();
            (156_543.033_928 / (w * 111_319.490_793 / px))
                .log2()
                .floor() as u64
        })
        .max()
        .unwrap();
    assert_eq!(mosaic["maxzoom"], finest, "{mosaic}");
    assert!(mosaic["tiles"].as_object().unwrap().len() > 4, "{mosaic}");

    // The web page's paged outcomes: failures first, a page at a time, a filter.
    let base = format!("/api/ui/data/jobs/{id}/inputs");
    let (code, page) = app.get(&format!("{base}?limit=5")).await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(
        (page["total"].as_i64(), page["failed"].as_i64()),
        (Some(20), Some(2))
    );
    assert_eq!(page["count"], 5);
    assert_eq!(page["next_offset"], 5);
    let first: Vec<&str> = page["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["failed", "failed", "ok", "ok", "ok"]);
    let (_, last) = app.get(&format!("{base}?limit=5&offset=15")).await;
    assert_eq!(
        (last["count"].as_i64(), last["next_offset"].is_null()),
        (Some(5), true)
    );
    let (_, failed) = app.get(&format!("{base}?outcome=failed")).await;
    let blobs: BTreeSet<&str> = failed["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["blob_name"].as_str().unwrap())
        .collect();
    assert_eq!(blobs, bad.into_iter().collect());
    let (code, e) = app.get(&format!("{base}?outcome=maybe")).await;
    assert_eq!(code, 400, "{e}");
    assert!(e.to_string().contains("outcome"), "{e}");

    // The same submission again: the same job, nothing re-run.
    let (code, body) = app
        .post(
            &format!("/api/jobs/submit/{}", process_raster_collection::JOB_TYPE),
            &params,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["job_id"], id.as_str());
    assert_eq!(body["idempotent"], true);
}

#[tokio::test]
async fn max_failures_zero_fails_at_the_first_bad_blob_and_a_resubmit_after_the_fix_completes() {
    let c = client();
    let dir = Scratch::new("collection");
    let (input, output) = (container_name("ff-in"), container_name("ff-out"));
    c.create_container(&input).await.unwrap();
    let cells: Vec<_> = (0..4).map(|i| cell_raster(&dir, i, 0)).collect();
    let names = ["a/one.tif", "a/two.tif", "a/three.tif", "a/four.tif"];
    let bad = ["a/two.tif", "a/four.tif"];
    upload(&c, &input, names[0], &cells[0]).await;
    upload(&c, &input, names[2], &cells[2]).await;
    upload_corrupt(&c, &input, bad, &cells[0]).await;
    let app = collection_app(c.clone()).await;
    let (status, r, err, id) = run(
        &app,
        json!({"collection_id": "ff", "container_name": input, "blob_list": names,
               "output_container": output}),
    )
    .await;
    assert_eq!(status, "failed", "{r}");
    let err = err.unwrap_or_default();
    assert!(
        bad.iter().any(|b| err.contains(&format!("{input}/{b}"))),
        "names a bad blob: {err}"
    );
    assert!(err.contains("max_failures = 0"), "{err}");
    assert!(stac_collection(&app, "ff").await.is_none(), "no collection");
    app.wait_quiet(WAIT).await;

    // Fix the bad blobs, resubmit the failed job: the full collection.
    upload(&c, &input, bad[0], &cells[1]).await;
    upload(&c, &input, bad[1], &cells[3]).await;
    let (code, body) = app
        .post(&format!("/api/jobs/{id}/resubmit"), &json!({}))
        .await;
    assert_eq!(code, 202, "{body}");
    app.wait_terminal(&id, WAIT).await;
    let (status, r, err) = job_row(&app, &id).await;
    assert_eq!(status, "completed", "{err:?} {}", app.dump(&id).await);
    assert_eq!(r["counts"]["items"], 4, "{r}");
    assert_eq!(r["counts"]["failed"], 0, "{r}");
    let items = items(&app, "ff").await;
    assert_eq!(items.len(), 4);
    let mosaic = download_json(&c, &output, "ff.mosaic.json", &dir).await;
    assert_mosaic_covers(&mosaic, &items);
}

#[tokio::test]
async fn one_input_makes_a_collection_of_one_and_an_empty_prefix_fails_clearly() {
    let c = client();
    let dir = Scratch::new("collection");
    let (input, output) = (container_name("one-in"), container_name("one-out"));
    c.create_container(&input).await.unwrap();
    upload(&c, &input, "solo/only.tif", &cell_raster(&dir, 3, 0)).await;
    let app = collection_app(c.clone()).await;

    let (status, r, err, id) = run(
        &app,
        json!({"collection_id": "solo", "container_name": input, "prefix": "solo/",
               "output_container": output, "output_folder": "mosaics", "output_tier": "all"}),
    )
    .await;
    assert_eq!(status, "completed", "{err:?} {}", app.dump(&id).await);
    assert_eq!(
        r["counts"],
        json!({"inputs": 1, "valid": 1, "cogs_written": 3, "items": 1, "failed": 0})
    );
    assert_eq!(
        r["inputs"],
        json!([{"blob_name": "solo/only.tif", "outcome": "ok", "item_id": "solo-only"}])
    );
    let items = items(&app, "solo").await;
    let item = &items["solo-only"];
    for tier in ["visualization", "analysis", "archive"] {
        assert!(item["assets"][tier]["href"].is_string(), "{item}");
    }
    let mosaic = download_json(&c, &output, "mosaics/solo.mosaic.json", &dir).await;
    assert_mosaic_covers(&mosaic, &items);

    // Nothing under the prefix: the job fails at once saying so, and nothing is left running.
    let (status, _, err, id) = run(
        &app,
        json!({"collection_id": "empty", "container_name": input, "prefix": "nothing-here/",
               "output_container": output}),
    )
    .await;
    assert_eq!(status, "failed");
    let err = err.unwrap_or_default();
    assert!(
        err.contains("no raster to process") && err.contains("nothing-here/"),
        "{err}"
    );
    let live = app
        .count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status IN ('queued', 'processing')",
            &id,
        )
        .await;
    assert_eq!(live, 0);
    assert!(stac_collection(&app, "empty").await.is_none());
}

#[tokio::test]
async fn bad_parameters_are_a_400_naming_the_field() {
    let app = TestApp::start_opts(|o| {
        let deps = RasterDeps::from_env();
        list_container_contents::register(&mut o.registry, BlobSource::from_env());
        process_raster::register(&mut o.registry, deps.clone());
        process_raster_collection::register(&mut o.registry, deps);
    })
    .await;
    let path = format!("/api/jobs/submit/{}", process_raster_collection::JOB_TYPE);
    for (body, field) in [
        (json!({"container_name": "bronze"}), "collection_id"),
        (
            json!({"collection_id": "c", "blob_list": ["a.tif"], "prefix": "x/"}),
            "prefix",
        ),
        (
            json!({"collection_id": "c", "blob_list": ["x/A.tif", "x-a.tif"]}),
            "blob_list[1]",
        ),
        (
            json!({"collection_id": "c", "max_failures": -1}),
            "max_failures",
        ),
        (json!({"collection_id": "c", "blob_list": []}), "blob_list"),
    ] {
        let (code, b) = app.post(&path, &body).await;
        assert_eq!(code, 400, "{body}: {b}");
        assert!(b.to_string().contains(field), "{body}: {b}");
    }
}
