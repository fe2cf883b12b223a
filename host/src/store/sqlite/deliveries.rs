//! The `deliveries` table: its row mapper, and claims, leases and the outcome of
//! attempts.
//!
//! The lease is the process. The data_dir lock lets one hostd at a time open the file,
//! so there is no other node to hand a delivery to, and a lease never expires while the
//! process runs (`Lease::expires_ms` is `None`; `ttl`s are not needed). The process
//! holds every row it inserts, from the insert on, and the rows a previous process left
//! (those there at open) once a claim hands them out: in id order behind a cursor, each
//! once. Nothing is written for a lease; all of them end with the process. The outcome
//! of an attempt is not checked against the holdings: the only ids this process learns
//! are those it holds.

use super::{raw_json, SqliteStore};
use crate::clock::now_ms;
use crate::record::{Delivery, TenantId};
use crate::store::{Claimed, Lease, Renewal, StoreError};
use rusqlite::{params, Connection, Row};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The columns [`delivery`] reads, in its order.
macro_rules! delivery_columns {
    () => {
        "id, tenant, route, idempotency_key, event_kind, key, policy_version, redactions, payload,
         attempts, next_attempt_ms, created_ms"
    };
}
pub(super) use delivery_columns;

/// One `deliveries` row ([`delivery_columns!`]) as the record.
pub(super) fn delivery(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        tenant: TenantId::from(r.get::<_, String>(1)?),
        route: r.get(2)?,
        idempotency_key: r.get(3)?,
        event: r.get(4)?,
        key: r.get(5)?,
        policy_version: Arc::from(r.get::<_, String>(6)?),
        redactions: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
        payload: raw_json(r.get(8)?),
        attempts: r.get(9)?,
        next_attempt_ms: r.get::<_, i64>(10)? as u64,
        created_ms: r.get::<_, i64>(11)? as u64,
    })
}

/// Stores `d` as a new row, due `now`, with `event` (the original event, or
/// `EVENT_NOT_KEPT`); sets its id, attempts and times.
pub(super) fn insert(conn: &Connection, d: &mut Delivery, event: &str, now: u64) -> rusqlite::Result<()> {
    let redactions =
        serde_json::to_string(&d.redactions).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(
        "INSERT INTO deliveries (tenant, route, idempotency_key, event_kind, key, policy_version, redactions,
                                 payload, event, next_attempt_ms, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    )?
    .execute(params![
        d.tenant.as_str(),
        d.route,
        d.idempotency_key,
        d.event,
        d.key,
        &*d.policy_version,
        redactions,
        d.payload.get(),
        event,
        now as i64
    ])?;
    d.id = conn.last_insert_rowid();
    d.attempts = 0;
    d.next_attempt_ms = now;
    d.created_ms = now;
    Ok(())
}

/// Which rows this process does not hold yet: those left at open behind the cursor,
/// and those released since.
pub(super) struct Holdings {
    /// Rows left at open with ids in `(cursor, through]` are not claimed yet.
    cursor: i64,
    /// The highest id at open. New rows get ids above it for as long as the row
    /// `through` exists (SQLite gives a new row the highest id plus one), and that row
    /// exists until a claim hands it out (only a holder deletes a row), after which the
    /// range is empty: a row of this process is never taken for one left at open.
    through: i64,
    released: BTreeSet<i64>,
}

impl Holdings {
    pub(super) fn at_open(conn: &Connection) -> rusqlite::Result<Holdings> {
        let through = conn.query_row("SELECT coalesce(max(id), 0) FROM deliveries", [], |r| r.get(0))?;
        Ok(Holdings { cursor: 0, through, released: BTreeSet::new() })
    }

    fn holds(&self, id: i64) -> bool {
        let unclaimed = self.cursor < id && id <= self.through;
        !unclaimed && !self.released.contains(&id)
    }
}

/// `ids` as an SQL list (integers only).
fn id_list(ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    if list.is_empty() {
        "NULL".into()
    } else {
        list.join(",")
    }
}

impl SqliteStore {
    fn lease(&self) -> Lease {
        Lease { owner: self.owner.clone(), expires_ms: None }
    }

    /// Claims at most `limit` rows this process does not hold: released ones first,
    /// then those left at open; oldest first within the claim.
    pub async fn claim(&self, limit: usize) -> Result<Claimed, StoreError> {
        let mut held = self.holdings.lock().await;
        let again: Vec<i64> = held.released.iter().take(limit).copied().collect();
        let from_range = limit - again.len();
        let (cursor, through) = (held.cursor, held.through);
        let list = id_list(&again);
        let (mut deliveries, left) = self
            .read(move |conn| {
                let mut stmt = conn.prepare(&format!(
                    concat!("SELECT ", delivery_columns!(), " FROM deliveries WHERE id IN ({}) ORDER BY id"),
                    list
                ))?;
                let again = stmt.query_map([], delivery)?.collect::<rusqlite::Result<Vec<_>>>()?;
                if from_range == 0 || cursor >= through {
                    return Ok((again, vec![]));
                }
                let mut stmt = conn.prepare_cached(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM deliveries WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3"
                ))?;
                let left = stmt.query_map(params![cursor, through, from_range as i64], delivery)?;
                Ok((again, left.collect::<rusqlite::Result<Vec<_>>>()?))
            })
            .await?;
        for id in &again {
            held.released.remove(id);
        }
        if from_range > 0 {
            held.cursor = match left.last() {
                Some(d) if left.len() == from_range => d.id,
                _ => through,
            };
        }
        deliveries.extend(left);
        deliveries.sort_unstable_by_key(|d| d.id);
        Ok(Claimed { lease: self.lease(), deliveries })
    }

    /// Renewing is checking: a held row stays held while the process runs.
    pub async fn renew(&self, ids: &[i64]) -> Result<Renewal, StoreError> {
        let held = self.holdings.lock().await;
        let (mine, mut lost): (Vec<i64>, Vec<i64>) = ids.iter().copied().partition(|id| held.holds(*id));
        let list = id_list(&mine);
        let present: BTreeSet<i64> = self
            .read(move |conn| {
                let mut stmt = conn.prepare(&format!("SELECT id FROM deliveries WHERE id IN ({list})"))?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        lost.extend(mine.into_iter().filter(|id| !present.contains(id)));
        lost.sort_unstable();
        Ok(Renewal { lease: self.lease(), lost })
    }

    /// Makes held `ids` claimable again (those not claimed yet already are).
    pub async fn release(&self, ids: &[i64]) {
        let mut held = self.holdings.lock().await;
        for &id in ids {
            if held.holds(id) {
                held.released.insert(id);
            }
        }
    }

    /// Deliveries succeeded: forget them, in one job.
    pub fn delivered_many(&self, ids: Vec<i64>) {
        if ids.is_empty() {
            return;
        }
        self.write_detached("delete of delivered rows", move |conn| {
            let mut stmt = conn.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
            for id in ids {
                stmt.execute([id])?;
            }
            Ok(())
        });
    }

    /// A delivery failed and will be retried at `next_attempt_ms`.
    pub fn reschedule(&self, id: i64, attempts: u32, next_attempt_ms: u64, status: Option<u16>, error: String) {
        self.write_detached("retry bookkeeping", move |conn| {
            conn.prepare_cached(
                "UPDATE deliveries SET attempts = ?2, next_attempt_ms = ?3, last_status = ?4, last_error = ?5 WHERE id = ?1",
            )?
            .execute(params![id, attempts, next_attempt_ms as i64, status, error])?;
            Ok(())
        });
    }

    /// Moves a delivery to the DLQ, durably, with why it failed.
    pub async fn dead_letter(
        &self,
        id: i64,
        attempts: u32,
        reason: &str,
        status: Option<u16>,
        error: String,
    ) -> Result<(), StoreError> {
        let reason = reason.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO dlq (tenant, route, idempotency_key, event_kind, key, policy_version, redactions, payload,
                                  event, attempts, reason, last_status, last_error, created_ms, dead_ms)
                 SELECT tenant, route, idempotency_key, event_kind, key, policy_version, redactions, payload,
                        event, ?2, ?3, ?4, ?5, created_ms, ?6 FROM deliveries WHERE id = ?1",
            )?
            .execute(params![id, attempts, reason, status, error, now_ms() as i64])?;
            conn.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?.execute([id])?;
            Ok(())
        })
        .await
    }
}
