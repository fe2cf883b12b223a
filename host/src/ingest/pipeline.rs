//! What happens to accepted events: each runs through its tenant's policy, and the
//! outcome is made durable in one group commit (deliveries for the route queues, DLQ
//! entries for policy faults, the idempotency keys for dedupe) before the caller may
//! answer 202. The admin API's replay through the policy goes the same way.

use crate::config::OnPolicyError;
use crate::delivery::Deliverer;
use crate::event::AcceptedEvent;
use crate::policy::{evaluate_all, evaluate_timed, Outcome, PolicyError, PolicyVersion};
use crate::record::Delivery;
use crate::store::{AcceptItem, Accepted, Shaped, Store, StoreError, UNASSIGNED_ID};
use crate::telemetry::metrics_names as m;
use crate::tenants::Tenant;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The path from an accepted event to the route queues.
pub struct Pipeline {
    spool: Arc<dyn Store>,
    deliverer: Arc<Deliverer>,
    dedupe_window: Duration,
    draining: AtomicBool,
}

impl Pipeline {
    pub fn new(spool: Arc<dyn Store>, deliverer: Arc<Deliverer>, dedupe_window: Duration) -> Self {
        Pipeline { spool, deliverer, dedupe_window, draining: AtomicBool::new(false) }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Runs each event through the tenant's policy and makes the outcome durable in
    /// one group commit. Only after that commit may the caller answer 202. A policy
    /// fault is dead-lettered (or dropped, per the tenant's `on_policy_error`); nothing
    /// is ever delivered unshaped.
    pub async fn accept(&self, tenant: &Tenant, events: Vec<AcceptedEvent>) -> Result<Vec<Accepted>, StoreError> {
        let policy = tenant.current_policy();
        let outcomes = {
            let _slot = policy.evaluation_slot().await;
            evaluate_timed(&policy, &tenant.policy.live.stats, &events)
        };
        let items = events.into_iter().zip(outcomes).map(|(e, o)| shape(tenant, &policy, e, o)).collect();
        let mut accepted = self.spool.accept(tenant.id.clone(), items, self.dedupe_window).await?;
        let label = [("tenant", tenant.id.to_string())];
        let duplicates = accepted.iter().filter(|a| a.duplicate).count() as u64;
        metrics::counter!(m::ACCEPTED, &label).increment(accepted.len() as u64 - duplicates);
        metrics::counter!(m::DUPLICATE, &label).increment(duplicates);
        let deliveries = accepted.iter_mut().flat_map(|a| std::mem::take(&mut a.deliveries)).collect();
        self.dispatch(deliveries).await;
        Ok(accepted)
    }

    /// Re-runs the tenant's current policy on one stored event (a DLQ replay): the
    /// outcome, ready for the spool.
    pub async fn reevaluate(&self, tenant: &Tenant, event: AcceptedEvent) -> AcceptItem {
        let policy = tenant.current_policy();
        let outcome = {
            let _slot = policy.evaluation_slot().await;
            evaluate_all(&policy, std::slice::from_ref(&event)).pop().expect("one outcome per event")
        };
        shape(tenant, &policy, event, outcome)
    }

    /// Hands spooled deliveries to their route queues; a delivery whose route is no
    /// longer configured is dead-lettered.
    pub async fn dispatch(&self, deliveries: Vec<Delivery>) {
        if let Err(orphans) = self.deliverer.dispatch(deliveries) {
            for d in orphans {
                let error = format!("route `{}` is no longer configured for tenant `{}`", d.route, d.tenant);
                if let Err(e) = self.spool.dead_letter(d.id, d.attempts, "route_removed", None, error).await {
                    tracing::error!("cannot dead-letter delivery {}: {e}", d.id);
                }
            }
        }
    }

    /// Resumes what the spool holds from before a restart.
    pub async fn resume(&self) -> crate::Result<usize> {
        let pending = self.spool.claim_pending().await?;
        let n = pending.len();
        self.dispatch(pending).await;
        Ok(n)
    }

    /// Stops ingest (503), lets in-flight deliveries finish up to `timeout`, and waits
    /// for the spool's last writes. Returns the deliveries still in flight when time
    /// ran out (they stay in the spool).
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.draining.store(true, Ordering::SeqCst);
        let left = self.deliverer.drain(timeout).await;
        let _ = self.spool.flush().await;
        left
    }
}

/// What the policy's outcome for one event becomes in the spool.
pub fn shape(
    tenant: &Tenant,
    policy: &PolicyVersion,
    event: AcceptedEvent,
    outcome: Result<Outcome, PolicyError>,
) -> AcceptItem {
    let label = [("tenant", tenant.id.to_string())];
    let shaped = match outcome {
        Ok(Outcome::Drop(reason)) => {
            metrics::counter!(m::DROPPED, &label).increment(1);
            tracing::debug!(tenant = &*tenant.id, key = event.idempotency_key, "dropped by policy: {reason}");
            Shaped::Dropped
        }
        Ok(Outcome::Deliver(list)) => Shaped::Deliver(
            list.into_iter()
                .map(|d| Delivery {
                    id: UNASSIGNED_ID,
                    tenant: tenant.id.clone(),
                    route: d.route,
                    idempotency_key: event.idempotency_key.clone(),
                    event: event.event.kind.clone(),
                    policy_version: policy.version().clone(),
                    attempts: 0,
                    next_attempt_ms: 0,
                    created_ms: 0,
                    key: d.key.unwrap_or_else(|| event.event.root_run_id.clone()),
                    redactions: d.redactions,
                    payload: d.payload,
                })
                .collect(),
        ),
        Err(err) => {
            let kind = err.fault.kind();
            metrics::counter!(m::POLICY_FAULTS, "tenant" => tenant.id.to_string(), "kind" => kind).increment(1);
            match tenant.settings().on_policy_error {
                OnPolicyError::DeadLetter => Shaped::Fault { reason: kind.to_string(), error: err.to_string() },
                OnPolicyError::Drop => {
                    tracing::warn!(
                        tenant = &*tenant.id,
                        key = event.idempotency_key,
                        "dropped after policy fault: {err}"
                    );
                    Shaped::Dropped
                }
            }
        }
    };
    AcceptItem {
        idempotency_key: event.idempotency_key,
        event_kind: event.event.kind,
        policy_version: policy.version().clone(),
        event: tenant.keep_original().then_some(event.raw),
        shaped,
    }
}
