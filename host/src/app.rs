//! The bag of handles every HTTP surface and background task takes a piece of (like
//! Svix's `AppState`): the tenant registry, the pipeline, the spool, the route queues,
//! the policy engine and the `[server]` config. Building it is the daemon's wiring;
//! it has no logic of its own.

use crate::admin::AdminState;
use crate::config::{Config, ServerConfig, TenantConfig};
use crate::delivery::Deliverer;
use crate::egress::Egress;
use crate::ingest::{IngestLimits, IngestState, Pipeline};
use crate::policy::PolicyEngine;
use crate::store::{SqliteStore, Store};
use crate::tenants::control::{ControlHandles, ControlPlane};
use crate::tenants::provision::Provisioner;
use crate::tenants::{AccessToken, Tenant, TenantId, TenantRegistry};
use anyhow::anyhow;
use axum::extract::FromRef;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone)]
pub struct App {
    pub tenants: Arc<TenantRegistry>,
    pub pipeline: Arc<Pipeline>,
    pub spool: Arc<dyn Store>,
    pub deliverer: Arc<Deliverer>,
    pub engine: PolicyEngine,
    /// Tenants, routes, tokens and secrets changed through the admin API.
    pub control: Arc<ControlPlane>,
    pub egress: Egress,
    pub server: Arc<ServerConfig>,
    /// The config file, for SIGHUP reloads (none for the quickstart flags).
    pub config_path: Option<Arc<PathBuf>>,
}

impl App {
    /// Opens the spool, then loads every tenant's token, policy and routes and starts
    /// the route queues. Must run inside the Tokio runtime. The first problem stops
    /// startup with an error that names the tenant and the part.
    pub fn build(config: &Config) -> crate::Result<App> {
        config.validate_shape()?;
        // Each route's transport settings, before the spool locks data_dir.
        crate::sinks::validate_routes(config)?;
        // First: the spool locks data_dir (one hostd per spool) and makes it private.
        let secret_key = config.server.read_secret_key().map_err(|e| anyhow!("{e}"))?;
        let store = SqliteStore::open(&config.server.data_dir, config.server.durability)?.with_secret_key(secret_key);
        let spool: Arc<dyn Store> = Arc::new(store);
        let secrets = config.read_secrets().map_err(|problems| anyhow!("{}", problems.join("; ")))?;
        for warning in &secrets.warnings {
            tracing::warn!("{warning}");
        }
        let compiled = config.server.data_dir.join("compiled");
        crate::store::data_dir::secure_cache_dir(&compiled)?;
        let engine = PolicyEngine::new()?.with_disk_cache(&compiled)?;
        // Each load keeps the instance `configure` ran on only while it fits the budget,
        // so starting 1,000 tenants does not hold 1,000 instances.
        engine.idle_budget().set_limit(config.server.policy_memory_budget);
        let open_tenant = match config.server.allow_unauthenticated {
            true => config.tenants.first().map(|t| TenantId::from(t.id.as_str())),
            false => None,
        };
        let tenants = Arc::new(TenantRegistry::new(
            secrets.admin.as_deref().map(AccessToken::new),
            secrets.metrics.as_deref().map(AccessToken::new),
            open_tenant,
        ));
        let deliverer = Arc::new(Deliverer::new());
        let pipeline = Arc::new(Pipeline::new(spool.clone(), deliverer.clone(), config.server.dedupe_window));
        let policies_dir = config.server.data_dir.join("policies");
        crate::store::data_dir::secure_cache_dir(&policies_dir)?;
        let control = Arc::new(ControlPlane::new(ControlHandles {
            store: spool.clone(),
            registry: tenants.clone(),
            deliverer: deliverer.clone(),
            engine: engine.clone(),
            egress: config.server.egress(),
            policies_dir,
            file_tenants: config.tenants.iter().map(|t| t.id.clone()).collect(),
        }));
        let app = App {
            tenants,
            pipeline,
            spool,
            deliverer,
            engine,
            control,
            egress: config.server.egress(),
            server: Arc::new(config.server.clone()),
            config_path: None,
        };
        for (index, tc) in config.tenants.iter().enumerate() {
            let token = secrets.tenants.iter().find(|(i, _)| *i == index).map(|(_, t)| t.as_str());
            app.add_tenant(tc, token, "startup")?;
        }
        Ok(app)
    }

    /// Remembers the config file SIGHUP reloads.
    pub fn with_config_path(mut self, path: Option<PathBuf>) -> Self {
        if let Some(p) = &path {
            self.control.set_config_file(p.clone());
        }
        self.config_path = path.map(Arc::new);
        self
    }

    /// Loads a tenant (policy, sinks, route queues) and adds it to the registry with
    /// its token. Blocking: compiles the policy (see `run_policy_code`).
    pub fn add_tenant(
        &self,
        tc: &TenantConfig,
        token: Option<&str>,
        origin: &'static str,
    ) -> crate::Result<Arc<Tenant>> {
        if self.tenants.get(&tc.id).is_some() {
            return Err(anyhow!("tenant `{}` exists already", tc.id));
        }
        let provisioner =
            Provisioner { engine: &self.engine, egress: &self.egress, deliverer: &self.deliverer, spool: &self.spool };
        let tenant = provisioner.build(tc, origin)?;
        self.tenants.insert(tenant, token).map_err(|e| {
            self.deliverer.retire_tenant(&tc.id);
            anyhow!("{e}")
        })
    }

    /// Removes a tenant: its token stops working at once; what it already spooled is
    /// still delivered, then its route queues stop.
    pub fn remove_tenant(&self, id: &str) -> crate::Result<Arc<Tenant>> {
        let tenant = self.tenants.remove(id).map_err(|e| anyhow!("{e}"))?;
        self.deliverer.retire_tenant(id);
        Ok(tenant)
    }

    /// Stops ingest and drains the route queues (up to `server.drain_timeout`).
    pub async fn drain(&self) -> usize {
        self.pipeline.drain(self.server.drain_timeout).await
    }
}

impl FromRef<App> for Arc<TenantRegistry> {
    fn from_ref(app: &App) -> Self {
        app.tenants.clone()
    }
}

impl FromRef<App> for IngestState {
    fn from_ref(app: &App) -> Self {
        IngestState {
            pipeline: app.pipeline.clone(),
            tenants: app.tenants.clone(),
            limits: IngestLimits {
                body_limit: app.server.body_limit,
                max_events_per_request: app.server.max_events_per_request,
            },
        }
    }
}

impl FromRef<App> for AdminState {
    fn from_ref(app: &App) -> Self {
        AdminState {
            tenants: app.tenants.clone(),
            pipeline: app.pipeline.clone(),
            spool: app.spool.clone(),
            engine: app.engine.clone(),
            control: app.control.clone(),
        }
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
