//! Typed, content-addressed identifiers.
//!
//! `job_id` is the sha256 of the canonical JSON of `{"job_type": ..., **params}` written exactly as
//! Python's `json.dumps(..., sort_keys=True)` writes it, so ids match the earlier implementation.
//! `task_id` hashes (job_id, stage, logical unit), so a retried stage creates the same ids.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::canonical_json::python_json;

/// Why an id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be 64 lowercase hex characters, got {shown:?}")]
pub struct IdError {
    /// "job_id" or "task_id".
    pub kind: &'static str,
    /// The first 80 characters of what was received.
    pub shown: String,
}

fn parse_hex64(kind: &'static str, s: &str) -> Result<String, IdError> {
    let t = s.trim();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(IdError {
            kind,
            shown: s.chars().take(80).collect(),
        })
    }
}

macro_rules! hex_id {
    ($name:ident, $kind:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and normalises (lowercase) a 64-hex id.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                parse_hex64($kind, s).map(Self)
            }
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    JobId,
    "job_id",
    "A job id: sha256 hex of the job's canonical definition."
);
hex_id!(
    TaskId,
    "task_id",
    "A task id: sha256 hex of (job_id, attempt, stage, logical unit)."
);

impl JobId {
    /// Derives the id from the job type and its validated parameters (the ones that define the job).
    pub fn derive(job_type: &str, id_params: &serde_json::Map<String, Value>) -> Self {
        let mut obj = serde_json::Map::new();
        obj.insert("job_type".into(), Value::String(job_type.to_string()));
        for (k, v) in id_params {
            obj.insert(k.clone(), v.clone());
        }
        let canonical = python_json(&Value::Object(obj));
        JobId(hex::encode(Sha256::digest(canonical.as_bytes())))
    }
}

impl TaskId {
    /// Derives a task id. Attempt 1 hashes `"{job_id}|s{stage}|{unit}"` (the earlier recipe, full
    /// length); a resubmitted attempt adds `|a{attempt}` so it never collides with the first one's rows.
    pub fn derive(job_id: &JobId, job_attempt: i32, stage: i32, unit: &str) -> Self {
        let text = if job_attempt <= 1 {
            format!("{job_id}|s{stage}|{unit}")
        } else {
            format!("{job_id}|a{job_attempt}|s{stage}|{unit}")
        };
        TaskId(hex::encode(Sha256::digest(text.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hello_world_defaults_match_the_earlier_implementation() {
        let p = json!({"n": 3, "message": "Hello World"});
        let id = JobId::derive("hello_world", p.as_object().unwrap());
        assert_eq!(
            id.as_str(),
            "149580b8d06f0036537a68bbf149ba9f4e72160438cab4c08ce63591081a61e1"
        );
    }

    #[test]
    fn ids_are_validated_and_lowercased() {
        let up = "A".repeat(64);
        assert_eq!(JobId::parse(&up).unwrap().as_str(), "a".repeat(64));
        assert!(JobId::parse("abc").is_err());
        assert!(JobId::parse(&"g".repeat(64)).is_err());
        assert!(TaskId::parse(&format!("{}'; drop table x;--", "a".repeat(40))).is_err());
    }

    #[test]
    fn task_ids_are_not_prefixes_of_the_job_id_and_differ_per_attempt() {
        let j = JobId::parse(&"ab".repeat(32)).unwrap();
        let t1 = TaskId::derive(&j, 1, 1, "0");
        let t2 = TaskId::derive(&j, 2, 1, "0");
        assert_ne!(t1, t2);
        assert!(!t1.as_str().starts_with(&j.as_str()[..8]));
        assert_eq!(t1, TaskId::derive(&j, 1, 1, "0"));
    }
}
