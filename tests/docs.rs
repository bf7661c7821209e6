//! The documentation kept true (std only, no Redis):
//! - `docs/design.md` names only files that exist, and its module map (the section under
//!   "## Module map") lists every source module (`crates/*/src/**/*.rs`) and every queue script
//!   (`crates/core/src/queue/*.lua`) by its path from the repository root;
//! - `README.md` stays a front door (at most [`README_MAX_LINES`] lines);
//! - every relative link in `README.md` and `docs/*.md` points to a file that exists, and a
//!   `#anchor` into a markdown file to one of its headings (GitHub's slugs).
//!
//! Each test lists every problem it finds, each naming the file, the line and what is wrong.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The README is a front door: what it is, the two commands, a first try, then links.
const README_MAX_LINES: usize = 300;

/// File endings that make a backticked word in `docs/design.md` a file name it claims exists.
const FILE_ENDINGS: &[&str] = &[".rs", ".lua", ".toml", ".md", ".py", ".yaml", ".yml", ".html", ".js"];

/// The heading of the design page's module map: every source module must be named under it.
const MODULE_MAP: &str = "## Module map";

/// The level of a markdown heading line (`## Title`: 2), `None` for any other line.
fn heading_level(line: &str) -> Option<usize> {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    ((1..=6).contains(&hashes) && line[hashes..].starts_with(' ')).then_some(hashes)
}

/// The text of the section that starts at the heading line `heading`, up to the next heading of
/// the same or a higher level (headings inside fenced code blocks do not count).
fn section<'a>(text: &'a str, heading: &str) -> Option<&'a str> {
    let level = heading_level(heading)?;
    let mut fenced = false;
    let mut start = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let here = offset;
        offset += line.len();
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        match start {
            None if line.trim_end() == heading => start = Some(here),
            Some(s) if heading_level(line).is_some_and(|l| l <= level) => return Some(&text[s..here]),
            _ => {}
        }
    }
    start.map(|s| &text[s..])
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent: the repository root")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `path` relative to the repository root, with `/` separators.
fn relative(path: &Path) -> String {
    let rel = path.strip_prefix(root()).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Every file under `dir` (recursively) whose name ends with `ending`.
fn files_under(dir: &Path, ending: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, ending, out);
        } else if path.to_string_lossy().ends_with(ending) {
            out.push(path);
        }
    }
}

/// What the module map must list: every `*.rs` under `crates/*/src`, and the queue's scripts.
fn source_modules() -> BTreeSet<String> {
    let mut files = Vec::new();
    let crates = root().join("crates");
    for entry in fs::read_dir(&crates).expect("crates/ is readable").flatten() {
        files_under(&entry.path().join("src"), ".rs", &mut files);
    }
    let queue = root().join("crates/core/src/queue");
    for entry in fs::read_dir(&queue).expect("crates/core/src/queue is readable").flatten() {
        if entry.path().extension().is_some_and(|e| e == "lua") {
            files.push(entry.path());
        }
    }
    files.iter().map(|p| relative(p)).collect()
}

/// The lines of a markdown file outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// A markdown page read for its links and its code spans.
struct Page {
    /// Its lines outside fenced code blocks with every inline code span blanked out (a link in
    /// backticks is not a link), index 0 being line 1; fenced lines are empty.
    lines: Vec<String>,
    /// Its inline code spans (`` `like this` ``), each with the line it starts on.
    spans: Vec<(usize, String)>,
}

impl Page {
    fn parse(text: &str) -> Self {
        let mut fenced = false;
        let mut prose = String::new();
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
            } else if !fenced {
                prose.push_str(line);
            }
            prose.push('\n');
        }
        let chars: Vec<char> = prose.chars().collect();
        let run_at = |i: usize| chars[i..].iter().take_while(|c| **c == '`').count();
        let mut masked = String::new();
        let mut spans = Vec::new();
        let mut line = 1;
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != '`' {
                if chars[i] == '\n' {
                    line += 1;
                }
                masked.push(chars[i]);
                i += 1;
                continue;
            }
            // A run of n backticks opens a span that the next run of exactly n closes.
            let run = run_at(i);
            let mut j = i + run;
            let close = loop {
                if j >= chars.len() {
                    break None;
                }
                if chars[j] == '`' {
                    let r = run_at(j);
                    if r == run {
                        break Some(j);
                    }
                    j += r;
                } else {
                    j += 1;
                }
            };
            let Some(close) = close else {
                masked.extend(std::iter::repeat_n('`', run));
                i += run;
                continue;
            };
            let content: String = chars[i + run..close].iter().collect();
            spans.push((line, content.replace('\n', " ").trim().to_owned()));
            for c in &chars[i..close + run] {
                if *c == '\n' {
                    masked.push('\n');
                    line += 1;
                } else {
                    masked.push(' ');
                }
            }
            i = close + run;
        }
        Self { lines: masked.lines().map(str::to_owned).collect(), spans }
    }

    /// The targets of the inline links `[text](target)`, each with its line.
    fn links(&self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            let mut rest = line.as_str();
            while let Some(at) = rest.find("](") {
                let after = &rest[at + 2..];
                let Some(end) = after.find(')') else { break };
                let target = after[..end].split_whitespace().next().unwrap_or("");
                out.push((i + 1, target.to_owned()));
                rest = &after[end..];
            }
        }
        out
    }
}

/// GitHub's anchor for a heading's text: lowercase; letters, digits, '-' and '_' kept, spaces
/// become '-', everything else (punctuation, emphasis and code marks) dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// A heading's text as shown: a link `[text](target)` shows its text only.
fn shown(heading: &str) -> String {
    let mut out = heading.to_owned();
    while let Some(at) = out.find("](") {
        let end = out[at..].find(')').map_or(out.len(), |e| at + e + 1);
        out.replace_range(at..end, "");
    }
    out
}

/// The anchors of a markdown file's headings, with GitHub's `-1`, `-2` … for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let Some(level) = heading_level(line) else { continue };
        let base = slug(&shown(&line[level..]));
        let mut anchor = base.clone();
        let mut n = 0;
        while !seen.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
    }
    seen
}

/// README.md and every docs/*.md.
fn markdown_pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs = Vec::new();
    files_under(&root().join("docs"), ".md", &mut docs);
    docs.sort();
    pages.extend(docs);
    pages
}

fn fail_with(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}: {} problem(s):\n  {}\n", problems.len(), problems.join("\n  "));
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines; at most {README_MAX_LINES}: move the detail into a docs/ page and link it"
    );
}

#[test]
fn every_relative_link_points_to_a_file_and_heading_that_exist() {
    let mut problems = Vec::new();
    for page in markdown_pages() {
        let text = read(&page);
        let dir = page.parent().expect("a page is in a directory");
        for (n, target) in Page::parse(&text).links() {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() { page.clone() } else { dir.join(path) };
            if !file.exists() {
                problems.push(format!(
                    "{}:{n}: link `{target}` points to {}, which does not exist",
                    relative(&page),
                    relative(&file)
                ));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if file.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let known = anchors(&read(&file));
            if !known.contains(anchor) {
                problems.push(format!(
                    "{}:{n}: link `{target}`: {} has no heading with the anchor `#{anchor}` (its anchors: {})",
                    relative(&page),
                    relative(&file),
                    known.iter().map(|a| format!("#{a}")).collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    fail_with("broken links in README.md or docs/", &problems);
}

#[test]
fn the_design_page_names_only_files_that_exist() {
    let design = root().join("docs/design.md");
    let text = read(&design);
    let names: BTreeSet<String> = {
        let mut files = Vec::new();
        for ending in FILE_ENDINGS {
            for dir in ["crates", "tests", "docs"] {
                files_under(&root().join(dir), ending, &mut files);
            }
        }
        files.extend(fs::read_dir(root()).expect("the root is readable").flatten().map(|e| e.path()));
        files.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect()
    };
    let mut problems = Vec::new();
    for (n, span) in &Page::parse(&text).spans {
        let looks_like_a_file = FILE_ENDINGS.iter().any(|e| span.ends_with(e)) || span.ends_with('/');
        if !looks_like_a_file || span.contains(['*', '<', '…', ' ', '{']) {
            continue;
        }
        if span.contains('/') {
            // A path from the repository root.
            if !root().join(span.trim_end_matches('/')).exists() {
                problems.push(format!("docs/design.md:{n}: names `{span}`, which does not exist"));
            }
        } else if !names.contains(span) {
            // A bare file name: some file at the root or under crates/, tests/ or docs/ must have it.
            problems.push(format!(
                "docs/design.md:{n}: names `{span}`, and no file at the root or under crates/, tests/ or docs/ has that name"
            ));
        }
    }
    fail_with("docs/design.md names files that are gone (rename or remove them there)", &problems);
}

#[test]
fn the_design_page_maps_every_source_module() {
    let text = read(&root().join("docs/design.md"));
    let map =
        section(&text, MODULE_MAP).unwrap_or_else(|| panic!("docs/design.md has no `{MODULE_MAP}` section"));
    let named: BTreeSet<String> = Page::parse(map).spans.into_iter().map(|(_, span)| span).collect();
    let problems: Vec<String> = source_modules()
        .into_iter()
        .filter(|module| !named.contains(module))
        .map(|module| format!("`{module}` is missing: add a row for it to the module map of docs/design.md"))
        .collect();
    fail_with("docs/design.md's module map leaves out source modules", &problems);
}

#[cfg(test)]
mod tests_of_the_helpers {
    use super::*;

    #[test]
    fn slugs_follow_github() {
        assert_eq!(slug("Memory of waiting and dead work"), "memory-of-waiting-and-dead-work");
        assert_eq!(
            slug("Admin API and the Settings → Webhooks page"),
            "admin-api-and-the-settings--webhooks-page"
        );
        assert_eq!(slug("`./dev stress`"), "dev-stress");
        assert_eq!(slug("The path of one event, file by file"), "the-path-of-one-event-file-by-file");
        assert_eq!(slug("snake_case and CAPS"), "snake_case-and-caps");
    }

    #[test]
    fn a_section_ends_at_the_next_heading_of_its_level() {
        let text = "# T\n\n## Module map\n\n`a.rs`\n\n### Sub\n\n`b.rs`\n\n## Next\n\n`c.rs`\n";
        assert_eq!(section(text, "## Module map"), Some("## Module map\n\n`a.rs`\n\n### Sub\n\n`b.rs`\n\n"));
        assert_eq!(section("## Module map\n`a.rs`", "## Module map"), Some("## Module map\n`a.rs`"));
        assert_eq!(section(text, "## Missing"), None);
    }

    #[test]
    fn anchors_number_repeats_and_skip_code_blocks() {
        let text = "# A\n\n## B\n\n```sh\n# not a heading\n```\n\n## B\n\n### [Link](x.md) here\n";
        let got: Vec<String> = anchors(text).into_iter().collect();
        assert_eq!(got, ["a", "b", "b-1", "link-here"]);
    }

    #[test]
    fn links_outside_code_spans_are_found() {
        let targets =
            |text: &str| -> Vec<String> { Page::parse(text).links().into_iter().map(|(_, t)| t).collect() };
        assert_eq!(targets("see [a](docs/a.md#x) and [b](b.md)"), ["docs/a.md#x", "b.md"]);
        assert!(targets("`[not](a-link.md)` and ``[nor `this`](b.md)``").is_empty());
        assert!(targets("```sh\n[fenced](c.md)\n```\n").is_empty());
        assert_eq!(targets("[t](https://example.com \"title\")"), ["https://example.com"]);
        assert_eq!(targets("a\n[wrapped\nlink](d.md)"), ["d.md"]);
    }

    #[test]
    fn code_spans_are_found_across_lines() {
        let page = Page::parse("one `crates/a.rs` and `b\nc`\n``d ` e``");
        assert_eq!(
            page.spans,
            [(1, "crates/a.rs".to_owned()), (1, "b c".to_owned()), (3, "d ` e".to_owned())]
        );
    }
}
