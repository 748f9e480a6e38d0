//! The source keeps its layers: every module imports only modules of its own layer or below,
//! the front ends reach training only through `protocol` (and `watch`), and nothing imports in
//! a circle, between top-level modules or between the files of one folder.
//!
//! Imports are read from the source text: `crate::x` paths (grouped `use crate::{a, b}` too)
//! and, inside a folder, `super::x`. Tests (`#[cfg(test)]` and below) are left out, and a
//! folder's `mod.rs` re-exporting its files (`pub use x::Y`) is a facade, not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. A module may import modules of its own layer or of a lower one.
const LAYERS: &[&[&str]] = &[
    // plain data and small helpers
    &[
        "format", "rng", "protocol", "schedule", "stopping", "signals", "run_dir",
    ],
    // the model, its optimizers, the data
    &["model", "optim", "data"],
    // settings and the process's compute setup; the doctor, which reads a run's settings
    &["config", "runtime", "diagnose"],
    // checkpoints
    &["checkpoint"],
    // the training thread
    &["train"],
    // what a watcher knows of a run
    &["watch"],
    // front ends
    &["headless", "tui", "socket", "figure", "export", "notify"],
    // edges: command line, subcommands, benchmark, the runs listing
    &["cli", "error", "bench", "cmd", "runs"],
];

/// What each front end may import: no core module but the messages.
const FRONT_ENDS: &[(&str, &[&str])] = &[
    ("headless", &["protocol", "watch", "format"]),
    (
        "tui",
        &[
            "protocol", "schedule", "stopping", "watch", "format", "signals",
        ],
    ),
    ("watch", &["protocol", "schedule", "stopping", "format"]),
    ("socket", &["protocol", "watch", "format", "run_dir"]),
    ("figure", &["protocol", "watch", "format"]),
    ("export", &["protocol", "run_dir"]),
    ("notify", &["protocol", "format", "run_dir"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The text of a file without comments, string literals or tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        // Drop string literals (they may hold "crate::" in messages).
        let mut in_str = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// The first path segment after every `prefix::` in `text`, groups included, nested ones too:
/// `crate::{a::X, b::{Y, Z}, c}` gives a, b and c.
fn segments(text: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let pat = format!("{prefix}::");
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(&pat) {
        // Only whole words: `crate::`, not `mycrate::`.
        let before = rest[..i].chars().last();
        rest = &rest[i + pat.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // The group's items at its own depth: split on commas outside inner braces.
            let (mut depth, mut item) = (0usize, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            out.insert(ident(item.trim()));
        } else {
            out.insert(ident(rest));
        }
    }
    out.remove("");
    out
}

fn rs_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rs_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The top-level module a file belongs to (None for lib.rs and main.rs).
fn top_module(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main").then_some(name)
}

fn top_level_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let files = rs_files(&src());
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(f)).collect();
    for f in &files {
        let Some(me) = top_module(f) else { continue };
        let deps = graph.entry(me.clone()).or_default();
        for d in segments(&code(f), "crate") {
            if modules.contains(&d) && d != me {
                deps.insert(d);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

/// Outside crates that belong to one part: the argument parser to the command line, the
/// terminal libraries to the terminal UI, the tensor library to the core below the training
/// thread.
const OUTSIDE: &[(&str, &[&str])] = &[
    ("clap", &["cli", "main"]),
    ("clap_complete", &["cli"]),
    ("clap_mangen", &["cli"]),
    ("ratatui", &["tui", "bench"]),
    ("crossterm", &["tui"]),
    (
        "candle_core",
        &["model", "optim", "train", "checkpoint", "error", "bench"],
    ),
    ("candle_nn", &["model", "optim", "train", "bench"]),
];

#[test]
fn outside_crates_are_used_only_where_they_belong() {
    let mut wrong = Vec::new();
    for f in rs_files(&src()) {
        let text = code(&f);
        let me = top_module(&f).unwrap_or_else(|| "main".into());
        for (krate, allowed) in OUTSIDE {
            let used = text.contains(&format!("{krate}::"));
            if used && !allowed.contains(&me.as_str()) {
                wrong.push(format!(
                    "{} uses {krate}: only {allowed:?} may",
                    f.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn modules_import_only_their_own_layer_and_below() {
    let graph = top_level_graph();
    let layer = |m: &str| {
        LAYERS
            .iter()
            .position(|l| l.contains(&m))
            .unwrap_or_else(|| panic!("module {m} is in no layer: add it to LAYERS"))
    };
    let mut wrong = Vec::new();
    for (m, deps) in &graph {
        for d in deps {
            if layer(d) > layer(m) {
                wrong.push(format!("{m} imports {d}, a layer above it"));
            }
        }
    }
    for (front, allowed) in FRONT_ENDS {
        for d in graph.get(*front).into_iter().flatten() {
            if !allowed.contains(&d.as_str()) {
                wrong.push(format!("{front} imports {d}: it may use only {allowed:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        find_cycle(&graph),
        None,
        "modules import each other in a circle"
    );
}

#[test]
fn the_files_of_a_folder_do_not_import_each_other_in_a_circle() {
    // Every folder, nested ones too (tui/widgets/): each with its files and subfolders.
    fn folders_in(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.push(p.clone());
                folders_in(&p, out);
            }
        }
    }
    let mut folders = Vec::new();
    folders_in(&src(), &mut folders);
    folders.sort();
    assert!(folders.iter().any(|f| f.ends_with("tui/widgets")));
    for folder in folders {
        // The folder's module path below the crate: `tui::widgets`.
        let top = folder
            .strip_prefix(src())
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect::<Vec<_>>()
            .join("::");
        // The folder's own modules: files, and subfolders taken whole.
        let mut members: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for e in std::fs::read_dir(&folder).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                members.entry(name).or_default().extend(rs_files(&p));
            } else if p.extension().is_some_and(|x| x == "rs") {
                members.entry(name).or_default().push(p);
            }
        }
        // What mod.rs re-exports, and from which file.
        let mod_text = code(&folder.join("mod.rs"));
        let mut reexported: BTreeMap<String, String> = BTreeMap::new();
        for line in mod_text.lines() {
            let Some(rest) = line.trim().strip_prefix("pub use ") else {
                continue;
            };
            let Some((from, items)) = rest.split_once("::") else {
                continue;
            };
            for item in items.trim_matches(|c| "{};".contains(c)).split(',') {
                let name = item.trim().rsplit("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    reexported.insert(name.to_string(), from.to_string());
                }
            }
        }
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, files) in &members {
            let deps = graph.entry(name.clone()).or_default();
            for f in files {
                let text = code(f);
                let is_mod = name == "mod";
                let mut refs = segments(&text, &format!("crate::{top}"));
                if is_mod {
                    // Its own code's paths to its files; `pub mod` and `pub use` lines are
                    // the folder's declaration and facade.
                    let own: String = text
                        .lines()
                        .filter(|l| {
                            let l = l.trim();
                            !(l.starts_with("pub mod ")
                                || l.starts_with("mod ")
                                || l.starts_with("pub(crate) mod ")
                                || l.starts_with("pub use "))
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                    for m in members.keys() {
                        if own.contains(&format!("{m}::")) {
                            refs.insert(m.clone());
                        }
                    }
                } else if f.parent() == Some(folder.as_path()) {
                    refs.extend(segments(&text, "super"));
                }
                for r in refs {
                    let target = if members.contains_key(&r) {
                        r
                    } else if let Some(from) = reexported.get(&r) {
                        from.clone()
                    } else {
                        "mod".to_string()
                    };
                    if target != *name {
                        deps.insert(target);
                    }
                }
            }
        }
        assert_eq!(
            find_cycle(&graph),
            None,
            "files of {}/ import each other in a circle: {graph:?}",
            folder.display()
        );
    }
}

/// The checker itself finds what it is there to find.
#[test]
fn the_checker_sees_grouped_imports_and_cycles() {
    let s = segments(
        "use crate::{a::X, b};\nlet y = crate::c::f(); mycrate::d",
        "crate",
    );
    assert_eq!(s, ["a", "b", "c"].iter().map(|x| x.to_string()).collect());
    let nested = segments("use crate::{a::{X, y::Z}, b::{W}, c};", "crate");
    assert_eq!(
        nested,
        ["a", "b", "c"].iter().map(|x| x.to_string()).collect()
    );
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
