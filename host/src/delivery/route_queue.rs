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
//!
//! The route's settings ([`RouteSettings`]: sink, retry schedule, ordering,
//! concurrency) are swapped in place by [`RouteQueue::update`]. Each attempt reads them
//! when it starts, so attempts in flight finish on the old sink and every later one,
//! retries included, uses the new sink and schedule. A delay already being waited out
//! is not recomputed. More workers start at once; surplus ones stop after their
//! current batch. A switch to per-key ordering orders what arrives from then on
//! (deliveries already in flight finish as they were); a switch away releases what
//! waits behind a busy key one by one, as before.

use super::retry::RetrySchedule;
use crate::clock::now_ms;
use crate::config::{DeliveryOptions, DeliveryOrder};
use crate::record::{Delivery, TenantId};
use crate::sinks::SendOutcome;
use crate::sinks::Sink;
use crate::store::Store;
use crate::telemetry::metrics_names as m;
use arc_swap::ArcSwap;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

/// What a route update replaces; every attempt reads it when it starts.
pub struct RouteSettings {
    pub sink: Arc<dyn Sink>,
    pub schedule: RetrySchedule,
    pub ordering: DeliveryOrder,
    /// Workers, each with one batch in flight at most.
    pub concurrency: usize,
}

impl RouteSettings {
    pub fn new(sink: Arc<dyn Sink>, options: &DeliveryOptions) -> Self {
        RouteSettings {
            sink,
            schedule: RetrySchedule::new(options.retry.clone()),
            ordering: options.ordering,
            concurrency: options.concurrency.max(1),
        }
    }
}

/// Shared by every task of one route.
pub struct RouteContext {
    pub tenant: TenantId,
    pub route: String,
    pub settings: ArcSwap<RouteSettings>,
    pub spool: Arc<dyn Store>,
    pub in_flight: Arc<AtomicUsize>,
    /// Deliveries pushed to this queue and not yet finished.
    pub outstanding: Arc<AtomicUsize>,
    pub shutdown: CancellationToken,
}

/// A delivery on its way to the workers. `held`: its key is busy in the gate until
/// the delivery is done (per-key mode), so the worker reports back when it is.
struct Ready {
    delivery: Delivery,
    held: bool,
}

/// What starting one more worker takes.
struct Workers {
    ctx: Arc<RouteContext>,
    ready_rx: Arc<Mutex<mpsc::UnboundedReceiver<Ready>>>,
    ready_tx: mpsc::UnboundedSender<Ready>,
    done_tx: mpsc::UnboundedSender<String>,
    /// Workers running now.
    running: Arc<AtomicUsize>,
}

impl Workers {
    /// Starts workers until `concurrency` run (surplus ones stop by themselves).
    fn grow(&self) {
        let target = self.ctx.settings.load().concurrency;
        while self.running.load(Ordering::SeqCst) < target {
            self.running.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(worker(
                self.ctx.clone(),
                self.running.clone(),
                self.ready_rx.clone(),
                self.ready_tx.clone(),
                self.done_tx.clone(),
            ));
        }
    }
}

/// The handle ingest and replay push deliveries into.
#[derive(Clone)]
pub struct RouteQueue {
    tx: mpsc::UnboundedSender<Delivery>,
    /// Pushed and not yet delivered or dead-lettered.
    outstanding: Arc<AtomicUsize>,
    /// Stops this queue's tasks (a child of the daemon's shutdown).
    stop: CancellationToken,
    workers: Arc<Workers>,
}

impl RouteQueue {
    /// Starts the gate and the workers. Must run inside the Tokio runtime.
    pub fn start(ctx: RouteContext) -> RouteQueue {
        let ctx = Arc::new(ctx);
        let stop = ctx.shutdown.clone();
        let outstanding = ctx.outstanding.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = mpsc::unbounded_channel::<Ready>();
        let (done_tx, done_rx) = mpsc::unbounded_channel::<String>();
        let workers = Arc::new(Workers {
            ctx: ctx.clone(),
            ready_rx: Arc::new(Mutex::new(ready_rx)),
            ready_tx: ready_tx.clone(),
            done_tx,
            running: Arc::new(AtomicUsize::new(0)),
        });
        workers.grow();
        tokio::spawn(gate(ctx, rx, ready_tx, done_rx));
        RouteQueue { tx, outstanding, stop, workers }
    }

    pub fn push(&self, delivery: Delivery) {
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        // The gate only ends at shutdown; the delivery is in the spool either way.
        let _ = self.tx.send(delivery);
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::SeqCst)
    }

    /// Workers running now (they follow `concurrency` after an update).
    pub fn workers(&self) -> usize {
        self.workers.running.load(Ordering::SeqCst)
    }

    /// Swaps the route's settings: attempts that started finish as they were, every
    /// later one uses `settings`. Must run inside the Tokio runtime.
    pub fn update(&self, settings: RouteSettings) {
        self.workers.ctx.settings.store(Arc::new(settings));
        self.workers.grow();
    }

    /// Stops the queue now: no attempt starts after this (those in flight finish);
    /// what it holds stays in the spool.
    pub fn stop(self) {
        self.stop.cancel();
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
    ready: mpsc::UnboundedSender<Ready>,
    mut done: mpsc::UnboundedReceiver<String>,
) {
    // Per-key mode: keys with a delivery in flight, and what waits behind each.
    let mut waiting: HashMap<String, VecDeque<Delivery>> = HashMap::new();
    loop {
        tokio::select! {
            Some(d) = rx.recv() => {
                if ctx.settings.load().ordering != DeliveryOrder::PerKey {
                    release_when_due(&ctx, Ready { delivery: d, held: false }, ready.clone());
                    continue;
                }
                if let Some(queue) = waiting.get_mut(&d.key) {
                    queue.push_back(d);
                    continue;
                }
                waiting.insert(d.key.clone(), VecDeque::new());
                release_when_due(&ctx, Ready { delivery: d, held: true }, ready.clone());
            }
            Some(key) = done.recv() => {
                match waiting.get_mut(&key).and_then(VecDeque::pop_front) {
                    Some(d) => release_when_due(&ctx, Ready { delivery: d, held: true }, ready.clone()),
                    None => { waiting.remove(&key); }
                }
            }
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}

/// Hands `r` to the workers now, or after it falls due (it stays in the spool if
/// hostd stops first).
fn release_when_due(ctx: &Arc<RouteContext>, r: Ready, ready: mpsc::UnboundedSender<Ready>) {
    let wait = Duration::from_millis(r.delivery.next_attempt_ms.saturating_sub(now_ms()));
    if wait.is_zero() {
        let _ = ready.send(r);
        return;
    }
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(wait) => { let _ = ready.send(r); }
            _ = shutdown.cancelled() => {}
        }
    });
}

/// True (and counted out) when more workers run than `concurrency` asks for.
fn leave_if_surplus(ctx: &RouteContext, running: &AtomicUsize) -> bool {
    let target = ctx.settings.load().concurrency;
    running.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n > target).then(|| n - 1)).is_ok()
}

async fn worker(
    ctx: Arc<RouteContext>,
    running: Arc<AtomicUsize>,
    ready_rx: Arc<Mutex<mpsc::UnboundedReceiver<Ready>>>,
    ready_tx: mpsc::UnboundedSender<Ready>,
    done: mpsc::UnboundedSender<String>,
) {
    let labels = [("tenant", ctx.tenant.to_string()), ("route", ctx.route.clone())];
    let (delivered_total, retried_total, dead_total, latency) = (
        metrics::counter!(m::DELIVERED, &labels),
        metrics::counter!(m::RETRIED, &labels),
        metrics::counter!(m::DEAD_LETTERED, &labels),
        metrics::histogram!(m::DELIVERY_LATENCY, &labels),
    );
    // Only a delivery whose key the gate holds busy is reported back.
    let release = |key: String, held: bool| {
        if held {
            let _ = done.send(key);
        }
    };
    let stopped = || running.fetch_sub(1, Ordering::SeqCst);
    loop {
        if leave_if_surplus(&ctx, &running) {
            return;
        }
        let (batch, held, settings) = {
            let mut rx = tokio::select! {
                rx = ready_rx.lock() => rx,
                _ = ctx.shutdown.cancelled() => { stopped(); return }
            };
            let first = tokio::select! {
                d = rx.recv() => match d { Some(d) => d, None => { stopped(); return } },
                _ = ctx.shutdown.cancelled() => { stopped(); return }
            };
            // The attempt starts now: it runs on the settings of this moment.
            let settings = ctx.settings.load_full();
            let max_batch = settings.sink.max_batch().max(1);
            let (mut batch, mut held) = (vec![first.delivery], vec![first.held]);
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(r) => {
                        batch.push(r.delivery);
                        held.push(r.held);
                    }
                    Err(_) => break,
                }
            }
            (batch, held, settings)
        };
        ctx.in_flight.fetch_add(batch.len(), Ordering::SeqCst);
        let outcomes = settings.sink.send_batch(&batch).await;
        ctx.in_flight.fetch_sub(batch.len(), Ordering::SeqCst);
        drop(settings);
        // What comes next follows the newest settings (a route updated meanwhile).
        let settings = ctx.settings.load_full();
        let mut delivered = Vec::new();
        for ((mut d, outcome), held) in batch.into_iter().zip(outcomes).zip(held) {
            d.attempts += 1;
            let (status, error, fatal, retry_after) = match outcome {
                SendOutcome::Delivered => {
                    delivered.push(d.id);
                    latency.record(now_ms().saturating_sub(d.created_ms) as f64 / 1000.0);
                    ctx.outstanding.fetch_sub(1, Ordering::SeqCst);
                    release(d.key, held);
                    continue;
                }
                SendOutcome::Retry { status, error, retry_after } => (status, error, false, retry_after),
                SendOutcome::Fatal { status, error } => (status, error, true, None),
            };
            let next = if fatal { None } else { settings.schedule.delay_after(d.attempts, retry_after) };
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
                    release_when_due(&ctx, Ready { delivery: d, held }, ready_tx.clone());
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
                    release(d.key, held);
                }
            }
        }
        delivered_total.increment(delivered.len() as u64);
        ctx.spool.delivered_many(delivered);
    }
}
