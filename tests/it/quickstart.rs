//! The quickstart: `hostd --plugin redact_pii.wasm` redacts PII in nested data,
//! records what it changed, and drops the noisy events.

use hostd_e2e::*;

#[test]
fn quickstart_redacts_pii_and_drops_noise() {
    let hostd = Hostd::start(&["--plugin", plugin("redact_pii").to_str().unwrap(), "--out", "out.jsonl"], &[]);
    let events = vec![
        tool_end(
            "root-1",
            "tool-1",
            1,
            json!({"output": {"customer": {"email": "ada@example.com", "notes": ["call +1 415-555-2671", "fine"]},
                              "card": "4111 1111 1111 1111", "aws": "AKIAIOSFODNN7EXAMPLE", "ok": 42}}),
        ),
        json!({"event": "on_llm_new_token", "run_id": "llm-1", "root_run_id": "root-1", "step": 2, "data": {"chunk": "a@b.co"}}),
        json!({"event": "on_custom_event", "name": "progress", "run_id": "c-1", "root_run_id": "root-1", "step": 3,
               "metadata": {"user": "bob@example.org"}, "data": {"pct": 50, "key": "sk-abcdefghijklmnopqrstuv"}}),
    ];
    let (status, body) = hostd.post(None, "application/x-ndjson", ndjson(&events));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 3);
    assert_eq!(body["idempotency_keys"][0], "root-1:on_tool_end:1");

    let lines = wait_for_lines(&hostd.path("out.jsonl"), 2, std::time::Duration::from_secs(10));
    assert_eq!(lines.len(), 2, "on_llm_new_token must be dropped: {lines:?}");
    let mut lines = lines;
    lines.sort_by_key(|l| l["payload"]["step"].as_u64());
    let text = serde_json::to_string(&lines).unwrap();
    for secret in
        ["ada@example.com", "415-555-2671", "4111 1111", "AKIAIOSFODNN7EXAMPLE", "bob@example.org", "sk-abcdef"]
    {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }

    let tool = &lines[0];
    assert_eq!(tool["tenant"], "default");
    assert_eq!(tool["route"], "default");
    assert_eq!(tool["idempotency_key"], "root-1:on_tool_end:1");
    assert_eq!(tool["policy_version"].as_str().unwrap().len(), 12);
    let mut redactions: Vec<String> =
        tool["redactions"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    redactions.sort();
    assert_eq!(
        redactions,
        vec!["/data/output/aws", "/data/output/card", "/data/output/customer/email", "/data/output/customer/notes/0"]
    );
    let payload = &tool["payload"];
    assert_eq!(payload["event"], "on_tool_end");
    assert_eq!(payload["data"]["output"]["customer"]["email"], "[REDACTED:email]");
    assert_eq!(payload["data"]["output"]["customer"]["notes"][0], "call [REDACTED:phone]");
    assert_eq!(payload["data"]["output"]["customer"]["notes"][1], "fine");
    assert_eq!(payload["data"]["output"]["ok"], 42);

    let custom = &lines[1];
    assert_eq!(custom["payload"]["metadata"]["user"], "[REDACTED:email]");
    assert_eq!(custom["payload"]["data"]["key"], "[REDACTED:api_key]");
    let mut r: Vec<&str> = custom["redactions"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    r.sort();
    assert_eq!(r, vec!["/data/key", "/metadata/user"]);
    assert!(hostd.stderr().contains("no token configured"), "the unauthenticated quickstart warns at start");
}

#[test]
fn quickstart_with_a_token_requires_it() {
    let hostd = Hostd::start(
        &["--plugin", plugin("pass_through").to_str().unwrap(), "--out", "out.jsonl", "--token", "s3cret"],
        &[],
    );
    let ev = tool_end("r", "r", 0, json!({"output": "x"}));
    assert_eq!(hostd.post_json(None, &ev).0, 401);
    assert_eq!(hostd.post_json(Some("wrong"), &ev).0, 401);
    assert_eq!(hostd.post_json(Some("s3cret"), &ev).0, 202);
    assert_eq!(wait_for_lines(&hostd.path("out.jsonl"), 1, std::time::Duration::from_secs(10)).len(), 1);
}

#[test]
fn quickstart_refuses_a_public_listener_without_a_token() {
    let out = std::process::Command::new(hostd_bin())
        .args(["--plugin", plugin("pass_through").to_str().unwrap(), "--listen", "0.0.0.0:0"])
        .env_remove("HOSTD_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only listens on a loopback address"), "{err}");
}
