//! `ToSql`/`FromSql` for the model's text-valued types.
//!
//! Statuses travel as text (the statements cast `status::text` and `$n::text::app.job_status`) or
//! as the database's own enum type; ids are text. Reading a value that does not parse (a status
//! this build does not know, a malformed id) is an error naming the value, never a panic.

use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::ids::{JobId, TaskId};
use super::state::{JobStatus, StageStatus, TaskStatus};

/// Whether `ty` carries text: the text types, or the database enum named `enum_name`.
fn text_like(ty: &Type, enum_name: Option<&str>) -> bool {
    <&str as ToSql>::accepts(ty) || enum_name.is_some_and(|n| ty.name() == n)
}

macro_rules! text_sql {
    ($ty:ty, $enum_name:expr, $as_str:expr, $parse:expr) => {
        impl ToSql for $ty {
            fn to_sql(
                &self,
                _ty: &Type,
                out: &mut BytesMut,
            ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
                let text: &str = $as_str(self);
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            fn accepts(ty: &Type) -> bool {
                text_like(ty, $enum_name)
            }
            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $ty {
            fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
                let text = std::str::from_utf8(raw)?;
                $parse(text).map_err(|e| Box::new(e) as Box<dyn Error + Sync + Send>)
            }
            fn accepts(ty: &Type) -> bool {
                text_like(ty, $enum_name)
            }
        }
    };
}

text_sql!(
    JobStatus,
    Some("job_status"),
    JobStatus::as_str,
    str::parse::<JobStatus>
);
text_sql!(
    TaskStatus,
    Some("task_status"),
    TaskStatus::as_str,
    str::parse::<TaskStatus>
);
text_sql!(
    StageStatus,
    None,
    StageStatus::as_str,
    str::parse::<StageStatus>
);
text_sql!(JobId, None, JobId::as_str, JobId::parse);
text_sql!(TaskId, None, TaskId::as_str, TaskId::parse);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T>(v: T) -> T
    where
        T: ToSql + for<'a> FromSql<'a>,
    {
        let mut buf = BytesMut::new();
        v.to_sql_checked(&Type::TEXT, &mut buf).expect("encodes");
        T::from_sql(&Type::TEXT, &buf).expect("decodes")
    }

    #[test]
    fn statuses_and_ids_travel_as_their_stored_text() {
        for s in JobStatus::ALL {
            assert_eq!(round_trip(s), s);
        }
        for s in TaskStatus::ALL {
            assert_eq!(round_trip(s), s);
        }
        for s in StageStatus::ALL {
            assert_eq!(round_trip(s), s);
        }
        let j = JobId::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(round_trip(j.clone()), j);
        assert!(<JobStatus as ToSql>::accepts(&Type::TEXT));
        assert!(!<JobStatus as ToSql>::accepts(&Type::INT4));
    }

    #[test]
    fn an_unknown_stored_value_is_an_error_naming_it() {
        let e = JobStatus::from_sql(&Type::TEXT, b"retrying").unwrap_err();
        assert!(e.to_string().contains("retrying"), "{e}");
        let e = TaskId::from_sql(&Type::TEXT, b"nothex").unwrap_err();
        assert!(e.to_string().contains("nothex"), "{e}");
    }
}
