//! A tenant's live policy: the active version, the previous one (for rollback), where
//! each came from, and per-tenant call statistics.
//!
//! A swap replaces one `Arc` under a write lock held for a pointer store. Ingest clones
//! the `Arc` once per batch and evaluates the whole batch on it, so events already in
//! `evaluate` finish on the old version and every batch that starts later uses the new
//! one. Installs and rollbacks of one tenant are serialized by the history mutex.

use super::source::SwapError;
use super::version::PolicyVersion;
use crate::clock::now_ms;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// What is known about one installed version.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub version: Arc<str>,
    pub sha256: String,
    pub loaded_at_ms: u64,
    /// `startup`, `file`, `api`, `sighup` or `rollback`.
    pub source: &'static str,
}

impl VersionInfo {
    fn of(pool: &PolicyVersion, source: &'static str) -> Self {
        VersionInfo {
            version: pool.version().clone(),
            sha256: pool.sha256().to_string(),
            loaded_at_ms: now_ms(),
            source,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"version": &*self.version, "sha256": self.sha256, "loaded_at_ms": self.loaded_at_ms,
               "loaded_at": httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_millis(self.loaded_at_ms)),
               "source": self.source})
    }
}

struct History {
    active: VersionInfo,
    previous: Option<(Arc<PolicyVersion>, VersionInfo)>,
}

/// The result of an install or rollback.
#[derive(Debug, Clone)]
pub struct Swapped {
    pub active: VersionInfo,
    pub previous: Option<VersionInfo>,
    /// The candidate was the active version already (same component and config).
    pub unchanged: bool,
}

pub struct LivePolicy {
    active: RwLock<Arc<PolicyVersion>>,
    history: Mutex<History>,
    pub stats: PolicyStats,
}

impl LivePolicy {
    pub fn new(pool: PolicyVersion, source: &'static str) -> Self {
        let info = VersionInfo::of(&pool, source);
        LivePolicy {
            active: RwLock::new(Arc::new(pool)),
            history: Mutex::new(History { active: info, previous: None }),
            stats: PolicyStats::default(),
        }
    }

    /// The active version. Hold the `Arc` for a whole evaluation.
    pub fn current(&self) -> Arc<PolicyVersion> {
        self.active.read().expect("policy lock").clone()
    }

    /// The previous version, if any (kept for rollback).
    pub fn previous(&self) -> Option<Arc<PolicyVersion>> {
        self.history.lock().expect("history lock").previous.as_ref().map(|(p, _)| p.clone())
    }

    /// Makes a checked candidate the active version; the old one becomes `previous`.
    pub fn install(&self, candidate: PolicyVersion, source: &'static str) -> Swapped {
        let mut history = self.history.lock().expect("history lock");
        let current = self.current();
        if current.sha256() == candidate.sha256() && current.config_json() == candidate.config_json() {
            return Swapped { active: history.active.clone(), previous: None, unchanged: true };
        }
        let info = VersionInfo::of(&candidate, source);
        let old = std::mem::replace(&mut *self.active.write().expect("policy lock"), Arc::new(candidate));
        let old_info = std::mem::replace(&mut history.active, info.clone());
        history.previous = Some((old, old_info.clone()));
        Swapped { active: info, previous: Some(old_info), unchanged: false }
    }

    /// Makes the previous version active again (and the active one previous).
    pub fn rollback(&self) -> Result<Swapped, SwapError> {
        let mut history = self.history.lock().expect("history lock");
        let (pool, mut info) = history.previous.take().ok_or(SwapError::NoPreviousVersion)?;
        info.loaded_at_ms = now_ms();
        info.source = "rollback";
        let old = std::mem::replace(&mut *self.active.write().expect("policy lock"), pool);
        let old_info = std::mem::replace(&mut history.active, info.clone());
        history.previous = Some((old, old_info.clone()));
        Ok(Swapped { active: info, previous: Some(old_info), unchanged: false })
    }

    /// The admin API's view: active and previous version, limits and statistics.
    pub fn status(&self) -> Value {
        let history = self.history.lock().expect("history lock");
        let current = self.current();
        let limits = current.limits();
        json!({
            "active": history.active.to_json(),
            "previous": history.previous.as_ref().map(|(_, i)| i.to_json()),
            "config": serde_json::from_str::<Value>(current.config_json()).unwrap_or(Value::Null),
            "limits": {
                "deadline_ms": limits.deadline.as_secs_f64() * 1000.0,
                "memory_bytes": limits.memory,
                "max_deliveries": limits.max_deliveries,
                "max_output_bytes": limits.max_output,
            },
            "instances_idle": current.idle_instances(),
            "stats": self.stats.to_json(),
        })
    }
}

/// Per-tenant policy statistics, lock-free on the hot path but for faults.
#[derive(Default)]
pub struct PolicyStats {
    calls: AtomicU64,
    faults: Mutex<BTreeMap<&'static str, u64>>,
    latency: LatencyHistogram,
}

impl PolicyStats {
    pub fn record(&self, elapsed: Duration, fault: Option<&'static str>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.latency.record(elapsed);
        if let Some(kind) = fault {
            *self.faults.lock().expect("faults lock").entry(kind).or_default() += 1;
        }
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "calls": self.calls(),
            "faults": self.faults.lock().expect("faults lock").clone(),
            "evaluate_us": {
                "p50": self.latency.quantile(0.50).map(|d| d.as_secs_f64() * 1e6),
                "p99": self.latency.quantile(0.99).map(|d| d.as_secs_f64() * 1e6),
                "max": self.latency.quantile(1.0).map(|d| d.as_secs_f64() * 1e6),
            },
        })
    }
}

/// Log-scale buckets from 100 ns, each 25 % wider than the last (±12.5 % error),
/// up to ~100 s; atomics only.
pub struct LatencyHistogram {
    buckets: Vec<AtomicU64>,
}

const FIRST_NS: f64 = 100.0;
const GROWTH: f64 = 1.25;
const BUCKETS: usize = 96;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl LatencyHistogram {
    pub fn record(&self, d: Duration) {
        let ns = d.as_nanos() as f64;
        let i = if ns <= FIRST_NS { 0 } else { ((ns / FIRST_NS).ln() / GROWTH.ln()).ceil() as usize };
        self.buckets[i.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// The upper bound of the bucket holding quantile `q`; `None` before any call.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos((FIRST_NS * GROWTH.powi(i as i32)) as u64));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_a_bucket() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap().as_secs_f64() * 1e6;
        let p99 = h.quantile(0.99).unwrap().as_secs_f64() * 1e6;
        assert!((50.0..=50.0 * GROWTH).contains(&p50), "p50 {p50}");
        assert!((99.0..=99.0 * GROWTH).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn faults_are_counted_by_kind() {
        let s = PolicyStats::default();
        s.record(Duration::from_micros(3), None);
        s.record(Duration::from_micros(3), Some("deadline"));
        s.record(Duration::from_micros(3), Some("deadline"));
        let j = s.to_json();
        assert_eq!(j["calls"], 3);
        assert_eq!(j["faults"]["deadline"], 2);
    }
}
