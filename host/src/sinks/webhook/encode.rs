//! The webhook body: the payload in its canonical form ([`crate::json::canonicalize`]),
//! serialised once: keys sorted, strings and numbers exactly as the policy wrote them.

use crate::json::{canonicalize, NotCanonical};

/// `payload` with every object's keys sorted and whitespace removed, so the bytes
/// signed and sent do not depend on how the policy ordered them, and nothing else
/// changes. `Err` when it has no canonical form (not JSON, or nested too deep): then
/// nothing may be sent.
pub fn sorted_json(payload: &str) -> Result<Vec<u8>, NotCanonical> {
    canonicalize(payload).map(String::into_bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sorts_nested_keys() {
        let out = super::sorted_json(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#);
    }

    #[test]
    fn keeps_what_a_value_round_trip_lost() {
        // Each of these once became `null` (or a rounded number) on the wire.
        let payload = r#"{"s":"\ud800","inf":1e400,"big":123456789012345678901234567890}"#;
        let out = String::from_utf8(super::sorted_json(payload).unwrap()).unwrap();
        assert_eq!(out, r#"{"big":123456789012345678901234567890,"inf":1e400,"s":"\ud800"}"#);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(super::sorted_json(&deep).unwrap_err().to_string().contains("deeper than 128"));
    }
}
