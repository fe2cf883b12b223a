//! Keeps the crate's shape: a module may import only from its own layer or below, and
//! no file in `host/src` grows past [`MAX_LINES`]. Runs with the unit tests.
//!
//! Bottom to top (README, "Layout"):
//!
//! ```text
//! app check swap server host_guard main lib   the process: wiring, CLI, signals
//! admin                                         the admin API
//! ingest                                        the ingest API and the pipeline
//! tenants                                       the live registry, auth extractors
//! delivery                                      route queues, retry schedules
//! sinks                                         one folder per transport
//! policy                                        engine, sandbox, versions, swap
//! store                                         the Store trait and its SQLite store
//! config                                        the TOML schema
//! event record                                  shared records
//! text json units clock contract telemetry signing egress api_error secret_key
//! ```

use regex::Regex;
use std::collections::BTreeMap;
use std::path::Path;

/// Each top-level module and its layer (higher is further up).
const LAYERS: &[(&str, u8)] = &[
    ("text", 0),
    ("json", 0),
    ("units", 0),
    ("clock", 0),
    ("contract", 0),
    ("telemetry", 0),
    ("signing", 0),
    ("egress", 0),
    ("api_error", 0),
    ("secret_key", 0),
    ("event", 1),
    ("record", 1),
    ("config", 2),
    ("store", 3),
    ("policy", 4),
    ("sinks", 5),
    ("delivery", 6),
    ("tenants", 7),
    ("ingest", 8),
    ("admin", 9),
    ("app", 10),
    ("app_tests", 10),
    ("check", 10),
    ("swap", 10),
    ("server", 10),
    ("host_guard", 10),
    ("layering", 10),
    ("main", 10),
    ("lib", 10),
];

/// Longest a source file may be.
pub const MAX_LINES: usize = 400;

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a file belongs to: `ingest/mod.rs` → `ingest`, `app.rs` → `app`.
fn module_of(relative: &str) -> &str {
    let first = relative.split('/').next().unwrap_or(relative);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// The top-level modules `source` names through `crate::` (comments skipped).
fn imports(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    // String literals (messages, fixtures) are not imports.
    let strings = Regex::new(r#""(?:[^"\\]|\\.)*""#).expect("regex");
    let code = strings.replace_all(&code, "\"\"");
    let single = Regex::new(r"crate::([a-z_][a-z0-9_]*)").expect("regex");
    let grouped = Regex::new(r"crate::\{([^}]*)\}").expect("regex");
    let mut out: Vec<String> = single.captures_iter(&code).map(|c| c[1].to_string()).collect();
    for group in grouped.captures_iter(&code) {
        for item in group[1].split(',') {
            let name = item.trim().split("::").next().unwrap_or("").trim();
            if !name.is_empty() {
                out.push(name.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// One line per upward import, unknown module or over-long file in `files`
/// (path relative to `host/src` → source).
pub fn violations(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, source) in files {
        let module = module_of(path);
        let Some(own) = layer(module) else {
            problems.push(format!("{path}: module `{module}` has no layer; add it to LAYERS in layering.rs"));
            continue;
        };
        for imported in imports(source) {
            match layer(&imported) {
                None => problems.push(format!("{path}: imports `crate::{imported}`, which has no layer")),
                Some(theirs) if theirs > own => problems.push(format!(
                    "{path}: `{module}` (layer {own}) imports `crate::{imported}` (layer {theirs}), a layer above it"
                )),
                Some(_) => {}
            }
        }
        let lines = source.lines().count();
        if lines > MAX_LINES {
            problems.push(format!("{path}: {lines} lines, more than {MAX_LINES}: split it"));
        }
    }
    problems
}

fn read_tree(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("read host/src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            out.insert(relative, std::fs::read_to_string(&path).expect("read source"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_src_imports_only_downward_and_keeps_files_short() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = BTreeMap::new();
        read_tree(&root, &root, &mut files);
        assert!(files.len() > 40, "read only {} files", files.len());
        let problems = violations(&files);
        assert!(problems.is_empty(), "the layering is broken:\n{}", problems.join("\n"));
    }

    #[test]
    fn an_upward_import_is_caught_and_named() {
        let files = BTreeMap::from([
            ("store/mod.rs".to_string(), "use crate::record::Delivery;\nuse crate::app::App;\n".to_string()),
            ("sinks/kafka/mod.rs".to_string(), "use crate::{config::X, tenants::Tenant};\n".to_string()),
            ("ingest/mod.rs".to_string(), "// see crate::app::App\nuse crate::tenants::Caller;\n".to_string()),
            ("mystery.rs".to_string(), String::new()),
        ]);
        let problems = violations(&files);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].contains("mystery.rs: module `mystery` has no layer"), "{problems:#?}");
        assert!(problems[1].contains("sinks/kafka/mod.rs: `sinks` (layer 5) imports `crate::tenants` (layer 7)"));
        assert!(problems[2].contains("store/mod.rs: `store` (layer 3) imports `crate::app` (layer 10)"));
    }

    #[test]
    fn a_long_file_is_caught() {
        let files = BTreeMap::from([("json.rs".to_string(), "\n".repeat(MAX_LINES + 1))]);
        assert_eq!(
            violations(&files),
            vec![format!("json.rs: {} lines, more than {MAX_LINES}: split it", MAX_LINES + 1)]
        );
    }
}
