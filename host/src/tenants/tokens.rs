//! Bearer tokens: `Authorization: Bearer <token>`, parsed in one place. Tokens are kept
//! and compared as sha256 digests in constant time, against every tenant (no early
//! exit), so neither timing nor token length tells an attacker anything.

use crate::record::TenantId;
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing `Authorization: Bearer <token>` header")]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    #[error("the bearer token matches no tenant")]
    Unknown,
}

/// The request's bearer token: `Ok(None)` without an `Authorization` header, `Err` for
/// one that is not `Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(AuthError::Malformed),
    }
}

/// One secret token (the admin's, the metrics scraper's), kept as its digest.
#[derive(Clone)]
pub struct AccessToken([u8; 32]);

impl AccessToken {
    pub fn new(token: &str) -> Self {
        AccessToken(digest(token.as_bytes()))
    }

    pub fn matches(&self, token: &str) -> bool {
        bool::from(self.0.ct_eq(&digest(token.as_bytes())))
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// Every tenant's token digest, and the tenant served without a token (loopback
/// quickstart only).
#[derive(Clone, Default)]
pub struct TenantTokens {
    digests: Vec<([u8; 32], TenantId)>,
    open_tenant: Option<TenantId>,
}

impl TenantTokens {
    pub fn new(open_tenant: Option<TenantId>) -> Self {
        TenantTokens { digests: Vec::new(), open_tenant }
    }

    pub fn insert(&mut self, tenant: TenantId, token: &str) {
        self.digests.push((digest(token.as_bytes()), tenant));
    }

    /// Forgets every token of `tenant` (and serving it without a token).
    pub fn remove(&mut self, tenant: &str) {
        self.digests.retain(|(_, t)| &**t != tenant);
        if self.open_tenant.as_deref() == Some(tenant) {
            self.open_tenant = None;
        }
    }

    /// The tenant a request authenticates as.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<TenantId, AuthError> {
        match bearer(headers)? {
            None => self.open_tenant.clone().ok_or(AuthError::Missing),
            Some(token) => self.find(token).or_else(|| self.open_tenant.clone()).ok_or(AuthError::Unknown),
        }
    }

    /// The tenant owning `token`, comparing against every tenant.
    pub fn find(&self, token: &str) -> Option<TenantId> {
        let wanted = digest(token.as_bytes());
        let mut found = None;
        for (d, t) in &self.digests {
            if bool::from(d.ct_eq(&wanted)) {
                found = Some(t);
            }
        }
        found.cloned()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_the_right_tenant() {
        let mut t = TenantTokens::new(None);
        t.insert("a".into(), "alpha");
        t.insert("b".into(), "beta");
        let who = |v: Option<&str>| t.authenticate(&headers(v)).map(|id| id.to_string());
        assert_eq!(who(Some("Bearer beta")), Ok("b".into()));
        assert_eq!(who(Some("bearer alpha")), Ok("a".into()));
        assert_eq!(who(Some("Bearer gamma")), Err(AuthError::Unknown));
        assert_eq!(who(Some("Basic alpha")), Err(AuthError::Malformed));
        assert_eq!(who(Some("Bearer ")), Err(AuthError::Malformed));
        assert_eq!(who(None), Err(AuthError::Missing));
    }

    #[test]
    fn open_tenant_needs_no_token() {
        let t = TenantTokens::new(Some("default".into()));
        assert_eq!(t.authenticate(&headers(None)).unwrap().as_str(), "default");
    }

    #[test]
    fn a_removed_tenants_token_matches_nothing() {
        let mut t = TenantTokens::new(None);
        t.insert("a".into(), "alpha");
        t.insert("b".into(), "beta");
        t.remove("a");
        assert_eq!(t.find("alpha"), None);
        assert_eq!(t.find("beta").unwrap().as_str(), "b");
    }

    #[test]
    fn access_tokens_compare_by_digest() {
        let admin = AccessToken::new("s3cret");
        assert!(admin.matches("s3cret") && !admin.matches("s3cre") && !admin.matches(""));
        assert_eq!(format!("{admin:?}"), "AccessToken(..)");
    }
}
