//! The outcome of a guarded update (`UPDATE ... WHERE status = <expected> RETURNING ...`).
//!
//! A guard that matches no row is an answer, not an error: the row was not in the state the caller
//! expected (a duplicate, a stale message, another worker got there first). Repositories return
//! [`Guarded`] so the caller must say what it does in each case.

/// What a guarded update did.
#[must_use = "a guarded update that did not apply must be handled"]
#[derive(Debug, Clone, PartialEq)]
pub enum Guarded<T, A = ()> {
    /// The guard matched: the row as the update left it.
    Applied(T),
    /// The guard matched nothing: the row's actual state (`None` inside `A` when it does not exist).
    NotApplied(A),
}

impl<T, A> Guarded<T, A> {
    /// Whether the update applied.
    pub fn applied(&self) -> bool {
        matches!(self, Guarded::Applied(_))
    }
}
