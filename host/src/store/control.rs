//! The control plane's records: tenants, routes, tokens and signing secrets created at
//! runtime, stored beside the deliveries so that they survive a restart.

use serde::{Deserialize, Serialize};

/// What a token may do, for its own tenant only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenScope {
    /// Send events: `POST /v1/events`, the LangGraph Platform hook.
    Ingest,
    /// Change the tenant's own routes, policy, DLQ and tokens (and read them).
    Manage,
    /// Read the tenant's own DLQ, policy status, routes and tokens.
    ReadOnly,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Ingest => "ingest",
            TokenScope::Manage => "manage",
            TokenScope::ReadOnly => "read-only",
        }
    }
}
