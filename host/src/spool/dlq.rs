//! The dead-letter queue: list, show, replay (as-is or through the current policy)
//! and purge. Entries keep tenant, route, idempotency key, the original event, the last
//! payload, attempts, last status / error and timestamps.

use super::{insert_shaped, raw_json, AcceptItem, Spool, SpoolError};
use crate::delivery::clock::now_ms;
use crate::delivery::Delivery;
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
    /// The original event as received.
    pub event: Box<RawValue>,
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
        if let Some(ids) = &self.ids {
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            clauses.push(format!("id IN ({})", if list.is_empty() { "NULL".to_string() } else { list.join(",") }));
        }
        (clauses.join(" AND "), args)
    }
}

const COLUMNS: &str = "id, tenant, route, idempotency_key, event_kind, key, policy_version, redactions, payload, event,
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
        event: raw_json(r.get(9)?),
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

    pub async fn dlq_get(&self, id: i64) -> Result<Option<DlqEntry>, SpoolError> {
        self.read(move |conn| {
            conn.query_row(&format!("SELECT {COLUMNS} FROM dlq WHERE id = ?1"), [id], entry).optional()
        })
        .await
    }

    /// Deletes the matching entries; returns how many.
    pub async fn dlq_purge(&self, filter: &DlqFilter) -> Result<usize, SpoolError> {
        let filter = filter.clone();
        self.write(move |conn| {
            let (clause, args) = filter.where_clause();
            conn.execute(
                &format!("DELETE FROM dlq WHERE {clause}"),
                rusqlite::params_from_iter(args.iter().map(|a| a as &dyn ToSql)),
            )
        })
        .await
    }

    /// Replays entries as they are: each entry's last payload goes back to its route
    /// with a fresh retry schedule. Entries without a payload (policy faults) are left
    /// in place and returned in the second list.
    pub async fn dlq_requeue(&self, ids: Vec<i64>) -> Result<(Vec<Delivery>, Vec<i64>), SpoolError> {
        self.write(move |conn| {
            let now = now_ms();
            let entries = select(conn, &DlqFilter { ids: Some(ids), ..DlqFilter::default() })?;
            let mut requeued = Vec::new();
            let mut skipped = Vec::new();
            for e in entries {
                let (Some(route), Some(payload)) = (e.route.clone(), e.payload) else {
                    skipped.push(e.id);
                    continue;
                };
                conn.prepare_cached(
                    "INSERT INTO deliveries (tenant, route, idempotency_key, event_kind, key, policy_version, redactions,
                                             payload, event, next_attempt_ms, created_ms)
                     SELECT tenant, route, idempotency_key, event_kind, key, policy_version, redactions, payload, event,
                            ?2, ?2 FROM dlq WHERE id = ?1",
                )?
                .execute(params![e.id, now as i64])?;
                let id = conn.last_insert_rowid();
                conn.prepare_cached("DELETE FROM dlq WHERE id = ?1")?.execute([e.id])?;
                requeued.push(Delivery {
                    id,
                    tenant: Arc::from(e.tenant.as_str()),
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
            Ok((requeued, skipped))
        })
        .await
    }

    /// Replaces entry `id` with what the current policy made of its event: new
    /// deliveries, a new DLQ entry, or nothing (dropped).
    pub async fn dlq_replace(&self, id: i64, tenant: Arc<str>, item: AcceptItem) -> Result<Vec<Delivery>, SpoolError> {
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM dlq WHERE id = ?1")?.execute([id])?;
            insert_shaped(conn, &tenant, &item, now_ms())
        })
        .await
    }
}
