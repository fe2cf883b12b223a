//! Live policy swap against the real binary: by API, by file and by SIGHUP; refused
//! versions (not a component, wrong world, `configure` fails, fails its
//! `policy_tests`); rollback; the compiled-component cache; and a swap under load.

use hostd_e2e::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-token";
const WAIT: Duration = Duration::from_secs(20);

fn version_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))[..12].to_string()
}

/// Copies a built plugin into `dir` under `name` (rename over the old one: atomic).
fn install_file(dir: &Path, plugin_name: &str, name: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::copy(plugin(plugin_name), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Tenant `id` (token `{id}-token`) running `policy`, delivering to `{dir}/{id}.jsonl`.
fn tenant(id: &str, policy: impl AsRef<Path>) -> Tenant {
    Tenant::new(id, policy).route("default", Route::file(&format!("{{dir}}/{id}.jsonl")))
}

/// hostd with `tenants` (id, plugin), each on its own copy of the plugin in the temp dir
/// (so the tests can replace them), with `policy_tests` if given.
fn start(tenants: &[(&str, &str)], policy_tests: Option<&str>) -> Hostd {
    let mut config = Config::new().admin_token("ADMIN_TOKEN", ADMIN);
    for (id, _) in tenants {
        let t = tenant(id, format!("{{dir}}/{id}.wasm"));
        config = config.tenant(match policy_tests {
            Some(path) => t.policy_tests(path),
            None => t,
        });
    }
    Hostd::with_config_files(&config.to_toml(), &config.envs(), |dir| {
        for (id, plugin_name) in tenants {
            install_file(dir, plugin_name, &format!("{id}.wasm"));
        }
        std::fs::write(dir.join("expect-drop.jsonl"), EXPECT_DROP).unwrap();
    })
}

/// A `policy_tests` fixture: the redaction policy must drop token events and deliver tool ends.
const EXPECT_DROP: &str = concat!(
    r#"{"event": {"event": "on_llm_new_token", "run_id": "r"}, "expect": {"decision": "drop"}}"#,
    "\n",
    r#"{"event": {"event": "on_tool_end", "run_id": "r", "data": {"email": "a@b.co"}}, "expect": {"decision": "deliver", "deliveries": [{"route": "default"}]}}"#,
    "\n"
);

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

fn policy_status(h: &Hostd, tenant: &str) -> Value {
    let r = client().get(format!("{}/admin/v1/tenants/{tenant}/policy", h.url)).bearer_auth(ADMIN).send().unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

fn active(h: &Hostd, tenant: &str) -> String {
    policy_status(h, tenant)["active"]["version"].as_str().unwrap().to_string()
}

fn put_policy(h: &Hostd, tenant: &str, bytes: Vec<u8>, config: Option<&str>) -> (u16, Value) {
    let mut req = client()
        .put(format!("{}/admin/v1/tenants/{tenant}/policy", h.url))
        .bearer_auth(ADMIN)
        .header("content-type", "application/wasm")
        .body(bytes);
    if let Some(c) = config {
        req = req.header("hostd-policy-config", c);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn wait_active(h: &Hostd, tenant: &str, version: &str) {
    let switched = eventually(WAIT, || active(h, tenant) == version);
    assert!(switched, "tenant {tenant} never switched to {version}: {}", h.stderr());
}

/// Posts one tool end for `tenant` and returns the version its delivery carries.
fn delivered_version(h: &Hostd, tenant: &str, n: u64) -> String {
    let event = tool_end(&format!("root-{n}"), "run", n, json!({"email": "ada@example.com"}));
    let (status, body) = h.post(Some(&format!("{tenant}-token")), "application/x-ndjson", ndjson(&[event]));
    assert_eq!(status, 202, "{body}");
    let key = body["idempotency_keys"][0].as_str().unwrap().to_string();
    let out = h.path(&format!("{tenant}.jsonl"));
    let found = poll(WAIT, || read_jsonl(&out).into_iter().find(|d| d["idempotency_key"] == key), Option::is_some);
    let delivery = found.unwrap_or_else(|| panic!("event {key} was not delivered"));
    delivery["policy_version"].as_str().unwrap().to_string()
}

#[test]
fn swap_by_api_by_file_and_rollback() {
    let h = start(&[("t1", "pass_through")], None);
    let (a, b) = (version_of(&plugin("pass_through")), version_of(&plugin("redact_pii")));
    assert_eq!(active(&h, "t1"), a);
    assert_eq!(delivered_version(&h, "t1", 1), a);

    // (b) The admin API.
    let (status, body) = put_policy(&h, "t1", std::fs::read(plugin("redact_pii")).unwrap(), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"]["version"], b.as_str());
    assert_eq!(body["previous"]["version"], a.as_str());
    assert_eq!(body["active"]["source"], "api");
    assert_eq!(delivered_version(&h, "t1", 2), b);
    let status_now = policy_status(&h, "t1");
    assert_eq!(status_now["previous"]["version"], a.as_str());
    assert!(status_now["stats"]["calls"].as_u64().unwrap() >= 2, "{status_now}");
    assert!(status_now["stats"]["evaluate_us"]["p99"].as_f64().unwrap() > 0.0, "{status_now}");

    // (a) The watched file (renamed into place): back to pass_through.
    std::fs::copy(plugin("redact_pii"), h.path("t1.wasm")).unwrap(); // same as active: nothing happens
    install_file(h.dir.path(), "pass_through", "t1.wasm");
    wait_active(&h, "t1", &a);
    assert_eq!(policy_status(&h, "t1")["active"]["source"], "file");
    assert_eq!(delivered_version(&h, "t1", 3), a);

    // Rollback returns to the previous version (redact_pii), visible on deliveries.
    let r = client().post(format!("{}/admin/v1/tenants/t1/policy/rollback", h.url)).bearer_auth(ADMIN).send().unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    assert_eq!(body["active"]["version"], b.as_str());
    assert_eq!(body["active"]["source"], "rollback");
    assert_eq!(delivered_version(&h, "t1", 4), b);

    // A tenant token may read its own policy but not change it.
    let r = client().get(format!("{}/admin/v1/tenants/t1/policy", h.url)).bearer_auth("t1-token").send().unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .put(format!("{}/admin/v1/tenants/t1/policy", h.url))
        .bearer_auth("t1-token")
        .body(std::fs::read(plugin("pass_through")).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client().get(format!("{}/admin/v1/tenants/nobody/policy", h.url)).bearer_auth(ADMIN).send().unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn broken_versions_are_refused_and_the_old_one_keeps_serving() {
    let h = start(&[("t1", "redact_pii")], Some("{dir}/expect-drop.jsonl"));
    let v = version_of(&plugin("redact_pii"));
    let refuse = |bytes: Vec<u8>, config: Option<&str>, reason: &str| {
        let (status, body) = put_policy(&h, "t1", bytes, config);
        assert_eq!(status, 422, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "expected `{reason}` in: {message}");
        assert_eq!(active(&h, "t1"), v);
    };
    // Does not compile.
    refuse(b"\0asm garbage".to_vec(), None, "not a valid Wasm component");
    // The wrong WIT world.
    refuse(std::fs::read(plugin("hostile_wrong_world")).unwrap(), None, "does not export");
    // `configure` refuses the config (an invalid regex).
    refuse(std::fs::read(plugin("redact_pii")).unwrap(), Some(r#"{"patterns": {"x": "("}}"#), "configure");
    // Fails the tenant's policy_tests: pass_through delivers the token event the fixture wants dropped.
    refuse(std::fs::read(plugin("pass_through")).unwrap(), None, "fails its tests");
    // A broken file is refused the same way, and logged.
    std::fs::write(h.path("t1.wasm.tmp"), b"not wasm").unwrap();
    std::fs::rename(h.path("t1.wasm.tmp"), h.path("t1.wasm")).unwrap();
    assert!(h.wait_for_log("policy swap refused", WAIT), "no refusal logged: {}", h.stderr());
    assert_eq!(active(&h, "t1"), v);
    assert_eq!(delivered_version(&h, "t1", 1), v);
    // Nothing to roll back to: every candidate was refused.
    let r = client().post(format!("{}/admin/v1/tenants/t1/policy/rollback", h.url)).bearer_auth(ADMIN).send().unwrap();
    assert_eq!(r.status(), 409);
}

#[test]
fn sighup_reloads_changed_policies_and_keeps_the_rest() {
    let h = start(&[("t1", "pass_through"), ("t2", "pass_through")], None);
    let b = version_of(&plugin("redact_pii"));
    // Point t1 at another file in the config; t2 unchanged.
    std::fs::copy(plugin("redact_pii"), h.path("other.wasm")).unwrap();
    std::thread::sleep(Duration::from_millis(500)); // let the watcher see (and ignore) the new file first
    let config = std::fs::read_to_string(h.path("hostd.toml")).unwrap();
    let t1_path = h.path("t1.wasm").display().to_string();
    let new_config = config.replacen(&t1_path, &h.path("other.wasm").display().to_string(), 1);
    assert_ne!(config, new_config);
    std::fs::write(h.path("hostd.toml"), new_config).unwrap();
    let a = active(&h, "t2");
    unsafe_kill_hup(h.pid());
    wait_active(&h, "t1", &b);
    assert_eq!(policy_status(&h, "t1")["active"]["source"], "sighup");
    assert_eq!(active(&h, "t2"), a);
    assert_eq!(delivered_version(&h, "t1", 1), b);
    // The watcher follows t1 to its new file.
    install_file(h.dir.path(), "pass_through", "other.wasm");
    wait_active(&h, "t1", &a);
    assert_eq!(policy_status(&h, "t1")["active"]["source"], "file");
}

fn unsafe_kill_hup(pid: u32) {
    let status = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn restart_with_a_warm_cache_loads_100_tenants() {
    let tenants: Vec<(String, &str)> =
        (0..100).map(|i| (format!("t{i}"), if i % 2 == 0 { "redact_pii" } else { "pass_through" })).collect();
    let refs: Vec<(&str, &str)> = tenants.iter().map(|(id, p)| (id.as_str(), *p)).collect();
    let mut h = start(&refs, None);
    let cold = loaded_in(&h.stderr());
    h.restart();
    assert!(eventually(WAIT, || loaded_in(&h.stderr()).len() >= 2), "{}", h.stderr());
    let times = loaded_in(&h.stderr());
    println!("100 tenants loaded: first start {:?} (compiled), restart {:?} (cache)", cold[0], times[1]);
    let cache = std::fs::read_dir(h.path("data/compiled")).unwrap().count();
    assert_eq!(cache, 2, "one compiled artifact per distinct component");
    assert!(h.stderr().contains("DiskCache") || cache == 2);
    assert_eq!(delivered_version(&h, "t99", 1), version_of(&plugin("pass_through")));
}

/// The "loaded N tenant policies in T" lines hostd logs at start.
fn loaded_in(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains("tenant policies in"))
        .map(|l| l.rsplit("tenant policies in ").next().unwrap().trim().to_string())
        .collect()
}

#[test]
fn swap_under_load_loses_nothing_and_versions_match() {
    let h = start(&[("t1", "pass_through"), ("t2", "pass_through"), ("t3", "redact_pii")], None);
    let (a, b) = (version_of(&plugin("pass_through")), version_of(&plugin("redact_pii")));
    let v3 = b.clone();
    let url = h.url.clone();
    let epoch = Instant::now();
    let run_for = Duration::from_secs(20);
    let calm = Duration::from_secs(4); // the first seconds run without swaps: the baseline p99

    // Load: 3 tenants × ~667 events/s, in batches of 10 every 15 ms each.
    let senders: Vec<_> = ["t1", "t2", "t3"]
        .into_iter()
        .map(|tenant| {
            let url = url.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut sent = Vec::new(); // (key, sent_at, answered_at)
                let mut latencies = Vec::new(); // (sent_at, latency)
                let mut n = 0u64;
                let mut next = Instant::now();
                while epoch.elapsed() < run_for {
                    let events: Vec<Value> =
                        (0..10).map(|i| tool_end(&format!("{tenant}-{n}"), "run", i, json!({"n": n}))).collect();
                    let t0 = epoch.elapsed();
                    let r = client
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(format!("{tenant}-token"))
                        .header("content-type", "application/x-ndjson")
                        .body(ndjson(&events))
                        .send()
                        .unwrap();
                    let t1 = epoch.elapsed();
                    assert_eq!(r.status(), 202);
                    let body: Value = r.json().unwrap();
                    for k in body["idempotency_keys"].as_array().unwrap() {
                        sent.push((k.as_str().unwrap().to_string(), t0, t1));
                    }
                    latencies.push((t0, t1 - t0));
                    n += 1;
                    next += Duration::from_millis(15);
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                (tenant, sent, latencies)
            })
        })
        .collect();

    // Swaps of t1 every 2 s, alternating file and API, between a and b:
    // (asked at, seen active at, version).
    let mut swaps = vec![(Duration::ZERO, Duration::ZERO, a.clone())];
    let mut by_file = true;
    std::thread::sleep(calm);
    while epoch.elapsed() + Duration::from_secs(2) < run_for {
        let (target, plugin_name) =
            if active(&h, "t1") == a { (b.clone(), "redact_pii") } else { (a.clone(), "pass_through") };
        let asked = epoch.elapsed();
        if by_file {
            install_file(h.dir.path(), plugin_name, "t1.wasm");
            wait_active(&h, "t1", &target);
        } else {
            let (status, body) = put_policy(&h, "t1", std::fs::read(plugin(plugin_name)).unwrap(), None);
            assert_eq!(status, 200, "{body}");
        }
        swaps.push((asked, epoch.elapsed(), target));
        by_file = !by_file;
        std::thread::sleep(Duration::from_secs(2));
    }
    let results: Vec<_> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    assert!(swaps.len() >= 7, "only {} swaps", swaps.len());

    for (tenant, sent, latencies) in &results {
        let delivered = wait_for_lines(&h.path(&format!("{tenant}.jsonl")), sent.len(), Duration::from_secs(60));
        let mut count: HashMap<&str, usize> = HashMap::new();
        for d in &delivered {
            *count.entry(d["idempotency_key"].as_str().unwrap()).or_default() += 1;
        }
        let lost: Vec<_> = sent.iter().filter(|(k, _, _)| !count.contains_key(k.as_str())).collect();
        assert!(lost.is_empty(), "{tenant}: {} of {} events lost", lost.len(), sent.len());
        let twice: Vec<_> = count.iter().filter(|(_, c)| **c > 1).collect();
        assert!(twice.is_empty(), "{tenant}: delivered twice: {twice:?}");
        let version: HashMap<&str, &str> = delivered
            .iter()
            .map(|d| (d["idempotency_key"].as_str().unwrap(), d["policy_version"].as_str().unwrap()))
            .collect();
        for (key, sent_at, answered_at) in sent {
            let v = version[key.as_str()];
            if *tenant == "t1" {
                // Version i was active between its install (after it was asked for) and the
                // next install (before that one was seen active); the event was evaluated
                // between sending and the 202.
                let allowed: HashSet<&str> = swaps
                    .iter()
                    .enumerate()
                    .filter(|(i, (asked, _, _))| {
                        *asked <= *answered_at && swaps.get(i + 1).is_none_or(|(_, seen, _)| *seen >= *sent_at)
                    })
                    .map(|(_, (_, _, v))| v.as_str())
                    .collect();
                assert!(allowed.contains(v), "t1 event {key} sent at {sent_at:?} got version {v}, allowed {allowed:?}");
            } else {
                let expect = if *tenant == "t3" { v3.as_str() } else { a.as_str() };
                assert_eq!(v, expect, "{tenant} is not affected by t1's swaps");
            }
        }
        let p99 = |phase: &dyn Fn(Duration) -> bool| {
            let mut l: Vec<Duration> = latencies.iter().filter(|(t, _)| phase(*t)).map(|(_, l)| *l).collect();
            l.sort();
            l.get(l.len() * 99 / 100).copied().unwrap_or_default()
        };
        let calm_p99 = p99(&|t| t < calm);
        let swap_p99 = p99(&|t| t >= calm);
        println!(
            "{tenant}: {} events, ingest p99 without swaps {calm_p99:?}, during swaps {swap_p99:?} ({:.2}×)",
            sent.len(),
            swap_p99.as_secs_f64() / calm_p99.as_secs_f64().max(1e-9)
        );
    }
    let by_version: BTreeMap<String, usize> =
        read_jsonl(&h.path("t1.jsonl")).iter().fold(BTreeMap::new(), |mut m, d| {
            *m.entry(d["policy_version"].as_str().unwrap().to_string()).or_default() += 1;
            m
        });
    println!("t1 deliveries by version: {by_version:?}; {} swaps", swaps.len() - 1);
    assert_eq!(by_version.len(), 2);
}

#[test]
fn idle_instances_are_freed_and_recreated_on_demand() {
    // ttl 1 s for t1 and t2; no budget pressure.
    let config = Config::new()
        .admin_token("ADMIN_TOKEN", ADMIN)
        .policy_idle_ttl("1s")
        .tenant(tenant("t1", plugin("redact_pii")))
        .tenant(tenant("t2", plugin("pass_through")));
    let h = Hostd::from_config(&config);
    let idle = |t: &str| policy_status(&h, t)["instances_idle"].as_u64().unwrap();
    let v = version_of(&plugin("redact_pii"));
    assert_eq!(delivered_version(&h, "t1", 1), v);
    let freed = eventually(WAIT, || idle("t1") == 0 && idle("t2") == 0);
    assert!(freed, "idle instances were never freed");
    // The compiled component stayed: the next event instantiates and is served.
    assert_eq!(delivered_version(&h, "t1", 2), v);
    assert!(idle("t1") >= 1);
}

#[test]
fn over_the_memory_budget_instances_are_not_kept() {
    // A budget smaller than one instance: no instance is ever kept, every event gets a
    // fresh one (slow, but served).
    let config = Config::new()
        .admin_token("ADMIN_TOKEN", ADMIN)
        .policy_memory_budget("64KiB")
        .tenant(tenant("t1", plugin("redact_pii")));
    let h = Hostd::from_config(&config);
    let v = version_of(&plugin("redact_pii"));
    for n in 0..3 {
        assert_eq!(delivered_version(&h, "t1", n), v);
        let freed = eventually(WAIT, || policy_status(&h, "t1")["instances_idle"].as_u64().unwrap() == 0);
        assert!(freed, "the budget never freed the idle instance");
    }
}

#[test]
fn admin_api_reports_calls_faults_by_kind_and_latency_per_tenant() {
    let config = Config::new()
        .admin_token("ADMIN_TOKEN", ADMIN)
        .tenant(tenant("t1", plugin("hostile_trap_once")).deadline("50ms"))
        .tenant(tenant("t2", plugin("pass_through")));
    let h = Hostd::from_config(&config);
    let boom = json!({"event": "on_tool_end", "name": "boom", "run_id": "r1"});
    let fine = json!({"event": "on_tool_end", "name": "fine", "run_id": "r2"});
    let (status, body) = h.post(Some("t1-token"), "application/x-ndjson", ndjson(&[boom, fine.clone(), fine]));
    assert_eq!(status, 202, "{body}");
    let s = policy_status(&h, "t1");
    assert_eq!(s["stats"]["calls"], 3, "{s}");
    assert_eq!(s["stats"]["faults"], json!({"trap": 1}), "{s}");
    assert!(s["stats"]["evaluate_us"]["p50"].as_f64().unwrap() > 0.0);
    assert!(s["stats"]["evaluate_us"]["p99"].as_f64().unwrap() >= s["stats"]["evaluate_us"]["p50"].as_f64().unwrap());
    assert_eq!(s["limits"]["deadline_ms"], 50.0, "the tenant's [tenants.limits] override: {s}");
    // Other tenants are counted apart.
    assert_eq!(policy_status(&h, "t2")["stats"]["calls"], 0);
    let all: Value =
        client().get(format!("{}/admin/v1/tenants", h.url)).bearer_auth(ADMIN).send().unwrap().json().unwrap();
    assert_eq!(all["tenants"].as_array().unwrap().len(), 2);
    let own: Value =
        client().get(format!("{}/admin/v1/tenants", h.url)).bearer_auth("t2-token").send().unwrap().json().unwrap();
    assert_eq!(own["tenants"].as_array().unwrap().len(), 1, "a tenant token lists only its own tenant");
}

#[test]
fn hostd_policy_cli_pushes_shows_and_rolls_back() {
    let h = start(&[("t1", "pass_through")], None);
    let (a, b) = (version_of(&plugin("pass_through")), version_of(&plugin("redact_pii")));
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(hostd_bin())
            .args(["policy"])
            .args(args)
            .args(["--url", &h.url, "--token", ADMIN])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let redact = plugin("redact_pii").display().to_string();
    let (ok, stdout, stderr) = cli(&["push", "t1", &redact]);
    assert!(ok, "{stderr}");
    let pushed: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(pushed["active"]["version"], b.as_str());
    assert_eq!(pushed["previous"]["version"], a.as_str());
    assert_eq!(delivered_version(&h, "t1", 1), b);

    let (ok, stdout, _) = cli(&["status"]);
    assert!(ok);
    let line: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["tenant"], "t1");
    assert_eq!(line["active"]["source"], "api");

    // A refused push names the file and the reason, and exits non-zero.
    let garbage = h.path("garbage.wasm");
    std::fs::write(&garbage, b"nope").unwrap();
    let (ok, _, stderr) = cli(&["push", "t1", garbage.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("garbage.wasm refused") && stderr.contains("HTTP 422"), "{stderr}");
    assert_eq!(active(&h, "t1"), b);

    let (ok, stdout, stderr) = cli(&["rollback", "t1"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&a));
    assert_eq!(delivered_version(&h, "t1", 2), a);
}
