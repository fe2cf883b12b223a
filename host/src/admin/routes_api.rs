//! `/admin/v1/tenants/{id}/routes` and their signing secrets: routes added, replaced
//! and removed at runtime; webhook secrets read and rotated.

use super::resources::{actor, etag, if_match, require, Deleted, ForceParam, ManageTenant};
use super::AdminState;
use crate::api_error::{ApiError, ErrorBody, JsonBody};
use crate::store::control::TokenScope;
use crate::tenants::control::{RouteView, SecretView};
use crate::tenants::Caller;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

/// A tenant's routes.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RouteList {
    pub routes: Vec<RouteView>,
}

/// A route: `name` and the keys of a `[tenants.routes.NAME]` table.
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct NewRoute {
    pub name: String,
    /// `type` (webhook, kafka, redis-stream, sns, file, stdout), the transport's keys,
    /// and `retry`, `concurrency`, `ordering`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub spec: Map<String, Value>,
}

/// The tenant's routes (file tenants: names only).
#[utoipa::path(get, path = "/admin/v1/tenants/{id}/routes", tag = "routes", operation_id = "list_routes",
    params(("id" = String, Path, description = "the tenant's id")),
    responses((status = 200, body = RouteList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn list_routes(
    State(app): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RouteList>, ApiError> {
    require(&caller, &id, TokenScope::ReadOnly)?;
    Ok(Json(RouteList { routes: app.control.routes(&id)? }))
}

/// Adds a route to an API tenant (`manage` or admin). A signing webhook with no
/// `secret_env` / `secret_file` gets a generated secret (read it from `secrets`).
#[utoipa::path(post, path = "/admin/v1/tenants/{id}/routes", tag = "routes", operation_id = "create_route",
    params(("id" = String, Path, description = "the tenant's id")), request_body = NewRoute,
    responses((status = 201, body = RouteView, headers(("ETag" = String, description = "the revision"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_route(
    State(app): State<AdminState>,
    ManageTenant(caller): ManageTenant,
    Path(id): Path<String>,
    JsonBody(route): JsonBody<NewRoute>,
) -> Result<Response, ApiError> {
    let view = app.control.put_route(&id, &route.name, route.spec, true, None, &actor(&caller)).await?;
    Ok((StatusCode::CREATED, etag(view.revision), Json(view)).into_response())
}

/// One route.
#[utoipa::path(get, path = "/admin/v1/tenants/{id}/routes/{name}", tag = "routes", operation_id = "get_route",
    params(("id" = String, Path, description = "the tenant's id"), ("name" = String, Path, description = "the route")),
    responses((status = 200, body = RouteView, headers(("ETag" = String, description = "the revision"))),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_route(
    State(app): State<AdminState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    require(&caller, &id, TokenScope::ReadOnly)?;
    let view = app.control.route(&id, &name)?;
    Ok((etag(view.revision), Json(view)).into_response())
}

/// Replaces a route's settings (`manage` or admin). In-flight attempts finish; every
/// later attempt, retries included, uses the new settings.
#[utoipa::path(put, path = "/admin/v1/tenants/{id}/routes/{name}", tag = "routes", operation_id = "replace_route",
    params(("id" = String, Path, description = "the tenant's id"), ("name" = String, Path, description = "the route"),
           ("If-Match" = Option<String>, Header, description = "the ETag the change is based on")),
    request_body(content = Object, description = "the keys of a `[tenants.routes.NAME]` table"),
    responses((status = 200, body = RouteView, headers(("ETag" = String, description = "the new revision"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn replace_route(
    State(app): State<AdminState>,
    ManageTenant(caller): ManageTenant,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    JsonBody(spec): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let view = app.control.put_route(&id, &name, spec, false, if_match(&headers)?, &actor(&caller)).await?;
    Ok((etag(view.revision), Json(view)).into_response())
}

/// Removes a route (`manage` or admin). With deliveries pending on it: 409 with the
/// count, unless `?force=true`, which dead-letters them (reason `route_removed`).
#[utoipa::path(delete, path = "/admin/v1/tenants/{id}/routes/{name}", tag = "routes", operation_id = "delete_route",
    params(("id" = String, Path, description = "the tenant's id"), ("name" = String, Path, description = "the route"),
           ForceParam, ("If-Match" = Option<String>, Header, description = "the ETag the delete is based on")),
    responses((status = 200, body = Deleted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn delete_route(
    State(app): State<AdminState>,
    ManageTenant(caller): ManageTenant,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    Query(force): Query<ForceParam>,
) -> Result<Json<Deleted>, ApiError> {
    let dead_lettered = app.control.delete_route(&id, &name, if_match(&headers)?, force.force, &actor(&caller)).await?;
    Ok(Json(Deleted { deleted: true, dead_lettered }))
}

/// A webhook route's stored signing secrets.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SecretList {
    /// Newest first; during a rotation's overlap the older one still signs until `expires_ms`.
    pub secrets: Vec<SecretView>,
}

/// The route's signing secrets (`manage` or admin).
#[utoipa::path(get, path = "/admin/v1/tenants/{id}/routes/{name}/secrets", tag = "routes", operation_id = "list_secrets",
    params(("id" = String, Path, description = "the tenant's id"), ("name" = String, Path, description = "the route")),
    responses((status = 200, body = SecretList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn list_secrets(
    State(app): State<AdminState>,
    ManageTenant(_caller): ManageTenant,
    Path((id, name)): Path<(String, String)>,
) -> Result<Json<SecretList>, ApiError> {
    Ok(Json(SecretList { secrets: app.control.secrets(&id, &name)? }))
}

/// A rotation: the new secret (else one is generated) and how long the old keeps signing.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// `whsec_<base64>` or raw text; omitted: generated.
    pub secret: Option<String>,
    /// How long the previous secret keeps signing beside the new one, like `24h` (default).
    pub overlap: Option<String>,
}

/// Rotates a webhook route's signing secret (`manage` or admin): both sign (two `v1,`
/// signatures) until the overlap ends.
#[utoipa::path(post, path = "/admin/v1/tenants/{id}/routes/{name}/secrets/rotate", tag = "routes",
    operation_id = "rotate_secret",
    params(("id" = String, Path, description = "the tenant's id"), ("name" = String, Path, description = "the route")),
    request_body = Rotation,
    responses((status = 201, body = SecretView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rotate_secret(
    State(app): State<AdminState>,
    ManageTenant(caller): ManageTenant,
    Path((id, name)): Path<(String, String)>,
    JsonBody(rotation): JsonBody<Rotation>,
) -> Result<Response, ApiError> {
    let overlap = match rotation.overlap.as_deref() {
        None => std::time::Duration::from_secs(24 * 3600),
        Some(s) => humantime::parse_duration(s).map_err(|e| {
            ApiError::bad_request("invalid_field", format!("`overlap`: `{s}` is not a duration like \"24h\": {e}"))
        })?,
    };
    let view = app.control.rotate_secret(&id, &name, rotation.secret, overlap, &actor(&caller)).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}
