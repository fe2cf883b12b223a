//! A tenant's policy over time: the live versions plus where they come from, and the
//! swap that replaces the active version while events flow. A candidate is compiled
//! and checked off the hot path ([`PolicySource::load`]), then installed atomically
//! ([`LivePolicy::install`]); a refused candidate leaves the old version serving.

use super::decision::RouteSet;
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
    /// `version` is made to share the source's route set (what [`TenantPolicy::set_routes`]
    /// swaps), whatever it was loaded with.
    pub fn new(mut version: PolicyVersion, source: PolicySource, origin: &'static str) -> Self {
        version.share_routes(source.routes.clone());
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

    /// Replaces the source a later reload builds from (SIGHUP, the file watcher). The
    /// route set stays the tenant's live one (change it with [`TenantPolicy::set_routes`]).
    pub fn set_source(&self, mut source: PolicySource) {
        let mut current = self.source.lock().expect("source lock");
        source.routes = current.routes.clone();
        *current = source;
    }

    /// The routes the tenant's decisions may name, from the next decision on, for the
    /// active, previous and every later version alike. A decision naming a route not
    /// in the set faults with `unknown_route`.
    pub fn set_routes(&self, routes: RouteSet) {
        self.source.lock().expect("source lock").routes.set(routes);
    }

    /// The routes decisions may name as of now.
    pub fn routes(&self) -> Arc<RouteSet> {
        self.source.lock().expect("source lock").routes.current()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyLimits;
    use crate::policy::decision::LiveRoutes;
    use crate::policy::PolicyEvent;

    fn only(routes: &[&str]) -> RouteSet {
        RouteSet::Only(routes.iter().map(|r| r.to_string()).collect())
    }

    fn event() -> PolicyEvent {
        PolicyEvent::sample("n", "{}")
    }

    fn fault(policy: &TenantPolicy) -> Option<&'static str> {
        policy.current().evaluate(&event()).err().map(|e| e.fault.kind())
    }

    #[tokio::test]
    async fn the_route_set_changes_for_every_version_at_once() {
        let engine = PolicyEngine::new().unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../plugins/target/wasm32-wasip2/release/pass_through.wasm");
        let source = PolicySource {
            path,
            config_json: "{}".into(),
            limits: PolicyLimits::default(),
            routes: LiveRoutes::new(only(&["default"])),
            tests: None,
        };
        // Loaded with a set of its own: the tenant's set is what counts.
        let first = source.load(&engine, "t", None, None).unwrap();
        let first = {
            let mut v = first;
            v.share_routes(LiveRoutes::new(RouteSet::Any));
            v
        };
        let policy = TenantPolicy::new(first, source, "startup");
        assert_eq!(fault(&policy), None, "pass_through names `default`");
        policy.set_routes(only(&["other"]));
        assert_eq!(fault(&policy), Some("unknown_route"), "`default` was removed");

        // A swapped-in version and the previous one share the set.
        let bytes = std::fs::read(policy.source().path).unwrap();
        policy.swap(&engine, "t", Some(bytes), Some("{\"v\":2}".into()), "api").await.unwrap();
        assert_eq!(fault(&policy), Some("unknown_route"));
        policy.set_routes(only(&["default", "other"]));
        assert_eq!(fault(&policy), None);
        assert!(policy.live.previous().unwrap().routes().shares(policy.current().routes()));

        // A new source (SIGHUP) keeps the live set.
        let mut reloaded = policy.source();
        reloaded.routes = LiveRoutes::new(RouteSet::Any);
        policy.set_source(reloaded);
        policy.set_routes(only(&["other"]));
        assert_eq!(fault(&policy), Some("unknown_route"));
        assert_eq!(*policy.routes(), only(&["other"]));
    }
}
