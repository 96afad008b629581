-- 0006: an append in one statement, when the adapter predicted the state it appends on
-- (docs/decisions/0036-predicted-appends.md). Released migrations are never edited: add a new
-- file instead.
--
-- The adapter computes the events' rows (school_seq, stream_version, the chain hashes) from the
-- school's head and the stream's version as it last saw them, and calls this function, which
-- takes the school's lock, checks every prediction and writes only when all of them hold: the
-- head is the one the rows chain from, the stream and every guarded stream are at the versions
-- decided on, the idempotency key is new. Otherwise it writes nothing and answers false, and
-- the adapter appends the long way, reading the state under the lock (its checks and errors are
-- the same as ever). Runs as its caller: row-level security holds it as any statement.

CREATE FUNCTION registro_append_predicted(
    p_school         uuid,
    p_lock           bigint,
    p_stream         text,
    p_version        bigint,
    p_guard_streams  text[],
    p_guard_versions bigint[],
    p_head_seq       bigint,
    p_head_hash      bytea,
    p_idempotency    text,
    p_fingerprint    bytea,
    p_actor          uuid,
    p_role           text,
    p_correlation    uuid,
    p_causation      uuid,
    p_recorded       timestamptz,
    p_seqs           bigint[],
    p_versions       bigint[],
    p_ids            uuid[],
    p_types          text[],
    p_schemas        integer[],
    p_datas          text[],
    p_occurred       timestamptz[],
    p_prevs          bytea[],
    p_hashes         bytea[]
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    n       integer := cardinality(p_seqs);
    current bigint;
BEGIN
    -- The rows must chain from the head and version they were computed on: a caller's mistake
    -- is an error, never a write.
    IF n IS NULL OR n = 0
        OR cardinality(p_versions) <> n OR cardinality(p_ids) <> n OR cardinality(p_types) <> n
        OR cardinality(p_schemas) <> n OR cardinality(p_datas) <> n
        OR cardinality(p_occurred) <> n OR cardinality(p_prevs) <> n
        OR cardinality(p_hashes) <> n
        OR coalesce(cardinality(p_guard_streams), 0) <> coalesce(cardinality(p_guard_versions), 0)
        OR p_seqs[1] <> p_head_seq + 1 OR p_versions[1] <> p_version + 1
        OR p_prevs[1] <> p_head_hash THEN
        RAISE EXCEPTION 'registro_append_predicted: rows that do not chain from the head given'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The request's school, for this transaction (as every scoped transaction of registro).
    PERFORM set_config('registro.school', p_school::text, true),
            set_config('registro.all_schools', 'off', true);
    PERFORM pg_advisory_xact_lock(p_lock);
    PERFORM 1 FROM school_heads
        WHERE school_id = p_school AND last_seq = p_head_seq AND last_hash = p_head_hash;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- The last version by the index, read backwards: one entry, whatever the stream's length
    -- (`max()` may be planned as a scan of the whole stream while the table's statistics
    -- say streams are short).
    current := coalesce((SELECT stream_version FROM events
        WHERE school_id = p_school AND stream_id = p_stream
        ORDER BY stream_version DESC LIMIT 1), 0);
    IF current <> p_version THEN
        RETURN false;
    END IF;
    FOR i IN 1 .. coalesce(cardinality(p_guard_streams), 0) LOOP
        current := coalesce((SELECT stream_version FROM events
            WHERE school_id = p_school AND stream_id = p_guard_streams[i]
            ORDER BY stream_version DESC LIMIT 1), 0);
        IF current <> p_guard_versions[i] THEN
            RETURN false;
        END IF;
    END LOOP;
    IF p_idempotency IS NOT NULL THEN
        PERFORM 1 FROM idempotency_keys WHERE school_id = p_school AND key = p_idempotency;
        IF FOUND THEN
            RETURN false;
        END IF;
    END IF;
    INSERT INTO events (school_id, stream_id, actor_id, actor_role, correlation_id,
        causation_id, recorded_at, idempotency_key, school_seq, stream_version, event_id,
        event_type, schema_version, data, occurred_at, prev_hash, hash)
    SELECT p_school, p_stream, p_actor, p_role, p_correlation, p_causation, p_recorded,
        p_idempotency, u.*
    FROM unnest(p_seqs, p_versions, p_ids, p_types, p_schemas, p_datas, p_occurred, p_prevs,
        p_hashes) AS u;
    UPDATE school_heads SET last_seq = p_seqs[n], last_hash = p_hashes[n]
        WHERE school_id = p_school;
    IF p_idempotency IS NOT NULL THEN
        INSERT INTO idempotency_keys (school_id, key, fingerprint, stream_version, first_seq,
            last_seq)
        VALUES (p_school, p_idempotency, p_fingerprint, p_versions[n], p_seqs[1], p_seqs[n]);
    END IF;
    RETURN true;
END
$$;
