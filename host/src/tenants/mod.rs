//! The live tenant registry: every tenant the daemon serves, its policy, routes and
//! settings, and the token table that says who a request is. Tenants are held in an
//! atomically swapped snapshot, so adding, changing or removing one while events flow
//! is a normal operation: a request sees the registry as it was when it authenticated,
//! and holds its `Arc<Tenant>` until it is answered.

pub mod caller;
pub mod provision;
pub mod spec;
pub mod tokens;

pub use crate::record::TenantId;
pub use caller::{Caller, TenantCaller};
pub use tokens::{AccessToken, AuthError, TenantTokens};

use crate::config::OnPolicyError;
use crate::policy::{PolicyVersion, TenantPolicy};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A tenant's settings that are not its policy or routes.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantSettings {
    pub on_policy_error: OnPolicyError,
    /// Store the original event beside its deliveries and DLQ entries (for replay
    /// through the policy).
    pub keep_original: bool,
}

/// A tenant as the running daemon sees it.
pub struct Tenant {
    pub id: TenantId,
    pub policy: TenantPolicy,
    pub settings: TenantSettings,
    /// The names of its routes (their queues live in the delivery stage).
    pub routes: Vec<String>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant").field("id", &self.id).field("routes", &self.routes).finish_non_exhaustive()
    }
}

impl Tenant {
    /// Whether the original event is stored (`keep_original`).
    pub fn keep_original(&self) -> bool {
        self.settings.keep_original
    }

    /// The active policy version; hold the `Arc` for a whole evaluation.
    pub fn current_policy(&self) -> Arc<PolicyVersion> {
        self.policy.current()
    }
}

/// What a registry change could not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("tenant `{0}` exists already")]
    Exists(TenantId),
    #[error("no tenant `{0}`")]
    Unknown(String),
}

/// One consistent view: the tenants and their tokens.
#[derive(Default)]
struct Snapshot {
    tenants: BTreeMap<TenantId, Arc<Tenant>>,
    tokens: TenantTokens,
}

/// Every tenant, the token table, and the admin and metrics tokens.
pub struct TenantRegistry {
    snapshot: ArcSwap<Snapshot>,
    /// Serialises changes (readers never wait).
    changes: std::sync::Mutex<()>,
    admin: Option<AccessToken>,
    metrics: Option<AccessToken>,
}

impl TenantRegistry {
    /// An empty registry. `open_tenant` is the tenant served without a token (the
    /// loopback quickstart), if any.
    pub fn new(admin: Option<AccessToken>, metrics: Option<AccessToken>, open_tenant: Option<TenantId>) -> Self {
        let snapshot = Snapshot { tenants: BTreeMap::new(), tokens: TenantTokens::new(open_tenant) };
        TenantRegistry { snapshot: ArcSwap::from_pointee(snapshot), changes: Default::default(), admin, metrics }
    }

    /// Adds a tenant and its token; from then on requests can reach it.
    pub fn insert(&self, tenant: Tenant, token: Option<&str>) -> Result<Arc<Tenant>, RegistryError> {
        let _change = self.changes.lock().expect("registry lock");
        let old = self.snapshot.load();
        if old.tenants.contains_key(&tenant.id) {
            return Err(RegistryError::Exists(tenant.id));
        }
        let tenant = Arc::new(tenant);
        let mut tenants = old.tenants.clone();
        tenants.insert(tenant.id.clone(), tenant.clone());
        let mut tokens = old.tokens.clone();
        if let Some(token) = token {
            tokens.insert(tenant.id.clone(), token);
        }
        self.snapshot.store(Arc::new(Snapshot { tenants, tokens }));
        Ok(tenant)
    }

    /// Removes a tenant: its tokens stop working at once. Requests already holding it
    /// finish; what it spooled is still delivered (the caller retires its routes).
    pub fn remove(&self, id: &str) -> Result<Arc<Tenant>, RegistryError> {
        let _change = self.changes.lock().expect("registry lock");
        let old = self.snapshot.load();
        let mut tenants = old.tenants.clone();
        let removed = tenants.remove(id).ok_or_else(|| RegistryError::Unknown(id.to_string()))?;
        let mut tokens = old.tokens.clone();
        tokens.remove(id);
        self.snapshot.store(Arc::new(Snapshot { tenants, tokens }));
        Ok(removed)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Tenant>> {
        self.snapshot.load().tenants.get(id).cloned()
    }

    /// Every tenant, in id order, as of now.
    pub fn all(&self) -> Vec<Arc<Tenant>> {
        self.snapshot.load().tenants.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.snapshot.load().tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tenant a request authenticates as (its bearer token, or the open tenant).
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<Arc<Tenant>, AuthError> {
        let snapshot = self.snapshot.load();
        let id = snapshot.tokens.authenticate(headers)?;
        snapshot.tenants.get(&id).cloned().ok_or(AuthError::Unknown)
    }

    /// The tenant owning `token`.
    pub fn find_token(&self, token: &str) -> Option<Arc<Tenant>> {
        let snapshot = self.snapshot.load();
        snapshot.tokens.find(token).and_then(|id| snapshot.tenants.get(&id).cloned())
    }

    /// True when `token` is the admin token.
    pub fn is_admin_token(&self, token: &str) -> bool {
        self.admin.as_ref().is_some_and(|t| t.matches(token))
    }

    /// True when `/metrics` needs no token, or `token` is the metrics token.
    pub fn may_read_metrics(&self, token: Option<&str>) -> bool {
        match &self.metrics {
            None => true,
            Some(t) => token.is_some_and(|token| t.matches(token)),
        }
    }
}
