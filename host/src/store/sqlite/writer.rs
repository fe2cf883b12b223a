//! Group commit: one thread owns the write connection. Writers queue jobs; the thread
//! runs every queued job in one transaction (each in its own savepoint, so one failing
//! job does not undo the others), commits once, and only then answers them. With
//! `synchronous=FULL` that is one fsync for a whole burst of concurrent requests.
//!
//! A batch made only of bookkeeping nobody waits for (rows of delivered events,
//! retry times) commits without its own fsync (`synchronous=NORMAL` for that
//! transaction): the next durable commit's fsync of the WAL covers its frames too, and
//! losing it to a power cut only means a delivery is repeated, which at-least-once
//! allows. Ingest's commits then do not queue behind fsyncs made for deletes.

use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// Called once the transaction holding the job committed (`Ok`) or failed (`Err`).
pub type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

/// What a job reports: whether its SQL succeeded, and how to answer its caller.
pub struct JobOutcome {
    pub ok: bool,
    /// Why the job's SQL failed, when it did.
    pub error: Option<String>,
    pub complete: Completion,
}

pub struct Job {
    /// Its caller waits for the commit and needs it on disk.
    pub durable: bool,
    pub run: Box<dyn FnOnce(&Connection) -> JobOutcome + Send>,
}

/// Whether the writer's last batch reached the disk: what `/readyz` reports, so a
/// spool that cannot write (disk full, read-only, I/O errors) takes hostd out of
/// rotation instead of answering 503 to every batch while looking ready.
#[derive(Debug, Default)]
pub struct WriterHealth {
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl WriterHealth {
    /// The error of the last batch, when it failed (its commit, or one of its jobs).
    pub fn failure(&self) -> Option<String> {
        if !self.failing.load(Ordering::SeqCst) {
            return None;
        }
        Some(self.last_error.lock().map(|e| e.clone()).ok().flatten().unwrap_or_else(|| "a write failed".into()))
    }

    fn record(&self, error: Option<String>) {
        match error {
            Some(e) => {
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(e);
                }
                self.failing.store(true, Ordering::SeqCst);
            }
            None => self.failing.store(false, Ordering::SeqCst),
        }
    }
}

/// Marks the writer failing if its thread ends (a panic in a job, or shutdown).
struct StoppedGuard(Arc<WriterHealth>);

impl Drop for StoppedGuard {
    fn drop(&mut self) {
        self.0.record(Some("the spool writer thread stopped".into()));
    }
}

/// Most jobs folded into one transaction.
const MAX_JOBS_PER_COMMIT: usize = 4096;

/// `fsync_commits`: the connection runs `synchronous=FULL` (durability `fsync`).
pub fn spawn(
    mut conn: Connection,
    fsync_commits: bool,
    health: Arc<WriterHealth>,
) -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new().name("hostd-spool-writer".into()).spawn(move || {
        let _guard = StoppedGuard(health.clone());
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_JOBS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let relaxed = fsync_commits && !jobs.iter().any(|j| j.durable);
            if relaxed {
                let _ = conn.pragma_update(None, "synchronous", "NORMAL");
            }
            run_batch(&mut conn, jobs, &health);
            if relaxed {
                if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
                    tracing::error!("spool: cannot restore synchronous=FULL: {e}");
                }
            }
        }
    })?;
    Ok(tx)
}

/// Runs and commits one batch, records in `health` whether the commit and every job
/// succeeded, then answers the jobs (so a caller that was answered sees the health
/// its batch left).
fn run_batch(conn: &mut Connection, jobs: Vec<Job>, health: &WriterHealth) {
    let mut completions = Vec::with_capacity(jobs.len());
    let mut job_error = None;
    let commit = (|| -> rusqlite::Result<()> {
        let mut tx = conn.transaction()?;
        // A job left unrun by an error drops its reply channel: its caller sees the failure.
        for job in jobs {
            let sp = tx.savepoint()?;
            let outcome = (job.run)(&sp);
            if outcome.ok {
                sp.commit()?;
            } else {
                job_error = outcome.error.clone();
                drop(sp); // rolls back this job only
            }
            completions.push(outcome.complete);
        }
        tx.commit()
    })();
    let result = commit.map_err(|e| format!("spool commit failed: {e}"));
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    health.record(match (&result, job_error) {
        (Err(e), _) => Some(e.clone()),
        (Ok(()), Some(e)) => Some(format!("a spool write failed: {e}")),
        (Ok(()), None) => None,
    });
    for complete in completions {
        complete(result.clone());
    }
}
