//! The `dlq` table: its row mapper and the DLQ operations — list, show, replay (as-is
//! or through the current policy), purge, and retention. Ids are never reused
//! (`AUTOINCREMENT`), and every write names the tenant in the statement that changes
//! the row.

use super::accept::insert_shaped;
use super::deliveries::{delivery, delivery_columns};
use super::{raw_json, SqliteStore, EVENT_NOT_KEPT};
use crate::clock::now_ms;
use crate::record::{Delivery, TenantId};
use crate::store::{AcceptItem, DlqEntry, DlqFilter, Requeued, StoreError};
use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// Most rows one purge job deletes, so a purge of a large DLQ does not hold the writer.
const PURGE_BATCH: usize = 2000;

/// The columns [`entry`] reads, in its order.
pub(super) const COLUMNS: &str =
    "id, tenant, route, idempotency_key, event_kind, key, policy_version, redactions, payload, event,
                       attempts, reason, last_status, last_error, created_ms, dead_ms";

/// One `dlq` row ([`COLUMNS`]) as an entry.
fn entry(r: &Row<'_>) -> rusqlite::Result<DlqEntry> {
    Ok(DlqEntry {
        id: r.get(0)?,
        tenant: r.get(1)?,
        route: r.get(2)?,
        idempotency_key: r.get(3)?,
        event_kind: r.get(4)?,
        key: r.get(5)?,
        policy_version: r.get(6)?,
        redactions: r.get::<_, Option<String>>(7)?.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default(),
        payload: r.get::<_, Option<String>>(8)?.map(raw_json),
        event: Some(r.get::<_, String>(9)?).filter(|t| t != EVENT_NOT_KEPT).map(raw_json),
        attempts: r.get(10)?,
        reason: r.get(11)?,
        last_status: r.get(12)?,
        last_error: r.get(13)?,
        created_ms: r.get::<_, i64>(14)? as u64,
        dead_ms: r.get::<_, i64>(15)? as u64,
    })
}

/// Dead-letters a policy fault of `item` (no route, no payload), with `event` (the
/// original event, or `EVENT_NOT_KEPT`).
pub(super) fn insert_fault(
    conn: &Connection,
    tenant: &TenantId,
    item: &AcceptItem,
    event: &str,
    reason: &str,
    error: &str,
    now: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO dlq (tenant, idempotency_key, event_kind, policy_version, event, attempts, reason, last_error,
                          created_ms, dead_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?8)",
    )?
    .execute(params![
        tenant.as_str(),
        item.idempotency_key,
        item.event_kind,
        &*item.policy_version,
        event,
        reason,
        error,
        now as i64
    ])?;
    Ok(())
}

/// The `WHERE` clause selecting `filter`'s entries, and its arguments.
fn where_clause(filter: &DlqFilter) -> (String, Vec<Box<dyn ToSql + Send>>) {
    let mut clauses = vec!["1 = 1".to_string()];
    let mut args: Vec<Box<dyn ToSql + Send>> = Vec::new();
    if let Some(t) = &filter.tenant {
        args.push(Box::new(t.clone()));
        clauses.push(format!("tenant = ?{}", args.len()));
    }
    if let Some(r) = &filter.route {
        args.push(Box::new(r.clone()));
        clauses.push(format!("route = ?{}", args.len()));
    }
    if let Some(s) = filter.since_ms {
        args.push(Box::new(s as i64));
        clauses.push(format!("dead_ms >= ?{}", args.len()));
    }
    if let Some(a) = filter.after {
        args.push(Box::new(a));
        clauses.push(format!("id > ?{}", args.len()));
    }
    if let Some(t) = filter.through {
        args.push(Box::new(t));
        clauses.push(format!("id <= ?{}", args.len()));
    }
    if let Some(ids) = &filter.ids {
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        clauses.push(format!("id IN ({})", if list.is_empty() { "NULL".to_string() } else { list.join(",") }));
    }
    (clauses.join(" AND "), args)
}

fn select(conn: &Connection, filter: &DlqFilter) -> rusqlite::Result<Vec<DlqEntry>> {
    let (clause, args) = where_clause(filter);
    let limit = filter.limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
    let sql = format!("SELECT {COLUMNS} FROM dlq WHERE {clause} ORDER BY id{limit}");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter().map(|a| a as &dyn ToSql)), entry)?;
    rows.collect()
}

impl SqliteStore {
    pub async fn dlq_list(&self, filter: &DlqFilter) -> Result<Vec<DlqEntry>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| select(conn, &filter)).await
    }

    pub async fn dlq_get(&self, id: i64) -> Result<Option<DlqEntry>, StoreError> {
        self.read(move |conn| {
            conn.query_row(&format!("SELECT {COLUMNS} FROM dlq WHERE id = ?1"), [id], entry).optional()
        })
        .await
    }

    /// The highest id in the DLQ now (0 when empty).
    pub async fn dlq_max_id(&self) -> Result<i64, StoreError> {
        self.read(|conn| conn.query_row("SELECT coalesce(max(id), 0) FROM dlq", [], |r| r.get(0))).await
    }

    /// Deletes the matching entries; returns how many. The filter's tenant (a tenant
    /// caller's own, always) is part of each delete statement, and a purge of many
    /// entries runs as several jobs of at most [`PURGE_BATCH`] rows.
    pub async fn dlq_purge(&self, filter: &DlqFilter) -> Result<usize, StoreError> {
        let mut remaining = filter.limit.unwrap_or(usize::MAX);
        let mut total = 0;
        while remaining > 0 {
            let batch = remaining.min(PURGE_BATCH);
            let filter = DlqFilter { limit: None, ..filter.clone() };
            let n = self
                .write(move |conn| {
                    let (clause, args) = where_clause(&filter);
                    conn.execute(
                        &format!(
                            "DELETE FROM dlq WHERE id IN (SELECT id FROM dlq WHERE {clause} ORDER BY id LIMIT {batch})"
                        ),
                        rusqlite::params_from_iter(args.iter().map(|a| a as &dyn ToSql)),
                    )
                })
                .await?;
            total += n;
            remaining -= n;
            if n < batch {
                break;
            }
        }
        Ok(total)
    }

    /// Replays the entries `filter` selects as they are: each entry's last payload goes
    /// back to its route with a fresh retry schedule. Entries without a payload (policy
    /// faults) are left in place and listed in `skipped`. The select, the copy and the
    /// delete all carry the tenant (the filter's, and the entry's own).
    pub async fn dlq_requeue(&self, filter: &DlqFilter) -> Result<Requeued, StoreError> {
        let filter = filter.clone();
        self.write(move |conn| {
            let now = now_ms();
            let entries = select(conn, &filter)?;
            let mut out = Requeued { last_id: entries.last().map(|e| e.id), ..Requeued::default() };
            for e in entries {
                if e.route.is_none() || e.payload.is_none() {
                    out.skipped.push(e.id);
                    continue;
                }
                let copied = conn
                    .prepare_cached(concat!(
                        "INSERT INTO deliveries (tenant, route, idempotency_key, event_kind, key, policy_version,
                                                 redactions, payload, event, next_attempt_ms, created_ms)
                         SELECT tenant, route, idempotency_key, event_kind, key, policy_version, redactions, payload,
                                event, ?3, ?3 FROM dlq WHERE id = ?1 AND tenant = ?2
                         RETURNING ",
                        delivery_columns!()
                    ))?
                    .query_row(params![e.id, e.tenant, now as i64], delivery)
                    .optional()?;
                let Some(d) = copied else { continue };
                conn.prepare_cached("DELETE FROM dlq WHERE id = ?1 AND tenant = ?2")?
                    .execute(params![e.id, e.tenant])?;
                out.deliveries.push(d);
            }
            Ok(out)
        })
        .await
    }

    /// Replaces entry `id` of `tenant` with what the current policy made of its event:
    /// new deliveries, a new DLQ entry, or nothing (dropped). `None` when the entry is
    /// no longer there (purged or replayed meanwhile): then nothing is spooled.
    pub async fn dlq_replace(
        &self,
        id: i64,
        tenant: TenantId,
        item: AcceptItem,
    ) -> Result<Option<Vec<Delivery>>, StoreError> {
        self.write(move |conn| {
            let removed = conn
                .prepare_cached("DELETE FROM dlq WHERE id = ?1 AND tenant = ?2")?
                .execute(params![id, tenant.as_str()])?;
            if removed != 1 {
                return Ok(None);
            }
            insert_shaped(conn, &tenant, item, now_ms()).map(Some)
        })
        .await
    }

    /// Deletes DLQ entries dead-lettered before `cutoff_ms`, at most `batch` per job.
    pub async fn expire_dlq_before(&self, cutoff_ms: u64, batch: usize) -> Result<usize, StoreError> {
        self.delete_in_batches(
            "DELETE FROM dlq WHERE id IN (SELECT id FROM dlq WHERE dead_ms < ?1 ORDER BY dead_ms LIMIT ?2)",
            cutoff_ms,
            batch,
        )
        .await
    }
}
