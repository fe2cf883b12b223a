//! The SQLite store's own tests: durability, dedupe, the DLQ, migrations, expiry,
//! readiness and the data_dir. The lease semantics are tested through `dyn Store` in
//! `store/tests.rs`.

use super::SqliteStore;
use crate::config::Durability;
use crate::record::TenantId;
use crate::store::tests::{deliver, item};
use crate::store::{AcceptItem, Depths, DlqFilter, Shaped, Store};
use rusqlite::{params, Connection};
use serde_json::value::RawValue;
use std::time::Duration;

#[tokio::test]
async fn accepts_dedupes_survives_reopen_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteStore::open(dir.path(), Durability::Fsync).unwrap();
    let tenant = TenantId::from("acme");
    let window = Duration::from_secs(60);
    let out = spool
        .accept(
            tenant.clone(),
            vec![item("k1", deliver("a")), item("k2", Shaped::Fault { reason: "trap".into(), error: "boom".into() })],
            window,
        )
        .await
        .unwrap();
    assert!(!out[0].duplicate && out[0].deliveries.len() == 1);
    let again = spool.accept(tenant.clone(), vec![item("k1", deliver("a"))], window).await.unwrap();
    assert!(again[0].duplicate && again[0].deliveries.is_empty());
    // Another tenant may use the same key.
    let other = spool.accept(TenantId::from("globex"), vec![item("k1", deliver("a"))], window).await.unwrap();
    assert!(!other[0].duplicate);
    drop(spool);

    let spool = SqliteStore::open(dir.path(), Durability::Fsync).unwrap();
    let pending = spool.claim_pending().await.unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].redactions, vec!["/data/x"]);
    assert_eq!(pending[0].payload.get(), r#"{"a":1}"#);
    spool.dead_letter(pending[0].id, 4, "exhausted", Some(503), "HTTP 503".into()).await.unwrap();
    spool.delivered(pending[1].id);
    spool.flush().await.unwrap();
    assert_eq!(spool.depths().await.unwrap(), Depths { pending: 0, dead: 2 });
    let entries = spool.dlq_list(&DlqFilter::default()).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].reason, "trap");
    assert_eq!(entries[1].attempts, 4);
    assert_eq!(entries[1].last_status, Some(503));
}

fn fault() -> Shaped {
    Shaped::Fault { reason: "trap".into(), error: "boom".into() }
}

/// Dead-letters one policy fault per key for `tenant`; returns the new entries' ids.
async fn faults(spool: &SqliteStore, tenant: &str, keys: &[&str]) -> Vec<i64> {
    let items = keys.iter().map(|k| item(k, fault())).collect();
    spool.accept(TenantId::from(tenant), items, Duration::from_secs(60)).await.unwrap();
    let filter = DlqFilter { tenant: Some(tenant.into()), ..DlqFilter::default() };
    let entries = spool.dlq_list(&filter).await.unwrap();
    entries.iter().filter(|e| keys.contains(&e.idempotency_key.as_str())).map(|e| e.id).collect()
}

#[tokio::test]
async fn a_purged_dlq_id_is_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteStore::open(dir.path(), Durability::Os).unwrap();
    let first = faults(&spool, "acme", &["k1", "k2"]).await;
    let top = *first.iter().max().unwrap();
    spool.dlq_purge(&DlqFilter { ids: Some(vec![top]), ..DlqFilter::default() }).await.unwrap();
    let next = faults(&spool, "globex", &["k3"]).await;
    assert!(next[0] > top, "the next entry took id {} after {top} was purged", next[0]);
    // Across a restart too (the sequence is in the file).
    drop(spool);
    let spool = SqliteStore::open(dir.path(), Durability::Os).unwrap();
    spool.dlq_purge(&DlqFilter::default()).await.unwrap();
    let after_restart = faults(&spool, "globex", &["k4"]).await;
    assert!(after_restart[0] > next[0]);
}

/// The `dlq` table as spools made before ids were AUTOINCREMENT have it.
const OLD_DLQ: &str = "CREATE TABLE dlq (
  id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, route TEXT, idempotency_key TEXT NOT NULL,
  event_kind TEXT NOT NULL, key TEXT, policy_version TEXT, redactions TEXT, payload TEXT, event TEXT NOT NULL,
  attempts INTEGER NOT NULL, reason TEXT NOT NULL, last_status INTEGER, last_error TEXT,
  created_ms INTEGER NOT NULL, dead_ms INTEGER NOT NULL);
  CREATE INDEX dlq_by_tenant ON dlq (tenant, dead_ms);";

#[tokio::test]
async fn an_old_dlq_is_migrated_keeping_rows_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join("spool.db")).unwrap();
        conn.execute_batch(OLD_DLQ).unwrap();
        for (id, tenant) in [(3, "acme"), (7, "globex")] {
            conn.execute(
                "INSERT INTO dlq (id, tenant, idempotency_key, event_kind, event, attempts, reason, created_ms, dead_ms)
                 VALUES (?1, ?2, 'k', 'on_tool_end', '{}', 1, 'trap', 1, 2)",
                params![id, tenant],
            )
            .unwrap();
        }
    }
    let spool = SqliteStore::open(dir.path(), Durability::Os).unwrap();
    let entries = spool.dlq_list(&DlqFilter::default()).await.unwrap();
    assert_eq!(entries.iter().map(|e| (e.id, e.tenant.as_str())).collect::<Vec<_>>(), [(3, "acme"), (7, "globex")]);
    let sql: String = spool
        .read(|c| c.query_row("SELECT sql FROM sqlite_master WHERE name = 'dlq'", [], |r| r.get(0)))
        .await
        .unwrap();
    assert!(sql.contains("AUTOINCREMENT"), "{sql}");
    let tables: i64 = spool
        .read(|c| c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'dlq_reusing_ids'", [], |r| r.get(0)))
        .await
        .unwrap();
    assert_eq!(tables, 0, "the old table is gone");
    spool.dlq_purge(&DlqFilter { ids: Some(vec![7]), ..DlqFilter::default() }).await.unwrap();
    assert!(faults(&spool, "acme", &["new"]).await[0] > 7);
}

#[tokio::test]
async fn dlq_writes_check_the_tenant_in_the_statement() {
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteStore::open(dir.path(), Durability::Os).unwrap();
    let b = faults(&spool, "globex", &["b"]).await[0];
    let accepted = spool.accept(TenantId::from("globex"), vec![item("bd", deliver("a"))], Duration::from_secs(60));
    let pending = &accepted.await.unwrap()[0].deliveries;
    spool.dead_letter(pending[0].id, 1, "exhausted", Some(503), "HTTP 503".into()).await.unwrap();
    let as_acme = |ids: Vec<i64>| DlqFilter { ids: Some(ids), tenant: Some("acme".into()), ..DlqFilter::default() };
    let all: Vec<i64> = spool.dlq_list(&DlqFilter::default()).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(spool.dlq_purge(&as_acme(all.clone())).await.unwrap(), 0);
    let requeued = spool.dlq_requeue(&as_acme(all.clone())).await.unwrap();
    assert!(requeued.deliveries.is_empty() && requeued.skipped.is_empty());
    let replaced = spool.dlq_replace(b, TenantId::from("acme"), item("x", Shaped::Dropped)).await.unwrap();
    assert!(replaced.is_none(), "acme's replace must not remove globex's entry");
    assert_eq!(spool.depths().await.unwrap(), Depths { pending: 0, dead: 2 });
    // The owner can.
    let own = DlqFilter { ids: Some(all), tenant: Some("globex".into()), ..DlqFilter::default() };
    let requeued = spool.dlq_requeue(&own).await.unwrap();
    assert_eq!((requeued.deliveries.len(), requeued.skipped, requeued.last_id), (1, vec![b], Some(b + 1)));
    assert!(spool.dlq_replace(b, TenantId::from("globex"), item("b", Shaped::Dropped)).await.unwrap().is_some());
    assert_eq!(spool.depths().await.unwrap(), Depths { pending: 1, dead: 0 });
}

#[tokio::test]
async fn pages_follow_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteStore::open(dir.path(), Durability::Os).unwrap();
    let keys: Vec<String> = (0..7).map(|i| format!("k{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    faults(&spool, "acme", &keys).await;
    let mut seen = Vec::new();
    let mut filter = DlqFilter::default();
    loop {
        let page = spool.dlq_page(&filter, 3).await.unwrap();
        assert!(page.entries.len() <= 3);
        seen.extend(page.entries.iter().map(|e| e.idempotency_key.clone()));
        match page.next {
            Some(n) => filter.after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, keys);
}

/// Spools a delivery (then dead-letters it) and a policy fault of an event holding
/// `marker`, keeping the original or not; answers whether the marker is in the files.
async fn marker_stored(keep_original: bool) -> bool {
    let marker = "MARKER-0e5b";
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteStore::open(dir.path(), Durability::Os).unwrap();
    let original = RawValue::from_string(format!(r#"{{"event":"on_tool_end","data":"{marker}"}}"#)).unwrap();
    let with = |key: &str, shaped| AcceptItem { event: keep_original.then(|| original.clone()), ..item(key, shaped) };
    let items = vec![with("k1", deliver("a")), with("k2", fault())];
    let accepted = spool.accept(TenantId::from("acme"), items, Duration::from_secs(60)).await.unwrap();
    let pending = &accepted[0].deliveries;
    spool.dead_letter(pending[0].id, 1, "exhausted", None, "down".into()).await.unwrap();
    let entries = spool.dlq_list(&DlqFilter::default()).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.event.is_some() == keep_original));
    if !keep_original {
        assert!(serde_json::to_string(&entries[0]).unwrap().contains(r#""event":null"#));
    }
    drop(spool);
    ["spool.db", "spool.db-wal"].iter().any(|name| {
        let bytes = std::fs::read(dir.path().join(name)).unwrap_or_default();
        bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
    })
}

#[tokio::test]
async fn an_event_not_kept_leaves_no_trace_in_the_files() {
    assert!(marker_stored(true).await, "a kept original is found in the files");
    assert!(!marker_stored(false).await, "the original was not kept, yet it is in the files");
}

#[tokio::test]
async fn retention_deletes_old_entries_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteStore::open(dir.path(), Durability::Os).unwrap();
    let ids = faults(&spool, "acme", &["a", "b", "c", "d", "e"]).await;
    // Three entries died at t=1000, two at t=5000.
    let (old, young) = (ids[..3].to_vec(), ids[3..].to_vec());
    spool
        .write(move |c| {
            for (id, t) in old.iter().map(|i| (*i, 1000)).chain(young.iter().map(|i| (*i, 5000))) {
                c.execute("UPDATE dlq SET dead_ms = ?2 WHERE id = ?1", params![id, t])?;
            }
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(spool.expire_dlq_before(1000, 2).await.unwrap(), 0, "strictly older than the cutoff");
    assert_eq!(spool.expire_dlq_before(4000, 2).await.unwrap(), 3);
    let left: Vec<i64> = spool.dlq_list(&DlqFilter::default()).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(left, ids[3..]);
    // A tiny retention, on the real clock.
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(spool.expire_dlq(Duration::from_millis(1)).await.unwrap(), 2);
    assert_eq!(spool.depths().await.unwrap().dead, 0);
}

#[tokio::test]
async fn dedupe_expiry_uses_the_index_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteStore::open(dir.path(), Durability::Os).unwrap();
    let items = (0..25).map(|i| item(&format!("k{i}"), Shaped::Dropped)).collect();
    spool.accept(TenantId::from("acme"), items, Duration::from_secs(60)).await.unwrap();
    let plan: Vec<String> = spool
        .read(|c| {
            let mut stmt = c.prepare(
                "EXPLAIN QUERY PLAN SELECT tenant, idempotency_key FROM dedupe WHERE accepted_ms < ?1 LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![0, 1], |r| r.get::<_, String>(3))?;
            rows.collect()
        })
        .await
        .unwrap();
    assert!(plan.iter().any(|p| p.contains("dedupe_by_accepted")), "{plan:?}");
    assert_eq!(spool.expire_keys_before(0, 10).await.unwrap(), 0);
    assert_eq!(spool.expire_keys_before(u64::MAX / 2, 10).await.unwrap(), 25);
    let again = spool.accept(TenantId::from("acme"), vec![item("k1", Shaped::Dropped)], Duration::from_secs(60));
    assert!(!again.await.unwrap()[0].duplicate, "the key was forgotten");
}

#[tokio::test]
async fn a_failing_writer_is_reported_until_a_probe_commits() {
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteStore::open(dir.path(), Durability::Fsync).unwrap();
    assert_eq!(spool.write_failure().await, None);
    // An injected failure: the writer's connection refuses every change (as a
    // read-only or failing disk would), which root's permissions cannot bypass.
    spool.write(|c| c.pragma_update(None, "query_only", true)).await.unwrap();
    let batch = spool.accept(TenantId::from("acme"), vec![item("k1", deliver("a"))], Duration::from_secs(60)).await;
    assert!(batch.unwrap_err().message.contains("readonly"), "the batch fails");
    let failure = spool.write_failure().await.expect("reported while writes fail");
    assert!(failure.contains("readonly"), "{failure}");
    assert!(spool.write_failure().await.is_some(), "no probe within a second: still failing");
    *spool.last_probe.lock().unwrap() = None;
    assert!(spool.write_failure().await.unwrap().contains("readonly"), "the probe write fails too");
    // The store can write again, but this job still fails: only the probe of the
    // next readiness check can find out.
    let restore = spool.write(|c| {
        c.pragma_update(None, "query_only", false)?;
        Err::<(), _>(rusqlite::Error::InvalidQuery)
    });
    assert!(restore.await.is_err());
    assert!(spool.health.failure().is_some());
    *spool.last_probe.lock().unwrap() = None;
    assert_eq!(spool.write_failure().await, None, "the probe committed");
    let batch = spool.accept(TenantId::from("acme"), vec![item("k1", deliver("a"))], Duration::from_secs(60)).await;
    assert_eq!(batch.unwrap()[0].deliveries.len(), 1);
}

#[tokio::test]
async fn spool_files_are_private_and_the_dir_is_locked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spool = SqliteStore::open(&data, Durability::Os).unwrap();
    spool.accept(TenantId::from("acme"), vec![item("k", deliver("a"))], Duration::from_secs(60)).await.unwrap();
    let mode = |name: &str| std::fs::metadata(data.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    for name in ["spool.db", "spool.db-wal", "spool.db-shm", "LOCK"] {
        assert_eq!(mode(name), 0o600, "{name}");
    }
    let second = SqliteStore::open(&data, Durability::Os).err().expect("a second spool on the same dir");
    assert!(second.message.contains("in use by another hostd"), "{}", second.message);
}
