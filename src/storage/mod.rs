//! Azure Blob Storage: a small REST client (list with prefix and continuation, properties, byte
//! ranges), authorised by Shared Key from a connection string (Azurite, local development) or by
//! a managed-identity token (scope `https://storage.azure.com/.default`) in Azure.
//!
//! # Layout
//! - [`client`]: [`BlobClient`], the REST calls.
//! - [`connection_string`]: `AZURE_STORAGE_CONNECTION_STRING` parsing.
//! - [`shared_key`]: Shared Key request signing.
//! - [`error`]: [`StorageError`], naming account, container and blob.
//! - `list_xml`: the List Blobs response body.

pub mod client;
pub mod connection_string;
pub mod error;
mod list_xml;
pub mod shared_key;

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

/// The client the settings describe: Shared Key or SAS from a connection string, or managed
/// identity for `STORAGE_ACCOUNT_NAME`.
pub fn client_from_settings(
    s: &crate::config::StorageSettings,
) -> Result<BlobClient, StorageError> {
    match s {
        crate::config::StorageSettings::ConnectionString(cs) => {
            let cs = ConnectionString::parse(cs).map_err(|e| StorageError::Service {
                account: "(unknown)".into(),
                target: "the storage account".into(),
                status: None,
                operation: "read AZURE_STORAGE_CONNECTION_STRING".into(),
                message: e.to_string(),
                retryable: false,
            })?;
            BlobClient::from_connection_string(&cs)
        }
        crate::config::StorageSettings::ManagedIdentity {
            account_name,
            client_id,
        } => {
            let mi =
                crate::azure::credential::ManagedIdentity::new(client_id.clone()).map_err(|e| {
                    StorageError::Service {
                        account: account_name.clone(),
                        target: "the storage account".into(),
                        status: None,
                        operation: "set up managed identity".into(),
                        message: e.to_string(),
                        retryable: false,
                    }
                })?;
            BlobClient::with_token_source(account_name, std::sync::Arc::new(mi))
        }
    }
}
