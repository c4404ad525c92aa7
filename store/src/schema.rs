//! The schema, as numbered migrations per engine. The version is recorded in
//! `bankconnect_meta`; migrations run at open, each in its own transaction, and a database whose
//! version is newer than [`LATEST`] is refused.

/// The newest schema version this build knows.
pub const LATEST: i64 = 3;

/// SQLite migrations: index 0 brings an empty database to version 1, and so on.
pub(crate) const SQLITE: &[&str] = &[
    r"
CREATE TABLE sessions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL UNIQUE,
    reference TEXT CHECK (length(reference) <= 1024),
    state TEXT NOT NULL CHECK (state IN ('tracking', 'finished', 'cancelled')),
    added_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    max_wait_ms INTEGER,
    outcome TEXT,
    tracker_state TEXT,
    lease_owner TEXT,
    lease_until_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_state ON sessions (state, seq);
CREATE INDEX sessions_claimable ON sessions (lease_until_ms, seq) WHERE state = 'tracking';
CREATE TABLE accepted_webhooks (
    dedupe_key TEXT PRIMARY KEY,
    received_at_ms INTEGER NOT NULL,
    session_id TEXT,
    event TEXT NOT NULL
);
CREATE INDEX accepted_webhooks_by_time ON accepted_webhooks (received_at_ms);
CREATE TABLE pending_webhooks (
    session_id TEXT PRIMARY KEY,
    received_at_ms INTEGER NOT NULL,
    authenticated INTEGER NOT NULL,
    hint TEXT NOT NULL
);
CREATE INDEX pending_webhooks_by_time ON pending_webhooks (received_at_ms);
CREATE TABLE replicas (
    replica_id TEXT PRIMARY KEY,
    started_at_ms INTEGER NOT NULL,
    heartbeat_at_ms INTEGER NOT NULL
);
CREATE TABLE outbox (
    session_id TEXT PRIMARY KEY REFERENCES sessions (session_id),
    webhook_id TEXT NOT NULL CHECK (length(webhook_id) BETWEEN 1 AND 256),
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failing', 'given_up')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER,
    last_error TEXT,
    claimed_by TEXT,
    claim_until_ms INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX outbox_due ON outbox (next_attempt_ms) WHERE state IN ('pending', 'failing');
",
    r"
-- 2: a replica that takes a session over reads its accepted webhooks.
CREATE INDEX accepted_webhooks_by_session ON accepted_webhooks (session_id);
",
    r"
-- 3: the sessions a replica holds (PostgreSQL had it from version 1).
CREATE INDEX IF NOT EXISTS sessions_by_owner ON sessions (lease_owner) WHERE state = 'tracking';
",
];

/// PostgreSQL migrations, in step with [`SQLITE`].
pub(crate) const POSTGRES: &[&str] = &[
    r"
CREATE TABLE sessions (
    seq BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL UNIQUE,
    reference TEXT CHECK (length(reference) <= 1024),
    state TEXT NOT NULL CHECK (state IN ('tracking', 'finished', 'cancelled')),
    added_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    max_wait_ms BIGINT,
    outcome TEXT,
    tracker_state TEXT,
    lease_owner TEXT,
    lease_until_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_state ON sessions (state, seq);
CREATE INDEX sessions_claimable ON sessions (lease_until_ms, seq) WHERE state = 'tracking';
CREATE INDEX sessions_by_owner ON sessions (lease_owner) WHERE state = 'tracking';
CREATE TABLE accepted_webhooks (
    dedupe_key TEXT PRIMARY KEY,
    received_at_ms BIGINT NOT NULL,
    session_id TEXT,
    event TEXT NOT NULL
);
CREATE INDEX accepted_webhooks_by_time ON accepted_webhooks (received_at_ms);
CREATE TABLE pending_webhooks (
    session_id TEXT PRIMARY KEY,
    received_at_ms BIGINT NOT NULL,
    authenticated BOOLEAN NOT NULL,
    hint TEXT NOT NULL
);
CREATE INDEX pending_webhooks_by_time ON pending_webhooks (received_at_ms);
CREATE TABLE replicas (
    replica_id TEXT PRIMARY KEY,
    started_at_ms BIGINT NOT NULL,
    heartbeat_at_ms BIGINT NOT NULL
);
CREATE TABLE outbox (
    session_id TEXT PRIMARY KEY REFERENCES sessions (session_id),
    webhook_id TEXT NOT NULL CHECK (length(webhook_id) BETWEEN 1 AND 256),
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failing', 'given_up')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT,
    last_error TEXT,
    claimed_by TEXT,
    claim_until_ms BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_ms) WHERE state IN ('pending', 'failing');
",
    r"
-- 2: a replica that takes a session over reads its accepted webhooks.
CREATE INDEX accepted_webhooks_by_session ON accepted_webhooks (session_id);
",
    r"
-- 3: in step with SQLite's version 3 (this index was here from version 1).
CREATE INDEX IF NOT EXISTS sessions_by_owner ON sessions (lease_owner) WHERE state = 'tracking';
",
];
