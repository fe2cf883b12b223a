//! The shared wasmtime `Engine`. Deadlines use epoch interruption (measured ~15 %
//! overhead here, against 20–70 % for fuel): a background thread bumps the epoch every
//! [`EPOCH_TICK`], and each call gets a deadline in ticks.
//!
//! Compiling a component (Cranelift) takes 50 ms for a small Rust policy and seconds
//! for a JS or Python one, so compiled components are kept twice: in memory by sha256
//! (tenants running the same policy share one compiled copy) and on disk under the
//! data dir, keyed by sha256 and the engine's compatibility hash (wasmtime version and
//! settings), so a restart deserializes instead of compiling.

use super::sandbox::GuestState;
use crate::contract::EventPolicyPre;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// How often the epoch advances; the granularity of every policy deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Distinct compiled components kept in memory.
const MAX_IN_MEMORY: usize = 256;

/// One engine for the whole process, cheap to clone.
#[derive(Clone)]
pub struct PolicyEngine {
    engine: Engine,
    compiled: Arc<Mutex<HashMap<String, Component>>>,
    /// Linked and checked components (`InstancePre`), by sha256: shared by tenants.
    prepared: Arc<Mutex<HashMap<String, EventPolicyPre<GuestState>>>>,
    cache_dir: Option<PathBuf>,
    idle_budget: Arc<IdleBudget>,
    _ticker: Arc<EpochTicker>,
}

struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Where a compiled component came from, for logs and the load-time benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompiledFrom {
    Memory,
    DiskCache,
    Compiled,
}

impl PolicyEngine {
    pub fn new() -> crate::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Only what policies are built with: no GC heap, threads, 64-bit memories,
        // exceptions or stack switching, which would each be more state a guest could
        // make the host hold, outside the store's memory cap. Multi-memory stays on:
        // wasmtime's own adapters between the core instances of a component with
        // several memories (jco's JS components) need it, and the cap sums all memories.
        config.wasm_gc(false);
        config.wasm_function_references(false);
        config.wasm_threads(false);
        config.wasm_shared_everything_threads(false);
        config.wasm_memory64(false);
        config.wasm_exceptions(false);
        config.wasm_stack_switching(false);
        config.wasm_component_model_async(false);
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the Wasm engine: {e}"))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = engine.weak();
        let stop_flag = stop.clone();
        std::thread::Builder::new()
            .name("hostd-epoch".into())
            .spawn(move || {
                while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start the epoch ticker thread: {e}"))?;
        Ok(PolicyEngine {
            engine,
            compiled: Arc::new(Mutex::new(HashMap::new())),
            prepared: Arc::new(Mutex::new(HashMap::new())),
            cache_dir: None,
            idle_budget: Arc::new(IdleBudget::default()),
            _ticker: Arc::new(EpochTicker { stop }),
        })
    }

    /// Keeps compiled components in `dir` (created if missing).
    pub fn with_disk_cache(mut self, dir: &Path) -> crate::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create the compiled-policy cache {}: {e}", dir.display()))?;
        self.cache_dir = Some(dir.to_path_buf());
        Ok(self)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linear memory all idle instances of all tenants may hold together.
    pub fn idle_budget(&self) -> &IdleBudget {
        &self.idle_budget
    }

    /// The compiled component for `bytes` (whose sha256 is `sha256`): from memory, from
    /// the disk cache, or compiled now (and then cached in both).
    #[allow(unsafe_code)]
    pub fn compile(&self, bytes: &[u8], sha256: &str) -> wasmtime::Result<(Component, CompiledFrom)> {
        if let Some(c) = self.compiled.lock().expect("compiled lock").get(sha256) {
            return Ok((c.clone(), CompiledFrom::Memory));
        }
        let cached = self.cache_path(sha256);
        let mut from = CompiledFrom::Compiled;
        let component = match cached.as_deref().filter(|p| p.exists()) {
            // SAFETY: files in the cache directory are written only by `store` below,
            // from `Component::serialize` of this engine's configuration (the file name
            // carries its compatibility hash; wasmtime checks it again on load).
            Some(path) => match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(c) => {
                    from = CompiledFrom::DiskCache;
                    c
                }
                Err(e) => {
                    tracing::warn!("compiled-policy cache {} unusable ({e}); recompiling", path.display());
                    let _ = std::fs::remove_file(path);
                    Component::new(&self.engine, bytes)?
                }
            },
            None => Component::new(&self.engine, bytes)?,
        };
        if from == CompiledFrom::Compiled {
            if let Some(path) = &cached {
                self.store(&component, path);
            }
        }
        let mut map = self.compiled.lock().expect("compiled lock");
        if map.len() >= MAX_IN_MEMORY {
            map.clear();
        }
        map.insert(sha256.to_string(), component.clone());
        Ok((component, from))
    }

    /// The linked, checked form of the component with this sha256, if one was made.
    pub fn prepared(&self, sha256: &str) -> Option<EventPolicyPre<GuestState>> {
        self.prepared.lock().expect("prepared lock").get(sha256).cloned()
    }

    pub fn keep_prepared(&self, sha256: &str, pre: EventPolicyPre<GuestState>) {
        let mut map = self.prepared.lock().expect("prepared lock");
        if map.len() >= MAX_IN_MEMORY {
            map.clear();
        }
        map.insert(sha256.to_string(), pre);
    }

    fn cache_path(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", h.finish())))
    }

    fn store(&self, component: &Component, path: &Path) {
        let result = component.serialize().map_err(|e| e.to_string()).and_then(|bytes| {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            write_private(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| e.to_string())
        });
        if let Err(e) = result {
            tracing::warn!("cannot write the compiled-policy cache {}: {e}", path.display());
        }
    }

    /// The deadline of a call in epoch ticks: the budget rounded up, plus one tick
    /// because the current tick may be about to end.
    pub fn deadline_ticks(deadline: Duration) -> u64 {
        let tick = EPOCH_TICK.as_micros().max(1);
        (deadline.as_micros().div_ceil(tick) as u64).max(1) + 1
    }
}

/// Writes `bytes` to a new file only its owner can read (0600), like the spool's.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

/// Linear memory held by idle (kept for reuse) instances across all tenants, against a
/// limit: an instance is kept only if it fits, so a burst over 1,000 tenants cannot
/// hold 1,000 instances.
#[derive(Debug)]
pub struct IdleBudget {
    used: AtomicU64,
    limit: AtomicU64,
}

impl Default for IdleBudget {
    fn default() -> Self {
        IdleBudget { used: AtomicU64::new(0), limit: AtomicU64::new(u64::MAX) }
    }
}

impl IdleBudget {
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `bytes` if they fit under the limit.
    pub fn try_take(&self, bytes: u64) -> bool {
        let limit = self.limit();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    pub fn release(&self, bytes: u64) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_sub(bytes)));
    }
}

#[cfg(test)]
mod tests {
    use super::IdleBudget;

    #[test]
    fn idle_budget_refuses_what_does_not_fit() {
        let b = IdleBudget::default();
        b.set_limit(100);
        assert!(b.try_take(60));
        assert!(!b.try_take(60));
        b.release(60);
        assert!(b.try_take(100));
        assert_eq!(b.used(), 100);
        b.release(500);
        assert_eq!(b.used(), 0);
    }
}
