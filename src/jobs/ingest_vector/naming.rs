//! PostgreSQL identifiers: the schema and table names a caller gives are validated (a plain
//! lowercase identifier, never a keyword trick or an engine schema), column names derived from
//! the source's fields are sanitised, and every identifier reaches SQL only through [`quote`].

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1).
pub(crate) const MAX_IDENTIFIER: usize = 63;

/// Schemas the job never writes into: the engine's own, pgSTAC's and the system's.
pub(crate) const RESERVED_SCHEMAS: [&str; 5] = [
    "app",
    "pgstac",
    "pg_catalog",
    "information_schema",
    "pg_toast",
];

/// The columns CoreMachine adds to every table.
pub(crate) const ID_COLUMN: &str = "id";
/// The geometry column.
pub(crate) const GEOMETRY_COLUMN: &str = "geom";
/// The column naming the chunk that loaded a row (`{job_id}:{chunk}`).
pub(crate) const BATCH_COLUMN: &str = "etl_batch_id";
/// The batch ledger's table name in each target schema (refused as a `table_name`).
pub(crate) const LEDGER_TABLE: &str = "coremachine_batches";

/// Whether `s` is a plain identifier: a lowercase letter or '_' first, then lowercase letters,
/// digits and '_', at most 63 bytes, not starting with `pg_`.
pub(crate) fn check_identifier(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok
        || !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "{s:?} is not a plain identifier: use lowercase letters, digits and '_', starting with a letter or '_'"
        ));
    }
    if s.len() > MAX_IDENTIFIER {
        return Err(format!("{s:?} is longer than {MAX_IDENTIFIER} characters"));
    }
    if s.starts_with("pg_") {
        return Err(format!(
            "{s:?}: names starting with pg_ are reserved by PostgreSQL"
        ));
    }
    Ok(())
}

/// The parameter check of `table_name`.
pub(crate) fn check_table(s: &str) -> Result<(), (&'static str, String)> {
    check_identifier(s).map_err(|e| ("identifier", e))?;
    if s == LEDGER_TABLE {
        return Err((
            "reserved_table",
            format!(
                "{s:?} is CoreMachine's batch ledger in the target schema; choose another name"
            ),
        ));
    }
    Ok(())
}

/// The parameter check of `schema`: an identifier and not an engine or system schema.
pub(crate) fn check_schema(s: &str) -> Result<(), (&'static str, String)> {
    check_identifier(s).map_err(|e| ("identifier", e))?;
    if RESERVED_SCHEMAS.contains(&s) {
        return Err((
            "reserved_schema",
            format!(
                "{s:?} belongs to CoreMachine, pgSTAC or PostgreSQL; load into another schema (default geo)"
            ),
        ));
    }
    Ok(())
}

/// The parameter check of an index column name.
pub(crate) fn check_column(s: &str) -> Result<(), (&'static str, String)> {
    if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
        return Err(("column", format!("{s:?} is not a column name")));
    }
    Ok(())
}

/// `ident` as a quoted SQL identifier (`"a""b"`). Every identifier in generated SQL goes through
/// here, the validated ones too.
pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `"schema"."table"`.
pub(crate) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(table))
}

/// A name derived from `base` and `suffix` that stays within 63 bytes (`{table}_geom_gist`).
pub(crate) fn derived(base: &str, suffix: &str) -> String {
    let room = MAX_IDENTIFIER.saturating_sub(suffix.len() + 1);
    let mut b = base.to_string();
    while b.len() > room {
        b.pop();
    }
    format!("{b}_{suffix}")
}

/// Column names for the source's fields, in order: lowercased, every run of other characters a
/// single '_', a leading digit prefixed with '_', cut to 63 bytes, made unique, and never one of
/// CoreMachine's own columns (`id`, `geom`, `etl_batch_id` get `_src`).
pub(crate) fn column_names(fields: &[String]) -> Vec<String> {
    let mut used: Vec<String> = vec![
        ID_COLUMN.into(),
        GEOMETRY_COLUMN.into(),
        BATCH_COLUMN.into(),
    ];
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let mut s = String::new();
        for c in f.chars() {
            if c.is_ascii_alphanumeric() {
                s.push(c.to_ascii_lowercase());
            } else if !s.ends_with('_') {
                s.push('_');
            }
        }
        let mut s = s.trim_matches('_').to_string();
        if s.is_empty() {
            s = "field".into();
        }
        if s.starts_with(|c: char| c.is_ascii_digit()) || s.starts_with("pg_") {
            s.insert(0, '_');
        }
        s.truncate(MAX_IDENTIFIER);
        if [ID_COLUMN, GEOMETRY_COLUMN, BATCH_COLUMN].contains(&s.as_str()) {
            s = derived(&s, "src");
        }
        let base = s.clone();
        let mut n = 2;
        while used.contains(&s) {
            s = derived(&base, &n.to_string());
            n += 1;
        }
        used.push(s.clone());
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_pass() {
        assert!(check_identifier("countries_2024").is_ok());
        assert!(check_identifier("_x").is_ok());
        for bad in [
            "x; drop table app.jobs",
            "X",
            "1a",
            "",
            "a-b",
            "a\"b",
            "pg_x",
            &"a".repeat(64),
        ] {
            assert!(check_identifier(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(check_schema("app").is_err() && check_schema("pgstac").is_err());
        assert!(check_schema("geo").is_ok());
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("geo", "t"), "\"geo\".\"t\"");
        assert_eq!(derived(&"t".repeat(63), "geom_gist").len(), 63);
    }

    #[test]
    fn field_names_become_unique_safe_columns() {
        let f = |v: &[&str]| column_names(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            f(&["NAME", "Pop Est", "2020", "id", "geom"]),
            ["name", "pop_est", "_2020", "id_src", "geom_src"]
        );
        assert_eq!(f(&["a b", "a-b", "A_B"]), ["a_b", "a_b_2", "a_b_3"]);
        assert_eq!(f(&["", "\"; drop"]), ["field", "drop"]);
    }
}
