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
/// The lock is this module's: the other modules' tests in the `it` binary do run beside
/// these, which is why the deadline and the starved-host tests measure CPU time (the
/// host's own measures), and the memory test the peak of its own hostd process.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tenant `evil` running `guest`, delivering to `{dir}/evil.jsonl`.
fn evil(guest: &str) -> Tenant {
    Tenant::new("evil", plugin(guest)).token("EVIL_TOKEN", EVIL).route("default", Route::file("{dir}/evil.jsonl"))
}

/// Tenant `good` running pass-through, delivering to `{dir}/good.jsonl`.
fn good() -> Tenant {
    Tenant::new("good", plugin("pass_through"))
        .token("GOOD_TOKEN", GOOD)
        .route("default", Route::file("{dir}/good.jsonl"))
}

/// hostd with just `tenant`.
fn alone(tenant: Tenant) -> Hostd {
    Hostd::from_config(&Config::new().admin_token("ADMIN_TOKEN", ADMIN).tenant(tenant))
}

/// hostd with tenant `evil` (running a hostile guest) and tenant `good` (pass-through).
fn start(evil: Tenant) -> Hostd {
    Hostd::from_config(&Config::new().admin_token("ADMIN_TOKEN", ADMIN).tenant(evil).tenant(good()))
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

/// A duration as Rust's `Debug` prints it: "50.91ms", "1.2s", "830µs".
fn parse_duration(text: &str) -> Duration {
    let (num, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic() || c == 'µ').unwrap());
    let n: f64 = num.parse().unwrap();
    Duration::from_secs_f64(match unit {
        "s" => n,
        "ms" => n / 1e3,
        "µs" => n / 1e6,
        "ns" => n / 1e9,
        other => panic!("unit {other} in {text}"),
    })
}

/// The host's own measures of a deadline fault: "... (50.2ms of CPU; stopped after
/// 50.91ms)": the CPU time the call used, and the wall-clock time until it was stopped.
fn cpu_and_elapsed(error: &str) -> (Duration, Duration) {
    let inner = error.rsplit_once('(').and_then(|(_, t)| t.strip_suffix(')')).expect("measures in the error");
    let (cpu, elapsed) = inner.split_once(" of CPU; stopped after ").expect("cpu and elapsed in the error");
    (parse_duration(cpu), parse_duration(elapsed))
}

#[test]
fn infinite_loop_hits_the_deadline() {
    let _serial = serial();
    let mut h = start(evil("hostile_deadline_loop").deadline("50ms"));
    let letters = provoke(&mut h, "spin");
    assert_eq!(letters.len(), 1);
    assert_letter(&letters[0], "deadline");
    let err = letters[0]["last_error"].as_str().unwrap();
    // The deadline counts the policy's CPU time, so "promptly" is measured in CPU time
    // too: on a loaded machine the wall-clock time may be longer (see the starved-host
    // test below), but the guest never gets more than twice its budget of CPU.
    let (cpu, elapsed) = cpu_and_elapsed(err);
    assert!(cpu >= Duration::from_millis(50), "stopped no earlier than the deadline: {err}");
    assert!(elapsed >= cpu, "{err}");
    assert!(cpu < Duration::from_millis(100), "stopped within 2× the deadline of CPU: {err}");
    // The next call gets a fresh instance and is stopped the same way.
    let letters = provoke(&mut h, "spin again");
    assert_eq!(letters.len(), 2);
}

#[test]
fn memory_bomb_hits_the_cap() {
    let _serial = serial();
    let mut h = start(evil("hostile_memory_bomb").memory("8MiB"));
    let letters = provoke(&mut h, "bomb");
    assert_eq!(letters.len(), 1);
    assert_letter(&letters[0], "memory");
    assert!(letters[0]["last_error"].as_str().unwrap().contains("8388608"), "{}", letters[0]);
}

#[test]
fn trap_dead_letters_and_the_next_event_gets_a_fresh_instance() {
    let _serial = serial();
    let mut h = start(evil("hostile_trap_once"));
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
    let mut h = start(evil("hostile_unknown_route"));
    let letters = provoke(&mut h, "anything");
    assert_letter(&letters[0], "unknown_route");
    assert!(letters[0]["last_error"].as_str().unwrap().contains("route `nowhere`"));
}

#[test]
fn oversize_output_is_dead_lettered() {
    let _serial = serial();
    let mut h = start(evil("hostile_oversize"));
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
    let mut h = start(evil("hostile_garbage_json"));
    let letters = provoke(&mut h, "junk");
    assert_letter(&letters[0], "malformed_payload");
}

#[test]
fn on_policy_error_drop_drops_without_a_dead_letter() {
    let _serial = serial();
    let h = alone(evil("hostile_garbage_json").on_policy_error("drop"));
    assert_eq!(h.post_json(Some(EVIL), &tool_end("r", "r", 0, json!(null))).0, 202);
    std::thread::sleep(Duration::from_millis(100));
    assert!(dead_letters(&h).is_empty());
    assert!(read_jsonl(&h.path("evil.jsonl")).is_empty(), "never delivered unshaped");
    assert!(h.stderr().contains("dropped after policy fault"));
}

/// Peak and current resident memory of a process, from /proc (bytes).
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn evil_event(name: &str, step: u64) -> Value {
    json!({"event": "on_tool_end", "name": name, "run_id": "r-evil", "step": step, "data": {"output": "x"}})
}

/// A guest that hands back 4,000 deliveries aliasing one 1 MiB buffer (4 GiB to a host
/// that copies before it counts), from 12 requests at once: the host copies at most its
/// lift budget per call and runs at most `max_concurrency` calls of the tenant at once,
/// so its peak memory barely moves. (Before the fix: ~940 MiB more.)
#[test]
fn aliased_output_cannot_make_the_host_allocate() {
    let _serial = serial();
    // The guest's own work (building a million aliases) takes a few ms of CPU: a
    // generous deadline keeps this test about memory, not time.
    let mut h = start(evil("hostile_aliased_output").deadline("500ms"));
    // Warm up: one normal event, so the peak below is the attack's, not startup's.
    assert_eq!(h.post_json(Some(EVIL), &evil_event("fine", 1)).0, 202);
    let (peak_before, _) = rss(h.pid());
    let threads: Vec<_> = (0..12u64)
        .map(|i| {
            let url = h.url.clone();
            std::thread::spawn(move || {
                let name = if i % 2 == 0 { "alias" } else { "alias-redactions" };
                let resp = reqwest::blocking::Client::new()
                    .post(format!("{url}/v1/events"))
                    .bearer_auth(EVIL)
                    .json(&evil_event(name, 100 + i))
                    .timeout(Duration::from_secs(60))
                    .send()
                    .expect("post");
                resp.status().as_u16()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 202, "a policy fault is not the client's fault");
    }
    let (peak_after, _) = rss(h.pid());
    let grew = peak_after.saturating_sub(peak_before);
    eprintln!("peak RSS {} MiB → {} MiB (+{} MiB)", peak_before >> 20, peak_after >> 20, grew >> 20);
    assert!(grew < 200 << 20, "the host's peak memory grew by {} MiB", grew >> 20);
    let letters = h.wait_dlq(ADMIN, 12, WAIT);
    assert_eq!(letters.len(), 12, "{letters:?}");
    for l in &letters {
        assert_letter(l, "oversize_output");
        assert!(l["last_error"].as_str().unwrap().contains("bytes one call may hand the host"), "{l}");
    }
    assert!(h.is_running() && h.healthy());
}

/// Guest text is capped and escaped: a 100 KiB multi-line `Err` becomes one short
/// line in the DLQ and the log; a 6 MiB one is refused before it is copied.
#[test]
fn guest_errors_are_capped_and_escaped() {
    let _serial = serial();
    let mut h = start(evil("hostile_aliased_output"));
    let letters = provoke(&mut h, "long-error");
    assert_letter(&letters[0], "guest_error");
    let err = letters[0]["last_error"].as_str().unwrap();
    assert!(err.len() < 1500, "the error is capped: {} bytes", err.len());
    assert!(!err.contains('\n') && err.contains("first line\\nERROR forged line"), "{err}");
    assert!(err.ends_with("bytes in all)"), "says how long it was: {}", &err[err.len() - 40..]);
    let letters = provoke(&mut h, "huge-error");
    assert_eq!(letters[1]["reason"], "oversize_output", "{}", letters[1]);
    assert!(letters[1]["last_error"].as_str().unwrap().len() < 1500);
    let forged = |log: &str| log.lines().any(|l| l.trim_start().starts_with("ERROR forged line"));
    assert!(!forged(&h.stderr()), "no forged line in the log:\n{}", h.stderr());
}

/// A guest's log line cannot forge another line in hostd's log.
#[test]
fn guest_log_lines_cannot_forge_lines() {
    let _serial = serial();
    let h = start(evil("hostile_aliased_output"));
    assert_eq!(h.post_json(Some(EVIL), &evil_event("log-injection", 1)).0, 202);
    h.wait_for_log("innocent", WAIT);
    let log = h.stderr();
    assert!(log.contains("innocent\\nERROR tenant=good forged"), "escaped in place:\n{log}");
    assert!(!log.lines().any(|l| l.starts_with("ERROR tenant=good")), "no forged line:\n{log}");
}

/// CPU hogs pinned to the one core hostd may use: a cheap policy (pass-through, a few
/// µs per call) with a 1 ms deadline is preempted for far longer than that, yet no
/// event is faulted, because the deadline counts the policy's own CPU time.
#[test]
fn a_host_starved_of_cpu_never_faults_a_cheap_policy() {
    let _serial = serial();
    // The wall-clock guard is another knob (default 1 s): set far out of the way, so this
    // test is only about how the deadline counts CPU time.
    let h = alone(good().deadline("1ms").wall_deadline("60s"));
    let pin = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &h.pid().to_string()])
        .output()
        .expect("taskset (util-linux)");
    assert!(pin.status.success(), "taskset: {}", String::from_utf8_lossy(&pin.stderr));
    let hogs: Vec<std::process::Child> = (0..6)
        .map(|_| {
            std::process::Command::new("taskset")
                .args(["-c", "0", "sh", "-c", "while :; do :; done"])
                .spawn()
                .expect("a CPU hog")
        })
        .collect();
    struct Hogs(Vec<std::process::Child>);
    impl Drop for Hogs {
        fn drop(&mut self) {
            for h in &mut self.0 {
                let _ = h.kill();
                let _ = h.wait();
            }
        }
    }
    let hogs = Hogs(hogs);
    const BATCHES: u64 = 40;
    const PER_BATCH: u64 = 50;
    let clients: Vec<_> = (0..4u64)
        .map(|c| {
            let url = h.url.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                for b in (c..BATCHES).step_by(4) {
                    let events: Vec<Value> = (0..PER_BATCH)
                        .map(|i| tool_end(&format!("run-{b}"), &format!("run-{b}"), i, json!({"output": "ok"})))
                        .collect();
                    let resp = client
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(GOOD)
                        .header("content-type", "application/x-ndjson")
                        .body(ndjson(&events))
                        .timeout(Duration::from_secs(120))
                        .send()
                        .expect("post");
                    assert_eq!(resp.status().as_u16(), 202);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    drop(hogs);
    let total = (BATCHES * PER_BATCH) as usize;
    let delivered = wait_for_lines(&h.path("good.jsonl"), total, Duration::from_secs(60));
    let letters = h.dlq(ADMIN);
    assert!(letters.is_empty(), "{} of {total} events faulted, e.g. {}", letters.len(), letters[0]["last_error"]);
    assert_eq!(delivered.len(), total);
}
