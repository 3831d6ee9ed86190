//! Reading one variable: an integer or a number within a range, a boolean, a non-empty value.
//! Every settings type of [`super`] reads its variables through these, so each kind of value is
//! accepted and refused the same way everywhere, and every error names the variable.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;

/// The variable's value, trimmed; None when it is absent or empty (the example settings list
/// unused variables with empty values).
pub(super) fn nonempty(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// An integer in `min..=max`; `default` when the variable is absent.
pub(super) fn num(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    ranged(get, name, "an integer", default, min..=max)
}

/// A number in `min..=max`; `default` when the variable is absent.
pub(super) fn num_f(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: f64,
    min: f64,
    max: f64,
) -> Result<f64, ConfigError> {
    ranged(get, name, "a number", default, min..=max)
}

/// A duration written in (fractional) seconds, in `min..=max` seconds; `default` when the
/// variable is absent.
pub(super) fn secs(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
    min: f64,
    max: f64,
) -> Result<Duration, ConfigError> {
    num_f(get, name, default.as_secs_f64(), min, max).map(Duration::from_secs_f64)
}

/// The unit of the `_MS` variables, for [`whole`].
pub(super) const MS: Duration = Duration::from_millis(1);
/// The unit of the whole-seconds `_S` variables, for [`whole`].
pub(super) const SECOND: Duration = Duration::from_secs(1);

/// A duration written as a whole number of `unit`s (`_MS`, `_S` variables), in `min..=max`
/// units; `default` when the variable is absent.
pub(super) fn whole(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    unit: Duration,
    default: Duration,
    min: u32,
    max: u32,
) -> Result<Duration, ConfigError> {
    let default = (default.as_nanos() / unit.as_nanos()) as i64;
    let n = num(get, name, default, min.into(), max.into())?;
    Ok(unit * n as u32)
}

/// A value of type `T` (`what`, for the error) within `range`.
fn ranged<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    what: &str,
    default: T,
    range: RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + Display,
{
    let Some(v) = get(name) else {
        return Ok(default);
    };
    let n: T = v.trim().parse().map_err(|_| ConfigError::Invalid {
        name,
        reason: format!("expected {what}, got {v:?}"),
    })?;
    if !range.contains(&n) {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("{n} is outside {}..={}", range.start(), range.end()),
        });
    }
    Ok(n)
}

/// The one boolean parser of the settings. Accepted, in any case and with spaces around:
/// `true`, `1`, `yes`, `on` (true) and `false`, `0`, `no`, `off` (false); absent or empty is
/// false; anything else is an error naming the variable.
///
/// This is the union of the two parsers it replaces: `USE_MANAGED_IDENTITY` took all of these
/// words, `COREMACHINE_ADMIN_ENABLED` took `true`, `1`, `false`, `0` in lower case.
pub(super) fn flag(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<bool, ConfigError> {
    let Some(v) = nonempty(get, name) else {
        return Ok(false);
    };
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name,
            reason: format!("expected true or false, got {v:?}"),
        }),
    }
}

/// A lookup over fixed pairs, for the settings' tests.
#[cfg(test)]
pub(super) fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let m: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> impl Fn(&str) -> Option<String> {
        let value = value.to_string();
        move |k| (k == "SOME_FLAG").then(|| value.clone())
    }

    #[test]
    fn the_boolean_parser_takes_every_word_either_old_parser_took() {
        for v in [
            "true", "1", "yes", "on", "TRUE", "True", " yes ", "On", "YES",
        ] {
            assert!(flag(&one(v), "SOME_FLAG").unwrap(), "{v:?} is true");
        }
        for v in ["false", "0", "no", "off", "FALSE", "Off", " 0 ", "", "   "] {
            assert!(!flag(&one(v), "SOME_FLAG").unwrap(), "{v:?} is false");
        }
        assert!(
            !flag(&|_: &str| None, "SOME_FLAG").unwrap(),
            "absent is false"
        );
    }

    #[test]
    fn the_boolean_parser_refuses_other_words_naming_the_variable() {
        for v in ["maybe", "2", "y", "enabled", "t"] {
            let e = flag(&one(v), "SOME_FLAG").unwrap_err().to_string();
            assert!(e.contains("SOME_FLAG") && e.contains(v), "{v:?}: {e}");
        }
    }

    #[test]
    fn numbers_are_range_checked_and_name_the_variable() {
        let get = |k: &str| (k == "N").then(|| " 7 ".to_string());
        assert_eq!(num(&get, "N", 1, 0, 10).unwrap(), 7);
        assert_eq!(num(&get, "OTHER", 3, 0, 10).unwrap(), 3);
        assert!(
            num(&get, "N", 1, 8, 10)
                .unwrap_err()
                .to_string()
                .contains("N")
        );
        assert_eq!(num_f(&get, "N", 1.0, 0.0, 10.0).unwrap(), 7.0);
        let bad = |_: &str| Some("soon".to_string());
        assert!(
            num_f(&bad, "N", 1.0, 0.0, 10.0)
                .unwrap_err()
                .to_string()
                .contains("expected a number")
        );
    }
}
