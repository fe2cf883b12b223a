//! Wires the stages together: tenants with their policies and routes, ingest in
//! front, sinks and dead letters behind.

use crate::config::{Config, OnPolicyError, RouteConfig, TenantConfig};
use crate::delivery::dead_letter::now_ms;
use crate::delivery::{DeadLetter, DeadLetterFile, Delivery};
use crate::ingest::auth::TenantTokens;
use crate::ingest::AcceptedEvent;
use crate::policy::decision::RouteSet;
use crate::policy::{Outcome, PolicyEngine, PolicyError, PolicyInstancePool};
use crate::sinks::{self, Sink};
use anyhow::{anyhow, Context};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A tenant as the running daemon sees it.
pub struct Tenant {
    pub id: Arc<str>,
    policy: RwLock<Arc<PolicyInstancePool>>,
    routes: HashMap<String, Arc<dyn Sink>>,
    on_policy_error: OnPolicyError,
}

impl Tenant {
    /// The active policy version. Callers hold the `Arc` for the whole evaluation, so
    /// a swap never changes the version under an event already being evaluated.
    pub fn policy(&self) -> Arc<PolicyInstancePool> {
        self.policy.read().expect("policy lock").clone()
    }
}

/// What happened to the events of one accepted batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AcceptReport {
    pub delivered: usize,
    pub dropped: usize,
    pub dead_lettered: usize,
}

pub struct App {
    tenants: Vec<Tenant>,
    tokens: TenantTokens,
    dead_letters: DeadLetterFile,
    body_limit: u64,
}

impl App {
    /// Loads every tenant's token, policy and routes. The first problem stops startup
    /// with an error that names the tenant and the part.
    pub fn build(config: &Config) -> crate::Result<App> {
        config.validate_shape()?;
        let engine = PolicyEngine::new()?;
        let mut tenants = Vec::with_capacity(config.tenants.len());
        let mut tokens = Vec::new();
        for (index, tc) in config.tenants.iter().enumerate() {
            if let Some(token) = tc.read_token()? {
                tokens.push((index, token));
            }
            tenants.push(build_tenant(&engine, tc)?);
        }
        let open_tenant = config.server.allow_unauthenticated.then_some(0);
        let dead_letters = DeadLetterFile::open(&dead_letter_path(&config.server.data_dir))?;
        Ok(App {
            tokens: TenantTokens::new(tokens.iter().map(|(i, t)| (*i, t.as_str())), open_tenant),
            tenants,
            dead_letters,
            body_limit: config.server.body_limit,
        })
    }

    pub fn tokens(&self) -> &TenantTokens {
        &self.tokens
    }

    pub fn tenant(&self, index: usize) -> &Tenant {
        &self.tenants[index]
    }

    pub fn body_limit(&self) -> u64 {
        self.body_limit
    }

    pub fn dead_letter_file(&self) -> &Path {
        self.dead_letters.path()
    }

    /// Runs each event through the tenant's policy and hands what it keeps to the
    /// routes' sinks. A policy fault or a failed sink dead-letters (or drops, per the
    /// tenant's `on_policy_error`); nothing is ever delivered unshaped.
    pub async fn accept(&self, tenant_index: usize, events: Vec<AcceptedEvent>) -> AcceptReport {
        let tenant = &self.tenants[tenant_index];
        let policy = tenant.policy();
        let outcomes = evaluate_all(&policy, &events);
        let mut report = AcceptReport::default();
        let mut by_route: BTreeMap<String, (Vec<Delivery>, Vec<usize>)> = BTreeMap::new();
        for (index, (event, outcome)) in events.iter().zip(outcomes).enumerate() {
            match outcome {
                Ok(Outcome::Drop(reason)) => {
                    report.dropped += 1;
                    tracing::debug!(tenant = &*tenant.id, key = event.idempotency_key, "dropped by policy: {reason}");
                }
                Ok(Outcome::Deliver(shaped)) => {
                    for d in shaped {
                        let entry = by_route.entry(d.route.clone()).or_default();
                        entry.0.push(Delivery {
                            tenant: tenant.id.clone(),
                            route: d.route,
                            idempotency_key: event.idempotency_key.clone(),
                            event: event.event.kind.clone(),
                            key: d.key.unwrap_or_else(|| event.event.root_run_id.clone()),
                            policy_version: policy.version().clone(),
                            redactions: d.redactions,
                            payload: d.payload,
                        });
                        entry.1.push(index);
                    }
                }
                Err(err) => self.policy_fault(tenant, event, err, &mut report),
            }
        }
        for (route, (batch, origins)) in by_route {
            let sink = &tenant.routes[&route];
            match sink.deliver(&batch).await {
                Ok(()) => report.delivered += batch.len(),
                Err(e) => {
                    for (delivery, origin) in batch.iter().zip(origins) {
                        report.dead_lettered += 1;
                        self.dead_letters.write(&DeadLetter {
                            at_ms: now_ms(),
                            tenant: &tenant.id,
                            idempotency_key: &delivery.idempotency_key,
                            reason: "sink",
                            error: e.to_string(),
                            policy_version: Some(&delivery.policy_version),
                            route: Some(&route),
                            policy_elapsed_us: None,
                            event: &events[origin].raw,
                        });
                    }
                }
            }
        }
        report
    }

    fn policy_fault(&self, tenant: &Tenant, event: &AcceptedEvent, err: PolicyError, report: &mut AcceptReport) {
        match tenant.on_policy_error {
            OnPolicyError::DeadLetter => {
                report.dead_lettered += 1;
                self.dead_letters.write(&DeadLetter {
                    at_ms: now_ms(),
                    tenant: &tenant.id,
                    idempotency_key: &event.idempotency_key,
                    reason: err.fault.kind(),
                    error: err.to_string(),
                    policy_version: Some(&err.version),
                    route: None,
                    policy_elapsed_us: Some(err.elapsed.as_micros() as u64),
                    event: &event.raw,
                });
            }
            OnPolicyError::Drop => {
                report.dropped += 1;
                tracing::warn!(tenant = &*tenant.id, key = event.idempotency_key, "dropped after policy fault: {err}");
            }
        }
    }
}

/// Evaluates a batch. Policy calls are CPU-bound and may run up to their deadline, so
/// on a multi-threaded runtime they leave the async worker free for other requests.
fn evaluate_all(policy: &PolicyInstancePool, events: &[AcceptedEvent]) -> Vec<Result<Outcome, PolicyError>> {
    let run = || events.iter().map(|e| policy.evaluate(&e.event)).collect();
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
        _ => run(),
    }
}

fn build_tenant(engine: &PolicyEngine, tc: &TenantConfig) -> crate::Result<Tenant> {
    let routes: HashMap<String, Arc<dyn Sink>> = tc
        .routes
        .iter()
        .map(|(name, rc)| Ok((name.clone(), sinks::build(name, rc).with_context(|| format!("tenant `{}`", tc.id))?)))
        .collect::<crate::Result<_>>()?;
    let policy = load_policy(engine, tc)?;
    Ok(Tenant {
        id: Arc::from(tc.id.as_str()),
        policy: RwLock::new(Arc::new(policy)),
        routes,
        on_policy_error: tc.on_policy_error,
    })
}

fn load_policy(engine: &PolicyEngine, tc: &TenantConfig) -> crate::Result<PolicyInstancePool> {
    let routes = RouteSet::Only(tc.routes.keys().cloned().collect());
    PolicyInstancePool::load_file(engine, &tc.id, &tc.policy, Config::policy_config_json(tc), tc.limits.clone(), routes)
        .map_err(|e| anyhow!("tenant `{}`: {e:#}", tc.id))
}

pub fn dead_letter_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dead-letter.jsonl")
}

/// Starts the daemon and serves until SIGINT / SIGTERM.
pub async fn serve(config: Config) -> crate::Result<()> {
    let listen = config.server.listen;
    if config.server.allow_unauthenticated {
        tracing::warn!("no token configured: accepting unauthenticated requests on the loopback listener {listen}");
    }
    let app = Arc::new(App::build(&config)?);
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow!("server.listen: cannot bind {listen}: {e}"))?;
    let local = listener.local_addr()?;
    for t in &app.tenants {
        let p = t.policy();
        tracing::info!(tenant = &*t.id, policy_version = &**p.version(), routes = t.routes.len(), "tenant loaded");
    }
    tracing::info!(dead_letters = %app.dead_letter_file().display(), "listening on http://{local}");
    axum::serve(listener, crate::ingest::router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| anyhow!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

/// `hostd check`: validates the config and loads every policy. Returns one line per
/// problem; empty means the config is good.
pub fn check(path: &Path) -> Vec<String> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return vec![format!("{e:#}")],
    };
    let engine = match PolicyEngine::new() {
        Ok(e) => e,
        Err(e) => return vec![format!("{e:#}")],
    };
    let mut problems = Vec::new();
    for tc in &config.tenants {
        if let Err(e) = tc.read_token() {
            problems.push(format!("{e:#}"));
        }
        if !tc.policy.exists() {
            problems.push(format!("tenant `{}`: policy {}: file not found", tc.id, tc.policy.display()));
        } else if let Err(e) = load_policy(&engine, tc) {
            problems.push(format!("{e:#}"));
        }
        for (name, rc) in &tc.routes {
            if let RouteConfig::File { path } = rc {
                if path.is_dir() {
                    problems.push(format!(
                        "tenant `{}`: route `{name}`: path {} is a directory",
                        tc.id,
                        path.display()
                    ));
                }
            }
        }
    }
    problems
}
