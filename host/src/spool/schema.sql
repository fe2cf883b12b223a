-- The spool: everything hostd acknowledged and has not finished with.
CREATE TABLE IF NOT EXISTS dedupe (
  tenant          TEXT    NOT NULL,
  idempotency_key TEXT    NOT NULL,
  accepted_ms     INTEGER NOT NULL,
  PRIMARY KEY (tenant, idempotency_key)
) WITHOUT ROWID;

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
CREATE TABLE IF NOT EXISTS dlq (
  id              INTEGER PRIMARY KEY,
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
