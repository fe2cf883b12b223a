//! The admin API: the DLQ (list, show, replay, purge) and, in [`policy`], tenants'
//! live policies. The admin token (`[server] admin_token_env`) sees every tenant; a
//! tenant's own token sees only its own entries and gets 403 on anyone else's. A
//! tenant token reads with the `read-only` (or `manage`) scope and changes (replay,
//! purge, delete) with `manage`.
//!
//! Every handler takes [`ReadCaller`] or [`ManageCaller`] as an extractor before the
//! body: axum runs extractors in order and the body one last, so a request without a
//! valid token gets its 401, and one without the scope its 403, before a byte of its
//! body is read.

mod audit;
pub mod cli;
pub mod manage_cli;
pub mod openapi;
pub mod policy;
mod replay;
mod resources;
mod routes_api;
mod tenants_api;
mod tokens_api;

use crate::api_error::{ApiError, ErrorBody};
use crate::clock::now_ms;
use crate::ingest::Pipeline;
use crate::policy::PolicyEngine;
use crate::store::{DlqEntry, DlqFilter, DlqPage, Store};
use crate::tenants::control::ControlPlane;
use crate::tenants::{Caller, ManageCaller, ReadCaller, TenantRegistry};
use axum::extract::{FromRef, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Entries one `GET /admin/v1/dlq` answers without a `limit`.
pub const DEFAULT_PAGE: usize = 100;
/// Most entries one page may hold, and most `ids` one request may name.
pub const MAX_PAGE: usize = 1000;

/// What the admin handlers use.
#[derive(Clone)]
pub struct AdminState {
    pub tenants: Arc<TenantRegistry>,
    pub pipeline: Arc<Pipeline>,
    pub spool: Arc<dyn Store>,
    pub engine: PolicyEngine,
    pub control: Arc<ControlPlane>,
}

impl AdminState {
    fn spool(&self) -> &dyn Store {
        &*self.spool
    }
}

impl FromRef<AdminState> for Arc<TenantRegistry> {
    fn from_ref(state: &AdminState) -> Self {
        state.tenants.clone()
    }
}

/// The admin routes.
pub fn router() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/dlq", get(list))
        .route("/admin/v1/dlq/replay", post(replay::replay))
        .route("/admin/v1/dlq/purge", post(purge))
        .route("/admin/v1/dlq/{id}", get(show).delete(delete))
        .route("/admin/v1/openapi.json", get(openapi::openapi_json))
        .route("/admin/v1/audit", get(audit::list_audit))
        .route("/admin/v1/policies", post(tenants_api::upload_policy))
        .route("/admin/v1/tenants", post(tenants_api::create_tenant))
        .route(
            "/admin/v1/tenants/{id}",
            get(tenants_api::get_tenant).put(tenants_api::replace_tenant).delete(tenants_api::delete_tenant),
        )
        .route("/admin/v1/tenants/{id}/routes", get(routes_api::list_routes).post(routes_api::create_route))
        .route(
            "/admin/v1/tenants/{id}/routes/{name}",
            get(routes_api::get_route).put(routes_api::replace_route).delete(routes_api::delete_route),
        )
        .route("/admin/v1/tenants/{id}/routes/{name}/secrets", get(routes_api::list_secrets))
        .route("/admin/v1/tenants/{id}/routes/{name}/secrets/rotate", post(routes_api::rotate_secret))
        .route("/admin/v1/tenants/{id}/tokens", get(tokens_api::list_tokens).post(tokens_api::create_token))
        .route("/admin/v1/tenants/{id}/tokens/{token_id}", axum::routing::delete(tokens_api::revoke_token))
        .merge(policy::router())
}

/// The tenant filter a caller may use: its own for a tenant (403 when it asks for
/// another), anything for the admin.
fn scope(caller: &Caller, asked: Option<String>) -> Result<Option<String>, ApiError> {
    match caller.tenant() {
        None => Ok(asked),
        Some(t) => {
            let own = t.id.to_string();
            match asked {
                Some(t) if t != own => Err(forbidden(&t)),
                _ => Ok(Some(own)),
            }
        }
    }
}

fn may_see(caller: &Caller, entry: &DlqEntry) -> Result<(), ApiError> {
    match caller.may_see_tenant(&entry.tenant) {
        true => Ok(()),
        false => Err(ApiError::forbidden(format!("DLQ entry {} belongs to another tenant", entry.id))),
    }
}

fn forbidden(tenant: &str) -> ApiError {
    ApiError::forbidden(format!("this token may not see tenant `{tenant}`'s entries"))
}

fn spool_error(e: crate::store::StoreError) -> ApiError {
    ApiError::unavailable(e.to_string())
}

/// Filters as query parameters or a JSON body.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct FilterParams {
    /// Only this tenant's entries (a tenant token sees only its own anyway).
    tenant: Option<String>,
    /// Only this route's entries.
    route: Option<String>,
    /// A duration back from now, like `1h`.
    since: Option<String>,
    /// Entries per page (default 100, at most 1000); for `all` selections, the most entries handled.
    limit: Option<usize>,
    /// Only entries with a higher id: the `next` cursor of the previous page.
    after: Option<i64>,
}

impl FilterParams {
    fn into_filter(self, caller: &Caller) -> Result<DlqFilter, ApiError> {
        let since_ms = match &self.since {
            Some(s) => {
                let d = humantime::parse_duration(s).map_err(|e| {
                    ApiError::bad_request(
                        "invalid_filter",
                        format!("`since`: `{s}` is not a duration like \"1h\": {e}"),
                    )
                })?;
                Some(now_ms().saturating_sub(d.as_millis() as u64))
            }
            None => None,
        };
        Ok(DlqFilter {
            tenant: scope(caller, self.tenant)?,
            route: self.route,
            since_ms,
            ids: None,
            after: self.after,
            through: None,
            limit: self.limit,
        })
    }
}

fn bad_limit(message: String) -> ApiError {
    ApiError::bad_request("invalid_filter", message)
}

/// The DLQ, a page at a time, oldest first; follow `next` (as `after`) for the next page.
#[utoipa::path(get, path = "/admin/v1/dlq", operation_id = "list_dlq", tag = "dlq", params(FilterParams),
    responses((status = 200, body = DlqPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
async fn list(
    State(app): State<AdminState>,
    ReadCaller(caller): ReadCaller,
    Query(params): Query<FilterParams>,
) -> Result<Json<DlqPage>, ApiError> {
    let limit = match params.limit {
        None => DEFAULT_PAGE,
        Some(0) => return Err(bad_limit("`limit` must be at least 1".into())),
        Some(l) if l > MAX_PAGE => {
            return Err(bad_limit(format!("`limit`: at most {MAX_PAGE} entries per page, got {l}; follow `next`")))
        }
        Some(l) => l,
    };
    let filter = params.into_filter(&caller)?;
    let page = app.spool().dlq_page(&filter, limit).await.map_err(spool_error)?;
    Ok(Json(page))
}

/// One DLQ entry: the original event (where kept), the last payload, attempts and the last error.
#[utoipa::path(get, path = "/admin/v1/dlq/{id}", operation_id = "get_dlq_entry", tag = "dlq", params(("id" = i64, Path, description = "the entry's id")),
    responses((status = 200, body = DlqEntry), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn show(
    State(app): State<AdminState>,
    ReadCaller(caller): ReadCaller,
    Path(id): Path<i64>,
) -> Result<Json<DlqEntry>, ApiError> {
    let entry = app.spool().dlq_get(id).await.map_err(spool_error)?.ok_or_else(|| not_found(id))?;
    may_see(&caller, &entry)?;
    Ok(Json(entry))
}

/// Deletes one DLQ entry.
#[utoipa::path(delete, path = "/admin/v1/dlq/{id}", operation_id = "delete_dlq_entry", tag = "dlq", params(("id" = i64, Path, description = "the entry's id")),
    responses((status = 200, body = Purged), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn delete(
    State(app): State<AdminState>,
    ManageCaller(caller): ManageCaller,
    Path(id): Path<i64>,
) -> Result<Json<Purged>, ApiError> {
    let entry = app.spool().dlq_get(id).await.map_err(spool_error)?.ok_or_else(|| not_found(id))?;
    may_see(&caller, &entry)?;
    // The delete itself carries the tenant: it can only remove this tenant's entry.
    let filter = DlqFilter { ids: Some(vec![id]), tenant: scope(&caller, None)?, ..DlqFilter::default() };
    let n = app.spool().dlq_purge(&filter).await.map_err(spool_error)?;
    if n == 0 {
        return Err(not_found(id));
    }
    Ok(Json(Purged { purged: n }))
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found("not_found", format!("no DLQ entry {id}"))
}

/// How many entries were deleted.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Purged {
    pub purged: usize,
}

/// Which entries: `ids`, or `all` with the filters.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Selection {
    /// Entries by id (at most 1000).
    #[serde(default)]
    ids: Vec<i64>,
    /// Every entry the filters match.
    #[serde(default)]
    all: bool,
    #[serde(flatten)]
    filter: FilterParams,
}

/// What a selection resolved to.
pub(super) enum Resolved {
    /// Named entries, each checked: the caller may touch it. `tenant` is the caller's
    /// scope, which every write on them carries.
    Ids { entries: Vec<DlqEntry>, tenant: Option<String> },
    /// Every entry the filter (already scoped to the caller) matches.
    All(DlqFilter),
}

/// Resolves a selection, checking the caller may touch each named entry.
pub(super) async fn resolve(app: &AdminState, caller: &Caller, selection: Selection) -> Result<Resolved, ApiError> {
    if selection.ids.is_empty() && !selection.all {
        return Err(ApiError::bad_request(
            "invalid_selection",
            "name entries with `ids`, or pass `all: true` with optional filters",
        ));
    }
    if selection.ids.len() > MAX_PAGE {
        return Err(ApiError::bad_request(
            "invalid_selection",
            format!(
                "`ids`: at most {MAX_PAGE} per request, got {}; pass `all: true` with filters",
                selection.ids.len()
            ),
        ));
    }
    let mut filter = selection.filter.into_filter(caller)?;
    if selection.ids.is_empty() {
        return Ok(Resolved::All(filter));
    }
    // Ids are checked one by one so a tenant learns that another's id is off limits.
    let scoped_tenant = filter.tenant.take();
    filter.ids = Some(selection.ids.clone());
    filter.limit = None;
    let mut found: HashMap<i64, DlqEntry> =
        app.spool().dlq_list(&filter).await.map_err(spool_error)?.into_iter().map(|e| (e.id, e)).collect();
    let mut entries = Vec::with_capacity(found.len());
    for id in &selection.ids {
        let Some(entry) = found.remove(id) else {
            if entries.iter().any(|e: &DlqEntry| e.id == *id) {
                continue; // named twice
            }
            return Err(not_found(*id));
        };
        may_see(caller, &entry)?;
        if let Some(t) = &scoped_tenant {
            if caller.is_admin() && entry.tenant != *t {
                return Err(not_found(*id));
            }
        }
        entries.push(entry);
    }
    Ok(Resolved::Ids { entries, tenant: scoped_tenant })
}

/// Deletes the selected DLQ entries.
#[utoipa::path(post, path = "/admin/v1/dlq/purge", operation_id = "purge_dlq", tag = "dlq", request_body = Selection,
    responses((status = 200, body = Purged), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn purge(
    State(app): State<AdminState>,
    ManageCaller(caller): ManageCaller,
    Json(selection): Json<Selection>,
) -> Result<Json<Purged>, ApiError> {
    let filter = match resolve(&app, &caller, selection).await? {
        Resolved::Ids { entries, tenant } => {
            DlqFilter { ids: Some(entries.iter().map(|e| e.id).collect()), tenant, ..DlqFilter::default() }
        }
        Resolved::All(filter) => filter,
    };
    let n = app.spool().dlq_purge(&filter).await.map_err(spool_error)?;
    Ok(Json(Purged { purged: n }))
}
