-- 0003: attachments (allegati), the files of communications. Released migrations are never
-- edited: add a new file instead.
--
-- attachments  each school's files, stored once under the SHA-256 of their bytes. They are not
--              events: events name them by hash, which pins their bytes. Never updated.

CREATE TABLE attachments (
    school_id   uuid NOT NULL,
    -- SHA-256 of content, computed by the store.
    hash        bytea NOT NULL CHECK (length(hash) = 32),
    -- As given when the bytes were first stored; registro checks only its length.
    media_type  text NOT NULL CHECK (length(media_type) BETWEEN 1 AND 100),
    size        bigint NOT NULL CHECK (size = length(content)),
    content     bytea NOT NULL,
    stored_at   timestamptz NOT NULL,
    PRIMARY KEY (school_id, hash)
);

-- Row-level security as in migration 0002: a transaction sees and writes only the attachments
-- of the school it names (or of every school when it declares so).
ALTER TABLE attachments ENABLE ROW LEVEL SECURITY;
ALTER TABLE attachments FORCE ROW LEVEL SECURITY;
CREATE POLICY school_isolation ON attachments
    USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))
    WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()));
