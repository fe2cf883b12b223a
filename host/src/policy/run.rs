//! Running policy code from async code, and evaluating a batch of events on a version.

use super::live::PolicyStats;
use super::{Outcome, PolicyError, PolicyVersion};
use crate::event::AcceptedEvent;

/// Runs policy code (instantiation, `configure`, `evaluate`) from async code.
///
/// wasmtime-wasi's synchronous bindings serve a guest's WASI calls (a write to stderr,
/// say) with `Handle::block_on`, which panics on a runtime worker thread. Inside
/// `block_in_place` it is allowed, and the worker's other tasks move to another thread
/// meanwhile — which CPU-bound policy calls that may run to their deadline want anyway.
/// Off a multi-threaded runtime the work runs on a plain scoped thread.
pub fn run_policy_code<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| s.spawn(f).join().expect("policy thread panicked")),
        Err(_) => f(),
    }
}

/// Evaluates a batch, each event on the tenant's policy.
pub fn evaluate_all(policy: &PolicyVersion, events: &[AcceptedEvent]) -> Vec<Result<Outcome, PolicyError>> {
    run_policy_code(|| events.iter().map(|e| policy.evaluate(&e.event)).collect())
}

/// [`evaluate_all`], recording each call's time and fault in the tenant's statistics.
pub fn evaluate_timed(
    policy: &PolicyVersion,
    stats: &PolicyStats,
    events: &[AcceptedEvent],
) -> Vec<Result<Outcome, PolicyError>> {
    run_policy_code(|| {
        events
            .iter()
            .map(|e| {
                let started = std::time::Instant::now();
                let outcome = policy.evaluate(&e.event);
                stats.record(started.elapsed(), outcome.as_ref().err().map(|err| err.fault.kind()));
                outcome
            })
            .collect()
    })
}
