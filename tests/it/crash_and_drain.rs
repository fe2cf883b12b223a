//! Durability: `kill -9` under load loses nothing acknowledged, and SIGTERM drains
//! within its timeout and leaves the rest for the next start.

use hostd_e2e::receiver::{Receiver, Reply};
use hostd_e2e::*;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "acme-token";

/// Tenant `acme` (pass-through) delivering to `route`.
fn config(route: Route) -> Config {
    let acme = Tenant::new("acme", plugin("pass_through")).token("ACME_TOKEN", TOKEN).route("default", route);
    Config::new().allow_private_targets().env("WH_SECRET", "whsec_c2VjcmV0LWtleS0wMTIzNDU2Nzg5").tenant(acme)
}

/// A webhook route to `url`, signed.
fn webhook(url: &str) -> Route {
    Route::webhook(url, "WH_SECRET")
}

/// Posts `batch` until hostd answers 202 (it may be down or restarting); returns the
/// `webhook-id` each delivery will carry (the keys scoped by tenant and route).
fn post_acked(url: &str, batch: &[Value]) -> Vec<String> {
    let answer = post_until_accepted(url, TOKEN, batch);
    answer["idempotency_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| message_id("acme", "default", k.as_str().unwrap()))
        .collect()
}

/// The `webhook-id`s the receiver accepted on `path`.
fn delivered_ids(rx: &Receiver, path: &str) -> HashSet<String> {
    rx.delivered(path).iter().map(|r| r.header("webhook-id").to_string()).collect()
}

#[test]
fn kill_9_mid_stream_loses_nothing_acknowledged() {
    // Slow, and one request in five fails with 503.
    let rx =
        Receiver::start(
            |_, nth| if nth % 5 == 0 { Reply::status(503) } else { Reply::ok().after(Duration::from_millis(5)) },
        );
    let retry = ["50ms", "100ms", "200ms", "400ms", "800ms", "1s", "1s", "1s", "1s", "1s", "1s", "1s"];
    let mut h = Hostd::from_config(&config(webhook(&format!("{}/crash", rx.url)).retry(&retry)));
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
                    let keys = post_acked(&url, &events);
                    acked.lock().unwrap().extend(keys);
                }
            })
        })
        .collect();
    let count = || acked.lock().unwrap().len();
    let at_kill = poll_every(Duration::from_millis(5), Duration::from_secs(60), count, |n| *n >= 2000);
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
    let every = Duration::from_millis(100);
    let delivered =
        poll_every(every, Duration::from_secs(90), || delivered_ids(&rx, "crash"), |got| acked.is_subset(got));
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
    let mut h = Hostd::from_config(&config(webhook(&format!("{}/drain", rx.url)).concurrency(4)).drain_timeout("2s"));
    let mut acked = HashSet::new();
    for b in 0..10 {
        let events: Vec<Value> =
            (0..20).map(|i| tool_end("root", &format!("r{b}-{i}"), b * 20 + i, json!({}))).collect();
        acked.extend(post_acked(&h.url, &events));
    }
    let took = h.terminate();
    assert!(took < Duration::from_secs(3), "exited {took:?} after SIGTERM; the limit is drain_timeout + 1 s");
    let before_restart = rx.delivered("drain").len();
    assert!(before_restart < acked.len(), "the slow endpoint could not have taken everything before the drain ended");
    assert!(h.stderr().contains("shutting down"), "{}", h.stderr());

    h.restart();
    let every = Duration::from_millis(50);
    let ids = poll_every(every, Duration::from_secs(60), || delivered_ids(&rx, "drain"), |ids| acked.is_subset(ids));
    assert!(acked.is_subset(&ids), "{} of {} acknowledged events delivered after the restart", ids.len(), acked.len());
    eprintln!("drained in {took:?}; {before_restart} delivered before the restart, the rest after");
}

#[test]
fn a_draining_hostd_accepts_nothing_new() {
    let rx = Receiver::start(|_, _| Reply::ok().after(Duration::from_secs(5)));
    let mut h = Hostd::from_config(&config(webhook(&format!("{}/slow", rx.url))).drain_timeout("3s"));
    post_acked(&h.url, &[tool_end("r", "r", 0, json!({}))]);
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
