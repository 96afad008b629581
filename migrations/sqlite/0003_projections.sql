-- 0003: the projection runtime (SQLite). Released migrations are never edited. Same tables and
-- rules as migrations/postgres/0004_projections.sql: the runtime's, across schools, without
-- school_id.

CREATE TABLE projection_checkpoints (
    name        TEXT PRIMARY KEY,
    -- The position of the last event applied: tx is always 0 on SQLite, id the events' id.
    tx          INTEGER NOT NULL CHECK (tx >= 0),
    id          INTEGER NOT NULL CHECK (id >= 0),
    -- UTC, microseconds: YYYY-MM-DDTHH:MM:SS.ffffffZ
    updated_at  TEXT NOT NULL
) STRICT;

CREATE TABLE projection_steps (
    name        TEXT NOT NULL,
    step        INTEGER NOT NULL CHECK (step > 0),
    -- SHA-256 of the step's SQL, in hex: an applied step that changed is refused.
    checksum    TEXT NOT NULL,
    applied_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (name, step)
) STRICT;
