//! `/admin/v1/tenants/{id}` and `/admin/v1/policies`: tenants created, replaced and
//! deleted at runtime, and the components their policies name.

use super::resources::{actor, etag, if_match, require, AdminOnly, Deleted, ForceParam};
use super::AdminState;
use crate::api_error::{ApiError, ErrorBody, JsonBody};
use crate::store::control::TokenScope;
use crate::tenants::control::{TenantView, MAX_COMPONENT_BYTES};
use crate::tenants::spec::TenantSpec;
use crate::tenants::Caller;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// What an upload stored.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// Name it as a tenant's `policy`.
    pub sha256: String,
    pub bytes: usize,
}

/// Stores a policy component by its sha256 (admin token). Nothing runs it until a
/// tenant names it; then it is compiled and checked.
#[utoipa::path(post, path = "/admin/v1/policies", tag = "tenants", operation_id = "upload_policy",
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "the component, at most 64 MiB"),
    responses((status = 201, body = Uploaded), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upload_policy(
    State(app): State<AdminState>,
    AdminOnly(caller): AdminOnly,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = super::policy::read_component(body, &headers).await?;
    debug_assert!(bytes.len() <= MAX_COMPONENT_BYTES);
    let n = bytes.len();
    let sha256 = app.control.upload_policy(bytes, &actor(&caller)).await?;
    Ok((StatusCode::CREATED, Json(Uploaded { sha256, bytes: n })).into_response())
}

/// Creates a tenant (admin token). Its policy (`policy`: an uploaded component's
/// sha256) is compiled and checked first; it has no routes and no tokens yet.
#[utoipa::path(post, path = "/admin/v1/tenants", tag = "tenants", operation_id = "create_tenant",
    request_body = TenantSpec,
    responses((status = 201, body = TenantView, headers(("ETag" = String, description = "the revision, for If-Match"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_tenant(
    State(app): State<AdminState>,
    AdminOnly(caller): AdminOnly,
    JsonBody(spec): JsonBody<TenantSpec>,
) -> Result<Response, ApiError> {
    let view = app.control.create_tenant(spec, &actor(&caller)).await?;
    Ok((StatusCode::CREATED, etag(view.revision), Json(view)).into_response())
}

/// A tenant: where it is declared, its revision, spec, routes and live policy.
#[utoipa::path(get, path = "/admin/v1/tenants/{id}", tag = "tenants", operation_id = "get_tenant",
    params(("id" = String, Path, description = "the tenant's id")),
    responses((status = 200, body = TenantView, headers(("ETag" = String, description = "the revision"))),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_tenant(
    State(app): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&caller, &id, TokenScope::ReadOnly)?;
    let view = app.control.view(&id).ok_or_else(|| ApiError::not_found("not_found", format!("no tenant `{id}`")))?;
    Ok((etag(view.revision), Json(view)).into_response())
}

/// Replaces an API tenant's spec (admin token; `If-Match` for a safe concurrent update).
/// A new policy, config or limits is compiled and checked, then swapped in; on 422 the
/// old version keeps serving and nothing is stored.
#[utoipa::path(put, path = "/admin/v1/tenants/{id}", tag = "tenants", operation_id = "replace_tenant",
    params(("id" = String, Path, description = "the tenant's id"),
           ("If-Match" = Option<String>, Header, description = "the ETag the change is based on")),
    request_body = TenantSpec,
    responses((status = 200, body = TenantView, headers(("ETag" = String, description = "the new revision"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn replace_tenant(
    State(app): State<AdminState>,
    AdminOnly(caller): AdminOnly,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(spec): JsonBody<TenantSpec>,
) -> Result<Response, ApiError> {
    let view = app.control.replace_tenant(&id, spec, if_match(&headers)?, &actor(&caller)).await?;
    Ok((etag(view.revision), Json(view)).into_response())
}

/// Deletes an API tenant with its routes, tokens and secrets (admin token). With
/// deliveries pending: 409 with the count, unless `?force=true`, which dead-letters
/// them (reason `tenant_removed`).
#[utoipa::path(delete, path = "/admin/v1/tenants/{id}", tag = "tenants", operation_id = "delete_tenant",
    params(("id" = String, Path, description = "the tenant's id"), ForceParam,
           ("If-Match" = Option<String>, Header, description = "the ETag the delete is based on")),
    responses((status = 200, body = Deleted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn delete_tenant(
    State(app): State<AdminState>,
    AdminOnly(caller): AdminOnly,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(force): Query<ForceParam>,
) -> Result<Json<Deleted>, ApiError> {
    let dead_lettered = app.control.delete_tenant(&id, if_match(&headers)?, force.force, &actor(&caller)).await?;
    Ok(Json(Deleted { deleted: true, dead_lettered }))
}
