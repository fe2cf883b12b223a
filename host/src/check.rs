//! `hostd check`: validates a config and loads every policy, one line per problem.

use crate::config::{Config, RouteKind};
use crate::policy::{load_policy, PolicyEngine};
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
    let egress = config.server.egress();
    for tc in &config.tenants {
        if !tc.policy.exists() {
            problems.push(format!("tenant `{}`: policy {}: file not found", tc.id, tc.policy.display()));
        } else if let Err(e) = load_policy(&engine, tc) {
            problems.push(format!("{e:#}"));
        }
        for (name, rc) in &tc.routes {
            match &rc.kind {
                RouteKind::File { path } if path.is_dir() => {
                    problems.push(format!("tenant `{}`: route `{name}`: path {} is a directory", tc.id, path.display()))
                }
                RouteKind::Webhook(_) | RouteKind::RedisStream(_) | RouteKind::Kafka(_) | RouteKind::Sns(_) => {
                    if let Err(e) = crate::sinks::build(&tc.id, name, rc, &egress) {
                        problems.push(format!("tenant `{}`: {e:#}", tc.id));
                    }
                }
                _ => {}
            }
        }
    }
    problems
}
