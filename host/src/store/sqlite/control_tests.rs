//! The control plane in the SQLite store: every change kind, the revision rules,
//! atomicity with the audit entry, signing secrets encrypted at rest, the deliveries of
//! a removed tenant or route, and the migration of an older spool. Signing secrets at
//! rest are in `control_secret_tests.rs`.

use super::SqliteStore;
use crate::config::Durability;
use crate::record::TenantId;
use crate::secret_key::SecretKey;
use crate::store::tests::{deliver, item};
use crate::store::{
    ControlChange, ControlSnapshot, DlqFilter, NewAudit, RouteRecord, SecretRecord, Store, StoreError, StoreErrorKind,
    TenantRecord, TokenRecord, TokenScope,
};
use rusqlite::Connection;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;

pub(super) const KEY_HEX: &str = "5f0c1e7a9b3d2f4e6a8c0b1d3f5e7a9c2b4d6f8e0a1c3e5f7b9d1a3c5e7f9b0d";
pub(super) const SECRET: &str = "whsec_c2VjcmV0LW9mLXRoZS1ob29rLXJvdXRlLTEyMzQ1";

pub(super) fn key() -> SecretKey {
    SecretKey::parse(KEY_HEX, "server.secret_key_env `HOSTD_SECRET_KEY`").unwrap()
}

pub(super) fn open(dir: &Path, key: Option<SecretKey>) -> SqliteStore {
    SqliteStore::open(dir, Durability::Os).unwrap().with_secret_key(key)
}

pub(super) fn audit(action: &str) -> NewAudit {
    NewAudit {
        actor: "admin".into(),
        action: action.into(),
        resource: "test".into(),
        before: None,
        after: Some(json!({ "action": action })),
    }
}

pub(super) fn tenant(id: &str, expect: Option<u64>, spec: serde_json::Value) -> ControlChange {
    // An update names another creation time: the stored one stays.
    let created_ms = 10 + 100 * expect.unwrap_or(0);
    let record = TenantRecord { id: TenantId::from(id), spec, revision: 0, created_ms, updated_ms: 20 };
    ControlChange::PutTenant { record, expect_revision: expect }
}

pub(super) fn route(tenant: &str, name: &str, expect: Option<u64>) -> ControlChange {
    let record = RouteRecord {
        tenant: TenantId::from(tenant),
        name: name.into(),
        spec: json!({ "type": "webhook", "url": "https://example.com/hook" }),
        revision: 0,
        created_ms: 30,
        updated_ms: 40,
    };
    ControlChange::PutRoute { record, expect_revision: expect }
}

pub(super) fn token(id: &str, tenant: &str, secret: &str) -> ControlChange {
    ControlChange::PutToken(TokenRecord {
        id: id.into(),
        tenant: TenantId::from(tenant),
        scopes: vec![TokenScope::Ingest, TokenScope::ReadOnly],
        digest: Sha256::digest(secret.as_bytes()).into(),
        label: Some("ci".into()),
        created_ms: 50,
        expires_ms: Some(9_000),
        revoked_ms: None,
    })
}

pub(super) fn secret(tenant: &str, route: &str, id: &str, created_ms: u64) -> ControlChange {
    ControlChange::PutSecret(SecretRecord {
        tenant: TenantId::from(tenant),
        route: route.into(),
        id: id.into(),
        secret: SECRET.into(),
        created_ms,
        expires_ms: None,
    })
}

pub(super) async fn apply(store: &SqliteStore, changes: Vec<ControlChange>) -> Result<Vec<u64>, StoreError> {
    store.control_apply(changes, audit("test")).await
}

pub(super) fn refused(result: Result<Vec<u64>, StoreError>, kind: StoreErrorKind, message: &str) {
    let e = result.unwrap_err();
    assert_eq!(e.kind, kind, "{e}");
    assert_eq!(e.message, message);
}

#[tokio::test]
async fn tenants_and_routes_follow_the_revision_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    assert_eq!(
        apply(&store, vec![tenant("acme", None, json!({"v": 1})), route("acme", "hook", None)]).await.unwrap(),
        vec![1, 1]
    );
    refused(
        apply(&store, vec![tenant("acme", None, json!({}))]).await,
        StoreErrorKind::Conflict,
        "tenant `acme` exists already",
    );
    assert_eq!(apply(&store, vec![tenant("acme", Some(1), json!({"v": 2}))]).await.unwrap(), vec![2]);
    let stale = apply(&store, vec![tenant("acme", Some(1), json!({"v": 3}))]).await;
    refused(stale, StoreErrorKind::PreconditionFailed, "tenant `acme` is at revision 2, not 1");
    refused(
        apply(&store, vec![tenant("nobody", Some(1), json!({}))]).await,
        StoreErrorKind::NotFound,
        "tenant `nobody` does not exist",
    );
    let orphan = apply(&store, vec![route("nobody", "hook", None)]).await;
    refused(orphan, StoreErrorKind::NotFound, "tenant `nobody` of route `nobody/hook` does not exist");
    refused(
        apply(&store, vec![route("acme", "hook", None)]).await,
        StoreErrorKind::Conflict,
        "route `acme/hook` exists already",
    );
    assert_eq!(apply(&store, vec![route("acme", "hook", Some(1))]).await.unwrap(), vec![2]);
    let delete = |expect| ControlChange::DeleteRoute {
        tenant: TenantId::from("acme"),
        name: "hook".into(),
        expect_revision: expect,
    };
    refused(
        apply(&store, vec![delete(Some(1))]).await,
        StoreErrorKind::PreconditionFailed,
        "route `acme/hook` is at revision 2, not 1",
    );

    let loaded = store.control_load().await.unwrap();
    assert_eq!(loaded.tenants.len(), 1);
    let acme = &loaded.tenants[0];
    assert_eq!((acme.revision, acme.created_ms, acme.updated_ms), (2, 10, 20));
    assert_eq!(acme.spec, json!({"v": 2}));
    assert_eq!(loaded.routes[0].revision, 2);
    assert_eq!(loaded.routes[0].spec["type"], "webhook");

    assert_eq!(apply(&store, vec![delete(Some(2))]).await.unwrap(), vec![0]);
    refused(apply(&store, vec![delete(None)]).await, StoreErrorKind::NotFound, "route `acme/hook` does not exist");
    let gone = ControlChange::DeleteTenant { id: TenantId::from("acme"), expect_revision: None };
    assert_eq!(apply(&store, vec![gone.clone()]).await.unwrap(), vec![0]);
    refused(apply(&store, vec![gone]).await, StoreErrorKind::NotFound, "tenant `acme` does not exist");
    assert_eq!(store.control_load().await.unwrap(), ControlSnapshot::default());
}

#[tokio::test]
async fn tokens_are_unique_revocable_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    // A token may belong to a config-file tenant, which is not in the store.
    apply(&store, vec![token("tok_1", "filed", "hostd_one"), token("tok_2", "filed", "hostd_two")]).await.unwrap();
    refused(
        apply(&store, vec![token("tok_1", "filed", "hostd_three")]).await,
        StoreErrorKind::Conflict,
        "token `tok_1` exists already",
    );
    let same = apply(&store, vec![token("tok_3", "filed", "hostd_one")]).await;
    refused(same, StoreErrorKind::Conflict, "token `tok_3`: another token has the same digest (the same secret)");
    let mut none = token("tok_4", "filed", "hostd_four");
    if let ControlChange::PutToken(t) = &mut none {
        t.scopes.clear();
    }
    refused(apply(&store, vec![none]).await, StoreErrorKind::Conflict, "token `tok_4` has no scopes");
    let revoke = |at_ms| ControlChange::RevokeToken { id: "tok_1".into(), at_ms };
    apply(&store, vec![revoke(100)]).await.unwrap();
    apply(&store, vec![revoke(200)]).await.unwrap();
    let unknown = ControlChange::RevokeToken { id: "tok_9".into(), at_ms: 1 };
    refused(apply(&store, vec![unknown]).await, StoreErrorKind::NotFound, "token `tok_9` does not exist");
    drop(store);

    let tokens = open(dir.path(), None).control_load().await.unwrap().tokens;
    assert_eq!(tokens.len(), 2);
    let first = &tokens[0];
    assert_eq!((first.id.as_str(), first.revoked_ms), ("tok_1", Some(100)), "the first revocation stands");
    assert_eq!(first.digest, <[u8; 32]>::from(Sha256::digest(b"hostd_one")));
    assert_eq!(first.scopes, [TokenScope::Ingest, TokenScope::ReadOnly]);
    assert_eq!((first.label.as_deref(), first.expires_ms, first.created_ms), (Some("ci"), Some(9_000), 50));
    assert_eq!(tokens[1].revoked_ms, None);
}

#[tokio::test]
async fn a_refused_change_undoes_the_whole_call_and_its_audit_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let changes =
        vec![tenant("acme", None, json!({})), token("tok_1", "acme", "hostd_one"), route("globex", "hook", None)];
    refused(
        apply(&store, changes).await,
        StoreErrorKind::NotFound,
        "tenant `globex` of route `globex/hook` does not exist",
    );
    assert_eq!(store.control_load().await.unwrap(), ControlSnapshot::default());
    assert!(store.audit_page(None, 10).await.unwrap().is_empty());
    assert_eq!(store.write_failure().await, None, "a refusal is not a failing spool");
    // A refusal before the writer (no key for a secret) stores nothing either.
    let changes = vec![tenant("acme", None, json!({})), route("acme", "hook", None), secret("acme", "hook", "s1", 1)];
    refused(
        apply(&store, changes).await,
        StoreErrorKind::SecretKey,
        "cannot store signing secret `s1` of route `acme/hook`: no key encrypts secrets at rest; set \
         server.secret_key_env (or server.secret_key_file) to 32 random bytes (`openssl rand -hex 32`)",
    );
    assert_eq!(store.control_load().await.unwrap(), ControlSnapshot::default());
    // Then the same changes go through.
    apply(&store, vec![tenant("acme", None, json!({})), token("tok_1", "acme", "hostd_one")]).await.unwrap();
    assert_eq!(store.audit_page(None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_audit_log_pages_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let store: &dyn Store = &store;
    for (i, action) in ["tenant.create", "route.add", "token.create"].into_iter().enumerate() {
        let entry = NewAudit {
            actor: if i == 0 { "admin".into() } else { "tok_1".into() },
            action: action.into(),
            resource: format!("tenant `acme` #{i}"),
            before: (i > 0).then(|| json!({ "i": i - 1 })),
            after: Some(json!({ "i": i })),
        };
        let change = if i == 0 { tenant("acme", None, json!({})) } else { tenant("acme", Some(i as u64), json!({})) };
        store.control_apply(vec![change], entry).await.unwrap();
    }
    let first = store.audit_page(None, 2).await.unwrap();
    assert_eq!(first.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["tenant.create", "route.add"]);
    assert_eq!((first[0].actor.as_str(), &first[0].before, &first[1].before), ("admin", &None, &Some(json!({"i": 0}))));
    assert!(first[0].at_ms > 0);
    let rest = store.audit_page(Some(first[1].id), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!((rest[0].actor.as_str(), &rest[0].after), ("tok_1", &Some(json!({"i": 2}))));
    assert!(store.audit_page(Some(rest[0].id), 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn policies_are_content_addressed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let bytes = b"\0asm policy".to_vec();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let put = ControlChange::PutPolicy { sha256: sha256.clone(), bytes: bytes.clone() };
    apply(&store, vec![put.clone()]).await.unwrap();
    apply(&store, vec![put]).await.unwrap();
    assert_eq!(store.policy_blob(&sha256).await.unwrap(), Some(bytes.clone()));
    assert_eq!(store.policy_blob(&sha256.to_uppercase()).await.unwrap(), Some(bytes.clone()));
    assert_eq!(store.policy_blob(&"0".repeat(64)).await.unwrap(), None);
    let wrong = ControlChange::PutPolicy { sha256: "0".repeat(64), bytes };
    let message = format!("policy `{}`: its bytes have the SHA-256 `{sha256}`", "0".repeat(64));
    refused(apply(&store, vec![wrong]).await, StoreErrorKind::Conflict, &message);
}

#[tokio::test]
async fn deleting_a_tenant_takes_its_routes_tokens_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Some(key()));
    let mut changes = Vec::new();
    for t in ["acme", "globex"] {
        changes.extend([tenant(t, None, json!({})), route(t, "hook", None), secret(t, "hook", "s1", 1)]);
        changes.push(token(&format!("tok_{t}"), t, &format!("hostd_{t}")));
    }
    apply(&store, changes).await.unwrap();
    let gone = ControlChange::DeleteTenant { id: "acme".into(), expect_revision: Some(2) };
    refused(
        apply(&store, vec![gone]).await,
        StoreErrorKind::PreconditionFailed,
        "tenant `acme` is at revision 1, not 2",
    );
    apply(&store, vec![ControlChange::DeleteTenant { id: "acme".into(), expect_revision: Some(1) }]).await.unwrap();
    let left = store.control_load().await.unwrap();
    assert_eq!(left.tenants.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["globex"]);
    assert!(left.routes.iter().all(|r| r.tenant == *"globex") && left.routes.len() == 1);
    assert!(left.tokens.iter().all(|t| t.tenant == *"globex") && left.tokens.len() == 1);
    assert!(left.secrets.iter().all(|s| s.tenant == *"globex") && left.secrets.len() == 1);
}

#[tokio::test]
async fn pending_deliveries_are_counted_and_dead_lettered_by_tenant_and_route() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let store: &dyn Store = &store;
    let window = Duration::from_secs(60);
    let acme = vec![item("k1", deliver("a")), item("k2", deliver("a")), item("k3", deliver("b"))];
    store.accept(TenantId::from("acme"), acme, window).await.unwrap();
    store.accept(TenantId::from("globex"), vec![item("k1", deliver("a"))], window).await.unwrap();
    assert_eq!(store.pending_count("acme", None).await.unwrap(), 3);
    assert_eq!(store.pending_count("acme", Some("a")).await.unwrap(), 2);
    assert_eq!(store.pending_count("acme", Some("c")).await.unwrap(), 0);

    assert_eq!(store.dead_letter_pending("acme", Some("a"), "route_removed").await.unwrap(), 2);
    assert_eq!(store.pending_count("acme", None).await.unwrap(), 1);
    assert_eq!(store.pending_count("globex", Some("a")).await.unwrap(), 1, "another tenant's route `a` stays");
    let dead = store.dlq_list(&DlqFilter::default()).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|e| e.reason == "route_removed" && e.route.as_deref() == Some("a") && e.payload.is_some()));
    assert_eq!(store.dead_letter_pending("acme", None, "tenant_removed").await.unwrap(), 1);
    assert_eq!(store.pending_count("acme", None).await.unwrap(), 0);
    assert_eq!(store.depths().await.unwrap().dead, 3);
}

#[tokio::test]
async fn an_older_spool_gets_the_control_tables_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    {
        let before_issue_11 = include_str!("schema.sql").split("-- The control plane").next().unwrap();
        let conn = Connection::open(dir.path().join("spool.db")).unwrap();
        conn.execute_batch(before_issue_11).unwrap();
        conn.execute(
            "INSERT INTO deliveries (tenant, route, idempotency_key, event_kind, key, policy_version, redactions,
                                     payload, event, next_attempt_ms, created_ms)
             VALUES ('acme', 'a', 'k', 'on_tool_end', 'root', 'v1', '[]', '{}', 'null', 1, 1)",
            [],
        )
        .unwrap();
    }
    let store = open(dir.path(), None);
    assert_eq!(store.pending_count("acme", None).await.unwrap(), 1);
    assert_eq!(store.control_load().await.unwrap(), ControlSnapshot::default());
    apply(&store, vec![tenant("acme", None, json!({}))]).await.unwrap();
    drop(store);
    // Opening again changes nothing.
    let store = open(dir.path(), None);
    assert_eq!(store.control_load().await.unwrap().tenants.len(), 1);
    assert_eq!(store.pending_count("acme", Some("a")).await.unwrap(), 1);
}
