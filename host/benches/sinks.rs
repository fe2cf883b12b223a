//! The Redis Streams sink against the raw client, and the whole pipeline into Redis,
//! in one run (Redis from `make services`, or HOSTD_BENCH_REDIS_URL):
//! - raw: pipelined `XADD` of the same 1 KB entries (same fields, `MAXLEN ~`) in batches
//!   of 500 (the client alone);
//! - sink stage: shaped deliveries already in the spool → route queue → Redis;
//! - end to end: HTTP ingest → Rust policy → spool → Redis, 8 clients, batches of 100.

#[path = "common/mod.rs"]
mod common;

/// The allocator the hostd binary uses, so in-process numbers match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::settings;
use hostd::config::{Durability, RouteConfig};
use hostd::delivery::Deliverer;
use hostd::record::{Delivery, TenantId};
use hostd::sinks::SinkContext;
use hostd::store::{AcceptItem, Shaped, SqliteStore, Store, UNASSIGNED_ID};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant};

const N: usize = 100_000;
const BATCH: usize = 500;

fn url() -> String {
    std::env::var("HOSTD_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/0".into())
}

fn payload(i: usize) -> String {
    format!(r#"{{"event":"on_tool_end","run_id":"r{i}","step":{i},"data":{{"output":"{}"}}}}"#, "x".repeat(900))
}

async fn xlen(conn: &mut redis::aio::MultiplexedConnection, stream: &str) -> usize {
    redis::cmd("XLEN").arg(stream).query_async(conn).await.unwrap_or(0)
}

async fn wait_len(conn: &mut redis::aio::MultiplexedConnection, stream: &str, n: usize) {
    while xlen(conn, stream).await < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn route(stream: &str, concurrency: usize) -> RouteConfig {
    let mut route = RouteConfig::new(
        "redis-stream",
        settings([
            ("url", url().into()),
            ("stream", stream.into()),
            ("maxlen", toml::Value::Integer(10_000_000)),
            ("dedupe", false.into()),
            ("dedupe_window", "86400s".into()),
            ("timeout", "5s".into()),
        ]),
    );
    route.delivery.concurrency = concurrency;
    route
}

/// Puts N shaped deliveries for `route` into `spool`, as ingest would; returns them
/// (held by this process, as ingest hands them to the route queues).
async fn fill_spool(spool: &dyn Store, tenant: &TenantId, route: &str) -> Vec<Delivery> {
    let mut spooled = Vec::with_capacity(N);
    for chunk in (0..N).collect::<Vec<_>>().chunks(BATCH) {
        let items = chunk
            .iter()
            .map(|&i| AcceptItem {
                idempotency_key: format!("k{i}"),
                event_kind: "on_tool_end".into(),
                policy_version: Arc::from("bench"),
                event: Some(RawValue::from_string("{}".into()).unwrap()),
                shaped: Shaped::Deliver(vec![Delivery {
                    id: UNASSIGNED_ID,
                    tenant: tenant.clone(),
                    route: route.into(),
                    idempotency_key: format!("k{i}"),
                    event: "on_tool_end".into(),
                    key: format!("run{}", i % 50),
                    policy_version: Arc::from("bench"),
                    redactions: vec![],
                    payload: RawValue::from_string(payload(i)).unwrap(),
                    attempts: 0,
                    next_attempt_ms: 0,
                    created_ms: 0,
                }]),
            })
            .collect();
        let accepted = spool.accept(tenant.clone(), items, Duration::from_secs(60)).await.unwrap();
        spooled.extend(accepted.into_iter().flat_map(|a| a.deliveries));
    }
    spooled
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let client = redis::Client::open(url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis (make services)");
    let _: () =
        redis::cmd("DEL").arg("bench:raw").arg("bench:sink").arg("bench:e2e").query_async(&mut conn).await.unwrap();

    // Raw client: pipelined XADD of the very entries the sink writes (MAXLEN ~ and the
    // same five fields), so the ratio measures hostd, not a smaller entry.
    let start = Instant::now();
    for chunk in (0..N).collect::<Vec<_>>().chunks(BATCH) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            pipe.cmd("XADD")
                .arg("bench:raw")
                .arg("MAXLEN")
                .arg("~")
                .arg(10_000_000)
                .arg("*")
                .arg("payload")
                .arg(payload(i))
                .arg("event")
                .arg("on_tool_end")
                .arg("tenant")
                .arg("bench")
                .arg("idempotency_key")
                .arg(format!("k{i}"))
                .arg("policy_version")
                .arg("bench")
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }
    let raw = N as f64 / start.elapsed().as_secs_f64();

    // Sink stage: N shaped deliveries in the spool, then the route queue drains them.
    let tmp = tempfile::tempdir().unwrap();
    let spool: Arc<dyn Store> = Arc::new(SqliteStore::open(tmp.path(), Durability::Os).unwrap());
    let tenant = TenantId::from("bench");
    let pending = fill_spool(&*spool, &tenant, "redis").await;
    let deliverer = Deliverer::new();
    let rc = route("bench:sink", 4);
    let sink = hostd::sinks::build(&SinkContext::new(tenant.clone(), "redis", Default::default()), &rc).unwrap();
    deliverer.add_route(tenant.clone(), "redis".into(), sink, &rc.delivery, spool.clone());
    let start = Instant::now();
    deliverer.dispatch(pending).unwrap();
    wait_len(&mut conn, "bench:sink", N).await;
    let sink_rate = N as f64 / start.elapsed().as_secs_f64();

    // End to end through the HTTP server.
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = common::one_tenant(listen, tmp.path().join("e2e"), Durability::Fsync, route("bench:e2e", 4), "t");
    tokio::spawn(async move { hostd::serve(config).await.unwrap() });
    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (clients, per_request) = (8usize, 100usize);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                for b in 0..N / clients / per_request {
                    let body: String = (0..per_request)
                        .map(|i| {
                            let n = b * per_request + i;
                            format!(
                                "{{\"event\":\"on_tool_end\",\"run_id\":\"c{c}-{n}\",\"root_run_id\":\"c{c}\",\"step\":{n},\"data\":{{\"output\":\"{}\"}}}}\n",
                                "x".repeat(850)
                            )
                        })
                        .collect();
                    let r = http
                        .post(format!("{base}/v1/events"))
                        .bearer_auth("t")
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 202);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = start.elapsed();
    wait_len(&mut conn, "bench:e2e", N).await;
    let e2e = start.elapsed();

    println!("## Redis Streams, 1 KB entries, {N} events");
    println!("| what | events/s | vs raw |");
    println!("|---|---|---|");
    println!("| raw client, pipelined XADD, batches of {BATCH} | {raw:.0} | 1.00 |");
    println!(
        "| sink stage: spool → route queue → Redis (4 workers, batches ≤ 500) | {sink_rate:.0} | {:.2} |",
        sink_rate / raw
    );
    println!(
        "| end to end: HTTP → Rust policy → spool (fsync) → Redis, 8 clients × batches of {per_request} | {:.0} | {:.2} |",
        N as f64 / e2e.as_secs_f64(),
        N as f64 / e2e.as_secs_f64() / raw
    );
    println!("(ingest alone accepted the {N} events at {:.0}/s)", N as f64 / accepted.as_secs_f64());

    // Kafka: the raw producer against the sink stage, same broker (tansu from `make services`).
    let brokers = std::env::var("HOSTD_BENCH_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".into());
    let suffix = std::process::id();
    let raw_producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let raw_topic = format!("bench-raw-{suffix}");
    let warm = FutureRecord::to(&raw_topic).key("w").payload("{}");
    raw_producer.send(warm, Duration::from_secs(30)).await.unwrap();
    let start = Instant::now();
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        let futures: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let p = payload(i);
                let key = format!("run{}", i % 50);
                raw_producer.send_result(FutureRecord::to(&raw_topic).key(&key).payload(&p)).unwrap()
            })
            .collect();
        for f in futures {
            f.await.unwrap().unwrap();
        }
    }
    let kafka_raw = N as f64 / start.elapsed().as_secs_f64();

    let sink_topic = format!("bench-sink-{suffix}");
    let mut kafka_route = RouteConfig::new(
        "kafka",
        settings([
            ("brokers", brokers.as_str().into()),
            ("topic", sink_topic.as_str().into()),
            ("librdkafka", toml::Value::Table(settings([("allow.auto.create.topics", "true".into())]))),
            ("message_timeout", "30s".into()),
        ]),
    );
    kafka_route.delivery.concurrency = 4;
    let kspool: Arc<dyn Store> = Arc::new(SqliteStore::open(&tmp.path().join("kafka"), Durability::Os).unwrap());
    let pending = fill_spool(&*kspool, &tenant, "kafka").await;
    let kdeliverer = Deliverer::new();
    let sink =
        hostd::sinks::build(&SinkContext::new(tenant.clone(), "kafka", Default::default()), &kafka_route).unwrap();
    kdeliverer.add_route(tenant.clone(), "kafka".into(), sink, &kafka_route.delivery, kspool.clone());
    let start = Instant::now();
    kdeliverer.dispatch(pending).unwrap();
    loop {
        kspool.flush().await.unwrap();
        if kspool.depths().await.unwrap().pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kafka_sink = N as f64 / start.elapsed().as_secs_f64();
    println!();
    println!("## Kafka (tansu 0.6.0 in memory), 1 KB records, {N} events");
    println!("| what | events/s | vs raw |");
    println!("|---|---|---|");
    println!("| raw rdkafka idempotent producer, 1,000 in flight | {kafka_raw:.0} | 1.00 |");
    println!(
        "| sink stage: spool → route queue → Kafka (4 workers, batches ≤ 1,000) | {kafka_sink:.0} | {:.2} |",
        kafka_sink / kafka_raw
    );
    let _: () =
        redis::cmd("DEL").arg("bench:raw").arg("bench:sink").arg("bench:e2e").query_async(&mut conn).await.unwrap();
    std::process::exit(0);
}
