-- 0002: attachments (allegati), the files of communications (SQLite). Released migrations are
-- never edited. Same table and rules as migrations/postgres/0003_attachments.sql (SQLite has no
-- row-level security: every query names its school).

CREATE TABLE attachments (
    school_id   TEXT NOT NULL,
    -- SHA-256 of content, computed by the store.
    hash        BLOB NOT NULL CHECK (length(hash) = 32),
    -- As given when the bytes were first stored; registro checks only its length.
    media_type  TEXT NOT NULL CHECK (length(media_type) BETWEEN 1 AND 100),
    size        INTEGER NOT NULL CHECK (size = length(content)),
    content     BLOB NOT NULL,
    -- UTC, microseconds: YYYY-MM-DDTHH:MM:SS.ffffffZ
    stored_at   TEXT NOT NULL,
    PRIMARY KEY (school_id, hash)
) STRICT;
