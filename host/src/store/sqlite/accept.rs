//! Accepting events: the `dedupe` table (idempotency keys and their expiry) and what
//! the policy made of each event, stored in one job.

use super::{deliveries, dlq, SqliteStore, EVENT_NOT_KEPT};
use crate::clock::now_ms;
use crate::record::{Delivery, TenantId};
use crate::store::{AcceptItem, Accepted, Shaped, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::value::RawValue;
use std::time::Duration;

impl SqliteStore {
    /// Makes a batch of accepted events durable: records each idempotency key (a
    /// repeat within `dedupe_window` is marked duplicate and spools nothing), spools
    /// the deliveries, and dead-letters policy faults. Answers after the commit.
    pub async fn accept(
        &self,
        tenant: TenantId,
        items: Vec<AcceptItem>,
        dedupe_window: Duration,
    ) -> Result<Vec<Accepted>, StoreError> {
        self.write(move |conn| {
            let now = now_ms();
            let cutoff = now.saturating_sub(dedupe_window.as_millis() as u64);
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                if !claim_key(conn, &tenant, &item.idempotency_key, now, cutoff)? {
                    out.push(Accepted { duplicate: true, deliveries: vec![] });
                    continue;
                }
                let deliveries = insert_shaped(conn, &tenant, item, now)?;
                out.push(Accepted { duplicate: false, deliveries });
            }
            Ok(out)
        })
        .await
    }

    /// Deletes idempotency keys accepted before `cutoff_ms`, at most `batch` per job.
    pub async fn expire_keys_before(&self, cutoff_ms: u64, batch: usize) -> Result<usize, StoreError> {
        self.delete_in_batches(
            "DELETE FROM dedupe WHERE (tenant, idempotency_key) IN
               (SELECT tenant, idempotency_key FROM dedupe WHERE accepted_ms < ?1 LIMIT ?2)",
            cutoff_ms,
            batch,
        )
        .await
    }
}

/// Records an idempotency key; `false` when it was already accepted within the window.
fn claim_key(conn: &Connection, tenant: &str, key: &str, now: u64, cutoff: u64) -> rusqlite::Result<bool> {
    let inserted = conn
        .prepare_cached("INSERT OR IGNORE INTO dedupe (tenant, idempotency_key, accepted_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![tenant, key, now as i64])?;
    if inserted == 1 {
        return Ok(true);
    }
    let accepted: Option<i64> = conn
        .prepare_cached("SELECT accepted_ms FROM dedupe WHERE tenant = ?1 AND idempotency_key = ?2")?
        .query_row(params![tenant, key], |r| r.get(0))
        .optional()?;
    if accepted.is_some_and(|t| (t as u64) < cutoff) {
        conn.prepare_cached("UPDATE dedupe SET accepted_ms = ?3 WHERE tenant = ?1 AND idempotency_key = ?2")?
            .execute(params![tenant, key, now as i64])?;
        return Ok(true);
    }
    Ok(false)
}

/// Spools what the policy made of one event of `tenant` (deliveries, or a DLQ entry
/// for a fault). Each delivery is stored under `tenant` and the item's idempotency key,
/// kind and policy version, whatever its record said: a delivery is never stored for
/// another tenant or event.
pub(super) fn insert_shaped(
    conn: &Connection,
    tenant: &TenantId,
    item: AcceptItem,
    now: u64,
) -> rusqlite::Result<Vec<Delivery>> {
    let event = item.event.as_deref().map(RawValue::get).unwrap_or(EVENT_NOT_KEPT);
    match item.shaped {
        Shaped::Dropped => Ok(vec![]),
        Shaped::Fault { ref reason, ref error } => {
            dlq::insert_fault(conn, tenant, &item, event, reason, error, now)?;
            tracing::warn!(tenant = &**tenant, key = item.idempotency_key, reason, "dead-lettered: {error}");
            Ok(vec![])
        }
        Shaped::Deliver(list) => {
            let mut out = Vec::with_capacity(list.len());
            for mut d in list {
                d.tenant = tenant.clone();
                d.idempotency_key.clone_from(&item.idempotency_key);
                d.event.clone_from(&item.event_kind);
                d.policy_version = item.policy_version.clone();
                deliveries::insert(conn, &mut d, event, now)?;
                out.push(d);
            }
            Ok(out)
        }
    }
}
