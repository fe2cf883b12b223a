-- The spool: everything hostd acknowledged and has not finished with.
CREATE TABLE IF NOT EXISTS dedupe (
  tenant          TEXT    NOT NULL,
  idempotency_key TEXT    NOT NULL,
  accepted_ms     INTEGER NOT NULL,
  PRIMARY KEY (tenant, idempotency_key)
) WITHOUT ROWID;
-- Expiry deletes by age in small batches: without this each batch would scan the table.
CREATE INDEX IF NOT EXISTS dedupe_by_accepted ON dedupe (accepted_ms);

-- Shaped deliveries waiting for their next attempt; a row is deleted when delivered
-- or moved to dlq when it fails for good.
CREATE TABLE IF NOT EXISTS deliveries (
  id              INTEGER PRIMARY KEY,
  tenant          TEXT    NOT NULL,
  route           TEXT    NOT NULL,
  idempotency_key TEXT    NOT NULL,
  event_kind      TEXT    NOT NULL,
  key             TEXT    NOT NULL,
  policy_version  TEXT    NOT NULL,
  redactions      TEXT    NOT NULL,
  payload         TEXT    NOT NULL,
  event           TEXT    NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL,
  created_ms      INTEGER NOT NULL,
  last_status     INTEGER,
  last_error      TEXT
);

-- Dead letters: failed deliveries (route and payload set) and policy faults (not).
-- AUTOINCREMENT: an id is never handed out twice, so a stale id (a replay or purge
-- still running, `hostd dlq replay 42` typed from an old listing) can never name a
-- later entry of another tenant. `event` is JSON `null` when the tenant does not keep
-- original events (keep_original = false).
CREATE TABLE IF NOT EXISTS dlq (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant          TEXT    NOT NULL,
  route           TEXT,
  idempotency_key TEXT    NOT NULL,
  event_kind      TEXT    NOT NULL,
  key             TEXT,
  policy_version  TEXT,
  redactions      TEXT,
  payload         TEXT,
  event           TEXT    NOT NULL,
  attempts        INTEGER NOT NULL,
  reason          TEXT    NOT NULL,
  last_status     INTEGER,
  last_error      TEXT,
  created_ms      INTEGER NOT NULL,
  dead_ms         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dlq_by_tenant ON dlq (tenant, dead_ms);
-- Retention deletes by age in small batches.
CREATE INDEX IF NOT EXISTS dlq_by_dead ON dlq (dead_ms);

-- One row a readiness check rewrites to find out whether the spool can commit.
CREATE TABLE IF NOT EXISTS write_probe (
  id              INTEGER PRIMARY KEY,
  probed_ms       INTEGER NOT NULL
);

-- The control plane (tenants, routes, tokens and signing secrets created through the
-- management API) and its audit log. Added in issue 11: an older spool gets these
-- tables when it is opened (IF NOT EXISTS), nothing else changes. A tenant's and a
-- route's `spec` is JSON text; `revision` starts at 1 and grows by one per change.
CREATE TABLE IF NOT EXISTS tenants (
  id              TEXT    PRIMARY KEY,
  spec            TEXT    NOT NULL,
  revision        INTEGER NOT NULL,
  created_ms      INTEGER NOT NULL,
  updated_ms      INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS routes (
  tenant          TEXT    NOT NULL,
  name            TEXT    NOT NULL,
  spec            TEXT    NOT NULL,
  revision        INTEGER NOT NULL,
  created_ms      INTEGER NOT NULL,
  updated_ms      INTEGER NOT NULL,
  PRIMARY KEY (tenant, name)
) WITHOUT ROWID;

-- A token is kept as the SHA-256 of its secret, never the secret. `scopes` is a JSON
-- array ("ingest", "manage", "read-only"). Its tenant may be a config-file tenant.
CREATE TABLE IF NOT EXISTS tokens (
  id              TEXT    PRIMARY KEY,
  tenant          TEXT    NOT NULL,
  scopes          TEXT    NOT NULL,
  digest          BLOB    NOT NULL UNIQUE,
  label           TEXT,
  created_ms      INTEGER NOT NULL,
  expires_ms      INTEGER,
  revoked_ms      INTEGER
);
CREATE INDEX IF NOT EXISTS tokens_by_tenant ON tokens (tenant);

-- Signing secrets, sealed with XChaCha20-Poly1305 under the server.secret_key_* key
-- (`key_id` names it), a random nonce per row, bound to (tenant, route, id).
CREATE TABLE IF NOT EXISTS signing_secrets (
  tenant          TEXT    NOT NULL,
  route           TEXT    NOT NULL,
  id              TEXT    NOT NULL,
  key_id          TEXT    NOT NULL,
  nonce           BLOB    NOT NULL,
  sealed          BLOB    NOT NULL,
  created_ms      INTEGER NOT NULL,
  expires_ms      INTEGER,
  PRIMARY KEY (tenant, route, id)
) WITHOUT ROWID;

-- Policy components uploaded through the API, by the hex SHA-256 of their bytes.
CREATE TABLE IF NOT EXISTS policy_blobs (
  sha256          TEXT    NOT NULL UNIQUE,
  bytes           BLOB    NOT NULL,
  stored_ms       INTEGER NOT NULL
);

-- Every control-plane change: who (`admin` or a token id), what, when, and the
-- resource before and after (JSON, without secrets). Ids are never reused.
CREATE TABLE IF NOT EXISTS audit (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms           INTEGER NOT NULL,
  actor           TEXT    NOT NULL,
  action          TEXT    NOT NULL,
  resource        TEXT    NOT NULL,
  before          TEXT,
  after           TEXT
);
