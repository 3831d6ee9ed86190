//! `list_container_contents` and `list_container_contents_diamond` against Azurite (started by
//! scripts/test.sh, `AZURITE_BLOB_ENDPOINT`), through the real submit route, trigger routes and
//! host emulator. Every test creates its own containers.

pub(crate) mod flaky_proxy;

mod tiff_writer;

use std::collections::BTreeSet;
use std::time::Duration;

use coremachine::azure::retry::RetryPolicy;
use coremachine::jobs::Registry;
use coremachine::jobs::list_container_contents::{self, BlobSource, handlers};
use coremachine::storage::connection_string::DEV_ACCOUNT_KEY;
use coremachine::storage::{BlobClient, ConnectionString, ListOptions, StorageError};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::common::TestApp;
use tiff_writer::TiffSpec;

const WAIT: Duration = Duration::from_secs(120);

pub(crate) fn azurite() -> String {
    std::env::var("AZURITE_BLOB_ENDPOINT").expect(
        "AZURITE_BLOB_ENDPOINT is set (./scripts/test.sh starts Azurite; for one test: source scripts/lib/azurite.sh && ensure_azurite_running)",
    )
}

pub(crate) fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..RetryPolicy::default()
    }
}

/// A client for `endpoint` (Azurite, or a proxy in front of it) with `key`.
pub(crate) fn client_with(endpoint: &str, key: &str) -> BlobClient {
    let cs = ConnectionString::parse(&format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint={endpoint};"
    ))
    .expect("connection string");
    BlobClient::from_connection_string(&cs)
        .expect("client")
        .with_retry_policy(fast_retries())
}

pub(crate) fn client() -> BlobClient {
    client_with(&azurite(), DEV_ACCOUNT_KEY)
}

pub(crate) fn container_name(tag: &str) -> String {
    format!("{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A fresh container holding `blobs` (name, bytes), uploaded 32 at a time.
pub(crate) async fn container_with(
    c: &BlobClient,
    tag: &str,
    blobs: Vec<(String, Vec<u8>)>,
) -> String {
    let name = container_name(tag);
    assert!(c.create_container(&name).await.expect("create container"));
    futures::stream::iter(blobs)
        .map(|(b, bytes)| {
            let (c, name) = (c.clone(), name.clone());
            async move {
                c.put_blob(&name, &b, bytes, "application/octet-stream")
                    .await
                    .unwrap_or_else(|e| panic!("upload {b}: {e}"))
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    name
}

/// A test app whose list_container_contents job types read through `client`.
async fn app_with(client: BlobClient) -> TestApp {
    TestApp::start_opts(|o| {
        list_container_contents::register(&mut o.registry, BlobSource::fixed(client))
    })
    .await
}

async fn result_of(app: &TestApp, id: &str) -> Value {
    app.db()
        .await
        .query_one("SELECT result_data FROM app.jobs WHERE job_id = $1", &[&id])
        .await
        .unwrap()
        .get::<_, Option<Value>>(0)
        .unwrap_or(Value::Null)
}

/// Submits, waits, and returns (status, result_data, error_details).
pub(crate) async fn run(
    app: &TestApp,
    job_type: &str,
    params: Value,
) -> (String, Value, Option<String>, String) {
    run_waiting(app, job_type, params, WAIT).await
}

/// [`run`], waiting up to `wait` for the job to end.
pub(crate) async fn run_waiting(
    app: &TestApp,
    job_type: &str,
    params: Value,
    wait: Duration,
) -> (String, Value, Option<String>, String) {
    let id = app.submit(job_type, params).await;
    let status = app.wait_terminal(&id, wait).await;
    let row = app
        .db()
        .await
        .query_one(
            "SELECT result_data, error_details FROM app.jobs WHERE job_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (
        status,
        row.get::<_, Option<Value>>(0).unwrap_or(Value::Null),
        row.get(1),
        id,
    )
}

pub(crate) async fn stage_tasks(
    app: &TestApp,
    job_id: &str,
    stage: i32,
) -> Vec<(String, String, Value, Option<Value>, Option<String>, i32)> {
    app.db()
        .await
        .query(
            "SELECT task_id, status::text, parameters, result_data, error_details, retry_count FROM app.tasks WHERE parent_job_id = $1 AND stage = $2 ORDER BY task_seq",
            &[&job_id, &stage],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

fn blob(name: &str, size: usize) -> (String, Vec<u8>) {
    (name.to_string(), vec![b'x'; size])
}

#[tokio::test]
async fn client_lists_pages_reads_ranges_and_names_what_is_missing() {
    let c = client();
    let name = container_with(
        &c,
        "client",
        vec![
            ("a b/ü.tif".into(), b"a b/\xc3\xbc.tif".to_vec()),
            ("a b/x+y.txt".into(), b"plus".to_vec()),
            ("z%.bin".into(), b"percent".to_vec()),
        ],
    )
    .await;
    assert!(
        !c.create_container(&name).await.unwrap(),
        "second create reports it existed"
    );
    let page = c
        .list_blobs(
            &name,
            &ListOptions {
                prefix: Some("a b/"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let names: Vec<_> = page.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["a b/x+y.txt", "a b/ü.tif"]);
    // maxresults and the continuation marker walk the listing one blob at a time.
    let mut marker = None;
    let mut seen = Vec::new();
    loop {
        let p = c
            .list_blobs(
                &name,
                &ListOptions {
                    prefix: None,
                    marker: marker.as_deref(),
                    max_results: Some(1),
                },
            )
            .await
            .unwrap();
        assert!(p.items.len() <= 1);
        seen.extend(p.items.into_iter().map(|i| i.name));
        match p.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    assert_eq!(seen, ["a b/x+y.txt", "a b/ü.tif", "z%.bin"]);
    let p = c.get_properties(&name, "z%.bin").await.unwrap();
    assert_eq!(p.size, 7);
    assert!(p.last_modified.is_some() && p.etag.is_some());
    assert_eq!(
        c.read_range(&name, "a b/ü.tif", 2, 3).await.unwrap(),
        b"b/\xc3"
    );
    assert_eq!(c.read_range(&name, "z%.bin", 100, 10).await.unwrap(), b"");
    let e = c.get_properties(&name, "gone.tif").await.unwrap_err();
    assert!(matches!(e, StorageError::BlobNotFound { .. }), "{e}");
    assert!(
        e.to_string().contains("gone.tif") && e.to_string().contains(&name),
        "{e}"
    );
    let e = c
        .list_blobs("no-such-container", &ListOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::ContainerNotFound { .. }), "{e}");
    let e = c
        .get_properties("no-such-container", "x")
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::ContainerNotFound { .. }), "{e}");
    let wrong_key = base64_key_of(b"not the account key");
    let e = client_with(&azurite(), &wrong_key)
        .list_blobs(&name, &ListOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::AccessDenied { status: 403, .. }),
        "{e}"
    );
    assert!(!e.is_retryable());
    c.delete_container(&name).await.unwrap();
}

fn base64_key_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn empty_and_three_blob_containers_give_the_right_counts() {
    let c = client();
    let empty = container_with(&c, "empty", vec![]).await;
    let three = container_with(
        &c,
        "three",
        vec![blob("a.txt", 10), blob("dir/b.csv", 300), blob("dir/c", 20)],
    )
    .await;
    let app = app_with(c.clone()).await;
    let (s, r, _, id) = run(
        &app,
        "list_container_contents",
        json!({"container_name": empty}),
    )
    .await;
    assert_eq!(s, "completed", "{}", app.dump(&id).await);
    assert_eq!(r["total_files"], 0);
    assert_eq!(r["listed_files"], 0);
    assert_eq!(r["largest_file"], Value::Null);
    // The diamond's fan-in runs over zero results too (the earlier implementation raised here).
    let (s, r, _, id) = run(
        &app,
        "list_container_contents_diamond",
        json!({"container_name": empty}),
    )
    .await;
    assert_eq!(s, "completed", "{}", app.dump(&id).await);
    assert_eq!(
        (r["total_files"].clone(), r["results_received"].clone()),
        (json!(0), json!(0))
    );

    let (s, r, _, id) = run(
        &app,
        "list_container_contents",
        json!({"container_name": three}),
    )
    .await;
    assert_eq!(s, "completed", "{}", app.dump(&id).await);
    assert_eq!(r["total_files"], 3);
    assert_eq!(r["analyzed_files"], 3);
    assert_eq!(r["total_size_bytes"], 330);
    assert_eq!(r["file_types"], json!({"(none)": 1, "csv": 1, "txt": 1}));
    assert_eq!(r["largest_file"]["name"], "dir/b.csv");
    assert_eq!(r["success_rate"], 100.0);
    let listing = &stage_tasks(&app, &id, 1).await[0];
    let names: Vec<&str> = listing.3.as_ref().unwrap()["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.txt", "dir/b.csv", "dir/c"]);
    let analyses = stage_tasks(&app, &id, 2).await;
    assert_eq!(analyses.len(), 3);
    let b = analyses
        .iter()
        .find_map(|t| t.3.clone().filter(|r| r["blob_name"] == "dir/b.csv"))
        .unwrap();
    assert_eq!(b["size_bytes"], 300);
    assert_eq!(b["extension"], "csv");
    assert_eq!(b["content_type"], "application/octet-stream");
    assert!(b["last_modified"].as_str().unwrap().ends_with('Z'));
    app.cleanup().await;
}

#[tokio::test]
async fn five_thousand_blobs_are_listed_over_several_pages_and_all_analysed() {
    let c = client();
    // Every 100th blob is a .tif, so a filtered listing has to read several pages to find them.
    let blobs: Vec<_> = (0..5000)
        .map(|i| {
            let ext = if i % 100 == 0 { "tif" } else { "bin" };
            blob(&format!("tiles/{i:05}.{ext}"), 1 + i % 7)
        })
        .collect();
    let expected_bytes: usize = blobs.iter().map(|b| b.1.len()).sum();
    let t0 = std::time::Instant::now();
    let name = container_with(&c, "many", blobs).await;
    eprintln!("uploaded 5000 blobs in {:?}", t0.elapsed());
    let app = TestApp::start_opts(|o| {
        o.max_concurrent_calls = Some(32);
        list_container_contents::register(&mut o.registry, BlobSource::fixed(c.clone()));
    })
    .await;
    let params = json!({"container_name": name, "file_limit": 10000, "page_size": 1000});
    let id = app.submit("list_container_contents", params).await;
    assert_eq!(
        app.wait_terminal(&id, Duration::from_secs(900)).await,
        "completed",
        "{}",
        app.dump(&id).await
    );
    let r = result_of(&app, &id).await;
    assert_eq!(r["total_files"], 5000);
    assert_eq!(r["analyzed_files"], 5000);
    assert_eq!(r["total_size_bytes"], expected_bytes);
    assert_eq!(r["file_types"], json!({"bin": 4950, "tif": 50}));
    let listing = stage_tasks(&app, &id, 1).await[0].3.clone().unwrap();
    assert_eq!(listing["pages"], 5, "1000 per page");
    assert_eq!(listing["scanned"], 5000);
    assert_eq!(listing["limit_reached"], false);

    // A filtered listing with a limit stops at the limit, pages into the container to get there,
    // and says it stopped early.
    let params = json!({"container_name": name, "file_limit": 25, "page_size": 1000, "filter": {"extensions": ["tif"]}});
    let (s, r, _, id) = run(&app, "list_container_contents", params).await;
    assert_eq!(s, "completed", "{}", app.dump(&id).await);
    assert_eq!(r["total_files"], 25);
    let listing = stage_tasks(&app, &id, 1).await[0].3.clone().unwrap();
    assert_eq!(
        (listing["pages"].clone(), listing["limit_reached"].clone()),
        (json!(3), json!(true))
    );
    assert_eq!(listing["blobs"][24]["name"], "tiles/02400.tif");
    app.cleanup().await;
}

#[tokio::test]
async fn file_limit_and_every_filter_field_are_respected() {
    let c = client();
    let kib = 1024;
    let name = container_with(
        &c,
        "filters",
        vec![
            blob("raw/a.tif", 5 * kib),
            blob("raw/b.TIF", 20 * kib),
            blob("raw/c.tiff", 60 * kib),
            blob("raw/d.png", 20 * kib),
            blob("other/e.tif", 20 * kib),
            blob("other/f.txt", kib),
        ],
    )
    .await;
    let app = app_with(c.clone()).await;
    let cases = [
        (
            json!({}),
            json!(null),
            vec![
                "other/e.tif",
                "other/f.txt",
                "raw/a.tif",
                "raw/b.TIF",
                "raw/c.tiff",
                "raw/d.png",
            ],
        ),
        (
            json!({}),
            json!({"prefix": "raw/"}),
            vec!["raw/a.tif", "raw/b.TIF", "raw/c.tiff", "raw/d.png"],
        ),
        (
            json!({}),
            json!({"extensions": ["TIF"]}),
            vec!["other/e.tif", "raw/a.tif", "raw/b.TIF"],
        ),
        (
            json!({}),
            json!({"extensions": [".tiff", "png"]}),
            vec!["raw/c.tiff", "raw/d.png"],
        ),
        (
            json!({}),
            json!({"min_size_mb": 0.015}),
            vec!["other/e.tif", "raw/b.TIF", "raw/c.tiff", "raw/d.png"],
        ),
        (
            json!({}),
            json!({"max_size_mb": 0.01}),
            vec!["other/f.txt", "raw/a.tif"],
        ),
        (
            json!({}),
            json!({"prefix": "raw/", "extensions": ["tif", "tiff"], "min_size_mb": 0.01, "max_size_mb": 0.05}),
            vec!["raw/b.TIF"],
        ),
        (
            json!({"file_limit": 2}),
            json!(null),
            vec!["other/e.tif", "other/f.txt"],
        ),
        (
            json!({"file_limit": 1}),
            json!({"extensions": ["tif"]}),
            vec!["other/e.tif"],
        ),
    ];
    let jobs = futures::future::join_all(cases.iter().map(|(extra, filter, _)| {
        let mut p = json!({"container_name": name});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        if !filter.is_null() {
            p["filter"] = filter.clone();
        }
        run(&app, "list_container_contents", p)
    }))
    .await;
    for ((_, filter, want), (s, r, _, id)) in cases.iter().zip(jobs) {
        assert_eq!(s, "completed", "{filter}: {}", app.dump(&id).await);
        let mut got: Vec<String> = stage_tasks(&app, &id, 2)
            .await
            .into_iter()
            .map(|t| t.3.unwrap()["blob_name"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        assert_eq!(got, *want, "filter {filter}");
        assert_eq!(r["total_files"], want.len(), "filter {filter}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn bad_parameters_are_refused_with_field_errors() {
    let app = app_with(client()).await;
    let cases = [
        (json!({}), "container_name", "required"),
        (
            json!({"container_name": "Bad_Name"}),
            "container_name",
            "container_name",
        ),
        (
            json!({"container_name": "ab"}),
            "container_name",
            "container_name",
        ),
        (
            json!({"container_name": "abc", "file_limit": 0}),
            "file_limit",
            "minimum",
        ),
        (
            json!({"container_name": "abc", "file_limit": 10001}),
            "file_limit",
            "maximum",
        ),
        (
            json!({"container_name": "abc", "filter": {"extensions": ["t i f"]}}),
            "filter.extensions[0]",
            "extension",
        ),
        (
            json!({"container_name": "abc", "filter": {"min_size_mb": -1}}),
            "filter.min_size_mb",
            "minimum",
        ),
        (
            json!({"container_name": "abc", "filter": {"min_size_mb": 5, "max_size_mb": 1}}),
            "filter.min_size_mb",
            "not_above_max",
        ),
        (
            json!({"container_name": "abc", "filter": {"suffix": "x"}}),
            "filter.suffix",
            "unknown_field",
        ),
    ];
    for (body, field, rule) in cases {
        for job_type in ["list_container_contents", "list_container_contents_diamond"] {
            let (status, b) = app
                .post(&format!("/api/jobs/submit/{job_type}"), &body)
                .await;
            assert_eq!(status, 400, "{body}: {b}");
            let text = b.to_string();
            assert!(
                text.contains(field) && text.contains(rule),
                "{body} should name {field}/{rule}: {b}"
            );
        }
    }
    app.cleanup().await;
}

#[tokio::test]
async fn a_cog_and_a_striped_tiff_are_told_apart() {
    let c = client();
    let name = container_with(
        &c,
        "tiffs",
        vec![
            ("cog.tif".into(), tiff_writer::write(TiffSpec::cog())),
            (
                "striped.tif".into(),
                tiff_writer::write(TiffSpec::striped()),
            ),
            (
                "tiled-ifd-last.tif".into(),
                tiff_writer::write(TiffSpec {
                    tiled: true,
                    ..TiffSpec::striped()
                }),
            ),
            (
                "big-endian-bigtiff-cog.tiff".into(),
                tiff_writer::write(TiffSpec {
                    bigtiff: true,
                    big_endian: true,
                    ghost: false,
                    ..TiffSpec::cog()
                }),
            ),
            (
                "not-really.tif".into(),
                b"PK\x03\x04 this is a zip".to_vec(),
            ),
            ("empty.tif".into(), Vec::new()),
        ],
    )
    .await;
    let app = app_with(c.clone()).await;
    let (s, r, _, id) = run(
        &app,
        "list_container_contents",
        json!({"container_name": name}),
    )
    .await;
    assert_eq!(s, "completed", "{}", app.dump(&id).await);
    let by_name: std::collections::BTreeMap<String, Value> = stage_tasks(&app, &id, 2)
        .await
        .into_iter()
        .map(|t| {
            let r = t.3.unwrap();
            (r["blob_name"].as_str().unwrap().to_string(), r)
        })
        .collect();
    let cog = &by_name["cog.tif"]["tiff"];
    assert_eq!(cog["format"], "TIFF");
    assert_eq!(cog["byte_order"], "little_endian");
    assert_eq!(
        (
            cog["tiled"].clone(),
            cog["ifd_first"].clone(),
            cog["ghost_header"].clone()
        ),
        (json!(true), json!(true), json!(true))
    );
    assert_eq!(cog["layout"], "IFDS_BEFORE_DATA");
    assert_eq!(cog["ifd"]["width"], 64);
    assert_eq!(cog["ifd"]["tile_width"], 32);
    assert_eq!(cog["ifd"]["geotiff"], true);
    assert_eq!(cog["looks_like_cog"], true);
    assert_eq!(by_name["cog.tif"]["is_cog"], true);

    let striped = &by_name["striped.tif"]["tiff"];
    assert_eq!(
        (striped["tiled"].clone(), striped["ifd_first"].clone()),
        (json!(false), json!(false))
    );
    assert_eq!(striped["looks_like_cog"], false);
    assert_eq!(striped["ifd"]["height"], 64);

    let ifd_last = &by_name["tiled-ifd-last.tif"]["tiff"];
    assert_eq!(
        (
            ifd_last["tiled"].clone(),
            ifd_last["looks_like_cog"].clone()
        ),
        (json!(true), json!(false))
    );

    let big = &by_name["big-endian-bigtiff-cog.tiff"]["tiff"];
    assert_eq!(
        (big["format"].clone(), big["byte_order"].clone()),
        (json!("BigTIFF"), json!("big_endian"))
    );
    assert_eq!(
        (big["ghost_header"].clone(), big["looks_like_cog"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(big["ifd"]["width"], 64);

    assert!(
        by_name["not-really.tif"]["tiff"]["error"]
            .as_str()
            .unwrap()
            .contains("not a TIFF")
    );
    assert!(by_name["empty.tif"]["tiff"]["error"].is_string());
    assert_eq!(by_name["empty.tif"]["size_bytes"], 0);

    assert_eq!(r["tiff_files"], 4);
    assert_eq!(r["bigtiff_files"], 1);
    assert_eq!(r["cog_count"], 2);
    app.cleanup().await;
}

#[tokio::test]
async fn a_missing_container_fails_the_job_naming_container_and_account() {
    let app = app_with(client()).await;
    let missing = container_name("missing");
    let (s, _, err, id) = run(
        &app,
        "list_container_contents",
        json!({"container_name": missing}),
    )
    .await;
    assert_eq!(s, "failed", "{}", app.dump(&id).await);
    let err = err.unwrap();
    assert!(
        err.contains(&missing) && err.contains("devstoreaccount1"),
        "{err}"
    );
    assert!(
        err.contains("ContainerNotFound") && err.contains("does not exist"),
        "{err}"
    );
    let list = &stage_tasks(&app, &id, 1).await[0];
    assert_eq!(
        (list.1.as_str(), list.5),
        ("failed", 0),
        "a missing container is not retried"
    );
    assert!(stage_tasks(&app, &id, 2).await.is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn a_refused_credential_fails_the_job_naming_container_and_account() {
    let c = client();
    let name = container_with(&c, "denied", vec![blob("a.txt", 1)]).await;
    let app = app_with(client_with(&azurite(), &base64_key_of(b"wrong key"))).await;
    let (s, _, err, id) = run(
        &app,
        "list_container_contents",
        json!({"container_name": name}),
    )
    .await;
    assert_eq!(s, "failed", "{}", app.dump(&id).await);
    let err = err.unwrap();
    assert!(
        err.contains(&name) && err.contains("devstoreaccount1") && err.contains("403"),
        "{err}"
    );
    assert!(err.contains("StorageAccessDenied"), "{err}");
    app.cleanup().await;
}

#[tokio::test]
async fn a_blob_deleted_between_listing_and_analysis_fails_only_its_task() {
    let c = client();
    // The listing handler is the real one; after it returns, `gone.tif` disappears.
    let src = BlobSource::fixed(c.clone());
    let app = TestApp::start_opts(|o| {
        list_container_contents::register(&mut o.registry, src.clone());
        let (src, c) = (src.clone(), c.clone());
        o.registry.add_handler("list_container_blobs", move |ctx| {
            let (src, c) = (src.clone(), c.clone());
            async move {
                let container = ctx.parameters["container_name"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let listed = handlers::list_container_blobs(src, ctx).await?;
                c.delete_blob(&container, "gone.tif")
                    .await
                    .expect("delete after listing");
                c.put_blob(&container, "keep-2.txt", vec![b'y'; 31], "text/plain")
                    .await
                    .expect("overwrite after listing");
                Ok(listed)
            }
        });
    })
    .await;
    for job_type in ["list_container_contents", "list_container_contents_diamond"] {
        let name = container_with(
            &c,
            "deleted",
            vec![
                blob("keep-1.txt", 10),
                blob("gone.tif", 20),
                blob("keep-2.txt", 30),
            ],
        )
        .await;
        let (s, r, _, id) = run(&app, job_type, json!({"container_name": name})).await;
        assert_eq!(s, "completed", "{job_type}: {}", app.dump(&id).await);
        assert_eq!(r["listed_files"], 3, "{job_type}");
        assert_eq!(r["analyzed_files"], 2, "{job_type}");
        assert_eq!(r["failed_files"], 1, "{job_type}");
        assert_eq!(r["total_size_bytes"], 41, "{job_type}: sizes as analysed");
        assert_eq!(r["success_rate"], 66.7, "{job_type}");
        assert_eq!(r["failed_blobs"][0]["blob_name"], "gone.tif", "{job_type}");
        let e = r["failed_blobs"][0]["error"].as_str().unwrap();
        assert!(
            e.contains("BlobNotFound") && e.contains(&name) && e.contains("devstoreaccount1"),
            "{e}"
        );
        let tasks = stage_tasks(&app, &id, 2).await;
        let changed: Vec<(String, bool)> = tasks
            .iter()
            .filter_map(|t| t.3.as_ref())
            .map(|r| {
                (
                    r["blob_name"].as_str().unwrap().to_string(),
                    r["changed_since_listing"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            changed,
            [
                ("keep-1.txt".to_string(), false),
                ("keep-2.txt".to_string(), true)
            ],
            "{job_type}"
        );
        let statuses: BTreeSet<(String, i32)> = tasks.iter().map(|t| (t.1.clone(), t.5)).collect();
        assert_eq!(
            statuses,
            BTreeSet::from([("completed".to_string(), 0), ("failed".to_string(), 0)]),
            "{job_type}: a deleted blob is not retried"
        );
        assert_eq!(
            tasks.iter().filter(|t| t.1 == "failed").count(),
            1,
            "{job_type}"
        );
    }
    app.cleanup().await;
}

#[tokio::test]
async fn the_diamond_fan_in_receives_every_stage_two_result_exactly_once() {
    let c = client();
    let blobs: Vec<_> = (0..40)
        .map(|i| blob(&format!("b{i:02}.dat"), 100 + i))
        .collect();
    let name = container_with(&c, "diamond", blobs).await;
    let app = app_with(c.clone()).await;
    let (s, r, _, id) = run(
        &app,
        "list_container_contents_diamond",
        json!({"container_name": name}),
    )
    .await;
    assert_eq!(s, "completed", "{}", app.dump(&id).await);
    let stage2: BTreeSet<String> = stage_tasks(&app, &id, 2)
        .await
        .into_iter()
        .filter(|t| t.1 == "completed")
        .map(|t| t.0)
        .collect();
    assert_eq!(stage2.len(), 40);
    let stage3 = stage_tasks(&app, &id, 3).await;
    assert_eq!(stage3.len(), 1, "one fan-in task");
    let received: Vec<String> = stage3[0].2["previous_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["task_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(received.len(), 40, "no result twice");
    assert_eq!(
        received.iter().cloned().collect::<BTreeSet<_>>(),
        stage2,
        "every result once"
    );
    let agg = stage3[0].3.clone().unwrap();
    assert_eq!(
        (
            agg["results_received"].clone(),
            agg["distinct_tasks"].clone()
        ),
        (json!(40), json!(40))
    );
    assert_eq!(r["total_files"], 40);
    assert_eq!(r["total_size_bytes"], (0..40).map(|i| 100 + i).sum::<i64>());
    assert_eq!(r["job_type"], "list_container_contents_diamond");
    app.cleanup().await;
}

#[tokio::test]
async fn injected_503s_are_retried_and_the_job_completes() {
    let c = client();
    let name = container_with(
        &c,
        "flaky",
        (0..20).map(|i| blob(&format!("f{i}.txt"), 10)).collect(),
    )
    .await;
    // Requests 1-4 fail (more than the client's 3 retries, so the listing task itself is retried
    // by the engine), then every third request fails (absorbed by the client's retries).
    let proxy = flaky_proxy::start(&azurite(), |n| n <= 4 || n % 3 == 0).await;
    let through_proxy = client_with(&format!("{}/devstoreaccount1", proxy.url), DEV_ACCOUNT_KEY);
    let app = app_with(through_proxy).await;
    let (s, r, _, id) = run(
        &app,
        "list_container_contents",
        json!({"container_name": name}),
    )
    .await;
    assert_eq!(s, "completed", "{}", app.dump(&id).await);
    assert_eq!(r["analyzed_files"], 20);
    assert_eq!(r["failed_files"], 0);
    let injected = proxy.injected.load(std::sync::atomic::Ordering::SeqCst);
    let requests = proxy.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        injected >= 10,
        "only {injected} of {requests} requests got a 503"
    );
    let list = &stage_tasks(&app, &id, 1).await[0];
    assert_eq!(
        (list.1.as_str(), list.5),
        ("completed", 1),
        "the listing task was retried once by the engine"
    );
    assert!(
        app.event_types(&id)
            .await
            .contains(&"task_retrying".to_string()),
        "{:?}",
        app.event_types(&id).await
    );
    app.cleanup().await;
}

/// Registry::builtin() includes both job types; without storage settings a task fails with a
/// message naming the settings (never a panic).
#[tokio::test]
async fn the_builtin_registry_has_both_job_types() {
    let r = Registry::builtin();
    r.validate().unwrap();
    for t in ["list_container_contents", "list_container_contents_diamond"] {
        assert!(r.job(t).is_some(), "{t}");
    }
}

/// docs/job-types.md stays true: every job type and every parameter (nested ones as
/// `filter.prefix`) has its row.
#[test]
fn the_job_types_doc_lists_every_parameter_of_every_job_type() {
    use coremachine::jobs::{ParamKind, ParamSpec};
    fn names(prefix: &str, specs: &[ParamSpec], out: &mut Vec<String>) {
        for s in specs {
            let name = format!("{prefix}{}", s.name);
            match &s.kind {
                ParamKind::Object(fields) => names(&format!("{name}."), fields, out),
                _ => out.push(name),
            }
        }
    }
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/job-types.md"))
        .expect("docs/job-types.md");
    for job in Registry::builtin().jobs() {
        assert!(
            doc.contains(&format!("`{}`", job.job_type())),
            "{} is not documented",
            job.job_type()
        );
        let mut params = Vec::new();
        names("", &job.parameters(), &mut params);
        for p in params {
            assert!(
                doc.contains(&format!("| `{p}` |")),
                "{}: parameter {p} has no row in docs/job-types.md",
                job.job_type()
            );
        }
    }
}

/// A token source that hands out a stale token until asked to refresh.
#[derive(Debug, Default)]
struct StaleThenFresh {
    refreshes: std::sync::atomic::AtomicU32,
}

impl coremachine::azure::credential::TokenSource for StaleThenFresh {
    fn token<'a>(
        &'a self,
        scope: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<
            coremachine::azure::credential::AccessToken,
            coremachine::azure::credential::CredentialError,
        >,
    > {
        assert_eq!(scope, "https://storage.azure.com/.default");
        let t = if self.refreshes.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            "stale"
        } else {
            "fresh"
        };
        Box::pin(async move {
            Ok(coremachine::azure::credential::AccessToken::bearer(
                t,
                chrono::Utc::now() + chrono::Duration::hours(1),
            ))
        })
    }
    fn refresh<'a>(
        &'a self,
        scope: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<
            coremachine::azure::credential::AccessToken,
            coremachine::azure::credential::CredentialError,
        >,
    > {
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.token(scope)
    }
    fn describe(&self) -> String {
        "test token source".into()
    }
}

/// Managed-identity requests carry `Authorization: Bearer`, refresh the token once on 401, and a
/// 403 names the role the identity lacks. The stand-in answers like the Blob service.
#[tokio::test]
async fn bearer_tokens_are_sent_refreshed_once_on_401_and_403_names_the_role() {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let log = log.clone();
        async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            log.lock().unwrap().push(format!("{} {auth}", uri.path()));
            assert!(headers.contains_key("x-ms-version") && headers.contains_key("x-ms-date"));
            match (uri.path(), auth.as_str()) {
                (_, "Bearer stale") => (StatusCode::UNAUTHORIZED, "<Error><Code>InvalidAuthenticationInfo</Code><Message>token expired</Message></Error>".to_string()),
                ("/secret", _) => (StatusCode::FORBIDDEN, "<Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.</Message></Error>".to_string()),
                (_, "Bearer fresh") => (StatusCode::OK, "<EnumerationResults><Blobs><Blob><Name>a.tif</Name><Properties><Content-Length>3</Content-Length></Properties></Blob></Blobs><NextMarker/></EnumerationResults>".to_string()),
                _ => (StatusCode::BAD_REQUEST, String::new()),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let tokens = std::sync::Arc::new(StaleThenFresh::default());
    let c = BlobClient::with_endpoint_and_token_source(
        reqwest::Url::parse(&url).unwrap(),
        "rmhgeo",
        tokens.clone(),
    )
    .unwrap()
    .with_retry_policy(fast_retries());
    let page = c
        .list_blobs("bronze", &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(page.items[0].name, "a.tif");
    assert_eq!(
        tokens.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["/bronze Bearer stale", "/bronze Bearer fresh"]
    );
    let e = c
        .list_blobs("secret", &ListOptions::default())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, StorageError::AccessDenied { status: 403, .. }),
        "{e}"
    );
    assert!(
        text.contains("\"secret\"")
            && text.contains("\"rmhgeo\"")
            && text.contains("Storage Blob Data Reader"),
        "{text}"
    );
    server.abort();
}

#[test]
fn storage_settings_are_read_and_checked_without_echoing_secrets() {
    use coremachine::config::StorageSettings;
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(StorageSettings::from_lookup(env(&[])).unwrap(), None);
    assert!(matches!(
        StorageSettings::from_lookup(env(&[
            (
                "AZURE_STORAGE_CONNECTION_STRING",
                "UseDevelopmentStorage=true"
            ),
            ("STORAGE_ACCOUNT_NAME", "ignored")
        ]))
        .unwrap(),
        Some(StorageSettings::ConnectionString(_))
    ));
    assert_eq!(
        StorageSettings::from_lookup(env(&[
            ("STORAGE_ACCOUNT_NAME", "rmhgeo"),
            ("STORAGE_MANAGED_IDENTITY_CLIENT_ID", "1234")
        ]))
        .unwrap(),
        Some(StorageSettings::ManagedIdentity {
            account_name: "rmhgeo".into(),
            client_id: Some("1234".into())
        })
    );
    let e = StorageSettings::from_lookup(env(&[("STORAGE_ACCOUNT_NAME", "Not_An_Account")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("STORAGE_ACCOUNT_NAME"), "{e}");
    let e = StorageSettings::from_lookup(env(&[(
        "AZURE_STORAGE_CONNECTION_STRING",
        "AccountName=a;AccountKey=topsecret!!",
    )]))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("AZURE_STORAGE_CONNECTION_STRING") && !e.contains("topsecret"),
        "{e}"
    );
    let s = StorageSettings::from_lookup(env(&[(
        "AZURE_STORAGE_CONNECTION_STRING",
        "AccountName=a;AccountKey=c2VjcmV0",
    )]))
    .unwrap()
    .unwrap();
    assert!(!format!("{s:?}").contains("c2VjcmV0"));
}
