//! The schema, as numbered migrations per engine. The version is recorded in
//! `bankconnect_meta`; migrations run at open, each in its own transaction, and a database whose
//! version is newer than [`LATEST`] is refused.

/// The newest schema version this build knows.
pub const LATEST: i64 = 6;

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
    r"
-- 4: operations (docs/operations.md): each session's history, the columns and indexes its
-- filters use, retracking, the fleet-wide delivery switch and health, retention.
ALTER TABLE sessions ADD COLUMN outcome_kind TEXT;
ALTER TABLE sessions ADD COLUMN finished_at_ms INTEGER;
ALTER TABLE sessions ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN events_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN tracked_at_ms INTEGER;
UPDATE sessions SET outcome_kind = json_extract(outcome, '$.outcome'), finished_at_ms = updated_at_ms
    WHERE state = 'finished';
CREATE INDEX sessions_by_reference ON sessions (reference, seq) WHERE reference IS NOT NULL;
CREATE INDEX sessions_by_id_prefix ON sessions (session_id);
CREATE INDEX sessions_by_outcome ON sessions (outcome_kind, seq) WHERE outcome_kind IS NOT NULL;
CREATE INDEX sessions_by_added ON sessions (added_at_ms);
CREATE INDEX sessions_by_finished ON sessions (finished_at_ms) WHERE finished_at_ms IS NOT NULL;
CREATE INDEX sessions_prunable ON sessions (updated_at_ms) WHERE state <> 'tracking';
CREATE INDEX outbox_by_state ON outbox (state, created_at_ms);
ALTER TABLE outbox ADD COLUMN session_seq INTEGER;
UPDATE outbox SET session_seq = (SELECT seq FROM sessions WHERE sessions.session_id = outbox.session_id);
CREATE INDEX outbox_by_state_seq ON outbox (state, session_seq);
CREATE TABLE session_events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    replica TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE session_error_codes (
    code TEXT NOT NULL,
    session_seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (code, session_seq)
) WITHOUT ROWID;
CREATE INDEX session_error_codes_by_time ON session_error_codes (at_ms);
CREATE INDEX session_error_codes_by_session ON session_error_codes (session_seq);
CREATE TABLE delivery_control (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    paused INTEGER NOT NULL DEFAULT 0,
    last_success_ms INTEGER,
    last_failure_ms INTEGER,
    last_failure_error TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0
);
INSERT INTO delivery_control (id) VALUES (1);
",
    r"
-- 5: counts kept as rows change (the overview and GET /v1/stats read a few rows, not every
-- session): sessions and deliveries per state, and outcomes and error codes per 5-minute
-- bucket of when they were committed. Each count mirrors its table exactly. (`shard` is always
-- 0 here; PostgreSQL splits a count over several rows.)
CREATE TABLE state_counts (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    shard INTEGER NOT NULL DEFAULT 0,
    n INTEGER NOT NULL,
    PRIMARY KEY (scope, name, shard)
) WITHOUT ROWID;
CREATE TABLE window_counts (
    scope TEXT NOT NULL,
    bucket_ms INTEGER NOT NULL,
    name TEXT NOT NULL,
    shard INTEGER NOT NULL DEFAULT 0,
    n INTEGER NOT NULL,
    PRIMARY KEY (scope, bucket_ms, name, shard)
) WITHOUT ROWID;
INSERT INTO state_counts (scope, name, n) SELECT 'session', state, count(*) FROM sessions GROUP BY state;
INSERT INTO state_counts (scope, name, n) SELECT 'delivery', state, count(*) FROM outbox GROUP BY state;
INSERT INTO window_counts (scope, bucket_ms, name, n)
    SELECT 'outcome', finished_at_ms / 300000 * 300000 AS b, outcome_kind, count(*) FROM sessions
    WHERE finished_at_ms IS NOT NULL AND outcome_kind IS NOT NULL GROUP BY b, outcome_kind;
INSERT INTO window_counts (scope, bucket_ms, name, n)
    SELECT 'error_code', at_ms / 300000 * 300000 AS b, code, count(*) FROM session_error_codes
    GROUP BY b, code;
CREATE TRIGGER sessions_counted_insert AFTER INSERT ON sessions BEGIN
    INSERT INTO state_counts (scope, name, n) VALUES ('session', NEW.state, 1)
        ON CONFLICT (scope, name, shard) DO UPDATE SET n = n + 1;
    INSERT INTO window_counts (scope, bucket_ms, name, n)
        SELECT 'outcome', NEW.finished_at_ms / 300000 * 300000, NEW.outcome_kind, 1
        WHERE NEW.finished_at_ms IS NOT NULL AND NEW.outcome_kind IS NOT NULL
        ON CONFLICT (scope, bucket_ms, name, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER sessions_counted_state AFTER UPDATE OF state ON sessions
WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE state_counts SET n = n - 1 WHERE scope = 'session' AND name = OLD.state;
    INSERT INTO state_counts (scope, name, n) VALUES ('session', NEW.state, 1)
        ON CONFLICT (scope, name, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER sessions_counted_outcome AFTER UPDATE OF finished_at_ms, outcome_kind ON sessions
WHEN OLD.finished_at_ms IS NOT NEW.finished_at_ms OR OLD.outcome_kind IS NOT NEW.outcome_kind BEGIN
    UPDATE window_counts SET n = n - 1 WHERE scope = 'outcome'
        AND bucket_ms = OLD.finished_at_ms / 300000 * 300000 AND name = OLD.outcome_kind;
    DELETE FROM window_counts WHERE scope = 'outcome'
        AND bucket_ms = OLD.finished_at_ms / 300000 * 300000 AND name = OLD.outcome_kind AND n <= 0;
    INSERT INTO window_counts (scope, bucket_ms, name, n)
        SELECT 'outcome', NEW.finished_at_ms / 300000 * 300000, NEW.outcome_kind, 1
        WHERE NEW.finished_at_ms IS NOT NULL AND NEW.outcome_kind IS NOT NULL
        ON CONFLICT (scope, bucket_ms, name, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER sessions_counted_delete AFTER DELETE ON sessions BEGIN
    UPDATE state_counts SET n = n - 1 WHERE scope = 'session' AND name = OLD.state;
    UPDATE window_counts SET n = n - 1 WHERE scope = 'outcome'
        AND bucket_ms = OLD.finished_at_ms / 300000 * 300000 AND name = OLD.outcome_kind;
    DELETE FROM window_counts WHERE scope = 'outcome'
        AND bucket_ms = OLD.finished_at_ms / 300000 * 300000 AND name = OLD.outcome_kind AND n <= 0;
END;
CREATE TRIGGER outbox_counted_insert AFTER INSERT ON outbox BEGIN
    INSERT INTO state_counts (scope, name, n) VALUES ('delivery', NEW.state, 1)
        ON CONFLICT (scope, name, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER outbox_counted_state AFTER UPDATE OF state ON outbox
WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE state_counts SET n = n - 1 WHERE scope = 'delivery' AND name = OLD.state;
    INSERT INTO state_counts (scope, name, n) VALUES ('delivery', NEW.state, 1)
        ON CONFLICT (scope, name, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER outbox_counted_delete AFTER DELETE ON outbox BEGIN
    UPDATE state_counts SET n = n - 1 WHERE scope = 'delivery' AND name = OLD.state;
END;
CREATE TRIGGER error_codes_counted_insert AFTER INSERT ON session_error_codes BEGIN
    INSERT INTO window_counts (scope, bucket_ms, name, n) VALUES ('error_code', NEW.at_ms / 300000 * 300000, NEW.code, 1)
        ON CONFLICT (scope, bucket_ms, name, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER error_codes_counted_delete AFTER DELETE ON session_error_codes BEGIN
    UPDATE window_counts SET n = n - 1 WHERE scope = 'error_code'
        AND bucket_ms = OLD.at_ms / 300000 * 300000 AND name = OLD.code;
    DELETE FROM window_counts WHERE scope = 'error_code'
        AND bucket_ms = OLD.at_ms / 300000 * 300000 AND name = OLD.code AND n <= 0;
END;
",
    r"
-- 6: the outbox rebuilt with its state checked by equalities. SQLite codes an IN list of
-- more than two values as a temporary b-tree, built afresh on every run of a statement that
-- sets the state: a sixth of recording a delivery attempt, measured. Same columns, indexes
-- and rows; the counts are not touched (the copy fires no trigger). A change of state is no
-- longer counted by a trigger (two statements per row): its writers count their batch's
-- moves once (`DeliveryMoves`); inserts and deletes are still counted by triggers.
CREATE TABLE outbox_rebuilt (
    session_id TEXT PRIMARY KEY REFERENCES sessions (session_id),
    webhook_id TEXT NOT NULL CHECK (length(webhook_id) BETWEEN 1 AND 256),
    state TEXT NOT NULL CHECK (state = 'pending' OR state = 'delivered' OR state = 'failing' OR state = 'given_up'),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER,
    last_error TEXT,
    claimed_by TEXT,
    claim_until_ms INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    session_seq INTEGER
) WITHOUT ROWID;
INSERT INTO outbox_rebuilt (session_id, webhook_id, state, attempts, next_attempt_ms, last_error,
    claimed_by, claim_until_ms, created_at_ms, updated_at_ms, session_seq)
    SELECT session_id, webhook_id, state, attempts, next_attempt_ms, last_error,
    claimed_by, claim_until_ms, created_at_ms, updated_at_ms, session_seq FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_rebuilt RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_attempt_ms) WHERE state IN ('pending', 'failing');
CREATE INDEX outbox_by_state ON outbox (state, created_at_ms);
CREATE INDEX outbox_by_state_seq ON outbox (state, session_seq);
CREATE TRIGGER outbox_counted_insert AFTER INSERT ON outbox BEGIN
    INSERT INTO state_counts (scope, name, n) VALUES ('delivery', NEW.state, 1)
        ON CONFLICT (scope, name, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER outbox_counted_delete AFTER DELETE ON outbox BEGIN
    UPDATE state_counts SET n = n - 1 WHERE scope = 'delivery' AND name = OLD.state;
END;
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
    r#"
-- 4: in step with SQLite's version 4. Prefix and exact matches on ids and references compare
-- bytes (COLLATE "C"), as SQLite does, so that a range over the index finds a prefix.
ALTER TABLE sessions ADD COLUMN outcome_kind TEXT;
ALTER TABLE sessions ADD COLUMN finished_at_ms BIGINT;
ALTER TABLE sessions ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN events_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN tracked_at_ms BIGINT;
UPDATE sessions SET outcome_kind = (outcome::jsonb)->>'outcome', finished_at_ms = updated_at_ms
    WHERE state = 'finished';
CREATE INDEX sessions_by_reference ON sessions ((reference COLLATE "C"), seq) WHERE reference IS NOT NULL;
CREATE INDEX sessions_by_id_prefix ON sessions ((session_id COLLATE "C"));
CREATE INDEX sessions_by_outcome ON sessions (outcome_kind, seq) WHERE outcome_kind IS NOT NULL;
CREATE INDEX sessions_by_added ON sessions (added_at_ms);
CREATE INDEX sessions_by_finished ON sessions (finished_at_ms) WHERE finished_at_ms IS NOT NULL;
CREATE INDEX sessions_prunable ON sessions (updated_at_ms) WHERE state <> 'tracking';
CREATE INDEX outbox_by_state ON outbox (state, created_at_ms);
ALTER TABLE outbox ADD COLUMN session_seq BIGINT;
UPDATE outbox SET session_seq = (SELECT seq FROM sessions WHERE sessions.session_id = outbox.session_id);
CREATE INDEX outbox_by_state_seq ON outbox (state, session_seq);
CREATE TABLE session_events (
    session_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    replica TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE session_error_codes (
    code TEXT NOT NULL,
    session_seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (code, session_seq)
);
CREATE INDEX session_error_codes_by_time ON session_error_codes (at_ms);
CREATE INDEX session_error_codes_by_session ON session_error_codes (session_seq);
CREATE TABLE delivery_control (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    last_success_ms BIGINT,
    last_failure_ms BIGINT,
    last_failure_error TEXT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0
);
INSERT INTO delivery_control (id) VALUES (1);
"#,
    r"
-- 5: in step with SQLite's version 5 (the same tables). On PostgreSQL nothing fills them yet:
-- kept by triggers, the counts' rows were locked midway through every writing transaction and
-- a fleet's commits deadlocked on them (40P01, seen in the chaos run), so this engine counts
-- by scanning until the counts are kept as append-only deltas that no writer waits on.
CREATE TABLE state_counts (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    shard INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (scope, name, shard)
);
CREATE TABLE window_counts (
    scope TEXT NOT NULL,
    bucket_ms BIGINT NOT NULL,
    name TEXT NOT NULL,
    shard INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (scope, bucket_ms, name, shard)
);
",
    r"
-- 6: in step with SQLite's version 6, which rebuilt its outbox for a cheaper state check;
-- PostgreSQL checks an IN list cheaply, so nothing changes here.
SELECT 1;
",
];
