//! Tenant authentication: `Authorization: Bearer <token>`. Tokens are compared as
//! sha256 digests in constant time, against every tenant (no early exit), so neither
//! timing nor token length tells an attacker anything.

use axum::http::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing `Authorization: Bearer <token>` header")]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    #[error("the bearer token matches no tenant")]
    Unknown,
}

pub struct TenantTokens {
    digests: Vec<([u8; 32], usize)>,
    /// The tenant served without a token (loopback quickstart only).
    open_tenant: Option<usize>,
}

impl TenantTokens {
    /// `tokens` yields each tenant's index and token; `open_tenant` is the one tenant
    /// that may be reached without a token, if any.
    pub fn new<'a>(tokens: impl IntoIterator<Item = (usize, &'a str)>, open_tenant: Option<usize>) -> Self {
        let digests = tokens.into_iter().map(|(i, t)| (digest(t.as_bytes()), i)).collect();
        TenantTokens { digests, open_tenant }
    }

    /// The index of the tenant the request authenticates as.
    pub fn authenticate(&self, header: Option<&HeaderValue>) -> Result<usize, AuthError> {
        let Some(header) = header else {
            return self.open_tenant.ok_or(AuthError::Missing);
        };
        let value = header.to_str().map_err(|_| AuthError::Malformed)?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => token.trim(),
            _ => return Err(AuthError::Malformed),
        };
        self.find(token).or(self.open_tenant).ok_or(AuthError::Unknown)
    }

    /// The tenant owning `token`, comparing against every tenant.
    pub fn find(&self, token: &str) -> Option<usize> {
        let wanted = digest(token.as_bytes());
        let mut found = None;
        for (d, i) in &self.digests {
            if bool::from(d.ct_eq(&wanted)) {
                found = Some(*i);
            }
        }
        found
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_right_tenant() {
        let t = TenantTokens::new([(0, "alpha"), (1, "beta")], None);
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(t.authenticate(Some(&h("Bearer beta"))), Ok(1));
        assert_eq!(t.authenticate(Some(&h("bearer alpha"))), Ok(0));
        assert_eq!(t.authenticate(Some(&h("Bearer gamma"))), Err(AuthError::Unknown));
        assert_eq!(t.authenticate(Some(&h("Basic alpha"))), Err(AuthError::Malformed));
        assert_eq!(t.authenticate(None), Err(AuthError::Missing));
    }

    #[test]
    fn open_tenant_needs_no_token() {
        let t = TenantTokens::new([], Some(0));
        assert_eq!(t.authenticate(None), Ok(0));
    }
}
