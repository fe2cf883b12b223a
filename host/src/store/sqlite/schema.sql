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
