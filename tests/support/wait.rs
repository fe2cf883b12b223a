//! Waiting for what hostd does in the background: poll until a condition holds or a
//! timeout passes. Most helpers return what they saw last, so the test's own assertion
//! (with its own message) is what fails on a timeout.

use serde_json::Value;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// How often the helpers ask, unless told otherwise.
const EVERY: Duration = Duration::from_millis(20);

/// Calls `probe` every 20 ms until `done` accepts what it returned or `timeout` passes;
/// returns the last value either way.
pub fn poll<T>(timeout: Duration, probe: impl FnMut() -> T, done: impl FnMut(&T) -> bool) -> T {
    poll_every(EVERY, timeout, probe, done)
}

/// [`poll`], asking every `every`: for a probe too costly to call every 20 ms.
pub fn poll_every<T>(
    every: Duration,
    timeout: Duration,
    mut probe: impl FnMut() -> T,
    mut done: impl FnMut(&T) -> bool,
) -> T {
    let start = Instant::now();
    loop {
        let value = probe();
        if done(&value) || start.elapsed() > timeout {
            return value;
        }
        std::thread::sleep(every);
    }
}

/// Whether `ready` holds within `timeout` (asked every 20 ms).
pub fn eventually(timeout: Duration, ready: impl FnMut() -> bool) -> bool {
    poll(timeout, ready, |held| *held)
}

/// Waits until `ready` holds; after `timeout`, panics naming `what`.
pub fn wait_until(timeout: Duration, what: &str, ready: impl FnMut() -> bool) {
    assert!(eventually(timeout, ready), "timed out after {timeout:?} waiting for {what}");
}

/// The JSON lines of `path` once it has at least `n` (fewer when `timeout` passes first).
pub fn wait_for_lines(path: &Path, n: usize, timeout: Duration) -> Vec<Value> {
    poll(timeout, || crate::read_jsonl(path), |lines| lines.len() >= n)
}

/// The length of Redis stream `stream` once it is at least `n` (less after `timeout`).
pub fn wait_for_stream_len(conn: &mut redis::Connection, stream: &str, n: usize, timeout: Duration) -> usize {
    use redis::Commands;
    poll_every(Duration::from_millis(50), timeout, || conn.xlen(stream).unwrap_or(0), |len| *len >= n)
}

/// Whether `child` exits within `timeout`; if it does not, it is killed and reaped.
pub fn wait_for_exit(child: &mut Child, timeout: Duration) -> bool {
    let exited = eventually(timeout, || !matches!(child.try_wait(), Ok(None)));
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    exited
}
