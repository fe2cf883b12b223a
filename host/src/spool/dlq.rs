//! The dead-letter queue: list (paged), show, replay (as-is or through the current
//! policy), purge, and retention. Entries keep tenant, route, idempotency key, the
//! original event (where the tenant keeps it), the last payload, attempts, last status /
//! error and timestamps. Ids are never reused, and every write names the tenant in the
//! statement that changes the row.

use super::{insert_shaped, raw_json, AcceptItem, Spool, SpoolError, EVENT_NOT_KEPT};
use crate::clock::now_ms;
use crate::record::{Delivery, TenantId};
use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize)]
pub struct DlqEntry {
    pub id: i64,
    pub tenant: String,
    /// `None` for a policy fault (nothing was shaped).
    pub route: Option<String>,
    pub idempotency_key: String,
    pub event_kind: String,
    pub key: Option<String>,
    pub policy_version: Option<String>,
    pub redactions: Vec<String>,
    /// The last payload the policy produced, if any.
    pub payload: Option<Box<RawValue>>,
    /// The original event as received; `None` (JSON `null`) when the tenant had
    /// `keep_original = false`.
    pub event: Option<Box<RawValue>>,
    pub attempts: u32,
    pub reason: String,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_ms: u64,
    pub dead_ms: u64,
}

/// Which entries an operation applies to; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct DlqFilter {
    pub tenant: Option<String>,
    pub route: Option<String>,
    /// Dead-lettered at or after this time.
    pub since_ms: Option<u64>,
    pub ids: Option<Vec<i64>>,
    /// Ids above this one (the cursor of a paged listing).
    pub after: Option<i64>,
    /// Ids up to this one: a sweep over "all" entries stops at the entries that existed
    /// when it began, not at the new ones its own replays dead-letter.
    pub through: Option<i64>,
    pub limit: Option<usize>,
}

impl DlqFilter {
    fn where_clause(&self) -> (String, Vec<Box<dyn ToSql + Send>>) {
        let mut clauses = vec!["1 = 1".to_string()];
        let mut args: Vec<Box<dyn ToSql + Send>> = Vec::new();
        if let Some(t) = &self.tenant {
            args.push(Box::new(t.clone()));
            clauses.push(format!("tenant = ?{}", args.len()));
        }
        if let Some(r) = &self.route {
            args.push(Box::new(r.clone()));
            clauses.push(format!("route = ?{}", args.len()));
        }
        if let Some(s) = self.since_ms {
            args.push(Box::new(s as i64));
            clauses.push(format!("dead_ms >= ?{}", args.len()));
        }
        if let Some(a) = self.after {
            args.push(Box::new(a));
            clauses.push(format!("id > ?{}", args.len()));
        }
        if let Some(t) = self.through {
            args.push(Box::new(t));
            clauses.push(format!("id <= ?{}", args.len()));
        }
        if let Some(ids) = &self.ids {
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            clauses.push(format!("id IN ({})", if list.is_empty() { "NULL".to_string() } else { list.join(",") }));
        }
        (clauses.join(" AND "), args)
    }
}

/// One page of a listing: `next` is the cursor (`after`) of the following page, `None`
/// on the last page.
#[derive(Debug, Clone, Serialize)]
pub struct DlqPage {
    pub entries: Vec<DlqEntry>,
    pub next: Option<i64>,
}

/// What an as-is replay did.
#[derive(Debug, Default)]
pub struct Requeued {
    /// The new deliveries, for the route queues.
    pub deliveries: Vec<Delivery>,
    /// Entries left in place: policy faults have no payload to resend.
    pub skipped: Vec<i64>,
    /// The highest id the replay looked at (the cursor of the next page), if any.
    pub last_id: Option<i64>,
}

/// Most rows one purge job deletes, so a purge of a large DLQ does not hold the writer.
const PURGE_BATCH: usize = 2000;

pub(crate) const COLUMNS: &str =
    "id, tenant, route, idempotency_key, event_kind, key, policy_version, redactions, payload, event,
                       attempts, reason, last_status, last_error, created_ms, dead_ms";

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

fn select(conn: &Connection, filter: &DlqFilter) -> rusqlite::Result<Vec<DlqEntry>> {
    let (clause, args) = filter.where_clause();
    let limit = filter.limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
    let sql = format!("SELECT {COLUMNS} FROM dlq WHERE {clause} ORDER BY id{limit}");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter().map(|a| a as &dyn ToSql)), entry)?;
    rows.collect()
}

impl Spool {
    pub async fn dlq_list(&self, filter: &DlqFilter) -> Result<Vec<DlqEntry>, SpoolError> {
        let filter = filter.clone();
        self.read(move |conn| select(conn, &filter)).await
    }

    /// At most `limit` entries matching `filter` after its cursor, oldest first, and the
    /// cursor of the next page.
    pub async fn dlq_page(&self, filter: &DlqFilter, limit: usize) -> Result<DlqPage, SpoolError> {
        let filter = DlqFilter { limit: Some(limit.saturating_add(1)), ..filter.clone() };
        let mut entries = self.read(move |conn| select(conn, &filter)).await?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = if more { entries.last().map(|e| e.id) } else { None };
        Ok(DlqPage { entries, next })
    }

    pub async fn dlq_get(&self, id: i64) -> Result<Option<DlqEntry>, SpoolError> {
        self.read(move |conn| {
            conn.query_row(&format!("SELECT {COLUMNS} FROM dlq WHERE id = ?1"), [id], entry).optional()
        })
        .await
    }

    /// The highest id in the DLQ now (0 when empty).
    pub async fn dlq_max_id(&self) -> Result<i64, SpoolError> {
        self.read(|conn| conn.query_row("SELECT coalesce(max(id), 0) FROM dlq", [], |r| r.get(0))).await
    }

    /// Deletes the matching entries; returns how many. The filter's tenant (a tenant
    /// caller's own, always) is part of each delete statement, and a purge of many
    /// entries runs as several jobs of at most [`PURGE_BATCH`] rows.
    pub async fn dlq_purge(&self, filter: &DlqFilter) -> Result<usize, SpoolError> {
        let mut remaining = filter.limit.unwrap_or(usize::MAX);
        let mut total = 0;
        while remaining > 0 {
            let batch = remaining.min(PURGE_BATCH);
            let filter = DlqFilter { limit: None, ..filter.clone() };
            let n = self
                .write(move |conn| {
                    let (clause, args) = filter.where_clause();
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
    pub async fn dlq_requeue(&self, filter: &DlqFilter) -> Result<Requeued, SpoolError> {
        let filter = filter.clone();
        self.write(move |conn| {
            let now = now_ms();
            let entries = select(conn, &filter)?;
            let mut out = Requeued { last_id: entries.last().map(|e| e.id), ..Requeued::default() };
            for e in entries {
                let (Some(route), Some(payload)) = (e.route.clone(), e.payload) else {
                    out.skipped.push(e.id);
                    continue;
                };
                let copied = conn
                    .prepare_cached(
                        "INSERT INTO deliveries (tenant, route, idempotency_key, event_kind, key, policy_version, redactions,
                                                 payload, event, next_attempt_ms, created_ms)
                         SELECT tenant, route, idempotency_key, event_kind, key, policy_version, redactions, payload, event,
                                ?3, ?3 FROM dlq WHERE id = ?1 AND tenant = ?2",
                    )?
                    .execute(params![e.id, e.tenant, now as i64])?;
                if copied != 1 {
                    continue;
                }
                let id = conn.last_insert_rowid();
                conn.prepare_cached("DELETE FROM dlq WHERE id = ?1 AND tenant = ?2")?.execute(params![e.id, e.tenant])?;
                out.deliveries.push(Delivery {
                    id,
                    tenant: TenantId::from(e.tenant.as_str()),
                    route,
                    idempotency_key: e.idempotency_key,
                    event: e.event_kind,
                    key: e.key.unwrap_or_default(),
                    policy_version: Arc::from(e.policy_version.unwrap_or_default().as_str()),
                    redactions: e.redactions,
                    payload,
                    attempts: 0,
                    next_attempt_ms: now,
                    created_ms: now,
                });
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
    ) -> Result<Option<Vec<Delivery>>, SpoolError> {
        self.write(move |conn| {
            let removed =
                conn.prepare_cached("DELETE FROM dlq WHERE id = ?1 AND tenant = ?2")?.execute(params![id, &*tenant])?;
            if removed != 1 {
                return Ok(None);
            }
            insert_shaped(conn, &tenant, &item, now_ms()).map(Some)
        })
        .await
    }
}
