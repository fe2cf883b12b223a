//! One compiled policy version for one tenant and its reusable instances.
//!
//! A fresh instance per call costs ~45 µs here against ~1.2 µs of call overhead for a
//! reused one, so instances are kept and reused; one that trapped, ran out of time or
//! memory is thrown away and the next call gets a fresh one.

use super::decision::{self, LiveRoutes, Outcome};
use super::engine::PolicyEngine;
use super::fault::{guest_text, PolicyError, PolicyFault};
use super::sandbox::{CallBudget, GuestLog, GuestState};
use crate::clock::now_ms;
use crate::config::PolicyLimits;
use crate::contract::{Event, EventPolicy, EventPolicyPre};
use anyhow::{anyhow, Context};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Store, Trap, UpdateDeadline};

/// The exports the `hostd:policy/event-policy@0.1.0` world requires.
const REQUIRED_EXPORTS: [&str; 2] = ["configure", "evaluate"];
/// `configure` may compile regexes or warm caches: it gets more time than `evaluate`.
const CONFIGURE_DEADLINE_MIN: Duration = Duration::from_secs(1);
/// Most idle instances kept per policy version.
const MAX_IDLE_INSTANCES: usize = 8;

pub struct PolicyVersion {
    tenant: Arc<str>,
    version: Arc<str>,
    sha256: String,
    engine: PolicyEngine,
    pre: EventPolicyPre<GuestState>,
    config_json: String,
    limits: PolicyLimits,
    routes: LiveRoutes,
    log: GuestLog,
    idle: Mutex<Vec<PolicyInstance>>,
    /// When the last call started (ms since the epoch), for idle eviction.
    last_used_ms: AtomicU64,
    /// One permit per `evaluate` that may run at once (`limits.max_concurrency`).
    slots: Semaphore,
}

struct PolicyInstance {
    store: Store<GuestState>,
    bindings: EventPolicy,
}

impl PolicyInstance {
    /// Linear memory it holds (what the idle budget counts).
    fn memory(&self) -> u64 {
        self.store.data().limiter.high_water
    }
}

impl Drop for PolicyVersion {
    fn drop(&mut self) {
        self.evict_idle();
    }
}

impl PolicyVersion {
    /// Compiles and checks a policy: it must be a component, export the event-policy
    /// world, import nothing hostd does not provide, and `configure` must accept the
    /// tenant's config. The error says which of these failed.
    pub fn load(
        engine: &PolicyEngine,
        tenant: &str,
        bytes: &[u8],
        config_json: String,
        limits: PolicyLimits,
        routes: impl Into<LiveRoutes>,
    ) -> crate::Result<Self> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let version: Arc<str> = Arc::from(&sha256[..12]);
        let (component, from) = engine
            .compile(bytes, &sha256)
            .map_err(|e| anyhow!("not a valid Wasm component: {}", one_line(&e.to_string())))?;
        tracing::debug!(tenant, version = &sha256[..12], "compiled policy: {from:?}");
        let pre = match engine.prepared(&sha256) {
            Some(pre) => pre,
            None => {
                let pre = prepare(engine, &component)?;
                engine.keep_prepared(&sha256, pre.clone());
                pre
            }
        };
        let tenant: Arc<str> = Arc::from(tenant);
        let pool = PolicyVersion {
            log: GuestLog::new(tenant.clone(), version.clone()),
            tenant,
            version,
            sha256,
            engine: engine.clone(),
            pre,
            config_json,
            routes: routes.into(),
            idle: Mutex::new(Vec::new()),
            last_used_ms: AtomicU64::new(now_ms()),
            slots: Semaphore::new(limits.max_concurrency.max(1)),
            limits,
        };
        // Instantiate and configure once now, so a bad config is refused at load time.
        let first = pool.instantiate().map_err(|f| anyhow!("{f}"))?;
        pool.keep(first);
        Ok(pool)
    }

    /// Reads a policy file and loads it; errors name the file.
    pub fn load_file(
        engine: &PolicyEngine,
        tenant: &str,
        path: &std::path::Path,
        config_json: String,
        limits: PolicyLimits,
        routes: impl Into<LiveRoutes>,
    ) -> crate::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("policy {}: cannot read the file", path.display()))?;
        Self::load(engine, tenant, &bytes, config_json, limits, routes)
            .with_context(|| format!("policy {}", path.display()))
            .map_err(|e| anyhow!("{e:#}"))
    }

    /// The version recorded on every delivery: the first 12 hex digits of the
    /// component's sha256.
    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn tenant(&self) -> &Arc<str> {
        &self.tenant
    }

    /// The JSON handed to `configure`.
    pub fn config_json(&self) -> &str {
        &self.config_json
    }

    pub fn limits(&self) -> &PolicyLimits {
        &self.limits
    }

    /// The routes a decision may name; shared with the tenant's other versions.
    pub fn routes(&self) -> &LiveRoutes {
        &self.routes
    }

    pub(super) fn share_routes(&mut self, routes: LiveRoutes) {
        self.routes = routes;
    }

    /// Instances kept for reuse right now.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().expect("idle instances lock").len()
    }

    /// Linear memory held by the idle instances.
    pub fn idle_memory(&self) -> u64 {
        self.idle.lock().expect("idle instances lock").iter().map(PolicyInstance::memory).sum()
    }

    pub fn last_used_ms(&self) -> u64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }

    /// Frees every idle instance (the compiled component stays); returns how many.
    pub fn evict_idle(&self) -> usize {
        let freed = std::mem::take(&mut *self.idle.lock().expect("idle instances lock"));
        self.engine.idle_budget().release(freed.iter().map(PolicyInstance::memory).sum());
        freed.len()
    }

    /// Keeps an instance for reuse if this version keeps fewer than the most and all
    /// tenants' idle instances stay within the memory budget; otherwise it is freed.
    fn keep(&self, instance: PolicyInstance) {
        let mut idle = self.idle.lock().expect("idle instances lock");
        if idle.len() < MAX_IDLE_INSTANCES && self.engine.idle_budget().try_take(instance.memory()) {
            idle.push(instance);
        }
    }

    fn take_idle(&self) -> Option<PolicyInstance> {
        let instance = self.idle.lock().expect("idle instances lock").pop()?;
        self.engine.idle_budget().release(instance.memory());
        Some(instance)
    }

    /// Waits for one of the tenant's `limits.max_concurrency` evaluation slots; hold it
    /// while evaluating. Callers take it in async code before `run_policy_code`, so a
    /// tenant flooding ingest holds at most that many instances and threads.
    pub async fn evaluation_slot(&self) -> SemaphorePermit<'_> {
        self.slots.acquire().await.expect("the evaluation semaphore is never closed")
    }

    /// Runs the policy on one event, on a reused instance when one is idle.
    pub fn evaluate(&self, event: &Event) -> Result<Outcome, PolicyError> {
        let started = Instant::now();
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
        let mut instance = match self.take_idle() {
            Some(i) => i,
            None => self.instantiate().map_err(|f| self.error(f, started))?,
        };
        let result = self.call(&mut instance, event);
        let healthy = result.as_ref().err().is_none_or(|f| !f.poisons_instance());
        if healthy && instance.store.data().limiter.high_water <= self.limits.memory / 2 {
            self.keep(instance);
        }
        result.map_err(|f| self.error(f, started))
    }

    /// Runs the policy on a new instance that is thrown away afterwards: what every
    /// call would cost without instance reuse. For benchmarks and diagnostics.
    pub fn evaluate_on_fresh_instance(&self, event: &Event) -> Result<Outcome, PolicyError> {
        let started = Instant::now();
        let mut instance = self.instantiate().map_err(|f| self.error(f, started))?;
        self.call(&mut instance, event).map_err(|f| self.error(f, started))
    }

    /// One `evaluate` under the deadline, its decision checked. The host copies at
    /// most [`decision::lift_budget`] bytes out of the call (wasmtime's hostcall fuel
    /// stops the lift before anything larger is allocated); every string is then
    /// checked against its own cap.
    fn call(&self, instance: &mut PolicyInstance, event: &Event) -> Result<Outcome, PolicyFault> {
        let store = &mut instance.store;
        store.data_mut().limiter.start_call();
        store.data_mut().budget = Some(CallBudget::start(self.limits.deadline, self.limits.wall_deadline));
        store.set_hostcall_fuel(usize::try_from(decision::lift_budget(&self.limits)).unwrap_or(usize::MAX));
        store.set_epoch_deadline(PolicyEngine::deadline_ticks(self.limits.deadline));
        let result = instance.bindings.call_evaluate(&mut *store, event);
        match result {
            Ok(Ok(decision)) => self.routes.with(|routes| decision::check(decision, &self.limits, routes)),
            Ok(Err(message)) => Err(PolicyFault::Guest(guest_text(&message))),
            Err(e) => Err(self.classify(e, store.data())),
        }
    }

    fn instantiate(&self) -> Result<PolicyInstance, PolicyFault> {
        let mut store = Store::new(self.engine.engine(), GuestState::new(self.log.clone(), self.limits.memory));
        store.limiter(|s| &mut s.limiter);
        // When the wall-clock deadline passes, only a call that used its CPU budget
        // (or ran past the wall-clock guard) is stopped; see `CallBudget`.
        store.epoch_deadline_callback(|ctx| {
            Ok(match ctx.data().budget.and_then(|b| b.remaining()) {
                Some(left) => UpdateDeadline::Continue(PolicyEngine::deadline_ticks(left)),
                None => UpdateDeadline::Interrupt,
            })
        });
        let configure_deadline = self.limits.deadline.max(CONFIGURE_DEADLINE_MIN);
        store.data_mut().budget =
            Some(CallBudget::start(configure_deadline, self.limits.wall_deadline.max(configure_deadline)));
        store.set_hostcall_fuel(usize::try_from(decision::lift_budget(&self.limits)).unwrap_or(usize::MAX));
        store.set_epoch_deadline(PolicyEngine::deadline_ticks(configure_deadline));
        let bindings = match self.pre.instantiate(&mut store) {
            Ok(b) => b,
            Err(e) => {
                return Err(match self.classify(e, store.data()) {
                    PolicyFault::Trap(m) => PolicyFault::Instantiate(m),
                    other => other,
                })
            }
        };
        match bindings.call_configure(&mut store, &self.config_json) {
            Ok(Ok(())) => Ok(PolicyInstance { store, bindings }),
            Ok(Err(message)) => Err(PolicyFault::Configure(guest_text(&message))),
            Err(e) => Err(PolicyFault::Configure(self.classify(e, store.data()).to_string())),
        }
    }

    fn classify(&self, err: wasmtime::Error, state: &GuestState) -> PolicyFault {
        if state.limiter.hit {
            return PolicyFault::Memory(state.limiter.max_bytes);
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PolicyFault::Deadline {
                limit: self.limits.deadline,
                elapsed: Duration::ZERO,
                cpu: state.budget.map(|b| b.cpu_used()).unwrap_or_default(),
            },
            Some(trap) => PolicyFault::Trap(trap.to_string()),
            None if is_hostcall_fuel_exhausted(&err) => {
                PolicyFault::OverBudget { budget: decision::lift_budget(&self.limits) }
            }
            None => PolicyFault::Trap(guest_text(&one_line(&err.to_string()))),
        }
    }

    fn error(&self, mut fault: PolicyFault, started: Instant) -> PolicyError {
        if let PolicyFault::Deadline { elapsed, .. } = &mut fault {
            *elapsed = started.elapsed();
        }
        PolicyError {
            tenant: self.tenant.to_string(),
            version: self.version.to_string(),
            fault,
            elapsed: started.elapsed(),
        }
    }
}

/// Checks a compiled component against the world and links it: the exports, then
/// hostd's imports (deny-all WASI and `log`). Tenants running the same component share
/// the result (see `PolicyEngine::prepared`).
fn prepare(engine: &PolicyEngine, component: &Component) -> crate::Result<EventPolicyPre<GuestState>> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine.engine()).map(|(name, _)| name).collect();
    let missing: Vec<&str> = REQUIRED_EXPORTS.iter().copied().filter(|r| !exports.contains(r)).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "does not export `{}` (the hostd:policy/event-policy@0.1.0 world exports configure and evaluate; this component exports [{}])",
            missing.join("`, `"),
            exports.join(", ")
        );
    }
    let mut linker: Linker<GuestState> = Linker::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow!("cannot link WASI: {e}"))?;
    EventPolicy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        .map_err(|e| anyhow!("cannot link the log import: {e}"))?;
    let instance_pre = linker
        .instantiate_pre(component)
        .map_err(|e| anyhow!("imports something hostd does not provide: {}", one_line(&e.to_string())))?;
    EventPolicyPre::new(instance_pre)
        .map_err(|e| anyhow!("exports do not match the event-policy world: {}", one_line(&e.to_string())))
}

/// wasmtime stops a lift that would copy more than the store's hostcall fuel with an
/// error of a private type; its message is the only way to recognise it.
fn is_hostcall_fuel_exhausted(err: &wasmtime::Error) -> bool {
    err.chain().any(|e| e.to_string().contains("fuel allocated for hostcalls has been exhausted"))
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyEvent;

    fn plugin(name: &str) -> std::path::PathBuf {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../plugins/target/wasm32-wasip2/release")
            .join(format!("{name}.wasm"));
        assert!(p.exists(), "{} is missing: run `make plugins`", p.display());
        p
    }

    fn event(name: &str) -> PolicyEvent {
        PolicyEvent::sample(name, "{\"output\":1}")
    }

    fn load(name: &str, limits: PolicyLimits) -> PolicyVersion {
        let engine = PolicyEngine::new().unwrap();
        PolicyVersion::load_file(&engine, "t", &plugin(name), "{}".into(), limits, decision::RouteSet::Any).unwrap()
    }

    #[test]
    fn a_decision_larger_than_the_lift_budget_is_refused_while_it_is_lifted() {
        let limits = PolicyLimits { deadline: Duration::from_millis(500), ..PolicyLimits::default() };
        let pool = load("hostile_aliased_output", limits);
        for name in ["alias", "alias-redactions", "huge-error"] {
            let err = pool.evaluate(&event(name)).unwrap_err();
            assert!(matches!(err.fault, PolicyFault::OverBudget { .. }), "{name}: {err}");
        }
        // The instance is still good for the next event.
        assert!(pool.evaluate(&event("fine")).is_ok());
    }

    #[tokio::test]
    async fn a_tenant_runs_at_most_max_concurrency_calls_at_once() {
        let pool = load("pass_through", PolicyLimits { max_concurrency: 2, ..PolicyLimits::default() });
        let (_a, _b) = (pool.evaluation_slot().await, pool.evaluation_slot().await);
        let third = tokio::time::timeout(Duration::from_millis(50), pool.evaluation_slot()).await;
        assert!(third.is_err(), "a third call waits for a slot");
        drop(_a);
        let _c = tokio::time::timeout(Duration::from_secs(5), pool.evaluation_slot()).await.expect("a freed slot");
    }
}
