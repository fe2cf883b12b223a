//! Signing secrets hostd keeps for webhook routes created through the API: generated
//! (`whsec_…`) unless given, stored encrypted, readable by the admin and the tenant's
//! `manage` tokens, rotated with an overlap in which both sign.

use super::{Actor, ControlError, ControlPlane};
use crate::clock::now_ms;
use crate::config::RouteConfig;
use crate::sinks::{self, SinkContext};
use crate::store::control::{ControlChange, NewAudit, SecretRecord};
use crate::tenants::spec::route_config;
use crate::tenants::TenantId;
use base64::Engine as _;
use rand::RngCore;
use serde_json::json;
use std::time::Duration;

/// A new Standard Webhooks secret: `whsec_` and 32 random bytes in base64.
pub fn generate_signing_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

/// An id for a stored secret: `sec_` and 16 hex digits.
pub(super) fn secret_id() -> String {
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    format!("sec_{}", hex::encode(id))
}

/// A webhook route that signs and reads no secret from the environment or a file.
pub(super) fn needs_stored_secret(rc: &RouteConfig) -> bool {
    let t = &rc.sink;
    let on = |k: &str| t.get(k).and_then(toml::Value::as_bool).unwrap_or(true);
    rc.kind() == Some("webhook")
        && !t.contains_key("secret_env")
        && !t.contains_key("secret_file")
        && (on("standard_webhooks") || on("x_signature"))
}

/// A stored secret as the API shows it to the admin and `manage` tokens (never in lists
/// of routes, logs or the audit log).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SecretView {
    pub id: String,
    pub secret: String,
    pub created_ms: u64,
    /// When it stops signing (a rotation's overlap); `None` while it is the newest.
    pub expires_ms: Option<u64>,
}

impl ControlPlane {
    /// The route's stored secrets, newest first, with the expired ones left out.
    pub fn secrets(&self, tenant: &str, route: &str) -> Result<Vec<SecretView>, ControlError> {
        self.tenant(tenant)?;
        let now = now_ms();
        let mirror = self.mirror.lock().expect("mirror");
        let list = mirror.secrets.get(&(tenant.to_string(), route.to_string()));
        Ok(list
            .into_iter()
            .flatten()
            .filter(|s| s.expires_ms.is_none_or(|e| e > now))
            .map(|s| SecretView {
                id: s.id.clone(),
                secret: s.secret.clone(),
                created_ms: s.created_ms,
                expires_ms: s.expires_ms,
            })
            .collect())
    }

    /// A new signing secret for an API webhook route (`given`, else generated); the
    /// ones before it keep signing for `overlap`, so receivers holding either verify.
    pub async fn rotate_secret(
        &self,
        tenant_id: &str,
        route: &str,
        given: Option<String>,
        overlap: Duration,
        actor: &Actor,
    ) -> Result<SecretView, ControlError> {
        let _change = self.changing.lock().await;
        self.refuse_file_tenant(tenant_id)?;
        let tenant = self.tenant(tenant_id)?;
        let key = (tenant_id.to_string(), route.to_string());
        let spec = self.mirror.lock().expect("mirror").routes.get(&key).map(|r| r.spec.clone());
        let spec =
            spec.ok_or_else(|| ControlError::NotFound(format!("tenant `{tenant_id}` has no route `{route}`")))?;
        let rc = route_config(spec.as_object().unwrap_or(&Default::default()))?;
        if rc.kind() != Some("webhook") {
            return Err(ControlError::Invalid(crate::tenants::spec::SpecError::new(
                "route",
                format!("`{route}` is not a webhook route; only webhooks sign"),
            )));
        }
        let secret = match given {
            Some(s) => {
                crate::signing::SigningKey::parse(&s)
                    .map_err(|e| ControlError::Invalid(crate::tenants::spec::SpecError::new("secret", e)))?;
                s
            }
            None => generate_signing_secret(),
        };
        let now = now_ms();
        let until = now + overlap.as_millis() as u64;
        let record = SecretRecord {
            tenant: TenantId::from(tenant_id),
            route: route.to_string(),
            id: secret_id(),
            secret,
            created_ms: now,
            expires_ms: None,
        };
        let previous: Vec<SecretRecord> =
            self.mirror.lock().expect("mirror").secrets.get(&key).cloned().unwrap_or_default();
        let mut changes = vec![ControlChange::PutSecret(record.clone())];
        for p in previous.iter().filter(|p| p.expires_ms.is_none_or(|e| e > until)) {
            changes.push(ControlChange::ExpireSecret {
                tenant: p.tenant.clone(),
                route: p.route.clone(),
                id: p.id.clone(),
                at_ms: until,
            });
        }
        let audit = NewAudit {
            actor: actor.0.clone(),
            action: "secret.rotate".into(),
            resource: format!("tenants/{tenant_id}/routes/{route}/secrets"),
            before: Some(json!({"ids": previous.iter().map(|p| &p.id).collect::<Vec<_>>()})),
            after: Some(json!({"id": record.id, "previous_expire_ms": until})),
        };
        // Build the sink before committing: both secrets sign from now on.
        let mut signing = vec![record.secret.clone()];
        signing.extend(previous.iter().filter(|p| p.expires_ms.is_none_or(|e| e > now)).map(|p| p.secret.clone()));
        let ctx = SinkContext::new(tenant.id.clone(), route, self.egress.clone()).with_signing_secrets(signing);
        let sink = sinks::build(&ctx, &rc).map_err(|e| ControlError::Refused(e.to_string()))?;
        self.store.control_apply(changes, audit).await?;
        self.deliverer.update_route(tenant.id.clone(), route.to_string(), sink, &rc.delivery);
        {
            let mut mirror = self.mirror.lock().expect("mirror");
            let list = mirror.secrets.entry(key).or_default();
            for p in list.iter_mut() {
                if p.expires_ms.is_none_or(|e| e > until) {
                    p.expires_ms = Some(until);
                }
            }
            list.insert(0, record.clone());
        }
        Ok(SecretView { id: record.id, secret: record.secret, created_ms: now, expires_ms: None })
    }

    /// Rebuilds the sinks of routes whose previous secret's overlap ended, so it stops
    /// signing. Called every few seconds by the server.
    pub async fn expire_secrets(&self) {
        let now = now_ms();
        let due: Vec<(String, String)> = {
            let mut mirror = self.mirror.lock().expect("mirror");
            let mut due = Vec::new();
            for (key, list) in mirror.secrets.iter_mut() {
                let before = list.len();
                list.retain(|s| s.expires_ms.is_none_or(|e| e > now));
                if list.len() != before {
                    due.push(key.clone());
                }
            }
            due
        };
        for (tenant_id, route) in due {
            let Ok(tenant) = self.tenant(&tenant_id) else { continue };
            let spec = self
                .mirror
                .lock()
                .expect("mirror")
                .routes
                .get(&(tenant_id.clone(), route.clone()))
                .map(|r| r.spec.clone());
            let Some(Ok(rc)) = spec.map(|s| route_config(s.as_object().unwrap_or(&Default::default()))) else {
                continue;
            };
            let signing = self.route_secrets(&tenant_id).remove(&route).unwrap_or_default();
            let ctx =
                SinkContext::new(tenant.id.clone(), route.as_str(), self.egress.clone()).with_signing_secrets(signing);
            match sinks::build(&ctx, &rc) {
                Ok(sink) => {
                    self.deliverer.update_route(tenant.id.clone(), route.clone(), sink, &rc.delivery);
                }
                Err(e) => {
                    tracing::error!(tenant = tenant_id, route, "cannot rebuild the route after a secret expired: {e}")
                }
            }
        }
    }
}
