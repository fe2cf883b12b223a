//! The live tenant registry: every tenant the daemon serves, its policy, routes and
//! settings, and the token table that says who a request is. Tenants are held in an
//! atomically swapped snapshot, so adding, changing or removing one while events flow
//! is a normal operation: a request sees the registry as it was when it authenticated,
//! and holds its `Arc<Tenant>` until it is answered.

pub mod caller;
pub mod control;
pub mod provision;
pub mod spec;
#[cfg(test)]
mod tests;
pub mod tokens;

pub use crate::record::TenantId;
pub use caller::{Caller, ManageCaller, ReadCaller, TenantCaller};
pub use tokens::{AccessToken, AuthError, TenantTokens, TokenEntry, TokenError, TokenInfo};

use crate::config::OnPolicyError;
use crate::policy::decision::RouteSet;
use crate::policy::{PolicyVersion, TenantPolicy};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A tenant's settings that are not its policy or routes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantSettings {
    pub on_policy_error: OnPolicyError,
    /// Store the original event beside its deliveries and DLQ entries (for replay
    /// through the policy).
    pub keep_original: bool,
}

/// Where a tenant is defined, and so what may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefinedBy {
    /// The config file: the file is its source of truth; over the API only the admin
    /// may swap its policy.
    #[default]
    ConfigFile,
    /// The management API (persisted in the store): its `manage` tokens may change it.
    Api,
}

/// A tenant as the running daemon sees it. Its policy, routes and settings change in
/// place; requests holding the `Arc` see each change from their next read on.
pub struct Tenant {
    pub id: TenantId,
    pub policy: TenantPolicy,
    pub defined_by: DefinedBy,
    settings: ArcSwap<TenantSettings>,
    /// The names of its routes (their queues live in the delivery stage).
    routes: ArcSwap<Vec<String>>,
    /// Serialises route changes, so the names and the policy's set stay one.
    route_changes: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant").field("id", &self.id).field("routes", &self.routes()).finish_non_exhaustive()
    }
}

impl Tenant {
    /// A tenant defined in the config file (set `defined_by` for one from the API); the
    /// policy's route set becomes `routes`.
    pub fn new(id: TenantId, policy: TenantPolicy, settings: TenantSettings, routes: Vec<String>) -> Self {
        policy.set_routes(route_set(&routes));
        Tenant {
            id,
            policy,
            defined_by: DefinedBy::ConfigFile,
            settings: ArcSwap::from_pointee(settings),
            routes: ArcSwap::from_pointee(routes),
            route_changes: Default::default(),
        }
    }

    /// Whether the original event is stored (`keep_original`).
    pub fn keep_original(&self) -> bool {
        self.settings.load().keep_original
    }

    pub fn settings(&self) -> TenantSettings {
        **self.settings.load()
    }

    /// From the next event on.
    pub fn set_settings(&self, settings: TenantSettings) {
        self.settings.store(Arc::new(settings));
    }

    /// The names of its routes, in the order they were set.
    pub fn routes(&self) -> Arc<Vec<String>> {
        self.routes.load_full()
    }

    /// Replaces its routes, and the set its policy's decisions may name, from the next
    /// decision on. Start a new route's queue before adding it here, and retire a
    /// removed one's after: a decision naming it then either finds its queue or
    /// faults with `unknown_route`.
    pub fn set_routes(&self, routes: Vec<String>) {
        let _change = self.route_changes.lock().expect("route changes lock");
        self.store_routes(routes);
    }

    /// Adds one route name (as [`Tenant::set_routes`]); `false` if it had it already.
    pub fn add_route(&self, name: &str) -> bool {
        let _change = self.route_changes.lock().expect("route changes lock");
        let routes = self.routes.load();
        if routes.iter().any(|r| r == name) {
            return false;
        }
        let mut routes = (**routes).clone();
        routes.push(name.to_string());
        self.store_routes(routes);
        true
    }

    /// Removes one route name (as [`Tenant::set_routes`]); `false` if it had none.
    pub fn remove_route(&self, name: &str) -> bool {
        let _change = self.route_changes.lock().expect("route changes lock");
        let routes = self.routes.load();
        if !routes.iter().any(|r| r == name) {
            return false;
        }
        self.store_routes(routes.iter().filter(|r| *r != name).cloned().collect());
        true
    }

    fn store_routes(&self, routes: Vec<String>) {
        self.policy.set_routes(route_set(&routes));
        self.routes.store(Arc::new(routes));
    }

    /// The active policy version; hold the `Arc` for a whole evaluation.
    pub fn current_policy(&self) -> Arc<PolicyVersion> {
        self.policy.current()
    }
}

fn route_set(routes: &[String]) -> RouteSet {
    RouteSet::Only(routes.iter().cloned().collect())
}

/// What a registry change could not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("tenant `{0}` exists already")]
    Exists(TenantId),
    #[error("no tenant `{0}`")]
    Unknown(String),
    #[error("no token `{0}`")]
    UnknownToken(String),
    #[error(transparent)]
    Token(#[from] TokenError),
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

    /// Adds a tenant and its config-file token (scopes `ingest` and `manage`); from
    /// then on requests can reach it.
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

    /// Adds a tenant token known by its digest ([`tokens::digest`]); it works from
    /// the next request on. The tenant must exist.
    pub fn insert_token(&self, digest: [u8; 32], entry: TokenEntry) -> Result<(), RegistryError> {
        let _change = self.changes.lock().expect("registry lock");
        let old = self.snapshot.load();
        if !old.tenants.contains_key(&entry.tenant) {
            return Err(RegistryError::Unknown(entry.tenant.to_string()));
        }
        let mut tokens = old.tokens.clone();
        tokens.insert_digest(digest, entry)?;
        self.snapshot.store(Arc::new(Snapshot { tenants: old.tenants.clone(), tokens }));
        Ok(())
    }

    /// Revokes the token `id`: the next request carrying it gets 401.
    pub fn revoke_token(&self, id: &str) -> Result<TokenEntry, RegistryError> {
        let _change = self.changes.lock().expect("registry lock");
        let old = self.snapshot.load();
        let mut tokens = old.tokens.clone();
        let revoked = tokens.revoke(id).ok_or_else(|| RegistryError::UnknownToken(id.to_string()))?;
        self.snapshot.store(Arc::new(Snapshot { tenants: old.tenants.clone(), tokens }));
        Ok(revoked)
    }

    /// The tokens of tenant `id` (ids, scopes, expiry; never secrets), in id order.
    pub fn tokens_of(&self, id: &str) -> Vec<TokenEntry> {
        self.snapshot.load().tokens.of_tenant(id)
    }

    /// The tenant and token a request authenticates as (its bearer token, or the
    /// open tenant).
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<(Arc<Tenant>, TokenInfo), AuthError> {
        let snapshot = self.snapshot.load();
        let (id, token) = snapshot.tokens.authenticate(headers)?;
        snapshot.tenants.get(&id).cloned().map(|t| (t, token)).ok_or(AuthError::Unknown)
    }

    /// The tenant owning `token`, and the token.
    pub fn find_token(&self, token: &str) -> Result<(Arc<Tenant>, TokenInfo), AuthError> {
        let snapshot = self.snapshot.load();
        let entry = snapshot.tokens.find(token)?;
        snapshot.tenants.get(&entry.tenant).cloned().map(|t| (t, entry.token.clone())).ok_or(AuthError::Unknown)
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
