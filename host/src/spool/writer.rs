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
use std::sync::mpsc;

/// Called once the transaction holding the job committed (`Ok`) or failed (`Err`).
pub type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

/// What a job reports: whether its SQL succeeded, and how to answer its caller.
pub struct JobOutcome {
    pub ok: bool,
    pub complete: Completion,
}

pub struct Job {
    /// Its caller waits for the commit and needs it on disk.
    pub durable: bool,
    pub run: Box<dyn FnOnce(&Connection) -> JobOutcome + Send>,
}

/// Most jobs folded into one transaction.
const MAX_JOBS_PER_COMMIT: usize = 4096;

/// `fsync_commits`: the connection runs `synchronous=FULL` (durability `fsync`).
pub fn spawn(mut conn: Connection, fsync_commits: bool) -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new().name("hostd-spool-writer".into()).spawn(move || {
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
            run_batch(&mut conn, jobs);
            if relaxed {
                if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
                    tracing::error!("spool: cannot restore synchronous=FULL: {e}");
                }
            }
        }
    })?;
    Ok(tx)
}

fn run_batch(conn: &mut Connection, jobs: Vec<Job>) {
    let mut completions = Vec::with_capacity(jobs.len());
    let commit = (|| -> rusqlite::Result<()> {
        let mut tx = conn.transaction()?;
        // A job left unrun by an error drops its reply channel: its caller sees the failure.
        for job in jobs {
            let sp = tx.savepoint()?;
            let outcome = (job.run)(&sp);
            if outcome.ok {
                sp.commit()?;
            } else {
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
    for complete in completions {
        complete(result.clone());
    }
}
