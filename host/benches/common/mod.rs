//! Shared by the benches: hostd with one tenant, the pass-through policy and one route.

use hostd::config::{Config, Durability, RouteConfig, ServerConfig, TenantConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

pub fn one_tenant(
    listen: SocketAddr,
    data_dir: PathBuf,
    durability: Durability,
    route: RouteConfig,
    token: &str,
) -> Config {
    let plugin =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-wasip2/release/pass_through.wasm");
    assert!(plugin.exists(), "run `make plugins` first");
    Config {
        server: ServerConfig {
            listen,
            data_dir,
            durability,
            body_limit: 8 << 20,
            allow_private_targets: true, // the benches' receivers are on loopback
            ..ServerConfig::default()
        },
        tenants: vec![TenantConfig {
            id: "bench".into(),
            token_env: None,
            token_file: None,
            policy: plugin,
            policy_config: None,
            policy_tests: None,
            on_policy_error: Default::default(),
            keep_original: true,
            limits: Default::default(),
            routes: BTreeMap::from([("default".to_string(), route)]),
            token: Some(token.into()),
        }],
    }
}

/// A route's transport settings, as a `[tenants.routes.NAME]` table holds them.
pub fn settings<const N: usize>(pairs: [(&str, toml::Value); N]) -> toml::Table {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
