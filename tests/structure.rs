//! The code's shape, held by a test: inside every crate, the modules import each other without a
//! circle (issue 25), so each module can be read, tested and moved with only what is below it.
//!
//! An edge is a `crate::…` path in a module's code (a `use` or a path in place), resolved to the
//! module file it names; the crate root (`lib.rs`, `main.rs`: the table of contents), `super::`
//! paths (a submodule's own parent) and unit tests (`#[cfg(test)] mod tests`) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The repository's root (this package lives in `tests/`).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src` (`queue/mod.rs` → `queue`, `event/de.rs` → `event::de`);
/// `None` for the crate root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.is_empty() || (parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main")) {
        return None;
    }
    Some(parts.join("::"))
}

/// The code of a file without its unit tests and comments.
fn code_of(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands `prefix{a, b::{c, d}}` into its paths.
fn expand(prefix: &str, group: &str, out: &mut Vec<String>) {
    let mut depth = 0;
    let mut start = 0;
    let bytes = group.as_bytes();
    let mut items = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.find('{') {
            Some(open) => {
                let close = item.rfind('}').unwrap_or(item.len());
                expand(&format!("{prefix}{}", &item[..open]), &item[open + 1..close], out);
            }
            None => out.push(format!("{prefix}{item}")),
        }
    }
}

/// Every `crate::…` path in `code`, braces of `use` groups expanded.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        // `entraguard_core::` and the like end in `crate::`? No: only a whole word counts.
        let before = rest[..i].chars().last();
        let after = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            rest = after;
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 1;
            let mut end = group.len();
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            expand("", &group[..end], &mut out);
            rest = &group[end..];
        } else {
            let len = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '{'))
                .unwrap_or(after.len());
            let path = after[..len].trim_end_matches(':');
            match path.find("::{") {
                Some(open) => {
                    let group = &after[open + 3..];
                    let end = group.find('}').unwrap_or(group.len());
                    expand(&format!("{}::", &path[..open]), &group[..end], &mut out);
                }
                None => out.push(path.to_owned()),
            }
            rest = &after[len..];
        }
    }
    out
}

/// The longest module of `modules` that `path` starts with.
fn resolve<'a>(modules: &'a BTreeSet<String>, path: &str) -> Option<&'a String> {
    let parts: Vec<&str> = path.split("::").map(str::trim).collect();
    (1..=parts.len()).rev().find_map(|n| modules.get(&parts[..n].join("::")))
}

/// A circle of `graph`, if it has one: the modules in order, the first repeated at the end.
fn find_circle(graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut circle = stack[from..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(c) = visit(next, graph, marks, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node)
            && let Some(c) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// The module graph of one crate: module → module it names → the paths that name it.
fn graph_of(src: &Path) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<String, PathBuf> =
        files.iter().filter_map(|f| module_of(src, f).map(|m| (m, f.clone()))).collect();
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("source readable");
        let edges = graph.entry(module.clone()).or_default();
        for path in crate_paths(&code_of(&text)) {
            if let Some(target) = resolve(&names, &path)
                && target != module
                // A submodule naming its own ancestors is the module tree, not an import.
                && !module.starts_with(&format!("{target}::"))
            {
                edges.entry(target.clone()).or_default().insert(path);
            }
        }
    }
    graph
}

#[test]
fn no_crate_has_an_import_circle_among_its_modules() {
    let crates = repo().join("crates");
    let mut checked = 0;
    let mut circles = Vec::new();
    for entry in std::fs::read_dir(&crates).expect("crates/ readable").flatten() {
        let src = entry.path().join("src");
        if !src.is_dir() {
            continue;
        }
        let graph = graph_of(&src);
        checked += graph.len();
        if let Some(circle) = find_circle(&graph) {
            let ties: Vec<String> = circle
                .windows(2)
                .map(|w| {
                    let via: Vec<&String> = graph[&w[0]][&w[1]].iter().take(3).collect();
                    format!("  {} -> {} (via {via:?})", w[0], w[1])
                })
                .collect();
            circles.push(format!("{}:\n{}", entry.path().display(), ties.join("\n")));
        }
    }
    assert!(checked > 50, "only {checked} modules found: is the repository layout what this test expects?");
    assert!(circles.is_empty(), "import circles among modules:\n{}", circles.join("\n"));
}

/// The checker itself finds a circle, names its ties, and reads grouped `use` lines.
#[test]
fn the_checker_sees_a_circle_and_grouped_imports() {
    assert_eq!(
        crate_paths("use crate::{a::{B, c::D}, e};\nlet x = crate::f::g(); entraguard_crate::h"),
        vec!["a::B", "a::c::D", "e", "f::g"]
    );
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph.entry(from.into()).or_default().entry(to.into()).or_default().insert(format!("{to}::X"));
    }
    assert_eq!(find_circle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    graph.get_mut("c").expect("c").remove("a");
    assert_eq!(find_circle(&graph), None);
    let modules: BTreeSet<String> = ["queue".to_owned(), "queue::shards".to_owned()].into();
    assert_eq!(resolve(&modules, "queue::shards::Shards").map(String::as_str), Some("queue::shards"));
    assert_eq!(resolve(&modules, "queue::Queue").map(String::as_str), Some("queue"));
    assert_eq!(resolve(&modules, "ids::EndpointId"), None);
}

/// The crate the scanner links stays thin (issue 25): its normal dependency tree with default
/// features, counted by name as docs/performance.md shows, is at most 60 crates.
#[test]
fn the_producer_links_at_most_60_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(repo())
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "entraguard-producer",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let names: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(
        names.contains("redis") && names.contains("entraguard-core"),
        "not the producer's tree: {names:?}"
    );
    assert!(names.len() <= 60, "the producer links {} crates (at most 60): {names:?}", names.len());
    for heavy in ["tracing", "sha2", "rand", "icu_normalizer", "rustls", "jiff", "chacha20poly1305"] {
        assert!(!names.contains(heavy), "{heavy} is in the producer's default tree");
    }
}
