//! `hostd check`: validates a config and loads every policy, one line per problem.

use crate::config::Config;
use crate::policy::{load_policy, PolicyEngine};
use crate::record::TenantId;
use crate::sinks::{self, SinkContext};
use std::path::Path;

/// Returns one line per problem; empty means the config is good.
pub fn check(path: &Path) -> Vec<String> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return vec![format!("{e:#}")],
    };
    let engine = match PolicyEngine::new() {
        Ok(e) => e,
        Err(e) => return vec![format!("{e:#}")],
    };
    let mut problems = Vec::new();
    match config.read_secrets() {
        Ok(secrets) => secrets.warnings.iter().for_each(|w| tracing::warn!("{w}")),
        Err(e) => problems.extend(e),
    }
    if let Err(e) = config.server.read_secret_key() {
        problems.push(e);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return vec![format!("cannot start the runtime the route checks run on: {e}")],
    };
    let egress = config.server.egress();
    for tc in &config.tenants {
        if !tc.policy.exists() {
            problems.push(format!("tenant `{}`: policy {}: file not found", tc.id, tc.policy.display()));
        } else if let Err(e) = load_policy(&engine, tc) {
            problems.push(format!("{e:#}"));
        }
        for (name, rc) in &tc.routes {
            let ctx = SinkContext::new(TenantId::from(tc.id.as_str()), name.as_str(), egress.clone());
            if let Err(e) = runtime.block_on(sinks::check(&ctx, rc)) {
                problems.push(e.to_string());
            }
        }
    }
    problems
}
