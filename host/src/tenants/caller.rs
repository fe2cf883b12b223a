//! Who is calling, as axum extractors. Both authenticate from the headers alone, so a
//! request without a valid token gets its 401 before a byte of its body is read (axum
//! runs extractors in order and the body one last).
//!
//! - [`TenantCaller`]: ingest; a tenant's token (or the open tenant of the quickstart).
//! - [`Caller`]: the admin API; the admin token, or a tenant's own token.

use super::tokens::bearer;
use super::{Tenant, TenantRegistry};
use crate::api_error::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use std::sync::Arc;

/// The tenant an ingest request authenticates as.
pub struct TenantCaller(pub Arc<Tenant>);

impl<S> FromRequestParts<S> for TenantCaller
where
    Arc<TenantRegistry>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let registry = Arc::<TenantRegistry>::from_ref(state);
        registry.authenticate(&parts.headers).map(TenantCaller).map_err(|e| ApiError::unauthorized(e.to_string()))
    }
}

/// Who is calling the admin API.
#[derive(Clone)]
pub enum Caller {
    Admin,
    Tenant(Arc<Tenant>),
}

impl Caller {
    /// Authenticates an admin API request: the admin token, else a tenant's token.
    pub fn authenticate(registry: &TenantRegistry, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
        let token = match bearer(headers) {
            Ok(Some(token)) => token,
            Ok(None) => {
                return Err(ApiError::unauthorized("missing `Authorization: Bearer <admin or tenant token>` header"))
            }
            Err(e) => return Err(ApiError::unauthorized(e.to_string())),
        };
        if registry.is_admin_token(token) {
            return Ok(Caller::Admin);
        }
        registry
            .find_token(token)
            .map(Caller::Tenant)
            .ok_or_else(|| ApiError::unauthorized("the bearer token is neither the admin token nor a tenant's"))
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin)
    }

    /// True for the admin, and for the tenant `id` itself.
    pub fn may_see_tenant(&self, id: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Tenant(t) => &*t.id == id,
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
