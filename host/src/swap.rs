//! What triggers a live policy swap from outside the API: the policy file changes
//! (watched with `notify`) and SIGHUP (re-reads the config file). The swap itself —
//! compile, check, install atomically, the old version serving on refusal — is the
//! policy stage's ([`crate::policy::TenantPolicy::swap`]).

use crate::app::App;
use crate::config::Config;
use crate::policy::source::sha256_hex;
use crate::policy::PolicySource;
use crate::tenants::DefinedBy;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// SIGHUP: re-reads the config file and swaps every tenant whose policy file, config,
/// limits or tests changed. Other changes (tenants, routes, tokens, server) need a
/// restart and are reported as such. Returns one line per tenant touched.
pub async fn reload_config(app: &App) -> Vec<String> {
    let Some(path) = app.config_path.as_deref().cloned() else {
        return vec!["SIGHUP: hostd was started without --config; nothing to reload".into()];
    };
    let config =
        match Config::load(&path).and_then(|c| crate::sinks::validate_routes(&c).map(|()| c).map_err(Into::into)) {
            Ok(c) => c,
            Err(e) => return vec![format!("SIGHUP: {e:#}; nothing changed")],
        };
    let mut report = Vec::new();
    // Tenants created through the admin API are the store's, not the file's.
    let running: Vec<_> = app.tenants.all().into_iter().filter(|t| t.defined_by == DefinedBy::ConfigFile).collect();
    let known: BTreeSet<&str> = running.iter().map(|t| &*t.id).collect();
    let listed: BTreeSet<&str> = config.tenants.iter().map(|t| t.id.as_str()).collect();
    for id in known.symmetric_difference(&listed) {
        report.push(format!("tenant `{id}`: added or removed in the config; that needs a restart"));
    }
    for tc in &config.tenants {
        let Some(tenant) = app.tenants.get(&tc.id).filter(|t| t.defined_by == DefinedBy::ConfigFile) else { continue };
        let new_source = PolicySource::of(tc);
        let old_source = tenant.policy.source();
        if new_source.routes != old_source.routes {
            report.push(format!("tenant `{}`: routes changed; that needs a restart", tc.id));
        }
        let file_changed =
            std::fs::read(&new_source.path).map(|b| sha256_hex(&b) != tenant.current_policy().sha256()).unwrap_or(true);
        if new_source == old_source && !file_changed {
            continue;
        }
        let routes = old_source.routes.clone();
        tenant.policy.set_source(PolicySource { routes, ..new_source });
        match tenant.policy.swap(&app.engine, &tenant.id, None, None, "sighup").await {
            Ok(s) if s.unchanged => {}
            Ok(s) => report.push(format!("tenant `{}`: now version {}", tc.id, s.active.version)),
            Err(e) => {
                tenant.policy.set_source(old_source);
                report.push(format!("tenant `{}`: kept version {}: {e}", tc.id, tenant.current_policy().version()));
            }
        }
    }
    report
}

/// Watches the directories of every tenant's policy file; a change (debounced 150 ms)
/// to a tenant's current file loads, checks and swaps it. A SIGHUP that points a tenant
/// at another file in a watched directory is followed; a new directory needs a restart.
/// Returns the watcher, which must be kept alive.
pub fn watch_policy_files(app: App) -> crate::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let paths: Vec<PathBuf> = app.tenants.all().iter().map(|t| absolute(&t.policy.source().path)).collect();
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
                for tenant in app.tenants.all() {
                    if absolute(&tenant.policy.source().path) == path {
                        reload_file(&app, &tenant, &path).await;
                    }
                }
            }
        }
    });
    Ok(watcher)
}

async fn reload_file(app: &App, tenant: &crate::tenants::Tenant, path: &Path) {
    let Ok(bytes) = std::fs::read(path) else { return }; // removed mid-rename: the next event has it
    if sha256_hex(&bytes) == tenant.current_policy().sha256() {
        return;
    }
    let _ = tenant.policy.swap(&app.engine, &tenant.id, Some(bytes), None, "file").await;
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
pub async fn reload_on_sighup(app: App) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; config reload is off");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        let report = reload_config(&app).await;
        if report.is_empty() {
            tracing::info!("SIGHUP: no policy changed");
        }
        for line in report {
            tracing::info!("SIGHUP: {line}");
        }
    }
}
