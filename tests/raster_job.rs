//! `process_raster` end to end in local mode: GeoTIFFs generated here with GDAL and Debian's
//! r-cran-terra example rasters go into Azurite, the job is submitted through the real route,
//! every COG is read back from the output container and checked by GDAL and by rio-cogeo (an
//! independent validator), and the STAC item is found in pgSTAC by a bbox search.
//!
//! Needs (scripts/test.sh provides them; for one test `source scripts/lib/geo.sh &&
//! ensure_geo_test_tools`): PGSTAC_SQL, COREMACHINE_RIO, COREMACHINE_TERRA_DIR, and Azurite.

pub(crate) mod synthetic;

use std::path::{Path, PathBuf};
use std::time::Duration;

use coremachine::jobs::list_container_contents::BlobSource;
use coremachine::jobs::process_raster::{self, RasterDeps, StacDatabase};
use coremachine::storage::connection_string::DEV_ACCOUNT_KEY;
use coremachine::storage::{BlobClient, transfer};
use gdal::{Dataset, Metadata};
use serde_json::{Value, json};

use crate::blob_job::{
    azurite, client, client_with, container_name, flaky_proxy, run_waiting, stage_tasks,
};
use crate::common::files::{Scratch, fetched};
use crate::common::{Opts, TestApp, fresh_db_with_pgstac};
use synthetic::Spec;

const COG_TYPE: &str = "image/tiff; application=geotiff; profile=cloud-optimized";

fn rio() -> PathBuf {
    std::env::var_os("COREMACHINE_RIO").map(Into::into).expect(
        "COREMACHINE_RIO names rio-cogeo's rio (./scripts/test.sh installs it; for one test: source scripts/lib/geo.sh && ensure_geo_test_tools)",
    )
}

pub(crate) fn terra(name: &str) -> PathBuf {
    fetched(
        "COREMACHINE_TERRA_DIR",
        "r-cran-terra's ex/ rasters",
        "ensure_geo_test_tools",
        name,
    )
}

/// A test app on a database with pgSTAC whose process_raster reads and writes through `blobs`.
async fn raster_app(blobs: BlobClient) -> TestApp {
    let (name, url) = fresh_db_with_pgstac().await;
    let mut o = Opts::new(&url);
    let pool = coremachine::store::connect_pool(&url, 4).expect("pgSTAC pool");
    process_raster::register(
        &mut o.registry,
        RasterDeps {
            blobs: BlobSource::fixed(blobs),
            stac: StacDatabase::fixed(pool),
            work_dir: None,
        },
    );
    TestApp::start_with(name, url, o).await
}

/// Containers for one test: (input, output).
async fn containers(c: &BlobClient, tag: &str) -> (String, String) {
    let (i, o) = (
        container_name(&format!("{tag}-in")),
        container_name(&format!("{tag}-out")),
    );
    c.create_container(&i)
        .await
        .expect("create input container");
    (i, o)
}

async fn upload(c: &BlobClient, container: &str, blob: &str, path: &Path) {
    transfer::upload_file(c, container, blob, path, "image/tiff")
        .await
        .unwrap_or_else(|e| panic!("upload {blob}: {e}"));
}

/// Submits process_raster and waits; returns (status, result, error, job id). GDAL work on a
/// shared machine under load is slow: a generous wait, which is not a timing assertion.
async fn process(app: &TestApp, params: Value) -> (String, Value, Option<String>, String) {
    run_waiting(app, "process_raster", params, Duration::from_secs(300)).await
}

/// What a COG in the output container looks like when read back.
struct CogSeen {
    bytes: u64,
    layout: Option<String>,
    epsg: Option<i32>,
    block: (usize, usize),
    bands: usize,
    nodata: Option<f64>,
    overviews: Vec<(usize, usize)>,
    size: (usize, usize),
    geotransform: [f64; 6],
    compression: Option<String>,
    has_palette: bool,
}

/// Downloads the COG, has rio-cogeo validate it, and reads it with GDAL.
async fn read_back(c: &BlobClient, container: &str, blob: &str, dir: &Scratch) -> CogSeen {
    let local = dir.path(&format!("{}.tif", uuid::Uuid::new_v4().simple()));
    let props = transfer::download_to_file(c, container, blob, &local)
        .await
        .unwrap_or_else(|e| panic!("the COG {container}/{blob} is in the output container: {e}"));
    assert_eq!(
        props.content_type.as_deref(),
        Some(COG_TYPE),
        "content type of {blob}"
    );
    let out = tokio::process::Command::new(rio())
        .args(["cogeo", "validate", "--strict"])
        .arg(&local)
        .output()
        .await
        .expect("rio runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("is a valid cloud optimized GeoTIFF"),
        "rio cogeo validate {blob}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ds = Dataset::open(&local).expect("GDAL opens the COG");
    let b = ds.rasterband(1).unwrap();
    let n = b.overview_count().unwrap().max(0) as usize;
    CogSeen {
        bytes: props.size,
        layout: ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE"),
        epsg: ds.spatial_ref().ok().and_then(|s| s.auth_code().ok()),
        block: b.block_size(),
        bands: ds.raster_count(),
        nodata: b.no_data_value(),
        overviews: (0..n).map(|i| b.overview(i).unwrap().size()).collect(),
        size: ds.raster_size(),
        geotransform: ds.geo_transform().unwrap(),
        compression: ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE"),
        has_palette: b.color_table().is_some(),
    }
}

/// The features pgstac.search returns for a bbox in a collection.
async fn search(app: &TestApp, collection: &str, bbox: [f64; 4]) -> Vec<Value> {
    pgstac_search(app, json!({"collections": [collection], "bbox": bbox})).await
}

/// The features pgstac.search returns for a search body.
pub(crate) async fn pgstac_search(app: &TestApp, q: Value) -> Vec<Value> {
    let db = app.db().await;
    // pgSTAC's search resolves its tables through the search_path, as its own roles have it.
    db.batch_execute("SET search_path TO pgstac, public")
        .await
        .unwrap();
    let fc: Value = db
        .query_one("SELECT pgstac.search($1::text::jsonb)", &[&q.to_string()])
        .await
        .expect("pgstac.search")
        .get(0);
    fc["features"].as_array().cloned().unwrap_or_default()
}

fn utm_rgb(path: &Path) -> PathBuf {
    // 15.6 km square in UTM 33N (EPSG:32633), south of Vienna.
    let spec = Spec::new(
        512,
        512,
        3,
        Some("EPSG:32633"),
        [580000.0, 30.0, 0.0, 5320000.0, 0.0, -30.0],
    );
    synthetic::write(path, &spec, synthetic::byte)
}

#[tokio::test]
async fn a_utm_rgb_geotiff_becomes_three_valid_cogs_and_one_stac_item_found_by_bbox() {
    let c = client();
    let dir = Scratch::new("raster");
    let (input, output) = containers(&c, "rgb").await;
    let blob = "scenes/Utm RGB.tif";
    upload(&c, &input, blob, &utm_rgb(&dir.path("rgb.tif"))).await;
    let app = raster_app(c.clone()).await;
    let (status, r, err, id) = process(
        &app,
        json!({"blob_name": blob, "container_name": input, "output_container": output,
               "output_tier": "all", "collection_id": "test-rgb", "jpeg_quality": 80}),
    )
    .await;
    assert_eq!(status, "completed", "{err:?} {}", app.dump(&id).await);
    let v = &r["validation"];
    assert_eq!(v["raster_type"], "rgb");
    assert_eq!(v["crs"]["code"], "EPSG:32633");
    assert_eq!(v["data_type"], "Byte");
    assert_eq!(v["tiled"], false, "GDAL's default GTiff is striped");
    // One create_cog task per tier.
    assert_eq!(stage_tasks(&app, &id, 2).await.len(), 3);
    let cogs = r["cogs"].as_array().unwrap();
    let tiers: Vec<&str> = cogs.iter().map(|c| c["tier"].as_str().unwrap()).collect();
    assert_eq!(tiers, ["visualization", "analysis", "archive"]);
    let mut seen = Vec::new();
    for cog in cogs {
        assert_eq!(
            cog["checks"],
            json!({"layout_cog": true, "tiled": true, "overviews_to_512": true, "crs_is_target": true})
        );
        assert_eq!(cog["output_container"], output.as_str());
        assert!(
            cog["output_blob"]
                .as_str()
                .unwrap()
                .starts_with("scenes/Utm RGB_cog_")
        );
        let s = read_back(&c, &output, cog["output_blob"].as_str().unwrap(), &dir).await;
        assert_eq!(s.layout.as_deref(), Some("COG"));
        assert_eq!(s.epsg, Some(4326), "reprojected to the default target_crs");
        assert_eq!(s.block, (512, 512));
        assert_eq!(
            cog["size_bytes"].as_u64(),
            Some(s.bytes),
            "reported size is the blob's"
        );
        seen.push(s);
    }
    assert!(
        seen[0]
            .compression
            .as_deref()
            .unwrap_or_default()
            .contains("JPEG"),
        "visualization of 8-bit RGB: {:?}",
        seen[0].compression
    );
    assert_eq!(seen[1].compression.as_deref(), Some("DEFLATE"));
    assert_eq!(seen[2].compression.as_deref(), Some("LZW"));

    // The item, by a bbox around Vienna's south; nothing in a bbox on the other side of the world.
    let items = search(&app, "test-rgb", [15.5, 47.5, 17.0, 48.5]).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(item["id"], "scenes-utm-rgb");
    assert_eq!(r["stac"]["item_id"], "scenes-utm-rgb");
    assert_eq!(r["stac"]["collection_created"], true);
    let p = &item["properties"];
    assert_eq!(p["proj:code"], "EPSG:4326");
    assert_eq!(p["proj:shape"], json!([seen[1].size.1, seen[1].size.0]));
    let gt = seen[1].geotransform;
    assert_eq!(
        p["proj:transform"],
        json!([gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]]),
        "STAC order"
    );
    for tier in ["visualization", "analysis", "archive"] {
        let a = &item["assets"][tier];
        assert_eq!(a["type"], COG_TYPE, "{tier}");
        assert!(a["href"].as_str().unwrap().contains(&output), "{a}");
        let bands = a["raster:bands"].as_array().unwrap();
        assert!(bands.len() >= 3, "{a}");
        assert_eq!(bands[0]["data_type"], "uint8");
        assert!(
            bands[0]["statistics"]["maximum"].as_f64().unwrap() > 0.0,
            "{a}"
        );
    }
    assert!(
        search(&app, "test-rgb", [100.0, -10.0, 101.0, -9.0])
            .await
            .is_empty()
    );

    // A second job for the same blob and item (another tier) upserts the item: still one.
    let (status, r2, err, _) = process(
        &app,
        json!({"blob_name": blob, "container_name": input, "output_container": output,
               "output_tier": "analysis", "collection_id": "test-rgb"}),
    )
    .await;
    assert_eq!(status, "completed", "{err:?}");
    assert_eq!(r2["stac"]["collection_created"], false);
    let items = search(&app, "test-rgb", [15.5, 47.5, 17.0, 48.5]).await;
    assert_eq!(items.len(), 1);
    let keys: Vec<&String> = items[0]["assets"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["analysis"], "the re-run replaced the item");
}

#[tokio::test]
async fn a_dem_with_nodata_keeps_it_in_every_tier_without_an_alpha_band() {
    let c = client();
    let dir = Scratch::new("raster");
    let (input, output) = containers(&c, "dem").await;
    let spec = Spec {
        nodata: Some(-9999.0),
        ..Spec::new(
            300,
            200,
            1,
            Some("EPSG:3857"),
            [1_600_000.0, 50.0, 0.0, 6_100_000.0, 0.0, -50.0],
        )
    };
    let f = synthetic::write(&dir.path("dem.tif"), &spec, synthetic::dem(300, 200, -9999));
    upload(&c, &input, "dem.tif", &f).await;
    let app = raster_app(c.clone()).await;
    let (status, r, err, id) = process(
        &app,
        json!({"blob_name": "dem.tif", "container_name": input, "output_container": output,
               "output_tier": "all", "output_folder": "cogs/dem"}),
    )
    .await;
    assert_eq!(status, "completed", "{err:?} {}", app.dump(&id).await);
    assert_eq!(r["validation"]["raster_type"], "dem");
    assert_eq!(r["validation"]["nodata"], json!(-9999.0));
    for cog in r["cogs"].as_array().unwrap() {
        let blob = cog["output_blob"].as_str().unwrap();
        assert!(blob.starts_with("cogs/dem/dem_cog_"), "{blob}");
        let s = read_back(&c, &output, blob, &dir).await;
        assert_eq!(s.bands, 1, "no alpha band when nodata is set ({blob})");
        assert_eq!(s.nodata, Some(-9999.0), "{blob}");
        assert_ne!(
            s.compression.as_deref(),
            Some("JPEG"),
            "JPEG is for 8-bit RGB only"
        );
    }
    // Continuous data: bilinear warp, average overviews, no alpha.
    let t = &stage_tasks(&app, &id, 2).await[1];
    let opts: Vec<String> =
        serde_json::from_value(t.3.as_ref().unwrap()["report"]["creation_options"].clone())
            .unwrap();
    for o in [
        "RESAMPLING=BILINEAR",
        "OVERVIEW_RESAMPLING=AVERAGE",
        "COMPRESS=DEFLATE",
        "PREDICTOR=YES",
        "BLOCKSIZE=512",
        "TARGET_SRS=EPSG:4326",
        "ADD_ALPHA=NO",
    ] {
        assert!(opts.iter().any(|x| x == o), "{o} in {opts:?}");
    }
    let items = search(&app, "rasters", [14.0, 47.0, 16.0, 49.0]).await;
    assert_eq!(items.len(), 1, "default collection 'rasters'");
    let band = &items[0]["assets"]["analysis"]["raster:bands"][0];
    assert_eq!(band["data_type"], "int16");
    assert_eq!(band["nodata"], json!(-9999.0));
    let min = band["statistics"]["minimum"].as_f64().unwrap();
    assert!(min >= 100.0, "statistics leave nodata out: minimum {min}");
}

#[tokio::test]
async fn float32_paletted_no_epsg_and_striped_4096_rasters_each_become_valid_cogs() {
    let c = client();
    let dir = Scratch::new("raster");
    let (input, output) = containers(&c, "kinds").await;
    let float = synthetic::write(
        &dir.path("float.tif"),
        &Spec::new(
            256,
            256,
            1,
            Some("EPSG:32617"),
            [400000.0, 20.0, 0.0, 4500000.0, 0.0, -20.0],
        ),
        synthetic::float,
    );
    let paletted = synthetic::write(
        &dir.path("landcover.tif"),
        &Spec {
            palette: true,
            ..Spec::new(
                400,
                300,
                1,
                Some("EPSG:32633"),
                [580000.0, 25.0, 0.0, 5320000.0, 0.0, -25.0],
            )
        },
        synthetic::classes,
    );
    // A Lambert conformal conic CRS given as a PROJ string: no EPSG code anywhere.
    let lcc = "+proj=lcc +lat_0=46 +lon_0=11 +lat_1=44 +lat_2=48 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs";
    let no_epsg = synthetic::write(
        &dir.path("lcc.tif"),
        &Spec::new(
            200,
            150,
            1,
            Some(lcc),
            [-20000.0, 100.0, 0.0, 10000.0, 0.0, -100.0],
        ),
        synthetic::float,
    );
    let striped = synthetic::write(
        &dir.path("striped.tif"),
        &Spec {
            options: &["COMPRESS=DEFLATE"],
            ..Spec::new(
                4096,
                4096,
                1,
                Some("EPSG:32633"),
                [580000.0, 5.0, 0.0, 5320000.0, 0.0, -5.0],
            )
        },
        synthetic::byte,
    );
    let cases = [
        ("float.tif", float, "dem"),
        ("landcover.tif", paletted, "categorical"),
        ("lcc.tif", no_epsg, "dem"),
        ("striped.tif", striped, "dem"),
    ];
    for (blob, path, _) in &cases {
        upload(&c, &input, blob, path).await;
    }
    let app = raster_app(c.clone()).await;
    let runs = futures::future::join_all(cases.iter().map(|(blob, _, _)| {
        process(
            &app,
            json!({"blob_name": blob, "container_name": input, "output_container": output}),
        )
    }))
    .await;
    for ((blob, _, kind), (status, r, err, id)) in cases.iter().zip(runs) {
        assert_eq!(
            status,
            "completed",
            "{blob}: {err:?} {}",
            app.dump(&id).await
        );
        let v = &r["validation"];
        assert_eq!(v["raster_type"], *kind, "{blob}");
        let cog = &r["cogs"][0];
        let s = read_back(&c, &output, cog["output_blob"].as_str().unwrap(), &dir).await;
        assert_eq!(
            (s.layout.as_deref(), s.epsg, s.block),
            (Some("COG"), Some(4326), (512, 512)),
            "{blob}"
        );
        let smallest = s.overviews.last().copied().unwrap_or(s.size);
        assert!(
            smallest.0.max(smallest.1) <= 512,
            "{blob}: {:?} {:?}",
            s.size,
            s.overviews
        );
        match *blob {
            "lcc.tif" => {
                assert_eq!(
                    v["crs"]["code"],
                    Value::Null,
                    "no EPSG code for a PROJ-string LCC"
                );
                assert_eq!(v["crs_source"], "file");
            }
            "landcover.tif" => {
                assert!(s.has_palette, "the colour table survives");
                let t = &stage_tasks(&app, &id, 2).await[0];
                let opts = t.3.as_ref().unwrap()["report"]["creation_options"].to_string();
                assert!(
                    opts.contains("RESAMPLING=NEAREST")
                        && opts.contains("OVERVIEW_RESAMPLING=MODE"),
                    "{opts}"
                );
                let item = &search(&app, "rasters", [15.0, 47.0, 18.0, 49.0]).await;
                let stats = item
                    .iter()
                    .find(|i| i["id"] == "landcover")
                    .map(|i| i["assets"]["analysis"]["raster:bands"][0]["statistics"].clone())
                    .expect("landcover item");
                assert!(
                    stats["maximum"].as_f64().unwrap() <= 4.0,
                    "classes only, never blended: {stats}"
                );
            }
            "striped.tif" => {
                assert_eq!(v["tiled"], false);
                assert_eq!(
                    (v["width"].as_u64(), v["height"].as_u64()),
                    (Some(4096), Some(4096))
                );
                assert!(s.overviews.len() >= 3, "{:?}", s.overviews);
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn bad_inputs_fail_the_job_permanently_naming_the_blob_and_the_problem() {
    let c = client();
    let dir = Scratch::new("raster");
    let (input, output) = containers(&c, "bad").await;
    let no_crs = synthetic::write(
        &dir.path("nocrs.tif"),
        &Spec::new(100, 100, 1, None, [0.0, 1.0, 0.0, 100.0, 0.0, -1.0]),
        synthetic::byte,
    );
    let whole = synthetic::write(
        &dir.path("whole.tif"),
        &Spec::new(
            256,
            256,
            1,
            Some("EPSG:32633"),
            [580000.0, 10.0, 0.0, 5320000.0, 0.0, -10.0],
        ),
        |x, y, _| (x * y) as i16,
    );
    let bytes = std::fs::read(&whole).unwrap();
    let truncated = dir.path("truncated.tif");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let png = synthetic::png(&dir.path("photo.tif"));
    // Complex pixels (radar): GDAL's own tool writes them, the gdal crate has no complex type.
    let complex = dir.path("complex.tif");
    let t = std::process::Command::new("gdal_translate")
        .args(["-q", "-ot", "CInt16"])
        .arg(&whole)
        .arg(&complex)
        .status()
        .expect("gdal_translate (gdal-bin) runs");
    assert!(t.success());
    let rgb = utm_rgb(&dir.path("rgb.tif"));
    let cases: Vec<(&str, Option<&Path>, Value, &[&str])> = vec![
        (
            "nocrs.tif",
            Some(&no_crs),
            json!({}),
            &["no coordinate reference system", "input_crs"],
        ),
        ("truncated.tif", Some(&truncated), json!({}), &["truncated"]),
        (
            "photo.tif",
            Some(&png),
            json!({}),
            &["PNG", "not a GeoTIFF"],
        ),
        (
            "missing.tif",
            None,
            json!({}),
            &["BlobNotFound", "missing.tif"],
        ),
        (
            "complex.tif",
            Some(&complex),
            json!({}),
            &["no output tier stores", "complex"],
        ),
        (
            "strict.tif",
            Some(&rgb),
            json!({"raster_type": "dem", "strict_mode": true}),
            &["raster_type dem needs 1 band", "strict_mode"],
        ),
    ];
    for (blob, path, _, _) in &cases {
        if let Some(p) = path {
            upload(&c, &input, blob, p).await;
        }
    }
    let app = raster_app(c.clone()).await;
    let runs = futures::future::join_all(cases.iter().map(|(blob, _, extra, _)| {
        let mut p = json!({"blob_name": blob, "container_name": input, "output_container": output});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        process(&app, p)
    }))
    .await;
    for ((blob, _, _, words), (status, _, err, id)) in cases.iter().zip(runs) {
        assert_eq!(status, "failed", "{blob}");
        let err = err.unwrap_or_default();
        assert!(
            err.contains(blob),
            "{blob}: the error names the blob: {err}"
        );
        for w in *words {
            assert!(err.contains(w), "{blob}: {w:?} in {err}");
        }
        let t = &stage_tasks(&app, &id, 1).await[0];
        assert_eq!(
            (t.1.as_str(), t.5),
            ("failed", 0),
            "{blob}: permanent, not retried"
        );
        assert!(
            stage_tasks(&app, &id, 2).await.is_empty(),
            "{blob}: no COG attempted"
        );
    }
    assert!(
        c.list_blobs(&output, &Default::default())
            .await
            .map(|p| p.items.is_empty())
            .unwrap_or(true),
        "nothing written"
    );
}

#[tokio::test]
async fn terra_example_rasters_elev_meuse_and_logo() {
    let c = client();
    let dir = Scratch::new("raster");
    let (input, output) = containers(&c, "terra").await;
    for f in ["elev.tif", "meuse.tif", "logo.tif"] {
        upload(&c, &input, &format!("terra/{f}"), &terra(f)).await;
    }
    let app = raster_app(c.clone()).await;
    let base =
        json!({"container_name": input, "output_container": output, "collection_id": "terra"});
    let with = |extra: Value| {
        let mut p = base.clone();
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    };
    let (elev, meuse, logo_bare, logo_crs) = tokio::join!(
        process(&app, with(json!({"blob_name": "terra/elev.tif"}))),
        process(
            &app,
            with(json!({"blob_name": "terra/meuse.tif", "output_tier": "archive"}))
        ),
        process(&app, with(json!({"blob_name": "terra/logo.tif"}))),
        process(
            &app,
            with(
                json!({"blob_name": "terra/logo.tif", "input_crs": "EPSG:3857", "output_tier": "visualization", "item_id": "logo-3857"})
            )
        ),
    );
    // elev: Int16 in EPSG:4326 with nodata -32768 (Luxembourg).
    assert_eq!(elev.0, "completed", "{:?}", elev.2);
    let v = &elev.1["validation"];
    assert_eq!(
        (v["raster_type"].as_str(), v["nodata"].as_f64()),
        (Some("dem"), Some(-32768.0))
    );
    assert_eq!(v["crs"]["code"], "EPSG:4326");
    let s = read_back(
        &c,
        &output,
        elev.1["cogs"][0]["output_blob"].as_str().unwrap(),
        &dir,
    )
    .await;
    assert_eq!((s.bands, s.nodata), (1, Some(-32768.0)));
    let items = search(&app, "terra", [5.8, 49.5, 6.4, 50.1]).await;
    assert!(items.iter().any(|i| i["id"] == "terra-elev"), "{items:?}");
    // meuse: an oblique stereographic CRS with no EPSG code in the file (the Meuse floodplain).
    assert_eq!(meuse.0, "completed", "{:?}", meuse.2);
    assert_eq!(meuse.1["validation"]["crs_source"], "file");
    let s = read_back(
        &c,
        &output,
        meuse.1["cogs"][0]["output_blob"].as_str().unwrap(),
        &dir,
    )
    .await;
    assert_eq!(
        (s.epsg, s.compression.as_deref()),
        (Some(4326), Some("LZW"))
    );
    assert!(
        !search(&app, "terra", [5.7, 50.9, 5.8, 51.0])
            .await
            .is_empty(),
        "meuse by bbox"
    );
    // logo: an engineering (local Cartesian) CRS cannot be placed on Earth...
    assert_eq!(logo_bare.0, "failed");
    let e = logo_bare.2.unwrap_or_default();
    assert!(
        e.contains("terra/logo.tif") && e.contains("cannot be transformed"),
        "{e}"
    );
    // ...unless input_crs says where it is; its nodata -1 cannot occur in Byte and is dropped.
    assert_eq!(logo_crs.0, "completed", "{:?}", logo_crs.2);
    let v = &logo_crs.1["validation"];
    assert_eq!(
        (v["raster_type"].as_str(), v["crs_source"].as_str()),
        (Some("rgb"), Some("input_crs"))
    );
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("nodata value -1") && warnings.contains("overrides"),
        "{warnings}"
    );
    read_back(
        &c,
        &output,
        logo_crs.1["cogs"][0]["output_blob"].as_str().unwrap(),
        &dir,
    )
    .await;
}

/// spData's two rasters (Debian r-cran-spdata, CC0): a Float32 elevation whose nodata is NaN and a
/// categorical Byte grid with a category table and nodata 255 (raster/grain.tif.aux.xml).
#[tokio::test]
async fn spdata_rasters_a_nan_nodata_float_and_a_categorical_grid() {
    let c = client();
    let dir = Scratch::new("raster");
    let (input, output) = containers(&c, "spdata").await;
    for f in ["elev.tif", "grain.tif", "grain.tif.aux.xml"] {
        let p = fetched(
            "COREMACHINE_SPDATA_RASTER_DIR",
            "spData's raster/ files",
            "ensure_vector_test_data",
            f,
        );
        upload(&c, &input, &format!("spdata/{f}"), &p).await;
    }
    let app = raster_app(c.clone()).await;
    let params = |blob: &str| json!({"container_name": input, "output_container": output, "collection_id": "spdata", "blob_name": blob});
    let (elev, grain) = tokio::join!(
        process(&app, params("spdata/elev.tif")),
        process(&app, params("spdata/grain.tif")),
    );
    assert_eq!(elev.0, "completed", "{:?}", elev.2);
    assert_eq!(elev.1["validation"]["raster_type"], "dem", "{}", elev.1);
    let s = read_back(
        &c,
        &output,
        elev.1["cogs"][0]["output_blob"].as_str().unwrap(),
        &dir,
    )
    .await;
    assert_eq!((s.epsg, s.bands), (Some(4326), 1));
    assert!(
        s.nodata.is_some_and(f64::is_nan),
        "NaN nodata kept: {:?}",
        s.nodata
    );
    assert_eq!(grain.0, "completed", "{:?}", grain.2);
    assert_eq!(
        grain.1["validation"]["raster_type"], "categorical",
        "{}",
        grain.1
    );
    let s = read_back(
        &c,
        &output,
        grain.1["cogs"][0]["output_blob"].as_str().unwrap(),
        &dir,
    )
    .await;
    assert_eq!((s.epsg, s.bands, s.nodata), (Some(4326), 1, Some(255.0)));
    let items = search(&app, "spdata", [-180.0, -90.0, 180.0, 90.0]).await;
    assert_eq!(items.len(), 2, "{items:?}");
}

#[tokio::test]
async fn blob_server_errors_are_transient_and_the_task_is_retried() {
    let c = client();
    let dir = Scratch::new("raster");
    let (input, output) = containers(&c, "flaky").await;
    upload(&c, &input, "rgb.tif", &utm_rgb(&dir.path("rgb.tif"))).await;
    // The first six requests get 503 Server Busy: more than the client's own retries (3), so
    // the first attempt of validate_raster fails transiently and the engine retries it.
    let proxy = flaky_proxy::start(&azurite(), |n| n <= 6).await;
    let through = client_with(&format!("{}/devstoreaccount1", proxy.url), DEV_ACCOUNT_KEY);
    let app = raster_app(through).await;
    let (status, _, err, id) = process(
        &app,
        json!({"blob_name": "rgb.tif", "container_name": input, "output_container": output}),
    )
    .await;
    assert_eq!(status, "completed", "{err:?} {}", app.dump(&id).await);
    let t = &stage_tasks(&app, &id, 1).await[0];
    assert!(
        t.5 >= 1,
        "validate_raster was retried after the 503s: {t:?}"
    );
    assert!(proxy.injected.load(std::sync::atomic::Ordering::SeqCst) >= 6);
}

#[tokio::test]
async fn coremachine_migrate_installs_pgstac_once_and_records_it() {
    let (name, url) = crate::common::fresh_db().await;
    let migrate = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"))
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .env("PGSTAC_SQL", crate::common::pgstac_sql())
            .env_remove("PGSTAC_DATABASE_URL")
            .env("RUST_LOG", "off")
            .kill_on_drop(true)
            .output()
    };
    let first = migrate().await.expect("coremachine migrate runs");
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        out.contains(r#""outcome":"installed""#) && out.contains("0.10.0"),
        "{out}"
    );
    let second = migrate().await.unwrap();
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success() && out.contains("already_current"),
        "{out}"
    );
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let v: String = db
        .query_one("SELECT pgstac.get_version()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "0.10.0");
    let row = db
        .query_one(
            "SELECT version, target FROM app.optional_schemas WHERE name = 'pgstac'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("0.10.0".into(), "app database".into())
    );
    drop(db);
    crate::common::drop_db(&name).await;
}

#[tokio::test]
async fn pgstac_can_live_in_another_database_than_the_app() {
    let (app_name, app_url) = crate::common::fresh_db().await;
    let (stac_name, stac_url) = crate::common::fresh_db().await;
    let sql = coremachine::store::pgstac::PgstacSql::read(&crate::common::pgstac_sql()).unwrap();
    let (mut app, conn) = tokio_postgres::connect(&app_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let outcome = coremachine::store::pgstac::migrate_with(&mut app, &sql, Some(&stac_url))
        .await
        .expect("pgSTAC installs into the other database");
    assert_eq!(
        outcome,
        coremachine::store::pgstac::Outcome::Installed {
            version: "0.10.0".into()
        }
    );
    assert_eq!(
        coremachine::store::pgstac::installed_version(&app)
            .await
            .unwrap(),
        None,
        "not in the app database"
    );
    let (stac, conn) = tokio_postgres::connect(&stac_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(
        coremachine::store::pgstac::installed_version(&stac)
            .await
            .unwrap()
            .as_deref(),
        Some("0.10.0")
    );
    let (version, target) = coremachine::store::pgstac::recorded(&app)
        .await
        .unwrap()
        .expect("recorded in the app database");
    assert_eq!(version, "0.10.0");
    assert!(
        target.contains(&stac_name),
        "the target database is named: {target}"
    );
    drop((app, stac));
    crate::common::drop_db(&app_name).await;
    crate::common::drop_db(&stac_name).await;
}
