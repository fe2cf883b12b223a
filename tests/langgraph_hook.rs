//! LangGraph Platform run webhooks: the Run payload posted with the token in the URL, as
//! LangGraph Platform does, goes through the tenant's policy; a bad token is refused.

use hostd_e2e::*;
use std::time::Duration;

fn start() -> Hostd {
    let config = format!(
        "[server]\ndata_dir = \"{{dir}}/data\"\n[[tenants]]\nid = \"acme\"\ntoken_env = \"T\"\npolicy = \"{}\"\n[tenants.routes.default]\ntype = \"file\"\npath = \"{{dir}}/out.jsonl\"\n",
        plugin("redact_pii").display()
    );
    Hostd::with_config(&config, &[("T", "lg-secret-token")])
}

fn post(h: &Hostd, query: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/hooks/langgraph{query}", h.url))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

#[test]
fn a_run_webhook_is_delivered_through_the_policy() {
    let h = start();
    let run = json!({
        "run_id": "1ef6-run", "thread_id": "th-9", "assistant_id": "support-agent", "status": "success",
        "metadata": {"user": "ada@example.com"}, "kwargs": {"input": {"messages": [{"content": "call me at +1 415-555-2671"}]}},
        "created_at": "2026-11-25T10:00:00Z", "updated_at": "2026-11-25T10:00:03Z", "multitask_strategy": "reject"
    });
    let (status, body) = post(&h, "?token=lg-secret-token", &run.to_string());
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["idempotency_key"], "1ef6-run:run_end:0");
    let lines = wait_for_lines(&h.path("out.jsonl"), 1, Duration::from_secs(10));
    assert_eq!(lines.len(), 1);
    let d = &lines[0];
    assert_eq!(d["event"], "run_end");
    assert_eq!(d["idempotency_key"], "1ef6-run:run_end:0");
    let p = &d["payload"];
    assert_eq!(p["name"], "support-agent");
    assert_eq!(p["run_id"], "1ef6-run");
    assert_eq!(p["data"]["thread_id"], "th-9");
    assert_eq!(p["data"]["status"], "success");
    assert_eq!(p["tags"][0], "status:success");
    assert_eq!(p["metadata"]["user"], "[REDACTED:email]", "the tenant's redaction applied");
    assert!(!d.to_string().contains("415-555-2671"));

    // LangGraph Platform retries the same run: a duplicate, not a second delivery.
    let (status, body) = post(&h, "?token=lg-secret-token", &run.to_string());
    assert_eq!((status, body["duplicate"].clone()), (202, json!(true)));
}

#[test]
fn bad_token_and_bad_payloads_are_refused_with_the_reason() {
    let h = start();
    let run = json!({"run_id": "r", "assistant_id": "a", "status": "success"}).to_string();
    let (status, body) = post(&h, "?token=wrong", &run);
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(&h, "", &run);
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("`token`"));
    let (status, body) = post(&h, "?token=lg-secret-token", r#"{"assistant_id": "a", "status": "error"}"#);
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("`run_id`"), "{body}");
    let (status, _) = post(&h, "?token=lg-secret-token", "{not json");
    assert_eq!(status, 400);
    std::thread::sleep(Duration::from_millis(200));
    assert!(read_jsonl(&h.path("out.jsonl")).is_empty());
}
