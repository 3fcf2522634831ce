//! The local tool's modules point one way (no import cycle) and stay small, read off the
//! sources in `src/local/`.
#![cfg(feature = "local")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The style guide's bound on a file's length.
const MAX_LINES: usize = 400;

/// Every `src/local/*.rs` module but `mod.rs`, by name, with its source before its tests.
fn modules() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/local");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("src/local") {
        let path = entry.expect("dir entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if path.extension().is_some_and(|e| e == "rs") && name != "mod" {
            let src = std::fs::read_to_string(&path).expect("module source");
            let code = src.split("#[cfg(test)]").next().unwrap_or("").to_owned();
            out.insert(name.to_owned(), code);
        }
    }
    out
}

/// The sibling modules `code` names through `super::` or `crate::local::`.
fn edges(code: &str, names: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["super::", "crate::local::"] {
        for (at, _) in code.match_indices(prefix) {
            let rest = &code[at + prefix.len()..];
            // `use super::{a, b::c}` names several; take every word up to the statement's end.
            let stmt = rest.split([';', '(']).next().unwrap_or("");
            let words = stmt.split(|c: char| !(c.is_alphanumeric() || c == '_'));
            out.extend(words.filter(|w| names.contains(*w)).map(str::to_owned));
        }
    }
    out
}

/// No module of `src/local` reaches itself through its imports, and none exceeds the limit.
#[test]
fn local_modules_form_no_import_cycle() {
    let mods = modules();
    let names: BTreeSet<String> = mods.keys().cloned().collect();
    let graph: BTreeMap<&str, BTreeSet<String>> = mods
        .iter()
        .map(|(name, code)| (name.as_str(), edges(code, &names)))
        .collect();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Vec<&str>> = vec![vec![start]];
        while let Some(path) = stack.pop() {
            let last = path[path.len() - 1];
            for next in &graph[last] {
                assert_ne!(next, start, "import cycle: {path:?} -> {next}");
                if seen.insert(next.as_str()) {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push(longer);
                }
            }
        }
    }
    for (name, code) in &mods {
        let lines = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("src/local/{name}.rs")),
        )
        .map(|s| s.lines().count())
        .unwrap_or_default();
        assert!(lines <= MAX_LINES, "src/local/{name}.rs has {lines} lines");
        assert!(!code.is_empty(), "src/local/{name}.rs is empty");
    }
}
