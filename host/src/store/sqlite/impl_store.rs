//! [`Store`] for [`SqliteStore`]: each method is the inherent one of the same name.

use super::SqliteStore;
use crate::record::{Delivery, TenantId};
use crate::store::{
    AcceptItem, Accepted, AuditEntry, Claimed, ControlChange, ControlSnapshot, DepthSample, Depths, DlqEntry,
    DlqFilter, LeaseOwner, NewAudit, Renewal, Requeued, Store, StoreError,
};
use std::time::Duration;

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> &str {
        &self.location
    }

    fn owner(&self) -> &LeaseOwner {
        &self.owner
    }

    async fn accept(
        &self,
        tenant: TenantId,
        items: Vec<AcceptItem>,
        dedupe_window: Duration,
    ) -> Result<Vec<Accepted>, StoreError> {
        SqliteStore::accept(self, tenant, items, dedupe_window).await
    }

    /// `ttl` is not needed: the lease is the process.
    async fn claim(&self, limit: usize, _ttl: Duration) -> Result<Claimed, StoreError> {
        SqliteStore::claim(self, limit).await
    }

    async fn renew(&self, ids: &[i64], _ttl: Duration) -> Result<Renewal, StoreError> {
        SqliteStore::renew(self, ids).await
    }

    async fn release(&self, ids: &[i64]) -> Result<(), StoreError> {
        SqliteStore::release(self, ids).await;
        Ok(())
    }

    fn delivered_many(&self, ids: Vec<i64>) {
        SqliteStore::delivered_many(self, ids)
    }

    fn reschedule(&self, id: i64, attempts: u32, next_attempt_ms: u64, status: Option<u16>, error: String) {
        SqliteStore::reschedule(self, id, attempts, next_attempt_ms, status, error)
    }

    async fn dead_letter(
        &self,
        id: i64,
        attempts: u32,
        reason: &str,
        status: Option<u16>,
        error: String,
    ) -> Result<(), StoreError> {
        SqliteStore::dead_letter(self, id, attempts, reason, status, error).await
    }

    async fn dlq_list(&self, filter: &DlqFilter) -> Result<Vec<DlqEntry>, StoreError> {
        SqliteStore::dlq_list(self, filter).await
    }

    async fn dlq_get(&self, id: i64) -> Result<Option<DlqEntry>, StoreError> {
        SqliteStore::dlq_get(self, id).await
    }

    async fn dlq_max_id(&self) -> Result<i64, StoreError> {
        SqliteStore::dlq_max_id(self).await
    }

    async fn dlq_purge(&self, filter: &DlqFilter) -> Result<usize, StoreError> {
        SqliteStore::dlq_purge(self, filter).await
    }

    async fn dlq_requeue(&self, filter: &DlqFilter) -> Result<Requeued, StoreError> {
        SqliteStore::dlq_requeue(self, filter).await
    }

    async fn dlq_replace(
        &self,
        id: i64,
        tenant: TenantId,
        item: AcceptItem,
    ) -> Result<Option<Vec<Delivery>>, StoreError> {
        SqliteStore::dlq_replace(self, id, tenant, item).await
    }

    async fn expire_keys_before(&self, cutoff_ms: u64, batch: usize) -> Result<usize, StoreError> {
        SqliteStore::expire_keys_before(self, cutoff_ms, batch).await
    }

    async fn expire_dlq_before(&self, cutoff_ms: u64, batch: usize) -> Result<usize, StoreError> {
        SqliteStore::expire_dlq_before(self, cutoff_ms, batch).await
    }

    async fn depths(&self) -> Result<Depths, StoreError> {
        SqliteStore::depths(self).await
    }

    async fn sample_depths(&self) -> Result<Depths, StoreError> {
        SqliteStore::sample_depths(self).await
    }

    fn last_depths(&self) -> Option<DepthSample> {
        SqliteStore::last_depths(self)
    }

    async fn write_failure(&self) -> Option<String> {
        SqliteStore::write_failure(self).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        SqliteStore::flush(self).await
    }

    async fn control_load(&self) -> Result<ControlSnapshot, StoreError> {
        SqliteStore::control_load(self).await
    }

    async fn control_apply(&self, changes: Vec<ControlChange>, audit: NewAudit) -> Result<Vec<u64>, StoreError> {
        SqliteStore::control_apply(self, changes, audit).await
    }

    async fn audit_page(&self, after: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        SqliteStore::audit_page(self, after, limit).await
    }

    async fn policy_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        SqliteStore::policy_blob(self, sha256).await
    }

    async fn pending_count(&self, tenant: &str, route: Option<&str>) -> Result<u64, StoreError> {
        SqliteStore::pending_count(self, tenant, route).await
    }

    async fn dead_letter_pending(&self, tenant: &str, route: Option<&str>, reason: &str) -> Result<u64, StoreError> {
        SqliteStore::dead_letter_pending(self, tenant, route, reason).await
    }
}
