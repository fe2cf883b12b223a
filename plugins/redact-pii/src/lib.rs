//! Redacts PII (emails, phones, Luhn-checked card numbers, AWS keys, `sk-` keys) in every
//! string of `data` and `metadata`, drops the noisy `on_llm_new_token` / `on_chain_start`
//! events, and forwards the rest to route `default` as the standard envelope.
//!
//! `policy_config`:
//! - `patterns`: `{ "kind": "regex", ... }` extra patterns, redacted as `[REDACTED:kind]`
//! - `allow_events`: `["on_tool_end", ...]` only these kinds are forwarded
//! - `route`: the route to deliver to (default `default`)

wit_bindgen::generate!({ path: "../../wit", world: "event-policy" });

use hostd::policy::types::Delivery;
use hostd_policy_sdk::{event_view, Redactor};
use serde_json::Value;
use std::cell::RefCell;

const NOISE: [&str; 2] = ["on_llm_new_token", "on_chain_start"];

struct Settings {
    redactor: Redactor,
    allow_events: Option<Vec<String>>,
    route: String,
}

thread_local! {
    static SETTINGS: RefCell<Option<Settings>> = const { RefCell::new(None) };
}

struct Policy;

impl Guest for Policy {
    fn configure(config: String) -> Result<(), String> {
        let cfg: Value = if config.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(&config).map_err(|e| format!("policy_config is not JSON: {e}"))?
        };
        let mut redactor = Redactor::new();
        if let Some(patterns) = cfg.get("patterns") {
            let map = patterns.as_object().ok_or("policy_config.patterns must be an object of kind -> regex")?;
            for (kind, re) in map {
                let re = re.as_str().ok_or_else(|| format!("policy_config.patterns.{kind} must be a string"))?;
                redactor.add_pattern(kind, re).map_err(|e| format!("policy_config.patterns.{kind}: {e}"))?;
            }
        }
        let allow_events = match cfg.get("allow_events") {
            None => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string).ok_or("policy_config.allow_events must hold strings"))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err("policy_config.allow_events must be an array of event kinds".into()),
        };
        let route = match cfg.get("route") {
            None => "default".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("policy_config.route must be a string".into()),
        };
        SETTINGS.with(|s| *s.borrow_mut() = Some(Settings { redactor, allow_events, route }));
        Ok(())
    }

    fn evaluate(event: Event) -> Result<Decision, String> {
        SETTINGS.with(|s| {
            let guard = s.borrow();
            let settings = guard.as_ref().ok_or("evaluate called before configure")?;
            if let Some(allow) = &settings.allow_events {
                if !allow.contains(&event.kind) {
                    return Ok(Decision::Drop(format!("{} not in allow_events", event.kind)));
                }
            } else if NOISE.contains(&event.kind.as_str()) {
                return Ok(Decision::Drop(format!("{} is noise", event.kind)));
            }
            let (payload, redactions) = settings.redactor.redact_envelope(&event_view!(event))?;
            Ok(Decision::Deliver(vec![Delivery { route: settings.route.clone(), payload, key: None, redactions }]))
        })
    }
}

export!(Policy);
