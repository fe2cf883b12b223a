//! The spool: an embedded, crash-safe store (SQLite in WAL mode) of everything hostd
//! acknowledged and has not finished with — pending deliveries with their next attempt
//! time, the dead-letter queue, and the idempotency-key dedupe window.
//!
//! All writes go through one group-commit thread ([`writer`]); reads use their own
//! connection, so listing the DLQ never waits for a commit.

pub mod data_dir;
pub mod dlq;
mod writer;

pub use dlq::{DlqEntry, DlqFilter, DlqPage, Requeued};

use crate::clock::now_ms;
use crate::config::Durability;
use crate::record::{Delivery, TenantId};
use data_dir::DataDirLock;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::value::RawValue;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use writer::{Job, JobOutcome, WriterHealth};

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
    /// The event as received, kept for the DLQ and replay through the policy; `None`
    /// for a tenant with `keep_original = false` (nothing unredacted is stored).
    pub event: Option<Box<RawValue>>,
    pub shaped: Shaped,
}

/// What the `event` column holds for an event that was not kept (a real event is
/// always a JSON object).
pub(crate) const EVENT_NOT_KEPT: &str = "null";

/// What the spool did with one accepted event.
#[derive(Debug)]
pub struct Accepted {
    pub duplicate: bool,
    /// The spooled deliveries, ready for the delivery stage.
    pub deliveries: Vec<Delivery>,
}

/// Pending deliveries and DLQ entries, counted in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depths {
    pub pending: u64,
    pub dead: u64,
}

/// The last count of [`Depths`], or why it failed, and when it was taken.
#[derive(Debug, Clone)]
pub struct DepthSample {
    pub depths: Result<Depths, String>,
    pub at: Instant,
}

/// Most rows one expiry job (dedupe keys, DLQ retention) deletes: each batch is its
/// own job, so an ingest commit queues behind at most one batch, never a whole sweep.
pub const EXPIRY_BATCH: usize = 500;

/// How long a readiness probe write may take before the spool counts as not writing.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Shortest time between two probe writes, however often readiness is asked.
const PROBE_EVERY: Duration = Duration::from_secs(1);

pub struct Spool {
    path: PathBuf,
    jobs: Mutex<mpsc::Sender<Job>>,
    reader: Arc<Mutex<Connection>>,
    health: Arc<WriterHealth>,
    last_depths: Mutex<Option<DepthSample>>,
    last_probe: Mutex<Option<Instant>>,
    /// Held for the life of the spool: no second hostd opens the same data_dir.
    _lock: DataDirLock,
}

impl Spool {
    /// Opens (creating if needed) `data_dir/spool.db`: locks `data_dir` against another
    /// hostd, creates or tightens it to 0700 and the spool files to 0600, and creates or
    /// migrates the schema.
    pub fn open(data_dir: &Path, durability: Durability) -> Result<Spool, SpoolError> {
        let path = data_dir.join("spool.db");
        let err = |message: String| SpoolError { path: path.display().to_string(), message };
        let lock = data_dir::lock(data_dir).map_err(|e| err(e.to_string()))?;
        data_dir::create_private_file(&path).map_err(|e| err(format!("cannot create it 0600: {e}")))?;
        for suffix in ["-wal", "-shm"] {
            let file = data_dir.join(format!("spool.db{suffix}"));
            data_dir::tighten(&file, data_dir::FILE_MODE)
                .map_err(|e| err(format!("cannot restrict {}: {e}", file.display())))?;
        }
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
        let mut write_conn = open().map_err(|e| err(format!("cannot open: {e}")))?;
        create_schema(&mut write_conn).map_err(|e| err(format!("cannot create or migrate the schema: {e}")))?;
        let reader = open().map_err(|e| err(format!("cannot open a read connection: {e}")))?;
        let health = Arc::new(WriterHealth::default());
        let jobs = writer::spawn(write_conn, durability == Durability::Fsync, health.clone())
            .map_err(|e| err(format!("cannot start the writer thread: {e}")))?;
        Ok(Spool {
            path,
            jobs: Mutex::new(jobs),
            reader: Arc::new(Mutex::new(reader)),
            health,
            last_depths: Mutex::new(None),
            last_probe: Mutex::new(None),
            _lock: lock,
        })
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
        self.write_job(true, f).await
    }

    /// [`Spool::write`] for bookkeeping whose loss in a power cut is harmless (expiry):
    /// answers after the commit, without asking for its own fsync.
    pub async fn write_relaxed<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, SpoolError> {
        self.write_job(false, f).await
    }

    async fn write_job<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, String>>();
        let run = Box::new(move |conn: &Connection| match f(conn) {
            Ok(v) => JobOutcome {
                ok: true,
                error: None,
                complete: Box::new(move |commit| {
                    let _ = tx.send(commit.map(|()| v));
                }),
            },
            Err(e) => {
                let msg = e.to_string();
                JobOutcome {
                    ok: false,
                    error: Some(msg.clone()),
                    complete: Box::new(move |_| {
                        let _ = tx.send(Err(msg));
                    }),
                }
            }
        });
        let job = Job { durable, run };
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
            let error = result.err().map(|e| {
                tracing::error!("spool {what} failed: {e}");
                format!("{what}: {e}")
            });
            JobOutcome { ok: error.is_none(), error, complete: Box::new(|_| {}) }
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

    /// Why the spool cannot write, if it cannot: the writer's last batch failed (its
    /// commit or a job: disk full, read-only, I/O error) or its thread stopped. While
    /// failing, a call probes with a real durable write (at most one a second), so a
    /// recovered disk is noticed without waiting for traffic, which a not-ready instance
    /// does not get.
    pub async fn write_failure(&self) -> Option<String> {
        let failure = self.health.failure()?;
        {
            let mut last = self.last_probe.lock().expect("probe time lock");
            if last.is_some_and(|t| t.elapsed() < PROBE_EVERY) {
                return Some(failure);
            }
            *last = Some(Instant::now());
        }
        let probe = self.write(|conn| {
            conn.prepare_cached("INSERT OR REPLACE INTO write_probe (id, probed_ms) VALUES (1, ?1)")?
                .execute([now_ms() as i64])
        });
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(_)) => self.health.failure(),
            Ok(Err(e)) => Some(e.message),
            Err(_) => Some(format!("a probe write did not commit within {PROBE_TIMEOUT:?}")),
        }
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
        tenant: TenantId,
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

    /// Pending deliveries and DLQ entries, counted now on the read connection.
    pub async fn depths(&self) -> Result<Depths, SpoolError> {
        self.read(|conn| {
            let pending: i64 = conn.query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))?;
            let dead: i64 = conn.query_row("SELECT count(*) FROM dlq", [], |r| r.get(0))?;
            Ok(Depths { pending: pending as u64, dead: dead as u64 })
        })
        .await
    }

    /// Counts [`Spool::depths`] and keeps the result (or the error) as the last sample.
    pub async fn sample_depths(&self) -> Result<Depths, SpoolError> {
        let depths = self.depths().await;
        let sample = DepthSample { depths: depths.clone().map_err(|e| e.message), at: Instant::now() };
        *self.last_depths.lock().expect("depth sample lock") = Some(sample);
        depths
    }

    /// The last [`Spool::sample_depths`], if one was taken.
    pub fn last_depths(&self) -> Option<DepthSample> {
        self.last_depths.lock().expect("depth sample lock").clone()
    }

    /// Forgets idempotency keys older than the window, in batches; returns how many.
    pub async fn expire_keys(&self, dedupe_window: Duration) -> Result<usize, SpoolError> {
        let cutoff = now_ms().saturating_sub(dedupe_window.as_millis() as u64);
        self.expire_keys_before(cutoff, EXPIRY_BATCH).await
    }

    /// Deletes idempotency keys accepted before `cutoff_ms`, at most `batch` per job.
    pub async fn expire_keys_before(&self, cutoff_ms: u64, batch: usize) -> Result<usize, SpoolError> {
        self.delete_in_batches(
            "DELETE FROM dedupe WHERE (tenant, idempotency_key) IN
               (SELECT tenant, idempotency_key FROM dedupe WHERE accepted_ms < ?1 LIMIT ?2)",
            cutoff_ms,
            batch,
        )
        .await
    }

    /// Deletes DLQ entries dead-lettered longer than `retention` ago, in batches;
    /// returns how many.
    pub async fn expire_dlq(&self, retention: Duration) -> Result<usize, SpoolError> {
        let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
        self.expire_dlq_before(cutoff, EXPIRY_BATCH).await
    }

    /// Deletes DLQ entries dead-lettered before `cutoff_ms`, at most `batch` per job.
    pub async fn expire_dlq_before(&self, cutoff_ms: u64, batch: usize) -> Result<usize, SpoolError> {
        self.delete_in_batches(
            "DELETE FROM dlq WHERE id IN (SELECT id FROM dlq WHERE dead_ms < ?1 ORDER BY dead_ms LIMIT ?2)",
            cutoff_ms,
            batch,
        )
        .await
    }

    /// Runs `sql` (a delete taking the cutoff and the batch size) as one job per batch
    /// until a batch deletes fewer than `batch` rows.
    async fn delete_in_batches(&self, sql: &'static str, cutoff_ms: u64, batch: usize) -> Result<usize, SpoolError> {
        let batch = batch.max(1);
        let mut total = 0;
        loop {
            let n = self
                .write_relaxed(move |conn| conn.prepare_cached(sql)?.execute(params![cutoff_ms as i64, batch as i64]))
                .await?;
            total += n;
            if n < batch {
                return Ok(total);
            }
        }
    }
}

/// Creates the schema, migrating an older spool in the same transaction: a `dlq` table
/// made before ids were `AUTOINCREMENT` (so a purged id could be handed to the next
/// dead letter, of any tenant) is rebuilt with every row and id kept.
fn create_schema(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let dlq_sql: Option<String> = tx
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'dlq'", [], |r| r.get(0))
        .optional()?;
    let migrate = dlq_sql.is_some_and(|sql| !sql.to_ascii_uppercase().contains("AUTOINCREMENT"));
    if migrate {
        tx.execute_batch("ALTER TABLE dlq RENAME TO dlq_reusing_ids; DROP INDEX IF EXISTS dlq_by_tenant;")?;
    }
    tx.execute_batch(include_str!("schema.sql"))?;
    if migrate {
        let columns = dlq::COLUMNS;
        let n =
            tx.execute(&format!("INSERT INTO dlq ({columns}) SELECT {columns} FROM dlq_reusing_ids ORDER BY id"), [])?;
        tx.execute_batch("DROP TABLE dlq_reusing_ids")?;
        tracing::info!("spool: migrated the DLQ to ids that are never reused ({n} entries kept)");
    }
    tx.commit()
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
    tenant: &TenantId,
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
                stored_event(item),
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
                    stored_event(item),
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

/// What the `event` column gets for `item`: the event, or [`EVENT_NOT_KEPT`].
fn stored_event(item: &AcceptItem) -> &str {
    item.event.as_deref().map(RawValue::get).unwrap_or(EVENT_NOT_KEPT)
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
            event: Some(RawValue::from_string(r#"{"event":"on_tool_end","run_id":"r"}"#.into()).unwrap()),
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
        let tenant = TenantId::from("acme");
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
        let other = spool.accept(TenantId::from("globex"), vec![item("k1", deliver("a"))], window).await.unwrap();
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
        assert_eq!(spool.depths().await.unwrap(), Depths { pending: 0, dead: 2 });
        let entries = spool.dlq_list(&DlqFilter::default()).await.unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].reason, "trap");
        assert_eq!(entries[1].attempts, 4);
        assert_eq!(entries[1].last_status, Some(503));
    }

    fn fault() -> Shaped {
        Shaped::Fault { reason: "trap".into(), error: "boom".into() }
    }

    /// Dead-letters one policy fault per key for `tenant`; returns the new entries' ids.
    async fn faults(spool: &Spool, tenant: &str, keys: &[&str]) -> Vec<i64> {
        let items = keys.iter().map(|k| item(k, fault())).collect();
        spool.accept(TenantId::from(tenant), items, Duration::from_secs(60)).await.unwrap();
        let filter = DlqFilter { tenant: Some(tenant.into()), ..DlqFilter::default() };
        let entries = spool.dlq_list(&filter).await.unwrap();
        entries.iter().filter(|e| keys.contains(&e.idempotency_key.as_str())).map(|e| e.id).collect()
    }

    #[tokio::test]
    async fn a_purged_dlq_id_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), Durability::Os).unwrap();
        let first = faults(&spool, "acme", &["k1", "k2"]).await;
        let top = *first.iter().max().unwrap();
        spool.dlq_purge(&DlqFilter { ids: Some(vec![top]), ..DlqFilter::default() }).await.unwrap();
        let next = faults(&spool, "globex", &["k3"]).await;
        assert!(next[0] > top, "the next entry took id {} after {top} was purged", next[0]);
        // Across a restart too (the sequence is in the file).
        drop(spool);
        let spool = Spool::open(dir.path(), Durability::Os).unwrap();
        spool.dlq_purge(&DlqFilter::default()).await.unwrap();
        let after_restart = faults(&spool, "globex", &["k4"]).await;
        assert!(after_restart[0] > next[0]);
    }

    /// The `dlq` table as spools made before ids were AUTOINCREMENT have it.
    const OLD_DLQ: &str = "CREATE TABLE dlq (
      id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, route TEXT, idempotency_key TEXT NOT NULL,
      event_kind TEXT NOT NULL, key TEXT, policy_version TEXT, redactions TEXT, payload TEXT, event TEXT NOT NULL,
      attempts INTEGER NOT NULL, reason TEXT NOT NULL, last_status INTEGER, last_error TEXT,
      created_ms INTEGER NOT NULL, dead_ms INTEGER NOT NULL);
      CREATE INDEX dlq_by_tenant ON dlq (tenant, dead_ms);";

    #[tokio::test]
    async fn an_old_dlq_is_migrated_keeping_rows_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("spool.db")).unwrap();
            conn.execute_batch(OLD_DLQ).unwrap();
            for (id, tenant) in [(3, "acme"), (7, "globex")] {
                conn.execute(
                    "INSERT INTO dlq (id, tenant, idempotency_key, event_kind, event, attempts, reason, created_ms, dead_ms)
                     VALUES (?1, ?2, 'k', 'on_tool_end', '{}', 1, 'trap', 1, 2)",
                    params![id, tenant],
                )
                .unwrap();
            }
        }
        let spool = Spool::open(dir.path(), Durability::Os).unwrap();
        let entries = spool.dlq_list(&DlqFilter::default()).await.unwrap();
        assert_eq!(entries.iter().map(|e| (e.id, e.tenant.as_str())).collect::<Vec<_>>(), [(3, "acme"), (7, "globex")]);
        let sql: String = spool
            .read(|c| c.query_row("SELECT sql FROM sqlite_master WHERE name = 'dlq'", [], |r| r.get(0)))
            .await
            .unwrap();
        assert!(sql.contains("AUTOINCREMENT"), "{sql}");
        let tables: i64 = spool
            .read(|c| {
                c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'dlq_reusing_ids'", [], |r| r.get(0))
            })
            .await
            .unwrap();
        assert_eq!(tables, 0, "the old table is gone");
        spool.dlq_purge(&DlqFilter { ids: Some(vec![7]), ..DlqFilter::default() }).await.unwrap();
        assert!(faults(&spool, "acme", &["new"]).await[0] > 7);
    }

    #[tokio::test]
    async fn dlq_writes_check_the_tenant_in_the_statement() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), Durability::Os).unwrap();
        let b = faults(&spool, "globex", &["b"]).await[0];
        spool.accept(TenantId::from("globex"), vec![item("bd", deliver("a"))], Duration::from_secs(60)).await.unwrap();
        let pending = spool.pending().await.unwrap();
        spool.dead_letter(pending[0].id, 1, "exhausted", Some(503), "HTTP 503".into()).await.unwrap();
        let as_acme = |ids: Vec<i64>| DlqFilter { ids: Some(ids), tenant: Some("acme".into()), ..DlqFilter::default() };
        let all: Vec<i64> = spool.dlq_list(&DlqFilter::default()).await.unwrap().iter().map(|e| e.id).collect();
        assert_eq!(spool.dlq_purge(&as_acme(all.clone())).await.unwrap(), 0);
        let requeued = spool.dlq_requeue(&as_acme(all.clone())).await.unwrap();
        assert!(requeued.deliveries.is_empty() && requeued.skipped.is_empty());
        let replaced = spool.dlq_replace(b, TenantId::from("acme"), item("x", Shaped::Dropped)).await.unwrap();
        assert!(replaced.is_none(), "acme's replace must not remove globex's entry");
        assert_eq!(spool.depths().await.unwrap(), Depths { pending: 0, dead: 2 });
        // The owner can.
        let own = DlqFilter { ids: Some(all), tenant: Some("globex".into()), ..DlqFilter::default() };
        let requeued = spool.dlq_requeue(&own).await.unwrap();
        assert_eq!((requeued.deliveries.len(), requeued.skipped, requeued.last_id), (1, vec![b], Some(b + 1)));
        assert!(spool.dlq_replace(b, TenantId::from("globex"), item("b", Shaped::Dropped)).await.unwrap().is_some());
        assert_eq!(spool.depths().await.unwrap(), Depths { pending: 1, dead: 0 });
    }

    #[tokio::test]
    async fn pages_follow_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), Durability::Os).unwrap();
        let keys: Vec<String> = (0..7).map(|i| format!("k{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        faults(&spool, "acme", &keys).await;
        let mut seen = Vec::new();
        let mut filter = DlqFilter::default();
        loop {
            let page = spool.dlq_page(&filter, 3).await.unwrap();
            assert!(page.entries.len() <= 3);
            seen.extend(page.entries.iter().map(|e| e.idempotency_key.clone()));
            match page.next {
                Some(n) => filter.after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, keys);
    }

    /// Spools a delivery (then dead-letters it) and a policy fault of an event holding
    /// `marker`, keeping the original or not; answers whether the marker is in the files.
    async fn marker_stored(keep_original: bool) -> bool {
        let marker = "MARKER-0e5b";
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), Durability::Os).unwrap();
        let original = RawValue::from_string(format!(r#"{{"event":"on_tool_end","data":"{marker}"}}"#)).unwrap();
        let with =
            |key: &str, shaped| AcceptItem { event: keep_original.then(|| original.clone()), ..item(key, shaped) };
        let items = vec![with("k1", deliver("a")), with("k2", fault())];
        spool.accept(TenantId::from("acme"), items, Duration::from_secs(60)).await.unwrap();
        let pending = spool.pending().await.unwrap();
        spool.dead_letter(pending[0].id, 1, "exhausted", None, "down".into()).await.unwrap();
        let entries = spool.dlq_list(&DlqFilter::default()).await.unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| e.event.is_some() == keep_original));
        if !keep_original {
            assert!(serde_json::to_string(&entries[0]).unwrap().contains(r#""event":null"#));
        }
        drop(spool);
        ["spool.db", "spool.db-wal"].iter().any(|name| {
            let bytes = std::fs::read(dir.path().join(name)).unwrap_or_default();
            bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
        })
    }

    #[tokio::test]
    async fn an_event_not_kept_leaves_no_trace_in_the_files() {
        assert!(marker_stored(true).await, "a kept original is found in the files");
        assert!(!marker_stored(false).await, "the original was not kept, yet it is in the files");
    }

    #[tokio::test]
    async fn retention_deletes_old_entries_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), Durability::Os).unwrap();
        let ids = faults(&spool, "acme", &["a", "b", "c", "d", "e"]).await;
        // Three entries died at t=1000, two at t=5000.
        let (old, young) = (ids[..3].to_vec(), ids[3..].to_vec());
        spool
            .write(move |c| {
                for (id, t) in old.iter().map(|i| (*i, 1000)).chain(young.iter().map(|i| (*i, 5000))) {
                    c.execute("UPDATE dlq SET dead_ms = ?2 WHERE id = ?1", params![id, t])?;
                }
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(spool.expire_dlq_before(1000, 2).await.unwrap(), 0, "strictly older than the cutoff");
        assert_eq!(spool.expire_dlq_before(4000, 2).await.unwrap(), 3);
        let left: Vec<i64> = spool.dlq_list(&DlqFilter::default()).await.unwrap().iter().map(|e| e.id).collect();
        assert_eq!(left, ids[3..]);
        // A tiny retention, on the real clock.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(spool.expire_dlq(Duration::from_millis(1)).await.unwrap(), 2);
        assert_eq!(spool.depths().await.unwrap().dead, 0);
    }

    #[tokio::test]
    async fn dedupe_expiry_uses_the_index_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), Durability::Os).unwrap();
        let items = (0..25).map(|i| item(&format!("k{i}"), Shaped::Dropped)).collect();
        spool.accept(TenantId::from("acme"), items, Duration::from_secs(60)).await.unwrap();
        let plan: Vec<String> = spool
            .read(|c| {
                let mut stmt = c.prepare(
                    "EXPLAIN QUERY PLAN SELECT tenant, idempotency_key FROM dedupe WHERE accepted_ms < ?1 LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![0, 1], |r| r.get::<_, String>(3))?;
                rows.collect()
            })
            .await
            .unwrap();
        assert!(plan.iter().any(|p| p.contains("dedupe_by_accepted")), "{plan:?}");
        assert_eq!(spool.expire_keys_before(0, 10).await.unwrap(), 0);
        assert_eq!(spool.expire_keys_before(u64::MAX / 2, 10).await.unwrap(), 25);
        let again = spool.accept(TenantId::from("acme"), vec![item("k1", Shaped::Dropped)], Duration::from_secs(60));
        assert!(!again.await.unwrap()[0].duplicate, "the key was forgotten");
    }

    #[tokio::test]
    async fn a_failing_writer_is_reported_until_a_probe_commits() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), Durability::Fsync).unwrap();
        assert_eq!(spool.write_failure().await, None);
        // An injected failure: the writer's connection refuses every change (as a
        // read-only or failing disk would), which root's permissions cannot bypass.
        spool.write(|c| c.pragma_update(None, "query_only", true)).await.unwrap();
        let batch = spool.accept(TenantId::from("acme"), vec![item("k1", deliver("a"))], Duration::from_secs(60)).await;
        assert!(batch.unwrap_err().message.contains("readonly"), "the batch fails");
        let failure = spool.write_failure().await.expect("reported while writes fail");
        assert!(failure.contains("readonly"), "{failure}");
        assert!(spool.write_failure().await.is_some(), "no probe within a second: still failing");
        *spool.last_probe.lock().unwrap() = None;
        assert!(spool.write_failure().await.unwrap().contains("readonly"), "the probe write fails too");
        // The store can write again, but this job still fails: only the probe of the
        // next readiness check can find out.
        let restore = spool.write(|c| {
            c.pragma_update(None, "query_only", false)?;
            Err::<(), _>(rusqlite::Error::InvalidQuery)
        });
        assert!(restore.await.is_err());
        assert!(spool.health.failure().is_some());
        *spool.last_probe.lock().unwrap() = None;
        assert_eq!(spool.write_failure().await, None, "the probe committed");
        let batch = spool.accept(TenantId::from("acme"), vec![item("k1", deliver("a"))], Duration::from_secs(60)).await;
        assert_eq!(batch.unwrap()[0].deliveries.len(), 1);
    }

    #[tokio::test]
    async fn spool_files_are_private_and_the_dir_is_locked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spool = Spool::open(&data, Durability::Os).unwrap();
        spool.accept(TenantId::from("acme"), vec![item("k", deliver("a"))], Duration::from_secs(60)).await.unwrap();
        let mode = |name: &str| std::fs::metadata(data.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
        for name in ["spool.db", "spool.db-wal", "spool.db-shm", "LOCK"] {
            assert_eq!(mode(name), 0o600, "{name}");
        }
        let second = Spool::open(&data, Durability::Os).err().expect("a second spool on the same dir");
        assert!(second.message.contains("in use by another hostd"), "{}", second.message);
    }
}
