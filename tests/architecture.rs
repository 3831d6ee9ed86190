//! The boundaries of docs/architecture.md, read from the source itself: no import cycle among
//! src/ files, no status compared as a string in src/engine, no engine function over 80 lines,
//! and no fault injection reachable from the engine or the transport of a release build.
//!
//! The source is read as text (comments and string contents blanked, test modules left out), so a
//! failure names the file, the line and what it found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest function body allowed in src/engine (lines from `fn` to its closing brace).
const MAX_ENGINE_FN_LINES: usize = 80;

/// One source file: its module path and its code with comments and string contents blanked.
struct Source {
    /// `["engine", "job_message"]` for src/engine/job_message.rs; `[]` for lib.rs.
    module: Vec<String>,
    /// Path relative to the crate root, for messages.
    path: String,
    /// The code, same length and lines as the file, comments and literals blanked.
    code: String,
}

fn src_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn read_sources() -> Vec<Source> {
    let root = src_root();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src dir") {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p.strip_prefix(&root).expect("under src");
                let mut module: Vec<String> = rel
                    .with_extension("")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    module.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    module.pop();
                }
                if rel == Path::new("main.rs") {
                    continue; // the binary: a crate of its own, above everything
                }
                let text = std::fs::read_to_string(&p).expect("read source");
                out.push(Source {
                    module,
                    path: format!("src/{}", rel.display()),
                    code: without_test_modules(&blank(&text)),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Blanks comments and the contents of string and char literals (newlines kept).
fn blank(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let keep_lines = |s: &[u8], out: &mut Vec<u8>| {
        out.extend(s.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }))
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            keep_lines(&rest[..end], &mut out);
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = find(rest, b"*/").map_or(rest.len(), |e| e + 2);
            keep_lines(&rest[..end], &mut out);
            i += end;
        } else if let Some(hashes) = raw_string_start(b, i) {
            let open = 2 + hashes;
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let end = find(&rest[open..], &close).map_or(rest.len(), |e| open + e + close.len());
            out.extend_from_slice(&rest[..open]);
            keep_lines(&rest[open..end - close.len()], &mut out);
            out.extend_from_slice(&rest[end - close.len()..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            out.push(b'"');
            keep_lines(&rest[1..end.saturating_sub(1).max(1)], &mut out);
            if end > 1 {
                out.push(b'"');
            }
            i += end;
        } else if rest[0] == b'\'' && char_literal_len(rest).is_some() {
            let n = char_literal_len(rest).expect("checked");
            keep_lines(&rest[..n], &mut out);
            i += n;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("ascii blanks keep utf-8")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `r"`, `r#"`, `br"`: the number of `#`s when a raw string starts at `i`.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    if b[i] != b'r' || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) {
        return None;
    }
    let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
    (b.get(i + 1 + hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a char literal at the start of `s` (`'a'`, `'\n'`, `'\u{1F}'`), not a lifetime.
fn char_literal_len(s: &[u8]) -> Option<usize> {
    if s.get(1) == Some(&b'\\') {
        let end = s[2..].iter().take(12).position(|&c| c == b'\'')?;
        Some(end + 3)
    } else {
        let ch = std::str::from_utf8(&s[1..s.len().min(6)])
            .ok()
            .or_else(|| {
                (2..6)
                    .rev()
                    .find_map(|n| std::str::from_utf8(&s[1..s.len().min(n)]).ok())
            })?;
        let c = ch.chars().next()?;
        let n = c.len_utf8();
        (s.get(1 + n) == Some(&b'\'')).then_some(n + 2)
    }
}

/// Blanks `#[cfg(test)] mod ... { ... }` blocks: tests may reach anywhere.
fn without_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(at) = out[from..].find("#[cfg(test)]") {
        let start = from + at;
        let after = &out[start + "#[cfg(test)]".len()..];
        if after.trim_start().starts_with("mod ")
            && let Some(open) = out[start..].find('{').map(|o| start + o)
            && let Some(close) = matching_brace(&out, open)
        {
            let blanked: String = out[start..=close]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' })
                .collect();
            out.replace_range(start..=close, &blanked);
        }
        from = start + 1;
    }
    out
}

fn matching_brace(code: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

fn line_of(code: &str, at: usize) -> usize {
    code[..at].bytes().filter(|&b| b == b'\n').count() + 1
}

/// Every path a file names through `use` trees and inline `crate::`/`super::`/`self::` paths,
/// made absolute (segments after `crate`).
fn named_paths(src: &Source) -> Vec<(Vec<String>, bool)> {
    let mut paths = Vec::new();
    let code = &src.code;
    // `use` statements (their trees expanded); the flag says whether it is a re-export.
    let mut i = 0;
    while let Some(at) = find_word(code, "use", i) {
        let Some(end) = code[at..].find(';').map(|e| at + e) else {
            break;
        };
        let before = code[..at].trim_end();
        let reexport = before.ends_with("pub") || before.ends_with(')') && before.contains("pub(");
        let tree = &code[at + 3..end];
        for p in expand_use_tree(tree.trim()) {
            if let Some(abs) = absolute(&src.module, &p) {
                paths.push((abs, reexport));
            }
        }
        i = end;
    }
    // Inline paths in code.
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start).map(|a| from + a) {
            from = at + start.len();
            if at > 0
                && (bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b':')
            {
                continue;
            }
            let seg: String = code[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let p: Vec<String> = seg
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(abs) = absolute(&src.module, &p) {
                paths.push((abs, false));
            }
        }
    }
    paths
}

fn find_word(code: &str, word: &str, from: usize) -> Option<usize> {
    let b = code.as_bytes();
    let mut i = from;
    while let Some(at) = code[i..].find(word).map(|a| i + a) {
        let before_ok = at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
        let after = b.get(at + word.len()).copied().unwrap_or(b' ');
        if before_ok && after.is_ascii_whitespace() {
            return Some(at);
        }
        i = at + word.len();
    }
    None
}

/// `a::{b::{self, C}, d}` -> [a::b, a::b::C, a::d].
fn expand_use_tree(tree: &str) -> Vec<Vec<String>> {
    // `X as Y` keeps X (the marker survives the whitespace removal).
    let tree = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree: String = tree
        .replace(" as ", "@")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut out = Vec::new();
    expand_into(&tree, &[], &mut out);
    out
}

fn expand_into(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let mut base = prefix.to_vec();
        base.extend(head);
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut last = 0;
        let mut parts = Vec::new();
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&inner[last..i]);
                    last = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&inner[last..]);
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            if part == "self" {
                out.push(base.clone());
            } else {
                expand_into(part, &base, out);
            }
        }
    } else {
        let mut p = prefix.to_vec();
        let name = tree.split('@').next().unwrap_or(tree);
        p.extend(
            name.split("::")
                .filter(|s| !s.is_empty() && *s != "*")
                .map(str::to_string),
        );
        out.push(p);
    }
}

/// A path as named in `module`, made absolute; `None` for other crates.
fn absolute(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut base: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module[..module.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    let mut rest = &path[1..];
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The import graph between files: an edge when a file names something another file defines
/// (a re-export in a parent module is followed to where the name comes from).
fn import_graph(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let by_module: BTreeMap<Vec<String>, &Source> =
        sources.iter().map(|s| (s.module.clone(), s)).collect();
    // Re-exports of each module file: name -> absolute path it re-exports.
    let mut reexports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for s in sources {
        for (p, is_reexport) in named_paths(s) {
            if is_reexport && let Some(name) = p.last() {
                reexports
                    .entry(s.module.clone())
                    .or_default()
                    .insert(name.clone(), p.clone());
            }
        }
    }
    let resolve = |path: &[String]| -> Option<&Source> {
        let mut path = path.to_vec();
        for _ in 0..8 {
            // The longest prefix that is a file.
            let n = (0..=path.len())
                .rev()
                .find(|&n| by_module.contains_key(&path[..n]))?;
            let file = &path[..n];
            // A name the file re-exports: follow it (a facade is not a dependency).
            if let Some(next) = path
                .get(n)
                .and_then(|name| reexports.get(file).and_then(|r| r.get(name)))
                && next[..] != path[..]
            {
                let mut p = next.clone();
                p.extend(path[n + 1..].iter().cloned());
                path = p;
                continue;
            }
            return by_module.get(file).copied();
        }
        None
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources {
        let edges = graph.entry(s.path.clone()).or_default();
        for (p, is_reexport) in named_paths(s) {
            if is_reexport {
                continue;
            }
            if let Some(target) = resolve(&p)
                && target.path != s.path
                // A child naming its own ancestor's items (`super::Engine`) is the module's own
                // room; the ancestor naming a child is not counted either way.
                && !s.module.starts_with(&target.module)
            {
                edges.insert(target.path.clone());
            }
        }
    }
    graph
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'g> {
        g: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(t: &mut T<'g>, v: &'g str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.g.get(v) {
            for w in ws {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_import_cycle_among_src_files() {
    let sources = read_sources();
    let graph = import_graph(&sources);
    assert!(
        graph.values().map(BTreeSet::len).sum::<usize>() > 50,
        "the graph should see the crate's imports"
    );
    let found = cycles(&graph);
    let shown: Vec<String> = found
        .iter()
        .map(|c| {
            let ties: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            ties.join(", ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles (nothing below may import anything above):\n{}",
        shown.join("\n")
    );
}

/// Status names as stored.
const STATUS_WORDS: [&str; 7] = [
    "queued",
    "processing",
    "completed",
    "completed_with_errors",
    "failed",
    "cancelled",
    "running",
];

#[test]
fn the_engine_compares_no_status_as_a_string() {
    let mut found = Vec::new();
    for s in read_sources()
        .iter()
        .filter(|s| s.module.first().is_some_and(|m| m == "engine"))
    {
        // Blanked code keeps the quotes: read the literal's text from the file itself.
        let text = std::fs::read_to_string(src_root().join(&s.path[4..])).expect("read");
        let code = &s.code;
        for (at, _) in code.match_indices('"') {
            let Some(close) = code[at + 1..].find('"').map(|c| at + 1 + c) else {
                continue;
            };
            let literal = &text[at + 1..close];
            if !STATUS_WORDS.contains(&literal) {
                continue;
            }
            let before = code[..at].trim_end();
            let after = code[close + 1..].trim_start();
            let compared = before.ends_with("==")
                || before.ends_with("!=")
                || after.starts_with("==")
                || after.starts_with("!=")
                || after.starts_with("=>")
                || after.starts_with('|') && !after.starts_with("||")
                || before.ends_with('|') && !before.ends_with("||");
            if compared {
                found.push(format!(
                    "{}:{}: \"{literal}\" compared as text",
                    s.path,
                    line_of(code, at)
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "statuses are the model's enums in src/engine:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_engine_function_is_over_80_lines() {
    let mut found = Vec::new();
    for s in read_sources()
        .iter()
        .filter(|s| s.module.first().is_some_and(|m| m == "engine"))
    {
        let code = &s.code;
        let mut from = 0;
        while let Some(at) = find_word(code, "fn", from) {
            from = at + 2;
            let Some(open) = code[at..].find(['{', ';']).map(|o| at + o) else {
                break;
            };
            if code.as_bytes()[open] == b';' {
                continue; // a declaration without a body
            }
            let Some(close) = matching_brace(code, open) else {
                continue;
            };
            let lines = line_of(code, close) - line_of(code, at) + 1;
            if lines > MAX_ENGINE_FN_LINES {
                let name: String = code[at + 2..]
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.push(format!(
                    "{}:{}: fn {name} is {lines} lines",
                    s.path,
                    line_of(code, at)
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "engine steps read load -> decide -> apply -> emit in functions of at most \
         {MAX_ENGINE_FN_LINES} lines:\n{}",
        found.join("\n")
    );
}

#[test]
fn fault_injection_is_not_reachable_from_the_engine_or_the_transport() {
    let mut found = Vec::new();
    for s in read_sources().iter().filter(|s| {
        s.module
            .first()
            .is_some_and(|m| m == "engine" || m == "transport")
    }) {
        for word in ["Fault", "Faults", "FaultRule", "testing"] {
            let mut from = 0;
            while let Some(at) = s.code[from..].find(word).map(|a| from + a) {
                from = at + word.len();
                let b = s.code.as_bytes();
                let boundary = |c: u8| !(c.is_ascii_alphanumeric() || c == b'_');
                if (at == 0 || boundary(b[at - 1]))
                    && b.get(at + word.len()).copied().is_none_or(boundary)
                {
                    found.push(format!("{}:{}: {word}", s.path, line_of(&s.code, at)));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "faults are injected at seams by test doubles (src/testing), never named by the engine \
         or the transport:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_source_reader_sees_what_it_checks() {
    // The readers above are only as good as their parsing: check them on known text.
    let code =
        blank("let s = \"a // not a comment\"; // a comment\nlet c = '{'; /* } */ fn x() {}\n");
    assert!(!code.contains("comment"), "{code}");
    assert!(code.contains("fn x() {}"));
    assert_eq!(code.matches('{').count(), 1, "{code}");
    assert_eq!(
        expand_use_tree("super::{events::{self, Event}, fan_in::decide as d}"),
        vec![
            vec!["super".to_string(), "events".into()],
            vec!["super".into(), "events".into(), "Event".into()],
            vec!["super".into(), "fan_in".into(), "decide".into()],
        ]
    );
    let a = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(cycles(&a), vec![vec!["a".to_string(), "b".to_string()]]);
}
