//! Routes through the API: add, replace, remove. A replaced route's in-flight attempts
//! finish; every later attempt, retries included, uses the new settings.

use super::secrets::needs_stored_secret;
use super::{conflict, Actor, ControlError, ControlPlane};
use crate::clock::now_ms;
use crate::sinks::{self, SinkContext};
use crate::store::control::{ControlChange, NewAudit, RouteRecord, SecretRecord};
use crate::tenants::spec::{check_name, route_config};
use crate::tenants::TenantId;
use serde_json::{Map, Value};

/// A route as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RouteView {
    pub tenant: String,
    pub name: String,
    pub revision: u64,
    /// As given: `type`, the transport's keys, `retry`, `concurrency`, `ordering`.
    #[schema(value_type = Object)]
    pub spec: Value,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl From<&RouteRecord> for RouteView {
    fn from(r: &RouteRecord) -> Self {
        RouteView {
            tenant: r.tenant.to_string(),
            name: r.name.clone(),
            revision: r.revision,
            spec: r.spec.clone(),
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
        }
    }
}

impl ControlPlane {
    /// Adds (`create`: 409 if it exists) or replaces (`If-Match` optional) a route of an
    /// API tenant. A webhook route that signs and names no `secret_env` / `secret_file`
    /// gets a generated `whsec_` secret, stored encrypted, in the same commit.
    pub async fn put_route(
        &self,
        tenant_id: &str,
        name: &str,
        spec: Map<String, Value>,
        create: bool,
        if_match: Option<u64>,
        actor: &Actor,
    ) -> Result<RouteView, ControlError> {
        check_name("name", name)?;
        let rc = route_config(&spec)?;
        let _change = self.changing.lock().await;
        self.refuse_file_tenant(tenant_id)?;
        let tenant = self.tenant(tenant_id)?;
        let key = (tenant_id.to_string(), name.to_string());
        let current = self.mirror.lock().expect("mirror").routes.get(&key).cloned();
        match (&current, create) {
            (Some(_), true) => {
                return Err(conflict("exists", format!("tenant `{tenant_id}` has a route `{name}` already")))
            }
            (None, false) => return Err(ControlError::NotFound(format!("tenant `{tenant_id}` has no route `{name}`"))),
            (Some(c), false) => {
                Self::check_revision(&format!("route `{name}` of tenant `{tenant_id}`"), c.revision, if_match)?
            }
            (None, true) => {}
        }
        let mut changes = Vec::new();
        let mut secrets = self.route_secrets(tenant_id).remove(name).unwrap_or_default();
        let now = now_ms();
        if secrets.is_empty() && needs_stored_secret(&rc) {
            let record = SecretRecord {
                tenant: TenantId::from(tenant_id),
                route: name.to_string(),
                id: super::secrets::secret_id(),
                secret: super::generate_signing_secret(),
                created_ms: now,
                expires_ms: None,
            };
            secrets.push(record.secret.clone());
            changes.push(ControlChange::PutSecret(record));
        }
        // Built now so that a route that cannot be built is refused before anything is stored.
        let ctx = SinkContext::new(tenant.id.clone(), name, self.egress.clone()).with_signing_secrets(secrets.clone());
        sinks::build(&ctx, &rc).map_err(|e| ControlError::Refused(e.to_string()))?;
        let spec_json = Value::Object(spec);
        let record = RouteRecord {
            tenant: tenant.id.clone(),
            name: name.to_string(),
            spec: spec_json.clone(),
            revision: current.as_ref().map(|c| c.revision + 1).unwrap_or(1),
            created_ms: current.as_ref().map(|c| c.created_ms).unwrap_or(now),
            updated_ms: now,
        };
        changes.insert(
            0,
            ControlChange::PutRoute { record: record.clone(), expect_revision: current.as_ref().map(|c| c.revision) },
        );
        let audit = NewAudit {
            actor: actor.0.clone(),
            action: if create { "route.create" } else { "route.update" }.into(),
            resource: format!("tenants/{tenant_id}/routes/{name}"),
            before: current.as_ref().map(|c| c.spec.clone()),
            after: Some(spec_json),
        };
        let secret_changes: Vec<SecretRecord> = changes
            .iter()
            .filter_map(|c| match c {
                ControlChange::PutSecret(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        self.store.control_apply(changes, audit).await?;
        self.provisioner()
            .put_signed_route(&tenant, name, &rc, secrets)
            .map_err(|e| ControlError::Refused(e.to_string()))?;
        let mut mirror = self.mirror.lock().expect("mirror");
        for s in secret_changes {
            mirror.secrets.entry(key.clone()).or_default().insert(0, s);
        }
        mirror.routes.insert(key, record.clone());
        Ok(RouteView::from(&record))
    }

    /// Removes a route of an API tenant. With deliveries pending on it: 409 naming the
    /// count, unless `force` (they are dead-lettered with reason `route_removed`).
    pub async fn delete_route(
        &self,
        tenant_id: &str,
        name: &str,
        if_match: Option<u64>,
        force: bool,
        actor: &Actor,
    ) -> Result<u64, ControlError> {
        let _change = self.changing.lock().await;
        self.refuse_file_tenant(tenant_id)?;
        let tenant = self.tenant(tenant_id)?;
        let key = (tenant_id.to_string(), name.to_string());
        let current = self.mirror.lock().expect("mirror").routes.get(&key).cloned();
        let current =
            current.ok_or_else(|| ControlError::NotFound(format!("tenant `{tenant_id}` has no route `{name}`")))?;
        Self::check_revision(&format!("route `{name}` of tenant `{tenant_id}`"), current.revision, if_match)?;
        let pending = self.store.pending_count(tenant_id, Some(name)).await?;
        if pending > 0 && !force {
            return Err(conflict(
                "pending_deliveries",
                format!(
                    "route `{name}` of tenant `{tenant_id}` has {pending} pending deliveries; wait for them, or delete \
                     with ?force=true to dead-letter them (reason route_removed)"
                ),
            ));
        }
        let audit = NewAudit {
            actor: actor.0.clone(),
            action: "route.delete".into(),
            resource: format!("tenants/{tenant_id}/routes/{name}"),
            before: Some(current.spec.clone()),
            after: None,
        };
        let change = ControlChange::DeleteRoute {
            tenant: tenant.id.clone(),
            name: name.to_string(),
            expect_revision: Some(current.revision),
        };
        self.store.control_apply(vec![change], audit).await?;
        let dead = if force {
            self.deliverer.stop_route(tenant_id, name);
            tenant.remove_route(name);
            self.store.dead_letter_pending(tenant_id, Some(name), "route_removed").await?
        } else {
            self.provisioner().remove_route(&tenant, name);
            0
        };
        let mut mirror = self.mirror.lock().expect("mirror");
        mirror.routes.remove(&key);
        mirror.secrets.remove(&key);
        Ok(dead)
    }

    /// The routes of a tenant (API tenants: as stored; file tenants: their names only).
    pub fn routes(&self, tenant_id: &str) -> Result<Vec<RouteView>, ControlError> {
        let tenant = self.tenant(tenant_id)?;
        let mirror = self.mirror.lock().expect("mirror");
        Ok(tenant
            .routes()
            .iter()
            .map(|name| match mirror.routes.get(&(tenant_id.to_string(), name.clone())) {
                Some(r) => RouteView::from(r),
                None => RouteView {
                    tenant: tenant_id.to_string(),
                    name: name.clone(),
                    revision: 0,
                    spec: Value::Null,
                    created_ms: 0,
                    updated_ms: 0,
                },
            })
            .collect())
    }

    pub fn route(&self, tenant_id: &str, name: &str) -> Result<RouteView, ControlError> {
        self.routes(tenant_id)?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| ControlError::NotFound(format!("tenant `{tenant_id}` has no route `{name}`")))
    }
}
