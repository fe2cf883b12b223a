//! LangGraph Platform run webhooks: the Run payload posted with the token in the URL, as
//! LangGraph Platform does, goes through the tenant's policy; a bad token is refused.

use hostd_e2e::*;
use std::time::Duration;

fn start() -> Hostd {
    let acme = Tenant::new("acme", plugin("redact_pii"))
        .token("T", "lg-secret-token")
        .route("default", Route::file("{dir}/out.jsonl"));
    Hostd::from_config(&Config::new().tenant(acme))
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

/// Every byte of every file under `dir` (the spool, its WAL, outputs).
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    hits
}

#[test]
fn the_platform_token_in_the_run_never_reaches_a_sink_the_spool_or_the_dlq() {
    use hostd_e2e::receiver::{Receiver, Reply};
    const TOKEN: &str = "lg-platform-token-7f3a9c";
    let rx = Receiver::start(|path, _| if path == "dead" { Reply::status(400) } else { Reply::ok() });
    let acme = Tenant::new("acme", plugin("fan_out"))
        .token("T", TOKEN)
        .policy_config(json!({"routes": ["file", "hook", "dead"]}))
        .route("file", Route::file("{dir}/out.jsonl"))
        .route("hook", Route::webhook(&format!("{}/hook", rx.url), "WH"))
        .route("dead", Route::webhook(&format!("{}/dead", rx.url), "WH"));
    let config = Config::new()
        .admin_token("ADMIN", "admin")
        .allow_private_targets()
        .env("WH", "whsec_bGFuZ2dyYXBoLXNpZ25pbmc=")
        .tenant(acme);
    let h = Hostd::from_config(&config);
    let hook_url = format!("{}/v1/hooks/langgraph?token={TOKEN}", h.url);
    // The Run as langgraph_sdk's runs.create documents it, as LangGraph Platform posts it
    // back to the run's webhook: the URL with the token is in `kwargs.webhook`.
    let run = json!({
        "run_id": "1ef6a5b2-run", "thread_id": "th-9", "assistant_id": "my_assistant_id",
        "created_at": "2026-11-25T10:00:00+00:00", "updated_at": "2026-11-25T10:00:03+00:00",
        "status": "success", "metadata": {"source": "api"}, "multitask_strategy": "interrupt",
        "kwargs": {
            "input": {"messages": [{"role": "user", "content": "how are you?"}]},
            "config": {"metadata": {"created_by": "system"}, "configurable": {
                "run_id": "1ef6a5b2-run", "user_id": null, "graph_id": "agent", "thread_id": "th-9",
                "checkpoint_id": null, "assistant_id": "my_assistant_id", "callback": hook_url}},
            "context": {"model_name": "openai"},
            "webhook": hook_url,
            "temporary": false, "stream_mode": ["values"], "feedback_keys": null,
            "interrupt_after": ["node_to_stop_after_1"], "interrupt_before": ["node_to_stop_before_1"]
        }
    });
    let (status, body) = post(&h, &format!("?token={TOKEN}"), &run.to_string());
    assert_eq!(status, 202, "{body}");
    let lines = wait_for_lines(&h.path("out.jsonl"), 1, Duration::from_secs(10));
    assert_eq!(lines.len(), 1);
    let hooked = rx.wait_delivered("hook", 1, Duration::from_secs(10));
    assert_eq!(hooked.len(), 1);
    let dead = h.wait_dlq("admin", 1, Duration::from_secs(10));
    assert_eq!(dead.len(), 1, "the 400 route dead-lettered");

    // What the receivers see: the Run, with the token's value replaced.
    let data = &lines[0]["payload"]["data"];
    let redacted = format!("{}/v1/hooks/langgraph?token=REDACTED", h.url);
    assert_eq!(data["kwargs"]["webhook"], redacted.as_str());
    assert_eq!(data["kwargs"]["config"]["configurable"]["callback"], redacted.as_str());
    assert_eq!(data["kwargs"]["input"]["messages"][0]["content"], "how are you?", "the rest is kept");
    assert_eq!(lines[0]["idempotency_key"], "1ef6a5b2-run:run_end:0");
    let tok = TOKEN.as_bytes();
    let seen = |b: &[u8]| b.windows(tok.len()).any(|w| w == tok);
    assert!(!seen(lines[0].to_string().as_bytes()), "file route: {}", lines[0]);
    for r in rx.requests() {
        assert!(!seen(&r.body), "webhook {}: {}", r.path, String::from_utf8_lossy(&r.body));
        assert!(r.headers.values().all(|v| !seen(v.as_bytes())), "webhook headers");
    }
    assert!(!seen(Value::Array(dead.clone()).to_string().as_bytes()), "DLQ entry: {dead:?}");
    let entry = reqwest::blocking::Client::new()
        .get(format!("{}/admin/v1/dlq/{}", h.url, dead[0]["id"]))
        .bearer_auth("admin")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(entry.contains("token=REDACTED") && !seen(entry.as_bytes()), "the stored original event: {entry}");
    // Nor anywhere at rest: spool.db, its WAL, the outputs.
    let hits = files_containing(h.dir.path(), tok);
    let hits: Vec<&String> = hits.iter().filter(|p| !p.ends_with("hostd.toml")).collect();
    assert!(hits.is_empty(), "the token is stored in {hits:?}");
    assert!(!h.stderr().contains(TOKEN), "nor logged");
}
