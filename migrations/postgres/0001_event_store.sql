-- 0001: the event store. Released migrations are never edited: add a new file instead.
--
-- events        the append-only log of every school, hash-chained per school
-- school_heads  each school's last school_seq and hash, updated in the append transaction
-- idempotency_keys  the first result of each idempotent append, for retries
-- subject_keys  per data subject keys for sealed fields, wrapped by the master key

CREATE TABLE events (
    -- Insertion order; becomes visible at commit, so readers never rely on it alone.
    id              bigint GENERATED ALWAYS AS IDENTITY,
    -- The appending transaction: subscribers read in (tx, id) order below the xmin fence.
    tx              xid8 NOT NULL DEFAULT pg_current_xact_id(),
    school_id       uuid NOT NULL,
    school_seq      bigint NOT NULL CHECK (school_seq > 0),
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL CHECK (stream_version > 0),
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    schema_version  integer NOT NULL CHECK (schema_version > 0),
    -- Canonical JSON (RFC 8785, integers only) exactly as hashed; sealed fields as ciphertext.
    data            text NOT NULL,
    actor_id        uuid,
    actor_role      text NOT NULL,
    correlation_id  uuid NOT NULL,
    causation_id    uuid,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    idempotency_key text,
    prev_hash       bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash            bytea NOT NULL CHECK (length(hash) = 32),
    -- Every key starts with school_id: ready for partitioning or distribution by school.
    PRIMARY KEY (school_id, school_seq),
    CONSTRAINT events_stream_version_key UNIQUE (school_id, stream_id, stream_version),
    CONSTRAINT events_event_id_key UNIQUE (school_id, event_id)
);

CREATE INDEX events_subscription_idx ON events (tx, id);

-- Immutability: an event is never updated or deleted. (A superuser can still disable the
-- trigger; the hash chain is what makes such tampering evident.)
CREATE FUNCTION registro_events_are_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_immutable
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION registro_events_are_immutable();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION registro_events_are_immutable();

CREATE TABLE school_heads (
    school_id  uuid PRIMARY KEY,
    last_seq   bigint NOT NULL CHECK (last_seq > 0),
    last_hash  bytea NOT NULL CHECK (length(last_hash) = 32)
);

CREATE TABLE idempotency_keys (
    school_id       uuid NOT NULL,
    key             text NOT NULL,
    -- SHA-256 of the request: the same key with another request is refused.
    fingerprint     bytea NOT NULL,
    stream_version  bigint NOT NULL,
    first_seq       bigint NOT NULL,
    last_seq        bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school_id, key)
);

CREATE TABLE subject_keys (
    school_id   uuid NOT NULL,
    subject_id  uuid NOT NULL,
    -- nonce || XChaCha20-Poly1305(master key, subject key); NULL once destroyed.
    wrapped_key bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    erased_at   timestamptz,
    PRIMARY KEY (school_id, subject_id),
    CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);
