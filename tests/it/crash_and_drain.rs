//! Durability: `kill -9` under load loses nothing acknowledged, and SIGTERM drains
//! within its timeout and leaves the rest for the next start.

use hostd_e2e::receiver::{Receiver, Reply};
use hostd_e2e::*;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "acme-token";

fn config(url: &str, extra_server: &str, route_extra: &str) -> String {
    format!(
        r#"
[server]
data_dir = "{{dir}}/data"
allow_private_targets = true
{extra_server}

[[tenants]]
id = "acme"
token_env = "ACME_TOKEN"
policy = "{}"
[tenants.routes.default]
type = "webhook"
url = "{url}"
secret_env = "WH_SECRET"
{route_extra}
"#,
        plugin("pass_through").display()
    )
}

fn envs() -> Vec<(&'static str, &'static str)> {
    vec![("ACME_TOKEN", TOKEN), ("WH_SECRET", "whsec_c2VjcmV0LWtleS0wMTIzNDU2Nzg5")]
}

/// Posts `batch` until hostd answers 202 (it may be down or restarting); returns the
/// `webhook-id` each delivery will carry (the keys scoped by tenant and route).
fn post_until_accepted(url: &str, batch: &[Value]) -> Vec<String> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    for _ in 0..600 {
        let resp = client
            .post(format!("{url}/v1/events"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-ndjson")
            .body(ndjson(batch))
            .send();
        if let Ok(r) = resp {
            if r.status().as_u16() == 202 {
                let v: Value = r.json().unwrap();
                return v["idempotency_keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| message_id("acme", "default", k.as_str().unwrap()))
                    .collect();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("hostd never accepted the batch");
}

#[test]
fn kill_9_mid_stream_loses_nothing_acknowledged() {
    // Slow, and one request in five fails with 503.
    let rx =
        Receiver::start(
            |_, nth| if nth % 5 == 0 { Reply::status(503) } else { Reply::ok().after(Duration::from_millis(5)) },
        );
    let retry = r#"retry = ["50ms", "100ms", "200ms", "400ms", "800ms", "1s", "1s", "1s", "1s", "1s", "1s", "1s"]"#;
    let mut h = Hostd::with_config(&config(&format!("{}/crash", rx.url), "", retry), &envs());
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let (clients, per_client, batch) = (4usize, 1250usize, 25usize);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (url, acked) = (h.url.clone(), acked.clone());
            std::thread::spawn(move || {
                for b in 0..per_client / batch {
                    let events: Vec<Value> = (0..batch)
                        .map(|i| {
                            let step = (b * batch + i) as u64;
                            tool_end(
                                &format!("client{c}"),
                                &format!("c{c}-{step}"),
                                step,
                                json!({"c": c, "step": step}),
                            )
                        })
                        .collect();
                    let keys = post_until_accepted(&url, &events);
                    acked.lock().unwrap().extend(keys);
                }
            })
        })
        .collect();
    let start = Instant::now();
    while acked.lock().unwrap().len() < 2000 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let at_kill = acked.lock().unwrap().len();
    h.kill9();
    std::thread::sleep(Duration::from_millis(300));
    h.restart();
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), clients * per_client);
    eprintln!("killed with {at_kill} of {} events acknowledged", acked.len());

    // Every acknowledged event arrives at least once.
    let deadline = Instant::now() + Duration::from_secs(90);
    let delivered = loop {
        let got: HashSet<String> = rx.delivered("crash").iter().map(|r| r.header("webhook-id").to_string()).collect();
        if acked.is_subset(&got) || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let missing: Vec<_> = acked.difference(&delivered).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but never delivered: {missing:?} ...");

    // Any repeat carries the same idempotency key as the original.
    let mut keys_per_event: HashMap<String, HashSet<String>> = HashMap::new();
    for r in rx.delivered("crash") {
        let p = r.json();
        keys_per_event
            .entry(format!("{}/{}", p["root_run_id"], p["step"]))
            .or_default()
            .insert(r.header("webhook-id").into());
    }
    assert!(keys_per_event.values().all(|k| k.len() == 1), "a repeat came with another key");
    let repeats = rx.delivered("crash").len() - keys_per_event.len();
    eprintln!("{} events delivered, {repeats} repeats after the crash", keys_per_event.len());
}

#[test]
fn sigterm_drains_within_the_timeout_and_the_rest_survives_the_restart() {
    let rx = Receiver::start(|_, _| Reply::ok().after(Duration::from_millis(300)));
    let mut h =
        Hostd::with_config(&config(&format!("{}/drain", rx.url), "drain_timeout = \"2s\"", "concurrency = 4"), &envs());
    let mut acked = HashSet::new();
    for b in 0..10 {
        let events: Vec<Value> =
            (0..20).map(|i| tool_end("root", &format!("r{b}-{i}"), b * 20 + i, json!({}))).collect();
        acked.extend(post_until_accepted(&h.url, &events));
    }
    let took = h.terminate();
    assert!(took < Duration::from_secs(3), "exited {took:?} after SIGTERM; the limit is drain_timeout + 1 s");
    let before_restart = rx.delivered("drain").len();
    assert!(before_restart < acked.len(), "the slow endpoint could not have taken everything before the drain ended");
    assert!(h.stderr().contains("shutting down"), "{}", h.stderr());

    h.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ids: HashSet<String> = loop {
        let ids: HashSet<String> = rx.delivered("drain").iter().map(|r| r.header("webhook-id").to_string()).collect();
        if acked.is_subset(&ids) || Instant::now() > deadline {
            break ids;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(acked.is_subset(&ids), "{} of {} acknowledged events delivered after the restart", ids.len(), acked.len());
    eprintln!("drained in {took:?}; {before_restart} delivered before the restart, the rest after");
}

#[test]
fn a_draining_hostd_accepts_nothing_new() {
    let rx = Receiver::start(|_, _| Reply::ok().after(Duration::from_secs(5)));
    let mut h = Hostd::with_config(&config(&format!("{}/slow", rx.url), "drain_timeout = \"3s\"", ""), &envs());
    post_until_accepted(&h.url, &[tool_end("r", "r", 0, json!({}))]);
    let pid = h.pid();
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = match reqwest::blocking::Client::new()
        .post(format!("{}/v1/events", h.url))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(tool_end("r", "r2", 1, json!({})).to_string())
        .send()
    {
        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
        Err(_) => (0, "connection refused".into()),
    };
    assert!(status == 503 || status == 0, "accepted while draining: {status} {body}");
    h.terminate();
}
