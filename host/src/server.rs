//! Starts the daemon: builds the [`App`], resumes the spool, serves ingest, admin,
//! metrics and health on one listener (metrics and readiness on a second one with
//! `server.metrics_listen`), and drains on SIGTERM / SIGINT.

use crate::admin::AdminState;
use crate::api_error::ApiError;
use crate::app::App;
use crate::config::Config;
use crate::host_guard;
use crate::ingest::IngestState;
use crate::telemetry::{self, metrics_names as m};
use anyhow::anyhow;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Every HTTP route the ingest listener serves. With `server.metrics_listen`, `/metrics`
/// and `/readyz` move to [`ops_router`].
pub fn router(app: App) -> Router {
    let router = Router::new().route("/healthz", get(healthz));
    let router = match app.server.metrics_listen {
        None => router.route("/readyz", get(readyz)).route("/metrics", get(metrics)),
        Some(_) => router.route("/readyz", get(moved)).route("/metrics", get(moved)),
    };
    let admin = crate::admin::router().with_state(AdminState::from_ref(&app));
    let ingest = crate::ingest::router().with_state(IngestState::from_ref(&app));
    let router = router.merge(admin).merge(ingest);
    guard_host(router, &app).with_state(app)
}

/// `/metrics`, `/readyz` and `/healthz`, for the `server.metrics_listen` listener.
pub fn ops_router(app: App) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("not_found", "this listener serves /metrics, /readyz and /healthz") });
    guard_host(router, &app).with_state(app)
}

/// Without a token, only requests addressed to a loopback name are answered
/// ([`crate::host_guard`]).
fn guard_host(router: Router<App>, app: &App) -> Router<App> {
    let server = &app.server;
    if !server.allow_unauthenticated {
        return router;
    }
    let listening = std::iter::once(server.listen.ip()).chain(server.metrics_listen.map(|a| a.ip()));
    let allowed = host_guard::AllowedHosts::new(listening);
    router.layer(axum::middleware::from_fn_with_state(allowed, host_guard::check_host))
}

/// `/metrics` and `/readyz` on the ingest listener when they are served elsewhere.
async fn moved(uri: Uri) -> ApiError {
    let message = format!("{} is served on the metrics listener (server.metrics_listen), not here", uri.path());
    ApiError::not_found("not_found", message)
}

/// The bearer token of a request, if it sends a well-formed one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    crate::tenants::tokens::bearer(headers).ok().flatten()
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready when hostd is not draining, the spool's writer commits (its last batch did,
/// or a probe write does now) and its reader counts. The depths are shown only to the
/// metrics token when `server.metrics_token_env` is set.
async fn readyz(State(app): State<App>, headers: HeaderMap) -> impl IntoResponse {
    let unavailable = |status: &str, error: String| {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": status, "error": error})))
    };
    if app.pipeline.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "draining"})));
    }
    if let Some(error) = app.spool.write_failure().await {
        return unavailable("spool not writing", error);
    }
    let sample = match app.spool.last_depths() {
        Some(s) => s.depths,
        None => app.spool.sample_depths().await.map_err(|e| e.message),
    };
    match sample {
        Ok(_) if !app.tenants.may_read_metrics(bearer(&headers)) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(d) => (StatusCode::OK, Json(json!({"status": "ready", "spool_depth": d.pending, "dlq_depth": d.dead}))),
        Err(e) => unavailable("spool unavailable", e),
    }
}

/// The Prometheus text. The depth gauges come from the spool's periodic count
/// (`sample_depths`), not from a count per scrape.
async fn metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    if !app.tenants.may_read_metrics(bearer(&headers)) {
        let message = "GET /metrics needs `Authorization: Bearer <metrics token>` (server.metrics_token_env)";
        return ApiError::unauthorized(message).into_response();
    }
    match telemetry::prometheus() {
        Some(handle) => (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], handle.render()),
        None => {
            (StatusCode::SERVICE_UNAVAILABLE, [("content-type", "text/plain")], "metrics are disabled\n".to_string())
        }
    }
    .into_response()
}

/// Runs until SIGINT / SIGTERM, then drains.
pub async fn serve(config: Config) -> crate::Result<()> {
    serve_with(config, None).await
}

/// [`serve`], reloading policies from `config_path` on SIGHUP.
pub async fn serve_with(config: Config, config_path: Option<std::path::PathBuf>) -> crate::Result<()> {
    telemetry::prometheus();
    let listen = config.server.listen;
    if config.server.allow_unauthenticated {
        tracing::warn!("no token configured: accepting unauthenticated requests on the loopback listener {listen}");
    }
    let drain_timeout = config.server.drain_timeout;
    // Loading runs each policy's `configure`, which may write to stdout: see run_policy_code.
    let started = Instant::now();
    let app = crate::policy::run_policy_code(|| App::build(&config))?.with_config_path(config_path);
    tracing::info!("loaded {} tenant policies in {:?}", app.tenants.len(), started.elapsed());
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow!("server.listen: cannot bind {listen}: {e}"))?;
    let local = listener.local_addr()?;
    for t in app.tenants.all() {
        tracing::info!(tenant = &*t.id, policy_version = &**t.current_policy().version(), "tenant loaded");
    }
    // Tenants created through the admin API, after the file's and before the backlog
    // is resumed (their route queues must exist to take it).
    let managed = app.control.load().await?;
    if managed > 0 {
        tracing::info!("loaded {managed} tenants created through the admin API");
    }
    let resumed = app.pipeline.resume().await?;
    if resumed > 0 {
        tracing::info!("resumed {resumed} pending deliveries from the spool");
    }
    tokio::spawn(expire(app.clone(), config.server.dedupe_window, config.server.dlq_retention));
    tokio::spawn(sample_depths(app.clone()));

    let _watcher = match config.server.watch_policies {
        true => Some(crate::swap::watch_policy_files(app.clone())?),
        false => None,
    };
    tokio::spawn(crate::swap::reload_on_sighup(app.clone()));
    tokio::spawn(evict_idle_instances(app.clone()));
    tokio::spawn(expire_signing_secrets(app.clone()));

    let stop = CancellationToken::new();
    if let Some(addr) = config.server.metrics_listen {
        let ops = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow!("server.metrics_listen: cannot bind {addr}: {e}"))?;
        tracing::info!("metrics listener on http://{} (/metrics, /readyz, /healthz)", ops.local_addr()?);
        let ops = axum::serve(ops, ops_router(app.clone())).with_graceful_shutdown(stop.clone().cancelled_owned());
        tokio::spawn(async move { ops.await });
    }
    let server = axum::serve(listener, router(app.clone())).with_graceful_shutdown(stop.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });
    tracing::info!(spool = %app.spool.describe(), "listening on http://{local}");

    shutdown_signal().await;
    let started = Instant::now();
    tracing::info!("shutting down: ingest answers 503, draining deliveries for up to {drain_timeout:?}");
    stop.cancel();
    let left = app.drain().await;
    let rest = drain_timeout.saturating_sub(started.elapsed()) + Duration::from_millis(200);
    let _ = tokio::time::timeout(rest, server).await;
    if left > 0 {
        tracing::warn!("{left} deliveries still in flight at the drain timeout; they stay in the spool");
    }
    tracing::info!("stopped after {:?}", started.elapsed());
    Ok(())
}

/// Every minute: forgets idempotency keys past the dedupe window and deletes DLQ entries
/// past their retention, each in small batches so ingest commits go between them.
async fn expire(app: App, dedupe_window: Duration, dlq_retention: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        if let Err(e) = app.spool.expire_keys(dedupe_window).await {
            tracing::error!("dedupe expiry: {e}");
        }
        match app.spool.expire_dlq(dlq_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("deleted {n} DLQ entries older than server.dlq_retention ({dlq_retention:?})"),
            Err(e) => tracing::error!("DLQ retention: {e}"),
        }
    }
}

/// Shortest time between two counts of the spool's depths.
const DEPTH_SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Sets `hostd_spool_depth` and `hostd_dlq_depth` from counts in the store (on the read
/// connection), so they cannot drift from it. A count that takes long (a large backlog)
/// is taken less often: at most 5 % of the time goes to counting.
async fn sample_depths(app: App) {
    loop {
        let started = Instant::now();
        match app.spool.sample_depths().await {
            Ok(d) => {
                metrics::gauge!(m::SPOOL_DEPTH).set(d.pending as f64);
                metrics::gauge!(m::DLQ_DEPTH).set(d.dead as f64);
            }
            Err(e) => tracing::warn!("cannot count the spool's depths: {e}"),
        }
        tokio::time::sleep(DEPTH_SAMPLE_EVERY.max(started.elapsed() * 20)).await;
    }
}

/// Every second: frees idle policy instances ([`crate::policy::evict::sweep`]) under
/// `server.policy_idle_ttl` and `server.policy_memory_budget`.
async fn evict_idle_instances(app: App) {
    let ttl = app.server.policy_idle_ttl.as_millis() as u64;
    let budget = app.server.policy_memory_budget;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        sweep(&app, ttl, budget);
    }
}

/// One sweep over every tenant; returns the instances freed.
pub fn sweep(app: &App, ttl_ms: u64, budget: u64) -> usize {
    let tenants = app.tenants.all();
    crate::policy::evict::sweep(tenants.iter().map(|t| &t.policy.live), ttl_ms, budget)
}

/// Every 5 s: routes whose previous signing secret's overlap ended stop signing with it.
async fn expire_signing_secrets(app: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        app.control.expire_secrets().await;
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
