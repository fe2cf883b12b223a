//! The event envelope the example policies deliver, so a receiver always knows what
//! happened: `{"event","name","run_id","root_run_id","parent_run_id","step","tags",
//! "metadata","data","ts"}`.

/// A borrowed view of the WIT `event` record, independent of any bindings.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub run_id: &'a str,
    pub root_run_id: &'a str,
    pub parent_run_id: Option<&'a str>,
    pub step: u64,
    pub tags: &'a [String],
    /// JSON object text.
    pub metadata: &'a str,
    /// JSON text.
    pub data: &'a str,
    pub timestamp_ms: u64,
}

impl EventView<'_> {
    /// Builds the envelope as JSON text. `metadata` and `data` are spliced in as
    /// already-serialised JSON, so an unchanged payload is never parsed or re-encoded.
    pub fn envelope(&self, metadata_json: &str, data_json: &str) -> String {
        let mut out = String::with_capacity(160 + self.data.len() + self.metadata.len());
        out.push_str("{\"event\":");
        push_json_str(&mut out, self.kind);
        out.push_str(",\"name\":");
        push_json_str(&mut out, self.name);
        out.push_str(",\"run_id\":");
        push_json_str(&mut out, self.run_id);
        out.push_str(",\"root_run_id\":");
        push_json_str(&mut out, self.root_run_id);
        out.push_str(",\"parent_run_id\":");
        match self.parent_run_id {
            Some(p) => push_json_str(&mut out, p),
            None => out.push_str("null"),
        }
        out.push_str(",\"step\":");
        out.push_str(&self.step.to_string());
        out.push_str(",\"tags\":[");
        for (i, t) in self.tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(&mut out, t);
        }
        out.push_str("],\"metadata\":");
        out.push_str(if metadata_json.is_empty() { "{}" } else { metadata_json });
        out.push_str(",\"data\":");
        out.push_str(if data_json.is_empty() { "null" } else { data_json });
        out.push_str(",\"ts\":");
        out.push_str(&self.timestamp_ms.to_string());
        out.push('}');
        out
    }

    /// The envelope with `metadata` and `data` exactly as received.
    pub fn envelope_unchanged(&self) -> String {
        self.envelope(self.metadata, self.data)
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str(&format!("\\u{:04x}", b));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_valid_json_with_escapes() {
        let tags = vec!["a\"b".to_string(), "c".to_string()];
        let ev = EventView {
            kind: "on_tool_end",
            name: "line\nbreak\u{1}",
            run_id: "r1",
            root_run_id: "root",
            parent_run_id: None,
            step: 7,
            tags: &tags,
            metadata: "{\"k\":1}",
            data: "{\"output\":\"x\"}",
            timestamp_ms: 5,
        };
        let v: serde_json::Value = serde_json::from_str(&ev.envelope_unchanged()).unwrap();
        assert_eq!(v["name"], "line\nbreak\u{1}");
        assert_eq!(v["tags"][0], "a\"b");
        assert_eq!(v["parent_run_id"], serde_json::Value::Null);
        assert_eq!(v["data"]["output"], "x");
        assert_eq!(v["step"], 7);
    }
}

/// Builds an [`EventView`] from a guest's generated `Event` record (any type with the
/// WIT field names), so each policy does not restate the field mapping.
#[macro_export]
macro_rules! event_view {
    ($e:expr) => {
        $crate::EventView {
            kind: &$e.kind,
            name: &$e.name,
            run_id: &$e.run_id,
            root_run_id: &$e.root_run_id,
            parent_run_id: $e.parent_run_id.as_deref(),
            step: $e.step,
            tags: &$e.tags,
            metadata: &$e.metadata,
            data: &$e.data,
            timestamp_ms: $e.timestamp_ms,
        }
    };
}
