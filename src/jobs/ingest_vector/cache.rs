//! The process's copies of source blobs: prepare and every load chunk of a job read the same
//! blob, so a process downloads it once and its concurrent and later tasks open that copy.
//!
//! An entry is keyed by work directory, container, blob, ETag (else Last-Modified) and local
//! file name: a blob replaced in storage has another ETag, so it is downloaded again and the
//! stale copy dropped. The first task to want an entry downloads it while the others for the same
//! key wait on the entry's lock; a failed download leaves the entry empty for the next try. A
//! copy's directory is removed when it has left the cache (finalize_table forgets the job's blob,
//! or a newer version or [`MAX_ENTRIES`] pushed it out) and no task holds it any more; a
//! process's first download removes the day-old copies of processes that died holding theirs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use crate::jobs::TaskError;
use crate::jobs::list_container_contents::handlers::task_error;
use crate::storage::BlobClient;
use crate::storage::transfer;

/// Copies kept at most (oldest first out); one job needs one.
const MAX_ENTRIES: usize = 4;

/// A downloaded blob; its directory is removed when the last holder drops it.
#[derive(Debug)]
pub(crate) struct CachedBlob {
    dir: PathBuf,
    /// The local file.
    pub(crate) path: PathBuf,
    /// Its size in bytes.
    pub(crate) size: u64,
}

impl Drop for CachedBlob {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<CachedBlob>>>>;

struct Entry {
    /// `base`, container and blob: what [`forget`] and a newer version match.
    blob: (PathBuf, String, String),
    slot: Slot,
    order: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    next: u64,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Mutex::default);

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    CACHE.lock().unwrap_or_else(|p| p.into_inner())
}

/// How old a cache directory left by a dead process must be before a new process removes it.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes, once per process and base, the cache directories that processes killed before their
/// job's finalize_table left behind (older than [`STALE_AFTER`]: a live process's copies are
/// younger than its job). Best effort.
fn sweep_stale(base: &Path) {
    static SWEPT: LazyLock<Mutex<Vec<PathBuf>>> = LazyLock::new(Mutex::default);
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|p| p.into_inner());
        if swept.iter().any(|b| b == base) {
            return;
        }
        swept.push(base.to_path_buf());
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let stale = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(DIR_PREFIX))
            && e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_AFTER);
        if stale {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

const DIR_PREFIX: &str = "coremachine-vector-cache-";

/// The local copy of `container/blob` under `base`, downloaded unless this process has it.
/// `what` names the task for error messages.
pub(crate) async fn get(
    client: &BlobClient,
    base: &Path,
    container: &str,
    blob: &str,
    local_name: &str,
    what: &str,
) -> Result<Arc<CachedBlob>, TaskError> {
    let props = client.get_properties(container, blob).await.map_err(|e| {
        task_error(
            e,
            format!("reading the properties of {container}/{blob} {what}"),
        )
    })?;
    let version = props
        .etag
        .or(props.last_modified)
        .unwrap_or_else(|| format!("size {}", props.size));
    let key = format!(
        "{}\n{container}\n{blob}\n{version}\n{local_name}",
        base.display()
    );
    let slot = {
        let mut c = lock();
        let same_blob = (base.to_path_buf(), container.to_string(), blob.to_string());
        // A newer version of the blob replaces the older copies.
        c.entries.retain(|k, e| *k == key || e.blob != same_blob);
        if !c.entries.contains_key(&key) {
            while c.entries.len() >= MAX_ENTRIES {
                let oldest = c
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.order)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => c.entries.remove(&k),
                    None => break,
                };
            }
            c.next += 1;
            let order = c.next;
            c.entries.insert(
                key.clone(),
                Entry {
                    blob: same_blob,
                    slot: Slot::default(),
                    order,
                },
            );
        }
        c.entries[&key].slot.clone()
    };
    let mut held = slot.lock().await;
    if let Some(b) = held.as_ref().filter(|b| b.path.exists()) {
        return Ok(b.clone());
    }
    sweep_stale(base);
    let dir = base.join(format!("{DIR_PREFIX}{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| {
        TaskError::transient(
            "LocalIo",
            format!("{what}: creating cache directory {}: {e}", dir.display()),
        )
    })?;
    let path = dir.join(local_name);
    let props = match transfer::download_to_file(client, container, blob, &path).await {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(task_error(
                e,
                format!("downloading {container}/{blob} {what}"),
            ));
        }
    };
    let copy = Arc::new(CachedBlob {
        dir,
        path,
        size: props.size,
    });
    *held = Some(copy.clone());
    Ok(copy)
}

/// Drops this process's copies of `container/blob` under `base` (removed once no task holds them).
pub(crate) fn forget(base: &Path, container: &str, blob: &str) {
    let same_blob = (base.to_path_buf(), container.to_string(), blob.to_string());
    lock().entries.retain(|_, e| e.blob != same_blob);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_process_removes_only_day_old_cache_directories() {
        let base = std::env::temp_dir().join(format!("cm-sweep-{}", uuid::Uuid::new_v4().simple()));
        let old = base.join(format!("{DIR_PREFIX}dead"));
        let fresh = base.join(format!("{DIR_PREFIX}alive"));
        let other = base.join("someone-elses-old-dir");
        for d in [&old, &fresh, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        let two_days_ago = std::time::SystemTime::now() - 2 * STALE_AFTER;
        for d in [&old, &other] {
            std::fs::File::open(d)
                .unwrap()
                .set_modified(two_days_ago)
                .unwrap();
        }
        sweep_stale(&base);
        assert!(!old.exists(), "a dead process's day-old copy is removed");
        assert!(fresh.exists(), "a recent copy may belong to a live process");
        assert!(
            other.exists(),
            "only CoreMachine's cache directories are touched"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
