//! What a guest can reach: a deny-all WASI context (no files, sockets, environment or
//! arguments; stdout/stderr become rate-limited log lines), the `log` import, and a
//! memory limiter. Guests built for `wasm32-wasip2` import `wasi:io` / `wasi:cli` even
//! when they do no I/O, so real (empty) WASI is linked rather than trapping stubs.

use crate::contract::{hostd::policy::log, Level};
use crate::text::{escape_control, truncate};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Most guest log lines per tenant per second; the rest are counted and reported.
const LOG_LINES_PER_SECOND: u64 = 20;
/// Longest guest log line kept; the rest is cut.
const LOG_LINE_MAX: usize = 1024;
/// Most table elements a guest may grow one table to.
const TABLE_ELEMENTS_MAX: usize = 100_000;
/// What one table element costs the host (a pointer, as wasmtime stores it).
const TABLE_ELEMENT_BYTES: u64 = std::mem::size_of::<usize>() as u64;
/// Most core instances, tables and linear memories one policy instance may create.
/// A Rust or C policy needs a few of each; the JS (jco) and Python (componentize-py)
/// runtimes link more core modules, and `tests/polyglot.rs` runs them under these caps.
pub const MAX_CORE_INSTANCES: usize = 64;
pub const MAX_TABLES: usize = 64;
pub const MAX_MEMORIES: usize = 16;

/// Who is logging: the tenant and policy version, and the tenant's log budget.
#[derive(Clone)]
pub struct GuestLog {
    pub tenant: Arc<str>,
    pub version: Arc<str>,
    budget: Arc<LogBudget>,
}

impl GuestLog {
    pub fn new(tenant: Arc<str>, version: Arc<str>) -> Self {
        GuestLog { tenant, version, budget: Arc::new(LogBudget::default()) }
    }

    fn emit(&self, level: Level, source: &str, message: &str) {
        let Some(suppressed) = self.budget.take() else { return };
        // A guest's text is hostile: cut first, then escape line breaks and control
        // characters, so one call is one log line that cannot fake another.
        let message = escape_control(truncate(message.trim_end(), LOG_LINE_MAX));
        let (tenant, version) = (&*self.tenant, &*self.version);
        match level {
            Level::Debug => tracing::debug!(tenant, version, source, suppressed, "{message}"),
            Level::Info => tracing::info!(tenant, version, source, suppressed, "{message}"),
            Level::Warn => tracing::warn!(tenant, version, source, suppressed, "{message}"),
            Level::Error => tracing::error!(tenant, version, source, suppressed, "{message}"),
        }
    }
}

/// A per-second window of log lines. `take` answers how many lines were suppressed
/// since the last one let through, or `None` when this one must be suppressed.
#[derive(Default)]
struct LogBudget {
    window: AtomicU64,
    used: AtomicU64,
    suppressed: AtomicU64,
}

impl LogBudget {
    fn take(&self) -> Option<u64> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if self.window.swap(now, Ordering::Relaxed) != now {
            self.used.store(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < LOG_LINES_PER_SECOND {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// The store data of one policy instance.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryCap,
    /// The budget of the call in progress (`configure` or `evaluate`).
    pub budget: Option<CallBudget>,
    log: GuestLog,
}

impl GuestState {
    pub fn new(log: GuestLog, memory_cap: u64) -> Self {
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestOutput { log: log.clone(), source: "stdout" })
            .stderr(GuestOutput { log: log.clone(), source: "stderr" })
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        GuestState { wasi, table: ResourceTable::new(), limiter: MemoryCap::new(memory_cap), budget: None, log }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl crate::contract::hostd::policy::types::Host for GuestState {}

impl log::Host for GuestState {
    fn log(&mut self, level: Level, message: String) {
        self.log.emit(level, "log", &message);
    }
}

/// Caps what one policy instance (its whole store) may hold: every linear memory and
/// every table together, not each on its own, so a component with eight memories gets
/// the same cap as one with one. It also caps how many core instances, tables and
/// memories the store may create. A refused grow makes `memory.grow` return -1 (so a
/// guest may recover), and is remembered so a trap that follows is reported as
/// `memory`.
pub struct MemoryCap {
    pub max_bytes: u64,
    /// A grow was refused during the current call (reset by [`MemoryCap::start_call`]).
    pub hit: bool,
    /// Bytes of memories and tables the store holds now.
    pub used: u64,
    /// The most the store has held, for recycling bloated instances.
    pub high_water: u64,
}

impl MemoryCap {
    fn new(max_bytes: u64) -> Self {
        MemoryCap { max_bytes, hit: false, used: 0, high_water: 0 }
    }

    /// Forgets a refusal from an earlier call, so this call's faults are its own.
    pub fn start_call(&mut self) {
        self.hit = false;
    }

    /// Grows the store's total from `current` to `desired` bytes of one memory or
    /// table, if the total stays under the cap.
    fn grow(&mut self, current: u64, desired: u64) -> bool {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.max_bytes {
            self.hit = true;
            return false;
        }
        self.used = total;
        self.high_water = self.high_water.max(total);
        true
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(current as u64, desired as u64))
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > TABLE_ELEMENTS_MAX {
            return Ok(false);
        }
        Ok(self.grow(current as u64 * TABLE_ELEMENT_BYTES, desired as u64 * TABLE_ELEMENT_BYTES))
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// The budget of the call running now, as the epoch-deadline callback checks it.
///
/// The epoch ticker measures wall-clock time, which also runs while the host starves
/// the policy's thread of CPU (a build beside it, a burst on other tenants). So when
/// the wall-clock deadline passes, the callback looks at the CPU time the thread has
/// used since the call began: only a call that used its whole `deadline` of CPU is
/// faulted as `deadline`; one that was merely preempted gets the rest of its CPU
/// budget. `wall_limit` stays as the guard against a call that never finishes for
/// any other reason.
///
/// Reading a thread's CPU clock is a system call (0.1–2.5 µs here, as much as a whole
/// cheap `evaluate`), so it is not read at every call's start. Each thread keeps an
/// anchor (a CPU reading and when it was taken), refreshed when older than
/// [`ANCHOR_MAX_AGE`]; since a thread cannot use more CPU than wall-clock time, the
/// CPU used before the call is at most the anchor's age, and what the call used is at
/// least `cpu_now − anchor_cpu − age`. That lower bound is what is compared with the
/// deadline: a spinning guest is stopped no later than one anchor age past it.
#[derive(Debug, Clone, Copy)]
pub struct CallBudget {
    pub started: Instant,
    anchor_cpu: Duration,
    /// Wall-clock time from the anchor to the call's start.
    anchor_age: Duration,
    pub deadline: Duration,
    pub wall_limit: Duration,
}

/// How old a thread's CPU-clock anchor may get before a call reads the clock again.
pub const ANCHOR_MAX_AGE: Duration = Duration::from_millis(2);

thread_local! {
    static CPU_ANCHOR: std::cell::Cell<Option<(Instant, Duration)>> = const { std::cell::Cell::new(None) };
}

impl CallBudget {
    pub fn start(deadline: Duration, wall_limit: Duration) -> Self {
        let started = Instant::now();
        let max_age = ANCHOR_MAX_AGE.min(deadline / 4);
        let (at, cpu) = CPU_ANCHOR.with(|a| match a.get() {
            Some((at, cpu)) if started.saturating_duration_since(at) <= max_age => (at, cpu),
            _ => {
                let fresh = (Instant::now(), thread_cpu_time());
                a.set(Some(fresh));
                fresh
            }
        });
        CallBudget { started, anchor_cpu: cpu, anchor_age: started.saturating_duration_since(at), deadline, wall_limit }
    }

    /// At least the CPU time this thread has used since the call began (see above).
    pub fn cpu_used(&self) -> Duration {
        thread_cpu_time().saturating_sub(self.anchor_cpu).saturating_sub(self.anchor_age)
    }

    /// What to do when the epoch deadline passes: `None` to stop the call, or the
    /// CPU time it still has.
    pub fn remaining(&self) -> Option<Duration> {
        if self.started.elapsed() >= self.wall_limit {
            return None;
        }
        let used = self.cpu_used();
        (used < self.deadline).then(|| self.deadline - used)
    }
}

/// The CPU time the calling thread has used (user + system).
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// Guest stdout / stderr: each write becomes log lines.
struct GuestOutput {
    log: GuestLog,
    source: &'static str,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GuestOutputStream { log: self.log.clone(), source: self.source })
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp3 guests use this; policies are WASIp2 components.
        Box::new(tokio::io::sink())
    }
}

struct GuestOutputStream {
    log: GuestLog,
    source: &'static str,
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutputStream {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutputStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            self.log.emit(Level::Info, self.source, line);
        }
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_the_sum_of_every_memory_and_table() {
        let mut cap = MemoryCap::new(100 << 10);
        // Three memories of 30 KiB each fit; a fourth does not, though each alone would.
        for _ in 0..3 {
            assert!(cap.memory_growing(0, 30 << 10, None).unwrap());
        }
        assert!(!cap.memory_growing(0, 30 << 10, None).unwrap());
        assert!(cap.hit);
        // Growing one of them counts only the difference.
        assert!(cap.memory_growing(30 << 10, 35 << 10, None).unwrap());
        assert_eq!(cap.used, 95 << 10);
        // Tables count too, a pointer per element.
        assert!(!cap.table_growing(0, 1024, None).unwrap());
        assert!(cap.table_growing(0, 512, None).unwrap());
        cap.start_call();
        assert!(!cap.hit);
        assert_eq!(cap.high_water, cap.used);
    }

    /// Instantiates a component (WAT text) in a store capped at `cap` bytes.
    fn instantiate(wat: &str, cap: u64) -> wasmtime::Result<()> {
        let engine = crate::policy::PolicyEngine::new().unwrap();
        let component = wasmtime::component::Component::new(engine.engine(), wat)?;
        let mut store = wasmtime::Store::new(engine.engine(), MemoryCap::new(cap));
        store.limiter(|s| s);
        wasmtime::component::Linker::new(engine.engine()).instantiate(&mut store, &component).map(|_| ())
    }

    #[test]
    fn memories_of_every_core_instance_count_against_one_cap() {
        let three = "(component (core module $m (memory 1)) (core instance (instantiate $m)) (core instance (instantiate $m)) (core instance (instantiate $m)))";
        assert!(instantiate(three, 200 << 10).is_ok(), "3 × 64 KiB fit in 200 KiB");
        assert!(instantiate(three, 150 << 10).is_err(), "3 × 64 KiB do not fit in 150 KiB together");
    }

    #[test]
    fn proposals_policies_do_not_need_are_off() {
        // Several memories in one core module are allowed (multi-memory is on for
        // wasmtime's adapters) and counted together by the cap.
        let two = "(component (core module $m (memory 1) (memory 1)) (core instance (instantiate $m)))";
        assert!(instantiate(two, 100 << 10).is_err(), "2 × 64 KiB do not fit in 100 KiB");
        assert!(instantiate(two, 130 << 10).is_ok());
        let engine = crate::policy::PolicyEngine::new().unwrap();
        let shared = "(component (core module (memory 1 1 shared)))";
        assert!(wasmtime::component::Component::new(engine.engine(), shared).is_err(), "no threads");
        let memory64 = "(component (core module (memory i64 1)))";
        assert!(wasmtime::component::Component::new(engine.engine(), memory64).is_err(), "no memory64");
        let gc = "(component (core module (type (struct))))";
        assert!(wasmtime::component::Component::new(engine.engine(), gc).is_err(), "no GC types");
    }

    #[test]
    fn counts_of_instances_are_capped() {
        let many: String = (0..=MAX_CORE_INSTANCES).map(|_| "(core instance (instantiate $m))").collect();
        let wat = format!("(component (core module $m) {many})");
        let err = instantiate(&wat, 1 << 20).unwrap_err();
        assert!(format!("{err:#}").contains("instance"), "{err:#}");
        let cap = MemoryCap::new(1 << 20);
        assert_eq!((cap.tables(), cap.memories()), (MAX_TABLES, MAX_MEMORIES));
    }

    #[test]
    fn a_preempted_call_keeps_its_cpu_budget() {
        let budget = CallBudget::start(Duration::from_millis(50), Duration::from_secs(5));
        // Sleeping uses wall-clock time, not CPU time.
        std::thread::sleep(Duration::from_millis(80));
        let left = budget.remaining().expect("a sleeping thread has CPU budget left");
        assert!(left > Duration::from_millis(30), "{left:?}");
        // Spinning uses CPU time: once it has used the budget, the call is stopped.
        let spin = Instant::now();
        while budget.cpu_used() < Duration::from_millis(60) && spin.elapsed() < Duration::from_secs(60) {
            std::hint::black_box(0u64);
        }
        assert!(budget.remaining().is_none(), "a call that spun past its CPU budget is stopped");
        let walled =
            CallBudget { wall_limit: Duration::ZERO, ..CallBudget::start(Duration::from_secs(1), Duration::ZERO) };
        assert!(walled.remaining().is_none(), "the wall-clock guard still stops a call");
    }
}
