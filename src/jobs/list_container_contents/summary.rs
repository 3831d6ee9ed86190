//! The container summary built from the per-blob analyses (by finalize, and by the diamond's
//! fan-in task): totals, counts by extension, largest file, TIFF/COG counts, success rate, and the
//! blobs whose analysis failed.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// A blob whose analysis task failed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailedBlob {
    /// The blob, when the error names it.
    pub blob_name: Option<String>,
    /// The failed task.
    pub task_id: String,
    /// Its position in the stage.
    pub task_index: i32,
    /// The task's error.
    pub error: String,
}

/// The marker an analysis failure starts with, followed by the JSON-quoted blob name. Lets the
/// summary name the blob from the task's stored error text.
pub const FAILED_BLOB_MARKER: &str = "analysis of blob ";

/// The blob named by an analysis error (`… analysis of blob "raw/a.tif" failed: …`).
pub fn blob_name_from_error(error: &str) -> Option<String> {
    let at = error.find(FAILED_BLOB_MARKER)? + FAILED_BLOB_MARKER.len();
    serde_json::Deserializer::from_str(&error[at..])
        .into_iter::<String>()
        .next()?
        .ok()
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0) * 1000.0).round() / 1000.0
}

/// Summarises `results` (the `analyze_single_blob` results) and `failed`.
pub fn summarize<'a>(
    container: &str,
    results: impl IntoIterator<Item = &'a Value>,
    failed: &[FailedBlob],
) -> Value {
    let mut analyzed = 0u64;
    let mut total = 0u64;
    let mut by_ext: BTreeMap<String, u64> = BTreeMap::new();
    let mut bytes_by_ext: BTreeMap<String, u64> = BTreeMap::new();
    let mut largest: Option<(String, u64)> = None;
    let (mut tiffs, mut bigtiffs, mut cogs) = (0u64, 0u64, 0u64);
    for r in results {
        analyzed += 1;
        let size = r.get("size_bytes").and_then(Value::as_u64).unwrap_or(0);
        let name = r.get("blob_name").and_then(Value::as_str).unwrap_or("");
        total += size;
        let ext = match r.get("extension").and_then(Value::as_str) {
            Some("") | None => "(none)".to_string(),
            Some(e) => e.to_string(),
        };
        *by_ext.entry(ext.clone()).or_default() += 1;
        *bytes_by_ext.entry(ext).or_default() += size;
        if largest
            .as_ref()
            .is_none_or(|(n, s)| size > *s || (size == *s && name < n.as_str()))
        {
            largest = Some((name.to_string(), size));
        }
        if let Some(t) = r.get("tiff").filter(|t| t.get("format").is_some()) {
            tiffs += 1;
            if t.get("format").and_then(Value::as_str) == Some("BigTIFF") {
                bigtiffs += 1;
            }
            if t.get("looks_like_cog").and_then(Value::as_bool) == Some(true) {
                cogs += 1;
            }
        }
    }
    let attempted = analyzed + failed.len() as u64;
    let success_rate =
        (attempted > 0).then(|| (analyzed as f64 / attempted as f64 * 1000.0).round() / 10.0);
    json!({
        "container_name": container,
        "total_files": attempted,
        "analyzed_files": analyzed,
        "failed_files": failed.len(),
        "total_size_bytes": total,
        "total_size_mb": mb(total),
        "file_types": by_ext,
        "bytes_by_extension": bytes_by_ext,
        "largest_file": largest.map(|(name, size)| json!({"name": name, "size_bytes": size, "size_mb": mb(size)})),
        "tiff_files": tiffs,
        "bigtiff_files": bigtiffs,
        "cog_count": cogs,
        "success_rate": success_rate,
        "failed_blobs": failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_counts_largest_and_rate() {
        let results = [
            json!({"blob_name": "a.tif", "size_bytes": 10, "extension": "tif", "tiff": {"format": "TIFF", "looks_like_cog": true}}),
            json!({"blob_name": "b.tif", "size_bytes": 30, "extension": "tif", "tiff": {"format": "BigTIFF", "looks_like_cog": false}}),
            json!({"blob_name": "c", "size_bytes": 5, "extension": "", "tiff": null}),
        ];
        let failed = [FailedBlob {
            blob_name: Some("d.txt".into()),
            task_id: "t".into(),
            task_index: 3,
            error: "gone".into(),
        }];
        let s = summarize("bronze", &results, &failed);
        assert_eq!(s["total_files"], 4);
        assert_eq!(s["analyzed_files"], 3);
        assert_eq!(s["total_size_bytes"], 45);
        assert_eq!(s["file_types"], json!({"(none)": 1, "tif": 2}));
        assert_eq!(s["largest_file"]["name"], "b.tif");
        assert_eq!(
            (
                s["tiff_files"].clone(),
                s["bigtiff_files"].clone(),
                s["cog_count"].clone()
            ),
            (json!(2), json!(1), json!(1))
        );
        assert_eq!(s["success_rate"], 75.0);
        assert_eq!(s["failed_blobs"][0]["blob_name"], "d.txt");
    }

    #[test]
    fn an_empty_container_has_no_rate_and_no_largest_file() {
        let s = summarize("empty", &[], &[]);
        assert_eq!(s["total_files"], 0);
        assert_eq!(s["largest_file"], Value::Null);
        assert_eq!(s["success_rate"], Value::Null);
    }

    #[test]
    fn the_blob_is_recovered_from_a_stored_error() {
        let stored = r#"[permanent] BlobNotFound: analysis of blob "raw/\"odd\" ü.tif" failed: blob gone (permanent error after 1 attempt(s))"#;
        assert_eq!(
            blob_name_from_error(stored).as_deref(),
            Some("raw/\"odd\" ü.tif")
        );
        assert_eq!(blob_name_from_error("something else"), None);
    }
}
