//! A tenant's policy over time: the live versions plus where they come from, and the
//! swap that replaces the active version while events flow. A candidate is compiled
//! and checked off the hot path ([`PolicySource::load`]), then installed atomically
//! ([`LivePolicy::install`]); a refused candidate leaves the old version serving.

use super::live::{LivePolicy, Swapped};
use super::source::{PolicySource, SwapError};
use super::{PolicyEngine, PolicyVersion};
use crate::telemetry::metrics_names as m;
use std::sync::{Arc, Mutex};

/// The live policy of one tenant and the source a reload builds from.
pub struct TenantPolicy {
    /// The active and previous versions and their statistics.
    pub live: LivePolicy,
    source: Mutex<PolicySource>,
}

impl TenantPolicy {
    pub fn new(version: PolicyVersion, source: PolicySource, origin: &'static str) -> Self {
        TenantPolicy { live: LivePolicy::new(version, origin), source: Mutex::new(source) }
    }

    /// The active version. Callers hold the `Arc` for the whole evaluation, so a swap
    /// never changes the version under an event already being evaluated.
    pub fn current(&self) -> Arc<PolicyVersion> {
        self.live.current()
    }

    pub fn source(&self) -> PolicySource {
        self.source.lock().expect("source lock").clone()
    }

    /// Replaces the source a later reload builds from (SIGHUP, the file watcher).
    pub fn set_source(&self, source: PolicySource) {
        *self.source.lock().expect("source lock") = source;
    }

    /// Builds a candidate (from `bytes`, else the source's file; with `config_json`,
    /// else the source's config), checks it and installs it.
    pub async fn swap(
        &self,
        engine: &PolicyEngine,
        tenant: &str,
        bytes: Option<Vec<u8>>,
        config_json: Option<String>,
        origin: &'static str,
    ) -> Result<Swapped, SwapError> {
        let source = self.source();
        let (engine, id, config) = (engine.clone(), tenant.to_string(), config_json.clone());
        let candidate =
            tokio::task::spawn_blocking(move || source.load(&engine, &id, bytes.as_deref(), config.as_deref()))
                .await
                .map_err(|e| SwapError::Loader(e.to_string()))?;
        let result = candidate.map(|version| {
            let swapped = self.live.install(version, origin);
            if let Some(config) = config_json {
                self.source.lock().expect("source lock").config_json = config;
            }
            swapped
        });
        log_swap(tenant, origin, &result);
        result
    }

    /// Makes the previous version active again.
    pub fn rollback(&self, tenant: &str) -> Result<Swapped, SwapError> {
        let result = self.live.rollback();
        log_swap(tenant, "rollback", &result);
        result
    }
}

fn log_swap(tenant: &str, origin: &str, result: &Result<Swapped, SwapError>) {
    match result {
        Ok(s) if s.unchanged => tracing::info!(tenant, origin, version = &*s.active.version, "policy unchanged"),
        Ok(s) => tracing::info!(
            tenant,
            origin,
            version = &*s.active.version,
            previous = s.previous.as_ref().map(|p| &*p.version),
            "policy swapped"
        ),
        Err(e) => tracing::error!(tenant, origin, "policy swap refused, the old version keeps serving: {e}"),
    }
    let outcome = match result {
        Ok(_) => "ok",
        Err(_) => "refused",
    };
    metrics::counter!(m::POLICY_SWAPS, "tenant" => tenant.to_string(), "outcome" => outcome).increment(1);
}
