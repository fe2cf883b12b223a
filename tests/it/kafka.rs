//! The Kafka sink against a real Kafka-protocol broker: tansu, from `make services`
//! (127.0.0.1:19092, in memory), and a private tansu on S3 storage (moto) for the
//! restart test. Without `HOSTD_TEST_KAFKA` / `HOSTD_TEST_TANSU` / `HOSTD_TEST_MOTO` the
//! tests skip (see `hostd_e2e::services`).

use hostd_e2e::services::{self, Service};
use hostd_e2e::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "acme-token";
const ADMIN: &str = "admin-token";

fn create_topic(tansu: &str, brokers: &str, topic: &str) {
    let out = Command::new(tansu)
        .args(["topic", "create", topic, "--partitions", "3", "--broker", &format!("tcp://{brokers}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "tansu topic create: {}", String::from_utf8_lossy(&out.stderr));
}

/// Tenant `acme` (pass-through) delivering to Kafka `route`.
fn config(route: Route) -> Config {
    let acme = Tenant::new("acme", plugin("pass_through")).token("ACME_TOKEN", TOKEN).route("default", route);
    Config::new().admin_token("ADMIN_TOKEN", ADMIN).tenant(acme)
}

/// A consumed record: key, payload, headers.
struct Record {
    key: String,
    partition: i32,
    payload: Value,
    headers: HashMap<String, String>,
}

/// Consumes `topic` with a consumer group until `n` records or `timeout`.
fn consume(brokers: &str, topic: &str, n: usize, timeout: Duration) -> Vec<Record> {
    consume_until(brokers, topic, timeout, |records| records.len() >= n)
}

/// Consumes `topic` with a consumer group until `done` says so or `timeout`.
fn consume_until(brokers: &str, topic: &str, timeout: Duration, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("hostd-test"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    while !done(&out) && start.elapsed() < timeout {
        // The group join takes a few seconds with tansu; poll until then.
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else { continue };
        let Ok(msg) = msg else { continue };
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Record {
            key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
            partition: msg.partition(),
            payload: serde_json::from_slice(msg.payload().unwrap_or_default()).unwrap(),
            headers,
        });
    }
    out
}

fn post_runs(h: &Hostd, runs: usize, steps: std::ops::Range<usize>, batch: usize) -> Vec<String> {
    let mut all = Vec::new();
    for step in steps {
        for r in 0..runs {
            all.push(tool_end(&format!("run{r}"), &format!("t{r}-{step}"), step as u64, json!({"run": r})));
        }
    }
    let mut keys = Vec::new();
    for chunk in all.chunks(batch) {
        let answer = post_until_accepted(&h.url, TOKEN, chunk);
        keys.extend(answer["idempotency_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()));
    }
    keys
}

#[test]
fn ten_thousand_events_consumed_back_in_order_with_headers() {
    let Some([brokers, tansu]) = services::configured([Service::Kafka, Service::Tansu]) else { return };
    let topic = unique("hostd-events");
    create_topic(&tansu, &brokers, &topic);
    let h = Hostd::from_config(&config(Route::kafka(&brokers, &topic).per_key_ordering().concurrency(8)));
    let keys = post_runs(&h, 50, 0..200, 500);
    assert_eq!(keys.len(), 10_000);
    let records = consume(&brokers, &topic, 10_000, Duration::from_secs(120));
    let got: HashSet<&str> = records.iter().map(|r| r.headers["idempotency-key"].as_str()).collect();
    assert_eq!(got.len(), 10_000, "every idempotency key present ({} records)", records.len());
    let mut per_run: HashMap<String, (HashSet<i32>, Vec<u64>)> = HashMap::new();
    for r in &records {
        let e = per_run.entry(r.key.clone()).or_default();
        e.0.insert(r.partition);
        e.1.push(r.payload["step"].as_u64().unwrap());
    }
    assert_eq!(per_run.len(), 50, "record key = root run id");
    for (run, (partitions, steps)) in per_run {
        assert_eq!(partitions.len(), 1, "run {run} stays in one partition");
        assert_eq!(steps, (0..200).collect::<Vec<_>>(), "run {run} in order");
    }
    let h0 = &records[0].headers;
    for k in [
        "idempotency-key",
        "hostd-tenant",
        "hostd-event",
        "hostd-policy-version",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_specversion",
        "ce_time",
        "content-type",
    ] {
        assert!(h0.contains_key(k), "header {k} missing: {h0:?}");
    }
    assert_eq!(h0["ce_specversion"], "1.0");
    assert_eq!(h0["ce_type"], "dev.hostd.on_tool_end");
    assert_eq!(h0["ce_id"], h0["idempotency-key"]);
    assert_eq!(h0["hostd-tenant"], "acme");
}

#[test]
fn a_missing_topic_is_dead_lettered_with_the_reason() {
    let Some([brokers]) = services::configured([Service::Kafka]) else { return };
    let topic = unique("no-such-topic");
    let route = Route::kafka(&brokers, &topic)
        .message_timeout("5s")
        .librdkafka(&[("topic.metadata.propagation.max.ms", "1000")]);
    let h = Hostd::from_config(&config(route));
    assert_eq!(h.post_json(Some(TOKEN), &tool_end("r", "r", 0, json!({}))).0, 202);
    let dead = h.wait_dlq(ADMIN, 1, Duration::from_secs(30));
    assert_eq!(dead.len(), 1, "stderr:\n{}", h.stderr());
    assert_eq!(dead[0]["reason"], "rejected", "{}", dead[0]);
    let err = dead[0]["last_error"].as_str().unwrap();
    assert!(err.to_lowercase().contains("unknown topic"), "{err}");
}

/// A private tansu whose storage is S3 (moto), so a restart keeps its topics and data.
struct PrivateBroker {
    child: Child,
    port: u16,
}

impl PrivateBroker {
    fn start(tansu: &str, moto: &str, port: u16) -> PrivateBroker {
        let bucket = format!("tansu-{port}");
        let _ = reqwest::blocking::Client::new().put(format!("{moto}/{bucket}")).send();
        let url = format!("tcp://127.0.0.1:{port}");
        let spawn = || {
            Command::new(tansu)
                .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", &format!("s3://{bucket}/")])
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .env("AWS_ENDPOINT", moto)
                .env("AWS_ALLOW_HTTP", "true")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut child = spawn();
        // Right after a stop the port may still be held: a broker that exits at once is
        // started again until it listens.
        let listening = eventually(Duration::from_secs(10), || {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                child = spawn();
            }
            false
        });
        assert!(listening, "the private tansu never listened on port {port}");
        PrivateBroker { child, port }
    }

    /// A clean stop (SIGTERM), as an operator restarting the broker would.
    fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn broker_down_for_ten_seconds_then_everything_is_delivered() {
    let Some([tansu, moto]) = services::configured([Service::Tansu, Service::Moto]) else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut broker = PrivateBroker::start(&tansu, &moto, port);
    let brokers = format!("127.0.0.1:{}", broker.port);
    let topic = unique("restart");
    create_topic(&tansu, &brokers, &topic);
    let retry = ["500ms", "1s", "2s", "2s", "2s", "2s", "2s", "2s", "2s", "2s"];
    let h = Hostd::from_config(&config(Route::kafka(&brokers, &topic).message_timeout("3s").retry(&retry)));
    let mut keys = post_runs(&h, 10, 0..50, 100);
    broker.stop();
    keys.extend(post_runs(&h, 10, 50..100, 100));
    std::thread::sleep(Duration::from_secs(10));
    let mut broker = PrivateBroker::start(&tansu, &moto, port);
    keys.extend(post_runs(&h, 10, 100..150, 100));
    // Wait for every key, not for a count: a retried record can repeat.
    let all_keys = |records: &[Record]| {
        let got: HashSet<&str> = records.iter().map(|r| r.headers["idempotency-key"].as_str()).collect();
        keys.iter().all(|k| got.contains(k.as_str()))
    };
    let records = consume_until(&brokers, &topic, Duration::from_secs(120), all_keys);
    let got: HashSet<&str> = records.iter().map(|r| r.headers["idempotency-key"].as_str()).collect();
    let missing: Vec<&String> = keys.iter().filter(|k| !got.contains(k.as_str())).take(5).collect();
    let log = h.stderr();
    let tail: Vec<&str> = log.lines().rev().take(15).collect();
    assert!(
        missing.is_empty(),
        "{} of {} delivered; missing e.g. {missing:?}; hostd log tail: {tail:#?}",
        got.len(),
        keys.len()
    );
    assert!(h.dlq(ADMIN).is_empty(), "nothing dead-lettered");
    eprintln!("the broker fenced hostd's producer and it was replaced: {}", log.contains("replaced it with a new one"));
    broker.stop();
}
