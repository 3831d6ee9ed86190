//! The `list_container_contents` job types and the Blob Storage client, against Azurite.

use coremachine::storage::connection_string::DEV_ACCOUNT_KEY;
use coremachine::storage::{BlobClient, ConnectionString, ListOptions, StorageError};

fn endpoint() -> String {
    std::env::var("AZURITE_BLOB_ENDPOINT").expect(
        "AZURITE_BLOB_ENDPOINT is set (run ./scripts/test.sh, which starts Azurite; or source scripts/lib/azurite.sh and run ensure_azurite_running)",
    )
}

fn client_for(endpoint: &str) -> BlobClient {
    let cs = ConnectionString::parse(&format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_ACCOUNT_KEY};BlobEndpoint={endpoint};"
    ))
    .expect("connection string");
    BlobClient::from_connection_string(&cs).expect("client")
}

fn container_name(tag: &str) -> String {
    format!("{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

#[tokio::test]
async fn client_lists_reads_ranges_and_names_missing_things() {
    let c = client_for(&endpoint());
    let name = container_name("client");
    assert!(c.create_container(&name).await.unwrap());
    assert!(!c.create_container(&name).await.unwrap());
    for b in ["a b/ü.tif", "a b/x+y.txt", "z%.bin"] {
        c.put_blob(&name, b, b.as_bytes().to_vec(), "application/octet-stream")
            .await
            .unwrap();
    }
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
    let p = c.get_properties(&name, "z%.bin").await.unwrap();
    assert_eq!(p.size, 6);
    let r = c.read_range(&name, "a b/ü.tif", 2, 3).await.unwrap();
    assert_eq!(r, b"b/\xc3");
    assert_eq!(c.read_range(&name, "z%.bin", 100, 10).await.unwrap(), b"");
    let e = c.get_properties(&name, "gone.tif").await.unwrap_err();
    assert!(matches!(e, StorageError::BlobNotFound { .. }), "{e}");
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
    c.delete_container(&name).await.unwrap();
}
