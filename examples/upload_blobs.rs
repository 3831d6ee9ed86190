//! Uploads local files into a blob container (created if missing), so a local Azurite has
//! something for `list_container_contents` to list. Reads `AZURE_STORAGE_CONNECTION_STRING`
//! (default: `UseDevelopmentStorage=true`, Azurite on 127.0.0.1:10000).
//!
//! ```text
//! cargo run --example upload_blobs -- bronze ./data/*.tif
//! cargo run --example upload_blobs -- bronze --prefix raw/2026/ ./data/a.tif ./data/b.csv
//! ```

use std::process::ExitCode;

use coremachine::storage::{BlobClient, ConnectionString};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(container) = args.next() else {
        eprintln!("usage: upload_blobs <container> [--prefix <folder/>] <file>...");
        return ExitCode::from(2);
    };
    let mut prefix = String::new();
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        if a == "--prefix" {
            prefix = args.next().unwrap_or_default();
        } else {
            files.push(a);
        }
    }
    let cs = std::env::var("AZURE_STORAGE_CONNECTION_STRING")
        .unwrap_or_else(|_| "UseDevelopmentStorage=true".into());
    let client = match ConnectionString::parse(&cs)
        .map_err(|e| e.to_string())
        .and_then(|cs| BlobClient::from_connection_string(&cs).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("upload_blobs: {e}");
            return ExitCode::from(1);
        }
    };
    match client.create_container(&container).await {
        Ok(true) => println!("created container {container}"),
        Ok(false) => {}
        Err(e) => {
            eprintln!("upload_blobs: {e}");
            return ExitCode::from(1);
        }
    }
    for f in files {
        let name = format!(
            "{prefix}{}",
            std::path::Path::new(&f)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| f.clone())
        );
        let bytes = match std::fs::read(&f) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("upload_blobs: reading {f}: {e}");
                return ExitCode::from(1);
            }
        };
        let size = bytes.len();
        if let Err(e) = client
            .put_blob(&container, &name, bytes, "application/octet-stream")
            .await
        {
            eprintln!("upload_blobs: {e}");
            return ExitCode::from(1);
        }
        println!("uploaded {name} ({size} bytes)");
    }
    ExitCode::SUCCESS
}
