//! The domain's vocabulary, below every other room: ids, statuses and the transition tables.
//!
//! Nothing here imports anything of the crate outside `model`; the store reads and writes these
//! types directly (`ToSql`/`FromSql` in [`sql_text`]), so a status or an id is never a bare
//! string between the database and the engine.

pub(crate) mod canonical_json;
pub mod ids;
mod sql_text;
pub mod state;

pub use ids::{IdError, JobId, TaskId};
pub use state::{JobStatus, StageStatus, TaskStatus, UnknownStatus};
