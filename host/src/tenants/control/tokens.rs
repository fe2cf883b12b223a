//! Tokens through the API: created by hostd (high-entropy, prefixed, shown once), kept
//! only as a sha256, scoped, optionally expiring, revocable at once, several per tenant.

use super::{Actor, ControlError, ControlPlane};
use crate::clock::now_ms;
use crate::store::control::{ControlChange, NewAudit, TokenRecord, TokenScope};
use crate::tenants::spec::SpecError;
use serde_json::json;
use std::time::Duration;

/// Longest token label.
pub const MAX_LABEL: usize = 128;

/// A token as lists show it: never the token itself.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub tenant: String,
    pub scopes: Vec<TokenScope>,
    pub label: Option<String>,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> Self {
        TokenView {
            id: t.id.clone(),
            tenant: t.tenant.to_string(),
            scopes: t.scopes.clone(),
            label: t.label.clone(),
            created_ms: t.created_ms,
            expires_ms: t.expires_ms,
            revoked_ms: t.revoked_ms,
        }
    }
}

/// A token just created: the only time its secret is shown.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenView,
    /// Send as `Authorization: Bearer <token>`. Not shown again.
    pub secret: String,
}

impl ControlPlane {
    /// Creates a token for `tenant` (file or API tenant alike: tokens are runtime
    /// resources either way).
    pub async fn create_token(
        &self,
        tenant_id: &str,
        scopes: Vec<TokenScope>,
        label: Option<String>,
        expires_in: Option<Duration>,
        actor: &Actor,
    ) -> Result<CreatedToken, ControlError> {
        let tenant = self.tenant(tenant_id)?;
        if scopes.is_empty() {
            return Err(SpecError::new("scopes", "name at least one of `ingest`, `manage`, `read-only`").into());
        }
        if let Some(l) = &label {
            if l.len() > MAX_LABEL || l.chars().any(char::is_control) {
                return Err(SpecError::new("label", format!("at most {MAX_LABEL} bytes, no control characters")).into());
            }
        }
        let mut scopes = scopes;
        scopes.sort();
        scopes.dedup();
        let (id, secret) = crate::tenants::tokens::generate();
        let now = now_ms();
        let record = TokenRecord {
            id,
            tenant: tenant.id.clone(),
            scopes,
            digest: crate::tenants::tokens::digest(&secret),
            label,
            created_ms: now,
            expires_ms: expires_in.map(|d| now + d.as_millis() as u64),
            revoked_ms: None,
        };
        let view = TokenView::from(&record);
        let audit = NewAudit {
            actor: actor.0.clone(),
            action: "token.create".into(),
            resource: format!("tenants/{tenant_id}/tokens/{}", record.id),
            before: None,
            after: Some(serde_json::to_value(&view).expect("a view serializes")),
        };
        let _change = self.changing.lock().await;
        self.store.control_apply(vec![ControlChange::PutToken(record.clone())], audit).await?;
        self.install_token(&record);
        self.mirror.lock().expect("mirror").tokens.insert(record.id.clone(), record);
        Ok(CreatedToken { token: view, secret })
    }

    /// Revokes a token: from the next request on it authenticates nothing.
    pub async fn revoke_token(&self, tenant_id: &str, id: &str, actor: &Actor) -> Result<TokenView, ControlError> {
        let _change = self.changing.lock().await;
        let current = self.mirror.lock().expect("mirror").tokens.get(id).cloned();
        let current = current
            .filter(|t| &*t.tenant == tenant_id)
            .ok_or_else(|| ControlError::NotFound(format!("tenant `{tenant_id}` has no token `{id}`")))?;
        let now = now_ms();
        let audit = NewAudit {
            actor: actor.0.clone(),
            action: "token.revoke".into(),
            resource: format!("tenants/{tenant_id}/tokens/{id}"),
            before: Some(serde_json::to_value(TokenView::from(&current)).expect("a view serializes")),
            after: Some(json!({"revoked_ms": now})),
        };
        self.store.control_apply(vec![ControlChange::RevokeToken { id: id.to_string(), at_ms: now }], audit).await?;
        let _ = self.registry.revoke_token(id);
        let record = TokenRecord { revoked_ms: Some(now), ..current };
        let view = TokenView::from(&record);
        self.mirror.lock().expect("mirror").tokens.insert(id.to_string(), record);
        Ok(view)
    }

    /// The tenant's API-created tokens, newest first (revoked ones included, marked).
    pub fn tokens(&self, tenant_id: &str) -> Result<Vec<TokenView>, ControlError> {
        self.tenant(tenant_id)?;
        let mirror = self.mirror.lock().expect("mirror");
        let mut list: Vec<TokenView> =
            mirror.tokens.values().filter(|t| &*t.tenant == tenant_id).map(TokenView::from).collect();
        list.sort_by_key(|s| std::cmp::Reverse(s.created_ms));
        Ok(list)
    }

    /// Makes a stored token authenticate (unless revoked).
    pub(super) fn install_token(&self, t: &TokenRecord) {
        if t.revoked_ms.is_none() {
            let entry = crate::tenants::tokens::TokenEntry {
                tenant: t.tenant.clone(),
                token: crate::tenants::tokens::TokenInfo::new(&t.id, &t.scopes),
                expires_ms: t.expires_ms,
            };
            if let Err(e) = self.registry.insert_token(t.digest, entry) {
                tracing::warn!(tenant = &*t.tenant, token = t.id, "token not installed: {e}");
            }
        }
    }
}
