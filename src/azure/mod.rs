//! Shared Azure plumbing for every Azure-facing client (Service Bus, PostgreSQL, Blob Storage):
//!
//! - [`retry`]: one retry classification for every Azure HTTP call, and
//!   [`retry::send_with_retry`] over `reqwest`.
//! - [`credential`]: the [`credential::TokenSource`] trait, a per-scope cache refreshed before
//!   expiry, and managed identity through `azure_identity`.

pub mod credential;
pub mod retry;
