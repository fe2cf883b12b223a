//! The `hostd.toml` schema and its validation (`hostd check`).
//!
//! Every table denies unknown keys, so a typo is an error that names the key instead of
//! a setting silently ignored.

mod routes;
pub(crate) mod server;
mod tenant;
mod tokens;

pub use routes::*;
pub use server::*;
pub use tenant::*;
pub use tokens::*;

use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
}

/// What `hostd --plugin PATH` needs to run without a config file.
pub struct Quickstart {
    pub plugin: PathBuf,
    pub listen: SocketAddr,
    pub out: Option<PathBuf>,
    pub token: Option<String>,
    pub policy_config: Option<toml::Table>,
    pub data_dir: PathBuf,
}

impl Config {
    /// One tenant `default` with one route `default` (stdout, or a file with `--out`).
    /// Without a token, only a loopback listener may accept unauthenticated requests.
    pub fn quickstart(q: Quickstart) -> crate::Result<Config> {
        let route = match &q.out {
            Some(path) => {
                let path =
                    path.to_str().ok_or_else(|| anyhow::anyhow!("--out {}: not a UTF-8 path", path.display()))?;
                RouteConfig::new("file", toml::Table::from_iter([("path".to_string(), path.into())]))
            }
            None => RouteConfig::new("stdout", toml::Table::new()),
        };
        let allow_unauthenticated = q.token.is_none();
        if allow_unauthenticated && !q.listen.ip().is_loopback() {
            bail!("--listen {}: without --token (or HOSTD_TOKEN) hostd only listens on a loopback address", q.listen);
        }
        let config = Config {
            server: ServerConfig {
                listen: q.listen,
                data_dir: q.data_dir,
                allow_unauthenticated,
                // The quickstart may reach loopback (a receiver beside it), nothing else private.
                allowed_private_targets: ["127.0.0.0/8", "::1"]
                    .iter()
                    .filter_map(|c| crate::egress::Cidr::parse(c).ok())
                    .collect(),
                ..ServerConfig::default()
            },
            tenants: vec![TenantConfig {
                id: "default".into(),
                token_env: None,
                token_file: None,
                policy: q.plugin,
                policy_config: q.policy_config,
                policy_tests: None,
                on_policy_error: OnPolicyError::default(),
                keep_original: true,
                limits: PolicyLimits::default(),
                routes: BTreeMap::from([("default".to_string(), route)]),
                token: q.token,
            }],
        };
        config.validate_shape()?;
        Ok(config)
    }

    /// Reads and parses a config file. Unknown keys and wrong types are errors naming
    /// the key and its line.
    pub fn load(path: &Path) -> crate::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let config: Config = toml::from_str(&text).map_err(|e| {
            // One line: the file, the line number and toml's own message (which names the key).
            let line = e.span().map(|s| text[..s.start].lines().count().max(1));
            match line {
                Some(n) => anyhow::anyhow!("{} line {n}: {}", path.display(), e.message()),
                None => anyhow::anyhow!("{}: {}", path.display(), e.message()),
            }
        })?;
        config.validate_shape()?;
        Ok(config)
    }

    /// Checks that need more than one key at a time. Does not touch the filesystem or
    /// the environment; `hostd check` does that.
    pub fn validate_shape(&self) -> crate::Result<()> {
        let mut seen = std::collections::HashSet::new();
        for t in &self.tenants {
            if t.id.is_empty() {
                bail!("tenants: a tenant has an empty `id`");
            }
            if !seen.insert(t.id.as_str()) {
                bail!("tenants: tenant id `{}` appears twice", t.id);
            }
            if t.token_env.is_some() && t.token_file.is_some() {
                bail!("tenant `{}`: set one of `token_env` and `token_file`, not both", t.id);
            }
            if t.token_env.is_none()
                && t.token_file.is_none()
                && t.token.is_none()
                && !self.server.allow_unauthenticated
            {
                bail!("tenant `{}`: needs `token_env` or `token_file`", t.id);
            }
            if t.routes.is_empty() {
                bail!("tenant `{}`: has no `routes`; a policy can only deliver to configured routes", t.id);
            }
            if t.limits.max_deliveries == 0 {
                bail!("tenant `{}`: `limits.max_deliveries` must be at least 1", t.id);
            }
            if t.limits.max_concurrency == 0 {
                bail!("tenant `{}`: `limits.max_concurrency` must be at least 1", t.id);
            }
            if t.limits.wall_deadline < t.limits.deadline {
                bail!(
                    "tenant `{}`: `limits.wall_deadline` ({:?}) must not be shorter than `limits.deadline` ({:?})",
                    t.id,
                    t.limits.wall_deadline,
                    t.limits.deadline
                );
            }
        }
        let server = &self.server;
        if server.max_events_per_request == 0 {
            bail!("server.max_events_per_request must be at least 1");
        }
        if server.metrics_listen == Some(server.listen) && server.listen.port() != 0 {
            bail!("server.metrics_listen: must differ from server.listen ({})", server.listen);
        }
        if let Some(proxy) = &server.http_proxy {
            crate::egress::proxy_host(proxy)?;
        }
        if server.secret_key_env.is_some() && server.secret_key_file.is_some() {
            bail!("{SECRET_KEY_TWICE}");
        }
        if self.server.dlq_retention.is_zero() {
            bail!("server.dlq_retention: must be more than 0 (a long one like \"3650d\" keeps entries for years)");
        }
        if self.server.allow_unauthenticated {
            if !self.server.listen.ip().is_loopback() {
                bail!("server.allow_unauthenticated: only allowed on a loopback listener, not {}", self.server.listen);
            }
            if self.tenants.len() != 1 {
                bail!("server.allow_unauthenticated: needs exactly one tenant, found {}", self.tenants.len());
            }
        }
        Ok(())
    }

    /// The policy config of a tenant as the JSON text handed to `configure`.
    pub fn policy_config_json(tenant: &TenantConfig) -> String {
        match &tenant.policy_config {
            Some(table) => serde_json::to_string(table).expect("a TOML table is valid JSON"),
            None => "{}".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, String> {
        toml::from_str::<Config>(text).map_err(|e| e.to_string())
    }

    const MINIMAL: &str = r#"
        [[tenants]]
        id = "acme"
        token_env = "ACME_TOKEN"
        policy = "p.wasm"
        policy_config = { patterns = { ticket = "TCK-\\d+" } }
        [tenants.limits]
        deadline = "5ms"
        memory = "16MiB"
        [tenants.routes.default]
        type = "file"
        path = "out.jsonl"
    "#;

    #[test]
    fn parses_a_tenant_with_routes_and_limits() {
        let c = parse(MINIMAL).unwrap();
        c.validate_shape().unwrap();
        let t = &c.tenants[0];
        assert_eq!(t.limits.deadline, Duration::from_millis(5));
        assert_eq!(t.limits.memory, 16 << 20);
        assert_eq!(t.limits.max_deliveries, 16);
        assert_eq!(t.routes["default"].kind(), Some("file"));
        assert_eq!(Config::policy_config_json(t), r#"{"patterns":{"ticket":"TCK-\\d+"}}"#);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse(&MINIMAL.replace("policy = ", "polcy = ")).unwrap_err();
        assert!(e.contains("polcy"), "{e}");
        // A transport's own keys are the sinks' to name (`sinks::config` tests).
        let e = parse(&format!("[server]\nlisten_on = \"x\"\n{MINIMAL}")).unwrap_err();
        assert!(e.contains("listen_on"), "{e}");
    }

    #[test]
    fn webhook_routes_with_delivery_options() {
        let text = MINIMAL.replace(
            "type = \"file\"\n        path = \"out.jsonl\"",
            "type = \"webhook\"\n url = \"http://x\"\n secret_env = [\"A\", \"B\"]\n retry = [\"1s\", \"2m\"]\n ordering = \"per-key\"",
        );
        let c = parse(&text).unwrap();
        let r = &c.tenants[0].routes["default"];
        assert_eq!(r.delivery.retry, vec![Duration::from_secs(1), Duration::from_secs(120)]);
        assert_eq!(r.delivery.ordering, DeliveryOrder::PerKey);
        assert_eq!(r.delivery.concurrency, 32);
        assert_eq!(r.kind(), Some("webhook"));
        assert!(!r.sink.contains_key("retry") && !r.sink.contains_key("ordering"), "delivery keys are not the sink's");
        let e = parse(&text.replace("ordering = \"per-key\"", "ordering = \"sorted\"")).unwrap_err();
        assert!(e.contains("sorted"), "{e}");
        let e = parse(&text.replace("retry = [\"1s\", \"2m\"]", "concurrency = 0")).unwrap_err();
        assert!(e.contains("`concurrency` must be at least 1"), "{e}");
    }

    #[test]
    fn keep_original_and_dlq_retention() {
        let c = parse(MINIMAL).unwrap();
        assert!(c.tenants[0].keep_original, "kept by default");
        assert_eq!(c.server.dlq_retention, Duration::from_secs(30 * 24 * 3600));
        let c = parse(&format!("[server]\ndlq_retention = \"2h\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.server.dlq_retention, Duration::from_secs(7200));
        let c = parse(&MINIMAL.replace("policy = \"p.wasm\"", "policy = \"p.wasm\"\nkeep_original = false")).unwrap();
        assert!(!c.tenants[0].keep_original);
        let e = parse(&format!("[server]\ndlq_retention = \"0s\"\n{MINIMAL}")).unwrap().validate_shape().unwrap_err();
        assert!(e.to_string().contains("server.dlq_retention"), "{e}");
        let e = parse(&format!("[server]\ndlq_retention = \"soon\"\n{MINIMAL}")).unwrap_err();
        assert!(e.contains("soon"), "{e}");
    }

    #[test]
    fn shape_errors_name_the_tenant() {
        let c = parse(&MINIMAL.replace("token_env = \"ACME_TOKEN\"", "")).unwrap();
        assert!(c.validate_shape().unwrap_err().to_string().contains("`acme`: needs `token_env`"));
    }

    #[test]
    fn config_files_refuse_private_targets_the_quickstart_allows_loopback() {
        use crate::egress::AddressClass::{LinkLocal, Private};
        use std::net::IpAddr;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let file: crate::Config = toml::from_str("").unwrap();
        let file = file.server.egress();
        assert!(file.targets.check(ip("127.0.0.1")).is_err());
        assert!(file.proxy.is_none());
        let quick = crate::Config::quickstart(crate::config::Quickstart {
            plugin: "p.wasm".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            out: None,
            token: None,
            policy_config: None,
            data_dir: "d".into(),
        })
        .unwrap();
        let quick = quick.server.egress();
        quick.targets.check(ip("127.0.0.1")).unwrap();
        quick.targets.check(ip("::1")).unwrap();
        assert_eq!(quick.targets.check(ip("10.0.0.1")).unwrap_err().class, Private);
        assert_eq!(quick.targets.check(ip("169.254.169.254")).unwrap_err().class, LinkLocal);
    }
}
