//! The admin API: the DLQ (list, show, replay, purge) and, in [`policy`], tenants'
//! live policies. The admin token
//! (`[server] admin_token_env`) sees every tenant; a tenant's own token sees only its
//! own entries and gets 403 on anyone else's.
//!
//! Every handler takes [`Caller`] as its first extractor after the state: axum runs
//! extractors in order and the body one last, so a request without a valid token gets
//! its 401 before a byte of its body is read.

pub mod cli;
pub mod policy;

use crate::api_error::ApiError;
use crate::app::{evaluate_all, App};
use crate::delivery::clock::now_ms;
use crate::ingest::event::parse_event;
use crate::spool::{DlqEntry, DlqFilter};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Who is calling the admin API. As an extractor it authenticates the request from its
/// headers alone (401 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Admin,
    Tenant(usize),
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        caller(app, &parts.headers)
    }
}

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/v1/dlq", get(list))
        .route("/admin/v1/dlq/replay", post(replay))
        .route("/admin/v1/dlq/purge", post(purge))
        .route("/admin/v1/dlq/{id}", get(show).delete(delete))
        .merge(policy::router())
}

fn caller(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer <admin or tenant token>` header"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim()))
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    if app.is_admin_token(token) {
        return Ok(Caller::Admin);
    }
    app.tokens()
        .find(token)
        .map(Caller::Tenant)
        .ok_or_else(|| unauthorized("the bearer token is neither the admin token nor a tenant's"))
}

impl Caller {
    /// The tenant filter a caller may use: its own for a tenant (403 when it asks
    /// for another), anything for the admin.
    fn scope(self, app: &App, asked: Option<String>) -> Result<Option<String>, ApiError> {
        match self {
            Caller::Admin => Ok(asked),
            Caller::Tenant(i) => {
                let own = app.tenant(i).id.to_string();
                match asked {
                    Some(t) if t != own => Err(forbidden(&t)),
                    _ => Ok(Some(own)),
                }
            }
        }
    }

    fn may_see(self, app: &App, entry: &DlqEntry) -> Result<(), ApiError> {
        match self {
            Caller::Tenant(i) if *app.tenant(i).id != *entry.tenant => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("DLQ entry {} belongs to another tenant", entry.id),
            )),
            _ => Ok(()),
        }
    }
}

fn forbidden(tenant: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("this token may not see tenant `{tenant}`'s entries"))
}

fn spool_error(e: crate::spool::SpoolError) -> ApiError {
    ApiError::unavailable(e.to_string())
}

/// Filters as query parameters or a JSON body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterParams {
    tenant: Option<String>,
    route: Option<String>,
    /// A duration back from now, like `1h`.
    since: Option<String>,
    limit: Option<usize>,
}

impl FilterParams {
    fn into_filter(self, caller: Caller, app: &App) -> Result<DlqFilter, ApiError> {
        let since_ms = match &self.since {
            Some(s) => {
                let d = humantime::parse_duration(s).map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_filter",
                        format!("`since`: `{s}` is not a duration like \"1h\": {e}"),
                    )
                })?;
                Some(now_ms().saturating_sub(d.as_millis() as u64))
            }
            None => None,
        };
        Ok(DlqFilter {
            tenant: caller.scope(app, self.tenant)?,
            route: self.route,
            since_ms,
            ids: None,
            limit: self.limit,
        })
    }
}

async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(params): Query<FilterParams>,
) -> Result<Json<Value>, ApiError> {
    let filter = params.into_filter(caller, &app)?;
    let entries = app.spool().dlq_list(&filter).await.map_err(spool_error)?;
    Ok(Json(json!({"entries": entries})))
}

async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> Result<Json<DlqEntry>, ApiError> {
    let entry = app.spool().dlq_get(id).await.map_err(spool_error)?.ok_or_else(|| not_found(id))?;
    caller.may_see(&app, &entry)?;
    Ok(Json(entry))
}

async fn delete(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let entry = app.spool().dlq_get(id).await.map_err(spool_error)?.ok_or_else(|| not_found(id))?;
    caller.may_see(&app, &entry)?;
    let n =
        app.spool().dlq_purge(&DlqFilter { ids: Some(vec![id]), ..DlqFilter::default() }).await.map_err(spool_error)?;
    Ok(Json(json!({"purged": n})))
}

fn not_found(id: i64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no DLQ entry {id}"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ReplayMode {
    /// Re-send the last payload as it was.
    AsIs,
    /// Re-run the tenant's current policy on the original event.
    ThroughPolicy,
}

/// Which entries: `ids`, or `all` with the filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    #[serde(default)]
    ids: Vec<i64>,
    #[serde(default)]
    all: bool,
    #[serde(flatten)]
    filter: FilterParams,
}

#[derive(Debug, Deserialize)]
struct ReplayRequest {
    mode: Option<ReplayMode>,
    #[serde(flatten)]
    selection: Selection,
}

/// The entries a selection names, after checking the caller may touch each.
async fn select(app: &App, caller: Caller, selection: Selection) -> Result<Vec<DlqEntry>, ApiError> {
    if selection.ids.is_empty() && !selection.all {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_selection",
            "name entries with `ids`, or pass `all: true` with optional filters",
        ));
    }
    let mut filter = selection.filter.into_filter(caller, app)?;
    if !selection.ids.is_empty() {
        // Ids are checked one by one so a tenant learns that another's id is off limits.
        let scoped_tenant = filter.tenant.take();
        filter.ids = Some(selection.ids.clone());
        let entries = app.spool().dlq_list(&filter).await.map_err(spool_error)?;
        for id in &selection.ids {
            let entry = entries.iter().find(|e| e.id == *id).ok_or_else(|| not_found(*id))?;
            caller.may_see(app, entry)?;
            if let Some(t) = &scoped_tenant {
                if caller == Caller::Admin && entry.tenant != *t {
                    return Err(not_found(*id));
                }
            }
        }
        return Ok(entries);
    }
    app.spool().dlq_list(&filter).await.map_err(spool_error)
}

async fn replay(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(req): Json<ReplayRequest>,
) -> Result<Json<Value>, ApiError> {
    let mode = req.mode.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_replay",
            "say `mode`: \"as-is\" (resend the last payload) or \"through-policy\" (re-run the current policy)",
        )
    })?;
    let entries = select(&app, caller, req.selection).await?;
    let mut replayed = 0usize;
    let mut skipped = Vec::new();
    match mode {
        ReplayMode::AsIs => {
            let (deliveries, left) =
                app.spool().dlq_requeue(entries.iter().map(|e| e.id).collect()).await.map_err(spool_error)?;
            replayed = deliveries.len();
            skipped.extend(
                left.into_iter().map(
                    |id| json!({"id": id, "reason": "policy fault: no payload to resend; replay it through-policy"}),
                ),
            );
            app.dispatch(deliveries).await;
        }
        ReplayMode::ThroughPolicy => {
            for entry in entries {
                match replay_through_policy(&app, &entry).await {
                    Ok(()) => replayed += 1,
                    Err(reason) => skipped.push(json!({"id": entry.id, "reason": reason})),
                }
            }
        }
    }
    Ok(Json(json!({"replayed": replayed, "skipped": skipped})))
}

/// Re-runs the tenant's current policy on the entry's original event and replaces the
/// entry with the result (deliveries, a new DLQ entry, or nothing).
async fn replay_through_policy(app: &App, entry: &DlqEntry) -> Result<(), String> {
    let index =
        app.tenant_index(&entry.tenant).ok_or_else(|| format!("tenant `{}` is no longer configured", entry.tenant))?;
    let tenant = app.tenant(index);
    let mut event = parse_event(&entry.event, &entry.tenant)
        .map_err(|e| format!("the stored event is invalid: {}", e.message()))?;
    event.idempotency_key = entry.idempotency_key.clone();
    let policy = tenant.policy();
    let outcome = {
        let _slot = policy.evaluation_slot().await;
        evaluate_all(&policy, std::slice::from_ref(&event)).pop().expect("one outcome per event")
    };
    let item = app.shape(tenant, &policy, event, outcome);
    let deliveries = app.spool().dlq_replace(entry.id, tenant.id.clone(), item).await.map_err(|e| e.to_string())?;
    app.dispatch(deliveries).await;
    Ok(())
}

async fn purge(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(selection): Json<Selection>,
) -> Result<Json<Value>, ApiError> {
    let entries = select(&app, caller, selection).await?;
    let ids = entries.iter().map(|e| e.id).collect();
    let n = app.spool().dlq_purge(&DlqFilter { ids: Some(ids), ..DlqFilter::default() }).await.map_err(spool_error)?;
    Ok(Json(json!({"purged": n})))
}
