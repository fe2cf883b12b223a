//! Wires the stages together: tenants with their policies and routes, the spool, and
//! the delivery stage. Ingest calls [`App::accept`]; the admin API calls the DLQ
//! operations.

use crate::config::{Config, OnPolicyError, ServerConfig, TenantConfig};
use crate::delivery::Deliverer;
use crate::ingest::auth::TenantTokens;
use crate::ingest::AcceptedEvent;
use crate::policy::live::{LivePolicy, PolicyStats};
use crate::policy::{Outcome, PolicyEngine, PolicyError, PolicyInstancePool};
use crate::record::{Delivery, TenantId};
use crate::sinks::{self, SinkContext};
use crate::spool::{AcceptItem, Accepted, NewDelivery, Shaped, Spool, SpoolError};
use crate::swap::PolicySource;
use crate::telemetry::metrics_names as m;
use anyhow::anyhow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A tenant as the running daemon sees it.
pub struct Tenant {
    pub id: TenantId,
    /// The active and previous policy versions and their statistics.
    pub live: LivePolicy,
    /// Where the policy comes from (file, config, limits, fixtures): what a reload uses.
    pub source: Mutex<PolicySource>,
    on_policy_error: OnPolicyError,
    /// Store the original event beside its deliveries and DLQ entries (for replay
    /// through the policy).
    keep_original: bool,
}

impl Tenant {
    /// Whether the original event is stored (`keep_original`).
    pub fn keep_original(&self) -> bool {
        self.keep_original
    }

    /// The active policy version. Callers hold the `Arc` for the whole evaluation, so
    /// a swap never changes the version under an event already being evaluated.
    pub fn policy(&self) -> Arc<PolicyInstancePool> {
        self.live.current()
    }
}

pub struct App {
    tenants: Vec<Tenant>,
    tokens: TenantTokens,
    admin_token: Option<TenantTokens>,
    /// `server.metrics_token_env`: what `/metrics` requires, when set.
    metrics_token: Option<TenantTokens>,
    spool: Arc<Spool>,
    deliverer: Deliverer,
    body_limit: u64,
    dedupe_window: Duration,
    drain_timeout: Duration,
    draining: AtomicBool,
    engine: PolicyEngine,
    /// The config file, for SIGHUP reloads (none for the quickstart flags).
    config_path: Option<PathBuf>,
    server: ServerConfig,
}

impl App {
    /// Loads every tenant's token, policy and routes, opens the spool and starts the
    /// route queues. Must run inside the Tokio runtime. The first problem stops
    /// startup with an error that names the tenant and the part.
    pub fn build(config: &Config) -> crate::Result<App> {
        config.validate_shape()?;
        // First: the spool locks data_dir (one hostd per spool) and makes it private.
        let spool = Arc::new(Spool::open(&config.server.data_dir, config.server.durability)?);
        let secrets = config.read_secrets().map_err(|problems| anyhow!("{}", problems.join("; ")))?;
        for warning in &secrets.warnings {
            tracing::warn!("{warning}");
        }
        let egress = config.server.egress();
        let compiled = config.server.data_dir.join("compiled");
        crate::spool::data_dir::secure_cache_dir(&compiled)?;
        let engine = PolicyEngine::new()?.with_disk_cache(&compiled)?;
        // Each load keeps the instance `configure` ran on only while it fits the budget,
        // so starting 1,000 tenants does not hold 1,000 instances.
        engine.idle_budget().set_limit(config.server.policy_memory_budget);
        let mut deliverer = Deliverer::new();
        let mut tenants = Vec::with_capacity(config.tenants.len());
        let tokens = &secrets.tenants;

        for tc in &config.tenants {
            let id = TenantId::from(tc.id.as_str());
            for (name, rc) in &tc.routes {
                let sink = sinks::build(&SinkContext::new(id.clone(), name.as_str(), egress.clone()), rc)?;
                deliverer.add_route(id.clone(), name.clone(), sink, &rc.delivery, spool.clone());
            }
            let source = PolicySource::of(tc);
            let policy = source.load(&engine, &tc.id, None, None).map_err(|e| anyhow!("tenant `{}`: {e}", tc.id))?;

            tenants.push(Tenant {
                id,
                live: LivePolicy::new(policy, "startup"),
                source: Mutex::new(source),
                on_policy_error: tc.on_policy_error,
                keep_original: tc.keep_original,
            });
        }
        let admin_token = secrets.admin.as_deref().map(|t| TenantTokens::new([(0, t)], None));
        let metrics_token = secrets.metrics.as_deref().map(|t| TenantTokens::new([(0, t)], None));
        let open_tenant = config.server.allow_unauthenticated.then_some(0);
        Ok(App {
            tokens: TenantTokens::new(tokens.iter().map(|(i, t)| (*i, t.as_str())), open_tenant),
            admin_token,
            metrics_token,
            tenants,
            spool,
            deliverer,
            body_limit: config.server.body_limit,
            dedupe_window: config.server.dedupe_window,
            drain_timeout: config.server.drain_timeout,
            draining: AtomicBool::new(false),
            engine,
            config_path: None,
            server: config.server.clone(),
        })
    }

    /// Remembers the config file SIGHUP reloads.
    pub fn with_config_path(mut self, path: Option<PathBuf>) -> Self {
        self.config_path = path;
        self
    }

    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    pub fn server_config(&self) -> &ServerConfig {
        &self.server
    }

    pub fn tokens(&self) -> &TenantTokens {
        &self.tokens
    }

    /// True when `token` is the admin token.
    pub fn is_admin_token(&self, token: &str) -> bool {
        self.admin_token.as_ref().is_some_and(|t| t.find(token).is_some())
    }

    /// True when `/metrics` needs no token, or `token` is the metrics token.
    pub fn may_read_metrics(&self, token: Option<&str>) -> bool {
        match &self.metrics_token {
            None => true,
            Some(t) => token.is_some_and(|token| t.find(token).is_some()),
        }
    }

    pub fn tenant(&self, index: usize) -> &Tenant {
        &self.tenants[index]
    }

    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    pub fn tenant_index(&self, id: &str) -> Option<usize> {
        self.tenants.iter().position(|t| &*t.id == id)
    }

    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    pub fn body_limit(&self) -> u64 {
        self.body_limit
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Runs each event through the tenant's policy and makes the outcome durable in
    /// one group commit: deliveries for the route queues, DLQ entries for policy
    /// faults, the idempotency keys for dedupe. Only after that commit may the caller
    /// answer 202. A policy fault is dead-lettered (or dropped, per the tenant's
    /// `on_policy_error`); nothing is ever delivered unshaped.
    pub async fn accept(&self, tenant_index: usize, events: Vec<AcceptedEvent>) -> Result<Vec<Accepted>, SpoolError> {
        let tenant = &self.tenants[tenant_index];
        let policy = tenant.policy();
        let outcomes = {
            let _slot = policy.evaluation_slot().await;
            evaluate_timed(&policy, &tenant.live.stats, &events)
        };
        let items = events.into_iter().zip(outcomes).map(|(e, o)| self.shape(tenant, &policy, e, o)).collect();
        let mut accepted = self.spool.accept(tenant.id.clone(), items, self.dedupe_window).await?;
        let label = [("tenant", tenant.id.to_string())];
        let duplicates = accepted.iter().filter(|a| a.duplicate).count() as u64;
        metrics::counter!(m::ACCEPTED, &label).increment(accepted.len() as u64 - duplicates);
        metrics::counter!(m::DUPLICATE, &label).increment(duplicates);
        let deliveries = accepted.iter_mut().flat_map(|a| std::mem::take(&mut a.deliveries)).collect();
        self.dispatch(deliveries).await;
        Ok(accepted)
    }

    /// What the policy's outcome for one event becomes in the spool.
    pub fn shape(
        &self,
        tenant: &Tenant,
        policy: &PolicyInstancePool,
        event: AcceptedEvent,
        outcome: Result<Outcome, PolicyError>,
    ) -> AcceptItem {
        let label = [("tenant", tenant.id.to_string())];
        let shaped = match outcome {
            Ok(Outcome::Drop(reason)) => {
                metrics::counter!(m::DROPPED, &label).increment(1);
                tracing::debug!(tenant = &*tenant.id, key = event.idempotency_key, "dropped by policy: {reason}");
                Shaped::Dropped
            }
            Ok(Outcome::Deliver(list)) => Shaped::Deliver(
                list.into_iter()
                    .map(|d| NewDelivery {
                        route: d.route,
                        key: d.key.unwrap_or_else(|| event.event.root_run_id.clone()),
                        redactions: d.redactions,
                        payload: d.payload,
                    })
                    .collect(),
            ),
            Err(err) => {
                let kind = err.fault.kind();
                metrics::counter!(m::POLICY_FAULTS, "tenant" => tenant.id.to_string(), "kind" => kind).increment(1);
                match tenant.on_policy_error {
                    OnPolicyError::DeadLetter => Shaped::Fault { reason: kind.to_string(), error: err.to_string() },
                    OnPolicyError::Drop => {
                        tracing::warn!(
                            tenant = &*tenant.id,
                            key = event.idempotency_key,
                            "dropped after policy fault: {err}"
                        );
                        Shaped::Dropped
                    }
                }
            }
        };
        AcceptItem {
            idempotency_key: event.idempotency_key,
            event_kind: event.event.kind,
            policy_version: policy.version().clone(),
            event: tenant.keep_original.then_some(event.raw),
            shaped,
        }
    }

    /// Hands spooled deliveries to their route queues; a delivery whose route is no
    /// longer configured is dead-lettered.
    pub async fn dispatch(&self, deliveries: Vec<Delivery>) {
        if let Err(orphans) = self.deliverer.dispatch(deliveries) {
            for d in orphans {
                let error = format!("route `{}` is no longer configured for tenant `{}`", d.route, d.tenant);
                if let Err(e) = self.spool.dead_letter(d.id, d.attempts, "route_removed", None, error).await {
                    tracing::error!("cannot dead-letter delivery {}: {e}", d.id);
                }
            }
        }
    }

    /// Resumes what the spool holds from before a restart.
    pub async fn resume(&self) -> crate::Result<usize> {
        let pending = self.spool.pending().await?;
        let n = pending.len();
        self.dispatch(pending).await;
        Ok(n)
    }

    /// Stops ingest (503), lets in-flight deliveries finish up to the drain timeout,
    /// and waits for the spool's last writes. Returns the deliveries still in flight
    /// when time ran out (they stay in the spool).
    pub async fn drain(&self) -> usize {
        self.draining.store(true, Ordering::SeqCst);
        let left = self.deliverer.drain(self.drain_timeout).await;
        let _ = self.spool.flush().await;
        left
    }
}

/// Runs policy code (instantiation, `configure`, `evaluate`) from async code.
///
/// wasmtime-wasi's synchronous bindings serve a guest's WASI calls (a write to stderr,
/// say) with `Handle::block_on`, which panics on a runtime worker thread. Inside
/// `block_in_place` it is allowed, and the worker's other tasks move to another thread
/// meanwhile — which CPU-bound policy calls that may run to their deadline want anyway.
/// Off a multi-threaded runtime the work runs on a plain scoped thread.
pub fn run_policy_code<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| s.spawn(f).join().expect("policy thread panicked")),
        Err(_) => f(),
    }
}

/// Evaluates a batch, each event on the tenant's policy.
pub fn evaluate_all(policy: &PolicyInstancePool, events: &[AcceptedEvent]) -> Vec<Result<Outcome, PolicyError>> {
    run_policy_code(|| events.iter().map(|e| policy.evaluate(&e.event)).collect())
}

/// [`evaluate_all`], recording each call's time and fault in the tenant's statistics.
pub fn evaluate_timed(
    policy: &PolicyInstancePool,
    stats: &PolicyStats,
    events: &[AcceptedEvent],
) -> Vec<Result<Outcome, PolicyError>> {
    run_policy_code(|| {
        events
            .iter()
            .map(|e| {
                let started = std::time::Instant::now();
                let outcome = policy.evaluate(&e.event);
                stats.record(started.elapsed(), outcome.as_ref().err().map(|err| err.fault.kind()));
                outcome
            })
            .collect()
    })
}

pub fn load_policy(engine: &PolicyEngine, tc: &TenantConfig) -> crate::Result<PolicyInstancePool> {
    PolicySource::of(tc).load(engine, &tc.id, None, None).map_err(|e| anyhow!("tenant `{}`: {e}", tc.id))
}
