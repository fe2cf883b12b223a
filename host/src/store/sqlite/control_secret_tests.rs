//! Signing secrets in the SQLite store: sealed at rest, opened only with their key,
//! bound to their row, rotated with an overlap, deleted with their route.

use super::control_tests::{apply, key, open, refused, route, secret, tenant, KEY_HEX, SECRET};
use crate::secret_key::SecretKey;
use crate::store::{ControlChange, StoreErrorKind};
use rusqlite::Connection;
use serde_json::json;

#[tokio::test]
async fn signing_secrets_are_encrypted_at_rest_and_need_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Some(key()));
    let base = vec![tenant("acme", None, json!({})), route("acme", "hook", None)];
    apply(&store, base.into_iter().chain([secret("acme", "hook", "s1", 100)]).collect()).await.unwrap();
    refused(
        apply(&store, vec![secret("acme", "hook", "s1", 100)]).await,
        StoreErrorKind::Conflict,
        "signing secret `s1` of route `acme/hook` exists already",
    );
    refused(
        apply(&store, vec![secret("acme", "other", "s1", 100)]).await,
        StoreErrorKind::NotFound,
        "route `acme/other` of signing secret `s1` does not exist",
    );
    // A rotation: the old one expires at 500, the new one signs from 400.
    let expire =
        ControlChange::ExpireSecret { tenant: "acme".into(), route: "hook".into(), id: "s1".into(), at_ms: 500 };
    apply(&store, vec![secret("acme", "hook", "s2", 400), expire]).await.unwrap();
    let secrets = store.control_load().await.unwrap().secrets;
    assert_eq!(
        secrets.iter().map(|s| (s.id.as_str(), s.expires_ms)).collect::<Vec<_>>(),
        [("s1", Some(500)), ("s2", None)]
    );
    assert_eq!(secrets[0].secret, SECRET);
    assert!(!format!("{secrets:?}").contains(SECRET), "Debug hides the secret");
    // The next rotation, after the overlap ended, drops the expired one.
    apply(&store, vec![secret("acme", "hook", "s3", 600)]).await.unwrap();
    let ids: Vec<String> = store.control_load().await.unwrap().secrets.into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["s2", "s3"]);
    let missing =
        ControlChange::ExpireSecret { tenant: "acme".into(), route: "hook".into(), id: "s1".into(), at_ms: 1 };
    refused(
        apply(&store, vec![missing]).await,
        StoreErrorKind::NotFound,
        "signing secret `s1` of route `acme/hook` does not exist",
    );
    store.flush().await.unwrap();
    drop(store);

    // Not on disk in the clear: not in the row, not in any of the spool's files.
    let sealed: Vec<u8> = Connection::open(dir.path().join("spool.db"))
        .unwrap()
        .query_row("SELECT sealed FROM signing_secrets WHERE id = 's2'", [], |r| r.get(0))
        .unwrap();
    assert!(!sealed.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    for file in ["spool.db", "spool.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "{file} holds the secret");
    }

    let wrong = SecretKey::from_bytes([7; 32], "server.secret_key_env `HOSTD_SECRET_KEY`");
    let e = open(dir.path(), Some(wrong)).control_load().await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::SecretKey);
    assert!(e.message.contains("not with the key from server.secret_key_env `HOSTD_SECRET_KEY`"), "{e}");
    assert!(!e.message.contains(KEY_HEX) && !e.message.contains(SECRET), "{e}");
    let e = open(dir.path(), None).control_load().await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::SecretKey);
    assert!(e.message.starts_with("the store holds 2 signing secret(s) sealed with key `"), "{e}");
    assert!(e.message.contains("set server.secret_key_env"), "{e}");
    assert_eq!(open(dir.path(), Some(key())).control_load().await.unwrap().secrets.len(), 2);

    // A sealed value moved to another row does not open there.
    let conn = Connection::open(dir.path().join("spool.db")).unwrap();
    conn.execute("UPDATE signing_secrets SET id = 's9' WHERE id = 's3'", []).unwrap();
    let e = open(dir.path(), Some(key())).control_load().await.unwrap_err();
    assert!(e.message.starts_with("signing secret `s9` of route `acme/hook` does not open"), "{e}");

    // Deleting the route deletes its secrets.
    conn.execute("DELETE FROM signing_secrets WHERE id = 's9'", []).unwrap();
    drop(conn);
    let store = open(dir.path(), Some(key()));
    let gone = ControlChange::DeleteRoute { tenant: "acme".into(), name: "hook".into(), expect_revision: Some(1) };
    apply(&store, vec![gone]).await.unwrap();
    assert!(store.control_load().await.unwrap().secrets.is_empty());
}
