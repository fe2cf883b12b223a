//! The delivery stage: per-route queues with their own concurrency, retry schedule and
//! ordering.

pub mod retry;
pub mod route_queue;

use crate::record::{Delivery, TenantId};
use route_queue::{RouteContext, RouteQueue};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Every route queue of every tenant, and what a drain needs to know.
pub struct Deliverer {
    queues: HashMap<(TenantId, String), RouteQueue>,
    in_flight: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl Deliverer {
    pub fn new() -> Self {
        Deliverer {
            queues: HashMap::new(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            shutdown: CancellationToken::new(),
        }
    }

    /// Starts the queue of one route. Must run inside the Tokio runtime.
    pub fn add_route(
        &mut self,
        tenant: TenantId,
        route: String,
        sink: Arc<dyn crate::sinks::Sink>,
        options: &crate::config::DeliveryOptions,
        spool: Arc<dyn crate::store::Store>,
    ) {
        let queue = RouteQueue::start(RouteContext {
            tenant: tenant.clone(),
            route: route.clone(),
            sink,
            schedule: retry::RetrySchedule::new(options.retry.clone()),
            ordering: options.ordering,
            concurrency: options.concurrency,
            spool,
            in_flight: self.in_flight.clone(),
            shutdown: self.shutdown.clone(),
        });
        self.queues.insert((tenant, route), queue);
    }

    /// Hands spooled deliveries to their routes. `Err` carries those whose route no
    /// longer exists (a config change since they were spooled).
    pub fn dispatch(&self, deliveries: Vec<Delivery>) -> Result<(), Vec<Delivery>> {
        let mut orphans = Vec::new();
        for d in deliveries {
            match self.queues.get(&(d.tenant.clone(), d.route.clone())) {
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
