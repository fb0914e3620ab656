//! Layers that only point down (issue 19): the crate's top-level modules are stacked in the
//! layer table of `src/lib.rs`'s module doc, and a module names (through `crate::` or a
//! `super::` chain that reaches the crate root) only modules of its own layer or below, with no
//! cycle among them. The test reads the source, not the compiled crate: it walks the module tree
//! from `src/lib.rs` as the compiler does (`mod x;` → `x.rs` or `x/mod.rs`), drops comments,
//! string and char literals and every item under `#[cfg(test)]` (test modules may reach
//! anywhere), and collects every path that starts at the crate root — in `use` lines, `use`
//! groups and inline paths alike. README's "Layout" section carries the same table.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
    /// A literal (string, char, number): never part of a path.
    Literal,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    line: usize,
}

impl Tok {
    fn is_ident(&self, s: &str) -> bool {
        matches!(&self.kind, Kind::Ident(i) if i == s)
    }
    fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct(c)
    }
    fn ident(&self) -> Option<&str> {
        match &self.kind {
            Kind::Ident(i) => Some(i),
            _ => None,
        }
    }
}

/// Rust source as tokens, comments dropped and literals reduced to [`Kind::Literal`].
fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let is_ident_start = |ch: char| ch == '_' || ch.is_alphabetic();
    let is_ident_char = |ch: char| ch == '_' || ch.is_alphanumeric();
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            // Block comments nest.
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            let start = line;
            i = skip_string(&c, i + 1, &mut line);
            out.push(Tok {
                kind: Kind::Literal,
                line: start,
            });
        } else if ch == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime / label ('a).
            if c.get(i + 1) == Some(&'\\') {
                // Past the backslash and the escaped char (which may be a quote).
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push(Tok {
                    kind: Kind::Literal,
                    line,
                });
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push(Tok {
                    kind: Kind::Literal,
                    line,
                });
            } else {
                i += 1;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
                out.push(Tok {
                    kind: Kind::Literal,
                    line,
                });
            }
        } else if is_ident_start(ch) {
            let s = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            let word: String = c[s..i].iter().collect();
            let next = c.get(i).copied();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            if raw_prefix && (next == Some('"') || (next == Some('#') && raw_string_follows(&c, i)))
            {
                let start = line;
                let mut hashes = 0;
                while c[i] == '#' {
                    hashes += 1;
                    i += 1;
                }
                i += 1; // the opening quote
                loop {
                    if i >= c.len() {
                        break;
                    }
                    if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                        i += 1 + hashes;
                        break;
                    }
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                out.push(Tok {
                    kind: Kind::Literal,
                    line: start,
                });
            } else if matches!(word.as_str(), "b" | "c") && next == Some('"') {
                let start = line;
                i = skip_string(&c, i + 1, &mut line);
                out.push(Tok {
                    kind: Kind::Literal,
                    line: start,
                });
            } else if word == "b" && next == Some('\'') {
                i += 1;
                if c.get(i) == Some(&'\\') {
                    i += 1;
                }
                i += 1;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push(Tok {
                    kind: Kind::Literal,
                    line,
                });
            } else {
                out.push(Tok {
                    kind: Kind::Ident(word),
                    line,
                });
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            out.push(Tok {
                kind: Kind::Literal,
                line,
            });
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Tok {
                kind: Kind::PathSep,
                line,
            });
            i += 2;
        } else {
            out.push(Tok {
                kind: Kind::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

/// `r#…#"`: a raw string rather than a raw identifier (`r#type`).
fn raw_string_follows(c: &[char], mut i: usize) -> bool {
    while c.get(i) == Some(&'#') {
        i += 1;
    }
    c.get(i) == Some(&'"')
}

/// Past the closing quote of a string whose body starts at `i`.
fn skip_string(c: &[char], mut i: usize, line: &mut usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => {
                if c.get(i + 1) == Some(&'\n') {
                    *line += 1;
                }
                i += 2;
            }
            '"' => return i + 1,
            '\n' => {
                *line += 1;
                i += 1
            }
            _ => i += 1,
        }
    }
    i
}

/// The index just past the bracketed group opening at `i` (`(`, `[` or `{`).
fn skip_group(t: &[Tok], i: usize) -> usize {
    let mut depth = 0i32;
    let mut j = i;
    while j < t.len() {
        match t[j].kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// `#[cfg(test)]` at `i`?
fn cfg_test_at(t: &[Tok], i: usize) -> bool {
    let want = |k: usize, f: &dyn Fn(&Tok) -> bool| t.get(i + k).is_some_and(f);
    want(0, &|x| x.is_punct('#'))
        && want(1, &|x| x.is_punct('['))
        && want(2, &|x| x.is_ident("cfg"))
        && want(3, &|x| x.is_punct('('))
        && want(4, &|x| x.is_ident("test"))
        && want(5, &|x| x.is_punct(')'))
        && want(6, &|x| x.is_punct(']'))
}

/// The tokens without the items under `#[cfg(test)]`: the attribute, any further attributes,
/// and the item up to its `;` or through its `{ … }` body.
fn without_test_items(t: Vec<Tok>) -> Vec<Tok> {
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        if !cfg_test_at(&t, i) {
            out.push(t[i].clone());
            i += 1;
            continue;
        }
        i += 7;
        while i + 1 < t.len() && t[i].is_punct('#') && t[i + 1].is_punct('[') {
            i = skip_group(&t, i + 1);
        }
        while i < t.len() {
            match t[i].kind {
                Kind::Punct(';') => {
                    i += 1;
                    break;
                }
                Kind::Punct('{') => {
                    i = skip_group(&t, i);
                    break;
                }
                Kind::Punct('(' | '[') => i = skip_group(&t, i),
                _ => i += 1,
            }
        }
    }
    out
}

/// One reference from a module to a top-level module.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
}

struct Crate {
    /// The top-level modules `src/lib.rs` declares.
    top: BTreeSet<String>,
    edges: Vec<Edge>,
    files: usize,
}

/// The "module" a glob import of the crate root reaches.
const GLOB: &str = "*";

/// The names a path continuing at `i` (just past `crate::` or the last `super::`) reaches at
/// the crate root: one ident, or each first segment of a `{…}` group.
fn root_names(t: &[Tok], i: usize) -> Vec<(String, usize)> {
    match t.get(i) {
        Some(tok) if tok.ident().is_some() => vec![(tok.ident().unwrap_or("").into(), tok.line)],
        // `super::*` at the root: every module, each then named without a path.
        Some(tok) if tok.is_punct('*') => vec![(GLOB.into(), tok.line)],
        Some(tok) if tok.is_punct('{') => {
            let end = skip_group(t, i);
            let mut names = Vec::new();
            let mut depth = 0;
            let mut expect = true;
            for tok in &t[i..end] {
                match tok.kind {
                    Kind::Punct('{') => {
                        depth += 1;
                        expect = depth == 1;
                    }
                    Kind::Punct('}') => depth -= 1,
                    Kind::Punct(',') if depth == 1 => expect = true,
                    Kind::Ident(ref s) if expect && depth == 1 => {
                        names.push((s.clone(), tok.line));
                        expect = false;
                    }
                    _ => {
                        if depth == 1 {
                            expect = false;
                        }
                    }
                }
            }
            names
        }
        _ => Vec::new(),
    }
}

/// Reads the library's module tree from `src/lib.rs`.
fn read_crate(src: &Path) -> Crate {
    let lib = without_test_items(lex(&fs::read_to_string(src.join("lib.rs")).expect("lib.rs")));
    let mut top = BTreeSet::new();
    for w in lib.windows(3) {
        if w[0].is_ident("mod") && w[2].is_punct(';') {
            if let Some(name) = w[1].ident() {
                top.insert(name.to_string());
            }
        }
    }
    let mut edges = Vec::new();
    let mut files = 0;
    // (file, module path, the directory its `mod x;` children live in)
    let mut queue: Vec<(PathBuf, Vec<String>, PathBuf)> = top
        .iter()
        .map(|m| {
            let flat = src.join(format!("{m}.rs"));
            let file = if flat.exists() {
                flat
            } else {
                src.join(m).join("mod.rs")
            };
            (file, vec![m.clone()], src.join(m))
        })
        .collect();
    while let Some((file, path, child_dir)) = queue.pop() {
        let text = fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!("{}: {e} (declared as {})", file.display(), path.join("::"))
        });
        files += 1;
        let t = without_test_items(lex(&text));
        // Inline modules (`mod file { … }`) open a scope one deeper: (brace depth, name).
        let mut inline: Vec<(i32, String)> = Vec::new();
        let mut braces = 0i32;
        let mut i = 0;
        while i < t.len() {
            let tok = &t[i];
            let prev_is_sep = i > 0 && (t[i - 1].kind == Kind::PathSep || t[i - 1].is_punct('$'));
            match &tok.kind {
                Kind::Punct('{') => braces += 1,
                Kind::Punct('}') => {
                    if inline.last().is_some_and(|(d, _)| *d == braces) {
                        inline.pop();
                    }
                    braces -= 1;
                }
                Kind::Ident(w) if w == "mod" => {
                    if let (Some(name), Some(next)) =
                        (t.get(i + 1).and_then(Tok::ident), t.get(i + 2))
                    {
                        let mut dir = child_dir.clone();
                        for (_, m) in &inline {
                            dir = dir.join(m);
                        }
                        if next.is_punct(';') {
                            let flat = dir.join(format!("{name}.rs"));
                            let nested = dir.join(name);
                            let file = if flat.exists() {
                                flat
                            } else {
                                nested.join("mod.rs")
                            };
                            let mut p = path.clone();
                            p.extend(inline.iter().map(|(_, m)| m.clone()));
                            p.push(name.to_string());
                            queue.push((file, p, nested));
                        } else if next.is_punct('{') {
                            inline.push((braces + 1, name.to_string()));
                        }
                    }
                }
                Kind::Ident(w)
                    if w == "crate"
                        && !prev_is_sep
                        && t.get(i + 1).is_some_and(|x| x.kind == Kind::PathSep) =>
                {
                    for (to, line) in root_names(&t, i + 2) {
                        edges.push(Edge {
                            from: path[0].clone(),
                            to,
                            file: file.clone(),
                            line,
                        });
                    }
                }
                Kind::Ident(w) if w == "super" && !prev_is_sep => {
                    let mut n = 0;
                    let mut j = i;
                    while t.get(j).is_some_and(|x| x.is_ident("super"))
                        && t.get(j + 1).is_some_and(|x| x.kind == Kind::PathSep)
                    {
                        n += 1;
                        j += 2;
                    }
                    if n == path.len() + inline.len() {
                        for (to, line) in root_names(&t, j) {
                            edges.push(Edge {
                                from: path[0].clone(),
                                to,
                                file: file.clone(),
                                line,
                            });
                        }
                    }
                    i = j.max(i + 1);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
    edges.retain(|e| (top.contains(&e.to) || e.to == GLOB) && e.to != e.from);
    edges.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Crate { top, edges, files }
}

/// The layer table of a module doc or README: rows `| N name | `a`, `b` | … |`, N the layer
/// (1 at the bottom). Returns module → layer, and the table's lines as written.
fn layer_table(text: &str, prefix: &str) -> (BTreeMap<String, u32>, Vec<String>) {
    let mut layers = BTreeMap::new();
    let mut lines = Vec::new();
    for raw in text.lines() {
        let Some(row) = raw.strip_prefix(prefix) else {
            continue;
        };
        let row = row.trim();
        if !row.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let Some(n) = cells[0]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            if cells[0] == "layer" || cells[0].starts_with("---") {
                lines.push(row.to_string());
            }
            continue;
        };
        lines.push(row.to_string());
        for m in cells.get(1).unwrap_or(&"").split(',') {
            let m = m.trim().trim_matches('`').trim_end_matches('/');
            assert!(
                layers.insert(m.to_string(), n).is_none(),
                "`{m}` is in two rows of the layer table"
            );
        }
    }
    (layers, lines)
}

/// The checkout read: `CARGO_MANIFEST_DIR` as cargo sets it when it runs the test (so the
/// compiled test can also be pointed at another tree), else the one it was built from.
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn src_dir() -> PathBuf {
    root().join("src")
}

/// Layer violations and cycles, each as a message naming file:line.
fn check(krate: &Crate, layers: &BTreeMap<String, u32>) -> Vec<String> {
    let root = root();
    let root = root.as_path();
    let mut problems = Vec::new();
    for m in &krate.top {
        if !layers.contains_key(m) {
            problems.push(format!(
                "module `{m}` is in no row of the layer table in src/lib.rs"
            ));
        }
    }
    for m in layers.keys() {
        if !krate.top.contains(m) {
            problems.push(format!(
                "the layer table names `{m}`, which src/lib.rs does not declare"
            ));
        }
    }
    for e in krate.edges.iter().filter(|e| e.to == GLOB) {
        problems.push(format!(
            "{}:{}: `{}` imports the crate root with a glob, which hides what it names",
            e.file.strip_prefix(root).unwrap_or(&e.file).display(),
            e.line,
            e.from,
        ));
    }
    for e in &krate.edges {
        let (Some(&from), Some(&to)) = (layers.get(&e.from), layers.get(&e.to)) else {
            continue;
        };
        if to > from {
            problems.push(format!(
                "{}:{}: `{}` (layer {from}) names `crate::{}` (layer {to}), a layer above it",
                e.file.strip_prefix(root).unwrap_or(&e.file).display(),
                e.line,
                e.from,
                e.to,
            ));
        }
    }
    // Circles: imports within a row are allowed, circles never (a circle across rows also has
    // an upward import, reported above).
    let mut graph: BTreeMap<&str, BTreeMap<&str, &Edge>> = BTreeMap::new();
    for e in krate.edges.iter().filter(|e| e.to != GLOB) {
        graph
            .entry(e.from.as_str())
            .or_default()
            .entry(e.to.as_str())
            .or_insert(e);
    }
    let mut reported = BTreeSet::new();
    for start in krate.top.iter().map(String::as_str) {
        if let Some(cycle) = cycle_through(&graph, start) {
            let mut key: Vec<&str> = cycle.iter().map(|e| e.from.as_str()).collect();
            key.sort();
            if reported.insert(key) {
                let steps: Vec<String> = cycle
                    .iter()
                    .map(|e| {
                        format!(
                            "{} → {} ({}:{})",
                            e.from,
                            e.to,
                            e.file.strip_prefix(root).unwrap_or(&e.file).display(),
                            e.line
                        )
                    })
                    .collect();
                problems.push(format!("cycle: {}", steps.join(", ")));
            }
        }
    }
    problems
}

/// The shortest cycle from `start` back to itself, as its edges.
fn cycle_through<'a>(
    graph: &BTreeMap<&'a str, BTreeMap<&'a str, &'a Edge>>,
    start: &'a str,
) -> Option<Vec<&'a Edge>> {
    let mut prev: BTreeMap<&str, &Edge> = BTreeMap::new();
    let mut frontier = vec![start];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for n in frontier {
            for (&to, &e) in graph.get(n).into_iter().flatten() {
                if to == start {
                    let mut path = vec![e];
                    let mut at = n;
                    while at != start {
                        let back = prev[at];
                        path.push(back);
                        at = back.from.as_str();
                    }
                    path.reverse();
                    return Some(path);
                }
                if !prev.contains_key(to) {
                    prev.insert(to, e);
                    next.push(to);
                }
            }
        }
        frontier = next;
    }
    None
}

#[test]
fn top_level_modules_import_only_their_own_layer_or_below() {
    let src = src_dir();
    let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let (layers, _) = layer_table(&lib, "//!");
    assert!(
        layers.len() > 10,
        "no layer table in src/lib.rs's module doc"
    );
    let krate = read_crate(&src);
    assert!(krate.files > 50, "read only {} files", krate.files);
    let problems = check(&krate, &layers);
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn readme_layout_carries_the_layer_table_of_lib_rs() {
    let lib = fs::read_to_string(src_dir().join("lib.rs")).expect("lib.rs");
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    let layout = readme
        .split("\n## Layout")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Layout section");
    let (_, in_lib) = layer_table(&lib, "//!");
    let (_, in_readme) = layer_table(layout, "");
    assert_eq!(
        in_readme, in_lib,
        "README's layer table differs from src/lib.rs's"
    );
}

/// The graph as read, for whoever moves a module: `cargo test --test layers -- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn print_the_module_graph() {
    let krate = read_crate(&src_dir());
    let mut graph: BTreeMap<&str, BTreeMap<&str, Vec<String>>> = BTreeMap::new();
    for e in &krate.edges {
        let at = format!("{}:{}", e.file.display(), e.line);
        graph
            .entry(&e.from)
            .or_default()
            .entry(&e.to)
            .or_default()
            .push(at);
    }
    for (from, tos) in graph {
        println!(
            "{from} -> {}",
            tos.keys().copied().collect::<Vec<_>>().join(" ")
        );
        for (to, ats) in tos {
            println!("    {to}: {}", ats.join(" "));
        }
    }
}

/// The reader itself, on source written to exercise it.
#[test]
fn the_reader_sees_paths_through_groups_supers_and_inline_modules_but_not_comments_or_tests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    fs::write(src.join("lib.rs"), "pub mod low;\npub mod high;\n").expect("write");
    fs::create_dir(src.join("low")).expect("mkdir");
    fs::write(
        src.join("low/mod.rs"),
        r##"//! use crate::high; in a doc comment
pub mod inner;
/* crate::high in a block /* nested */ crate::high */
const S: &str = "crate::high";
const R: &str = r#"crate::high"#;
const C: char = '"';
fn f<'a>(x: &'a str) -> &'a str { let _ = crate::high::x; x }
#[cfg(test)]
mod tests { use crate::high; }
#[cfg(test)]
mod tests_file;
pub mod file {
    use super::super::high::Thing;
}
"##,
    )
    .expect("write");
    fs::write(
        src.join("low/inner.rs"),
        "use crate::{low::a, high::{b, c}};\nfn g() { super::super::high::h(); super::x(); }\n",
    )
    .expect("write");
    fs::write(src.join("high.rs"), "use crate::low;\nuse super::*;\n").expect("write");
    let krate = read_crate(src);
    assert_eq!(krate.files, 3, "tests_file.rs is not read");
    let mut seen: Vec<(String, String, usize)> = krate
        .edges
        .iter()
        .map(|e| {
            (
                e.file
                    .strip_prefix(src)
                    .expect("under src")
                    .display()
                    .to_string(),
                e.to.clone(),
                e.line,
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("high.rs".into(), "*".into(), 2),
            ("high.rs".into(), "low".into(), 1),
            ("low/inner.rs".into(), "high".into(), 1),
            ("low/inner.rs".into(), "high".into(), 2),
            ("low/mod.rs".into(), "high".into(), 7),
            ("low/mod.rs".into(), "high".into(), 13),
        ]
    );
    let layers: BTreeMap<String, u32> = [("low".into(), 1), ("high".into(), 2)].into();
    let problems = check(&krate, &layers);
    assert_eq!(problems.len(), 6, "{problems:#?}");
    assert!(problems[0].contains("high.rs:2: `high` imports the crate root with a glob"));
    assert!(problems[1].contains("low/inner.rs:1: `low` (layer 1) names `crate::high` (layer 2)"));
    assert!(problems[4].contains("low/mod.rs:13: `low` (layer 1) names `crate::high`"));
    assert!(problems[5].starts_with("cycle: "), "{problems:#?}");
    let same: BTreeMap<String, u32> = [("low".into(), 1), ("high".into(), 1)].into();
    let problems = check(&krate, &same);
    assert_eq!(
        problems.len(),
        2,
        "a glob and a cycle within a layer: {problems:#?}"
    );
    assert!(problems[1].starts_with("cycle: "), "{problems:#?}");
}
