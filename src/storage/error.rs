//! Blob Storage errors: each names the storage account and the container (and blob) it is about,
//! says what was attempted, and says whether trying again later can help.

/// A failed Blob Storage call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The container does not exist.
    #[error(
        "container {container:?} does not exist in storage account {account:?} ({operation}: {message})"
    )]
    ContainerNotFound {
        /// Storage account.
        account: String,
        /// Container.
        container: String,
        /// What was attempted.
        operation: String,
        /// The service's message.
        message: String,
    },
    /// The blob does not exist (or no longer does).
    #[error(
        "blob {blob:?} does not exist in container {container:?} of storage account {account:?} ({operation}: {message})"
    )]
    BlobNotFound {
        /// Storage account.
        account: String,
        /// Container.
        container: String,
        /// Blob name.
        blob: String,
        /// What was attempted.
        operation: String,
        /// The service's message.
        message: String,
    },
    /// The credential is not allowed to do this (HTTP 403, or 401 after a token refresh).
    #[error(
        "access denied to {target} of storage account {account:?} (HTTP {status}, {operation}): {message}; the identity needs the Storage Blob Data Reader role on the container or account, or the account key must be right"
    )]
    AccessDenied {
        /// Storage account.
        account: String,
        /// `container "bronze"` or `blob "a.tif" in container "bronze"`.
        target: String,
        /// HTTP status.
        status: u16,
        /// What was attempted.
        operation: String,
        /// The service's message.
        message: String,
    },
    /// Any other failure: a rejected request, transient failures until the retries ran out, a
    /// connection that could not be made, a credential that could not be obtained.
    #[error("{operation} on {target} of storage account {account:?} failed{}: {message} ({})",
        status.map(|s| format!(" with HTTP {s}")).unwrap_or_default(),
        if *retryable { "transient" } else { "permanent" })]
    Service {
        /// Storage account.
        account: String,
        /// What the call was about.
        target: String,
        /// HTTP status of the last response, if one arrived.
        status: Option<u16>,
        /// What was attempted.
        operation: String,
        /// The service's message or the client error.
        message: String,
        /// Whether trying again later can succeed.
        retryable: bool,
    },
    /// The service answered 2xx with something that cannot be read.
    #[error(
        "{operation} on {target} of storage account {account:?}: unreadable response: {reason}"
    )]
    InvalidResponse {
        /// Storage account.
        account: String,
        /// What the call was about.
        target: String,
        /// What was attempted.
        operation: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl StorageError {
    /// Whether trying again later can succeed (throttling, 5xx, timeouts, connection errors).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StorageError::Service {
                retryable: true,
                ..
            }
        )
    }

    /// A short name for grouping failures (stored as the task's error type).
    pub fn error_type(&self) -> &'static str {
        match self {
            StorageError::ContainerNotFound { .. } => "ContainerNotFound",
            StorageError::BlobNotFound { .. } => "BlobNotFound",
            StorageError::AccessDenied { .. } => "StorageAccessDenied",
            StorageError::Service {
                retryable: true, ..
            } => "StorageUnavailable",
            StorageError::Service { .. } => "StorageRequestFailed",
            StorageError::InvalidResponse { .. } => "StorageInvalidResponse",
        }
    }
}
