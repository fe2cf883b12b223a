//! The store through `dyn Store`, as the rest of the crate holds it: leases on claimed
//! deliveries, and the fixtures the SQLite tests share.

use super::{AcceptItem, DlqFilter, Shaped, SqliteStore, Store, StoreErrorKind, LEASE_TERM, UNASSIGNED_ID};
use crate::config::Durability;
use crate::record::{Delivery, TenantId};
use serde_json::value::RawValue;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn item(key: &str, shaped: Shaped) -> AcceptItem {
    AcceptItem {
        idempotency_key: key.into(),
        event_kind: "on_tool_end".into(),
        policy_version: Arc::from("v1"),
        event: Some(RawValue::from_string(r#"{"event":"on_tool_end","run_id":"r"}"#.into()).unwrap()),
        shaped,
    }
}

/// One delivery to `route`; the store fills in the event's fields.
pub(crate) fn deliver(route: &str) -> Shaped {
    Shaped::Deliver(vec![Delivery {
        id: UNASSIGNED_ID,
        tenant: TenantId::from(""),
        route: route.into(),
        idempotency_key: String::new(),
        event: String::new(),
        key: "root".into(),
        policy_version: Arc::from(""),
        redactions: vec!["/data/x".into()],
        payload: RawValue::from_string(r#"{"a":1}"#.into()).unwrap(),
        attempts: 0,
        next_attempt_ms: 0,
        created_ms: 0,
    }])
}

fn open(dir: &Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(dir, Durability::Os).unwrap())
}

/// Accepts one delivery per key for `tenant`; returns their ids.
async fn accept(store: &dyn Store, tenant: &str, keys: &[&str]) -> Vec<i64> {
    let items = keys.iter().map(|k| item(k, deliver("a"))).collect();
    let accepted = store.accept(TenantId::from(tenant), items, Duration::from_secs(60)).await.unwrap();
    accepted.iter().flat_map(|a| a.deliveries.iter().map(|d| d.id)).collect()
}

fn ids(deliveries: &[Delivery]) -> Vec<i64> {
    deliveries.iter().map(|d| d.id).collect()
}

#[tokio::test]
async fn accepted_deliveries_are_held_from_the_insert_and_stamped_with_their_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let accepted = store.accept(TenantId::from("acme"), vec![item("k1", deliver("a"))], Duration::from_secs(60));
    let d = &accepted.await.unwrap()[0].deliveries[0];
    assert!(d.id != UNASSIGNED_ID && d.attempts == 0 && d.created_ms > 0 && d.next_attempt_ms == d.created_ms);
    assert_eq!((&*d.tenant, &*d.idempotency_key, &*d.event, &*d.policy_version), ("acme", "k1", "on_tool_end", "v1"));
    let claimed = store.claim(100, LEASE_TERM).await.unwrap();
    assert!(claimed.deliveries.is_empty(), "a delivery this process spooled is already held by it");
    assert_eq!(&claimed.lease.owner, store.owner());
    assert_eq!(claimed.lease.expires_ms, None, "a single node's lease lasts while the process runs");
    let renewal = store.renew(&[d.id], LEASE_TERM).await.unwrap();
    assert!(renewal.lost.is_empty());
}

#[tokio::test]
async fn what_a_previous_process_left_is_claimed_once_in_order_and_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let left = accept(&*open(dir.path()), "acme", &["k1", "k2", "k3"]).await;
    let store = open(dir.path());
    let first = store.claim(2, LEASE_TERM).await.unwrap();
    assert_eq!(ids(&first.deliveries), left[..2]);
    assert!(first.deliveries.iter().all(|d| d.tenant == *"acme" && d.payload.get() == r#"{"a":1}"#));
    assert_eq!(ids(&store.claim(10, LEASE_TERM).await.unwrap().deliveries), left[2..]);
    assert!(store.claim(10, LEASE_TERM).await.unwrap().deliveries.is_empty(), "each is handed out once");
    // A new row after the last one left at open is delivered takes its id (SQLite
    // reuses the highest id): it is held, not handed out as one left at open.
    store.delivered(left[2]);
    store.flush().await.unwrap();
    let new = accept(&*store, "acme", &["k4"]).await;
    assert_eq!(new, [left[2]], "SQLite reused the id");
    assert!(store.claim(10, LEASE_TERM).await.unwrap().deliveries.is_empty());
    drop(store);
    // The leases ended with the process: a restart claims everything still pending.
    let store = open(dir.path());
    let mut all = left[..2].to_vec();
    all.extend(new);
    assert_eq!(ids(&store.claim_pending().await.unwrap()), all);
}

#[tokio::test]
async fn rows_spooled_while_claiming_are_never_taken_for_those_left_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let left = accept(&*open(dir.path()), "acme", &["k1", "k2", "k3"]).await;
    let store = open(dir.path());
    assert_eq!(ids(&store.claim(1, LEASE_TERM).await.unwrap().deliveries), left[..1]);
    store.delivered(left[0]);
    store.flush().await.unwrap();
    let new = accept(&*store, "acme", &["k4"]).await;
    assert!(new[0] > left[2], "the highest row left at open is still there");
    assert_eq!(ids(&store.claim_pending().await.unwrap()), left[1..]);
}

#[tokio::test]
async fn a_released_delivery_is_claimed_again_and_renew_names_what_is_no_longer_held() {
    let dir = tempfile::tempdir().unwrap();
    let left = accept(&*open(dir.path()), "acme", &["k1", "k2"]).await;
    let store = open(dir.path());
    let unclaimed = store.renew(&left, LEASE_TERM).await.unwrap();
    assert_eq!(unclaimed.lost, left, "not claimed yet, so not held");
    assert_eq!(ids(&store.claim_pending().await.unwrap()), left);
    let mine = accept(&*store, "acme", &["k3"]).await;
    store.release(&[left[0], mine[0]]).await.unwrap();
    store.delivered(left[1]);
    store.flush().await.unwrap();
    let renewal = store.renew(&[left[0], left[1], mine[0]], LEASE_TERM).await.unwrap();
    assert_eq!(renewal.lost, [left[0], left[1], mine[0]], "released, released, delivered");
    assert_eq!(&renewal.lease.owner, store.owner());
    let again = store.claim(10, LEASE_TERM).await.unwrap();
    assert_eq!(ids(&again.deliveries), [left[0], mine[0]]);
    assert!(store.renew(&[left[0], mine[0]], LEASE_TERM).await.unwrap().lost.is_empty(), "held again");
    assert!(store.claim(10, LEASE_TERM).await.unwrap().deliveries.is_empty());
}

#[tokio::test]
async fn requeued_and_replaced_deliveries_are_held_by_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for id in accept(&*store, "acme", &["k1", "k2"]).await {
        store.dead_letter(id, 3, "exhausted", Some(503), "HTTP 503".into()).await.unwrap();
    }
    let dead: Vec<i64> = store.dlq_list(&DlqFilter::default()).await.unwrap().iter().map(|e| e.id).collect();
    let first = DlqFilter { ids: Some(vec![dead[0]]), ..DlqFilter::default() };
    let requeued = store.dlq_requeue(&first).await.unwrap().deliveries;
    let d = &requeued[0];
    assert_eq!((&*d.tenant, &*d.idempotency_key, &*d.route, d.attempts), ("acme", "k1", "a", 0));
    let replaced = store.dlq_replace(dead[1], TenantId::from("acme"), item("k2", deliver("b"))).await.unwrap();
    let replaced = replaced.expect("the entry was there");
    assert_eq!((&*replaced[0].route, &*replaced[0].idempotency_key), ("b", "k2"));
    let held = [d.id, replaced[0].id];
    assert!(store.claim(10, LEASE_TERM).await.unwrap().deliveries.is_empty(), "both are held already");
    assert!(store.renew(&held, LEASE_TERM).await.unwrap().lost.is_empty());
    store.delivered(d.id);
    store.flush().await.unwrap();
    assert_eq!(store.renew(&held, LEASE_TERM).await.unwrap().lost, [d.id], "the delivered one is gone");
}

#[tokio::test]
async fn errors_keep_the_spool_format_and_say_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let second = SqliteStore::open(dir.path(), Durability::Os).err().expect("a second store on the same dir");
    assert_eq!(second.kind, StoreErrorKind::Open);
    let shown = second.to_string();
    let file = dir.path().join("spool.db").display().to_string();
    assert!(shown.starts_with(&format!("spool {file}: ")), "{shown}");
    assert!(shown.contains("in use by another hostd"), "{shown}");
}
