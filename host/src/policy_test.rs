//! `hostd policy test`: runs a policy offline over a JSONL file of events and prints one
//! decision per line as JSON. This is how policy authors test; the output is stable
//! enough to compare with a golden file.

use crate::config::PolicyLimits;
use crate::ingest::event::parse_event;
use crate::policy::decision::RouteSet;
use crate::policy::{Outcome, PolicyEngine, PolicyError, PolicyInstancePool};
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
        let decision = decision_json(policy.evaluate(&event.event));
        let line = json!({"line": line_no, "idempotency_key": event.idempotency_key, "result": decision});
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// A decision as `hostd policy test` prints it (and `policy_tests` fixtures expect it).
pub fn decision_json(outcome: Result<Outcome, PolicyError>) -> Value {
    match outcome {
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
    }
}

/// Runs a tenant's `policy_tests` fixtures (JSONL: `{"event": {...}, "expect": {...}}`)
/// on a candidate version. `expect` must be a subset of the decision: every key it
/// names must be there with that value (objects compared key by key, arrays item by
/// item with the same length). The first failure names the file, line and difference.
pub fn check_fixtures(policy: &PolicyInstancePool, path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("policy_tests {}: {e}", path.display()))?;
    let mut n = 0;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = format!("policy_tests {}:{}", path.display(), i + 1);
        let case: Value = serde_json::from_str(line).map_err(|e| format!("{at}: malformed JSON: {e}"))?;
        let (Some(event), Some(expect)) = (case.get("event"), case.get("expect")) else {
            return Err(format!("{at}: each line needs `event` and `expect`"));
        };
        let raw = RawValue::from_string(event.to_string()).expect("serialized JSON");
        let event = parse_event(&raw, policy.tenant()).map_err(|e| format!("{at}: event: {}", e.message()))?;
        let got = decision_json(policy.evaluate(&event.event));
        if let Err(diff) = subset(expect, &got, String::new()) {
            return Err(format!("{at}: {diff}; the policy decided {got}"));
        }
        n += 1;
    }
    Ok(n)
}

fn subset(expect: &Value, got: &Value, at: String) -> Result<(), String> {
    match (expect, got) {
        (Value::Object(e), Value::Object(g)) => e.iter().try_for_each(|(k, v)| match g.get(k) {
            Some(gv) => subset(v, gv, format!("{at}/{k}")),
            None => Err(format!("expected `{at}/{k}`, which is missing")),
        }),
        (Value::Array(e), Value::Array(g)) if e.len() == g.len() => {
            e.iter().zip(g).enumerate().try_for_each(|(i, (ev, gv))| subset(ev, gv, format!("{at}/{i}")))
        }
        (Value::Array(e), Value::Array(g)) => Err(format!("expected {} item(s) at `{at}`, got {}", e.len(), g.len())),
        _ if expect == got => Ok(()),
        _ => Err(format!("expected `{at}` = {expect}, got {got}")),
    }
}

#[cfg(test)]
mod tests {
    use super::subset;
    use serde_json::json;

    #[test]
    fn subset_matching() {
        let got = json!({"decision": "deliver", "deliveries": [{"route": "billing", "key": "k"}]});
        assert!(subset(&json!({"decision": "deliver"}), &got, String::new()).is_ok());
        assert!(subset(&json!({"deliveries": [{"route": "billing"}]}), &got, String::new()).is_ok());
        let e = subset(&json!({"deliveries": [{"route": "default"}]}), &got, String::new()).unwrap_err();
        assert!(e.contains("/deliveries/0/route"), "{e}");
        let e = subset(&json!({"deliveries": []}), &got, String::new()).unwrap_err();
        assert!(e.contains("0 item(s)"), "{e}");
        assert!(subset(&json!({"decision": "drop"}), &got, String::new()).is_err());
    }
}
