//! The `hostd.toml` schema and its validation (`hostd check`).
//!
//! Every table denies unknown keys, so a typo is an error that names the key instead of
//! a setting silently ignored.

mod routes;
mod tokens;

pub use routes::*;
pub use tokens::*;

use crate::units::{de_duration, de_size};
use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP ingest listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest request body ingest accepts (413 above it).
    #[serde(default = "default_body_limit", deserialize_with = "de_size")]
    pub body_limit: u64,
    /// Where hostd keeps its state (the dead-letter file for now).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Accept requests without a token. Only allowed on a loopback listener with a
    /// single tenant; the quickstart sets it when no token is given.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Env var holding the admin API token (`Authorization: Bearer`); without it the
    /// admin API answers only tenant tokens, each for its own entries.
    pub admin_token_env: Option<String>,
    /// How long a repeat of an accepted idempotency key is answered as a duplicate.
    #[serde(default = "default_dedupe_window", deserialize_with = "de_duration")]
    pub dedupe_window: Duration,
    /// On SIGTERM / SIGINT, how long in-flight deliveries may finish.
    #[serde(default = "default_drain_timeout", deserialize_with = "de_duration")]
    pub drain_timeout: Duration,
    /// `fsync`: a 202 means the batch is on disk (survives power loss);
    /// `os`: handed to the OS (survives a crash of hostd, not of the machine);
    /// `none`: benchmarks only.
    #[serde(default)]
    pub durability: Durability,
    /// Reload a tenant's policy when its file changes (write it elsewhere and `mv` it
    /// into place: a half-written file is refused and the old version keeps serving).
    #[serde(default = "default_true")]
    pub watch_policies: bool,
    /// Idle policy instances of a tenant that made no call for this long are freed (the
    /// compiled component stays; the next call instantiates again).
    #[serde(default = "default_policy_idle_ttl", deserialize_with = "de_duration")]
    pub policy_idle_ttl: Duration,
    /// Linear memory all tenants' idle instances may hold together; beyond it the least
    /// recently used tenants' idle instances are freed first.
    #[serde(default = "default_policy_memory_budget", deserialize_with = "de_size")]
    pub policy_memory_budget: u64,
    /// Most events one ingest request may carry (413 above it, before any policy runs):
    /// with the policy deadline, this bounds the policy time one request can cost.
    #[serde(default = "default_max_events_per_request")]
    pub max_events_per_request: usize,
    /// A second listener for `/metrics`, `/readyz` and `/healthz`; when set, the ingest
    /// listener serves only `/healthz` of the three.
    pub metrics_listen: Option<SocketAddr>,
    /// Env var holding a token `/metrics` requires (`Authorization: Bearer`); `/readyz`
    /// then shows the spool depths only to it.
    pub metrics_token_env: Option<String>,
    /// Proxy for webhook requests (`http://[user:pass@]host:port`). Without it webhooks
    /// never use a proxy, whatever `HTTP_PROXY` / `HTTPS_PROXY` say.
    pub http_proxy: Option<String>,
    /// Let webhooks reach private, loopback, link-local and other non-public addresses.
    #[serde(default)]
    pub allow_private_targets: bool,
    /// Non-public address ranges webhooks may reach anyway, like `["10.0.0.0/8"]`.
    #[serde(default)]
    pub allowed_private_targets: Vec<crate::egress::Cidr>,
    /// DLQ entries dead-lettered longer ago than this are deleted by a periodic sweep.
    #[serde(default = "default_dlq_retention", deserialize_with = "de_duration")]
    pub dlq_retention: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    #[default]
    Fsync,
    Os,
    /// No durability at all (SQLite `synchronous=OFF`): for benchmarks only.
    None,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            body_limit: default_body_limit(),
            data_dir: default_data_dir(),
            allow_unauthenticated: false,
            admin_token_env: None,
            dedupe_window: default_dedupe_window(),
            drain_timeout: default_drain_timeout(),
            durability: Durability::default(),
            watch_policies: true,
            policy_idle_ttl: default_policy_idle_ttl(),
            policy_memory_budget: default_policy_memory_budget(),
            max_events_per_request: default_max_events_per_request(),
            metrics_listen: None,
            metrics_token_env: None,
            http_proxy: None,
            allow_private_targets: false,
            allowed_private_targets: Vec::new(),
            dlq_retention: default_dlq_retention(),
        }
    }
}

fn default_max_events_per_request() -> usize {
    1000
}

fn default_true() -> bool {
    true
}
fn default_policy_idle_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_policy_memory_budget() -> u64 {
    512 << 20
}

fn default_dlq_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_dedupe_window() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8787".parse().expect("valid default address")
}
fn default_body_limit() -> u64 {
    1 << 20
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("hostd-data")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    /// Name of the environment variable holding the tenant's bearer token.
    pub token_env: Option<String>,
    /// File holding the tenant's bearer token (trailing whitespace ignored).
    pub token_file: Option<PathBuf>,
    /// Path of the policy component (`.wasm`).
    pub policy: PathBuf,
    /// Passed to the policy's `configure` as JSON.
    #[serde(default)]
    pub policy_config: Option<toml::Table>,
    /// JSONL fixtures every new version of the policy must pass before it is swapped in
    /// (and at startup): `{"event": {...}, "expect": {...}}` per line, `expect` being a
    /// subset of what `hostd policy test` prints as `result`.
    #[serde(default)]
    pub policy_tests: Option<PathBuf>,
    #[serde(default)]
    pub on_policy_error: OnPolicyError,
    /// Store the original event (before the policy redacted it) beside its deliveries
    /// and DLQ entries, for replay through the policy. `false`: only shaped payloads
    /// are stored, and replay through the policy is refused for this tenant.
    #[serde(default = "default_true")]
    pub keep_original: bool,
    #[serde(default)]
    pub limits: PolicyLimits,
    #[serde(default)]
    pub routes: BTreeMap<String, RouteConfig>,
    /// A token given directly on the command line (quickstart); never read from the
    /// config text, so no secret sits in a config file.
    #[serde(skip)]
    pub token: Option<String>,
}

/// What happens to an event whose policy faults. Never "deliver it unshaped".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnPolicyError {
    #[default]
    DeadLetter,
    Drop,
}

/// Per-tenant sandbox limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyLimits {
    /// Wall-clock budget of one `evaluate`, enforced by epoch interruption.
    #[serde(default = "default_deadline", deserialize_with = "de_duration")]
    pub deadline: Duration,
    /// Cap on the guest's linear memory.
    #[serde(default = "default_memory", deserialize_with = "de_size")]
    pub memory: u64,
    /// Most deliveries one decision may contain.
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: usize,
    /// Most payload bytes one decision may contain, all deliveries together. Routes,
    /// keys, redaction pointers and error text are counted in a second budget of the
    /// same size; the host never copies more than twice this (plus 64 KiB) out of one
    /// call.
    #[serde(default = "default_max_output", deserialize_with = "de_size")]
    pub max_output: u64,
    /// Most `evaluate` calls of this tenant running at once (each on its own
    /// instance); further requests wait for a slot. With `memory` and `max_output`
    /// this bounds what one tenant can make the host hold.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// The guard against a call that never ends: the `deadline` counts the policy's
    /// own CPU time (a host starved of CPU never faults a well-behaved policy), and
    /// this caps the wall-clock time of one call whatever the reason.
    #[serde(default = "default_wall_deadline", deserialize_with = "de_duration")]
    pub wall_deadline: Duration,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            deadline: default_deadline(),
            memory: default_memory(),
            max_deliveries: default_max_deliveries(),
            max_output: default_max_output(),
            max_concurrency: default_max_concurrency(),
            wall_deadline: default_wall_deadline(),
        }
    }
}

fn default_deadline() -> Duration {
    Duration::from_millis(20)
}
fn default_memory() -> u64 {
    32 << 20
}
fn default_max_deliveries() -> usize {
    16
}
fn default_max_output() -> u64 {
    1 << 20
}
fn default_max_concurrency() -> usize {
    4
}
fn default_wall_deadline() -> Duration {
    Duration::from_secs(1)
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
        let route = RouteConfig::new(match q.out {
            Some(path) => RouteKind::File { path },
            None => RouteKind::Stdout {},
        });
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

impl TenantConfig {
    /// Reads the tenant's token from its env var or file. `Ok(None)` when neither is
    /// configured (unauthenticated quickstart).
    pub fn read_token(&self) -> crate::Result<Option<String>> {
        if let Some(token) = &self.token {
            return Ok(Some(token.clone()));
        }
        if let Some(var) = &self.token_env {
            let token = std::env::var(var)
                .map_err(|_| anyhow::anyhow!("tenant `{}`: token_env `{}` is not set", self.id, var))?;
            if token.is_empty() {
                bail!("tenant `{}`: token_env `{}` is empty", self.id, var);
            }
            return Ok(Some(token));
        }
        if let Some(path) = &self.token_file {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("tenant `{}`: cannot read token_file {}", self.id, path.display()))?;
            let token = token.trim_end().to_string();
            if token.is_empty() {
                bail!("tenant `{}`: token_file {} is empty", self.id, path.display());
            }
            return Ok(Some(token));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(t.routes["default"].kind, RouteKind::File { .. }));
        assert_eq!(Config::policy_config_json(t), r#"{"patterns":{"ticket":"TCK-\\d+"}}"#);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse(&MINIMAL.replace("policy = ", "polcy = ")).unwrap_err();
        assert!(e.contains("polcy"), "{e}");
        let e = parse(&MINIMAL.replace("path = ", "pth = ")).unwrap_err();
        assert!(e.contains("pth"), "{e}");
        let e = parse(&MINIMAL.replace("type = \"file\"", "type = \"carrier-pigeon\"")).unwrap_err();
        assert!(e.contains("carrier-pigeon"), "{e}");
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
        assert_eq!(r.delivery.ordering, Ordering::PerKey);
        assert_eq!(r.delivery.concurrency, 32);
        let RouteKind::Webhook(w) = &r.kind else { panic!("webhook") };
        assert_eq!(w.secret_env.to_vec(), vec!["A", "B"]);
        assert!(w.standard_webhooks && w.x_signature);
        let e = parse(&text.replace("ordering", "orderin")).unwrap_err();
        assert!(e.contains("orderin"), "{e}");
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
}
