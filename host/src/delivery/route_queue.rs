//! One route's queue: its own concurrency limit and retry schedule, so a route whose
//! endpoint hangs never delays another route or tenant. With `ordering = "per-key"`,
//! one delivery per key is in flight (retries included) while keys run in parallel.
//!
//! Each pending delivery is a task that sleeps until it is due, takes a permit, makes
//! one attempt and records the result in the spool. A retry keeps its task (and, in
//! per-key mode, its key's place in line).

use super::retry::{RetrySchedule, SendOutcome};
use super::Delivery;
use crate::config::Ordering;
use crate::delivery::clock::now_ms;
use crate::sinks::Sink;
use crate::spool::Spool;
use crate::telemetry::metrics_names as m;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// Shared by every task of one route.
pub struct RouteContext {
    pub tenant: Arc<str>,
    pub route: String,
    pub sink: Arc<dyn Sink>,
    pub schedule: RetrySchedule,
    pub ordering: Ordering,
    pub permits: Arc<Semaphore>,
    pub spool: Arc<Spool>,
    pub in_flight: Arc<AtomicUsize>,
    pub shutdown: CancellationToken,
}

/// The handle ingest and replay push deliveries into.
#[derive(Clone)]
pub struct RouteQueue {
    tx: mpsc::UnboundedSender<Delivery>,
}

impl RouteQueue {
    pub fn start(ctx: RouteContext) -> RouteQueue {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(Arc::new(ctx), rx));
        RouteQueue { tx }
    }

    pub fn push(&self, delivery: Delivery) {
        // The loop only ends at shutdown; the delivery is in the spool either way.
        let _ = self.tx.send(delivery);
    }
}

async fn run(ctx: Arc<RouteContext>, mut rx: mpsc::UnboundedReceiver<Delivery>) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    // Per-key mode: keys with a delivery in flight, and what waits behind it.
    let mut waiting: HashMap<String, VecDeque<Delivery>> = HashMap::new();
    loop {
        tokio::select! {
            Some(d) = rx.recv() => {
                if ctx.ordering == Ordering::PerKey {
                    if let Some(queue) = waiting.get_mut(&d.key) {
                        queue.push_back(d);
                        continue;
                    }
                    waiting.insert(d.key.clone(), VecDeque::new());
                }
                tokio::spawn(deliver(ctx.clone(), d, done_tx.clone()));
            }
            Some(key) = done_rx.recv() => {
                let next = waiting.get_mut(&key).and_then(VecDeque::pop_front);
                match next {
                    Some(d) => { tokio::spawn(deliver(ctx.clone(), d, done_tx.clone())); }
                    None => { waiting.remove(&key); }
                }
            }
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}

/// Delivers one delivery to the end: delivered, or dead-lettered. Returns early only at
/// shutdown, leaving it in the spool for the next start.
async fn deliver(ctx: Arc<RouteContext>, mut d: Delivery, done: mpsc::UnboundedSender<String>) {
    let labels = [("tenant", ctx.tenant.to_string()), ("route", ctx.route.clone())];
    loop {
        let wait = Duration::from_millis(d.next_attempt_ms.saturating_sub(now_ms()));
        let permit = tokio::select! {
            permit = async {
                tokio::time::sleep(wait).await;
                ctx.permits.clone().acquire_owned().await
            } => permit.expect("route semaphore is never closed"),
            _ = ctx.shutdown.cancelled() => return,
        };
        ctx.in_flight.fetch_add(1, AtomicOrdering::SeqCst);
        let outcome = ctx.sink.send(&d).await;
        ctx.in_flight.fetch_sub(1, AtomicOrdering::SeqCst);
        drop(permit);
        d.attempts += 1;
        let (status, error, fatal, retry_after) = match outcome {
            SendOutcome::Delivered => {
                ctx.spool.delivered(d.id);
                metrics::counter!(m::DELIVERED, &labels).increment(1);
                let latency = now_ms().saturating_sub(d.created_ms) as f64 / 1000.0;
                metrics::histogram!(m::DELIVERY_LATENCY, &labels).record(latency);
                break;
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
                metrics::counter!(m::RETRIED, &labels).increment(1);
                ctx.spool.reschedule(d.id, d.attempts, d.next_attempt_ms, status, error);
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
                metrics::counter!(m::DEAD_LETTERED, &labels).increment(1);
                if let Err(e) = ctx.spool.dead_letter(d.id, d.attempts, reason, status, error).await {
                    tracing::error!(
                        tenant = &*ctx.tenant,
                        route = ctx.route,
                        "cannot dead-letter: {e}; it stays pending"
                    );
                }
                break;
            }
        }
    }
    let _ = done.send(d.key);
}
