//! Hostile guests: each fault is contained, the event is dead-lettered with its reason,
//! hostd keeps serving, and a second tenant in the same process is unaffected.

use hostd_e2e::*;
use std::time::Duration;

const EVIL: &str = "evil-token";
const GOOD: &str = "good-token";
const ADMIN: &str = "admin-token";
const WAIT: Duration = Duration::from_secs(10);

/// These tests run one at a time: the deadline test measures how promptly a guest is
/// stopped, which other hostds compiling components on the same two cores would blur.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// hostd with tenant `evil` running `guest` (with `limits`) and tenant `good` running
/// pass-through, both writing to files in the temp dir.
fn start(guest: &str, limits: &str) -> Hostd {
    let config = format!(
        r#"
[server]
data_dir = "{{dir}}/data"
admin_token_env = "ADMIN_TOKEN"

[[tenants]]
id = "evil"
token_env = "EVIL_TOKEN"
policy = "{evil}"
[tenants.limits]
{limits}
[tenants.routes.default]
type = "file"
path = "{{dir}}/evil.jsonl"

[[tenants]]
id = "good"
token_env = "GOOD_TOKEN"
policy = "{good}"
[tenants.routes.default]
type = "file"
path = "{{dir}}/good.jsonl"
"#,
        evil = plugin(guest).display(),
        good = plugin("pass_through").display(),
    );
    Hostd::with_config(&config, &[("EVIL_TOKEN", EVIL), ("GOOD_TOKEN", GOOD), ("ADMIN_TOKEN", ADMIN)])
}

fn dead_letters(h: &Hostd) -> Vec<Value> {
    h.dlq(ADMIN)
}

/// Posts one event as `evil` and one as `good`; checks the good one was delivered and
/// hostd still answers. Returns the dead letters.
/// Each call sends a new event (step = dead letters so far + 1), so none is a duplicate.
fn provoke(h: &mut Hostd, name: &str) -> Vec<Value> {
    let step = dead_letters(h).len() + 1;
    let ev = json!({"event": "on_tool_end", "name": name, "run_id": "r-evil", "step": step, "data": {"output": "x"}});
    let (status, body) = h.post_json(Some(EVIL), &ev);
    assert_eq!(status, 202, "a policy fault is not the client's fault: {body}");
    let (status, _) = h.post_json(Some(GOOD), &tool_end("g", "g", 1, json!({"output": "fine"})));
    assert_eq!(status, 202);
    assert!(h.is_running() && h.healthy(), "hostd must keep serving; stderr:\n{}", h.stderr());
    let good = wait_for_lines(&h.path("good.jsonl"), 1, WAIT);
    assert!(good.iter().any(|l| l["payload"]["data"]["output"] == "fine"), "second tenant unaffected: {good:?}");
    let delivered = read_jsonl(&h.path("evil.jsonl"));
    assert!(
        delivered.iter().all(|l| l["idempotency_key"] != format!("r-evil:on_tool_end:{step}")),
        "nothing of a faulting call is delivered: {delivered:?}"
    );
    dead_letters(h)
}

fn assert_letter(letter: &Value, reason: &str) {
    assert_eq!(letter["reason"], reason, "{letter}");
    assert_eq!(letter["tenant"], "evil");
    assert!(letter["idempotency_key"].as_str().unwrap().starts_with("r-evil:on_tool_end:"));
    assert_eq!(letter["event"]["run_id"], "r-evil", "the original event is kept");
    assert_eq!(letter["route"], Value::Null, "a policy fault has no route");
    let err = letter["last_error"].as_str().unwrap();
    assert!(err.starts_with("tenant `evil`, policy "), "the error names tenant and version: {err}");
    assert_eq!(letter["policy_version"].as_str().unwrap().len(), 12);
}

/// The host's own measure of a deadline fault: "... (stopped after 50.91ms)".
fn stopped_after(error: &str) -> Duration {
    let text = error.split("stopped after ").nth(1).and_then(|t| t.strip_suffix(')')).expect("elapsed in the error");
    let (num, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic() || c == 'µ').unwrap());
    let n: f64 = num.parse().unwrap();
    Duration::from_secs_f64(match unit {
        "s" => n,
        "ms" => n / 1e3,
        "µs" => n / 1e6,
        other => panic!("unit {other} in {error}"),
    })
}

#[test]
fn infinite_loop_hits_the_deadline() {
    let _serial = serial();
    let mut h = start("hostile_deadline_loop", r#"deadline = "50ms""#);
    let letters = provoke(&mut h, "spin");
    assert_eq!(letters.len(), 1);
    assert_letter(&letters[0], "deadline");
    let err = letters[0]["last_error"].as_str().unwrap();
    let elapsed = stopped_after(err);
    assert!(elapsed >= Duration::from_millis(50), "stopped no earlier than the deadline: {err}");
    assert!(elapsed < Duration::from_millis(100), "stopped within 2× the deadline: {err}");
    // The next call gets a fresh instance and is stopped the same way.
    let letters = provoke(&mut h, "spin again");
    assert_eq!(letters.len(), 2);
}

#[test]
fn memory_bomb_hits_the_cap() {
    let _serial = serial();
    let mut h = start("hostile_memory_bomb", r#"memory = "8MiB""#);
    let letters = provoke(&mut h, "bomb");
    assert_eq!(letters.len(), 1);
    assert_letter(&letters[0], "memory");
    assert!(letters[0]["last_error"].as_str().unwrap().contains("8388608"), "{}", letters[0]);
}

#[test]
fn trap_dead_letters_and_the_next_event_gets_a_fresh_instance() {
    let _serial = serial();
    let mut h = start("hostile_trap_once", "");
    let ok = |h: &Hostd, run: &str, step: u64| {
        let ev = json!({"event": "on_tool_end", "name": "fine", "run_id": run, "step": step});
        assert_eq!(h.post_json(Some(EVIL), &ev).0, 202);
    };
    ok(&h, "a", 1);
    ok(&h, "b", 1);
    let letters = provoke(&mut h, "boom");
    assert_eq!(letters.len(), 1);
    assert_letter(&letters[0], "trap");
    ok(&h, "c", 1);
    let lines = wait_for_lines(&h.path("evil.jsonl"), 3, WAIT);
    let served = |run: &str| {
        lines
            .iter()
            .find(|l| l["payload"]["run_id"] == run)
            .map(|l| l["payload"]["served_by_instance"].as_u64().unwrap())
    };
    assert_eq!(
        (served("a"), served("b"), served("c")),
        (Some(1), Some(2), Some(1)),
        "after the trap a fresh instance serves"
    );
}

#[test]
fn unknown_route_is_dead_lettered() {
    let _serial = serial();
    let mut h = start("hostile_unknown_route", "");
    let letters = provoke(&mut h, "anything");
    assert_letter(&letters[0], "unknown_route");
    assert!(letters[0]["last_error"].as_str().unwrap().contains("route `nowhere`"));
}

#[test]
fn oversize_output_is_dead_lettered() {
    let _serial = serial();
    let mut h = start("hostile_oversize", "");
    let letters = provoke(&mut h, "big");
    assert_letter(&letters[0], "oversize_output");
    // 17 deliveries against the default limit of 16.
    let ev = json!({"event": "on_tool_end", "name": "many", "run_id": "r-evil", "step": 99});
    assert_eq!(h.post_json(Some(EVIL), &ev).0, 202);
    let letters = dead_letters(&h);
    assert_eq!(letters[1]["reason"], "too_many_deliveries");
}

#[test]
fn garbage_payload_is_dead_lettered() {
    let _serial = serial();
    let mut h = start("hostile_garbage_json", "");
    let letters = provoke(&mut h, "junk");
    assert_letter(&letters[0], "malformed_payload");
}

#[test]
fn on_policy_error_drop_drops_without_a_dead_letter() {
    let _serial = serial();
    let config = format!(
        r#"
[server]
data_dir = "{{dir}}/data"
admin_token_env = "ADMIN_TOKEN"
[[tenants]]
id = "evil"
token_env = "EVIL_TOKEN"
policy = "{}"
on_policy_error = "drop"
[tenants.routes.default]
type = "file"
path = "{{dir}}/evil.jsonl"
"#,
        plugin("hostile_garbage_json").display()
    );
    let h = Hostd::with_config(&config, &[("EVIL_TOKEN", EVIL), ("ADMIN_TOKEN", ADMIN)]);
    assert_eq!(h.post_json(Some(EVIL), &tool_end("r", "r", 0, json!(null))).0, 202);
    std::thread::sleep(Duration::from_millis(100));
    assert!(dead_letters(&h).is_empty());
    assert!(read_jsonl(&h.path("evil.jsonl")).is_empty(), "never delivered unshaped");
    assert!(h.stderr().contains("dropped after policy fault"));
}
