-- 0001: the event store (SQLite, the embedded default). Released migrations are never edited.
-- Same tables and rules as migrations/postgres/0001_event_store.sql. One writer for the whole
-- file commits in id order, so id alone orders subscriptions without gaps.

CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    school_id       TEXT NOT NULL,
    school_seq      INTEGER NOT NULL CHECK (school_seq > 0),
    stream_id       TEXT NOT NULL,
    stream_version  INTEGER NOT NULL CHECK (stream_version > 0),
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    schema_version  INTEGER NOT NULL CHECK (schema_version > 0),
    -- Canonical JSON (RFC 8785, integers only) exactly as hashed; sealed fields as ciphertext.
    data            TEXT NOT NULL,
    actor_id        TEXT,
    actor_role      TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    causation_id    TEXT,
    -- UTC, microseconds: YYYY-MM-DDTHH:MM:SS.ffffffZ
    occurred_at     TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    idempotency_key TEXT,
    prev_hash       BLOB NOT NULL CHECK (length(prev_hash) = 32),
    hash            BLOB NOT NULL CHECK (length(hash) = 32),
    UNIQUE (school_id, school_seq),
    UNIQUE (school_id, stream_id, stream_version),
    UNIQUE (school_id, event_id)
) STRICT;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable: UPDATE is not allowed');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable: DELETE is not allowed');
END;

CREATE TABLE school_heads (
    school_id  TEXT PRIMARY KEY,
    last_seq   INTEGER NOT NULL CHECK (last_seq > 0),
    last_hash  BLOB NOT NULL CHECK (length(last_hash) = 32)
) STRICT;

CREATE TABLE idempotency_keys (
    school_id       TEXT NOT NULL,
    key             TEXT NOT NULL,
    fingerprint     BLOB NOT NULL,
    stream_version  INTEGER NOT NULL,
    first_seq       INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (school_id, key)
) STRICT;

CREATE TABLE subject_keys (
    school_id   TEXT NOT NULL,
    subject_id  TEXT NOT NULL,
    wrapped_key BLOB,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    erased_at   TEXT,
    PRIMARY KEY (school_id, subject_id),
    CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
) STRICT;
