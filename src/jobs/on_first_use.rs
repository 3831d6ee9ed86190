//! [`OnFirstUse`]: a dependency of task handlers (a Blob client, a database pool) that is either
//! given (tests, embedding) or built once, on first use, from the process settings, so a
//! process that never runs those handlers never needs their settings.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::OnceCell;

/// A value given up front or built by the first caller; a build error is kept and returned to
/// every caller (settings do not fix themselves). Cheap to clone.
pub struct OnFirstUse<T>(Arc<OnceCell<Result<T, String>>>);

impl<T> Clone for OnFirstUse<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Clone> OnFirstUse<T> {
    /// Always `value`.
    pub fn fixed(value: T) -> Self {
        Self(Arc::new(OnceCell::new_with(Some(Ok(value)))))
    }

    /// Built by the first [`Self::get`].
    pub fn unset() -> Self {
        Self(Arc::new(OnceCell::new()))
    }

    /// The value, building it with `build` if nobody has yet.
    pub async fn get<F, Fut>(&self, build: F) -> Result<T, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        self.0.get_or_init(build).await.clone()
    }
}
