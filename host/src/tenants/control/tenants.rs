//! Tenants through the API: upload a component, create, replace, delete; and loading
//! the stored ones at startup.

use super::{conflict, Actor, ControlError, ControlPlane};
use crate::clock::now_ms;
use crate::config::RouteConfig;
use crate::policy::source::sha256_hex;
use crate::policy::{run_policy_code, PolicySource};
use crate::store::control::{ControlChange, NewAudit, TenantRecord};
use crate::tenants::provision::Provisioner;
use crate::tenants::spec::{route_config, TenantSpec};
use crate::tenants::{DefinedBy, Tenant, TenantId, TenantSettings};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Largest component `POST /admin/v1/policies` takes (a componentize-py policy is ~18 MB).
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// A tenant as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: String,
    /// `api` (managed here) or `file` (declared in the config file, read-only here).
    pub source: &'static str,
    /// The revision `If-Match` names (`0` for a file tenant).
    pub revision: u64,
    /// The spec as created (API tenants only).
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
    pub routes: Vec<String>,
    /// The live policy: active and previous version, limits, statistics.
    #[schema(value_type = Object)]
    pub policy: Value,
}

impl ControlPlane {
    fn policy_path(&self, sha256: &str) -> PathBuf {
        self.policies_dir.join(format!("{sha256}.wasm"))
    }

    /// Writes a stored component where the policy loader reads it (once per sha256).
    async fn materialize(&self, sha256: &str) -> Result<PathBuf, ControlError> {
        let path = self.policy_path(sha256);
        if path.exists() {
            return Ok(path);
        }
        let bytes = self.store.policy_blob(sha256).await?.ok_or_else(|| {
            ControlError::Invalid(crate::tenants::spec::SpecError::new(
                "policy",
                format!("no uploaded component has sha256 {sha256}; upload it first (POST /admin/v1/policies)"),
            ))
        })?;
        write_private(&path, &bytes)
            .map_err(|e| ControlError::Refused(format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }

    /// Stores a component, content-addressed; returns its sha256. Nothing runs it yet:
    /// a tenant that names it compiles and checks it.
    pub async fn upload_policy(&self, bytes: Vec<u8>, actor: &Actor) -> Result<String, ControlError> {
        if bytes.is_empty() {
            return Err(ControlError::Invalid(crate::tenants::spec::SpecError::new(
                "body",
                "is empty; send the .wasm bytes",
            )));
        }
        let sha256 = sha256_hex(&bytes);
        let audit = NewAudit {
            actor: actor.0.clone(),
            action: "policy.upload".into(),
            resource: format!("policies/{sha256}"),
            before: None,
            after: Some(json!({"sha256": sha256, "bytes": bytes.len()})),
        };
        self.store.control_apply(vec![ControlChange::PutPolicy { sha256: sha256.clone(), bytes }], audit).await?;
        Ok(sha256)
    }

    /// Writes a tenant's `policy_tests` where the policy loader reads fixtures (named
    /// by their sha256, so a replaced spec never rewrites a file in use).
    fn write_tests(&self, spec: &TenantSpec) -> Result<Option<PathBuf>, ControlError> {
        let Some(text) = &spec.policy_tests else { return Ok(None) };
        let path = self.policies_dir.join(format!("{}-{}.tests.jsonl", spec.id, sha256_hex(text.as_bytes())));
        if !path.exists() {
            write_private(&path, text.as_bytes())
                .map_err(|e| ControlError::Refused(format!("cannot write {}: {e}", path.display())))?;
        }
        Ok(Some(path))
    }

    /// Builds a running tenant from its spec and routes (blocking work off the runtime).
    async fn build(&self, spec: &TenantSpec, routes: BTreeMap<String, RouteConfig>) -> Result<Tenant, ControlError> {
        let path = self.materialize(&spec.policy).await?;
        let tc = spec.to_config(path, self.write_tests(spec)?, routes)?;
        let secrets = self.route_secrets(&spec.id);
        let provisioner =
            Provisioner { engine: &self.engine, egress: &self.egress, deliverer: &self.deliverer, spool: &self.store };
        let mut tenant = run_policy_code(|| provisioner.build_with_secrets(&tc, "api", &secrets))
            .map_err(|e| ControlError::Refused(format!("{e:#}")))?;
        tenant.defined_by = DefinedBy::Api;
        Ok(tenant)
    }

    /// Creates a tenant with no routes yet.
    pub async fn create_tenant(&self, spec: TenantSpec, actor: &Actor) -> Result<TenantView, ControlError> {
        spec.check()?;
        let _change = self.changing.lock().await;
        self.refuse_file_tenant(&spec.id)?;
        if self.registry.get(&spec.id).is_some() {
            return Err(conflict("exists", format!("tenant `{}` exists already", spec.id)));
        }
        let tenant = self.build(&spec, BTreeMap::new()).await?;
        let now = now_ms();
        let spec_json = serde_json::to_value(&spec).expect("a spec serializes");
        let record = TenantRecord {
            id: TenantId::from(spec.id.as_str()),
            spec: spec_json.clone(),
            revision: 1,
            created_ms: now,
            updated_ms: now,
        };
        let audit = NewAudit {
            actor: actor.0.clone(),
            action: "tenant.create".into(),
            resource: format!("tenants/{}", spec.id),
            before: None,
            after: Some(spec_json),
        };
        let applied = self
            .store
            .control_apply(vec![ControlChange::PutTenant { record: record.clone(), expect_revision: None }], audit)
            .await;
        let revisions = match applied {
            Ok(r) => r,
            Err(e) => {
                self.deliverer.retire_tenant(&spec.id);
                return Err(e.into());
            }
        };
        let record = TenantRecord { revision: revisions.first().copied().unwrap_or(1), ..record };
        self.registry.insert(tenant, None).map_err(|e| conflict("exists", e.to_string()))?;
        self.mirror.lock().expect("mirror").tenants.insert(spec.id.clone(), record);
        self.view(&spec.id).ok_or_else(|| ControlError::NotFound(format!("no tenant `{}`", spec.id)))
    }

    /// Replaces an API tenant's spec: a new policy (sha256), config or limits is
    /// compiled and checked, then swapped in (the old version keeps serving on 422);
    /// `on_policy_error` and `keep_original` apply to the next event.
    pub async fn replace_tenant(
        &self,
        id: &str,
        spec: TenantSpec,
        if_match: Option<u64>,
        actor: &Actor,
    ) -> Result<TenantView, ControlError> {
        spec.check()?;
        if spec.id != id {
            return Err(ControlError::Invalid(crate::tenants::spec::SpecError::new(
                "id",
                format!("`{}` does not match the tenant in the path (`{id}`); ids cannot change", spec.id),
            )));
        }
        let _change = self.changing.lock().await;
        self.refuse_file_tenant(id)?;
        let current = self.mirror.lock().expect("mirror").tenants.get(id).cloned();
        let current = current.ok_or_else(|| ControlError::NotFound(format!("no tenant `{id}`")))?;
        Self::check_revision(&format!("tenant `{id}`"), current.revision, if_match)?;
        let tenant = self.registry.get(id).ok_or_else(|| ControlError::NotFound(format!("no tenant `{id}`")))?;
        let path = self.materialize(&spec.policy).await?;
        let old_source = tenant.policy.source();
        let limits = spec.policy_limits()?;
        let config_json = serde_json::to_string(&spec.policy_config).expect("a map serializes");
        let tests = self.write_tests(&spec)?;
        let new_source = PolicySource { path, config_json, limits, routes: old_source.routes.clone(), tests };
        let spec_json = serde_json::to_value(&spec).expect("a spec serializes");
        let swapped = new_source != old_source;
        if swapped {
            tenant.policy.set_source(new_source);
            if let Err(e) = tenant.policy.swap(&self.engine, id, None, None, "api").await {
                tenant.policy.set_source(old_source);
                return Err(ControlError::Refused(e.to_string()));
            }
        }
        let record = TenantRecord {
            spec: spec_json.clone(),
            revision: current.revision + 1,
            updated_ms: now_ms(),
            ..current.clone()
        };
        let audit = NewAudit {
            actor: actor.0.clone(),
            action: "tenant.update".into(),
            resource: format!("tenants/{id}"),
            before: Some(current.spec.clone()),
            after: Some(spec_json),
        };
        let change = ControlChange::PutTenant { record: record.clone(), expect_revision: Some(current.revision) };
        if let Err(e) = self.store.control_apply(vec![change], audit).await {
            // Not stored: the running tenant goes back to what the store says.
            if swapped {
                let _ = tenant.policy.rollback(id);
                tenant.policy.set_source(old_source);
            }
            return Err(e.into());
        }
        tenant
            .set_settings(TenantSettings { on_policy_error: spec.on_policy_error, keep_original: spec.keep_original });
        self.mirror.lock().expect("mirror").tenants.insert(id.to_string(), record);
        self.view(id).ok_or_else(|| ControlError::NotFound(format!("no tenant `{id}`")))
    }

    /// Deletes an API tenant with its routes, tokens and secrets. With deliveries still
    /// pending: 409 naming the count, unless `force` (they are dead-lettered with reason
    /// `tenant_removed`, never dropped).
    pub async fn delete_tenant(
        &self,
        id: &str,
        if_match: Option<u64>,
        force: bool,
        actor: &Actor,
    ) -> Result<u64, ControlError> {
        let _change = self.changing.lock().await;
        self.refuse_file_tenant(id)?;
        let current = self.mirror.lock().expect("mirror").tenants.get(id).cloned();
        let current = current.ok_or_else(|| ControlError::NotFound(format!("no tenant `{id}`")))?;
        Self::check_revision(&format!("tenant `{id}`"), current.revision, if_match)?;
        let pending = self.store.pending_count(id, None).await?;
        if pending > 0 && !force {
            return Err(conflict(
                "pending_deliveries",
                format!("tenant `{id}` has {pending} pending deliveries; wait for them, or delete with ?force=true to dead-letter them (reason tenant_removed)"),
            ));
        }
        let audit = NewAudit {
            actor: actor.0.clone(),
            action: "tenant.delete".into(),
            resource: format!("tenants/{id}"),
            before: Some(current.spec.clone()),
            after: None,
        };
        let change = ControlChange::DeleteTenant { id: TenantId::from(id), expect_revision: Some(current.revision) };
        self.store.control_apply(vec![change], audit).await?;
        let _ = self.registry.remove(id);
        let dead = if force {
            self.deliverer.stop_tenant(id);
            self.store.dead_letter_pending(id, None, "tenant_removed").await?
        } else {
            self.deliverer.retire_tenant(id);
            0
        };
        let mut mirror = self.mirror.lock().expect("mirror");
        mirror.tenants.remove(id);
        mirror.routes.retain(|(t, _), _| t != id);
        mirror.tokens.retain(|_, t| &*t.tenant != id);
        mirror.secrets.retain(|(t, _), _| t != id);
        Ok(dead)
    }

    /// Every tenant the daemon serves, file and API ones, in id order.
    pub fn views(&self) -> Vec<TenantView> {
        self.registry.all().iter().filter_map(|t| self.view(&t.id)).collect()
    }

    pub fn view(&self, id: &str) -> Option<TenantView> {
        let tenant = self.registry.get(id)?;
        let mirror = self.mirror.lock().expect("mirror");
        let record = mirror.tenants.get(id);
        let mut policy = tenant.policy.live.status();
        policy["file"] = json!(tenant.policy.source().path.display().to_string());
        Some(TenantView {
            id: id.to_string(),
            source: if record.is_some() { "api" } else { "file" },
            revision: record.map(|r| r.revision).unwrap_or(0),
            spec: record.map(|r| r.spec.clone()),
            routes: tenant.routes().to_vec(),
            policy,
        })
    }

    /// Loads every tenant the store holds (after the config file's), with its routes,
    /// tokens and secrets. An id the file declares too stops startup.
    pub async fn load(&self) -> crate::Result<usize> {
        let snapshot = self.store.control_load().await?;
        {
            let mut mirror = self.mirror.lock().expect("mirror");
            for s in &snapshot.secrets {
                mirror.secrets.entry((s.tenant.to_string(), s.route.clone())).or_default().push(s.clone());
            }
            for list in mirror.secrets.values_mut() {
                list.sort_by_key(|s| std::cmp::Reverse(s.created_ms));
            }
        }
        for record in &snapshot.tenants {
            if self.is_file_tenant(&record.id) {
                anyhow::bail!(
                    "tenant `{}` is declared in the config file and was also created through the admin API (it is in the \
                     store); remove one of them",
                    record.id
                );
            }
            let spec: TenantSpec = serde_json::from_value(record.spec.clone())
                .map_err(|e| anyhow::anyhow!("tenant `{}` in the store: {e}", record.id))?;
            let mut routes = BTreeMap::new();
            for r in snapshot.routes.iter().filter(|r| r.tenant == record.id) {
                let object = r.spec.as_object().cloned().unwrap_or_default();
                let rc = route_config(&object)
                    .map_err(|e| anyhow::anyhow!("tenant `{}`: route `{}`: {e}", record.id, r.name))?;
                routes.insert(r.name.clone(), rc);
            }
            let tenant = self.build(&spec, routes).await.map_err(|e| anyhow::anyhow!("tenant `{}`: {e}", record.id))?;
            self.registry.insert(tenant, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut mirror = self.mirror.lock().expect("mirror");
        for t in snapshot.tokens {
            self.install_token(&t);
            mirror.tokens.insert(t.id.clone(), t);
        }
        for r in snapshot.routes {
            mirror.routes.insert((r.tenant.to_string(), r.name.clone()), r);
        }
        let n = snapshot.tenants.len();
        for t in snapshot.tenants {
            mirror.tenants.insert(t.id.to_string(), t);
        }
        Ok(n)
    }

    /// The tenant's stored signing secrets by route, newest first, unexpired.
    pub(super) fn route_secrets(&self, tenant: &str) -> BTreeMap<String, Vec<String>> {
        let now = now_ms();
        let mirror = self.mirror.lock().expect("mirror");
        mirror
            .secrets
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, r), list)| {
                let live =
                    list.iter().filter(|s| s.expires_ms.is_none_or(|e| e > now)).map(|s| s.secret.clone()).collect();
                (r.clone(), live)
            })
            .collect()
    }

    pub(super) fn tenant(&self, id: &str) -> Result<Arc<Tenant>, ControlError> {
        self.registry.get(id).ok_or_else(|| ControlError::NotFound(format!("no tenant `{id}`")))
    }
}

/// Creates `path` 0600 with `bytes` (via a temp file and a rename).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
