//! Building a running tenant from its config: its policy (compiled and checked), its
//! sinks and route queues. What startup does for every configured tenant, and what
//! adding a tenant at runtime does for one.

use super::{Tenant, TenantSettings};
use crate::config::{RouteConfig, TenantConfig};
use crate::delivery::Deliverer;
use crate::egress::Egress;
use crate::policy::{PolicyEngine, PolicySource, TenantPolicy};
use crate::record::TenantId;
use crate::sinks::{self, RouteError, SinkContext};
use crate::store::Store;
use anyhow::anyhow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What building a tenant needs from the daemon.
pub struct Provisioner<'a> {
    pub engine: &'a PolicyEngine,
    pub egress: &'a Egress,
    pub deliverer: &'a Deliverer,
    pub spool: &'a Arc<dyn Store>,
}

impl Provisioner<'_> {
    /// Loads the tenant's policy and builds its sinks, then starts its route queues.
    /// Blocking (compiles the policy and runs `configure`). The first problem is an
    /// error naming the tenant and the part; nothing is started then.
    pub fn build(&self, tc: &TenantConfig, origin: &'static str) -> crate::Result<Tenant> {
        self.build_with_secrets(tc, origin, &BTreeMap::new())
    }

    /// [`Provisioner::build`], with the signing secrets hostd keeps for some of the
    /// routes (route name → secrets, newest first).
    pub fn build_with_secrets(
        &self,
        tc: &TenantConfig,
        origin: &'static str,
        secrets: &BTreeMap<String, Vec<String>>,
    ) -> crate::Result<Tenant> {
        let id = TenantId::from(tc.id.as_str());
        let mut sinks = Vec::with_capacity(tc.routes.len());
        for (name, rc) in &tc.routes {
            let ctx = SinkContext::new(id.clone(), name.as_str(), self.egress.clone())
                .with_signing_secrets(secrets.get(name).cloned().unwrap_or_default());
            let sink = sinks::build(&ctx, rc)?;
            sinks.push((name.clone(), sink, rc.delivery.clone()));
        }
        let source = PolicySource::of(tc);
        let version = source.load(self.engine, &tc.id, None, None).map_err(|e| anyhow!("tenant `{}`: {e}", tc.id))?;
        let routes = sinks.iter().map(|(name, _, _)| name.clone()).collect();
        for (name, sink, options) in sinks {
            self.deliverer.add_route(id.clone(), name, sink, &options, self.spool.clone());
        }
        let settings = TenantSettings { on_policy_error: tc.on_policy_error, keep_original: tc.keep_original };
        Ok(Tenant::new(id, TenantPolicy::new(version, source, origin), settings, routes))
    }

    /// Adds a route to a running tenant, or changes one it has: builds the sink first
    /// (an error changes nothing), then starts the queue or swaps the running one's
    /// sink and options in place (attempts in flight finish on the old sink, later
    /// ones, retries included, use the new), then lets the policy's decisions name it.
    pub fn put_route(&self, tenant: &Tenant, name: &str, rc: &RouteConfig) -> Result<RouteChange, RouteError> {
        self.put_signed_route(tenant, name, rc, Vec::new())
    }

    /// [`Provisioner::put_route`] with the route's stored signing secrets, newest first.
    pub fn put_signed_route(
        &self,
        tenant: &Tenant,
        name: &str,
        rc: &RouteConfig,
        signing_secrets: Vec<String>,
    ) -> Result<RouteChange, RouteError> {
        let ctx = SinkContext::new(tenant.id.clone(), name, self.egress.clone()).with_signing_secrets(signing_secrets);
        let sink = sinks::build(&ctx, rc)?;
        if self.deliverer.update_route(tenant.id.clone(), name.to_string(), sink.clone(), &rc.delivery) {
            tenant.add_route(name);
            return Ok(RouteChange::Updated);
        }
        self.deliverer.add_route(tenant.id.clone(), name.to_string(), sink, &rc.delivery, self.spool.clone());
        tenant.add_route(name);
        Ok(RouteChange::Added)
    }

    /// Removes a route from a running tenant: decisions naming it fault with
    /// `unknown_route` from the next event on; its queue stops once what it holds is
    /// delivered or dead-lettered (dead-letter its pending deliveries first to drop
    /// them). `false` when the tenant has no such route.
    pub fn remove_route(&self, tenant: &Tenant, name: &str) -> bool {
        let known = tenant.remove_route(name);
        self.deliverer.retire_route(&tenant.id, name) || known
    }
}

/// What [`Provisioner::put_route`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteChange {
    Added,
    Updated,
}
