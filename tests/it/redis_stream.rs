//! The Redis Streams sink against a real `redis-server` (`make services` starts one on
//! 127.0.0.1:16379; the restart test runs its own). Without `HOSTD_TEST_REDIS_URL` the
//! tests skip (see `hostd_e2e::services`).

use hostd_e2e::services::{self, Service};
use hostd_e2e::*;
use redis::Commands;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command};
use std::time::Duration;

const TOKEN: &str = "acme-token";

fn redis(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().expect("redis is up (make services)")
}

/// Tenant `acme` whose fan-out policy delivers to the named redis-stream `routes`.
fn config(routes: Vec<(&str, Route)>) -> Config {
    let names: Vec<&str> = routes.iter().map(|(name, _)| *name).collect();
    let acme =
        Tenant::new("acme", plugin("fan_out")).token("ACME_TOKEN", TOKEN).policy_config(json!({"routes": names}));
    Config::new().tenant(routes.into_iter().fold(acme, |t, (name, route)| t.route(name, route)))
}

/// Entries of a stream as (idempotency_key, payload JSON).
fn entries(conn: &mut redis::Connection, stream: &str) -> Vec<(String, Value)> {
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(stream).unwrap();
    reply
        .ids
        .iter()
        .map(|id| {
            let field = |k: &str| -> String { id.get(k).unwrap_or_default() };
            (field("idempotency_key"), serde_json::from_str(&field("payload")).unwrap())
        })
        .collect()
}

fn post_batches(h: &Hostd, runs: usize, steps: usize, batch: usize) -> Vec<String> {
    let mut all: Vec<Value> = Vec::new();
    for step in 0..steps {
        for r in 0..runs {
            all.push(tool_end(
                &format!("run{r}"),
                &format!("t{r}-{step}"),
                step as u64,
                json!({"run": r, "step": step}),
            ));
        }
    }
    let mut keys = Vec::new();
    for chunk in all.chunks(batch) {
        let (status, body) = h.post(Some(TOKEN), "application/x-ndjson", ndjson(chunk));
        assert_eq!(status, 202, "{body}");
        keys.extend(body["idempotency_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()));
    }
    keys
}

#[test]
fn ten_thousand_events_arrive_in_order_per_run_with_all_fields() {
    let Some([url]) = services::configured([Service::Redis]) else { return };
    let stream = unique("hostd-test");
    let h = Hostd::from_config(&config(vec![(
        "events",
        Route::redis_stream(&url, &stream).per_key_ordering().concurrency(256),
    )]));
    let keys = post_batches(&h, 50, 200, 500);
    assert_eq!(keys.len(), 10_000);
    let mut conn = redis(&url);
    assert_eq!(wait_for_stream_len(&mut conn, &stream, 10_000, Duration::from_secs(60)), 10_000);
    let got = entries(&mut conn, &stream);
    let got_keys: HashSet<&String> = got.iter().map(|(k, _)| k).collect();
    assert_eq!(got_keys.len(), 10_000, "every idempotency key once");
    let mut per_run: HashMap<u64, Vec<u64>> = HashMap::new();
    for (_, p) in &got {
        per_run.entry(p["data"]["run"].as_u64().unwrap()).or_default().push(p["step"].as_u64().unwrap());
    }
    for (run, steps) in per_run {
        assert_eq!(steps, (0..200).collect::<Vec<_>>(), "run {run} out of order");
    }
    let raw: redis::streams::StreamRangeReply = conn.xrange_count(&stream, "-", "+", 1).unwrap();
    let first = &raw.ids[0];
    for field in ["payload", "event", "tenant", "idempotency_key", "policy_version"] {
        assert!(first.map.contains_key(field), "field {field} missing");
    }
    assert_eq!(first.get::<String>("tenant").unwrap(), "acme");
    assert_eq!(first.get::<String>("event").unwrap(), "on_tool_end");
    let _: () = conn.del(&stream).unwrap();
}

/// A private redis-server with an append-only file, so a restart keeps what it had.
struct PrivateRedis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let child = Self::spawn(port, dir.path());
        PrivateRedis { child, port, dir }
    }

    fn spawn(port: u16, dir: &std::path::Path) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir", dir.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (make services installs it)");
        let url = format!("redis://127.0.0.1:{port}/0");
        eventually(Duration::from_secs(5), || redis::Client::open(url.as_str()).unwrap().get_connection().is_ok());
        child
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL: no goodbye to its clients.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn start_again(&mut self) {
        self.child = Self::spawn(self.port, self.dir.path());
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn redis_restarted_mid_stream_loses_nothing() {
    // Its own redis-server, but gated with the others: `make services` installs it.
    if services::configured([Service::Redis]).is_none() {
        return;
    }
    let mut server = PrivateRedis::start();
    let url = server.url();
    let retry = ["100ms", "200ms", "400ms", "800ms", "1s", "1s", "1s", "1s", "1s"];
    let h =
        Hostd::from_config(&config(vec![("events", Route::redis_stream(&url, "s").timeout("500ms").retry(&retry))]));
    let first = post_batches(&h, 10, 100, 100);
    // Kill Redis mid-stream and keep posting while it is down.
    server.kill();
    let mut keys = first;
    for step in 100..150 {
        let events: Vec<Value> =
            (0..10).map(|r| tool_end(&format!("run{r}"), &format!("t{r}-{step}"), step, json!({}))).collect();
        let (status, body) = h.post(Some(TOKEN), "application/x-ndjson", ndjson(&events));
        assert_eq!(status, 202, "hostd keeps accepting while Redis is down: {body}");
        keys.extend(body["idempotency_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()));
    }
    std::thread::sleep(Duration::from_secs(1));
    server.start_again();
    // Wait for every key, not for a length: retried entries can repeat (no dedupe here).
    let mut conn = redis(&url);
    let got: HashSet<String> = poll_every(
        Duration::from_millis(200),
        Duration::from_secs(60),
        || entries(&mut conn, "s").into_iter().map(|(k, _)| k).collect(),
        |got: &HashSet<String>| keys.iter().all(|k| got.contains(k)),
    );
    let missing: Vec<&String> = keys.iter().filter(|k| !got.contains(*k)).take(5).collect();
    assert!(missing.is_empty(), "lost across the Redis restart: {missing:?}");
}

#[test]
fn dedupe_never_appends_twice_even_when_a_retry_follows_a_successful_xadd() {
    let Some([url]) = services::configured([Service::Redis]) else { return };
    let (deduped, plain) = (unique("dedupe"), unique("plain"));
    let route = |stream: &str| Route::redis_stream(&url, stream).timeout("150ms").retry(&["100ms"; 12]);
    let h = Hostd::from_config(&config(vec![("deduped", route(&deduped).dedupe()), ("plain", route(&plain))]));
    // Warm both routes' connections, then pause Redis' writes: each XADD waits, its
    // answer comes after hostd's 150 ms timeout, and hostd retries — while the first
    // XADD still runs when the pause ends.
    assert_eq!(h.post_json(Some(TOKEN), &tool_end("warm", "w", 0, json!({}))).0, 202);
    let mut conn = redis(&url);
    wait_for_stream_len(&mut conn, &deduped, 1, Duration::from_secs(10));
    wait_for_stream_len(&mut conn, &plain, 1, Duration::from_secs(10));
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(1200).arg("WRITE").query(&mut conn).unwrap();
    assert_eq!(h.post_json(Some(TOKEN), &tool_end("root", "r", 1, json!({"n": 1}))).0, 202);
    std::thread::sleep(Duration::from_secs(3));
    let count = |stream: &str, conn: &mut redis::Connection| {
        entries(conn, stream).iter().filter(|(k, _)| k == "root:on_tool_end:1").count()
    };
    let plain_count = count(&plain, &mut conn);
    assert!(
        plain_count >= 2,
        "without dedupe the retry appended again ({plain_count}): the test really forced a retry"
    );
    assert_eq!(count(&deduped, &mut conn), 1, "with dedupe the key is appended once");
    let _: () = conn.del(&[&deduped, &plain]).unwrap();
}

#[test]
fn tenants_sharing_a_deduped_stream_both_get_their_entry_for_the_same_key() {
    let Some([url]) = services::configured([Service::Redis]) else { return };
    let shared = unique("shared");
    let tenant = |id: &str| {
        Tenant::new(id, plugin("fan_out"))
            .policy_config(json!({"routes": ["events"]}))
            .route("events", Route::redis_stream(&url, &shared).dedupe())
    };
    let h = Hostd::from_config(&Config::new().tenant(tenant("acme")).tenant(tenant("globex")));
    // The same explicit key from both tenants; globex first, so it could pre-claim acme's.
    let event = json!({"event": "on_tool_end", "run_id": "r", "idempotency_key": "order-1", "data": {}});
    for token in ["globex-token", "acme-token"] {
        assert_eq!(h.post_json(Some(token), &event).0, 202);
    }
    let mut conn = redis(&url);
    let len = wait_for_stream_len(&mut conn, &shared, 2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(&shared).unwrap();
    let tenants: HashSet<String> = reply.ids.iter().map(|id| id.get::<String>("tenant").unwrap_or_default()).collect();
    assert_eq!(len, 2, "one entry per tenant, not one for whoever came first");
    assert_eq!(reply.ids.len(), 2);
    assert_eq!(tenants, HashSet::from(["acme".to_string(), "globex".to_string()]));
    for tenant in ["acme", "globex"] {
        let key = format!("hostd:dedupe:{shared}:{}", message_id(tenant, "events", "order-1"));
        let exists: bool = conn.exists(&key).unwrap();
        assert!(exists, "the dedupe key is scoped by tenant and route: {key}");
    }
    let _: () = conn.del(&shared).unwrap();
}
