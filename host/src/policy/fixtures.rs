//! `hostd policy test`: runs a policy offline over a JSONL file of events and prints one
//! decision per line as JSON. This is how policy authors test; the output is stable
//! enough to compare with a golden file.

use crate::config::PolicyLimits;
use crate::event::parse_event;
use crate::policy::decision::RouteSet;
use crate::policy::{Outcome, PolicyEngine, PolicyError, PolicyVersion};
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
    let policy =
        PolicyVersion::load_file(&engine, TEST_TENANT, plugin, config_json, PolicyLimits::default(), RouteSet::Any)?;
    tracing::info!(policy_version = &**policy.version(), "loaded {}", plugin.display());
    let text = std::fs::read_to_string(events).with_context(|| format!("cannot read {}", events.display()))?;
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line_no = n + 1;
        let raw: &RawValue =
            serde_json::from_str(line).map_err(|e| anyhow!("{}:{line_no}: malformed JSON: {e}", events.display()))?;
        let event =
            parse_event(raw, TEST_TENANT).map_err(|e| anyhow!("{}:{line_no}: {}", events.display(), e.message()))?;
        let decision =
            decision_json(policy.evaluate(&event.event)).map_err(|e| anyhow!("{}:{line_no}: {e}", events.display()))?;
        let line = json!({"line": line_no, "idempotency_key": event.idempotency_key, "result": decision});
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// A decision as `hostd policy test` prints it (and `policy_tests` fixtures expect it).
/// `Err` names the delivery whose payload a `Value` cannot hold without loss (a lone
/// surrogate like `"\ud800"`, a number like `1e400` or above u64, nesting past 128):
/// printing it any other way would show something the policy did not produce.
pub fn decision_json(outcome: Result<Outcome, PolicyError>) -> Result<Value, String> {
    Ok(match outcome {
        Ok(Outcome::Drop(reason)) => json!({"decision": "drop", "reason": reason}),
        Ok(Outcome::Deliver(deliveries)) => {
            let mut shown = Vec::with_capacity(deliveries.len());
            for (index, d) in deliveries.iter().enumerate() {
                let payload = exact_value(d.payload.get()).map_err(|e| {
                    format!("delivery {index} (route `{}`): the payload cannot be shown as it is: {e}", d.route)
                })?;
                shown.push(json!({"route": d.route, "key": d.key, "redactions": d.redactions, "payload": payload}));
            }
            json!({"decision": "deliver", "deliveries": shown})
        }
        Err(e) => json!({"decision": "fault", "kind": e.fault.kind(), "error": e.fault.to_string()}),
    })
}

/// `text` as a `Value` when that loses nothing, else `Err` saying what would be lost:
/// `Value` cannot hold lone surrogates, `1e400` or nesting past 128 at all, and rounds
/// integers past 64 bits and over-long decimals to an `f64`.
fn exact_value(text: &str) -> Result<Value, String> {
    let canonical = crate::json::canonicalize(text).map_err(|e| e.to_string())?;
    if let Some(at) = crate::json::lone_surrogate(&canonical) {
        return Err(format!("the string at byte {at} holds a lone surrogate escape (like \"\\ud800\")"));
    }
    let value: Value = serde_json::from_str(&canonical).map_err(|e| e.to_string())?;
    // Both canonical forms order members alike, so their numbers pair up in order.
    let shown = crate::json::canonicalize(&value.to_string()).map_err(|e| e.to_string())?;
    let (written, read) = (number_tokens(&canonical), number_tokens(&shown));
    if written.len() != read.len() {
        return Err("an object repeats a key".into());
    }
    if let Some((w, r)) = written.iter().zip(&read).find(|(w, r)| decimal(w) != decimal(r)) {
        return Err(format!("the number {w} would read as {r}"));
    }
    Ok(value)
}

/// The number tokens of compact JSON text, in order.
fn number_tokens(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let (mut out, mut pos, mut in_string) = (Vec::new(), 0, false);
    while pos < bytes.len() {
        let b = bytes[pos];
        if in_string {
            match b {
                b'\\' => pos += 1,
                b'"' => in_string = false,
                _ => {}
            }
            pos += 1;
        } else if b == b'"' {
            in_string = true;
            pos += 1;
        } else if b == b'-' || b.is_ascii_digit() {
            let start = pos;
            while pos < bytes.len() && matches!(bytes[pos], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                pos += 1;
            }
            out.push(&text[start..pos]);
        } else {
            pos += 1;
        }
    }
    out
}

/// A JSON number token as (negative, significant digits, power of ten): equal for
/// tokens of the same value however written (`1e5`, `100000.0`); `None` past i64.
fn decimal(token: &str) -> Option<(bool, String, i64)> {
    let (negative, rest) = match token.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut exponent = exponent.checked_sub(frac.len() as i64)?;
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    exponent = exponent.checked_add((digits.len() - trimmed.len()) as i64)?;
    if trimmed.is_empty() {
        return Some((false, String::new(), 0));
    }
    Some((negative, trimmed.to_string(), exponent))
}

/// Runs a tenant's `policy_tests` fixtures (JSONL: `{"event": {...}, "expect": {...}}`)
/// on a candidate version. `expect` must be a subset of the decision: every key it
/// names must be there with that value (objects compared key by key, arrays item by
/// item with the same length). The first failure names the file, line and difference.
pub fn check_fixtures(policy: &PolicyVersion, path: &Path) -> Result<usize, String> {
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
        let got = decision_json(policy.evaluate(&event.event)).map_err(|e| format!("{at}: {e}"))?;
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
    use super::{decimal, exact_value, subset};
    use serde_json::json;

    #[test]
    fn payloads_a_value_would_change_are_refused_with_the_reason() {
        assert_eq!(
            exact_value(r#"{"b":[1,2.5,-3e2],"a":"\u00e9"}"#).unwrap(),
            json!({"a": "é", "b": [1, 2.5, -300.0]})
        );
        assert_eq!(exact_value("100000.000").unwrap(), json!(100000.0));
        let cases = [
            (r#"{"s":"\ud800"}"#, "the string at byte 5 holds a lone surrogate escape"),
            (r#"{"n":1e400}"#, "number out of range"),
            (
                r#"{"n":123456789012345678901234567890}"#,
                "the number 123456789012345678901234567890 would read as 1.2345678901234568e+29",
            ),
            (r#"[3.14159265358979323846]"#, "would read as 3.141592653589793"),
            (r#"{"a":1,"a":2}"#, "an object repeats a key"),
        ];
        for (text, want) in cases {
            let e = exact_value(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert!(exact_value(&deep).unwrap_err().contains("deeper than 128"));
        assert_eq!(decimal("-0.0"), decimal("0"));
        assert_eq!(decimal("1.5E+3"), decimal("1500"));
        assert_ne!(decimal("15"), decimal("150"));
    }

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
