//! `[[tenants]]`: a tenant's token, policy, limits and routes.

use super::{default_true, RouteConfig};
use crate::units::{de_duration, de_size};
use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize, utoipa::ToSchema)]
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
