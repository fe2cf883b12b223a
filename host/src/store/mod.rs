//! The store: everything hostd acknowledged and has not finished with — pending
//! deliveries with their next attempt time, the dead-letter queue, and the
//! idempotency-key dedupe window — behind the [`Store`] trait, so the rest of the crate
//! holds an `Arc<dyn Store>` and never names the database.
//!
//! [`sqlite::SqliteStore`] is the first implementation: one node, an embedded
//! crash-safe file. A store shared by many nodes (Postgres) implements the same trait;
//! the lease on claimed deliveries ([`lease`]) is what lets both be correct.

pub mod accept;
pub mod control;
pub mod data_dir;
pub mod depths;
pub mod dlq;
pub mod error;
pub mod lease;
pub mod sqlite;

pub use accept::{AcceptItem, Accepted, Shaped, UNASSIGNED_ID};
pub use control::{
    AuditEntry, ControlChange, ControlSnapshot, NewAudit, RouteRecord, SecretRecord, TenantRecord, TokenRecord,
    TokenScope,
};
pub use depths::{DepthCache, DepthSample, Depths};
pub use dlq::{DlqEntry, DlqFilter, DlqPage, Requeued};
pub use error::{StoreError, StoreErrorKind};
pub use lease::{Claimed, Lease, LeaseOwner, Renewal, LEASE_TERM};
pub use sqlite::SqliteStore;

use crate::clock::now_ms;
use crate::record::{Delivery, TenantId};
use std::time::Duration;

/// Most rows one expiry job (dedupe keys, DLQ retention) deletes: each batch is its
/// own job, so an ingest commit queues behind at most one batch, never a whole sweep.
pub const EXPIRY_BATCH: usize = 500;

/// Most deliveries one [`Store::claim`] of [`Store::claim_pending`] asks for.
pub const CLAIM_PAGE: usize = 10_000;

/// What hostd keeps, and the only way the rest of the crate reaches it.
///
/// # Deliveries and their lease
///
/// Every pending delivery a node works on is held under a [`Lease`]: an owner (the
/// node, [`Store::owner`]) and an expiry. Deliveries a node spools itself
/// ([`Store::accept`], [`Store::dlq_requeue`], [`Store::dlq_replace`]) are leased to it
/// from the moment they are stored; deliveries nobody holds (left by a node that
/// stopped, or [released](Store::release)) are taken with [`Store::claim`]. While it
/// works on them the holder [renews](Store::renew) the lease; a lease that expires makes
/// its deliveries claimable by another node, and the old holder learns it from
/// [`Renewal::lost`] or a [`StoreErrorKind::LeaseLost`] and stops attempting them. The
/// outcome of an attempt ([`Store::delivered_many`], [`Store::reschedule`],
/// [`Store::dead_letter`]) applies only to a delivery its caller holds.
///
/// A store for many nodes (Postgres) keeps owner and expiry in the row and claims with
/// `FOR UPDATE SKIP LOCKED`. A store for one node (SQLite) is locked to its process
/// ([`data_dir::lock`]), so the lease is the process: it never expires while the
/// process runs and ends with it, which is when a restart claims everything again.
///
/// The delivery stage keeps its backlog in memory (the route queues); the store is
/// asked for it once, at startup ([`Store::claim_pending`]).
///
/// # Writes and durability
///
/// [`Store::accept`], [`Store::dead_letter`] and the DLQ writes answer after their
/// commit is durable; [`Store::delivered_many`] and [`Store::reschedule`] are
/// bookkeeping nobody waits for (losing one only repeats an attempt, which
/// at-least-once allows); [`Store::flush`] waits for all of them.
///
/// # The control plane
///
/// Tenants, routes, tokens (as hashes) and signing secrets (encrypted) created through
/// the management API live in the same store ([`control`]), so that they survive a
/// restart and nodes sharing a store share them. [`Store::control_load`] reads them
/// all; [`Store::control_apply`] changes them, a list of changes and its audit entry
/// in one transaction, or none of it.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Where the store is, for logs: its file, or its server.
    fn describe(&self) -> &str;

    /// The node this store hands leases to.
    fn owner(&self) -> &LeaseOwner;

    /// Makes a batch of accepted events of `tenant` durable in one commit: records each
    /// idempotency key (a repeat within `dedupe_window` is marked duplicate and stores
    /// nothing), stores the deliveries (leased to [`Store::owner`]) and dead-letters
    /// policy faults. Answers after the commit.
    async fn accept(
        &self,
        tenant: TenantId,
        items: Vec<AcceptItem>,
        dedupe_window: Duration,
    ) -> Result<Vec<Accepted>, StoreError>;

    /// Claims at most `limit` pending deliveries no live lease holds, oldest first within
    /// the claim, due or not (each carries its `next_attempt_ms`; the caller waits for
    /// it), and leases them to [`Store::owner`] for `ttl`.
    async fn claim(&self, limit: usize, ttl: Duration) -> Result<Claimed, StoreError>;

    /// Claims every pending delivery no live lease holds, page by page, for
    /// [`LEASE_TERM`]: after a restart, what the previous process left.
    async fn claim_pending(&self) -> Result<Vec<Delivery>, StoreError> {
        let mut all = Vec::new();
        loop {
            let page = self.claim(CLAIM_PAGE, LEASE_TERM).await?.deliveries;
            let last = page.len() < CLAIM_PAGE;
            all.extend(page);
            if last {
                return Ok(all);
            }
        }
    }

    /// Extends the lease on `ids` by `ttl`; those no longer held are in
    /// [`Renewal::lost`].
    async fn renew(&self, ids: &[i64], ttl: Duration) -> Result<Renewal, StoreError>;

    /// Gives up the lease on `ids` (a node leaving with work undone), so the next
    /// [`Store::claim`] takes them without waiting for the lease to expire.
    async fn release(&self, ids: &[i64]) -> Result<(), StoreError>;

    /// A delivery succeeded: forget it.
    fn delivered(&self, id: i64) {
        self.delivered_many(vec![id]);
    }

    /// Deliveries succeeded: forget them, in one job nobody waits for.
    fn delivered_many(&self, ids: Vec<i64>);

    /// A delivery failed and will be retried at `next_attempt_ms`; nobody waits for it.
    fn reschedule(&self, id: i64, attempts: u32, next_attempt_ms: u64, status: Option<u16>, error: String);

    /// Moves a delivery to the DLQ, durably, with why it failed.
    async fn dead_letter(
        &self,
        id: i64,
        attempts: u32,
        reason: &str,
        status: Option<u16>,
        error: String,
    ) -> Result<(), StoreError>;

    /// The DLQ entries `filter` selects, oldest first.
    async fn dlq_list(&self, filter: &DlqFilter) -> Result<Vec<DlqEntry>, StoreError>;

    /// At most `limit` entries matching `filter` after its cursor, oldest first, and the
    /// cursor of the next page.
    async fn dlq_page(&self, filter: &DlqFilter, limit: usize) -> Result<DlqPage, StoreError> {
        let filter = DlqFilter { limit: Some(limit.saturating_add(1)), ..filter.clone() };
        let mut entries = self.dlq_list(&filter).await?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = if more { entries.last().map(|e| e.id) } else { None };
        Ok(DlqPage { entries, next })
    }

    async fn dlq_get(&self, id: i64) -> Result<Option<DlqEntry>, StoreError>;

    /// The highest id in the DLQ now (0 when empty).
    async fn dlq_max_id(&self) -> Result<i64, StoreError>;

    /// Deletes the matching entries, in batches; returns how many. The filter's tenant
    /// (a tenant caller's own, always) is part of each delete statement.
    async fn dlq_purge(&self, filter: &DlqFilter) -> Result<usize, StoreError>;

    /// Replays the entries `filter` selects as they are: each entry's last payload goes
    /// back to its route with a fresh retry schedule, leased to [`Store::owner`].
    /// Entries without a payload (policy faults) are left in place and listed in
    /// `skipped`. The select, the copy and the delete all carry the tenant.
    async fn dlq_requeue(&self, filter: &DlqFilter) -> Result<Requeued, StoreError>;

    /// Replaces entry `id` of `tenant` with what the current policy made of its event:
    /// new deliveries, a new DLQ entry, or nothing (dropped). `None` when the entry is
    /// no longer there (purged or replayed meanwhile): then nothing is stored.
    async fn dlq_replace(
        &self,
        id: i64,
        tenant: TenantId,
        item: AcceptItem,
    ) -> Result<Option<Vec<Delivery>>, StoreError>;

    /// Deletes idempotency keys accepted before `cutoff_ms`, at most `batch` per job;
    /// returns how many.
    async fn expire_keys_before(&self, cutoff_ms: u64, batch: usize) -> Result<usize, StoreError>;

    /// Forgets idempotency keys older than the window, in batches; returns how many.
    async fn expire_keys(&self, dedupe_window: Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(dedupe_window.as_millis() as u64);
        self.expire_keys_before(cutoff, EXPIRY_BATCH).await
    }

    /// Deletes DLQ entries dead-lettered before `cutoff_ms`, at most `batch` per job;
    /// returns how many.
    async fn expire_dlq_before(&self, cutoff_ms: u64, batch: usize) -> Result<usize, StoreError>;

    /// Deletes DLQ entries dead-lettered longer than `retention` ago, in batches;
    /// returns how many.
    async fn expire_dlq(&self, retention: Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
        self.expire_dlq_before(cutoff, EXPIRY_BATCH).await
    }

    /// Pending deliveries and DLQ entries, counted now.
    async fn depths(&self) -> Result<Depths, StoreError>;

    /// Counts [`Store::depths`] and keeps the result (or the error) as the last sample.
    async fn sample_depths(&self) -> Result<Depths, StoreError>;

    /// The last [`Store::sample_depths`], if one was taken.
    fn last_depths(&self) -> Option<DepthSample>;

    /// Why the store cannot write, if it cannot (what `/readyz` reports). While failing,
    /// a call probes with a real durable write (at most one a second), so a recovery is
    /// noticed without waiting for traffic, which a not-ready instance does not get.
    async fn write_failure(&self) -> Option<String>;

    /// Completes once every write queued before it has committed.
    async fn flush(&self) -> Result<(), StoreError>;

    /// Every tenant, route, token and signing secret (decrypted), as of one moment.
    /// Fails with [`StoreErrorKind::SecretKey`] when the store holds signing secrets
    /// and the key is missing or another.
    async fn control_load(&self) -> Result<ControlSnapshot, StoreError>;

    /// Applies `changes` in order and writes `audit`, in one durable commit, or nothing
    /// of them: the new revision of each [`ControlChange::PutTenant`] and
    /// [`ControlChange::PutRoute`], 0 for the other changes. A refused change fails the
    /// whole call with [`StoreErrorKind::NotFound`], [`StoreErrorKind::Conflict`],
    /// [`StoreErrorKind::PreconditionFailed`] or [`StoreErrorKind::SecretKey`], its
    /// message naming the resource.
    async fn control_apply(&self, changes: Vec<ControlChange>, audit: NewAudit) -> Result<Vec<u64>, StoreError>;

    /// At most `limit` audit entries with ids above `after`, in id order.
    async fn audit_page(&self, after: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// The policy component stored under `sha256` (hex) by [`ControlChange::PutPolicy`].
    async fn policy_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Pending deliveries of `tenant`, to `route` only when given.
    async fn pending_count(&self, tenant: &str, route: Option<&str>) -> Result<u64, StoreError>;

    /// Moves every pending delivery of `tenant` (to `route` only, when given) to the DLQ
    /// with `reason` (`route_removed`, `tenant_removed`); returns how many. The caller
    /// stops the route's queue first.
    async fn dead_letter_pending(&self, tenant: &str, route: Option<&str>, reason: &str) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests;
