//! Shared Azure plumbing for every Azure-facing client (Service Bus, PostgreSQL, Blob Storage):
//!
//! - [`retry`]: one retry classification for every Azure HTTP call, and
//!   [`retry::send_with_retry`] over `reqwest`.
//! - [`credential`]: the [`credential::TokenSource`] trait, a per-scope cache refreshed before
//!   expiry, and managed identity through `azure_identity`.
//! - [`breaker`]: a circuit breaker per endpoint, consulted by [`retry::send_with_retry`].
//! - [`redact`]: the one function that strips SAS query strings and secret pairs from error text.

pub(crate) mod breaker;
pub mod credential;
pub(crate) mod redact;
pub mod retry;

/// An error and its causes, `: `-separated, skipping causes already contained in the text.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
