//! `hostd policy test`: runs a policy offline over a JSONL file of events and prints one
//! decision per line as JSON. This is how policy authors test; the output is stable
//! enough to compare with a golden file.

use crate::config::PolicyLimits;
use crate::ingest::event::parse_event;
use crate::policy::decision::RouteSet;
use crate::policy::{Outcome, PolicyEngine, PolicyInstancePool};
use anyhow::{anyhow, Context};
use serde_json::{json, value::RawValue, Value};
use std::io::Write;
use std::path::Path;

/// The tenant name policies see in offline tests.
pub const TEST_TENANT: &str = "test";

pub fn run(plugin: &Path, events: &Path, policy_config: Option<&str>, out: &mut dyn Write) -> crate::Result<()> {
    let config_json = match policy_config {
        Some(text) => {
            let v: Value = serde_json::from_str(text).map_err(|e| anyhow!("--policy-config is not JSON: {e}"))?;
            v.to_string()
        }
        None => "{}".to_string(),
    };
    let engine = PolicyEngine::new()?;
    let policy = PolicyInstancePool::load_file(
        &engine,
        TEST_TENANT,
        plugin,
        config_json,
        PolicyLimits::default(),
        RouteSet::Any,
    )?;
    tracing::info!(policy_version = &**policy.version(), "loaded {}", plugin.display());
    let text = std::fs::read_to_string(events).with_context(|| format!("cannot read {}", events.display()))?;
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line_no = n + 1;
        let raw: &RawValue =
            serde_json::from_str(line).map_err(|e| anyhow!("{}:{line_no}: malformed JSON: {e}", events.display()))?;
        let event =
            parse_event(raw, TEST_TENANT).map_err(|e| anyhow!("{}:{line_no}: {}", events.display(), e.message()))?;
        let decision = match policy.evaluate(&event.event) {
            Ok(Outcome::Drop(reason)) => json!({"decision": "drop", "reason": reason}),
            Ok(Outcome::Deliver(deliveries)) => json!({
                "decision": "deliver",
                "deliveries": deliveries.iter().map(|d| json!({
                    "route": d.route,
                    "key": d.key,
                    "redactions": d.redactions,
                    "payload": serde_json::from_str::<Value>(d.payload.get()).expect("checked JSON"),
                })).collect::<Vec<_>>(),
            }),
            Err(e) => json!({"decision": "fault", "kind": e.fault.kind(), "error": e.fault.to_string()}),
        };
        let line = json!({"line": line_no, "idempotency_key": event.idempotency_key, "result": decision});
        writeln!(out, "{line}")?;
    }
    Ok(())
}
