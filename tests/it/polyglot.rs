//! Policies written in other languages than Rust, run by the real hostd end to end:
//! JavaScript (jco, QuickJS), Python (componentize-py) and C (wit-bindgen + wasi-libc),
//! built by `make plugins` (plugins/guests.mk) into plugins/target/guests/.

use hostd_e2e::*;
use std::path::PathBuf;
use std::time::Duration;

const ADMIN: &str = "admin-token";
const WAIT: Duration = Duration::from_secs(30);

/// A non-Rust policy built by `make plugins` (`route_by_tool`, `usage_meter`, `allow_list`).
fn guest(name: &str) -> PathBuf {
    let p = repo_root().join("plugins/target/guests").join(format!("{name}.wasm"));
    assert!(p.exists(), "{} is missing: run `make plugins`", p.display());
    p
}

/// A tenant `id` (token `{id}-token` in `TOKEN_{ID}`) running `policy` with file routes
/// `{dir}/{id}.{route}.jsonl`.
fn tenant(id: &str, policy: &std::path::Path, routes: &[&str]) -> Tenant {
    routes.iter().fold(Tenant::new(id, policy), |t, r| t.route(r, Route::file(&format!("{{dir}}/{id}.{r}.jsonl"))))
}

fn start(tenants: Vec<Tenant>) -> Hostd {
    Hostd::from_config(&tenants.into_iter().fold(Config::new().admin_token("ADMIN_TOKEN", ADMIN), Config::tenant))
}

fn send(h: &Hostd, tenant: &str, events: &[Value]) {
    let (status, body) = h.post(Some(&format!("{tenant}-token")), "application/x-ndjson", ndjson(events));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], events.len(), "{body}");
}

/// Exactly `n` deliveries on `tenant`'s `route`, sorted by idempotency key. The policy ran
/// before the 202, so waiting a moment after the n-th shows no more are coming.
fn delivered(h: &Hostd, tenant: &str, route: &str, n: usize) -> Vec<Value> {
    let path = h.path(&format!("{tenant}.{route}.jsonl"));
    wait_for_lines(&path, n, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let mut lines = read_jsonl(&path);
    assert_eq!(lines.len(), n, "{tenant}/{route}: {lines:#?}\nstderr:\n{}", h.stderr());
    lines.sort_by(|a, b| a["idempotency_key"].as_str().cmp(&b["idempotency_key"].as_str()));
    lines
}

/// The policy dropped exactly `n` of `tenant`'s events, and none faulted.
fn assert_dropped(h: &Hostd, tenant: &str, n: usize) {
    let metrics = reqwest::blocking::get(format!("{}/metrics", h.url)).unwrap().text().unwrap();
    let line = format!("hostd_events_dropped_by_policy_total{{tenant=\"{tenant}\"}} {n}");
    if n > 0 {
        assert!(metrics.lines().any(|l| l == line), "/metrics lacks `{line}`:\n{metrics}");
    } else {
        assert!(
            !metrics.contains(&format!("hostd_events_dropped_by_policy_total{{tenant=\"{tenant}\"}}")),
            "{metrics}"
        );
    }
    assert!(!metrics.contains(&format!("hostd_policy_faults_total{{tenant=\"{tenant}\"")), "{metrics}");
    let dead: Vec<Value> = h.dlq(ADMIN).into_iter().filter(|e| e["tenant"] == tenant).collect();
    assert!(dead.is_empty(), "no policy faults: {dead:#?}");
}

fn ev(kind: &str, name: &str, run: &str, step: u64, metadata: Value, data: Value) -> Value {
    json!({"event": kind, "name": name, "run_id": run, "root_run_id": "root-1", "parent_run_id": "root-1",
           "step": step, "tags": ["seq:step:1", "agent"], "metadata": metadata, "data": data,
           "ts": 1_767_225_600_000u64 + step})
}

#[test]
fn javascript_routes_billing_tools_and_strips_user_email() {
    let policy = guest("route_by_tool");
    let h = start(vec![
        tenant("js", &policy, &["billing", "default"]),
        tenant("jscfg", &policy, &["billing", "default"]).policy_config(json!({"billing_tools": ["crm_lookup"]})),
    ]);
    let who = json!({"user_email": "ada@example.com", "thread_id": "th_91"});
    let events = vec![
        ev("on_tool_end", "charge_card", "t1", 1, who.clone(), json!({"output": {"charge": "ch_1", "amount": 129.5}})),
        ev("on_tool_end", "refund", "t2", 2, who.clone(), json!({"output": "refunded"})),
        ev("on_tool_end", "crm_lookup", "t3", 3, who.clone(), json!({"output": {"customer": "cus_8f2k1"}})),
        // A billing tool's name on another kind of event is not a billing delivery.
        ev("on_chain_end", "charge_card", "c1", 4, who.clone(), json!({"outputs": {"ok": true}})),
        ev("on_custom_event", "progress", "p1", 5, json!({"thread_id": "th_91"}), json!({"pct": 50})),
    ];
    send(&h, "js", &events);
    send(&h, "jscfg", &events[..3]);

    let billing = delivered(&h, "js", "billing", 2);
    let default = delivered(&h, "js", "default", 3);
    assert_dropped(&h, "js", 0);
    let names = |lines: &[Value]| -> Vec<String> {
        lines.iter().map(|l| l["payload"]["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&billing), ["charge_card", "refund"]);
    // Sorted by idempotency key: root-1:on_chain_end:4, root-1:on_custom_event:5, root-1:on_tool_end:3.
    assert_eq!(names(&default), ["charge_card", "progress", "crm_lookup"]);

    for line in billing.iter().chain(&default) {
        assert_eq!(line["tenant"], "js");
        assert_eq!(line["key"], "root-1", "no key from the policy: the root run id");
        assert_eq!(line["policy_version"].as_str().unwrap().len(), 12);
        let payload = &line["payload"];
        assert!(payload["metadata"].get("user_email").is_none(), "user_email stripped: {line}");
        assert_eq!(payload["metadata"]["thread_id"], "th_91", "the rest of metadata is kept: {line}");
        let sent = events.iter().find(|e| e["run_id"] == payload["run_id"]).unwrap();
        // The standard envelope, data unchanged.
        assert_eq!(payload["event"], sent["event"]);
        assert_eq!(payload["data"], sent["data"]);
        assert_eq!(payload["root_run_id"], "root-1");
        assert_eq!(payload["parent_run_id"], "root-1");
        assert_eq!(payload["step"], sent["step"]);
        assert_eq!(payload["tags"], sent["tags"]);
        assert_eq!(payload["ts"], sent["ts"]);
        let expected: Vec<&str> =
            if sent["metadata"].get("user_email").is_some() { vec!["/metadata/user_email"] } else { vec![] };
        assert_eq!(line["redactions"], json!(expected), "{line}");
    }
    let text = std::fs::read_to_string(h.path("js.billing.jsonl")).unwrap()
        + &std::fs::read_to_string(h.path("js.default.jsonl")).unwrap();
    assert!(!text.contains("ada@example.com"), "{text}");

    // policy_config.billing_tools replaces the default list.
    let billing = delivered(&h, "jscfg", "billing", 1);
    assert_eq!(billing[0]["payload"]["name"], "crm_lookup");
    let default = delivered(&h, "jscfg", "default", 2);
    assert_eq!(names(&default), ["charge_card", "refund"]);
}

#[test]
fn python_meters_llm_usage_and_drops_the_rest() {
    let h = start(vec![tenant("py", &guest("usage_meter"), &["default"])]);
    let events = vec![
        // What the hostd LangChain client sends: the message's usage_metadata.
        ev(
            "on_llm_end",
            "",
            "llm-1",
            1,
            json!({"ls_provider": "openai"}),
            json!({"model": "gpt-4o-mini", "token_usage": {"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
                   "text": "Looking up the customer.", "tool_calls": [{"name": "crm_lookup", "args": {"id": "cus_8f2k1"}}]}),
        ),
        // A raw LLMResult: the provider's usage under llm_output.
        ev(
            "on_llm_end",
            "",
            "llm-2",
            2,
            json!({}),
            json!({"llm_output": {"model_name": "gpt-4o", "token_usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}},
                   "generations": [[{"text": "done"}]]}),
        ),
        ev("on_tool_end", "crm_lookup", "t1", 3, json!({}), json!({"output": "x"})),
        ev("on_llm_new_token", "", "llm-1", 4, json!({}), json!({"token": "Look"})),
        ev("on_chain_end", "agent", "c1", 5, json!({}), json!({"outputs": {}})),
    ];
    send(&h, "py", &events);
    let lines = delivered(&h, "py", "default", 2);
    assert_dropped(&h, "py", 3);
    assert_eq!(lines[0]["idempotency_key"], "root-1:on_llm_end:1");
    assert_eq!(
        lines[0]["payload"],
        json!({"model": "gpt-4o-mini", "prompt_tokens": 12, "completion_tokens": 7, "run_id": "llm-1"})
    );
    assert_eq!(lines[1]["idempotency_key"], "root-1:on_llm_end:2");
    assert_eq!(
        lines[1]["payload"],
        json!({"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 20, "run_id": "llm-2"})
    );
    for l in &lines {
        assert_eq!(l["event"], "on_llm_end");
        assert_eq!(l["redactions"], json!([]));
        assert_eq!(l["key"], "root-1");
    }
}

#[test]
fn c_allow_list_delivers_listed_kinds_unchanged() {
    let policy = guest("allow_list");
    let h = start(vec![
        tenant("c", &policy, &["default"]).policy_config(json!({"allow": ["on_tool_end", "on_llm_end"]})),
        tenant("cdefault", &policy, &["default"]),
        // The Rust pass-through delivers the standard envelope unchanged: the reference.
        tenant("rust", &plugin("pass_through"), &["default"]),
    ]);
    let events = vec![
        ev(
            "on_tool_end",
            "crm_lookup",
            "t1",
            1,
            json!({"user_email": "ada@example.com", "langgraph_node": "tools"}),
            json!({"output": {"customer": {"name": "Ada \"the\" Countess\n", "tier": "enterprise"}, "orders": [1, 2.5, null, true]}}),
        ),
        ev("on_chain_start", "agent", "c1", 2, json!({}), json!({"inputs": {"q": "hi"}})),
        ev("on_llm_new_token", "", "llm-1", 3, json!({}), json!({"token": "Hel"})),
        ev("on_llm_end", "", "llm-1", 4, json!({}), json!({"model": "gpt-4o-mini", "text": "Hello \u{263a}"})),
        ev("on_custom_event", "progress", "p1", 5, json!({}), json!({"pct": 50})),
        // No parent, no tags, no metadata, no data.
        json!({"event": "on_tool_end", "name": "ping", "run_id": "t2", "root_run_id": "root-2", "step": 6, "ts": 1_767_225_600_006u64}),
    ];
    send(&h, "c", &events);
    send(&h, "cdefault", &events);
    send(&h, "rust", &events);

    let reference = delivered(&h, "rust", "default", events.len());
    let same_as_rust = |lines: &[Value]| {
        for l in lines {
            let r = reference.iter().find(|r| r["idempotency_key"] == l["idempotency_key"]).unwrap();
            assert_eq!(l["payload"], r["payload"], "the C envelope equals the Rust one");
            assert_eq!(l["key"], r["key"]);
            assert_eq!(l["redactions"], json!([]));
        }
    };

    let lines = delivered(&h, "c", "default", 3);
    assert_dropped(&h, "c", 3);
    let keys: Vec<&str> = lines.iter().map(|l| l["idempotency_key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["root-1:on_llm_end:4", "root-1:on_tool_end:1", "root-2:on_tool_end:6"]);
    same_as_rust(&lines);
    let tool = &lines[1]["payload"];
    assert_eq!(tool["metadata"]["user_email"], "ada@example.com", "unchanged: nothing stripped");
    assert_eq!(tool["data"], events[0]["data"]);
    assert_eq!(tool["tags"], events[0]["tags"]);
    assert_eq!(lines[2]["payload"]["parent_run_id"], Value::Null);

    // The default list forwards ends, errors and custom events, not starts or tokens.
    let lines = delivered(&h, "cdefault", "default", 4);
    assert_dropped(&h, "cdefault", 2);
    let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["on_custom_event", "on_llm_end", "on_tool_end", "on_tool_end"]);
    same_as_rust(&lines);
}

#[test]
fn hostd_check_refuses_a_bad_policy_config() {
    for (policy, config, error) in [
        ("allow_list", json!({"allow": "on_tool_end"}), "policy_config.allow must be an array of event kinds"),
        ("route_by_tool", json!({"billing_tools": [1]}), "policy_config.billing_tools must be an array of tool names"),
        ("usage_meter", json!({"route": 5}), "policy_config.route must be a string"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hostd.toml");
        let text = Config::new().tenant(tenant("t", &guest(policy), &["default"]).policy_config(config)).to_toml();
        std::fs::write(&path, text.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
        let out = std::process::Command::new(hostd_bin())
            .args(["check", "--config", path.to_str().unwrap()])
            .env("TOKEN_T", "t-token")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{policy}: {stdout}");
        assert!(stdout.contains(&format!("configure failed: {error}")), "{policy}: {stdout}");
    }
}
