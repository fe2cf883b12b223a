//! The policy admin API: see and change a tenant's live policy.
//!
//! - `GET  /admin/v1/tenants` — every tenant's active version and statistics;
//! - `GET  /admin/v1/tenants/{id}/policy` — active and previous version (sha256 prefix,
//!   when and how it was loaded), config, limits, call counts, faults by kind, p50/p99
//!   `evaluate` time;
//! - `PUT  /admin/v1/tenants/{id}/policy` — body: the component (`application/wasm`);
//!   optional header `Hostd-Policy-Config: <json>`. Compiled and checked off the hot
//!   path, then swapped in; 422 with the reason if the check fails (the old version
//!   keeps serving);
//! - `POST /admin/v1/tenants/{id}/policy/rollback` — back to the previous version.
//!
//! Reading is open to the admin token and to the tenant's own token (`read-only` or
//! `manage`). Changing needs the admin token, or a `manage` token of a tenant defined
//! through the API (a config-file tenant's policy is the file's). Both are checked
//! before the body is read: the component is read only for a caller who may change
//! it, and only up to [`MAX_COMPONENT_BYTES`].

use super::AdminState;
use crate::api_error::{ApiError, ErrorBody};
use crate::policy::live::Swapped;
use crate::policy::SwapError;
use crate::tenants::{Caller, DefinedBy, ManageCaller, ReadCaller, Tenant};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

/// Largest component accepted by PUT (a componentize-py policy is ~18 MB).
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;
pub const CONFIG_HEADER: &str = "hostd-policy-config";

pub fn router() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/tenants", get(list))
        .route("/admin/v1/tenants/{id}/policy", get(show).put(replace))
        .route("/admin/v1/tenants/{id}/policy/rollback", post(rollback))
}

impl From<SwapError> for ApiError {
    fn from(e: SwapError) -> Self {
        match e {
            SwapError::Refused(_) => ApiError::unprocessable("policy_refused", e.to_string()),
            SwapError::NoPreviousVersion => ApiError::conflict("no_previous_version", e.to_string()),
            SwapError::Loader(_) => {
                ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "policy_loader_failed", e.to_string())
            }
        }
    }
}

/// The tenant `id`, if the caller may see it.
fn visible_tenant(app: &AdminState, caller: &Caller, id: &str) -> Result<Arc<Tenant>, ApiError> {
    let tenant =
        app.tenants.get(id).ok_or_else(|| ApiError::not_found("unknown_tenant", format!("no tenant `{id}`")))?;
    match caller.may_see_tenant(id) {
        true => Ok(tenant),
        false => Err(ApiError::forbidden(format!("a tenant token can only see its own tenant, not `{id}`"))),
    }
}

/// A `manage` token may change its tenant's policy only when the tenant is defined
/// through the API; the admin always may.
fn may_change_policy(caller: &Caller, tenant: &Tenant) -> Result<(), ApiError> {
    match (caller.is_admin(), tenant.defined_by) {
        (true, _) | (false, DefinedBy::Api) => Ok(()),
        (false, DefinedBy::ConfigFile) => Err(ApiError::forbidden(format!(
            "tenant `{}` is defined in the config file: changing its policy over the API needs the admin token \
             (or change the file)",
            tenant.id
        ))),
    }
}

fn status(tenant: &Tenant) -> Value {
    let mut v = tenant.policy.live.status();
    v["tenant"] = json!(&*tenant.id);
    v["file"] = json!(tenant.policy.source().path.display().to_string());
    v
}

/// A page of `GET /admin/v1/tenants`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantPage {
    /// Tenants whose id sorts after this one: the `next` of the previous page.
    pub after: Option<String>,
    /// Tenants per page (default and most: 1000).
    pub limit: Option<usize>,
}

/// Every tenant the caller may see, in id order, with its active policy version and
/// statistics; `next` is the `after` of the following page (`null` on the last).
#[utoipa::path(get, path = "/admin/v1/tenants", operation_id = "list_tenant_policies", tag = "policies", params(TenantPage),
    responses((status = 200, description = "`{\"tenants\": [status, ...], \"next\": id | null}`, each as GET /admin/v1/tenants/{id}/policy", body = Object),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list(
    State(app): State<AdminState>,
    ReadCaller(caller): ReadCaller,
    axum::extract::Query(page): axum::extract::Query<TenantPage>,
) -> Result<Json<Value>, ApiError> {
    let limit = page.limit.unwrap_or(super::MAX_PAGE);
    if limit == 0 || limit > super::MAX_PAGE {
        return Err(ApiError::bad_request("invalid_filter", format!("`limit`: 1 to {}", super::MAX_PAGE)));
    }
    let visible: Vec<_> = app
        .tenants
        .all()
        .into_iter()
        .filter(|t| caller.may_see_tenant(&t.id))
        .filter(|t| page.after.as_deref().is_none_or(|a| t.id.as_str() > a))
        .take(limit + 1)
        .collect();
    let next = (visible.len() > limit).then(|| visible[limit - 1].id.to_string());
    let tenants: Vec<Value> = visible.iter().take(limit).map(|t| status(t)).collect();
    Ok(Json(json!({"tenants": tenants, "next": next})))
}

/// A tenant's active and previous policy version (sha256 prefix, when and how loaded),
/// config, limits, call counts, faults by kind and p50/p99 `evaluate` time.
#[utoipa::path(get, path = "/admin/v1/tenants/{id}/policy", operation_id = "get_policy", tag = "policies",
    params(("id" = String, Path, description = "the tenant's id")),
    responses((status = 200, description = "the tenant's live policy status", body = Object),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show(
    State(app): State<AdminState>,
    ReadCaller(caller): ReadCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = visible_tenant(&app, &caller, &id)?;
    Ok(Json(status(&tenant)))
}

/// Replaces a tenant's policy: the body is the component; it is compiled and checked
/// (exports, `configure`, the tenant's `policy_tests`) off the hot path, then swapped in.
/// On 422 the old version keeps serving. Admin token, or a `manage` token of an API tenant.
#[utoipa::path(put, path = "/admin/v1/tenants/{id}/policy", operation_id = "replace_policy", tag = "policies",
    params(("id" = String, Path, description = "the tenant's id"),
           ("Hostd-Policy-Config" = Option<String>, Header, description = "the policy config, a JSON object (else the current one)")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "the policy component, at most 64 MiB"),
    responses((status = 200, description = "the swap: `{tenant, unchanged, active, previous}`", body = Object),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn replace(
    State(app): State<AdminState>,
    ManageCaller(caller): ManageCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let tenant = visible_tenant(&app, &caller, &id)?;
    may_change_policy(&caller, &tenant)?;
    let body = read_component(body, &headers).await?;
    if body.is_empty() {
        return Err(ApiError::bad_request("empty_body", "the request body must be the policy component (.wasm bytes)"));
    }
    let config = match headers.get(CONFIG_HEADER) {
        None => None,
        Some(v) => {
            let text = v.to_str().map_err(|_| bad_config("is not visible ASCII"))?;
            let value: Value = serde_json::from_str(text).map_err(|e| bad_config(&format!("is not JSON: {e}")))?;
            if !value.is_object() {
                return Err(bad_config("must be a JSON object"));
            }
            Some(value.to_string())
        }
    };
    let swapped = tenant.policy.swap(&app.engine, &tenant.id, Some(body), config, "api").await?;
    Ok(Json(swap_json(&tenant, &swapped)))
}

/// The component, read only now that the caller may change it, and at most
/// [`MAX_COMPONENT_BYTES`] of it: 413 past that (at once when `Content-Length` says so).
pub(super) async fn read_component(mut body: Body, headers: &HeaderMap) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt;
    let too_large = || {
        ApiError::too_large(
            "payload_too_large",
            format!("the component exceeds the limit of {} MiB", MAX_COMPONENT_BYTES >> 20),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_COMPONENT_BYTES as u64) {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request("body_read_failed", format!("cannot read the component: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > MAX_COMPONENT_BYTES {
            return Err(too_large());
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf)
}

fn bad_config(what: &str) -> ApiError {
    ApiError::bad_request("bad_policy_config", format!("header `Hostd-Policy-Config` {what}"))
}

/// Makes the tenant's previous policy version active again. Admin token, or a `manage`
/// token of an API tenant.
#[utoipa::path(post, path = "/admin/v1/tenants/{id}/policy/rollback", operation_id = "rollback_policy", tag = "policies",
    params(("id" = String, Path, description = "the tenant's id")),
    responses((status = 200, description = "the swap: `{tenant, unchanged, active, previous}`", body = Object),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn rollback(
    State(app): State<AdminState>,
    ManageCaller(caller): ManageCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = visible_tenant(&app, &caller, &id)?;
    may_change_policy(&caller, &tenant)?;
    let swapped = tenant.policy.rollback(&tenant.id)?;
    Ok(Json(swap_json(&tenant, &swapped)))
}

fn swap_json(tenant: &Tenant, s: &Swapped) -> Value {
    json!({
        "tenant": &*tenant.id,
        "unchanged": s.unchanged,
        "active": s.active.to_json(),
        "previous": s.previous.as_ref().map(|p| p.to_json()),
    })
}
