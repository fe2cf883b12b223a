//! The Redis Streams sink against a real `redis-server` (`make services` starts one on
//! 127.0.0.1:16379; the restart test runs its own).

use hostd_e2e::*;
use redis::Commands;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const TOKEN: &str = "acme-token";

fn redis_url() -> String {
    std::env::var("HOSTD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/0".into())
}

fn redis(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().expect("redis is up (make services)")
}

fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    )
}

/// A tenant whose fan-out policy delivers to the named redis-stream routes.
fn config(routes: &[(&str, String)]) -> String {
    let names: Vec<String> = routes.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let mut c = format!(
        "[server]\ndata_dir = \"{{dir}}/data\"\n[[tenants]]\nid = \"acme\"\ntoken_env = \"ACME_TOKEN\"\npolicy = \"{}\"\npolicy_config = {{ routes = [{}] }}\n",
        plugin("fan_out").display(),
        names.join(", ")
    );
    for (name, body) in routes {
        c.push_str(&format!("[tenants.routes.{name}]\ntype = \"redis-stream\"\n{body}\n"));
    }
    c
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

fn wait_len(conn: &mut redis::Connection, stream: &str, n: usize, timeout: Duration) -> usize {
    let start = Instant::now();
    loop {
        let len: usize = conn.xlen(stream).unwrap_or(0);
        if len >= n || start.elapsed() > timeout {
            return len;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let stream = unique("hostd-test");
    let url = redis_url();
    let h = Hostd::with_config(
        &config(&[(
            "events",
            format!("url = \"{url}\"\nstream = \"{stream}\"\nordering = \"per-key\"\nconcurrency = 256"),
        )]),
        &[("ACME_TOKEN", TOKEN)],
    );
    let keys = post_batches(&h, 50, 200, 500);
    assert_eq!(keys.len(), 10_000);
    let mut conn = redis(&url);
    assert_eq!(wait_len(&mut conn, &stream, 10_000, Duration::from_secs(60)), 10_000);
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
        for _ in 0..100 {
            if redis::Client::open(url.as_str()).unwrap().get_connection().is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
    let mut server = PrivateRedis::start();
    let url = server.url();
    let retry = r#"retry = ["100ms", "200ms", "400ms", "800ms", "1s", "1s", "1s", "1s", "1s"]"#;
    let h = Hostd::with_config(
        &config(&[("events", format!("url = \"{url}\"\nstream = \"s\"\ntimeout = \"500ms\"\n{retry}"))]),
        &[("ACME_TOKEN", TOKEN)],
    );
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
    let start = Instant::now();
    let got: HashSet<String> = loop {
        let got: HashSet<String> = entries(&mut conn, "s").into_iter().map(|(k, _)| k).collect();
        if keys.iter().all(|k| got.contains(k)) || start.elapsed() > Duration::from_secs(60) {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let missing: Vec<&String> = keys.iter().filter(|k| !got.contains(*k)).take(5).collect();
    assert!(missing.is_empty(), "lost across the Redis restart: {missing:?}");
}

#[test]
fn dedupe_never_appends_twice_even_when_a_retry_follows_a_successful_xadd() {
    let url = redis_url();
    let (deduped, plain) = (unique("dedupe"), unique("plain"));
    let common = "timeout = \"150ms\"\nretry = [\"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\"]";
    let h = Hostd::with_config(
        &config(&[
            ("deduped", format!("url = \"{url}\"\nstream = \"{deduped}\"\ndedupe = true\n{common}")),
            ("plain", format!("url = \"{url}\"\nstream = \"{plain}\"\n{common}")),
        ]),
        &[("ACME_TOKEN", TOKEN)],
    );
    // Warm both routes' connections, then pause Redis' writes: each XADD waits, its
    // answer comes after hostd's 150 ms timeout, and hostd retries — while the first
    // XADD still runs when the pause ends.
    assert_eq!(h.post_json(Some(TOKEN), &tool_end("warm", "w", 0, json!({}))).0, 202);
    let mut conn = redis(&url);
    wait_len(&mut conn, &deduped, 1, Duration::from_secs(10));
    wait_len(&mut conn, &plain, 1, Duration::from_secs(10));
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
    let url = redis_url();
    let shared = unique("shared");
    let mut config = "[server]\ndata_dir = \"{dir}/data\"\n".to_string();
    for tenant in ["acme", "globex"] {
        config.push_str(&format!(
            "[[tenants]]\nid = \"{tenant}\"\ntoken_env = \"TOKEN_{}\"\npolicy = \"{}\"\npolicy_config = {{ routes = [\"events\"] }}\n\
             [tenants.routes.events]\ntype = \"redis-stream\"\nurl = \"{url}\"\nstream = \"{shared}\"\ndedupe = true\n",
            tenant.to_uppercase(),
            plugin("fan_out").display()
        ));
    }
    let h = Hostd::with_config(&config, &[("TOKEN_ACME", "acme-token"), ("TOKEN_GLOBEX", "globex-token")]);
    // The same explicit key from both tenants; globex first, so it could pre-claim acme's.
    let event = json!({"event": "on_tool_end", "run_id": "r", "idempotency_key": "order-1", "data": {}});
    for token in ["globex-token", "acme-token"] {
        assert_eq!(h.post_json(Some(token), &event).0, 202);
    }
    let mut conn = redis(&url);
    let len = wait_len(&mut conn, &shared, 2, Duration::from_secs(10));
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
