//! [`WorkDir`]: the local directory a geospatial task works in (the blob's copy, GDAL's output
//! and spill), one per task and removed when the task ends, however it ends.

use std::path::{Path, PathBuf};

use crate::jobs::{TaskContext, TaskError};

/// The parent of the work directories: `configured`, else the directory the setting `env_var`
/// names (empty = not set), else the system's temporary directory.
pub(crate) fn base_dir(configured: Option<&Path>, env_var: &str) -> PathBuf {
    configured
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os(env_var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(std::env::temp_dir)
}

/// A task's own directory, removed on drop (success, failure or panic alike).
pub(crate) struct WorkDir(PathBuf);

impl WorkDir {
    /// Creates `coremachine-{kind}-{task_id}-{random}` under `configured`, else under the
    /// directory the setting `env_var` names (empty = not set), else the system's temporary
    /// directory. Failing to create it is transient: a full or read-only disk can clear up.
    pub(crate) fn create(
        configured: Option<&Path>,
        env_var: &str,
        kind: &str,
        ctx: &TaskContext,
    ) -> Result<Self, TaskError> {
        let base = base_dir(configured, env_var);
        let dir = base.join(format!(
            "coremachine-{kind}-{}-{}",
            ctx.task_id,
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| {
            TaskError::transient(
                "LocalIo",
                format!(
                    "task {}: creating work directory {}: {e}",
                    ctx.task_id,
                    dir.display()
                ),
            )
        })?;
        Ok(Self(dir))
    }

    /// A file of this directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
