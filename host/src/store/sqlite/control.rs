//! The control plane's tables (`tenants`, `routes`, `tokens`, `signing_secrets`,
//! `policy_blobs`, `audit`): their row mappers, the load of all of them in one read
//! transaction, and the deliveries a tenant or route removal has to deal with. The
//! changes are in `control_apply.rs`.
//!
//! Signing secrets are sealed with the at-rest key ([`SqliteStore::with_secret_key`])
//! before they reach the writer and opened after the read; the key's id is stored
//! beside each, so a wrong key is told apart from a damaged row. Neither a secret nor
//! the key appears in an error.

use super::control_apply::{self, Refusal};
use super::SqliteStore;
use crate::clock::now_ms;
use crate::record::TenantId;
use crate::secret_key::SecretKey;
use crate::store::control::{
    AuditEntry, ControlChange, ControlSnapshot, NewAudit, RouteRecord, SecretRecord, TenantRecord, TokenRecord,
};
use crate::store::{StoreError, StoreErrorKind};
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

/// Most deliveries one job of [`SqliteStore::dead_letter_pending`] moves.
const DEAD_LETTER_BATCH: usize = 2000;

/// What a sealed secret is bound to: its tenant, route and id, unambiguously.
pub(super) fn secret_aad(tenant: &str, route: &str, id: &str) -> Vec<u8> {
    serde_json::to_vec(&[tenant, route, id]).unwrap_or_default()
}

/// A `signing_secrets` row as stored, before it is opened.
struct SealedRow {
    tenant: String,
    route: String,
    id: String,
    key_id: String,
    nonce: Vec<u8>,
    sealed: Vec<u8>,
    created_ms: u64,
    expires_ms: Option<u64>,
}

fn conversion(column: usize, kind: Type, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, kind, message.into())
}

/// JSON text in column `i`.
fn json_column(r: &Row<'_>, i: usize) -> rusqlite::Result<Value> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|e| conversion(i, Type::Text, format!("not JSON: {e}")))
}

fn opt_ms(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<u64>> {
    Ok(r.get::<_, Option<i64>>(i)?.map(|v| v as u64))
}

fn tenant(r: &Row<'_>) -> rusqlite::Result<TenantRecord> {
    Ok(TenantRecord {
        id: TenantId::from(r.get::<_, String>(0)?),
        spec: json_column(r, 1)?,
        revision: r.get::<_, i64>(2)? as u64,
        created_ms: r.get::<_, i64>(3)? as u64,
        updated_ms: r.get::<_, i64>(4)? as u64,
    })
}

fn route(r: &Row<'_>) -> rusqlite::Result<RouteRecord> {
    Ok(RouteRecord {
        tenant: TenantId::from(r.get::<_, String>(0)?),
        name: r.get(1)?,
        spec: json_column(r, 2)?,
        revision: r.get::<_, i64>(3)? as u64,
        created_ms: r.get::<_, i64>(4)? as u64,
        updated_ms: r.get::<_, i64>(5)? as u64,
    })
}

fn token(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let scopes = serde_json::from_value(json_column(r, 2)?)
        .map_err(|e| conversion(2, Type::Text, format!("not a list of token scopes: {e}")))?;
    let digest: Vec<u8> = r.get(3)?;
    let digest = <[u8; 32]>::try_from(digest.as_slice())
        .map_err(|_| conversion(3, Type::Blob, format!("a token digest of {} bytes, not 32", digest.len())))?;
    Ok(TokenRecord {
        id: r.get(0)?,
        tenant: TenantId::from(r.get::<_, String>(1)?),
        scopes,
        digest,
        label: r.get(4)?,
        created_ms: r.get::<_, i64>(5)? as u64,
        expires_ms: opt_ms(r, 6)?,
        revoked_ms: opt_ms(r, 7)?,
    })
}

fn sealed_row(r: &Row<'_>) -> rusqlite::Result<SealedRow> {
    Ok(SealedRow {
        tenant: r.get(0)?,
        route: r.get(1)?,
        id: r.get(2)?,
        key_id: r.get(3)?,
        nonce: r.get(4)?,
        sealed: r.get(5)?,
        created_ms: r.get::<_, i64>(6)? as u64,
        expires_ms: opt_ms(r, 7)?,
    })
}

fn audit_entry(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    let json = |i| -> rusqlite::Result<Option<Value>> {
        let text: Option<String> = r.get(i)?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| conversion(i, Type::Text, format!("not JSON: {e}"))))
            .transpose()
    };
    Ok(AuditEntry {
        id: r.get(0)?,
        at_ms: r.get::<_, i64>(1)? as u64,
        actor: r.get(2)?,
        action: r.get(3)?,
        resource: r.get(4)?,
        before: json(5)?,
        after: json(6)?,
    })
}

fn all<T>(conn: &Connection, sql: &str, map: fn(&Row<'_>) -> rusqlite::Result<T>) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], map)?;
    rows.collect()
}

/// The rows of every control-plane table but the blobs and the audit log, in one read
/// transaction (so a load never sees half of a change).
fn select_all(conn: &Connection) -> rusqlite::Result<(ControlSnapshot, Vec<SealedRow>)> {
    let tx = conn.unchecked_transaction()?;
    let snapshot = ControlSnapshot {
        tenants: all(&tx, "SELECT id, spec, revision, created_ms, updated_ms FROM tenants ORDER BY id", tenant)?,
        routes: all(
            &tx,
            "SELECT tenant, name, spec, revision, created_ms, updated_ms FROM routes ORDER BY tenant, name",
            route,
        )?,
        tokens: all(
            &tx,
            "SELECT id, tenant, scopes, digest, label, created_ms, expires_ms, revoked_ms FROM tokens
             ORDER BY tenant, created_ms, id",
            token,
        )?,
        secrets: Vec::new(),
    };
    let sealed = all(
        &tx,
        "SELECT tenant, route, id, key_id, nonce, sealed, created_ms, expires_ms FROM signing_secrets
         ORDER BY tenant, route, created_ms, id",
        sealed_row,
    )?;
    tx.commit()?;
    Ok((snapshot, sealed))
}

impl SqliteStore {
    /// Seals signing secrets with `key` and opens them with it. Without a key, storing a
    /// signing secret, or loading a store that holds some, fails with
    /// [`StoreErrorKind::SecretKey`].
    pub fn with_secret_key(mut self, key: Option<SecretKey>) -> SqliteStore {
        self.secret_key = key;
        self
    }

    fn refused(&self, refusal: Refusal) -> StoreError {
        StoreError { kind: refusal.kind, location: self.location.clone(), message: refusal.message }
    }

    /// Every tenant, route, token and signing secret (opened), as of one moment.
    pub async fn control_load(&self) -> Result<ControlSnapshot, StoreError> {
        let (mut snapshot, sealed) = self.read(select_all).await?;
        snapshot.secrets = self.open_secrets(sealed)?;
        Ok(snapshot)
    }

    fn open_secrets(&self, rows: Vec<SealedRow>) -> Result<Vec<SecretRecord>, StoreError> {
        let key_error = |message: String| self.refused(Refusal { kind: StoreErrorKind::SecretKey, message });
        let Some(first) = rows.first() else { return Ok(Vec::new()) };
        let Some(key) = &self.secret_key else {
            return Err(key_error(format!(
                "the store holds {} signing secret(s) sealed with key `{}`, and no key is set: set \
                 server.secret_key_env (or server.secret_key_file) to the key they were sealed with",
                rows.len(),
                first.key_id
            )));
        };
        let key_id = key.id();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let what = format!("signing secret `{}` of route `{}/{}`", row.id, row.tenant, row.route);
            if row.key_id != key_id {
                return Err(key_error(format!(
                    "{what} was sealed with key `{}`, not with the key from {} (key `{key_id}`): set \
                     server.secret_key_env (or server.secret_key_file) to the key it was sealed with",
                    row.key_id,
                    key.source()
                )));
            }
            let aad = secret_aad(&row.tenant, &row.route, &row.id);
            let plain = key.open(&row.nonce, &row.sealed, &aad).map_err(|_| {
                key_error(format!("{what} does not open with the key from {}: the row is damaged", key.source()))
            })?;
            let secret = String::from_utf8(plain).map_err(|_| key_error(format!("{what} is not text")))?;
            out.push(SecretRecord {
                tenant: TenantId::from(row.tenant),
                route: row.route,
                id: row.id,
                secret,
                created_ms: row.created_ms,
                expires_ms: row.expires_ms,
            });
        }
        Ok(out)
    }

    /// Applies `changes` in order and writes `audit`, in one durable commit, or nothing
    /// of them: the new revision of each put of a tenant or route, 0 for the others.
    pub async fn control_apply(&self, changes: Vec<ControlChange>, audit: NewAudit) -> Result<Vec<u64>, StoreError> {
        let prepared = changes
            .into_iter()
            .map(|c| control_apply::prepare(c, self.secret_key.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|r| self.refused(r))?;
        self.write(move |conn| control_apply::apply(conn, prepared, audit, now_ms()))
            .await?
            .map_err(|r| self.refused(r))
    }

    /// At most `limit` audit entries after id `after`, in id order.
    pub async fn audit_page(&self, after: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at_ms, actor, action, resource, before, after FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after.unwrap_or(0), limit.min(i64::MAX as usize) as i64], audit_entry)?;
            rows.collect()
        })
        .await
    }

    /// The policy component stored under `sha256` (hex), if one is.
    pub async fn policy_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sha256 = sha256.to_ascii_lowercase();
        self.read(move |conn| {
            conn.prepare_cached("SELECT bytes FROM policy_blobs WHERE sha256 = ?1")?
                .query_row([sha256], |r| r.get(0))
                .optional()
        })
        .await
    }

    /// Pending deliveries of `tenant` (to `route` only, when given).
    pub async fn pending_count(&self, tenant: &str, route: Option<&str>) -> Result<u64, StoreError> {
        let (tenant, route) = (tenant.to_string(), route.map(str::to_string));
        self.read(move |conn| {
            conn.prepare_cached("SELECT count(*) FROM deliveries WHERE tenant = ?1 AND (?2 IS NULL OR route = ?2)")?
                .query_row(params![tenant, route], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        })
        .await
    }

    /// Moves every pending delivery of `tenant` (to `route` only, when given) to the DLQ
    /// with `reason`, keeping its attempts and last error, in jobs of at most
    /// [`DEAD_LETTER_BATCH`]; returns how many. For a removal with `?force=true`: the
    /// caller stops the route's queue first (an attempt still running may deliver a
    /// delivery that is then also in the DLQ; none is lost).
    pub async fn dead_letter_pending(
        &self,
        tenant: &str,
        route: Option<&str>,
        reason: &str,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let (tenant, route, reason) = (tenant.to_string(), route.map(str::to_string), reason.to_string());
            let n = self.write(move |conn| dead_letter_batch(conn, &tenant, route.as_deref(), &reason)).await?;
            total += n as u64;
            if n < DEAD_LETTER_BATCH {
                return Ok(total);
            }
        }
    }
}

/// One batch of [`SqliteStore::dead_letter_pending`]: how many it moved.
fn dead_letter_batch(conn: &Connection, tenant: &str, route: Option<&str>, reason: &str) -> rusqlite::Result<usize> {
    let ids: Vec<i64> = {
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM deliveries WHERE tenant = ?1 AND (?2 IS NULL OR route = ?2) ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![tenant, route, DEAD_LETTER_BATCH as i64], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let now = now_ms() as i64;
    let mut copy = conn.prepare_cached(
        "INSERT INTO dlq (tenant, route, idempotency_key, event_kind, key, policy_version, redactions, payload,
                          event, attempts, reason, last_status, last_error, created_ms, dead_ms)
         SELECT tenant, route, idempotency_key, event_kind, key, policy_version, redactions, payload,
                event, attempts, ?2, last_status, last_error, created_ms, ?3 FROM deliveries WHERE id = ?1",
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
    for &id in &ids {
        copy.execute(params![id, reason, now])?;
        delete.execute([id])?;
    }
    Ok(ids.len())
}
