//! The SQLite store: one node's embedded, crash-safe file (SQLite in WAL mode) at
//! `data_dir/spool.db`, locked to one hostd process.
//!
//! All writes go through one group-commit thread (`writer.rs`); reads use their own
//! connection, so listing the DLQ never waits for a commit. The lease of a claimed
//! delivery is the process (`deliveries.rs`).
//!
//! One row mapper per table: `deliveries` in `deliveries.rs`, `dlq` in `dlq.rs`, and
//! the `dedupe` keys in `accept.rs`; the control plane's tables in `control.rs` (reads)
//! and `control_apply.rs` (changes).

mod accept;
mod control;
mod control_apply;
mod deliveries;
mod dlq;
mod impl_store;
mod schema;
mod writer;

use super::data_dir::{self, DataDirLock};
use super::{DepthCache, DepthSample, Depths, LeaseOwner, StoreError, StoreErrorKind};
use crate::clock::now_ms;
use crate::config::Durability;
use crate::secret_key::SecretKey;
use deliveries::Holdings;
use rusqlite::{params, Connection};
use serde_json::value::RawValue;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use writer::{Job, JobOutcome, WriterHealth};

/// What the `event` column holds for an event that was not kept (a real event is
/// always a JSON object).
const EVENT_NOT_KEPT: &str = "null";

/// How long a readiness probe write may take before the spool counts as not writing.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Shortest time between two probe writes, however often readiness is asked.
const PROBE_EVERY: Duration = Duration::from_secs(1);

pub struct SqliteStore {
    path: PathBuf,
    /// `path` as text, for errors and logs.
    location: String,
    owner: LeaseOwner,
    jobs: Mutex<mpsc::Sender<Job>>,
    reader: Arc<Mutex<Connection>>,
    health: Arc<WriterHealth>,
    depths: DepthCache,
    last_probe: Mutex<Option<Instant>>,
    holdings: tokio::sync::Mutex<Holdings>,
    /// Seals and opens signing secrets ([`SqliteStore::with_secret_key`]).
    secret_key: Option<SecretKey>,
    /// Held for the life of the store: no second hostd opens the same data_dir.
    _lock: DataDirLock,
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/spool.db`: locks `data_dir` against another
    /// hostd, creates or tightens it to 0700 and the spool files to 0600, and creates or
    /// migrates the schema. The pending deliveries found there are this process's to
    /// claim.
    pub fn open(data_dir: &Path, durability: Durability) -> Result<SqliteStore, StoreError> {
        let path = data_dir.join("spool.db");
        let location = path.display().to_string();
        let err = |message: String| StoreError { kind: StoreErrorKind::Open, location: location.clone(), message };
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
        schema::create(&mut write_conn).map_err(|e| err(format!("cannot create or migrate the schema: {e}")))?;
        let holdings = Holdings::at_open(&write_conn).map_err(|e| err(format!("cannot read the deliveries: {e}")))?;
        let reader = open().map_err(|e| err(format!("cannot open a read connection: {e}")))?;
        let health = Arc::new(WriterHealth::default());
        let jobs = writer::spawn(write_conn, durability == Durability::Fsync, health.clone())
            .map_err(|e| err(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            owner: LeaseOwner::new(format!("hostd pid {} on {location}", std::process::id())),
            path,
            location,
            jobs: Mutex::new(jobs),
            reader: Arc::new(Mutex::new(reader)),
            health,
            depths: DepthCache::default(),
            last_probe: Mutex::new(None),
            holdings: tokio::sync::Mutex::new(holdings),
            secret_key: None,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, message: impl Into<String>) -> StoreError {
        StoreError { kind: StoreErrorKind::Unavailable, location: self.location.clone(), message: message.into() }
    }

    /// Runs `f` in the next group commit and answers once it is durable.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_job(true, f).await
    }

    /// [`SqliteStore::write`] for bookkeeping whose loss in a power cut is harmless
    /// (expiry): answers after the commit, without asking for its own fsync.
    pub async fn write_relaxed<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_job(false, f).await
    }

    async fn write_job<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
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

    /// Runs a read on the read connection, off the async workers.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || f(&reader.lock().expect("spool reader lock")))
            .await
            .map_err(|e| self.error(format!("read task failed: {e}")))?
            .map_err(|e| self.error(e.to_string()))
    }

    /// Completes once every write queued before it has committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
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

    /// Pending deliveries and DLQ entries, counted now on the read connection.
    pub async fn depths(&self) -> Result<Depths, StoreError> {
        self.read(|conn| {
            let pending: i64 = conn.query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))?;
            let dead: i64 = conn.query_row("SELECT count(*) FROM dlq", [], |r| r.get(0))?;
            Ok(Depths { pending: pending as u64, dead: dead as u64 })
        })
        .await
    }

    /// Counts [`SqliteStore::depths`] and keeps the result (or the error) as the last
    /// sample.
    pub async fn sample_depths(&self) -> Result<Depths, StoreError> {
        self.depths.keep(self.depths().await)
    }

    /// The last [`SqliteStore::sample_depths`], if one was taken.
    pub fn last_depths(&self) -> Option<DepthSample> {
        self.depths.last()
    }

    /// Runs `sql` (a delete taking the cutoff and the batch size) as one job per batch
    /// until a batch deletes fewer than `batch` rows.
    async fn delete_in_batches(&self, sql: &'static str, cutoff_ms: u64, batch: usize) -> Result<usize, StoreError> {
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

/// JSON text from the spool back into a `RawValue` (it was checked on the way in).
fn raw_json(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

#[cfg(test)]
mod control_secret_tests;
#[cfg(test)]
mod control_tests;
#[cfg(test)]
mod tests;
