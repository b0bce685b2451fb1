//! The runtime's layers, checked: every module of `runtime/src` belongs to one layer, and a module may
//! name (`crate::...` or `super::...`) only modules of its own layer or of layers below it; and the
//! modules' imports form no cycle. The layers are those the crate documentation states; an import that
//! goes up a layer fails this test, naming the two modules and the line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. A module not listed takes its parent's layer (`sink::sql` is a sink).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaf types and kernels",
        &[
            "time",
            "spec",
            "settings",
            "stop",
            "rate",
            "wal",
            "shuffle",
            "demo",
            "secret",
            "store",
            "kafka_client",
        ],
    ),
    ("data", &["state", "checkpoint", "output"]),
    ("connectors", &["source", "sink"]),
    ("monitoring", &["monitor"]),
    ("execution", &["batch", "context", "exec", "stateful"]),
    ("pipeline and configuration", &["pipeline", "config"]),
    ("engine", &["engine"]),
    ("app", &["app", "testkit"]),
];

fn layer_of(module: &str) -> Option<usize> {
    let mut name = module;
    loop {
        if let Some(at) = LAYERS.iter().position(|(_, mods)| mods.contains(&name)) {
            return Some(at);
        }
        name = name.rsplit_once("::")?.0;
    }
}

/// Every module of the crate, by path (`sink::sql`), with its source file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read runtime/src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let mut name = relative
                .with_extension("")
                .to_string_lossy()
                .replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_string();
            }
            if name != "lib" {
                found.insert(name, path);
            }
        }
    }
    found
}

/// The longest module of `known` that `path` (`sink::sql::SqlTable`) starts with.
fn resolve<'a>(path: &str, known: &'a BTreeMap<String, PathBuf>) -> Option<&'a str> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find_map(|candidate| known.get_key_value(&candidate).map(|(k, _)| k.as_str()))
}

/// The modules a file names, with the line of each, outside its unit tests.
fn imports(module: &str, text: &str, known: &BTreeMap<String, PathBuf>) -> Vec<(String, usize)> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let parent = module.rsplit_once("::").map(|(p, _)| p);
    let mut found = Vec::new();
    for (number, line) in code.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (prefix, base) in [("crate::", None), ("super::", parent)] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let after = &rest[at + prefix.len()..];
                let path: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let path = path.trim_end_matches(':');
                let full = match (prefix, base) {
                    ("super::", Some(parent)) => format!("{parent}::{path}"),
                    ("super::", None) => String::new(),
                    _ => path.to_string(),
                };
                if let Some(target) = resolve(&full, known) {
                    if target != module && !module.starts_with(&format!("{target}::")) {
                        found.push((target.to_string(), number + 1));
                    }
                }
                rest = after;
            }
        }
    }
    found
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    let mut unplaced = Vec::new();
    let mut upward = Vec::new();
    for (module, file) in &known {
        let Some(layer) = layer_of(module) else {
            unplaced.push(module.clone());
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read a module");
        for (target, line) in imports(module, &text, &known) {
            let Some(target_layer) = layer_of(&target) else {
                continue;
            };
            if target_layer <= layer {
                continue;
            }
            upward.push(format!(
                "{}:{line}: `{module}` ({}) imports `{target}` ({})",
                file.strip_prefix(&src).unwrap_or(file).display(),
                LAYERS[layer].0,
                LAYERS[target_layer].0
            ));
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules in no layer (add them to LAYERS): {unplaced:?}"
    );
    assert!(
        upward.is_empty(),
        "imports that go up a layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_module_graph_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &known {
        let text = std::fs::read_to_string(file).expect("read a module");
        for (target, _) in imports(module, &text, &known) {
            // A module and its own submodules are one room.
            let top = |m: &str| m.split("::").next().unwrap_or(m).to_string();
            let (from, to) = (top(module), top(&target));
            if from != to {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, &edges, &mut Vec::new(), &mut done) {
            panic!("an import cycle: {}", cycle.join(" -> "));
        }
    }
}
