//! The control plane's changes as one writer job: the changes of a
//! [`SqliteStore::control_apply`](super::SqliteStore::control_apply) and its audit
//! entry commit together, or nothing does. A change that is refused (not found, a
//! duplicate, another revision) rolls back those before it in the job's own savepoint
//! and answers the refusal without failing the writer's batch: a refusal is not a
//! spool that cannot write, so `/readyz` stays ready.

use super::control::secret_aad;
use crate::record::TenantId;
use crate::secret_key::{Sealed, SecretKey};
use crate::store::control::{ControlChange, NewAudit, TokenRecord};
use crate::store::StoreErrorKind;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

/// Why a change was refused: the kind a caller branches on, and a message naming the
/// resource.
#[derive(Debug)]
pub(super) struct Refusal {
    pub kind: StoreErrorKind,
    pub message: String,
}

fn refuse(kind: StoreErrorKind, message: String) -> Refusal {
    Refusal { kind, message }
}

/// A change ready for the writer: specs as JSON text, secrets sealed, digests checked.
pub(super) enum Prepared {
    PutTenant {
        id: TenantId,
        spec: String,
        created_ms: u64,
        updated_ms: u64,
        expect: Option<u64>,
    },
    DeleteTenant {
        id: TenantId,
        expect: Option<u64>,
    },
    PutRoute {
        tenant: TenantId,
        name: String,
        spec: String,
        created_ms: u64,
        updated_ms: u64,
        expect: Option<u64>,
    },
    DeleteRoute {
        tenant: TenantId,
        name: String,
        expect: Option<u64>,
    },
    PutToken {
        record: TokenRecord,
        scopes: String,
    },
    RevokeToken {
        id: String,
        at_ms: u64,
    },
    PutSecret {
        tenant: TenantId,
        route: String,
        id: String,
        key_id: String,
        sealed: Sealed,
        created_ms: u64,
        expires_ms: Option<u64>,
    },
    ExpireSecret {
        tenant: TenantId,
        route: String,
        id: String,
        at_ms: u64,
    },
    PutPolicy {
        sha256: String,
        bytes: Vec<u8>,
    },
}

/// Readies `change` outside the writer: seals a secret with `key` (refused without
/// one), checks a policy's digest and a token's scopes.
pub(super) fn prepare(change: ControlChange, key: Option<&SecretKey>) -> Result<Prepared, Refusal> {
    Ok(match change {
        ControlChange::PutTenant { record, expect_revision } => Prepared::PutTenant {
            spec: record.spec.to_string(),
            id: record.id,
            created_ms: record.created_ms,
            updated_ms: record.updated_ms,
            expect: expect_revision,
        },
        ControlChange::DeleteTenant { id, expect_revision } => Prepared::DeleteTenant { id, expect: expect_revision },
        ControlChange::PutRoute { record, expect_revision } => Prepared::PutRoute {
            spec: record.spec.to_string(),
            tenant: record.tenant,
            name: record.name,
            created_ms: record.created_ms,
            updated_ms: record.updated_ms,
            expect: expect_revision,
        },
        ControlChange::DeleteRoute { tenant, name, expect_revision } => {
            Prepared::DeleteRoute { tenant, name, expect: expect_revision }
        }
        ControlChange::PutToken(record) => {
            if record.scopes.is_empty() {
                return Err(refuse(StoreErrorKind::Conflict, format!("token `{}` has no scopes", record.id)));
            }
            let scopes = serde_json::to_string(&record.scopes).unwrap_or_else(|_| "[]".into());
            Prepared::PutToken { record, scopes }
        }
        ControlChange::RevokeToken { id, at_ms } => Prepared::RevokeToken { id, at_ms },
        ControlChange::PutSecret(s) => {
            let Some(key) = key else {
                return Err(refuse(
                    StoreErrorKind::SecretKey,
                    format!(
                        "cannot store signing secret `{}` of route `{}/{}`: no key encrypts secrets at rest; \
                         set server.secret_key_env (or server.secret_key_file) to 32 random bytes \
                         (`openssl rand -hex 32`)",
                        s.id, s.tenant, s.route
                    ),
                ));
            };
            let sealed = key
                .seal(s.secret.as_bytes(), &secret_aad(&s.tenant, &s.route, &s.id))
                .map_err(|e| refuse(StoreErrorKind::SecretKey, e.to_string()))?;
            Prepared::PutSecret {
                tenant: s.tenant,
                route: s.route,
                id: s.id,
                key_id: key.id(),
                sealed,
                created_ms: s.created_ms,
                expires_ms: s.expires_ms,
            }
        }
        ControlChange::ExpireSecret { tenant, route, id, at_ms } => Prepared::ExpireSecret { tenant, route, id, at_ms },
        ControlChange::PutPolicy { sha256, bytes } => {
            let actual = hex::encode(Sha256::digest(&bytes));
            if !actual.eq_ignore_ascii_case(&sha256) {
                return Err(refuse(
                    StoreErrorKind::Conflict,
                    format!("policy `{sha256}`: its bytes have the SHA-256 `{actual}`"),
                ));
            }
            Prepared::PutPolicy { sha256: actual, bytes }
        }
    })
}

/// A change that failed: refused (rolled back, answered) or an SQL error (fails the job).
enum Failed {
    Refused(Refusal),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for Failed {
    fn from(e: rusqlite::Error) -> Self {
        Failed::Sql(e)
    }
}

impl From<Refusal> for Failed {
    fn from(r: Refusal) -> Self {
        Failed::Refused(r)
    }
}

/// Runs `changes` and writes `audit` in a savepoint of the writer's transaction: the
/// new revision of each put of a tenant or route, 0 for the others; or the first
/// refusal, with nothing of the job kept.
pub(super) fn apply(
    conn: &Connection,
    changes: Vec<Prepared>,
    audit: NewAudit,
    now: u64,
) -> rusqlite::Result<Result<Vec<u64>, Refusal>> {
    conn.execute_batch("SAVEPOINT control_apply")?;
    let run = || -> Result<Vec<u64>, Failed> {
        let mut revisions = Vec::with_capacity(changes.len());
        for change in changes {
            revisions.push(step(conn, change, now)?);
        }
        let before = audit.before.as_ref().map(|v| v.to_string());
        let after = audit.after.as_ref().map(|v| v.to_string());
        conn.prepare_cached(
            "INSERT INTO audit (at_ms, actor, action, resource, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![now as i64, audit.actor, audit.action, audit.resource, before, after])?;
        Ok(revisions)
    };
    match run() {
        Ok(revisions) => {
            conn.execute_batch("RELEASE control_apply")?;
            Ok(Ok(revisions))
        }
        Err(Failed::Refused(refusal)) => {
            conn.execute_batch("ROLLBACK TO control_apply; RELEASE control_apply")?;
            Ok(Err(refusal))
        }
        // The writer's savepoint around the job rolls this one back with it.
        Err(Failed::Sql(e)) => Err(e),
    }
}

/// The revision a put leaves `what` at, from the one it is at and the one expected.
fn put_revision(what: &str, current: Option<u64>, expect: Option<u64>) -> Result<u64, Refusal> {
    match (current, expect) {
        (None, None) => Ok(1),
        (Some(_), None) => Err(refuse(StoreErrorKind::Conflict, format!("{what} exists already"))),
        (None, Some(_)) => Err(not_found(what)),
        (Some(at), Some(expected)) if at != expected => Err(other_revision(what, at, expected)),
        (Some(at), Some(_)) => Ok(at + 1),
    }
}

/// Whether `what` may be deleted, at the revision it is at.
fn may_delete(what: &str, current: Option<u64>, expect: Option<u64>) -> Result<(), Refusal> {
    match (current, expect) {
        (None, _) => Err(not_found(what)),
        (Some(at), Some(expected)) if at != expected => Err(other_revision(what, at, expected)),
        _ => Ok(()),
    }
}

fn not_found(what: &str) -> Refusal {
    refuse(StoreErrorKind::NotFound, format!("{what} does not exist"))
}

fn other_revision(what: &str, at: u64, expected: u64) -> Refusal {
    refuse(StoreErrorKind::PreconditionFailed, format!("{what} is at revision {at}, not {expected}"))
}

fn tenant_revision(conn: &Connection, id: &str) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached("SELECT revision FROM tenants WHERE id = ?1")?
        .query_row([id], |r| r.get::<_, i64>(0))
        .optional()
        .map(|r| r.map(|v| v as u64))
}

fn route_revision(conn: &Connection, tenant: &str, name: &str) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached("SELECT revision FROM routes WHERE tenant = ?1 AND name = ?2")?
        .query_row([tenant, name], |r| r.get::<_, i64>(0))
        .optional()
        .map(|r| r.map(|v| v as u64))
}

/// Runs one change; the new revision of a tenant or route put, 0 otherwise.
fn step(conn: &Connection, change: Prepared, now: u64) -> Result<u64, Failed> {
    match change {
        Prepared::PutTenant { id, spec, created_ms, updated_ms, expect } => {
            let revision = put_revision(&format!("tenant `{id}`"), tenant_revision(conn, &id)?, expect)?;
            conn.prepare_cached(
                "INSERT INTO tenants (id, spec, revision, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET spec = ?2, revision = ?3, updated_ms = ?5",
            )?
            .execute(params![id.as_str(), spec, revision as i64, created_ms as i64, updated_ms as i64])?;
            Ok(revision)
        }
        Prepared::DeleteTenant { id, expect } => {
            may_delete(&format!("tenant `{id}`"), tenant_revision(conn, &id)?, expect)?;
            for table in ["routes", "tokens", "signing_secrets"] {
                conn.prepare_cached(&format!("DELETE FROM {table} WHERE tenant = ?1"))?.execute([id.as_str()])?;
            }
            conn.prepare_cached("DELETE FROM tenants WHERE id = ?1")?.execute([id.as_str()])?;
            Ok(0)
        }
        Prepared::PutRoute { tenant, name, spec, created_ms, updated_ms, expect } => {
            if tenant_revision(conn, &tenant)?.is_none() {
                return Err(not_found(&format!("tenant `{tenant}` of route `{tenant}/{name}`")).into());
            }
            let what = format!("route `{tenant}/{name}`");
            let revision = put_revision(&what, route_revision(conn, &tenant, &name)?, expect)?;
            conn.prepare_cached(
                "INSERT INTO routes (tenant, name, spec, revision, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, name) DO UPDATE SET spec = ?3, revision = ?4, updated_ms = ?6",
            )?
            .execute(params![
                tenant.as_str(),
                name,
                spec,
                revision as i64,
                created_ms as i64,
                updated_ms as i64
            ])?;
            Ok(revision)
        }
        Prepared::DeleteRoute { tenant, name, expect } => {
            may_delete(&format!("route `{tenant}/{name}`"), route_revision(conn, &tenant, &name)?, expect)?;
            conn.prepare_cached("DELETE FROM signing_secrets WHERE tenant = ?1 AND route = ?2")?
                .execute([tenant.as_str(), &name])?;
            conn.prepare_cached("DELETE FROM routes WHERE tenant = ?1 AND name = ?2")?
                .execute([tenant.as_str(), &name])?;
            Ok(0)
        }
        Prepared::PutToken { record: t, scopes } => {
            let taken: Option<String> = conn
                .prepare_cached("SELECT id FROM tokens WHERE id = ?1 OR digest = ?2")?
                .query_row(params![t.id, &t.digest[..]], |r| r.get(0))
                .optional()?;
            match taken {
                Some(id) if id == t.id => {
                    Err(refuse(StoreErrorKind::Conflict, format!("token `{id}` exists already")).into())
                }
                Some(_) => Err(refuse(
                    StoreErrorKind::Conflict,
                    format!("token `{}`: another token has the same digest (the same secret)", t.id),
                )
                .into()),
                None => {
                    conn.prepare_cached(
                        "INSERT INTO tokens (id, tenant, scopes, digest, label, created_ms, expires_ms, revoked_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![
                        t.id,
                        t.tenant.as_str(),
                        scopes,
                        &t.digest[..],
                        t.label,
                        t.created_ms as i64,
                        t.expires_ms.map(|v| v as i64),
                        t.revoked_ms.map(|v| v as i64)
                    ])?;
                    Ok(0)
                }
            }
        }
        Prepared::RevokeToken { id, at_ms } => {
            let n = conn
                .prepare_cached("UPDATE tokens SET revoked_ms = coalesce(revoked_ms, ?2) WHERE id = ?1")?
                .execute(params![id, at_ms as i64])?;
            if n == 0 {
                return Err(not_found(&format!("token `{id}`")).into());
            }
            Ok(0)
        }
        Prepared::PutSecret { tenant, route, id, key_id, sealed, created_ms, expires_ms } => {
            if route_revision(conn, &tenant, &route)?.is_none() {
                return Err(not_found(&format!("route `{tenant}/{route}` of signing secret `{id}`")).into());
            }
            let exists = conn
                .prepare_cached("SELECT 1 FROM signing_secrets WHERE tenant = ?1 AND route = ?2 AND id = ?3")?
                .exists([tenant.as_str(), &route, &id])?;
            if exists {
                let what = format!("signing secret `{id}` of route `{tenant}/{route}` exists already");
                return Err(refuse(StoreErrorKind::Conflict, what).into());
            }
            conn.prepare_cached("DELETE FROM signing_secrets WHERE tenant = ?1 AND route = ?2 AND expires_ms < ?3")?
                .execute(params![tenant.as_str(), route, created_ms as i64])?;
            conn.prepare_cached(
                "INSERT INTO signing_secrets (tenant, route, id, key_id, nonce, sealed, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                tenant.as_str(),
                route,
                id,
                key_id,
                &sealed.nonce[..],
                sealed.ciphertext,
                created_ms as i64,
                expires_ms.map(|v| v as i64)
            ])?;
            Ok(0)
        }
        Prepared::ExpireSecret { tenant, route, id, at_ms } => {
            let n = conn
                .prepare_cached(
                    "UPDATE signing_secrets SET expires_ms = ?4 WHERE tenant = ?1 AND route = ?2 AND id = ?3",
                )?
                .execute(params![tenant.as_str(), route, id, at_ms as i64])?;
            if n == 0 {
                return Err(not_found(&format!("signing secret `{id}` of route `{tenant}/{route}`")).into());
            }
            Ok(0)
        }
        Prepared::PutPolicy { sha256, bytes } => {
            conn.prepare_cached("INSERT OR IGNORE INTO policy_blobs (sha256, bytes, stored_ms) VALUES (?1, ?2, ?3)")?
                .execute(params![sha256, bytes, now as i64])?;
            Ok(0)
        }
    }
}
