//! Live policy swap: a tenant's new version is compiled and checked off the hot path,
//! then installed atomically ([`LivePolicy::install`]). Three triggers: the policy file
//! changes (watched with `notify`), `PUT /admin/v1/tenants/{id}/policy`, and SIGHUP
//! (re-reads the config file). A candidate must compile, match the WIT world, accept
//! the tenant's config in `configure`, and pass the tenant's `policy_tests`; otherwise
//! the old version keeps serving and the reason is returned and logged.
//!
//! Also here: the sweeper that frees idle instances of tenants that went quiet, and
//! the least recently used ones first when idle instances exceed the memory budget.

use crate::app::App;
use crate::config::{Config, PolicyLimits, TenantConfig};
use crate::policy::decision::RouteSet;
use crate::policy::live::Swapped;
use crate::policy::{PolicyEngine, PolicyInstancePool};
use crate::policy_test::check_fixtures;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where a tenant's policy comes from: what a reload needs to build a new version.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySource {
    pub path: PathBuf,
    pub config_json: String,
    pub limits: PolicyLimits,
    pub routes: RouteSet,
    pub tests: Option<PathBuf>,
}

impl PolicySource {
    pub fn of(tc: &TenantConfig) -> Self {
        PolicySource {
            path: tc.policy.clone(),
            config_json: Config::policy_config_json(tc),
            limits: tc.limits.clone(),
            routes: RouteSet::Only(tc.routes.keys().cloned().collect()),
            tests: tc.policy_tests.clone(),
        }
    }

    /// Compiles and checks a version: `bytes` (else the file), `config_json` (else the
    /// source's). Blocking: compiles with Cranelift and runs guest code.
    pub fn load(
        &self,
        engine: &PolicyEngine,
        tenant: &str,
        bytes: Option<&[u8]>,
        config_json: Option<&str>,
    ) -> Result<PolicyInstancePool, String> {
        let config = config_json.unwrap_or(&self.config_json).to_string();
        let pool = match bytes {
            Some(b) => PolicyInstancePool::load(engine, tenant, b, config, self.limits.clone(), self.routes.clone())
                .map_err(|e| format!("{e:#}"))?,
            None => PolicyInstancePool::load_file(
                engine,
                tenant,
                &self.path,
                config,
                self.limits.clone(),
                self.routes.clone(),
            )
            .map_err(|e| format!("{e:#}"))?,
        };
        if let Some(tests) = &self.tests {
            let n = crate::app::run_policy_code(|| check_fixtures(&pool, tests))
                .map_err(|e| format!("version {} fails its tests: {e}", pool.version()))?;
            tracing::debug!(tenant, version = &**pool.version(), "passed {n} policy_tests");
        }
        Ok(pool)
    }
}

impl App {
    /// Builds a candidate for tenant `index` (from `bytes`, else its file; with
    /// `config_json`, else its current config), checks it and installs it.
    pub async fn swap_policy(
        self: &Arc<Self>,
        index: usize,
        bytes: Option<Vec<u8>>,
        config_json: Option<String>,
        origin: &'static str,
    ) -> Result<Swapped, String> {
        let tenant = self.tenant(index);
        let source = tenant.source.lock().expect("source lock").clone();
        let engine = self.engine().clone();
        let id = tenant.id.clone();
        let config = config_json.clone();
        let candidate =
            tokio::task::spawn_blocking(move || source.load(&engine, &id, bytes.as_deref(), config.as_deref()))
                .await
                .map_err(|e| format!("the policy loader panicked: {e}"))?;
        let result = candidate.map(|pool| {
            let swapped = tenant.live.install(pool, origin);
            if let Some(config) = config_json {
                tenant.source.lock().expect("source lock").config_json = config;
            }
            swapped
        });
        log_swap(&tenant.id, origin, &result);
        result
    }

    /// Makes the tenant's previous version active again.
    pub fn rollback_policy(&self, index: usize) -> Result<Swapped, String> {
        let tenant = self.tenant(index);
        let result = tenant.live.rollback();
        log_swap(&tenant.id, "rollback", &result);
        result
    }

    /// SIGHUP: re-reads the config file and swaps every tenant whose policy file,
    /// config, limits or tests changed. Other changes (tenants, routes, tokens, server)
    /// need a restart and are reported as such. Returns one line per tenant touched.
    pub async fn reload_config(self: &Arc<Self>) -> Vec<String> {
        let Some(path) = self.config_path().map(Path::to_path_buf) else {
            return vec!["SIGHUP: hostd was started without --config; nothing to reload".into()];
        };
        let config = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => return vec![format!("SIGHUP: {e:#}; nothing changed")],
        };
        let mut report = Vec::new();
        let known: BTreeSet<&str> = self.tenants().iter().map(|t| &*t.id).collect();
        let listed: BTreeSet<&str> = config.tenants.iter().map(|t| t.id.as_str()).collect();
        for id in known.symmetric_difference(&listed) {
            report.push(format!("tenant `{id}`: added or removed in the config; that needs a restart"));
        }
        for tc in &config.tenants {
            let Some(index) = self.tenant_index(&tc.id) else { continue };
            let tenant = self.tenant(index);
            let new_source = PolicySource::of(tc);
            let old_source = tenant.source.lock().expect("source lock").clone();
            if new_source.routes != old_source.routes {
                report.push(format!("tenant `{}`: routes changed; that needs a restart", tc.id));
            }
            let file_changed =
                std::fs::read(&new_source.path).map(|b| sha256_hex(&b) != tenant.policy().sha256()).unwrap_or(true);
            if new_source == old_source && !file_changed {
                continue;
            }
            let routes = old_source.routes.clone();
            *tenant.source.lock().expect("source lock") = PolicySource { routes, ..new_source };
            match self.swap_policy(index, None, None, "sighup").await {
                Ok(s) if s.unchanged => {}
                Ok(s) => report.push(format!("tenant `{}`: now version {}", tc.id, s.active.version)),
                Err(e) => {
                    *tenant.source.lock().expect("source lock") = old_source;
                    report.push(format!("tenant `{}`: kept version {}: {e}", tc.id, tenant.policy().version()));
                }
            }
        }
        report
    }
}

fn log_swap(tenant: &str, origin: &str, result: &Result<Swapped, String>) {
    match result {
        Ok(s) if s.unchanged => tracing::info!(tenant, origin, version = &*s.active.version, "policy unchanged"),
        Ok(s) => tracing::info!(
            tenant,
            origin,
            version = &*s.active.version,
            previous = s.previous.as_ref().map(|p| &*p.version),
            "policy swapped"
        ),
        Err(e) => tracing::error!(tenant, origin, "policy swap refused, the old version keeps serving: {e}"),
    }
    let outcome = match result {
        Ok(_) => "ok",
        Err(_) => "refused",
    };
    metrics::counter!(crate::telemetry::metrics_names::POLICY_SWAPS, "tenant" => tenant.to_string(), "outcome" => outcome)
        .increment(1);
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Watches the directories of every tenant's policy file; a change (debounced 150 ms)
/// to a tenant's current file loads, checks and swaps it. A SIGHUP that points a tenant
/// at another file in a watched directory is followed; a new directory needs a restart.
/// Returns the watcher, which must be kept alive.
pub fn watch_policy_files(app: Arc<App>) -> crate::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let paths: Vec<PathBuf> =
        app.tenants().iter().map(|t| absolute(&t.source.lock().expect("source lock").path)).collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(event) if !event.kind.is_access() => {
            for p in event.paths {
                let _ = tx.send(p);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("policy file watcher: {e}"),
    })
    .map_err(|e| anyhow::anyhow!("cannot watch policy files: {e}"))?;
    let dirs: BTreeSet<PathBuf> = paths.iter().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", dir.display()))?;
    }
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut changed = BTreeSet::from([first]);
            tokio::time::sleep(Duration::from_millis(150)).await;
            while let Ok(p) = rx.try_recv() {
                changed.insert(p);
            }
            for path in changed {
                let path = absolute(&path);
                let tenants: Vec<usize> = (0..app.tenants().len())
                    .filter(|&i| absolute(&app.tenant(i).source.lock().expect("source lock").path) == path)
                    .collect();
                for index in tenants {
                    reload_file(&app, index, &path).await;
                }
            }
        }
    });
    Ok(watcher)
}

async fn reload_file(app: &Arc<App>, index: usize, path: &Path) {
    let Ok(bytes) = std::fs::read(path) else { return }; // removed mid-rename: the next event has it
    if sha256_hex(&bytes) == app.tenant(index).policy().sha256() {
        return;
    }
    let _ = app.swap_policy(index, Some(bytes), None, "file").await;
}

/// The path with its directory made absolute and canonical (the file itself may be
/// replaced by a rename, so only the directory is resolved).
fn absolute(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = dir.canonicalize().unwrap_or(dir);
    match path.file_name() {
        Some(name) => dir.join(name),
        None => dir,
    }
}

/// Reloads the config file on every SIGHUP.
pub async fn reload_on_sighup(app: Arc<App>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; config reload is off");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        let report = app.reload_config().await;
        if report.is_empty() {
            tracing::info!("SIGHUP: no policy changed");
        }
        for line in report {
            tracing::info!("SIGHUP: {line}");
        }
    }
}

/// Every second: frees the idle instances of tenants unused for `policy_idle_ttl`
/// and of previous versions, then, while idle instances hold more than three quarters
/// of `policy_memory_budget`, those of the least recently used tenants — so tenants
/// that are busy now find room to keep theirs (an instance is only kept if it fits the
/// budget: see `IdleBudget`).
pub async fn evict_idle_instances(app: Arc<App>) {
    let ttl = app.server_config().policy_idle_ttl.as_millis() as u64;
    let budget = app.server_config().policy_memory_budget;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        sweep(&app, ttl, budget);
    }
}

/// One sweep; returns the instances freed.
pub fn sweep(app: &App, ttl_ms: u64, budget: u64) -> usize {
    let now = crate::clock::now_ms();
    let mut freed = 0;
    let mut live = Vec::new();
    for t in app.tenants() {
        if let Some(previous) = t.live.previous() {
            freed += previous.evict_idle();
        }
        let pool = t.policy();
        if now.saturating_sub(pool.last_used_ms()) > ttl_ms {
            freed += pool.evict_idle();
        } else {
            live.push((pool.last_used_ms(), pool.idle_memory(), pool));
        }
    }
    let mut held: u64 = live.iter().map(|(_, m, _)| m).sum();
    let target = budget - budget / 4;
    if held > target {
        live.sort_by_key(|(used, _, _)| *used);
        for (_, memory, pool) in live {
            if held <= target {
                break;
            }
            freed += pool.evict_idle();
            held = held.saturating_sub(memory);
        }
    }
    if freed > 0 {
        tracing::debug!("freed {freed} idle policy instance(s)");
    }
    freed
}
