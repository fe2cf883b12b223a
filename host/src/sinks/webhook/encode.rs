//! The webhook body: the payload with object keys sorted, serialised once.

use serde_json::Value;

/// `payload` (valid JSON) re-serialised with every object's keys sorted, so the bytes
/// signed and sent do not depend on how the policy ordered them.
pub fn sorted_json(payload: &str) -> Vec<u8> {
    let value: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let mut out = Vec::with_capacity(payload.len());
    write_sorted(&value, &mut out);
    out
}

fn write_sorted(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("strings serialize");
                out.push(b':');
                write_sorted(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_sorted(item, out);
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other).expect("scalars serialize"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sorts_nested_keys() {
        let out = super::sorted_json(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#);
    }
}
