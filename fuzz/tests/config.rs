//! Fuzzes the config loader (`Config::load`, which parses and runs `validate_shape`, then
//! `sinks::validate_routes`, which parses each route's transport settings, as startup
//! and `hostd check` do):
//! structured mutations of a valid `hostd.toml` (values of the wrong type or out of
//! range, hostile sizes and durations, unknown and renamed keys, deleted keys, deep
//! nesting) and raw byte mutations of its text.
//!
//! Properties: no panic; a refused config gets one message that names the file and
//! the line, or the tenant / key at fault; an accepted config reflects the file and
//! its policy configs serialise to JSON.

use hostd::config::Config;
use hostd_fuzz::{cases, mutate, Bytes, Target};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::path::PathBuf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FULL: &str = r#"
[server]
listen = "127.0.0.1:8787"
body_limit = "1MiB"
data_dir = "data"
admin_token_env = "HOSTD_ADMIN_TOKEN"
dedupe_window = "24h"
drain_timeout = "10s"
durability = "os"
watch_policies = true
policy_idle_ttl = "60s"
policy_memory_budget = "512MiB"

[[tenants]]
id = "acme"
token_env = "ACME_TOKEN"
policy = "plugins/redact_pii.wasm"
policy_config = { patterns = { ticket = "TCK-\\d+" }, keep = ["a", "b"], n = 3, when = 2026-01-01T00:00:00Z }
policy_tests = "fixtures.jsonl"
on_policy_error = "dead-letter"

[tenants.limits]
deadline = "20ms"
memory = "32MiB"
max_deliveries = 16
max_output = "1MiB"

[tenants.routes.hook]
type = "webhook"
url = "http://127.0.0.1:9/hook"
secret_env = ["WH_SECRET", "WH_SECRET_OLD"]
headers = { x-team = "agents" }
standard_webhooks = true
x_signature = false
timeout = "5s"
retry = ["1s", "5s", "30s"]
concurrency = 4
ordering = "per-key"

[tenants.routes.redis]
type = "redis-stream"
url = "redis://127.0.0.1:6379/0"
stream = "hostd:{tenant}:{route}"
maxlen = 1000
dedupe = true
dedupe_window = "1h"
timeout = "500ms"

[tenants.routes.kafka]
type = "kafka"
brokers = "127.0.0.1:9092"
topic = "agents.{tenant}"
librdkafka = { "linger.ms" = "5", "compression.type" = "zstd" }
message_timeout = "30s"

[tenants.routes.sns]
type = "sns"
topic_arn = "arn:aws:sns:us-east-1:000000000000:events.fifo"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:15000"

[tenants.routes.file]
type = "file"
path = "out.jsonl"

[tenants.routes.console]
type = "stdout"

[[tenants]]
id = "globex"
token_file = "globex.token"
policy = "plugins/pass_through.wasm"
on_policy_error = "drop"

[tenants.routes.default]
type = "file"
path = "globex.jsonl"
"#;

const MINIMAL: &str = r#"
[[tenants]]
id = "acme"
token_env = "ACME_TOKEN"
policy = "p.wasm"
[tenants.routes.default]
type = "stdout"
"#;

const QUICKSTART_LIKE: &str = r#"
[server]
allow_unauthenticated = true
listen = "127.0.0.1:0"
[[tenants]]
id = "default"
policy = "p.wasm"
[tenants.routes.default]
type = "file"
path = "out.jsonl"
"#;

const BASES: [&str; 3] = [FULL, MINIMAL, QUICKSTART_LIKE];

/// Strings a config value might hold: sizes, durations, addresses, URLs, paths, enum
/// names, and hostile text.
const STRINGS: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "5s",
    "0s",
    "1ns",
    "-5ms",
    "1e3ms",
    "99999999999999999999h",
    "18446744073709551615s",
    "584942417355y",
    "5 parsecs",
    "1MiB",
    "0B",
    "18446744073709551615",
    "18446744073709551616",
    "17179869184GiB",
    "1.5MiB",
    "MiB",
    "1 KiB ",
    "127.0.0.1:0",
    "0.0.0.0:8787",
    "[::1]:8787",
    "localhost:8787",
    "127.0.0.1:99999",
    "http://",
    "http://127.0.0.1:9/\u{0}",
    "redis://:pw@127.0.0.1:1/99999999999",
    "file",
    "stdout",
    "webhook",
    "redis-stream",
    "kafka",
    "sns",
    "carrier-pigeon",
    "dead-letter",
    "drop",
    "per-key",
    "unordered",
    "fsync",
    "os",
    "none",
    "/",
    "../../etc/passwd",
    "\u{0}",
    "é",
    "😀",
    "\u{202e}",
    "a\nb",
    "{tenant}{route}{tenant}",
];

const KEYS: &[&str] = &[
    "id",
    "policy",
    "type",
    "url",
    "routes",
    "limits",
    "server",
    "tenants",
    "retry",
    "concurrency",
    "ordering",
    "deadline",
    "memory",
    "max_deliveries",
    "max_output",
    "polcy",
    "listen_on",
    "",
    " ",
    "é",
    "a.b",
    "token",
    "keep_original",
    "allow_private_targets",
];

fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        6 => proptest::sample::select(STRINGS).prop_map(|s| toml::Value::String(s.to_string())),
        1 => hostd_fuzz::json::text().prop_map(toml::Value::String),
        1 => (1usize..100_000).prop_map(|n| toml::Value::String("x".repeat(n))),
        3 => prop_oneof![
            Just(0i64), Just(1), Just(-1), Just(16), Just(i64::MAX), Just(i64::MIN), Just(u32::MAX as i64 + 1), any::<i64>()
        ]
        .prop_map(toml::Value::Integer),
        1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-0.0), Just(1e300), Just(0.5)]
            .prop_map(toml::Value::Float),
        2 => any::<bool>().prop_map(toml::Value::Boolean),
        1 => Just(toml::Value::Datetime("2026-01-01T00:00:00Z".parse().expect("a datetime"))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            proptest::collection::btree_map(proptest::sample::select(KEYS).prop_map(str::to_string), inner, 0..4)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Action {
    Replace(toml::Value),
    Delete,
    Add(String, toml::Value),
    Rename(String),
    /// Wraps the value in `depth` levels of arrays.
    Nest(usize),
}

#[derive(Debug, Clone)]
struct Edit {
    /// Child choices from the root, each taken modulo the number of children.
    path: Vec<usize>,
    action: Action,
}

fn edit() -> impl Strategy<Value = Edit> {
    let name = prop_oneof![4 => proptest::sample::select(KEYS).prop_map(str::to_string), 1 => "[a-z_]{1,12}"];
    let action = prop_oneof![
        6 => toml_value().prop_map(Action::Replace),
        2 => Just(Action::Delete),
        2 => (name.clone(), toml_value()).prop_map(|(k, v)| Action::Add(k, v)),
        1 => name.prop_map(Action::Rename),
        1 => proptest::sample::select(vec![1usize, 10, 200]).prop_map(Action::Nest),
    ];
    (proptest::collection::vec(any::<usize>(), 1..6), action).prop_map(|(path, action)| Edit { path, action })
}

/// Applies one edit at the node its path reaches (stopping early at a leaf).
fn apply(root: &mut toml::Table, edit: &Edit) {
    let mut table: &mut toml::Table = root;
    let mut steps = edit.path.iter().peekable();
    while let Some(&choice) = steps.next() {
        if table.is_empty() {
            break;
        }
        let key = table.keys().nth(choice % table.len()).cloned().unwrap_or_default();
        let last = steps.peek().is_none();
        let descend = match table.get(&key) {
            Some(toml::Value::Table(_)) => !last,
            Some(toml::Value::Array(a)) => !last && a.iter().any(|v| v.is_table()),
            _ => false,
        };
        if !descend {
            act(table, key, &edit.action);
            return;
        }
        let next_choice = steps.peek().copied().copied().unwrap_or(0);
        table = match table.get_mut(&key) {
            Some(toml::Value::Table(t)) => t,
            Some(toml::Value::Array(items)) => {
                let tables: Vec<usize> = (0..items.len()).filter(|i| items[*i].is_table()).collect();
                let pick = tables[next_choice % tables.len()];
                match &mut items[pick] {
                    toml::Value::Table(t) => t,
                    _ => return,
                }
            }
            _ => return,
        };
    }
    act(table, String::new(), &edit.action);
}

fn act(table: &mut toml::Table, key: String, action: &Action) {
    match action {
        Action::Replace(v) => {
            table.insert(key, v.clone());
        }
        Action::Delete => {
            table.remove(&key);
        }
        Action::Add(k, v) => {
            table.insert(k.clone(), v.clone());
        }
        Action::Rename(to) => {
            if let Some(v) = table.remove(&key) {
                table.insert(to.clone(), v);
            }
        }
        Action::Nest(depth) => {
            if let Some(mut v) = table.remove(&key) {
                for _ in 0..*depth {
                    v = toml::Value::Array(vec![v]);
                }
                table.insert(key, v);
            }
        }
    }
}

/// A config file of this thread's own, rewritten for each input.
fn scratch_file() -> PathBuf {
    thread_local! {
        static DIR: tempfile::TempDir = {
            let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
            tempfile::Builder::new().prefix("hostd-fuzz-config").tempdir_in(base).expect("a temp dir")
        };
    }
    DIR.with(|d| d.path().join("hostd.toml"))
}

fn check_load(target: &Target, text: &[u8], table: Option<&toml::Table>) -> Result<(), TestCaseError> {
    let path = scratch_file();
    std::fs::write(&path, text).map_err(|e| TestCaseError::fail(format!("cannot write {}: {e}", path.display())))?;
    let shown = path.display().to_string();
    let loaded = Config::load(&path).and_then(|config| {
        hostd::sinks::validate_routes(&config)?;
        Ok(config)
    });
    match loaded {
        Ok(config) => {
            target.accepted();
            config.validate_shape().map_err(|e| TestCaseError::fail(format!("loaded, then refused: {e:#}")))?;
            for t in &config.tenants {
                let json = Config::policy_config_json(t);
                let parsed = serde_json::from_str::<serde_json::Value>(&json);
                target.check("config.policy_config_is_json", parsed.is_ok(), || {
                    format!("tenant `{}`: policy config JSON {json:?} does not parse", t.id)
                })?;
            }
            if let Some(table) = table {
                let ids: Vec<String> = table
                    .get("tenants")
                    .and_then(|t| t.as_array())
                    .map(|a| a.iter().filter_map(|t| t.get("id")?.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let loaded: Vec<String> = config.tenants.iter().map(|t| t.id.clone()).collect();
                target.check("config.reflects_file", ids == loaded, || {
                    format!("tenants {loaded:?} loaded from a file with {ids:?}")
                })?;
            }
            Ok(())
        }
        Err(e) => {
            target.rejected();
            let m = format!("{e:#}");
            let lines = String::from_utf8_lossy(text).lines().count() + 1;
            let located = match m.strip_prefix(&format!("{shown} line ")) {
                Some(rest) => {
                    let n: usize = rest.split(':').next().and_then(|n| n.parse().ok()).unwrap_or(0);
                    (1..=lines).contains(&n)
                }
                None => {
                    m.starts_with(&format!("cannot read config file {shown}"))
                        || m.starts_with("tenants: ")
                        || m.starts_with("tenant `")
                        || m.starts_with("server.")
                }
            };
            target.count(&format!("refused: {}", class(&m, &shown)));
            let id = if m.ends_with(": recursion limit") {
                "config.recursion_error_located"
            } else {
                "config.error_names_key"
            };
            target.check(id, located, || format!("{m:?} for {:?}", String::from_utf8_lossy(text)))
        }
    }
}

/// What kind of refusal, for the summary.
fn class(m: &str, path: &str) -> String {
    let m = m.strip_prefix(path).unwrap_or(m);
    let m = match m.strip_prefix(" line ") {
        Some(rest) => rest.split_once(": ").map_or(rest, |(_, r)| r),
        None => m.strip_prefix(": ").unwrap_or(m),
    };
    let m = m.replace(path, "PATH");
    m.chars().take_while(|c| *c != '`' && *c != '\n' && *c != '"').take(40).collect()
}

#[test]
fn structured_mutations() {
    let target = Target::new("config/structured");
    let strategy = || (0..BASES.len(), proptest::collection::vec(edit(), 1..4));
    target.run(cases("config/structured", 0.05), strategy, |(base, edits)| {
        let mut table: toml::Table = toml::from_str(BASES[base]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for e in &edits {
            apply(&mut table, e);
        }
        match toml::to_string(&table) {
            Ok(text) => check_load(&target, text.as_bytes(), Some(&table)),
            Err(_) => {
                // Some tables have no TOML text (e.g. an array of tables and values mixed).
                target.count("edit has no TOML text");
                Ok(())
            }
        }
    });
}

#[test]
fn mutated_text() {
    let target = Target::new("config/text");
    let strategy = || {
        (0..BASES.len(), mutate::mutations(6), proptest::bool::weighted(0.8)).prop_map(|(base, edits, keep_utf8)| {
            let bytes = mutate::apply(BASES[base].as_bytes(), &edits);
            // Mostly text (the parser's paths), sometimes bytes that are not UTF-8.
            Bytes(if keep_utf8 { String::from_utf8_lossy(&bytes).into_owned().into_bytes() } else { bytes })
        })
    };
    target.run(cases("config/text", 0.10), strategy, |text| check_load(&target, &text.0, None));
}
