//! The HTTP server moved to [`crate::startup::server`] (every mode runs it); its body-read
//! timeout error is still named here by `api/input.rs`.

pub(crate) use crate::startup::server::BodyReadTimeout;
