//! The documentation holds together: every relative link of the README and of docs/ names a file
//! of the repository, and its `#anchor` a heading of that file (as GitHub and mdbook make them);
//! every page of docs/ is in the site's table of contents. (Its YAML examples are loaded by
//! `the_documentation_examples_load` in src/config/tests.rs.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every markdown file under docs/.
fn documentation() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut files);
    files.sort();
    files
}

/// The lines of a markdown text outside fenced code blocks, with their numbers, inline code
/// spans blanked out.
fn prose(text: &str) -> Vec<(usize, String)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut out = String::new();
        for (j, part) in line.split('`').enumerate() {
            if j % 2 == 0 {
                out.push_str(part);
            } else {
                out.push_str(&" ".repeat(part.len() + 2));
            }
        }
        lines.push((i + 1, out));
    }
    lines
}

/// A heading's anchor as GitHub (and mdbook) make it: lower case, punctuation dropped but for `-`
/// and `_`, spaces made hyphens.
fn slug(heading: &str) -> String {
    // A link in a heading counts by its text.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find("](") {
        let close = rest[open..].find(')').map_or(rest.len(), |c| open + c + 1);
        text.push_str(&rest[..open]);
        rest = &rest[close..];
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings, repeated ones numbered as GitHub numbers them.
fn anchors(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let heading = line.trim_start_matches('#');
        if fenced || heading.len() == line.len() || !heading.starts_with(' ') || line.len() - heading.len() > 6 {
            continue;
        }
        let base = slug(heading);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of a line's inline links and images, `[text](target)` and `![alt](target "title")`,
/// and of reference definitions, `[label]: target`.
fn targets(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let end = after.find(')').unwrap_or(after.len());
        let target = after[..end].split_whitespace().next().unwrap_or("");
        found.push(target.trim_matches(['<', '>']).to_owned());
        rest = &after[end..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') {
        if let Some(i) = trimmed.find("]: ") {
            found.push(trimmed[i + 3..].split_whitespace().next().unwrap_or("").to_owned());
        }
    }
    found
}

#[test]
fn every_relative_link_of_the_documentation_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in documentation() {
        let shown = file.strip_prefix(root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in prose(&text) {
            for target in targets(&line) {
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                let resolved = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
                if !resolved.exists() {
                    problems.push(format!("{shown}:{n}: {target}: no such file"));
                    continue;
                }
                if !resolved.canonicalize().unwrap().starts_with(root().canonicalize().unwrap()) {
                    problems.push(format!("{shown}:{n}: {target}: outside the repository"));
                }
                if let Some(anchor) = anchor {
                    if resolved.extension().is_none_or(|e| e != "md") {
                        problems.push(format!("{shown}:{n}: {target}: an anchor into a file that is not markdown"));
                    } else if !anchors(&resolved).contains(anchor) {
                        problems.push(format!("{shown}:{n}: {target}: no heading with that anchor"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{} broken links:\n{}", problems.len(), problems.join("\n"));
    assert!(checked > 50, "only {checked} relative links found: is the parser still finding them?");
}

/// mdbook renders only the pages SUMMARY.md lists: every page of docs/ is there (but SUMMARY.md).
#[test]
fn every_page_of_docs_is_in_the_table_of_contents() {
    let summary = std::fs::read_to_string(root().join("docs/SUMMARY.md")).unwrap();
    let listed: BTreeSet<String> = summary.lines().flat_map(targets).collect();
    for file in documentation() {
        let Ok(page) = file.strip_prefix(root().join("docs")) else { continue };
        let page = page.display().to_string();
        if page != "SUMMARY.md" {
            assert!(listed.contains(&page), "docs/{page} is not in docs/SUMMARY.md, so the site leaves it out");
        }
    }
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(
        slug(" OAuth 2.0 and OpenID Connect: configuration and classification"),
        "oauth-20-and-openid-connect-configuration-and-classification"
    );
    assert_eq!(slug(" `probe_files`: several files — and [links](x.md)"), "probe_files-several-files--and-links");
    assert_eq!(targets("see [a](b.md#c) and ![d](e.png \"t\")"), ["b.md#c", "e.png"]);
}
