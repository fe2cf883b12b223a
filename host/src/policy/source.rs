//! Where a tenant's policy comes from, and building a checked version from it.

use super::decision::{LiveRoutes, RouteSet};
use super::fixtures::check_fixtures;
use super::run::run_policy_code;
use super::{PolicyEngine, PolicyVersion};
use crate::config::{Config, PolicyLimits, TenantConfig};
use std::path::PathBuf;

/// Why a candidate version was not installed. The old version keeps serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwapError {
    /// It does not compile, does not match the WIT world, refuses its config in
    /// `configure`, or fails the tenant's `policy_tests`.
    #[error("{0}")]
    Refused(String),
    /// A rollback with nothing to roll back to.
    #[error("there is no previous version to roll back to")]
    NoPreviousVersion,
    /// The loader thread died (a bug in hostd, not in the policy).
    #[error("the policy loader failed: {0}")]
    Loader(String),
}

/// Where a tenant's policy comes from: what a reload needs to build a new version.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySource {
    pub path: PathBuf,
    pub config_json: String,
    pub limits: PolicyLimits,
    /// The routes its decisions may name: the tenant's live set, shared by every
    /// version built from this source.
    pub routes: LiveRoutes,
    pub tests: Option<PathBuf>,
}

impl PolicySource {
    pub fn of(tc: &TenantConfig) -> Self {
        PolicySource {
            path: tc.policy.clone(),
            config_json: Config::policy_config_json(tc),
            limits: tc.limits.clone(),
            routes: LiveRoutes::new(RouteSet::Only(tc.routes.keys().cloned().collect())),
            tests: tc.policy_tests.clone(),
        }
    }

    /// Compiles and checks a version: `bytes` (else the file), `config_json` (else the
    /// source's). Blocking: compiles with Cranelift and runs guest code.
    pub fn load(
        &self,
        engine: &PolicyEngine,
        tenant: &str,
        bytes: Option<&[u8]>,
        config_json: Option<&str>,
    ) -> Result<PolicyVersion, SwapError> {
        let config = config_json.unwrap_or(&self.config_json).to_string();
        let (limits, routes) = (self.limits.clone(), self.routes.clone());
        let version = match bytes {
            Some(b) => PolicyVersion::load(engine, tenant, b, config, limits, routes),
            None => PolicyVersion::load_file(engine, tenant, &self.path, config, limits, routes),
        }
        .map_err(|e| SwapError::Refused(format!("{e:#}")))?;
        if let Some(tests) = &self.tests {
            let n = run_policy_code(|| check_fixtures(&version, tests))
                .map_err(|e| SwapError::Refused(format!("version {} fails its tests: {e}", version.version())))?;
            tracing::debug!(tenant, version = &**version.version(), "passed {n} policy_tests");
        }
        Ok(version)
    }
}

/// Loads a tenant's policy from its config, for startup and `hostd check`. The error
/// names the tenant.
pub fn load_policy(engine: &PolicyEngine, tc: &TenantConfig) -> crate::Result<PolicyVersion> {
    PolicySource::of(tc).load(engine, &tc.id, None, None).map_err(|e| anyhow::anyhow!("tenant `{}`: {e}", tc.id))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
