//! End-to-end numbers for the delivery core, each measured in this one run:
//! - events/s the spool accepts durably (202s/s) with 1 KB events at batch sizes 1, 10
//!   and 100 from 8 concurrent clients, with `durability = "fsync"` against the
//!   no-durability ceiling (`synchronous=OFF`);
//! - signed 1 KB webhooks, one per request from 8 clients, accepted and delivered to a
//!   local receiver that answers 200 at once: deliveries/s and end-to-end p50/p99.
//!
//! `make bench` runs it; results go in BENCHMARKS.md.

#[path = "common/mod.rs"]
mod common;

/// The allocator the hostd binary uses, so in-process numbers match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use axum::routing::post;
use common::settings;
use hostd::config::{Config, Durability, RouteConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(5);
const TOKEN: &str = "bench-token";

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn config(listen: SocketAddr, data_dir: PathBuf, durability: Durability, mut route: RouteConfig) -> Config {
    route.delivery.concurrency = 64;
    common::one_tenant(listen, data_dir, durability, route, TOKEN)
}

/// A ~1 KB on_tool_end event; `sent_us` lets the receiver measure end-to-end latency.
fn event(client: usize, n: u64, sent_us: u64) -> String {
    let filler = "x".repeat(820);
    format!(
        r#"{{"event":"on_tool_end","name":"search","run_id":"c{client}-{n}","root_run_id":"root-{client}","step":{n},"data":{{"output":"{filler}","sent_us":{sent_us}}}}}"#
    )
}

async fn start_hostd(config: Config) -> String {
    let url = format!("http://{}", config.server.listen);
    tokio::spawn(async move { hostd::serve(config).await.unwrap() });
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if client.get(format!("{url}/healthz")).send().await.is_ok() {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("hostd did not start");
}

/// 8 clients post batches of `batch` events for RUN_FOR; returns (accepted, events/s).
async fn load(url: &str, batch: usize, epoch: Instant) -> (u64, f64) {
    let accepted = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + RUN_FOR;
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, accepted) = (url.to_string(), accepted.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let body: String = (0..batch)
                        .map(|_| {
                            n += 1;
                            event(c, n, epoch.elapsed().as_micros() as u64) + "\n"
                        })
                        .collect();
                    let resp = client
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status().as_u16(), 202);
                    accepted.fetch_add(batch as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let n = accepted.load(Ordering::Relaxed);
    (n, n as f64 / started.elapsed().as_secs_f64())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; nothing to list.
    }
    let epoch = Instant::now();
    let tmp = tempfile::tempdir().unwrap();

    // HOSTD_BENCH_ONLY=webhooks skips the spool table (for profiling the webhook path).
    if std::env::var("HOSTD_BENCH_ONLY").as_deref() != Ok("webhooks") {
        println!("## spool: 202s/s, 1 KB events, {CLIENTS} clients, pass-through policy, file sink to /dev/null");
        println!("| batch | fsync (events/s) | no durability (events/s) | fsync / ceiling |");
        println!("|---|---|---|---|");
        let mut urls = Vec::new();
        for (i, d) in [Durability::Fsync, Durability::None].into_iter().enumerate() {
            let sink = RouteConfig::new("file", settings([("path", "/dev/null".into())]));
            urls.push(start_hostd(config(free_addr(), tmp.path().join(format!("spool{i}")), d, sink)).await);
        }
        for batch in [1, 10, 100] {
            let (_, durable) = load(&urls[0], batch, epoch).await;
            let (_, ceiling) = load(&urls[1], batch, epoch).await;
            println!("| {batch} | {durable:.0} | {ceiling:.0} | {:.2} |", durable / ceiling);
        }
    }

    // The webhook receiver: answers 200 at once and records end-to-end latency.
    let latencies = Arc::new(Mutex::new(Vec::<u64>::with_capacity(1 << 20)));
    let received = Arc::new(AtomicU64::new(0));
    let recv_addr = free_addr();
    {
        let (latencies, received) = (latencies.clone(), received.clone());
        let app = axum::Router::new().route(
            "/hook",
            post(move |body: axum::body::Bytes| {
                let (latencies, received) = (latencies.clone(), received.clone());
                async move {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let sent = v["data"]["sent_us"].as_u64().unwrap();
                    latencies.lock().unwrap().push((epoch.elapsed().as_micros() as u64).saturating_sub(sent));
                    received.fetch_add(1, Ordering::Relaxed);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(recv_addr).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    // Set before the webhook sink reads it.
    std::env::set_var("BENCH_WH_SECRET", "whsec_YmVuY2gtc2VjcmV0LWtleS0wMTIzNDU2Nzg5");
    let hook = RouteConfig::new(
        "webhook",
        settings([
            ("url", format!("http://{recv_addr}/hook").into()),
            ("secret_env", "BENCH_WH_SECRET".into()),
            ("standard_webhooks", true.into()),
            ("x_signature", true.into()),
            ("timeout", "5s".into()),
        ]),
    );
    let url = start_hostd(config(free_addr(), tmp.path().join("webhook"), Durability::Fsync, hook)).await;
    let (target, rate) = load(&url, 1, epoch).await;
    let wait_until = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < target && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_unstable();
    println!();
    println!("## signed webhooks: 1 KB, one event per request, {CLIENTS} clients, fsync durability");
    println!("| accepted (events/s) | delivered | e2e p50 | e2e p99 |");
    println!("|---|---|---|---|");
    println!(
        "| {rate:.0} | {} of {target} | {:.2} ms | {:.2} ms |",
        received.load(Ordering::Relaxed),
        percentile(&lat, 0.50) as f64 / 1000.0,
        percentile(&lat, 0.99) as f64 / 1000.0
    );
    std::process::exit(0);
}
