//! `/admin/v1/tenants/{id}/tokens`: tokens created (shown once), listed (never shown)
//! and revoked at runtime.

use super::resources::{actor, require, ManageTenant};
use super::AdminState;
use crate::api_error::{ApiError, ErrorBody, JsonBody};
use crate::store::control::TokenScope;
use crate::tenants::control::{CreatedToken, TokenView};
use crate::tenants::Caller;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// A tenant's tokens, without their secrets.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// A token to create.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// `ingest` (send events), `manage` (the tenant's routes, policy, DLQ, tokens), `read-only`.
    pub scopes: Vec<TokenScope>,
    pub label: Option<String>,
    /// When it stops working, from now, like `90d`; omitted: never.
    pub expires_in: Option<String>,
}

/// The tenant's tokens created through the API (`read-only` or better).
#[utoipa::path(get, path = "/admin/v1/tenants/{id}/tokens", tag = "tokens", operation_id = "list_tokens",
    params(("id" = String, Path, description = "the tenant's id")),
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn list_tokens(
    State(app): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenList>, ApiError> {
    require(&caller, &id, TokenScope::ReadOnly)?;
    Ok(Json(TokenList { tokens: app.control.tokens(&id)? }))
}

/// Creates a token (`manage` or admin). Its secret is in this answer only; hostd keeps
/// its sha256.
#[utoipa::path(post, path = "/admin/v1/tenants/{id}/tokens", tag = "tokens", operation_id = "create_token",
    params(("id" = String, Path, description = "the tenant's id")), request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_token(
    State(app): State<AdminState>,
    ManageTenant(caller): ManageTenant,
    Path(id): Path<String>,
    JsonBody(new): JsonBody<NewToken>,
) -> Result<Response, ApiError> {
    let expires_in = match new.expires_in.as_deref() {
        None => None,
        Some(s) => Some(humantime::parse_duration(s).map_err(|e| {
            ApiError::bad_request("invalid_field", format!("`expires_in`: `{s}` is not a duration like \"90d\": {e}"))
        })?),
    };
    let created = app.control.create_token(&id, new.scopes, new.label, expires_in, &actor(&caller)).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Revokes a token (`manage` or admin): from the next request on it authenticates nothing.
#[utoipa::path(delete, path = "/admin/v1/tenants/{id}/tokens/{token_id}", tag = "tokens", operation_id = "revoke_token",
    params(("id" = String, Path, description = "the tenant's id"), ("token_id" = String, Path, description = "the token's id (`tok_…`)")),
    responses((status = 200, body = TokenView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(app): State<AdminState>,
    ManageTenant(caller): ManageTenant,
    Path((id, token_id)): Path<(String, String)>,
) -> Result<Json<TokenView>, ApiError> {
    Ok(Json(app.control.revoke_token(&id, &token_id, &actor(&caller)).await?))
}
