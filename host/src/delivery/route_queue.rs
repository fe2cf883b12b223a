//! One route's queue: its own workers and retry schedule, so a route whose endpoint
//! hangs never delays another route or tenant. With `ordering = "per-key"`, one
//! delivery per key is in flight (retries included) while keys run in parallel.
//!
//! - The gate task takes new deliveries, holds back those whose key is busy (per-key
//!   mode) and passes the rest on, at once or when they fall due.
//! - `concurrency` workers take ready deliveries — up to the sink's `max_batch` at a
//!   time, so pipelining transports get whole batches — make one attempt each, and
//!   record the results in the spool (successes deleted in one job per batch).
//! - A failed delivery sleeps until its next attempt and goes back to the workers; in
//!   per-key mode its key stays busy meanwhile.

use super::retry::RetrySchedule;
use crate::clock::now_ms;
use crate::config::DeliveryOrder;
use crate::record::{Delivery, TenantId};
use crate::sinks::SendOutcome;
use crate::sinks::Sink;
use crate::store::Store;
use crate::telemetry::metrics_names as m;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

/// Shared by every task of one route.
pub struct RouteContext {
    pub tenant: TenantId,
    pub route: String,
    pub sink: Arc<dyn Sink>,
    pub schedule: RetrySchedule,
    pub ordering: DeliveryOrder,
    pub concurrency: usize,
    pub spool: Arc<dyn Store>,
    pub in_flight: Arc<AtomicUsize>,
    /// Deliveries pushed to this queue and not yet finished.
    pub outstanding: Arc<AtomicUsize>,
    pub shutdown: CancellationToken,
}

/// The handle ingest and replay push deliveries into.
#[derive(Clone)]
pub struct RouteQueue {
    tx: mpsc::UnboundedSender<Delivery>,
    /// Pushed and not yet delivered or dead-lettered.
    outstanding: Arc<AtomicUsize>,
    /// Stops this queue's tasks (a child of the daemon's shutdown).
    stop: CancellationToken,
}

impl RouteQueue {
    pub fn start(ctx: RouteContext) -> RouteQueue {
        let ctx = Arc::new(ctx);
        let stop = ctx.shutdown.clone();
        let outstanding = ctx.outstanding.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = mpsc::unbounded_channel::<Delivery>();
        let (done_tx, done_rx) = mpsc::unbounded_channel::<String>();
        let ready_rx = Arc::new(Mutex::new(ready_rx));
        for _ in 0..ctx.concurrency {
            tokio::spawn(worker(ctx.clone(), ready_rx.clone(), ready_tx.clone(), done_tx.clone()));
        }
        tokio::spawn(gate(ctx, rx, ready_tx, done_rx));
        RouteQueue { tx, outstanding, stop }
    }

    pub fn push(&self, delivery: Delivery) {
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        // The gate only ends at shutdown; the delivery is in the spool either way.
        let _ = self.tx.send(delivery);
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::SeqCst)
    }

    /// Stops the queue once everything pushed to it is delivered or dead-lettered
    /// (retries included); at shutdown at once, leaving the rest in the spool.
    pub fn retire(self) {
        tokio::spawn(async move {
            while self.outstanding() > 0 && !self.stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.stop.cancel();
        });
    }
}

/// Passes deliveries to the workers, holding back those whose key is busy.
async fn gate(
    ctx: Arc<RouteContext>,
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    ready: mpsc::UnboundedSender<Delivery>,
    mut done: mpsc::UnboundedReceiver<String>,
) {
    // Per-key mode: keys with a delivery in flight, and what waits behind each.
    let mut waiting: HashMap<String, VecDeque<Delivery>> = HashMap::new();
    loop {
        tokio::select! {
            Some(d) = rx.recv() => {
                if ctx.ordering == DeliveryOrder::PerKey {
                    if let Some(queue) = waiting.get_mut(&d.key) {
                        queue.push_back(d);
                        continue;
                    }
                    waiting.insert(d.key.clone(), VecDeque::new());
                }
                release_when_due(&ctx, d, ready.clone());
            }
            Some(key) = done.recv() => {
                match waiting.get_mut(&key).and_then(VecDeque::pop_front) {
                    Some(d) => release_when_due(&ctx, d, ready.clone()),
                    None => { waiting.remove(&key); }
                }
            }
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}

/// Hands `d` to the workers now, or after it falls due (it stays in the spool if
/// hostd stops first).
fn release_when_due(ctx: &Arc<RouteContext>, d: Delivery, ready: mpsc::UnboundedSender<Delivery>) {
    let wait = Duration::from_millis(d.next_attempt_ms.saturating_sub(now_ms()));
    if wait.is_zero() {
        let _ = ready.send(d);
        return;
    }
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(wait) => { let _ = ready.send(d); }
            _ = shutdown.cancelled() => {}
        }
    });
}

async fn worker(
    ctx: Arc<RouteContext>,
    ready_rx: Arc<Mutex<mpsc::UnboundedReceiver<Delivery>>>,
    ready_tx: mpsc::UnboundedSender<Delivery>,
    done: mpsc::UnboundedSender<String>,
) {
    let max_batch = ctx.sink.max_batch().max(1);
    let labels = [("tenant", ctx.tenant.to_string()), ("route", ctx.route.clone())];
    let (delivered_total, retried_total, dead_total, latency) = (
        metrics::counter!(m::DELIVERED, &labels),
        metrics::counter!(m::RETRIED, &labels),
        metrics::counter!(m::DEAD_LETTERED, &labels),
        metrics::histogram!(m::DELIVERY_LATENCY, &labels),
    );
    // Only per-key mode needs to hear when a key is free again.
    let per_key = ctx.ordering == DeliveryOrder::PerKey;
    let release = |key: String| {
        if per_key {
            let _ = done.send(key);
        }
    };
    loop {
        let batch = {
            let mut rx = tokio::select! {
                rx = ready_rx.lock() => rx,
                _ = ctx.shutdown.cancelled() => return,
            };
            let first = tokio::select! {
                d = rx.recv() => match d { Some(d) => d, None => return },
                _ = ctx.shutdown.cancelled() => return,
            };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(d) => batch.push(d),
                    Err(_) => break,
                }
            }
            batch
        };
        ctx.in_flight.fetch_add(batch.len(), Ordering::SeqCst);
        let outcomes = ctx.sink.send_batch(&batch).await;
        ctx.in_flight.fetch_sub(batch.len(), Ordering::SeqCst);
        let mut delivered = Vec::new();
        for (mut d, outcome) in batch.into_iter().zip(outcomes) {
            d.attempts += 1;
            let (status, error, fatal, retry_after) = match outcome {
                SendOutcome::Delivered => {
                    delivered.push(d.id);
                    latency.record(now_ms().saturating_sub(d.created_ms) as f64 / 1000.0);
                    ctx.outstanding.fetch_sub(1, Ordering::SeqCst);
                    release(d.key);
                    continue;
                }
                SendOutcome::Retry { status, error, retry_after } => (status, error, false, retry_after),
                SendOutcome::Fatal { status, error } => (status, error, true, None),
            };
            let next = if fatal { None } else { ctx.schedule.delay_after(d.attempts, retry_after) };
            match next {
                Some(delay) => {
                    d.next_attempt_ms = now_ms() + delay.as_millis() as u64;
                    tracing::info!(
                        tenant = &*ctx.tenant,
                        route = ctx.route,
                        key = d.idempotency_key,
                        attempts = d.attempts,
                        "attempt failed, retrying in {delay:?}: {error}"
                    );
                    retried_total.increment(1);
                    ctx.spool.reschedule(d.id, d.attempts, d.next_attempt_ms, status, error);
                    // Straight back to the workers when due; the key stays busy.
                    release_when_due(&ctx, d, ready_tx.clone());
                }
                None => {
                    let reason = if fatal { "rejected" } else { "exhausted" };
                    tracing::warn!(
                        tenant = &*ctx.tenant,
                        route = ctx.route,
                        key = d.idempotency_key,
                        attempts = d.attempts,
                        reason,
                        "dead-lettered: {error}"
                    );
                    dead_total.increment(1);
                    if let Err(e) = ctx.spool.dead_letter(d.id, d.attempts, reason, status, error).await {
                        tracing::error!(
                            tenant = &*ctx.tenant,
                            route = ctx.route,
                            "cannot dead-letter: {e}; it stays pending"
                        );
                    }
                    ctx.outstanding.fetch_sub(1, Ordering::SeqCst);
                    release(d.key);
                }
            }
        }
        delivered_total.increment(delivered.len() as u64);
        ctx.spool.delivered_many(delivered);
    }
}
