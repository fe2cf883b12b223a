//! Routes changed while deliveries flow: the sink and retry schedule swapped in place,
//! workers following `concurrency`.

use super::Deliverer;
use crate::config::{DeliveryOptions, DeliveryOrder, Durability};
use crate::record::{Delivery, TenantId};
use crate::sinks::{SendOutcome, Sink};
use crate::store::{SqliteStore, Store};
use serde_json::value::RawValue;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Answers every attempt with `outcome`, counting them; with a `gate`, each attempt
/// first waits for a permit.
struct CountingSink {
    outcome: SendOutcome,
    calls: AtomicUsize,
    now: AtomicUsize,
    gate: Option<tokio::sync::Semaphore>,
}

impl CountingSink {
    fn new(outcome: SendOutcome, gated: bool) -> Arc<Self> {
        let gate = gated.then(|| tokio::sync::Semaphore::new(0));
        Arc::new(CountingSink { outcome, calls: AtomicUsize::new(0), now: AtomicUsize::new(0), gate })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Sink for CountingSink {
    async fn send(&self, _: &Delivery) -> SendOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.now.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.outcome.clone()
    }
}

fn delivery(id: i64, key: &str) -> Delivery {
    Delivery {
        id,
        tenant: TenantId::from("acme"),
        route: "r".into(),
        idempotency_key: format!("k{id}"),
        event: "on_tool_end".into(),
        key: key.into(),
        policy_version: Arc::from("v1"),
        redactions: vec![],
        payload: RawValue::from_string("{}".into()).unwrap(),
        attempts: 0,
        next_attempt_ms: 0,
        created_ms: 0,
    }
}

fn options(retry_ms: &[u64], concurrency: usize, ordering: DeliveryOrder) -> DeliveryOptions {
    DeliveryOptions { retry: retry_ms.iter().map(|ms| Duration::from_millis(*ms)).collect(), concurrency, ordering }
}

async fn wait_for(what: &str, ok: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn spool(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(dir, Durability::Os).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_updated_mid_retry_sends_the_retry_to_the_new_sink() {
    let dir = tempfile::tempdir().unwrap();
    let deliverer = Deliverer::new();
    let failing = CountingSink::new(SendOutcome::retry(Some(503), "down"), false);
    let (acme, route) = (TenantId::from("acme"), "r".to_string());
    let slow = options(&[400, 400, 400], 2, DeliveryOrder::PerKey);
    deliverer.add_route(acme.clone(), route.clone(), failing.clone(), &slow, spool(dir.path()));
    deliverer.dispatch(vec![delivery(1, "k")]).unwrap();
    wait_for("the first attempt", || failing.calls() == 1).await;

    // The retry is waiting out its delay: the new sink and schedule take it.
    let working = CountingSink::new(SendOutcome::Delivered, false);
    let fast = options(&[10], 2, DeliveryOrder::PerKey);
    assert!(deliverer.update_route(acme.clone(), route.clone(), working.clone(), &fast));
    wait_for("the retry on the new sink", || working.calls() == 1).await;
    wait_for("nothing outstanding", || deliverer.outstanding() == 0).await;
    assert_eq!(failing.calls(), 1, "no attempt after the update went to the old sink");

    // Later deliveries go to the new sink too; the old one is never called again.
    deliverer.dispatch(vec![delivery(2, "k"), delivery(3, "other")]).unwrap();
    wait_for("two more deliveries", || working.calls() == 3).await;
    assert_eq!(failing.calls(), 1);

    assert!(!deliverer.update_route(acme.clone(), "nope".into(), working.clone(), &fast));
    assert!(deliverer.has_route("acme", "r"));
    assert!(deliverer.retire_route("acme", "r"));
    assert!(!deliverer.has_route("acme", "r") && !deliverer.retire_route("acme", "r"));
    let orphans = deliverer.dispatch(vec![delivery(4, "k")]).unwrap_err();
    assert_eq!(orphans.len(), 1, "a retired route takes no deliveries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_schedule_after_an_update_dead_letters_sooner() {
    let dir = tempfile::tempdir().unwrap();
    let deliverer = Deliverer::new();
    let failing = CountingSink::new(SendOutcome::retry(None, "down"), false);
    let acme = TenantId::from("acme");
    let long = options(&[300, 300, 300, 300], 1, DeliveryOrder::Unordered);
    deliverer.add_route(acme.clone(), "r".into(), failing.clone(), &long, spool(dir.path()));
    deliverer.dispatch(vec![delivery(1, "k")]).unwrap();
    wait_for("the first attempt", || failing.calls() == 1).await;
    // One retry left under the new schedule: attempt 2 fails and is the last.
    assert!(deliverer.update_route(acme, "r".into(), failing.clone(), &options(&[10], 1, DeliveryOrder::Unordered)));
    wait_for("the delivery to be dead-lettered", || deliverer.outstanding() == 0).await;
    assert_eq!(failing.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_follow_concurrency_up_and_down() {
    let dir = tempfile::tempdir().unwrap();
    let deliverer = Deliverer::new();
    let sink = CountingSink::new(SendOutcome::Delivered, true);
    let acme = TenantId::from("acme");
    deliverer.add_route(
        acme.clone(),
        "r".into(),
        sink.clone(),
        &options(&[], 1, DeliveryOrder::Unordered),
        spool(dir.path()),
    );
    deliverer.dispatch((1..=12).map(|i| delivery(i, &format!("k{i}"))).collect()).unwrap();
    wait_for("one attempt in flight", || sink.now.load(Ordering::SeqCst) == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sink.now.load(Ordering::SeqCst), 1, "concurrency 1 runs one attempt at a time");

    assert!(deliverer.update_route(acme.clone(), "r".into(), sink.clone(), &options(&[], 4, DeliveryOrder::Unordered)));
    wait_for("four attempts in flight", || sink.now.load(Ordering::SeqCst) == 4).await;
    let gate = sink.gate.as_ref().unwrap();

    // Down to 1: the surplus workers stop after their batch.
    assert!(deliverer.update_route(acme.clone(), "r".into(), sink.clone(), &options(&[], 1, DeliveryOrder::Unordered)));
    gate.add_permits(4);
    wait_for("the first four delivered", || sink.calls() >= 5 && sink.now.load(Ordering::SeqCst) >= 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sink.now.load(Ordering::SeqCst), 1, "back to one attempt at a time");
    gate.add_permits(100);
    wait_for("all delivered", || deliverer.outstanding() == 0).await;
    assert_eq!(sink.calls(), 12);
    let queues = deliverer.queues.read().unwrap();
    assert_eq!(queues.values().map(|q| q.workers()).sum::<usize>(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_to_per_key_orders_what_arrives_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let deliverer = Deliverer::new();
    let sink = CountingSink::new(SendOutcome::Delivered, true);
    let acme = TenantId::from("acme");
    let unordered = options(&[], 4, DeliveryOrder::Unordered);
    deliverer.add_route(acme.clone(), "r".into(), sink.clone(), &unordered, spool(dir.path()));
    deliverer.dispatch((1..=3).map(|i| delivery(i, "same")).collect()).unwrap();
    wait_for("three of one key in flight at once", || sink.now.load(Ordering::SeqCst) == 3).await;
    let gate = sink.gate.as_ref().unwrap();
    gate.add_permits(3);
    wait_for("the unordered ones delivered", || deliverer.outstanding() == 0).await;

    assert!(deliverer.update_route(acme, "r".into(), sink.clone(), &options(&[], 4, DeliveryOrder::PerKey)));
    deliverer.dispatch((4..=6).map(|i| delivery(i, "same")).collect()).unwrap();
    for done in 1..=3 {
        wait_for("the next of the key", || sink.now.load(Ordering::SeqCst) == 1).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(sink.now.load(Ordering::SeqCst), 1, "one of the key in flight at a time");
        gate.add_permits(1);
        wait_for("it to be delivered", || deliverer.outstanding() == 3 - done).await;
    }
    assert_eq!(sink.calls(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_route_starts_no_more_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let deliverer = Deliverer::new();
    let failing = CountingSink::new(SendOutcome::retry(None, "down"), false);
    let retrying = options(&[50, 50, 50, 50], 1, DeliveryOrder::Unordered);
    let spool = spool(dir.path());
    deliverer.add_route(TenantId::from("acme"), "r".into(), failing.clone(), &retrying, spool.clone());
    deliverer.add_route(TenantId::from("acme"), "s".into(), failing.clone(), &retrying, spool);
    deliverer.dispatch(vec![delivery(1, "k")]).unwrap();
    wait_for("the first attempt", || failing.calls() == 1).await;
    assert!(deliverer.stop_route("acme", "r") && !deliverer.stop_route("acme", "r"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(failing.calls(), 1, "the retry never ran");
    assert_eq!(deliverer.stop_tenant("acme"), 1);
    assert!(!deliverer.has_route("acme", "s"));
}
