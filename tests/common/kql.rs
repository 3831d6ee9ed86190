//! A small reader of the KQL in `scripts/kql/`: enough to check that a query is well formed (a
//! table, then `|`-separated stages that each start with a tabular operator; brackets and string
//! literals balanced) and which columns its last `summarize` or `project` returns. No KQL parser
//! exists for Rust; this catches the mistakes an edit makes (a stray pipe, an unclosed paren, a
//! renamed column the alert's condition still names).

/// Tabular operators the pack may use.
const OPERATORS: &[&str] = &[
    "where",
    "extend",
    "project",
    "project-away",
    "project-rename",
    "project-keep",
    "make-series",
    "lookup",
    "serialize",
    "as",
    "summarize",
    "order",
    "sort",
    "top",
    "take",
    "limit",
    "distinct",
    "join",
    "union",
    "mv-expand",
    "parse",
    "count",
    "render",
];

/// Tables a query may start from: the Application Insights resource's, and the Log Analytics
/// workspace's (the generated variants under `scripts/kql/workspace/`).
const TABLES: &[&str] = &[
    "traces",
    "requests",
    "dependencies",
    "exceptions",
    "AppTraces",
    "AppRequests",
    "AppDependencies",
    "AppExceptions",
    "union",
];

/// Application Insights resource names → Log Analytics workspace names (tables and columns).
/// Only whole identifiers outside strings and comments are renamed, never a member after a `.`
/// (`customDimensions.job_id` becomes `Properties.job_id`).
pub const WORKSPACE_NAMES: &[(&str, &str)] = &[
    ("traces", "AppTraces"),
    ("requests", "AppRequests"),
    ("dependencies", "AppDependencies"),
    ("exceptions", "AppExceptions"),
    ("customDimensions", "Properties"),
    ("timestamp", "TimeGenerated"),
    ("severityLevel", "SeverityLevel"),
    ("operation_Id", "OperationId"),
    ("operation_Name", "OperationName"),
    ("operation_ParentId", "ParentId"),
    ("message", "Message"),
    ("name", "Name"),
    ("success", "Success"),
    ("duration", "DurationMs"),
    ("resultCode", "ResultCode"),
    ("cloud_RoleName", "AppRoleName"),
    ("cloud_RoleInstance", "AppRoleInstance"),
    ("itemCount", "ItemCount"),
    ("itemType", "Type"),
];

/// The workspace variant of a resource query (`source` names the file it is generated from).
pub fn to_workspace(text: &str, source: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    // The `// When to use:` comment stays first; the note on the variant follows it.
    while let Some(l) = lines.next_if(|l| l.starts_with("//")) {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!(
        "// Workspace variant (Log Analytics: AppTraces, Properties, TimeGenerated, ...), generated from\n\
         // {source} by tests/telemetry.rs (UPDATE_KQL=1); edit that file, not this one.\n"
    ));
    for l in lines {
        out.push_str(&rename_line(l));
        out.push('\n');
    }
    out
}

fn rename_line(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
            out.push(c);
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            out.extend(&chars[i..]);
            break;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after_dot = out.trim_end().ends_with('.');
            match WORKSPACE_NAMES.iter().find(|(a, _)| *a == word) {
                Some((_, w)) if !after_dot => out.push_str(w),
                _ => out.push_str(&word),
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

#[test]
fn the_workspace_variant_renames_tables_and_columns_but_not_members_strings_or_comments() {
    let q = "// When to use: x\ntraces // traces here\n| where timestamp > ago(1h) and message == \"timestamp\"\n| extend j = tostring(customDimensions.name), d = duration";
    let w = to_workspace(q, "scripts/kql/x.kql");
    assert!(
        w.starts_with("// When to use: x\n// Workspace variant"),
        "{w}"
    );
    assert!(w.contains("AppTraces // traces here"), "{w}");
    assert!(
        w.contains("where TimeGenerated > ago(1h) and Message == \"timestamp\""),
        "{w}"
    );
    assert!(
        w.contains("tostring(Properties.name), d = DurationMs"),
        "{w}"
    );
}

/// The query without `//` comments (outside string literals).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| {
            let mut quote = None;
            let b: Vec<char> = l.chars().collect();
            for i in 0..b.len() {
                match (quote, b[i]) {
                    (None, '"' | '\'') => quote = Some(b[i]),
                    (Some(q), c) if c == q => quote = None,
                    (None, '/') if b.get(i + 1) == Some(&'/') => {
                        return b[..i].iter().collect::<String>();
                    }
                    _ => {}
                }
            }
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits at top-level `sep` (outside brackets and strings); errors on unbalanced input.
fn split_top(text: &str, sep: char) -> Result<Vec<String>, String> {
    let mut parts = vec![String::new()];
    let mut depth: Vec<char> = Vec::new();
    let mut quote = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => depth.push(c),
            (None, ')' | ']' | '}') => {
                let open = depth.pop().ok_or(format!("unmatched {c:?}"))?;
                let want = match open {
                    '(' => ')',
                    '[' => ']',
                    _ => '}',
                };
                if c != want {
                    return Err(format!("{open:?} closed by {c:?}"));
                }
            }
            (None, c) if c == sep && depth.is_empty() => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().unwrap().push(c);
    }
    if let Some(q) = quote {
        return Err(format!("unclosed string literal starting with {q:?}"));
    }
    if let Some(d) = depth.last() {
        return Err(format!("unclosed {d:?}"));
    }
    Ok(parts)
}

/// The query's stages (the table first), or what is malformed. `let` statements before it are
/// checked the same way when they hold a tabular expression.
pub fn stages(text: &str) -> Result<Vec<String>, String> {
    let body = strip_comments(text);
    let statements: Vec<String> = split_top(&body, ';')?
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .collect();
    let (query, lets) = statements.split_last().ok_or("no query")?;
    let mut names: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    for l in lets {
        let l = l.trim();
        let (name, expr) = l
            .strip_prefix("let ")
            .and_then(|r| r.split_once('='))
            .ok_or(format!("statement {l:?} is not a let"))?;
        if expr.contains('|') {
            tabular(expr, &names)?;
        }
        names.push(name.trim().to_string());
    }
    tabular(query, &names)
}

fn tabular(expr: &str, tables: &[String]) -> Result<Vec<String>, String> {
    let stages: Vec<String> = split_top(expr, '|')?
        .into_iter()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let first = stages[0].split([' ', '(']).next().unwrap_or_default();
    if !tables.iter().any(|t| t == first) {
        return Err(format!("starts with {first:?}, not a table"));
    }
    for s in &stages[1..] {
        let op = s.split([' ', '(']).next().unwrap_or_default();
        if !OPERATORS.contains(&op) {
            return Err(format!(
                "stage {s:?} does not start with a tabular operator"
            ));
        }
    }
    Ok(stages)
}

/// The columns the query returns: those of its last `summarize` (aggregates named `x = …`, then
/// the `by` columns) or `project`.
pub fn output_columns(text: &str) -> Vec<String> {
    let stages = stages(text).unwrap_or_else(|e| panic!("malformed KQL: {e}"));
    let last = stages
        .iter()
        .rev()
        .find(|s| s.starts_with("summarize ") || s.starts_with("project "))
        .expect("a summarize or project stage");
    let (op, rest) = last.split_once(' ').unwrap();
    let (aggs, by) = match (op, rest.rsplit_once(" by ")) {
        ("summarize", Some((a, b))) => (a.to_string(), Some(b.to_string())),
        _ => (rest.to_string(), None),
    };
    let name = |item: &str| {
        let item = item.trim();
        item.split_once('=')
            .map(|(n, _)| n.trim())
            .unwrap_or(item)
            .to_string()
    };
    let mut cols: Vec<String> = split_top(&aggs, ',')
        .unwrap()
        .iter()
        .map(|i| name(i))
        .collect();
    if let Some(b) = by {
        cols.extend(split_top(&b, ',').unwrap().iter().map(|i| name(i)));
    }
    cols
}

#[test]
fn the_reader_finds_stages_columns_and_mistakes() {
    let q = "// a comment | with a pipe\ntraces\n| where x == \"a|b\" // trailing\n| summarize n = count(), e = take_any(tostring(y)) by job_type, bin(timestamp, 5m)";
    assert_eq!(stages(q).unwrap().len(), 3);
    assert_eq!(
        output_columns(q),
        ["n", "e", "job_type", "bin(timestamp, 5m)"]
    );
    assert!(stages("traces | whre x == 1").unwrap_err().contains("whre"));
    assert!(
        stages("traces | where f(x == 1")
            .unwrap_err()
            .contains("unclosed")
    );
    assert!(
        stages("traces | where x == \"open")
            .unwrap_err()
            .contains("string")
    );
    assert!(stages("| where x").is_err(), "no table");
    assert!(stages("traces || where x").is_err(), "empty stage");
    assert!(
        stages("let a = 1;\nlet t = traces | where x == a;\nunion t, requests | take 5").is_ok()
    );
    assert!(
        stages("let t = traces | wher x;\nt").is_err(),
        "a let is checked too"
    );
}
