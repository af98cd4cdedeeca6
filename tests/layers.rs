//! The module graph is one-way and matches the layer table of the crate docs: every `crate::`
//! path in a module's code (comments and unit tests aside) names a module of a lower layer. In
//! particular the host knows no guest, the guest knows no host, and `embed` is the one module
//! that knows both below `to_host`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// The layers, lowest first; a module may use the modules of the layers below its own.
/// `error` is everyone's (the crate's one error type, `crate::{Error, Result}`), so it is in no
/// layer and not checked here.
const LAYERS: &[&[&str]] = &[
    // The shim to the optional `tracing` crate: every layer may log.
    &["log"],
    &["cx"],
    &["time", "trace", "panic", "wire"],
    &["timers", "sync", "reactor"],
    &["host", "guest"],
    &["embed"],
    &["to_host"],
    &["actor"],
    &["sim", "debug"],
    &["fuzzing"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The code of a file: line comments and the unit-test module cut off.
fn code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|l| match l.trim_start() {
            t if t.starts_with("//") => "",
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules a piece of code names through `crate::`, `crate::{..}` groups included.
fn uses(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect() };
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                out.insert(ident(item.trim()));
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
}

#[test]
fn every_module_uses_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let module = rel.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "error" {
            continue;
        }
        let own = layer_of(&module).unwrap_or_else(|| panic!("{rel}: module `{module}` is in no layer"));
        for used in uses(&code(&fs::read_to_string(f).unwrap())) {
            if used == module || used == "error" {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {}
                _ => wrong.push(format!("{rel} uses crate::{used}")),
            }
        }
        checked += 1;
    }
    assert!(checked > 30, "read the source tree ({checked} files)");
    assert_eq!(wrong, Vec::<String>::new());
}

#[test]
fn the_parser_sees_groups_and_paths() {
    let c = code("use crate::{Error, guest, host::Host};\n// crate::actor\nlet x = crate::timers::SleepTimer::at(t);");
    let got: Vec<String> = uses(&c).into_iter().collect();
    assert_eq!(got, ["guest", "host", "timers"]);
    // Host and guest share a layer, so neither may use the other; embed sits above both.
    assert_eq!(layer_of("host"), layer_of("guest"));
    assert!(layer_of("embed") > layer_of("host") && layer_of("to_host") > layer_of("embed"));
}

/// The modules a row of the crate docs' layer table names: `[`x`]` links and `x` code spans in
/// its first cell.
fn row_modules(row: &str) -> Vec<String> {
    let first = row.trim_start_matches("//!").trim().trim_start_matches('|').split('|').next().unwrap_or("");
    first.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn the_layer_table_in_the_crate_docs_is_this_table() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let rows: Vec<Vec<String>> = lib
        .lines()
        .skip_while(|l| !l.starts_with("//! | layer |"))
        .skip(2) // the header and the rule
        .take_while(|l| l.starts_with("//! |"))
        .map(|r| {
            let mut m = row_modules(r);
            m.sort();
            m
        })
        .collect();
    // `fuzzing` (test-only harnesses over every layer) is not a layer of the docs' table.
    let expected: Vec<Vec<String>> = LAYERS
        .iter()
        .filter(|l| l != &&&["fuzzing"][..])
        .map(|l| {
            let mut m: Vec<String> = l.iter().map(|m| m.to_string()).collect();
            m.sort();
            m
        })
        .collect();
    assert_eq!(rows, expected, "rows of the layer table in src/lib.rs, each row's modules sorted");
}
