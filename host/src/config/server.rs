//! `[server]`: the listener, the data directory and everything shared by all tenants.

use crate::egress::{Cidr, Egress, TargetPolicy};
use crate::secret_key::SecretKey;
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
    /// Env var holding the key that encrypts signing secrets in the store (32 bytes as
    /// hex or base64, `openssl rand -hex 32`). Without it (or `secret_key_file`) the
    /// management API cannot store a signing secret.
    pub secret_key_env: Option<String>,
    /// File holding that key, instead of `secret_key_env`.
    pub secret_key_file: Option<PathBuf>,
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
            secret_key_env: None,
            secret_key_file: None,
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

impl ServerConfig {
    /// The key `secret_key_env` or `secret_key_file` names, if one does. Errors name the
    /// key and the variable or file, never the key's text.
    pub fn read_secret_key(&self) -> Result<Option<SecretKey>, String> {
        self.read_secret_key_from(|var| std::env::var(var).ok())
    }

    /// [`ServerConfig::read_secret_key`], with `env` standing in for the environment.
    pub fn read_secret_key_from(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<SecretKey>, String> {
        let (source, text) = match (&self.secret_key_env, &self.secret_key_file) {
            (Some(_), Some(_)) => return Err(SECRET_KEY_TWICE.to_string()),
            (None, None) => return Ok(None),
            (Some(var), None) => {
                let source = format!("server.secret_key_env `{var}`");
                let text = env(var).ok_or_else(|| format!("{source} is not set"))?;
                (source, text)
            }
            (None, Some(path)) => {
                let source = format!("server.secret_key_file {}", path.display());
                let text = std::fs::read_to_string(path).map_err(|e| format!("{source}: cannot read it: {e}"))?;
                (source, text)
            }
        };
        if text.trim().is_empty() {
            return Err(format!("{source} is empty"));
        }
        SecretKey::parse(&text, &source).map(Some).map_err(|e| e.to_string())
    }
}

/// The error for a config that sets both key sources.
pub const SECRET_KEY_TWICE: &str = "server: set one of `secret_key_env` and `secret_key_file`, not both";

#[cfg(test)]
mod tests {
    use super::*;

    fn server(text: &str) -> ServerConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_secret_key_comes_from_one_place_and_is_never_shown() {
        let hex = "ab".repeat(32);
        let env_key = server("secret_key_env = \"K\"");
        let key = env_key.read_secret_key_from(|v| (v == "K").then(|| hex.clone())).unwrap().unwrap();
        assert_eq!(key.source(), "server.secret_key_env `K`");
        assert_eq!(env_key.read_secret_key_from(|_| None).unwrap_err(), "server.secret_key_env `K` is not set");
        let e = env_key.read_secret_key_from(|_| Some("zz: not a key!".into())).unwrap_err();
        assert!(e.starts_with("server.secret_key_env `K`: not a key") && !e.contains("zz:"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{hex}\n")).unwrap();
        let file_key = server(&format!("secret_key_file = {:?}", path.display().to_string()));
        assert_eq!(file_key.read_secret_key_from(|_| None).unwrap().unwrap().id(), key.id());
        std::fs::write(&path, "\n").unwrap();
        let e = file_key.read_secret_key_from(|_| None).unwrap_err();
        assert_eq!(e, format!("server.secret_key_file {} is empty", path.display()));

        let both = server(&format!("secret_key_env = \"K\"\nsecret_key_file = {:?}", path.display().to_string()));
        assert_eq!(both.read_secret_key_from(|_| None).unwrap_err(), SECRET_KEY_TWICE);
        assert!(server("").read_secret_key_from(|_| None).unwrap().is_none());
    }
}
