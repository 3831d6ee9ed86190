//! Azure Blob Storage: a small REST client (list with prefix and continuation, properties, byte
//! ranges), authorised by Shared Key from a connection string (Azurite, local development) or by
//! a managed-identity token (scope `https://storage.azure.com/.default`) in Azure.
//!
//! Why not the `azure_storage_blob` crate: its 1.1 clients take only an Entra ID
//! `TokenCredential` (and refuse it over plain http), with no Shared Key signing, so they cannot
//! talk to Azurite with its account key, which is what tests and local development use. The four
//! calls needed here are small enough to own; retries and tokens are the shared
//! [`crate::azure::retry`] and [`crate::azure::credential`].
//!
//! # Layout
//! - [`client`]: [`BlobClient`], the REST calls.
//! - [`connection_string`]: `AZURE_STORAGE_CONNECTION_STRING` parsing.
//! - [`shared_key`]: Shared Key request signing.
//! - [`error`]: [`StorageError`], naming account, container and blob.
//! - [`transfer`]: whole blobs to and from local files in bounded memory.
//! - `list_xml`: the List Blobs response body.

pub mod client;
pub mod connection_string;
pub mod error;
mod list_xml;
mod shared_key;
pub mod transfer;

pub use client::{BlobClient, BlobProperties, ListOptions, MAX_PAGE_SIZE, STORAGE_SCOPE};
pub use connection_string::ConnectionString;
pub use error::StorageError;

/// One blob of a listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlobItem {
    /// Full blob name (with any `folder/` prefix).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Content-Type, when set.
    pub content_type: Option<String>,
    /// Last modification time (RFC 3339, UTC).
    pub last_modified: Option<String>,
    /// ETag.
    pub etag: Option<String>,
    /// BlockBlob, PageBlob or AppendBlob.
    pub blob_type: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobPage {
    /// Blobs of this page, in name order.
    pub items: Vec<BlobItem>,
    /// Continuation marker for the next page (None on the last page).
    pub next_marker: Option<String>,
}
