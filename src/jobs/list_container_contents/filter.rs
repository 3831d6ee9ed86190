//! The `filter` parameter: prefix (sent to the service), extensions and a size window (applied to
//! each listed blob), plus the container naming rule used to validate `container_name`.

use serde_json::{Map, Value};

use crate::storage::BlobItem;

const MB: f64 = 1024.0 * 1024.0;

/// A validated filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlobFilter {
    /// Name prefix (service-side).
    pub prefix: Option<String>,
    /// Lowercase extensions without the dot; empty = any.
    pub extensions: Vec<String>,
    /// Minimum size in bytes (inclusive).
    pub min_size: Option<u64>,
    /// Maximum size in bytes (inclusive).
    pub max_size: Option<u64>,
}

impl BlobFilter {
    /// Reads the validated `filter` object (absent = match everything).
    pub fn from_params(filter: Option<&Value>) -> Self {
        let Some(f) = filter.and_then(Value::as_object) else {
            return Self::default();
        };
        let mb = |k: &str| f.get(k).and_then(Value::as_f64).map(|m| (m * MB) as u64);
        Self {
            prefix: f
                .get("prefix")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .map(str::to_string),
            extensions: f
                .get("extensions")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(normalise_extension)
                        .collect()
                })
                .unwrap_or_default(),
            min_size: mb("min_size_mb"),
            max_size: mb("max_size_mb"),
        }
    }

    /// Whether some of the filter runs on the client (so a page may hold fewer matches than blobs).
    pub fn filters_client_side(&self) -> bool {
        !self.extensions.is_empty() || self.min_size.is_some() || self.max_size.is_some()
    }

    /// Whether a listed blob passes the extension and size filters (the prefix was applied by
    /// the service).
    pub fn matches(&self, b: &BlobItem) -> bool {
        if !self.extensions.is_empty() && !self.extensions.contains(&extension(&b.name)) {
            return false;
        }
        self.min_size.is_none_or(|m| b.size >= m) && self.max_size.is_none_or(|m| b.size <= m)
    }
}

/// `.TIF` / `tif` → `tif`.
pub fn normalise_extension(e: &str) -> String {
    e.trim().trim_start_matches('.').to_ascii_lowercase()
}

/// The lowercase extension of a blob name (`raw/a.b/C.TIF` → `tif`; none → empty).
pub fn extension(name: &str) -> String {
    let file = name.rsplit('/').next().unwrap_or(name);
    match file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// Azure's container naming rules: 3-63 characters of lowercase letters, digits and hyphens,
/// starting with a letter or digit, no two hyphens in a row, not ending with a hyphen; or one
/// of the special containers `$root`, `$web`, `$logs`.
pub fn check_container_name(s: &str) -> Result<(), (&'static str, String)> {
    if ["$root", "$web", "$logs"].contains(&s) {
        return Ok(());
    }
    let rule = "container_name";
    let len = s.chars().count();
    if !(3..=63).contains(&len) {
        return Err((rule, format!("must be 3 to 63 characters long, got {len}")));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err((
            rule,
            format!("may contain only lowercase letters, digits and hyphens, found {c:?}"),
        ));
    }
    if s.starts_with('-') {
        return Err((rule, "must start with a letter or digit".into()));
    }
    if s.ends_with('-') {
        return Err((rule, "must not end with a hyphen".into()));
    }
    if s.contains("--") {
        return Err((rule, "must not contain two hyphens in a row".into()));
    }
    Ok(())
}

/// Each entry of `filter.extensions`: 1-16 letters or digits, with or without a leading dot.
pub fn check_extension(s: &str) -> Result<(), (&'static str, String)> {
    let e = s.strip_prefix('.').unwrap_or(s);
    if (1..=16).contains(&e.len()) && e.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err((
            "extension",
            "an extension is 1-16 letters or digits, with or without a leading dot (\"tif\", \".tif\")"
                .into(),
        ))
    }
}

/// Cross-field check: `filter.min_size_mb` must not exceed `filter.max_size_mb`.
pub fn check_size_window(params: &Map<String, Value>) -> Option<crate::jobs::FieldError> {
    let f = params.get("filter")?.as_object()?;
    let min = f.get("min_size_mb")?.as_f64()?;
    let max = f.get("max_size_mb")?.as_f64()?;
    (min > max).then(|| crate::jobs::FieldError {
        field: "filter.min_size_mb".into(),
        rule: "not_above_max".into(),
        value: f["min_size_mb"].clone(),
        message: format!("must not be greater than filter.max_size_mb ({max})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn blob(name: &str, size: u64) -> BlobItem {
        BlobItem {
            name: name.into(),
            size,
            content_type: None,
            last_modified: None,
            etag: None,
            blob_type: None,
        }
    }

    #[test]
    fn container_names_follow_azure_rules() {
        for ok in [
            "abc",
            "rmhazuregeobronze",
            "a-b-1",
            "$root",
            &"a".repeat(63),
        ] {
            assert!(check_container_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "a_b",
            "-ab",
            "ab-",
            "a--b",
            "a.b",
            &"a".repeat(64),
            "ünï",
        ] {
            assert!(check_container_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn extensions_and_sizes_filter_blobs() {
        let f = BlobFilter::from_params(Some(&json!({
            "extensions": [".TIF", "tiff"], "min_size_mb": 1, "max_size_mb": 2
        })));
        assert!(f.filters_client_side());
        assert!(f.matches(&blob("a/b.tif", 1024 * 1024)));
        assert!(f.matches(&blob("a/b.TIFF", 2 * 1024 * 1024)));
        assert!(!f.matches(&blob("a/b.tif", 1024 * 1024 - 1)));
        assert!(!f.matches(&blob("a/b.tif", 2 * 1024 * 1024 + 1)));
        assert!(!f.matches(&blob("a/b.png", 1024 * 1024)));
        assert!(!f.matches(&blob("a.tif/readme", 1024 * 1024)));
        assert!(!BlobFilter::from_params(None).filters_client_side());
    }

    #[test]
    fn extension_of_names() {
        assert_eq!(extension("raw/a.b/C.TIF"), "tif");
        assert_eq!(extension("raw/.hidden"), "");
        assert_eq!(extension("noext"), "");
        assert_eq!(extension("x.tar.gz"), "gz");
    }
}
