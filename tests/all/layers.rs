//! The crate's layers, as `host/src/lib.rs` and DESIGN.md draw them: each top-level module
//! may use only the modules of the layers below its own. Read off the source: every
//! `crate::<module>` path in code (comments aside) is an edge, and every edge must go down.
//! A circle of modules that import each other is impossible when every edge goes down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module's layer: lower numbers are lower layers.
const LAYERS: [(&str, u8); 18] = [
    // Metric names and trace context: recorded from every layer, using none.
    ("telemetry", 0),
    ("model", 0),
    ("bindings", 0),
    ("store", 1),
    ("retention", 2),
    ("capabilities", 2),
    ("runtime", 3),
    ("plugins", 4),
    ("replay", 4),
    ("workflows", 4),
    ("events", 5),
    ("saga", 6),
    // Start runs through the engine: cron schedules, and takeovers of dead nodes' runs.
    ("schedules", 7),
    ("cluster", 7),
    // This node in a service registry (Consul), while it serves.
    ("discovery", 7),
    ("api", 8),
    ("config", 9),
    // What `lib.rs` itself defines (`run`, `serve`, `runtime_for`): the top.
    ("lib", 10),
];

/// Items `lib.rs` re-exports, by the module they come from.
const REEXPORTS: [(&str, &str); 5] = [
    ("Config", "config"),
    ("Runtime", "runtime"),
    ("Plugin", "runtime"),
    ("PluginSettings", "runtime"),
    ("CallError", "runtime"),
];

/// `source` without its comments (line comments and doc comments; the crate has no block
/// comments), so that a doc link does not count as a use.
fn code(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            // Not inside a string literal: good enough for this crate's sources, which put
            // no `//` in strings on lines that also use `crate::`.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `code` reaches through `crate::`.
fn uses(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c}`: the first segment of each path in the group.
            let end = group.find('}').unwrap_or(group.len());
            group[..end]
                .split(',')
                .map(|path| path.trim().split("::").next().unwrap_or("").to_owned())
                .collect()
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            vec![rest[..end].to_owned()]
        };
        for name in names {
            let module = REEXPORTS
                .iter()
                .find(|(item, _)| *item == name)
                .map_or(name.as_str(), |(_, module)| module);
            let module = if LAYERS.iter().any(|(m, _)| *m == module) {
                module.to_owned()
            } else {
                "lib".to_owned()
            };
            found.insert(module);
        }
    }
    found
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let layer: BTreeMap<&str, u8> = LAYERS.into_iter().collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap();
        let first = relative.iter().next().unwrap().to_string_lossy();
        let module = first.trim_end_matches(".rs");
        // The binary (`main.rs`, `cli/`) is a crate of its own, and `lib.rs` the top.
        if matches!(module, "main" | "cli" | "lib") {
            continue;
        }
        let from = *layer
            .get(module)
            .unwrap_or_else(|| panic!("{module} has no layer: add it to LAYERS"));
        let source = std::fs::read_to_string(file).unwrap();
        for to in uses(&code(&source)) {
            if to == module {
                continue;
            }
            if layer[to.as_str()] >= from {
                wrong.push(format!("{} uses {to}", relative.display()));
            }
            edges.entry(module.to_owned()).or_default().insert(to);
        }
    }
    assert!(
        wrong.is_empty(),
        "uses of a layer that is not below: {wrong:#?}\nall edges: {edges:#?}"
    );
    // The store sees nothing but the model, and records its flushes.
    let store = edges.get("store").cloned().unwrap_or_default();
    assert!(
        store.is_subset(&BTreeSet::from([
            "model".to_owned(),
            "telemetry".to_owned()
        ])),
        "the store uses {store:?}"
    );
}

#[test]
fn the_reader_finds_what_it_must() {
    let found = uses(&code(
        "use crate::store::{A, B};\nuse crate::{model, saga::Engine};\n/// [`crate::api`]\nlet x = crate::Config::load();",
    ));
    assert_eq!(
        found,
        BTreeSet::from(["config", "model", "saga", "store"].map(String::from))
    );
}
