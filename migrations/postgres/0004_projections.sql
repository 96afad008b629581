-- 0004: the projection runtime (docs/decisions/0019-projection-runtime.md). Released migrations
-- are never edited: add a new file instead.
--
-- projection_checkpoints  each projection's position in the log: the last event applied,
--                         moved in the same transaction as the projection's rows
-- projection_steps        the DDL steps of each projection's tables applied so far, with their
--                         checksums (like registro_migrations)
--
-- Both belong to the runtime, across schools: they carry no school_id and no row-level
-- security. A projection's own tables carry school_id and are held like the event tables
-- (migration 0002): their DDL enables and forces row-level security with the same policy.

CREATE TABLE projection_checkpoints (
    name        text PRIMARY KEY,
    -- The position of the last event applied: (tx, id) of the events table, (0, 0) before the
    -- first.
    tx          bigint NOT NULL CHECK (tx >= 0),
    id          bigint NOT NULL CHECK (id >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projection_steps (
    name        text NOT NULL,
    -- From 1, in the order the projection declares them.
    step        integer NOT NULL CHECK (step > 0),
    -- SHA-256 of the step's SQL, in hex: an applied step that changed is refused.
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, step)
);
