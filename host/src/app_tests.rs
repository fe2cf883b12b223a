//! Tenants added and removed through the registry while events flow.

use super::App;
use crate::config::Config;
use crate::event::parse_event;
use crate::tenants::TenantRegistry;
use axum::http::{header, HeaderMap, HeaderValue};
use serde_json::value::RawValue;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn plugin() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-wasip2/release/pass_through.wasm");
    assert!(p.exists(), "build the plugins first (make plugins): {}", p.display());
    p.display().to_string()
}

fn tenant_toml(id: &str, out: &Path) -> String {
    format!(
        "[[tenants]]\nid = {id:?}\npolicy = {:?}\n[tenants.routes.default]\ntype = \"file\"\npath = {:?}\n",
        plugin(),
        out.join(format!("{id}.jsonl")).display().to_string()
    )
}

fn config(dir: &Path, tenants: &[&str]) -> Config {
    let mut text =
        format!("[server]\ndata_dir = {:?}\nwatch_policies = false\n", dir.join("data").display().to_string());
    for id in tenants {
        text.push_str(&tenant_toml(id, dir));
    }
    let mut config: Config = toml::from_str(&text).expect("test config");
    for tc in &mut config.tenants {
        tc.token = Some(format!("token-{}", tc.id));
    }
    config
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    h
}

/// Sends one event as the holder of `token`, the way ingest does: authenticate against
/// the registry, then the pipeline. `false` when the token no longer names a tenant.
async fn send(app: &App, registry: &TenantRegistry, token: &str, key: &str) -> bool {
    let Ok((tenant, _)) = registry.authenticate(&bearer(token)) else { return false };
    let body = format!(
        r#"{{"event":"on_tool_end","name":"t","run_id":"r","root_run_id":"root-{key}","idempotency_key":"{key}","data":{{"key":"{key}"}}}}"#
    );
    let raw = RawValue::from_string(body).unwrap();
    let event = parse_event(&raw, &tenant.id).unwrap_or_else(|e| panic!("{}", e.message()));
    let accepted = app.pipeline.accept(&tenant, vec![event]).await.expect("accepted");
    assert!(!accepted[0].duplicate);
    true
}

/// The idempotency keys in a tenant's file sink, checking every line is that tenant's.
fn delivered(dir: &Path, tenant: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(dir.join(format!("{tenant}.jsonl"))).unwrap_or_default();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["tenant"], tenant, "a delivery in {tenant}'s sink belongs to another tenant: {line}");
            v["idempotency_key"].as_str().unwrap().to_string()
        })
        .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_added_and_removed_while_events_flow_lose_and_misattribute_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = crate::policy::run_policy_code(|| App::build(&config(dir.path(), &["alpha"]))).unwrap();
    let registry = app.tenants.clone();

    // alpha sends all along, from its own task.
    let stop = Arc::new(AtomicBool::new(false));
    let flow = {
        let (app, registry, stop) = (app.clone(), registry.clone(), stop.clone());
        tokio::spawn(async move {
            let mut sent = BTreeSet::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("a-{n}");
                assert!(send(&app, &registry, "token-alpha", &key).await, "alpha's token stopped working");
                sent.insert(key);
                n += 1;
                tokio::task::yield_now().await;
            }
            sent
        })
    };

    // beta joins while alpha's events flow, sends, and is removed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!send(&app, &registry, "token-beta", "b-early").await, "beta's token worked before beta existed");
    let beta = config(dir.path(), &["beta"]).tenants.remove(0);
    let added = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || app.add_tenant(&beta, Some("token-beta"), "test")).await.unwrap().unwrap()
    };
    assert_eq!(added.id.as_str(), "beta");
    assert_eq!(registry.len(), 2);
    let mut beta_sent = BTreeSet::new();
    for n in 0..200 {
        let key = format!("b-{n}");
        assert!(send(&app, &registry, "token-beta", &key).await);
        beta_sent.insert(key);
    }
    let again = config(dir.path(), &["beta"]).tenants.remove(0);
    let e = app.add_tenant(&again, Some("token-beta-2"), "test").unwrap_err().to_string();
    assert!(e.contains("tenant `beta` exists already"), "{e}");
    app.remove_tenant("beta").unwrap();
    assert!(!send(&app, &registry, "token-beta", "b-late").await, "a removed tenant's token still works");
    assert!(registry.get("beta").is_none());
    assert!(app.remove_tenant("beta").unwrap_err().to_string().contains("no tenant `beta`"));

    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::SeqCst);
    let alpha_sent = flow.await.unwrap();
    assert!(alpha_sent.len() > 10, "alpha sent only {} events", alpha_sent.len());

    // Everything accepted is delivered, each to its own tenant's sink: beta's too,
    // after its removal.
    wait_for("every delivery", || {
        delivered(dir.path(), "alpha").len() == alpha_sent.len()
            && delivered(dir.path(), "beta").len() == beta_sent.len()
    })
    .await;
    assert_eq!(delivered(dir.path(), "alpha"), alpha_sent);
    assert_eq!(delivered(dir.path(), "beta"), beta_sent);
    wait_for("beta's queue to stop", || app.deliverer.outstanding() == 0).await;
    assert_eq!(app.spool.depths().await.unwrap().pending, 0);
    assert_eq!(app.spool.depths().await.unwrap().dead, 0);
}
