//! Moving whole blobs to and from local files in bounded memory: downloads in ranged reads,
//! uploads in staged blocks, each chunk [`CHUNK_BYTES`] at most. Used by the raster job, whose
//! GDAL work runs on local files.

use std::path::Path;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BlobClient, BlobProperties, StorageError};

/// Bytes per ranged read and per staged block (8 MiB: 25 000 blocks, the service's limit, make
/// ~195 GiB).
pub const CHUNK_BYTES: u64 = 8 * 1024 * 1024;

fn local_io(
    client: &BlobClient,
    container: &str,
    blob: &str,
    what: &str,
    e: std::io::Error,
) -> StorageError {
    StorageError::Service {
        account: client.account().to_string(),
        target: format!("{container}/{blob}"),
        status: None,
        operation: what.to_string(),
        message: e.to_string(),
        retryable: false,
    }
}

/// Downloads `container/blob` into `path` (created or truncated); returns its properties.
pub async fn download_to_file(
    client: &BlobClient,
    container: &str,
    blob: &str,
    path: &Path,
) -> Result<BlobProperties, StorageError> {
    let props = client.get_properties(container, blob).await?;
    let size = props.size;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| local_io(client, container, blob, "create the local copy", e))?;
    let mut offset = 0;
    while offset < size {
        let bytes = client
            .read_range(container, blob, offset, CHUNK_BYTES.min(size - offset))
            .await?;
        if bytes.is_empty() {
            // The blob shrank while it was read: what is here is not the blob that was listed.
            return Err(StorageError::Service {
                account: client.account().to_string(),
                target: format!("{container}/{blob}"),
                status: None,
                operation: format!("read bytes from {offset}"),
                message: format!(
                    "the blob ended at {offset} bytes, {size} were expected (changed while reading)"
                ),
                retryable: true,
            });
        }
        file.write_all(&bytes)
            .await
            .map_err(|e| local_io(client, container, blob, "write the local copy", e))?;
        offset += bytes.len() as u64;
    }
    file.flush()
        .await
        .map_err(|e| local_io(client, container, blob, "write the local copy", e))?;
    Ok(props)
}

/// Uploads `path` as the block blob `container/blob` with `content_type`, replacing any blob of
/// that name: one Put Blob when it fits one chunk, else staged blocks and one Put Block List.
pub async fn upload_file(
    client: &BlobClient,
    container: &str,
    blob: &str,
    path: &Path,
    content_type: &str,
) -> Result<u64, StorageError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| local_io(client, container, blob, "open the local file", e))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| local_io(client, container, blob, "stat the local file", e))?
        .len();
    let mut ids = Vec::new();
    let mut total = 0u64;
    loop {
        let mut chunk = Vec::with_capacity(CHUNK_BYTES.min(size.max(1)) as usize);
        (&mut file)
            .take(CHUNK_BYTES)
            .read_to_end(&mut chunk)
            .await
            .map_err(|e| local_io(client, container, blob, "read the local file", e))?;
        if size <= CHUNK_BYTES {
            client
                .put_blob(container, blob, chunk, content_type)
                .await?;
            return Ok(size);
        }
        if chunk.is_empty() {
            break;
        }
        total += chunk.len() as u64;
        let id =
            base64::engine::general_purpose::STANDARD.encode(format!("block-{:08}", ids.len()));
        client.put_block(container, blob, &id, chunk).await?;
        ids.push(id);
    }
    client
        .put_block_list(container, blob, &ids, content_type)
        .await?;
    Ok(total)
}
