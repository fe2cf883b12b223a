//! Who is calling, as axum extractors. Both authenticate from the headers alone, so a
//! request without a valid token gets its 401 before a byte of its body is read (axum
//! runs extractors in order and the body one last).
//!
//! - [`TenantCaller`]: ingest; a tenant's token with the `ingest` scope (or the open
//!   tenant of the quickstart).
//! - [`Caller`]: the admin API; the admin token, or a tenant's own token, whose scopes
//!   say what it may do there: `read-only` to read, `manage` to read and change.
//!   [`ReadCaller`] and [`ManageCaller`] are a `Caller` that holds that scope (403
//!   otherwise, before the body is read).

use super::tokens::{bearer, AuthError, TokenInfo};
use super::{Tenant, TenantRegistry};
use crate::api_error::ApiError;
use crate::store::control::TokenScope;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use std::sync::Arc;

/// The tenant an ingest request authenticates as.
pub struct TenantCaller(pub Arc<Tenant>);

impl TenantCaller {
    /// Refuses a token that may not send events: 403 naming its scopes.
    pub fn require_ingest(token: &TokenInfo) -> Result<(), ApiError> {
        match token.may(TokenScope::Ingest) {
            true => Ok(()),
            false => Err(insufficient_scope(format!(
                "this token's scopes {} cannot send events; that needs a token with the `ingest` scope",
                token.scopes_text()
            ))),
        }
    }
}

impl<S> FromRequestParts<S> for TenantCaller
where
    Arc<TenantRegistry>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let registry = Arc::<TenantRegistry>::from_ref(state);
        let (tenant, token) = registry.authenticate(&parts.headers).map_err(unauthorized)?;
        TenantCaller::require_ingest(&token)?;
        Ok(TenantCaller(tenant))
    }
}

/// Who is calling the admin API.
#[derive(Clone)]
pub enum Caller {
    Admin,
    Tenant { tenant: Arc<Tenant>, token: TokenInfo },
}

impl Caller {
    /// Authenticates an admin API request: the admin token, else a tenant's token.
    pub fn authenticate(registry: &TenantRegistry, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
        let token = match bearer(headers) {
            Ok(Some(token)) => token,
            Ok(None) => {
                return Err(ApiError::unauthorized("missing `Authorization: Bearer <admin or tenant token>` header"))
            }
            Err(e) => return Err(unauthorized(e)),
        };
        if registry.is_admin_token(token) {
            return Ok(Caller::Admin);
        }
        match registry.find_token(token) {
            Ok((tenant, token)) => Ok(Caller::Tenant { tenant, token }),
            Err(AuthError::Unknown) => {
                Err(ApiError::unauthorized("the bearer token is neither the admin token nor a tenant's"))
            }
            Err(e) => Err(unauthorized(e)),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin)
    }

    /// The tenant whose token this is; `None` for the admin.
    pub fn tenant(&self) -> Option<&Arc<Tenant>> {
        match self {
            Caller::Admin => None,
            Caller::Tenant { tenant, .. } => Some(tenant),
        }
    }

    /// Who made a change, for the audit log: `admin`, or the token's id.
    pub fn actor(&self) -> String {
        match self {
            Caller::Admin => "admin".into(),
            Caller::Tenant { token, .. } => token.id.to_string(),
        }
    }

    /// Whether the caller holds `need`: the admin always; a tenant token by its
    /// scopes (`manage` includes `read-only`).
    pub fn may(&self, need: TokenScope) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Tenant { token, .. } => token.may(need),
        }
    }

    /// 403 naming the scope and the token's scopes unless the caller holds `need`.
    pub fn require(&self, need: TokenScope) -> Result<(), ApiError> {
        let Caller::Tenant { token, .. } = self else { return Ok(()) };
        if token.may(need) {
            return Ok(());
        }
        let what = match need {
            TokenScope::Ingest => "sending events needs the `ingest` scope",
            TokenScope::ReadOnly => "reading needs the `read-only` or `manage` scope",
            TokenScope::Manage => "changing anything needs the `manage` scope",
        };
        Err(insufficient_scope(format!("this token's scopes are {}: {what}", token.scopes_text())))
    }

    /// True for the admin, and for the tenant `id` itself.
    pub fn may_see_tenant(&self, id: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Tenant { tenant, .. } => &*tenant.id == id,
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<TenantRegistry>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Caller::authenticate(&Arc::<TenantRegistry>::from_ref(state), &parts.headers)
    }
}

/// A [`Caller`] that may read (the admin, or a token with `read-only` or `manage`).
pub struct ReadCaller(pub Caller);

/// A [`Caller`] that may change things (the admin, or a token with `manage`).
pub struct ManageCaller(pub Caller);

impl<S> FromRequestParts<S> for ReadCaller
where
    Arc<TenantRegistry>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(TokenScope::ReadOnly)?;
        Ok(ReadCaller(caller))
    }
}

impl<S> FromRequestParts<S> for ManageCaller
where
    Arc<TenantRegistry>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(TokenScope::Manage)?;
        Ok(ManageCaller(caller))
    }
}

fn unauthorized(e: AuthError) -> ApiError {
    ApiError::unauthorized(e.to_string())
}

fn insufficient_scope(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", message)
}
