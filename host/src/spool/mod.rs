//! The spool: an embedded, crash-safe store (SQLite in WAL mode) of everything hostd
//! acknowledged and has not finished with — pending deliveries with their next attempt
//! time, the dead-letter queue, and the idempotency-key dedupe window.
//!
//! All writes go through one group-commit thread ([`writer`]); reads use their own
//! connection, so listing the DLQ never waits for a commit.

pub mod dlq;
mod writer;

pub use dlq::{DlqEntry, DlqFilter};

use crate::config::Durability;
use crate::delivery::clock::now_ms;
use crate::delivery::Delivery;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::value::RawValue;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use writer::{Job, JobOutcome};

#[derive(Debug, Clone, thiserror::Error)]
#[error("spool {path}: {message}")]
pub struct SpoolError {
    pub path: String,
    pub message: String,
}

/// A delivery the policy asked for, not yet spooled.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub route: String,
    pub key: String,
    pub redactions: Vec<String>,
    pub payload: Box<RawValue>,
}

/// What the policy made of one event.
#[derive(Debug, Clone)]
pub enum Shaped {
    Deliver(Vec<NewDelivery>),
    Dropped,
    /// The policy faulted; the event goes to the DLQ with the reason.
    Fault {
        reason: String,
        error: String,
    },
}

/// One accepted event on its way into the spool.
#[derive(Debug, Clone)]
pub struct AcceptItem {
    pub idempotency_key: String,
    pub event_kind: String,
    pub policy_version: Arc<str>,
    /// The event as received, kept for the DLQ and replay.
    pub event: Box<RawValue>,
    pub shaped: Shaped,
}

/// What the spool did with one accepted event.
#[derive(Debug)]
pub struct Accepted {
    pub duplicate: bool,
    /// The spooled deliveries, ready for the delivery stage.
    pub deliveries: Vec<Delivery>,
}

pub struct Spool {
    path: PathBuf,
    jobs: Mutex<mpsc::Sender<Job>>,
    reader: Arc<Mutex<Connection>>,
}

impl Spool {
    /// Opens (creating if needed) `data_dir/spool.db`.
    pub fn open(data_dir: &Path, durability: Durability) -> Result<Spool, SpoolError> {
        let path = data_dir.join("spool.db");
        let err = |message: String| SpoolError { path: path.display().to_string(), message };
        std::fs::create_dir_all(data_dir).map_err(|e| err(format!("cannot create {}: {e}", data_dir.display())))?;
        let sync = match durability {
            Durability::Fsync => "FULL",
            Durability::Os => "NORMAL",
            Durability::None => "OFF",
        };
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", sync)?;
            Ok(conn)
        };
        let write_conn = open().map_err(|e| err(format!("cannot open: {e}")))?;
        write_conn
            .execute_batch(include_str!("schema.sql"))
            .map_err(|e| err(format!("cannot create the schema: {e}")))?;
        let reader = open().map_err(|e| err(format!("cannot open a read connection: {e}")))?;
        let jobs = writer::spawn(write_conn, durability == Durability::Fsync)
            .map_err(|e| err(format!("cannot start the writer thread: {e}")))?;
        Ok(Spool { path, jobs: Mutex::new(jobs), reader: Arc::new(Mutex::new(reader)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, message: impl Into<String>) -> SpoolError {
        SpoolError { path: self.path.display().to_string(), message: message.into() }
    }

    /// Runs `f` in the next group commit and answers once it is durable.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, String>>();
        let run = Box::new(move |conn: &Connection| match f(conn) {
            Ok(v) => JobOutcome {
                ok: true,
                complete: Box::new(move |commit| {
                    let _ = tx.send(commit.map(|()| v));
                }),
            },
            Err(e) => {
                let msg = e.to_string();
                JobOutcome {
                    ok: false,
                    complete: Box::new(move |_| {
                        let _ = tx.send(Err(msg));
                    }),
                }
            }
        });
        let job = Job { durable: true, run };
        self.jobs.lock().expect("spool jobs lock").send(job).map_err(|_| self.error("the writer thread stopped"))?;
        rx.await.map_err(|_| self.error("the write was abandoned"))?.map_err(|m| self.error(m))
    }

    /// Queues a write nobody waits for (bookkeeping whose loss only means a repeat
    /// attempt after a crash, which at-least-once allows).
    pub fn write_detached(
        &self,
        what: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    ) {
        let run = Box::new(move |conn: &Connection| {
            let result = f(conn);
            let ok = result.is_ok();
            if let Err(e) = result {
                tracing::error!("spool {what} failed: {e}");
            }
            JobOutcome { ok, complete: Box::new(|_| {}) }
        });
        let job = Job { durable: false, run };
        if self.jobs.lock().expect("spool jobs lock").send(job).is_err() {
            tracing::error!("spool {what} lost: the writer thread stopped");
        }
    }

    /// Completes once every write queued before it has committed.
    pub async fn flush(&self) -> Result<(), SpoolError> {
        self.write(|_| Ok(())).await
    }

    /// Runs a read on the read connection, off the async workers.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let reader = self.reader.clone();
        let path = self.path.display().to_string();
        tokio::task::spawn_blocking(move || f(&reader.lock().expect("spool reader lock")))
            .await
            .map_err(|e| SpoolError { path: path.clone(), message: format!("read task failed: {e}") })?
            .map_err(|e| SpoolError { path, message: e.to_string() })
    }

    /// Makes a batch of accepted events durable: records each idempotency key (a
    /// repeat within `dedupe_window` is marked duplicate and spools nothing), spools
    /// the deliveries, and dead-letters policy faults. Answers after the commit.
    pub async fn accept(
        &self,
        tenant: Arc<str>,
        items: Vec<AcceptItem>,
        dedupe_window: Duration,
    ) -> Result<Vec<Accepted>, SpoolError> {
        self.write(move |conn| {
            let now = now_ms();
            let cutoff = now.saturating_sub(dedupe_window.as_millis() as u64);
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                if !claim_key(conn, &tenant, &item.idempotency_key, now, cutoff)? {
                    out.push(Accepted { duplicate: true, deliveries: vec![] });
                    continue;
                }
                let deliveries = insert_shaped(conn, &tenant, &item, now)?;
                out.push(Accepted { duplicate: false, deliveries });
            }
            Ok(out)
        })
        .await
    }

    /// Every delivery still pending, oldest first (to resume after a restart).
    pub async fn pending(&self) -> Result<Vec<Delivery>, SpoolError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, tenant, route, idempotency_key, event_kind, key, policy_version, redactions, payload,
                        attempts, next_attempt_ms, created_ms
                 FROM deliveries ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(Delivery {
                    id: r.get(0)?,
                    tenant: Arc::from(r.get::<_, String>(1)?),
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
            })?;
            rows.collect()
        })
        .await
    }

    /// A delivery succeeded: forget it.
    pub fn delivered(&self, id: i64) {
        self.delivered_many(vec![id]);
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
    ) -> Result<(), SpoolError> {
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

    /// Pending deliveries and DLQ entries, for metrics and health.
    pub async fn depths(&self) -> Result<(u64, u64), SpoolError> {
        self.read(|conn| {
            let pending: i64 = conn.query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))?;
            let dead: i64 = conn.query_row("SELECT count(*) FROM dlq", [], |r| r.get(0))?;
            Ok((pending as u64, dead as u64))
        })
        .await
    }

    /// Forgets idempotency keys older than the window.
    pub fn expire_keys(&self, dedupe_window: Duration) {
        self.write_detached("dedupe expiry", move |conn| {
            let cutoff = now_ms().saturating_sub(dedupe_window.as_millis() as u64);
            conn.execute("DELETE FROM dedupe WHERE accepted_ms < ?1", [cutoff as i64])?;
            Ok(())
        });
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

/// Spools what the policy made of one event (deliveries, or a DLQ entry for a fault).
pub(crate) fn insert_shaped(
    conn: &Connection,
    tenant: &Arc<str>,
    item: &AcceptItem,
    now: u64,
) -> rusqlite::Result<Vec<Delivery>> {
    match &item.shaped {
        Shaped::Dropped => Ok(vec![]),
        Shaped::Fault { reason, error } => {
            conn.prepare_cached(
                "INSERT INTO dlq (tenant, idempotency_key, event_kind, policy_version, event, attempts, reason, last_error,
                                  created_ms, dead_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?8)",
            )?
            .execute(params![
                &**tenant,
                item.idempotency_key,
                item.event_kind,
                &*item.policy_version,
                item.event.get(),
                reason,
                error,
                now as i64
            ])?;
            tracing::warn!(tenant = &**tenant, key = item.idempotency_key, reason, "dead-lettered: {error}");
            Ok(vec![])
        }
        Shaped::Deliver(list) => {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO deliveries (tenant, route, idempotency_key, event_kind, key, policy_version, redactions,
                                         payload, event, next_attempt_ms, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            )?;
            let mut out = Vec::with_capacity(list.len());
            for d in list {
                let redactions = serde_json::to_string(&d.redactions).expect("strings serialize");
                stmt.execute(params![
                    &**tenant,
                    d.route,
                    item.idempotency_key,
                    item.event_kind,
                    d.key,
                    &*item.policy_version,
                    redactions,
                    d.payload.get(),
                    item.event.get(),
                    now as i64
                ])?;
                out.push(Delivery {
                    id: conn.last_insert_rowid(),
                    tenant: tenant.clone(),
                    route: d.route.clone(),
                    idempotency_key: item.idempotency_key.clone(),
                    event: item.event_kind.clone(),
                    key: d.key.clone(),
                    policy_version: item.policy_version.clone(),
                    redactions: d.redactions.clone(),
                    payload: d.payload.clone(),
                    attempts: 0,
                    next_attempt_ms: now,
                    created_ms: now,
                });
            }
            Ok(out)
        }
    }
}

/// JSON text from the spool back into a `RawValue` (it was checked on the way in).
pub(crate) fn raw_json(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, shaped: Shaped) -> AcceptItem {
        AcceptItem {
            idempotency_key: key.into(),
            event_kind: "on_tool_end".into(),
            policy_version: Arc::from("v1"),
            event: RawValue::from_string(r#"{"event":"on_tool_end","run_id":"r"}"#.into()).unwrap(),
            shaped,
        }
    }

    fn deliver(route: &str) -> Shaped {
        Shaped::Deliver(vec![NewDelivery {
            route: route.into(),
            key: "root".into(),
            redactions: vec!["/data/x".into()],
            payload: RawValue::from_string(r#"{"a":1}"#.into()).unwrap(),
        }])
    }

    #[tokio::test]
    async fn accepts_dedupes_survives_reopen_and_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), Durability::Fsync).unwrap();
        let tenant: Arc<str> = Arc::from("acme");
        let window = Duration::from_secs(60);
        let out = spool
            .accept(
                tenant.clone(),
                vec![
                    item("k1", deliver("a")),
                    item("k2", Shaped::Fault { reason: "trap".into(), error: "boom".into() }),
                ],
                window,
            )
            .await
            .unwrap();
        assert!(!out[0].duplicate && out[0].deliveries.len() == 1);
        let again = spool.accept(tenant.clone(), vec![item("k1", deliver("a"))], window).await.unwrap();
        assert!(again[0].duplicate && again[0].deliveries.is_empty());
        // Another tenant may use the same key.
        let other = spool.accept(Arc::from("globex"), vec![item("k1", deliver("a"))], window).await.unwrap();
        assert!(!other[0].duplicate);
        drop(spool);

        let spool = Spool::open(dir.path(), Durability::Fsync).unwrap();
        let pending = spool.pending().await.unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].redactions, vec!["/data/x"]);
        assert_eq!(pending[0].payload.get(), r#"{"a":1}"#);
        spool.dead_letter(pending[0].id, 4, "exhausted", Some(503), "HTTP 503".into()).await.unwrap();
        spool.delivered(pending[1].id);
        spool.flush().await.unwrap();
        assert_eq!(spool.depths().await.unwrap(), (0, 2));
        let entries = spool.dlq_list(&DlqFilter::default()).await.unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].reason, "trap");
        assert_eq!(entries[1].attempts, 4);
        assert_eq!(entries[1].last_status, Some(503));
    }
}
