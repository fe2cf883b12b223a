use super::*;

fn json(body: &str) -> Result<Vec<AcceptedEvent>, InvalidEvent> {
    parse_body(body.as_bytes(), BodyFormat::Json, "acme")
}

#[test]
fn fills_defaults_from_the_langchain_shape() {
    let evs =
        json(r#"{"event":"on_tool_end","run_id":"r2","parent_ids":["root","r1"],"step":3,"data":{"output":"x"}}"#)
            .unwrap();
    let e = &evs[0];
    assert_eq!(e.event.root_run_id, "root");
    assert_eq!(e.event.parent_run_id.as_deref(), Some("r1"));
    assert_eq!(e.idempotency_key, "root:on_tool_end:3");
    assert_eq!(e.event.data, r#"{"output":"x"}"#);
    assert_eq!(e.event.metadata, "{}");
    assert_eq!(e.event.tenant, "acme");
}

#[test]
fn accepts_arrays_and_ndjson() {
    assert_eq!(json(r#"[{"event":"a","run_id":"1"},{"event":"b","run_id":"2"}]"#).unwrap().len(), 2);
    let nd =
        "{\"event\":\"a\",\"run_id\":\"1\"}\n\n{\"event\":\"b\",\"run_id\":\"2\",\"ts\":\"2026-01-01T00:00:00Z\"}\n";
    let evs = parse_body(nd.as_bytes(), BodyFormat::Ndjson, "acme").unwrap();
    assert_eq!(evs[1].event.timestamp_ms, 1_767_225_600_000);
}

#[test]
fn errors_name_the_event_and_field() {
    let cases = [
        (r#"{"run_id":"1"}"#, "event 0: missing required field `event`"),
        (
            r#"[{"event":"a","run_id":"1"},{"event":"a","run_id":5}]"#,
            "event 1: field `run_id` must be a string, got a number",
        ),
        (r#"{"event":"a","run_id":"1","metadata":[1]}"#, "event 0: field `metadata` must be an object, got an array"),
        (r#"{"event":"a","run_id":"1","step":-1}"#, "event 0: field `step` must be a non-negative integer, got -1"),
        (
            r#"{"event":"a","run_id":"1","tenant":"globex"}"#,
            "event 0: field `tenant` is `globex` but the token belongs to tenant `acme`",
        ),
        (r#"[1]"#, "event 0: must be a JSON object, got a number"),
        (r#"{"event":"a","event":"b","run_id":"1"}"#, "event 0: duplicate field `event` at line 1 column 20"),
        ("[]", "the array holds no events"),
    ];
    for (body, want) in cases {
        assert_eq!(json(body).unwrap_err().message, want, "body {body}");
    }
    assert!(json("{\"event\":").unwrap_err().message.starts_with("malformed JSON at line 1"));
    assert!(json(r#"{"event":"a","run_id":"1","tenant":"globex"}"#).unwrap_err().wrong_tenant);
    // The client's value is quoted cut and escaped, never whole.
    let long = format!(r#"{{"event":"a","run_id":"1","tenant":"{}\n"}}"#, "g".repeat(1 << 20));
    let e = json(&long).unwrap_err();
    assert!(e.message.len() < 400 && !e.message.contains('\n'), "{}", &e.message[..100]);
    let e = json(&format!(r#"{{"event":"a","run_id":"1","ts":"{}"}}"#, "9".repeat(1 << 20))).unwrap_err();
    assert!(e.message.len() < 400, "{}", &e.message[..100]);
    assert!(json(r#"{"event":"a","run_id":"1","ts":1e300}"#).is_err(), "a time past u64 ms is refused");
}

#[test]
fn derived_keys_are_unambiguous_and_bounded() {
    use serde_json::json;
    let key = |root: &str, kind: &str, step: u64| {
        let body = json!({"event": kind, "run_id": "r", "root_run_id": root, "step": step}).to_string();
        json(&body).unwrap().remove(0).idempotency_key
    };
    assert_eq!(key("root-1", "on_tool_end", 3), "root-1:on_tool_end:3", "plain names read as before");
    assert_ne!(key("r", "x:y", 0), key("r:x", "y", 0));
    assert_eq!(key("r", "x:y", 0), "r:x%3Ay:0");
    assert_eq!(key("r:x", "y", 0), "r%3Ax:y:0");
    assert_ne!(key("a%3A", "b", 0), key("a:", "b", 0), "the escape itself is escaped");
    let long_root = "é".repeat(300);
    let long = key(&long_root, "on_tool_end", 1);
    assert!(long.len() <= MAX_IDEMPOTENCY_KEY, "{} bytes", long.len());
    assert!(long.starts_with(&"é".repeat(32)) && long.contains("~sha256-") && !long.contains(':'), "{long}");
    assert_ne!(long, key(&long_root, "on_tool_end", 2));
    assert_eq!(long, key(&long_root, "on_tool_end", 1), "stable, so retries are duplicates");
    let long_kind = key("r", &"k".repeat(1000), 0);
    assert!(long_kind.len() <= MAX_IDEMPOTENCY_KEY && long_kind.starts_with("r~sha256-"), "{long_kind}");
    // The explicit-key limit is unchanged.
    let explicit = json!({"event": "a", "run_id": "r", "idempotency_key": "k".repeat(257)}).to_string();
    assert!(json(&explicit).unwrap_err().message.contains("257 bytes, the limit is 256"));
}

#[test]
fn nesting_is_bounded_before_any_field_is_read() {
    let nested =
        |levels: usize| format!(r#"{{"event":"a","run_id":"r","data":{}1{}}}"#, "[".repeat(levels), "]".repeat(levels));
    assert!(json(&nested(127)).is_ok(), "128 levels with the event object");
    let e = json(&nested(128)).unwrap_err();
    assert_eq!(e.message, "event 0: arrays and objects nest 129 levels deep; the limit is 128");
    let nd = format!("{{\"event\":\"a\",\"run_id\":\"r\"}}\n{}\n", nested(100_000));
    let e = parse_body(nd.as_bytes(), BodyFormat::Ndjson, "acme").unwrap_err();
    assert!(e.message.starts_with("event 1 (line 2): arrays and objects nest 100001 levels deep"), "{e}");
    // What `RawValue` accepts and `Value` does not, kept for the policy as written.
    let odd = json(r#"{"event":"a","run_id":"r","data":{"s":"\ud800","n":1e400,"b":123456789012345678901234567890}}"#);
    assert_eq!(odd.unwrap()[0].event.data, r#"{"s":"\ud800","n":1e400,"b":123456789012345678901234567890}"#);
}

#[test]
fn ndjson_errors_name_the_line() {
    let nd = "{\"event\":\"a\",\"run_id\":\"1\"}\n{\"event\":\"a\",\"run_id\":\"2\"}\n{oops\n";
    let e = parse_body(nd.as_bytes(), BodyFormat::Ndjson, "acme").unwrap_err();
    assert!(e.message.starts_with("event 2 (line 3): malformed JSON"), "{e}");
}
