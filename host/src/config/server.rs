//! `[server]`: the listener, the data directory and everything shared by all tenants.

use crate::egress::{Cidr, Egress, TargetPolicy};
use crate::units::{de_duration, de_size};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    pub allowed_private_targets: Vec<Cidr>,
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

pub(super) fn default_true() -> bool {
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

pub(super) fn default_dedupe_window() -> Duration {
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

impl ServerConfig {
    /// What outbound HTTP clients may reach (`allow_private_targets`,
    /// `allowed_private_targets`) and through which proxy (`http_proxy`).
    pub fn egress(&self) -> Egress {
        Egress {
            targets: Arc::new(TargetPolicy {
                allow_all: self.allow_private_targets,
                allowed: self.allowed_private_targets.clone(),
            }),
            proxy: self.http_proxy.clone(),
        }
    }
}
