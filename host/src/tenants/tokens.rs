//! Bearer tokens: `Authorization: Bearer <token>`, parsed in one place. A tenant token
//! has an id, scopes and an optional expiry; hostd keeps only its sha256 digest and
//! looks tokens up by it, so no comparison ever touches the secret itself and the
//! lookup's timing depends on the digest alone. The admin and metrics tokens are
//! compared as digests in constant time.
//!
//! Expiry and revocation are checked at every authentication: a token stops working
//! the moment it expires or its revocation is in the registry.

use crate::clock::now_ms;
use crate::record::TenantId;
use crate::store::control::TokenScope;
use axum::http::{header, HeaderMap};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing `Authorization: Bearer <token>` header")]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    #[error("the bearer token matches no tenant")]
    Unknown,
    #[error("the bearer token has expired")]
    Expired,
}

/// What a config-file tenant token may do: what it always could.
pub const CONFIG_TOKEN_SCOPES: [TokenScope; 2] = [TokenScope::Ingest, TokenScope::Manage];
/// The prefix of every token hostd generates.
pub const TOKEN_PREFIX: &str = "hostd_";

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

/// A new tenant token: `(id, secret)`. The id (`tok_` and 16 hex digits) names it in
/// lists and the audit log; the secret (`hostd_` and 43 base64url characters, 256
/// random bits) is shown once and stored only as its [`digest`].
pub fn generate() -> (String, String) {
    let id = format!("tok_{}", hex::encode(rand::random::<[u8; 8]>()));
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    (id, format!("{TOKEN_PREFIX}{secret}"))
}

/// The sha256 of a token: all hostd keeps of it.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// One secret token (the admin's, the metrics scraper's), kept as its digest.
#[derive(Clone)]
pub struct AccessToken([u8; 32]);

impl AccessToken {
    pub fn new(token: &str) -> Self {
        AccessToken(digest(token))
    }

    pub fn matches(&self, token: &str) -> bool {
        bool::from(self.0.ct_eq(&digest(token)))
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// Who a tenant token is: what a request carries once authenticated. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: Arc<str>,
    pub scopes: Arc<[TokenScope]>,
}

impl TokenInfo {
    pub fn new(id: &str, scopes: &[TokenScope]) -> Self {
        TokenInfo { id: Arc::from(id), scopes: Arc::from(scopes) }
    }

    /// Whether the token grants `need`; `manage` includes `read-only`.
    pub fn may(&self, need: TokenScope) -> bool {
        self.scopes.contains(&need) || (need == TokenScope::ReadOnly && self.scopes.contains(&TokenScope::Manage))
    }

    /// The scopes as messages name them: `[ingest, manage]`.
    pub fn scopes_text(&self) -> String {
        let names: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        format!("[{}]", names.join(", "))
    }
}

/// A tenant token as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub tenant: TenantId,
    pub token: TokenInfo,
    /// Past this (ms since the epoch) it no longer authenticates.
    pub expires_ms: Option<u64>,
}

impl TokenEntry {
    fn live_at(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|at| now_ms < at)
    }
}

/// Why a token could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token `{0}` exists already")]
    DuplicateId(String),
    #[error("token `{0}` has the same secret as another token")]
    DuplicateSecret(String),
    #[error("token `{0}` has no scopes: give it at least one of ingest, manage, read-only")]
    NoScopes(String),
}

/// Every tenant token, by digest, and the tenant served without a token (loopback
/// quickstart only).
#[derive(Clone, Default)]
pub struct TenantTokens {
    by_digest: HashMap<[u8; 32], TokenEntry>,
    open_tenant: Option<TenantId>,
}

impl TenantTokens {
    pub fn new(open_tenant: Option<TenantId>) -> Self {
        TenantTokens { by_digest: HashMap::new(), open_tenant }
    }

    /// A config-file token: id `config:<tenant>`, scopes [`CONFIG_TOKEN_SCOPES`], no
    /// expiry. A second one of the tenant replaces the first.
    pub fn insert(&mut self, tenant: TenantId, token: &str) {
        let id = format!("config:{tenant}");
        self.by_digest.retain(|_, e| *e.token.id != *id);
        let entry = TokenEntry { token: TokenInfo::new(&id, &CONFIG_TOKEN_SCOPES), tenant, expires_ms: None };
        self.by_digest.insert(digest(token), entry);
    }

    /// Adds a token known by its digest (a generated one, or one loaded from the store).
    pub fn insert_digest(&mut self, digest: [u8; 32], entry: TokenEntry) -> Result<(), TokenError> {
        let id = entry.token.id.to_string();
        if entry.token.scopes.is_empty() {
            return Err(TokenError::NoScopes(id));
        }
        if self.by_digest.contains_key(&digest) {
            return Err(TokenError::DuplicateSecret(id));
        }
        if self.by_digest.values().any(|e| *e.token.id == *id) {
            return Err(TokenError::DuplicateId(id));
        }
        self.by_digest.insert(digest, entry);
        Ok(())
    }

    /// Forgets the token `id`: it stops working at once. Returns it, if it existed.
    pub fn revoke(&mut self, id: &str) -> Option<TokenEntry> {
        let digest = *self.by_digest.iter().find(|(_, e)| &*e.token.id == id)?.0;
        self.by_digest.remove(&digest)
    }

    /// Forgets every token of `tenant` (and serving it without a token).
    pub fn remove(&mut self, tenant: &str) {
        self.by_digest.retain(|_, e| &*e.tenant != tenant);
        if self.open_tenant.as_deref() == Some(tenant) {
            self.open_tenant = None;
        }
    }

    /// The tokens of `tenant`, in id order.
    pub fn of_tenant(&self, tenant: &str) -> Vec<TokenEntry> {
        let mut out: Vec<TokenEntry> = self.by_digest.values().filter(|e| &*e.tenant == tenant).cloned().collect();
        out.sort_by(|a, b| a.token.id.cmp(&b.token.id));
        out
    }

    /// The tenant and token a request authenticates as: its bearer token, else the
    /// open tenant (with the `ingest` scope only).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<(TenantId, TokenInfo), AuthError> {
        let found = match bearer(headers)? {
            None => Err(AuthError::Missing),
            Some(token) => self.find(token).map(|e| (e.tenant.clone(), e.token.clone())),
        };
        found.or_else(|e| match &self.open_tenant {
            Some(open) => Ok((open.clone(), TokenInfo::new("open", &[TokenScope::Ingest]))),
            None => Err(e),
        })
    }

    /// The live token `token` is: `Unknown` for none (or a revoked one), `Expired` past
    /// its expiry.
    pub fn find(&self, token: &str) -> Result<&TokenEntry, AuthError> {
        let entry = self.by_digest.get(&digest(token)).ok_or(AuthError::Unknown)?;
        match entry.live_at(now_ms()) {
            true => Ok(entry),
            false => Err(AuthError::Expired),
        }
    }
}
