//! Tokens (ids, scopes, expiry, revocation, generation), the scope-aware callers, and
//! a running tenant's routes and settings changed in place.

use super::provision::{Provisioner, RouteChange};
use super::tokens::{self, bearer, generate, TokenInfo, CONFIG_TOKEN_SCOPES, TOKEN_PREFIX};
use super::*;
use crate::clock::now_ms;
use crate::config::{Durability, PolicyLimits, RouteConfig};
use crate::delivery::Deliverer;
use crate::egress::Egress;
use crate::policy::decision::{LiveRoutes, RouteSet};
use crate::policy::{PolicyEngine, PolicyEvent, PolicySource};
use crate::store::control::TokenScope::{self, Ingest, Manage, ReadOnly};
use crate::store::{SqliteStore, Store};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};

fn headers(value: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = value {
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn entry(id: &str, tenant: &str, scopes: &[TokenScope], expires_ms: Option<u64>) -> TokenEntry {
    TokenEntry { tenant: tenant.into(), token: TokenInfo::new(id, scopes), expires_ms }
}

#[test]
fn finds_the_right_tenant() {
    let mut t = TenantTokens::new(None);
    t.insert("a".into(), "alpha");
    t.insert("b".into(), "beta");
    let who = |v: Option<&str>| t.authenticate(&headers(v)).map(|(id, _)| id.to_string());
    assert_eq!(who(Some("Bearer beta")), Ok("b".into()));
    assert_eq!(who(Some("bearer alpha")), Ok("a".into()));
    assert_eq!(who(Some("Bearer gamma")), Err(AuthError::Unknown));
    assert_eq!(who(Some("Basic alpha")), Err(AuthError::Malformed));
    assert_eq!(who(Some("Bearer ")), Err(AuthError::Malformed));
    assert_eq!(who(None), Err(AuthError::Missing));
    let (_, token) = t.authenticate(&headers(Some("Bearer alpha"))).unwrap();
    assert_eq!((&*token.id, &*token.scopes), ("config:a", &CONFIG_TOKEN_SCOPES[..]));
}

#[test]
fn open_tenant_needs_no_token_and_may_only_send() {
    let t = TenantTokens::new(Some("default".into()));
    let (id, token) = t.authenticate(&headers(None)).unwrap();
    assert_eq!(id.as_str(), "default");
    assert!(token.may(Ingest) && !token.may(ReadOnly) && !token.may(Manage));
}

#[test]
fn a_removed_tenants_token_matches_nothing() {
    let mut t = TenantTokens::new(None);
    t.insert("a".into(), "alpha");
    t.insert("b".into(), "beta");
    t.remove("a");
    assert_eq!(t.find("alpha").err(), Some(AuthError::Unknown));
    assert_eq!(t.find("beta").unwrap().tenant.as_str(), "b");
}

#[test]
fn access_tokens_compare_by_digest() {
    let admin = AccessToken::new("s3cret");
    assert!(admin.matches("s3cret") && !admin.matches("s3cre") && !admin.matches(""));
    assert_eq!(format!("{admin:?}"), "AccessToken(..)");
}

#[test]
fn generated_tokens_are_prefixed_high_entropy_and_distinct() {
    let (id, secret) = generate();
    assert!(id.starts_with("tok_") && id.len() == 20 && id[4..].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    let body = secret.strip_prefix(TOKEN_PREFIX).unwrap();
    assert_eq!(body.len(), 43, "256 bits in base64url: {secret}");
    assert!(body.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{secret}");
    let (id2, secret2) = generate();
    assert!(id != id2 && secret != secret2);
    assert_eq!(tokens::digest(&secret), tokens::digest(&secret));
    assert_eq!(bearer(&headers(Some(&format!("Bearer {secret}")))), Ok(Some(secret.as_str())));
}

#[test]
fn scopes_say_what_a_token_may_do() {
    let manage = TokenInfo::new("t", &[Manage]);
    assert!(manage.may(Manage) && manage.may(ReadOnly) && !manage.may(Ingest));
    let read = TokenInfo::new("t", &[ReadOnly]);
    assert!(read.may(ReadOnly) && !read.may(Manage) && !read.may(Ingest));
    assert_eq!(TokenInfo::new("t", &[Ingest, ReadOnly]).scopes_text(), "[ingest, read-only]");
}

#[test]
fn expired_and_revoked_tokens_fail_at_once() {
    let mut t = TenantTokens::new(None);
    let (soon, later) = (now_ms() + 150, now_ms() + 3_600_000);
    t.insert_digest(tokens::digest("short"), entry("tok_short", "a", &[Ingest], Some(soon))).unwrap();
    t.insert_digest(tokens::digest("long"), entry("tok_long", "a", &[Ingest], Some(later))).unwrap();
    t.insert_digest(tokens::digest("past"), entry("tok_past", "a", &[Ingest], Some(now_ms() - 1))).unwrap();
    assert!(t.find("short").is_ok() && t.find("long").is_ok());
    assert_eq!(t.find("past").err(), Some(AuthError::Expired));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(t.find("short").err(), Some(AuthError::Expired), "expiry is checked at every authentication");
    let who = t.authenticate(&headers(Some("Bearer short")));
    assert_eq!(who.unwrap_err().to_string(), "the bearer token has expired");

    assert_eq!(t.revoke("tok_long").unwrap().token.id.as_ref(), "tok_long");
    assert_eq!(t.find("long").err(), Some(AuthError::Unknown));
    assert!(t.revoke("tok_long").is_none());
    assert_eq!(t.of_tenant("a").iter().map(|e| e.token.id.to_string()).collect::<Vec<_>>(), ["tok_past", "tok_short"]);
}

#[test]
fn tokens_are_unique_by_id_and_secret_and_need_a_scope() {
    let mut t = TenantTokens::new(None);
    t.insert_digest(tokens::digest("one"), entry("tok_1", "a", &[Ingest], None)).unwrap();
    let again = t.insert_digest(tokens::digest("two"), entry("tok_1", "a", &[Ingest], None));
    assert_eq!(again, Err(TokenError::DuplicateId("tok_1".into())));
    let same_secret = t.insert_digest(tokens::digest("one"), entry("tok_2", "b", &[Ingest], None));
    assert_eq!(same_secret, Err(TokenError::DuplicateSecret("tok_2".into())));
    let none = t.insert_digest(tokens::digest("three"), entry("tok_3", "a", &[], None)).unwrap_err();
    assert!(none.to_string().contains("no scopes"), "{none}");
}

fn plugin() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-wasip2/release/pass_through.wasm")
}

fn tenant(engine: &PolicyEngine, id: &str, routes: &[&str]) -> Tenant {
    let names: Vec<String> = routes.iter().map(|r| r.to_string()).collect();
    let source = PolicySource {
        path: plugin(),
        config_json: "{}".into(),
        limits: PolicyLimits::default(),
        routes: LiveRoutes::new(RouteSet::Any),
        tests: None,
    };
    let version = source.load(engine, id, None, None).unwrap();
    Tenant::new(id.into(), TenantPolicy::new(version, source, "test"), TenantSettings::default(), names)
}

fn event() -> PolicyEvent {
    PolicyEvent::sample("n", "{}")
}

/// The fault kind of one evaluation, if any (pass_through names `default`).
fn fault(t: &Tenant) -> Option<&'static str> {
    t.current_policy().evaluate(&event()).err().map(|e| e.fault.kind())
}

#[test]
fn the_registry_adds_and_revokes_tokens_with_their_scopes() {
    let engine = PolicyEngine::new().unwrap();
    let registry = TenantRegistry::new(Some(AccessToken::new("admin")), None, None);
    registry.insert(tenant(&engine, "acme", &["default"]), Some("config-secret")).unwrap();
    let (id, secret) = generate();
    let reader = entry(&id, "acme", &[ReadOnly], None);
    registry.insert_token(tokens::digest(&secret), reader.clone()).unwrap();
    let orphan = registry.insert_token(tokens::digest("x"), entry("tok_x", "nobody", &[Ingest], None));
    assert_eq!(orphan, Err(RegistryError::Unknown("nobody".into())));

    let caller = |token: &str| Caller::authenticate(&registry, &headers(Some(&format!("Bearer {token}"))));
    let read_only = caller(&secret).unwrap();
    assert!(read_only.may(ReadOnly) && !read_only.may(Manage) && read_only.may_see_tenant("acme"));
    assert_eq!(read_only.actor(), id);
    let e = read_only.require(Manage).unwrap_err();
    assert_eq!((e.status, e.code), (StatusCode::FORBIDDEN, "insufficient_scope"));
    assert!(e.message.contains("[read-only]") && e.message.contains("`manage`"), "{}", e.message);
    let (_, token) = registry.authenticate(&headers(Some(&format!("Bearer {secret}")))).unwrap();
    let e = TenantCaller::require_ingest(&token).unwrap_err();
    assert_eq!(
        e.message,
        "this token's scopes [read-only] cannot send events; that needs a token with the `ingest` scope"
    );

    let config = caller("config-secret").unwrap();
    assert!(config.may(Ingest) && config.may(Manage) && config.may(ReadOnly), "config tokens keep today's rights");
    let admin = caller("admin").unwrap();
    assert!(admin.is_admin() && admin.may(Manage) && admin.actor() == "admin" && admin.tenant().is_none());

    assert_eq!(registry.tokens_of("acme").len(), 2);
    assert_eq!(registry.revoke_token(&id).unwrap(), reader);
    assert_eq!(caller(&secret).err().map(|e| e.status), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(registry.revoke_token(&id), Err(RegistryError::UnknownToken(id.clone())));
    registry.remove("acme").unwrap();
    assert!(registry.tokens_of("acme").is_empty());
}

#[test]
fn a_tenants_routes_and_settings_change_in_place() {
    let engine = PolicyEngine::new().unwrap();
    let t = tenant(&engine, "acme", &["default"]);
    assert_eq!(fault(&t), None, "built with RouteSet::Any, the tenant's routes are what count");
    assert!(t.remove_route("default") && !t.remove_route("default"));
    assert_eq!(fault(&t), Some("unknown_route"));
    assert!(t.add_route("default") && !t.add_route("default"));
    assert_eq!(fault(&t), None);
    t.set_routes(vec!["other".into()]);
    assert_eq!((*t.routes()).clone(), ["other"]);
    assert_eq!(fault(&t), Some("unknown_route"));

    assert!(!t.keep_original());
    let settings = TenantSettings { keep_original: true, on_policy_error: crate::config::OnPolicyError::Drop };
    t.set_settings(settings);
    assert!(t.keep_original() && t.settings() == settings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_are_added_changed_and_removed_on_a_running_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let engine = PolicyEngine::new().unwrap();
    let spool: std::sync::Arc<dyn Store> = std::sync::Arc::new(SqliteStore::open(dir.path(), Durability::Os).unwrap());
    let (egress, deliverer) = (Egress::default(), Deliverer::new());
    let provisioner = Provisioner { engine: &engine, egress: &egress, deliverer: &deliverer, spool: &spool };
    let t = tenant(&engine, "acme", &[]);
    assert_eq!(fault(&t), Some("unknown_route"));
    let route = |file: &str| -> RouteConfig {
        toml::from_str(&format!("type = \"file\"\npath = {:?}", dir.path().join(file).display().to_string())).unwrap()
    };
    assert_eq!(provisioner.put_route(&t, "default", &route("a.jsonl")).unwrap(), RouteChange::Added);
    assert!(deliverer.has_route("acme", "default") && fault(&t).is_none());
    assert_eq!(provisioner.put_route(&t, "default", &route("b.jsonl")).unwrap(), RouteChange::Updated);
    assert_eq!((*t.routes()).clone(), ["default"]);
    let bad: RouteConfig = toml::from_str("type = \"webhook\"\nurl = \"not a url\"").unwrap();
    assert!(provisioner.put_route(&t, "hook", &bad).is_err());
    assert!(
        !deliverer.has_route("acme", "hook") && (*t.routes()).clone() == ["default"],
        "a bad route changes nothing"
    );
    assert!(provisioner.remove_route(&t, "default") && !provisioner.remove_route(&t, "default"));
    assert!(!deliverer.has_route("acme", "default"));
    assert_eq!(fault(&t), Some("unknown_route"));
}
