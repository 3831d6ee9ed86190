//! How job types that read blobs reach Azure Blob Storage: a connection string (account key or
//! SAS; Azurite) or a storage account with the managed identity.

use super::ConfigError;

/// How job types that read blobs reach Azure Blob Storage.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageSettings {
    /// `AZURE_STORAGE_CONNECTION_STRING`: account key (Shared Key signing) or SAS; what Azurite and
    /// local development use. Validated when read; never printed.
    ConnectionString(String),
    /// `STORAGE_ACCOUNT_NAME`: managed identity, token scope `https://storage.azure.com/.default`.
    ManagedIdentity {
        /// Storage account name.
        account_name: String,
        /// `STORAGE_MANAGED_IDENTITY_CLIENT_ID`: a user-assigned identity (None: system-assigned).
        client_id: Option<String>,
    },
}

impl std::fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageSettings::ConnectionString(_) => f.write_str("ConnectionString(***)"),
            StorageSettings::ManagedIdentity {
                account_name,
                client_id,
            } => f
                .debug_struct("ManagedIdentity")
                .field("account_name", account_name)
                .field("client_id", client_id)
                .finish(),
        }
    }
}

impl StorageSettings {
    /// Reads the storage variables through `get`; None when neither is set. A connection string
    /// wins over an account name.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let set = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(cs) = set("AZURE_STORAGE_CONNECTION_STRING") {
            crate::storage::ConnectionString::parse(&cs).map_err(|e| ConfigError::Invalid {
                name: "AZURE_STORAGE_CONNECTION_STRING",
                reason: e.to_string(),
            })?;
            return Ok(Some(Self::ConnectionString(cs)));
        }
        let Some(account_name) = set("STORAGE_ACCOUNT_NAME") else {
            return Ok(None);
        };
        let account_name = account_name.trim().to_string();
        if !(3..=24).contains(&account_name.len())
            || !account_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(ConfigError::Invalid {
                name: "STORAGE_ACCOUNT_NAME",
                reason: format!(
                    "{account_name:?} is not a storage account name (3-24 lowercase letters and digits)"
                ),
            });
        }
        Ok(Some(Self::ManagedIdentity {
            account_name,
            client_id: set("STORAGE_MANAGED_IDENTITY_CLIENT_ID").map(|c| c.trim().to_string()),
        }))
    }
}
