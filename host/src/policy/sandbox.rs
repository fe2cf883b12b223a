//! What a guest can reach: a deny-all WASI context (no files, sockets, environment or
//! arguments; stdout/stderr become rate-limited log lines), the `log` import, and a
//! memory limiter. Guests built for `wasm32-wasip2` import `wasi:io` / `wasi:cli` even
//! when they do no I/O, so real (empty) WASI is linked rather than trapping stubs.

use super::bindings::{hostd::policy::log, Level};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Most guest log lines per tenant per second; the rest are counted and reported.
const LOG_LINES_PER_SECOND: u64 = 20;
/// Longest guest log line kept; the rest is cut.
const LOG_LINE_MAX: usize = 1024;
/// Most table elements a guest may grow to.
const TABLE_ELEMENTS_MAX: usize = 100_000;

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
        let message = truncate(message.trim_end(), LOG_LINE_MAX);
        let (tenant, version) = (&*self.tenant, &*self.version);
        match level {
            Level::Debug => tracing::debug!(tenant, version, source, suppressed, "{message}"),
            Level::Info => tracing::info!(tenant, version, source, suppressed, "{message}"),
            Level::Warn => tracing::warn!(tenant, version, source, suppressed, "{message}"),
            Level::Error => tracing::error!(tenant, version, source, suppressed, "{message}"),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
        GuestState { wasi, table: ResourceTable::new(), limiter: MemoryCap::new(memory_cap), log }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl super::bindings::hostd::policy::types::Host for GuestState {}

impl log::Host for GuestState {
    fn log(&mut self, level: Level, message: String) {
        self.log.emit(level, "log", &message);
    }
}

/// Caps linear memory. A refused grow makes `memory.grow` return -1 (so a guest may
/// recover), and is remembered so a trap that follows is reported as `memory`.
pub struct MemoryCap {
    pub max_bytes: u64,
    pub hit: bool,
    /// The largest memory the instance has asked for, for recycling bloated instances.
    pub high_water: u64,
}

impl MemoryCap {
    fn new(max_bytes: u64) -> Self {
        MemoryCap { max_bytes, hit: false, high_water: 0 }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        self.high_water = self.high_water.max(desired as u64);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }
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
