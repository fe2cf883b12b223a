//! Building a running tenant from its config: its policy (compiled and checked), its
//! sinks and route queues. What startup does for every configured tenant, and what
//! adding a tenant at runtime does for one.

use super::{Tenant, TenantSettings};
use crate::config::TenantConfig;
use crate::delivery::Deliverer;
use crate::egress::Egress;
use crate::policy::{PolicyEngine, PolicySource, TenantPolicy};
use crate::record::TenantId;
use crate::sinks::{self, SinkContext};
use crate::store::Store;
use anyhow::anyhow;
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
        let id = TenantId::from(tc.id.as_str());
        let mut sinks = Vec::with_capacity(tc.routes.len());
        for (name, rc) in &tc.routes {
            let sink = sinks::build(&SinkContext::new(id.clone(), name.as_str(), self.egress.clone()), rc)?;
            sinks.push((name.clone(), sink, rc.delivery.clone()));
        }
        let source = PolicySource::of(tc);
        let version = source.load(self.engine, &tc.id, None, None).map_err(|e| anyhow!("tenant `{}`: {e}", tc.id))?;
        let routes = sinks.iter().map(|(name, _, _)| name.clone()).collect();
        for (name, sink, options) in sinks {
            self.deliverer.add_route(id.clone(), name, sink, &options, self.spool.clone());
        }
        Ok(Tenant {
            id,
            policy: TenantPolicy::new(version, source, origin),
            settings: TenantSettings { on_policy_error: tc.on_policy_error, keep_original: tc.keep_original },
            routes,
        })
    }
}
