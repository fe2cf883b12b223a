//! PII detection and redaction over JSON values.
//!
//! Built-in detectors: emails, phone numbers, payment-card numbers (Luhn-checked),
//! AWS access key ids and `sk-…` API keys. Each match becomes `[REDACTED:<kind>]`.
//! Cheap byte-level prefilters keep the regexes off strings that cannot match, which
//! is most of them.

use regex::Regex;
use serde_json::Value;
use std::fmt;

/// A detector: a kind name, its regex and a prefilter that must pass first.
struct Detector {
    kind: String,
    regex: Regex,
    prefilter: fn(&str) -> bool,
    luhn: bool,
}

/// Redacts PII in strings and JSON documents.
pub struct Redactor {
    detectors: Vec<Detector>,
}

#[derive(Debug)]
pub struct RedactorError {
    pub pattern: String,
    pub reason: String,
}

impl fmt::Display for RedactorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pattern `{}` is not a valid regex: {}", self.pattern, self.reason)
    }
}

fn always(_: &str) -> bool {
    true
}
fn has_at(s: &str) -> bool {
    s.as_bytes().contains(&b'@')
}
fn digit_count_at_least<const N: usize>(s: &str) -> bool {
    s.bytes().filter(u8::is_ascii_digit).take(N).count() >= N
}
fn has_aws_prefix(s: &str) -> bool {
    s.contains("AKIA") || s.contains("ASIA")
}
fn has_sk(s: &str) -> bool {
    s.contains("sk-")
}

impl Redactor {
    /// The built-in detectors only.
    pub fn new() -> Self {
        let builtin = |kind: &str, re: &str, prefilter: fn(&str) -> bool, luhn: bool| Detector {
            kind: kind.to_string(),
            regex: Regex::new(re).expect("built-in pattern compiles"),
            prefilter,
            luhn,
        };
        Redactor {
            detectors: vec![
                builtin(
                    "email",
                    r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
                    has_at,
                    false,
                ),
                builtin("aws_access_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", has_aws_prefix, false),
                builtin("api_key", r"\bsk-[A-Za-z0-9_\-]{16,}", has_sk, false),
                builtin("credit_card", r"\b\d(?:[ \-]?\d){12,18}\b", digit_count_at_least::<13>, true),
                builtin(
                    "phone",
                    r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{3}\)|\b\d{3})[ .\-]?\d{3}[ .\-]?\d{4}\b",
                    digit_count_at_least::<10>,
                    false,
                ),
            ],
        }
    }

    /// Adds a tenant-specific pattern, redacted as `[REDACTED:<kind>]`.
    pub fn add_pattern(&mut self, kind: &str, pattern: &str) -> Result<(), RedactorError> {
        let regex =
            Regex::new(pattern).map_err(|e| RedactorError { pattern: pattern.to_string(), reason: e.to_string() })?;
        self.detectors.push(Detector { kind: kind.to_string(), regex, prefilter: always, luhn: false });
        Ok(())
    }

    /// Returns the redacted string, or `None` when nothing matched.
    pub fn redact_str(&self, s: &str) -> Option<String> {
        let mut current: Option<String> = None;
        for d in &self.detectors {
            let text = current.as_deref().unwrap_or(s);
            if !(d.prefilter)(text) {
                continue;
            }
            let mut out = String::new();
            let mut last = 0;
            let mut changed = false;
            for m in d.regex.find_iter(text) {
                if d.luhn && !luhn_valid(m.as_str()) {
                    continue;
                }
                out.push_str(&text[last..m.start()]);
                out.push_str("[REDACTED:");
                out.push_str(&d.kind);
                out.push(']');
                last = m.end();
                changed = true;
            }
            if changed {
                out.push_str(&text[last..]);
                current = Some(out);
            }
        }
        current
    }

    /// Redacts every string (values, not keys) in `value`, recording the JSON pointer
    /// of each changed string under `base` (e.g. `/data`).
    pub fn redact_value(&self, value: &mut Value, base: &str, changed: &mut Vec<String>) {
        let mut pointer = String::from(base);
        self.walk(value, &mut pointer, changed);
    }

    fn walk(&self, value: &mut Value, pointer: &mut String, changed: &mut Vec<String>) {
        match value {
            Value::String(s) => {
                if let Some(r) = self.redact_str(s) {
                    *s = r;
                    changed.push(pointer.clone());
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&i.to_string());
                    self.walk(item, pointer, changed);
                    pointer.truncate(len);
                }
            }
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    let len = pointer.len();
                    pointer.push('/');
                    push_pointer_token(pointer, k);
                    self.walk(item, pointer, changed);
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
    }

    /// Redacts a JSON document given as text. Returns the new text and the changed
    /// pointers, or `Ok(None)` when nothing could match. Text with no candidate at
    /// all is not even parsed.
    pub fn redact_json_text(&self, text: &str, base: &str) -> Result<Option<(String, Vec<String>)>, serde_json::Error> {
        if !self.may_match(text) {
            return Ok(None);
        }
        let mut value: Value = serde_json::from_str(text)?;
        let mut changed = Vec::new();
        self.redact_value(&mut value, base, &mut changed);
        if changed.is_empty() {
            return Ok(None);
        }
        Ok(Some((serde_json::to_string(&value)?, changed)))
    }

    /// Redacts `metadata` and `data` of an event and builds the standard envelope:
    /// the whole of what the `redact-pii` policy does to an event it forwards. Returns
    /// the payload and the JSON pointers changed.
    pub fn redact_envelope(&self, event: &crate::EventView<'_>) -> Result<(String, Vec<String>), String> {
        let mut redactions = Vec::new();
        let mut part = |text: &str, base: &str| -> Result<Option<String>, String> {
            match self.redact_json_text(text, base) {
                Ok(None) => Ok(None),
                Ok(Some((new_text, changed))) => {
                    redactions.extend(changed);
                    Ok(Some(new_text))
                }
                Err(e) => Err(format!("{} is not valid JSON: {e}", &base[1..])),
            }
        };
        let metadata = part(event.metadata, "/metadata")?;
        let data = part(event.data, "/data")?;
        let payload =
            event.envelope(metadata.as_deref().unwrap_or(event.metadata), data.as_deref().unwrap_or(event.data));
        Ok((payload, redactions))
    }

    /// True when some detector's prefilter passes on the raw text.
    fn may_match(&self, text: &str) -> bool {
        self.detectors.iter().any(|d| (d.prefilter)(text))
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

fn push_pointer_token(pointer: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// The Luhn checksum over the digits of `s` (separators ignored).
pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 13 || digits.len() > 19 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_each_builtin_kind() {
        let r = Redactor::new();
        let cases = [
            ("mail me at ada@example.com now", "mail me at [REDACTED:email] now"),
            ("key AKIAIOSFODNN7EXAMPLE here", "key [REDACTED:aws_access_key] here"),
            ("token sk-abcdefghijklmnop1234", "token [REDACTED:api_key]"),
            ("card 4111 1111 1111 1111 ok", "card [REDACTED:credit_card] ok"),
            ("call +1 415-555-2671 today", "call [REDACTED:phone] today"),
            ("call (415) 555-2671", "call [REDACTED:phone]"),
        ];
        for (input, want) in cases {
            assert_eq!(r.redact_str(input).as_deref(), Some(want), "input {input:?}");
        }
    }

    #[test]
    fn leaves_clean_text_and_non_luhn_numbers() {
        let r = Redactor::new();
        assert_eq!(r.redact_str("nothing to see"), None);
        // 16 digits that fail Luhn are an order number, not a card; too long for a phone.
        assert_eq!(r.redact_str("order 1234567812345678"), None);
    }

    #[test]
    fn reports_pointers_with_escapes() {
        let r = Redactor::new();
        let mut v = json!({"a/b": {"list": ["x", "bob@example.org"]}, "n": 5, "c~": "ok"});
        let mut changed = vec![];
        r.redact_value(&mut v, "/data", &mut changed);
        assert_eq!(changed, vec!["/data/a~1b/list/1".to_string()]);
        assert_eq!(v["a/b"]["list"][1], "[REDACTED:email]");
    }

    #[test]
    fn custom_patterns_and_bad_patterns() {
        let mut r = Redactor::new();
        r.add_pattern("ticket", r"TCK-\d{4}").unwrap();
        assert_eq!(r.redact_str("see TCK-1234").as_deref(), Some("see [REDACTED:ticket]"));
        let err = r.add_pattern("bad", "(").unwrap_err();
        assert!(err.to_string().contains("`(`"), "{err}");
    }

    #[test]
    fn clean_text_is_not_parsed() {
        let r = Redactor::new();
        // Not valid JSON, but with no candidate it is passed through untouched.
        assert!(r.redact_json_text("{not json", "/data").unwrap().is_none());
        assert!(r.redact_json_text("{\"e\":\"a@b.co\"", "/data").is_err());
    }
}
