//! The control plane's records: tenants, routes, tokens and signing secrets created at
//! runtime, stored beside the deliveries so that they survive a restart.
//!
//! The store keeps them and nothing more: a tenant's and a route's `spec` is the JSON
//! its API layer made of it (the store checks only that it is JSON), tokens are stored
//! as their SHA-256 digest, signing secrets encrypted under the `server.secret_key_*`
//! key. Every change goes through [`Store::control_apply`](super::Store::control_apply):
//! a list of [`ControlChange`]s and the [`NewAudit`] entry describing them, committed
//! together or not at all.
//!
//! Revisions: a tenant or route is created at revision 1 and each put adds one; a put
//! or delete that names the revision it expects fails with
//! [`StoreErrorKind::PreconditionFailed`](super::StoreErrorKind::PreconditionFailed)
//! when the row is at another (what `If-Match` checks).

use crate::record::TenantId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a token may do, for its own tenant only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

/// A tenant created through the API. `spec` holds its limits, `on_policy_error`,
/// policy (by sha256), `policy_config`, `policy_tests` and metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantRecord {
    pub id: TenantId,
    pub spec: Value,
    /// Set by the store: 1 when created, +1 per put.
    pub revision: u64,
    /// Kept by the store from the create; the value in a put that updates is ignored.
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// A route of an API-created tenant: its type and delivery options in `spec`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteRecord {
    pub tenant: TenantId,
    pub name: String,
    pub spec: Value,
    /// As [`TenantRecord::revision`].
    pub revision: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// A token hostd created, stored as the SHA-256 digest of its secret. Its tenant may be
/// a config-file tenant (not in the store): the caller checks that the tenant exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub tenant: TenantId,
    /// Never empty.
    pub scopes: Vec<TokenScope>,
    #[serde(skip)]
    pub digest: [u8; 32],
    pub label: Option<String>,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
}

/// A signing secret of a webhook route (`whsec_…`). Plaintext in memory only: the store
/// seals it on the way in and opens it on load; `Debug` does not show it and there is
/// no `Serialize`, so a listing cannot carry it by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub tenant: TenantId,
    pub route: String,
    pub id: String,
    pub secret: String,
    pub created_ms: u64,
    /// When it stops signing (set by a rotation: the overlap window ends then).
    pub expires_ms: Option<u64>,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("tenant", &self.tenant)
            .field("route", &self.route)
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("created_ms", &self.created_ms)
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

/// One entry of the audit log: who changed what, when, and the resource before and
/// after (as the caller described it, without secrets).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: u64,
    /// `admin`, or the id of the token that made the change.
    pub actor: String,
    pub action: String,
    pub resource: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// The audit entry a [`Store::control_apply`](super::Store::control_apply) writes with
/// its changes; the store gives it its id and time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Everything the control plane holds, read in one consistent snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControlSnapshot {
    /// By id.
    pub tenants: Vec<TenantRecord>,
    /// By tenant, then name.
    pub routes: Vec<RouteRecord>,
    /// By tenant, then creation.
    pub tokens: Vec<TokenRecord>,
    /// By tenant, route, then creation.
    pub secrets: Vec<SecretRecord>,
}

/// One change to the control plane. `expect_revision`: `None` on a put means "must not
/// exist yet" (a create), on a delete "whatever its revision"; `Some(r)` means "must
/// exist at revision `r`".
#[derive(Debug, Clone, PartialEq)]
pub enum ControlChange {
    PutTenant {
        record: TenantRecord,
        expect_revision: Option<u64>,
    },
    /// Deletes the tenant's routes, tokens and signing secrets too (not its pending
    /// deliveries or DLQ entries: see [`Store::dead_letter_pending`](super::Store::dead_letter_pending)).
    DeleteTenant {
        id: TenantId,
        expect_revision: Option<u64>,
    },
    /// The tenant must be in the store.
    PutRoute {
        record: RouteRecord,
        expect_revision: Option<u64>,
    },
    /// Deletes the route's signing secrets too.
    DeleteRoute {
        tenant: TenantId,
        name: String,
        expect_revision: Option<u64>,
    },
    /// A new token: its id and its digest are unique.
    PutToken(TokenRecord),
    /// Revokes a token from `at_ms` on (an earlier revocation stands).
    RevokeToken {
        id: String,
        at_ms: u64,
    },
    /// A new signing secret of a route in the store: (tenant, route, id) is unique.
    /// Secrets of the route that expired before this one was created are deleted.
    PutSecret(SecretRecord),
    /// Sets when a signing secret stops signing.
    ExpireSecret {
        tenant: TenantId,
        route: String,
        id: String,
        at_ms: u64,
    },
    /// A policy component, by the hex SHA-256 of its bytes (checked); storing the same
    /// one again changes nothing.
    PutPolicy {
        sha256: String,
        bytes: Vec<u8>,
    },
}

impl ControlChange {
    /// The resource it changes, for messages: "tenant `acme`", "route `acme/hook`".
    pub fn resource(&self) -> String {
        match self {
            ControlChange::PutTenant { record, .. } => format!("tenant `{}`", record.id),
            ControlChange::DeleteTenant { id, .. } => format!("tenant `{id}`"),
            ControlChange::PutRoute { record, .. } => format!("route `{}/{}`", record.tenant, record.name),
            ControlChange::DeleteRoute { tenant, name, .. } => format!("route `{tenant}/{name}`"),
            ControlChange::PutToken(t) => format!("token `{}`", t.id),
            ControlChange::RevokeToken { id, .. } => format!("token `{id}`"),
            ControlChange::PutSecret(s) => format!("signing secret `{}` of route `{}/{}`", s.id, s.tenant, s.route),
            ControlChange::ExpireSecret { tenant, route, id, .. } => {
                format!("signing secret `{id}` of route `{tenant}/{route}`")
            }
            ControlChange::PutPolicy { sha256, .. } => format!("policy `{sha256}`"),
        }
    }
}
