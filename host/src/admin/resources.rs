//! What the resource endpoints share: who may touch a tenant's resources, `If-Match`
//! and `ETag`, the audit actor, and how a control-plane refusal becomes an answer.

use crate::api_error::ApiError;
use crate::store::control::TokenScope;
use crate::tenants::control::{Actor, ControlError};
use crate::tenants::Caller;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Invalid(e) => ApiError::bad_request("invalid_field", e.to_string()),
            ControlError::NotFound(m) => ApiError::not_found("not_found", m),
            ControlError::Conflict { code, message } => ApiError::conflict(code, message),
            ControlError::Precondition(m) => ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", m),
            ControlError::Refused(m) => ApiError::unprocessable("refused", m),
            ControlError::Store(e) => ApiError::unavailable(e.to_string()),
        }
    }
}

/// The caller may act on tenant `id`'s resources with `need`: the admin always; a
/// tenant's token only on its own tenant and only with that scope.
pub fn require(caller: &Caller, id: &str, need: TokenScope) -> Result<(), ApiError> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::Tenant { tenant, token } => {
            if &*tenant.id != id {
                return Err(ApiError::forbidden(format!("a tenant token can only reach its own tenant, not `{id}`")));
            }
            if !token.may(need) {
                return Err(ApiError::forbidden(format!(
                    "this token's scopes [{}] do not include `{}`",
                    token.scopes_text(),
                    need.as_str()
                )));
            }
            Ok(())
        }
    }
}

/// Only the admin token.
pub fn require_admin(caller: &Caller, what: &str) -> Result<(), ApiError> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::Tenant { .. } => Err(ApiError::forbidden(format!("{what} needs the admin token"))),
    }
}

/// Who the audit log names.
pub fn actor(caller: &Caller) -> Actor {
    match caller {
        Caller::Admin => Actor("admin".into()),
        Caller::Tenant { token, .. } => Actor(format!("token:{}", token.id)),
    }
}

/// The revision an `If-Match: "<revision>"` names; `None` without the header.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = v.to_str().unwrap_or("");
    let text = text.trim().trim_start_matches("W/").trim_matches('"');
    text.parse::<u64>().map(Some).map_err(|_| {
        ApiError::bad_request("invalid_if_match", "`If-Match` must be the ETag this API answered, like \"3\"")
    })
}

/// `ETag: "<revision>"`.
pub fn etag(revision: u64) -> [(header::HeaderName, HeaderValue); 1] {
    let value = HeaderValue::from_str(&format!("\"{revision}\"")).expect("digits are a header value");
    [(header::ETAG, value)]
}

/// `?force=true`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForceParam {
    /// Dead-letter pending deliveries instead of refusing (409).
    #[serde(default)]
    pub force: bool,
}

/// What a delete did.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub deleted: bool,
    /// Pending deliveries moved to the DLQ (`?force=true`).
    pub dead_lettered: u64,
}

/// The tenant id in the request's path (`{id}`), read from the parts so that access is
/// decided before the body is read.
async fn path_tenant(parts: &mut axum::http::request::Parts) -> Result<String, ApiError> {
    use axum::extract::{FromRequestParts, Path};
    let Path(params) = Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, &())
        .await
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    params.get("id").cloned().ok_or_else(|| ApiError::bad_request("invalid_path", "the path names no tenant"))
}

/// As an extractor before the body: the caller may change the resources of the tenant
/// in the path (`manage`, or the admin).
pub struct ManageTenant(pub Caller);

/// As an extractor before the body: only the admin token.
pub struct AdminOnly(pub Caller);

impl<S> axum::extract::FromRequestParts<S> for ManageTenant
where
    std::sync::Arc<crate::tenants::TenantRegistry>: axum::extract::FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let tenant = path_tenant(parts).await?;
        require(&caller, &tenant, TokenScope::Manage)?;
        Ok(ManageTenant(caller))
    }
}

impl<S> axum::extract::FromRequestParts<S> for AdminOnly
where
    std::sync::Arc<crate::tenants::TenantRegistry>: axum::extract::FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        require_admin(&caller, &format!("{} {}", parts.method, parts.uri.path()))?;
        Ok(AdminOnly(caller))
    }
}
