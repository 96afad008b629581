//! The scrutiny report's tables: one row per fact, keyed so that every event is an upsert or a
//! delete by key (ADR 0019). Marks, outcomes and lists are stored as the domain serialises them
//! (JSON), so that a read gets the domain's own values back; dates are ISO 8601 text
//! (`YYYY-MM-DD`) on both backends.

/// The PostgreSQL steps.
pub const POSTGRES: &[&str] = &[r"
CREATE TABLE scrutiny_terms (
    school_id    uuid NOT NULL,
    class_id     uuid NOT NULL,
    year         integer NOT NULL,
    term         integer NOT NULL,
    level        text NOT NULL DEFAULT '',
    is_final     boolean NOT NULL DEFAULT false,
    status       text NOT NULL DEFAULT 'open',
    session_date text,
    attendees    jsonb NOT NULL DEFAULT '[]',
    published    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (school_id, class_id, year, term)
);
CREATE TABLE scrutiny_reopenings (
    school_id  uuid NOT NULL,
    class_id   uuid NOT NULL,
    year       integer NOT NULL,
    term       integer NOT NULL,
    school_seq bigint NOT NULL,
    reason     text NOT NULL,
    PRIMARY KEY (school_id, class_id, year, term, school_seq)
);
CREATE TABLE scrutiny_proposals (
    school_id uuid NOT NULL,
    class_id  uuid NOT NULL,
    year      integer NOT NULL,
    term      integer NOT NULL,
    student   uuid NOT NULL,
    subject   text NOT NULL,
    mark      jsonb NOT NULL,
    teacher   uuid NOT NULL,
    PRIMARY KEY (school_id, class_id, year, term, student, subject)
);
CREATE TABLE scrutiny_deliberations (
    school_id uuid NOT NULL,
    class_id  uuid NOT NULL,
    year      integer NOT NULL,
    term      integer NOT NULL,
    student   uuid NOT NULL,
    grades    jsonb NOT NULL,
    conduct   integer,
    PRIMARY KEY (school_id, class_id, year, term, student)
);
CREATE TABLE scrutiny_outcomes (
    school_id uuid NOT NULL,
    class_id  uuid NOT NULL,
    year      integer NOT NULL,
    student   uuid NOT NULL,
    outcome   jsonb,
    proposed  jsonb,
    resolved  text,
    PRIMARY KEY (school_id, class_id, year, student)
);
CREATE TABLE scrutiny_exemptions (
    school_id  uuid NOT NULL,
    class_id   uuid NOT NULL,
    year       integer NOT NULL,
    student    uuid NOT NULL,
    school_seq bigint NOT NULL,
    from_date  text NOT NULL,
    to_date    text NOT NULL,
    reason     text NOT NULL,
    PRIMARY KEY (school_id, class_id, year, student, school_seq)
);
CREATE TABLE scrutiny_grades (
    school_id  uuid NOT NULL,
    grade_id   uuid NOT NULL,
    student    uuid,
    year       integer NOT NULL DEFAULT 0,
    subject    text NOT NULL DEFAULT '',
    date       text NOT NULL DEFAULT '',
    hundredths integer,
    weight     integer NOT NULL DEFAULT 100,
    counted    boolean NOT NULL DEFAULT true,
    annulled   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (school_id, grade_id)
);
CREATE INDEX scrutiny_grades_by_student ON scrutiny_grades (school_id, year, student);
CREATE TABLE scrutiny_absences (
    school_id uuid NOT NULL,
    entry_id  uuid NOT NULL,
    student   uuid,
    year      integer NOT NULL DEFAULT 0,
    date      text NOT NULL DEFAULT '',
    hours     integer NOT NULL DEFAULT 0,
    cancelled boolean NOT NULL DEFAULT false,
    PRIMARY KEY (school_id, entry_id)
);
CREATE INDEX scrutiny_absences_by_student ON scrutiny_absences (school_id, year, student);
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['scrutiny_terms', 'scrutiny_reopenings', 'scrutiny_proposals',
        'scrutiny_deliberations', 'scrutiny_outcomes', 'scrutiny_exemptions', 'scrutiny_grades',
        'scrutiny_absences']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY school_isolation ON %I '
            'USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools())) '
            'WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))', t);
    END LOOP;
END
$$;
"];

/// The SQLite steps.
pub const SQLITE: &[&str] = &[r"
CREATE TABLE scrutiny_terms (
    school_id    TEXT NOT NULL,
    class_id     TEXT NOT NULL,
    year         INTEGER NOT NULL,
    term         INTEGER NOT NULL,
    level        TEXT NOT NULL DEFAULT '',
    is_final     INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL DEFAULT 'open',
    session_date TEXT,
    attendees    TEXT NOT NULL DEFAULT '[]',
    published    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (school_id, class_id, year, term)
) STRICT;
CREATE TABLE scrutiny_reopenings (
    school_id  TEXT NOT NULL,
    class_id   TEXT NOT NULL,
    year       INTEGER NOT NULL,
    term       INTEGER NOT NULL,
    school_seq INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (school_id, class_id, year, term, school_seq)
) STRICT;
CREATE TABLE scrutiny_proposals (
    school_id TEXT NOT NULL,
    class_id  TEXT NOT NULL,
    year      INTEGER NOT NULL,
    term      INTEGER NOT NULL,
    student   TEXT NOT NULL,
    subject   TEXT NOT NULL,
    mark      TEXT NOT NULL,
    teacher   TEXT NOT NULL,
    PRIMARY KEY (school_id, class_id, year, term, student, subject)
) STRICT;
CREATE TABLE scrutiny_deliberations (
    school_id TEXT NOT NULL,
    class_id  TEXT NOT NULL,
    year      INTEGER NOT NULL,
    term      INTEGER NOT NULL,
    student   TEXT NOT NULL,
    grades    TEXT NOT NULL,
    conduct   INTEGER,
    PRIMARY KEY (school_id, class_id, year, term, student)
) STRICT;
CREATE TABLE scrutiny_outcomes (
    school_id TEXT NOT NULL,
    class_id  TEXT NOT NULL,
    year      INTEGER NOT NULL,
    student   TEXT NOT NULL,
    outcome   TEXT,
    proposed  TEXT,
    resolved  TEXT,
    PRIMARY KEY (school_id, class_id, year, student)
) STRICT;
CREATE TABLE scrutiny_exemptions (
    school_id  TEXT NOT NULL,
    class_id   TEXT NOT NULL,
    year       INTEGER NOT NULL,
    student    TEXT NOT NULL,
    school_seq INTEGER NOT NULL,
    from_date  TEXT NOT NULL,
    to_date    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (school_id, class_id, year, student, school_seq)
) STRICT;
CREATE TABLE scrutiny_grades (
    school_id  TEXT NOT NULL,
    grade_id   TEXT NOT NULL,
    student    TEXT,
    year       INTEGER NOT NULL DEFAULT 0,
    subject    TEXT NOT NULL DEFAULT '',
    date       TEXT NOT NULL DEFAULT '',
    hundredths INTEGER,
    weight     INTEGER NOT NULL DEFAULT 100,
    counted    INTEGER NOT NULL DEFAULT 1,
    annulled   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (school_id, grade_id)
) STRICT;
CREATE INDEX scrutiny_grades_by_student ON scrutiny_grades (school_id, year, student);
CREATE TABLE scrutiny_absences (
    school_id TEXT NOT NULL,
    entry_id  TEXT NOT NULL,
    student   TEXT,
    year      INTEGER NOT NULL DEFAULT 0,
    date      TEXT NOT NULL DEFAULT '',
    hours     INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (school_id, entry_id)
) STRICT;
CREATE INDEX scrutiny_absences_by_student ON scrutiny_absences (school_id, year, student);
"];
