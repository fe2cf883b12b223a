//! Starts the daemon: builds the [`App`], resumes the spool, serves ingest, admin,
//! metrics and health on one listener (metrics and readiness on a second one with
//! `server.metrics_listen`), and drains on SIGTERM / SIGINT.

use crate::api_error::ApiError;
use crate::app::App;
use crate::config::Config;
use crate::host_guard;
use crate::telemetry::{self, metrics_names as m};
use anyhow::anyhow;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Every HTTP route the ingest listener serves. With `server.metrics_listen`, `/metrics`
/// and `/readyz` move to [`ops_router`].
pub fn router(app: Arc<App>) -> Router {
    let router = Router::new().route("/healthz", get(healthz));
    let router = match app.server_config().metrics_listen {
        None => router.route("/readyz", get(readyz)).route("/metrics", get(metrics)),
        Some(_) => router.route("/readyz", get(moved)).route("/metrics", get(moved)),
    };
    let router = router.merge(crate::admin::router()).merge(crate::ingest::router());
    guard_host(router, &app).with_state(app)
}

/// `/metrics`, `/readyz` and `/healthz`, for the `server.metrics_listen` listener.
pub fn ops_router(app: Arc<App>) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "this listener serves /metrics, /readyz and /healthz")
        });
    guard_host(router, &app).with_state(app)
}

/// Without a token, only requests addressed to a loopback name are answered
/// ([`crate::host_guard`]).
fn guard_host(router: Router<Arc<App>>, app: &App) -> Router<Arc<App>> {
    let server = app.server_config();
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
    ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
}

/// The bearer token of a request, if it sends one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready when the spool answers and hostd is not draining.
/// The depths only to the metrics token when `server.metrics_token_env` is set.
async fn readyz(State(app): State<Arc<App>>, headers: HeaderMap) -> impl IntoResponse {
    if app.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "draining"})));
    }
    match app.spool().depths().await {
        Ok(_) if !app.may_read_metrics(bearer(&headers)) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok((pending, dead)) => {
            (StatusCode::OK, Json(json!({"status": "ready", "spool_depth": pending, "dlq_depth": dead})))
        }
        Err(e) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "spool unavailable", "error": e.to_string()})))
        }
    }
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !app.may_read_metrics(bearer(&headers)) {
        let message = "GET /metrics needs `Authorization: Bearer <metrics token>` (server.metrics_token_env)";
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    }
    if let Ok((pending, dead)) = app.spool().depths().await {
        metrics::gauge!(m::SPOOL_DEPTH).set(pending as f64);
        metrics::gauge!(m::DLQ_DEPTH).set(dead as f64);
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
    let app = Arc::new(crate::app::run_policy_code(|| App::build(&config))?.with_config_path(config_path));
    tracing::info!("loaded {} tenant policies in {:?}", app.tenants().len(), started.elapsed());
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow!("server.listen: cannot bind {listen}: {e}"))?;
    let local = listener.local_addr()?;
    for t in app.tenants() {
        tracing::info!(tenant = &*t.id, policy_version = &**t.policy().version(), "tenant loaded");
    }
    let resumed = app.resume().await?;
    if resumed > 0 {
        tracing::info!("resumed {resumed} pending deliveries from the spool");
    }
    let window = config.server.dedupe_window;
    let expiry_app = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            expiry_app.spool().expire_keys(window);
        }
    });

    let _watcher = match config.server.watch_policies {
        true => Some(crate::swap::watch_policy_files(app.clone())?),
        false => None,
    };
    tokio::spawn(crate::swap::reload_on_sighup(app.clone()));
    tokio::spawn(crate::swap::evict_idle_instances(app.clone()));

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
    tracing::info!(spool = %app.spool().path().display(), "listening on http://{local}");

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

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
