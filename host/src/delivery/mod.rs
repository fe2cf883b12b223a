//! The delivery stage: per-route queues with their own concurrency, retry schedule and
//! ordering.

pub mod retry;
pub mod route_queue;
#[cfg(test)]
mod tests;

use crate::record::{Delivery, TenantId};
use arc_swap::ArcSwap;
use route_queue::{RouteContext, RouteQueue, RouteSettings};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Every route queue of every tenant, and what a drain needs to know. Routes are added
/// and retired while deliveries flow (tenants come and go at runtime).
pub struct Deliverer {
    queues: RwLock<HashMap<(TenantId, String), RouteQueue>>,
    in_flight: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl Deliverer {
    pub fn new() -> Self {
        Deliverer {
            queues: RwLock::new(HashMap::new()),
            in_flight: Arc::new(AtomicUsize::new(0)),
            shutdown: CancellationToken::new(),
        }
    }

    /// Starts the queue of one route (a route already running is replaced: the old
    /// queue finishes what it holds). Must run inside the Tokio runtime.
    pub fn add_route(
        &self,
        tenant: TenantId,
        route: String,
        sink: Arc<dyn crate::sinks::Sink>,
        options: &crate::config::DeliveryOptions,
        spool: Arc<dyn crate::store::Store>,
    ) {
        let queue = RouteQueue::start(RouteContext {
            tenant: tenant.clone(),
            route: route.clone(),
            settings: ArcSwap::from_pointee(RouteSettings::new(sink, options)),
            spool,
            in_flight: self.in_flight.clone(),
            outstanding: Arc::new(AtomicUsize::new(0)),
            shutdown: self.shutdown.child_token(),
        });
        let old = self.queues.write().expect("queues lock").insert((tenant, route), queue);
        if let Some(old) = old {
            old.retire();
        }
    }

    /// Changes a running route in place: its sink (URL, headers, timeout, secret) and
    /// delivery options. Attempts in flight finish on the old sink; every later
    /// attempt, retries included, uses the new sink and retry schedule, and the queue
    /// keeps its order. `false` when the tenant has no such route. Must run inside the
    /// Tokio runtime (a higher `concurrency` starts workers).
    pub fn update_route(
        &self,
        tenant: TenantId,
        route: String,
        sink: Arc<dyn crate::sinks::Sink>,
        options: &crate::config::DeliveryOptions,
    ) -> bool {
        // The write lock serialises updates of one route against each other.
        let queues = self.queues.write().expect("queues lock");
        match queues.get(&(tenant, route)) {
            Some(queue) => {
                queue.update(RouteSettings::new(sink, options));
                true
            }
            None => false,
        }
    }

    /// Takes one route out of dispatch, like [`Deliverer::retire_tenant`] for one
    /// route: its queue stops once what it holds is delivered or dead-lettered.
    /// `false` when the tenant has no such route.
    pub fn retire_route(&self, tenant: &str, route: &str) -> bool {
        let key = (TenantId::from(tenant), route.to_string());
        match self.queues.write().expect("queues lock").remove(&key) {
            Some(queue) => {
                queue.retire();
                true
            }
            None => false,
        }
    }

    /// Takes one route out of dispatch and stops its queue now: no attempt starts
    /// after this (those in flight finish) and what it holds stays in the spool, for
    /// the caller to dead-letter (a forced removal). `false` when there is no such route.
    pub fn stop_route(&self, tenant: &str, route: &str) -> bool {
        let key = (TenantId::from(tenant), route.to_string());
        match self.queues.write().expect("queues lock").remove(&key) {
            Some(queue) => {
                queue.stop();
                true
            }
            None => false,
        }
    }

    /// [`Deliverer::stop_route`] for every route of a tenant; returns how many.
    pub fn stop_tenant(&self, tenant: &str) -> usize {
        let mut queues = self.queues.write().expect("queues lock");
        let keys: Vec<_> = queues.keys().filter(|(t, _)| &**t == tenant).cloned().collect();
        for key in &keys {
            if let Some(queue) = queues.remove(key) {
                queue.stop();
            }
        }
        keys.len()
    }

    /// Whether the tenant has a running route `route`.
    pub fn has_route(&self, tenant: &str, route: &str) -> bool {
        self.queues.read().expect("queues lock").contains_key(&(TenantId::from(tenant), route.to_string()))
    }

    /// Takes a tenant's routes out of dispatch; each queue stops once what it holds is
    /// delivered or dead-lettered (a removed tenant's accepted events still go out).
    /// Returns the routes retired.
    pub fn retire_tenant(&self, tenant: &str) -> usize {
        let mut queues = self.queues.write().expect("queues lock");
        let keys: Vec<_> = queues.keys().filter(|(t, _)| &**t == tenant).cloned().collect();
        for key in &keys {
            if let Some(queue) = queues.remove(key) {
                queue.retire();
            }
        }
        keys.len()
    }

    /// Deliveries handed to the queues and not yet delivered or dead-lettered.
    pub fn outstanding(&self) -> usize {
        self.queues.read().expect("queues lock").values().map(RouteQueue::outstanding).sum()
    }

    /// Hands spooled deliveries to their routes. `Err` carries those whose route no
    /// longer exists (a config change since they were spooled).
    pub fn dispatch(&self, deliveries: Vec<Delivery>) -> Result<(), Vec<Delivery>> {
        let mut orphans = Vec::new();
        let queues = self.queues.read().expect("queues lock");
        for d in deliveries {
            match queues.get(&(d.tenant.clone(), d.route.clone())) {
                Some(q) => q.push(d),
                None => orphans.push(d),
            }
        }
        if orphans.is_empty() {
            Ok(())
        } else {
            Err(orphans)
        }
    }

    /// Stops starting attempts and waits up to `timeout` for those in flight. What is
    /// not delivered stays in the spool.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + timeout;
        while self.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.in_flight.load(Ordering::SeqCst)
    }
}

impl Default for Deliverer {
    fn default() -> Self {
        Self::new()
    }
}
