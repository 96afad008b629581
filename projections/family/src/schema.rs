//! The family view's tables: one row per fact, keyed by its id, so that every event is an
//! upsert or a delete by key (ADR 0019). Non-key columns have defaults, so that an event that
//! changes some columns of a row (a correction, an annulment) is an upsert of just those.
//! Dates are ISO 8601 text (`YYYY-MM-DD`), times of day `HH:MM`, on both backends. The second
//! step adds the report cards (issue 6), the third the indexes by person and by student
//! the overview's receipts and consents are read by, the fourth the overviews' stamps: a
//! released step is never edited.

/// The PostgreSQL steps.
pub const POSTGRES: &[&str] = &[
    r"
CREATE TABLE family_grades (
    school_id   uuid NOT NULL,
    grade_id    uuid NOT NULL,
    student     uuid,
    year        integer NOT NULL DEFAULT 0,
    class_id    uuid,
    subject     text NOT NULL DEFAULT '',
    date        text NOT NULL DEFAULT '',
    kind        text NOT NULL DEFAULT '',
    scale       text NOT NULL DEFAULT '',
    mark        text NOT NULL DEFAULT '',
    hundredths  integer,
    weight      integer NOT NULL DEFAULT 100,
    counted     boolean NOT NULL DEFAULT true,
    description text NOT NULL DEFAULT '',
    corrected   boolean NOT NULL DEFAULT false,
    annulled    text,
    PRIMARY KEY (school_id, grade_id)
);
CREATE INDEX family_grades_by_student ON family_grades (school_id, student, year, date);
CREATE TABLE family_attendance (
    school_id     uuid NOT NULL,
    entry_id      uuid NOT NULL,
    student       uuid,
    year          integer NOT NULL DEFAULT 0,
    class_id      uuid,
    date          text NOT NULL DEFAULT '',
    kind          text NOT NULL DEFAULT '',
    at            text,
    hours         integer NOT NULL DEFAULT 0,
    cancelled     text,
    justification text NOT NULL DEFAULT 'missing',
    justifier     text,
    PRIMARY KEY (school_id, entry_id)
);
CREATE INDEX family_attendance_by_student ON family_attendance (school_id, student, year, date);
CREATE TABLE family_notes (
    school_id uuid NOT NULL,
    note_id   uuid NOT NULL,
    student   uuid,
    class_id  uuid,
    year      integer NOT NULL DEFAULT 0,
    date      text NOT NULL DEFAULT '',
    kind      text NOT NULL DEFAULT '',
    text      text NOT NULL DEFAULT '',
    annulled  text,
    PRIMARY KEY (school_id, note_id)
);
CREATE INDEX family_notes_by_student ON family_notes (school_id, student, year, date);
CREATE INDEX family_notes_by_class ON family_notes (school_id, class_id, year, date);
CREATE TABLE family_agenda (
    school_id   uuid NOT NULL,
    item_id     uuid NOT NULL,
    class_id    uuid NOT NULL,
    year        integer NOT NULL,
    kind        text NOT NULL,
    date        text NOT NULL,
    assigned_on text,
    subject     text NOT NULL,
    text        text NOT NULL,
    PRIMARY KEY (school_id, item_id)
);
CREATE INDEX family_agenda_by_class ON family_agenda (school_id, class_id, year, date);
CREATE TABLE family_communications (
    school_id        uuid NOT NULL,
    communication_id uuid NOT NULL,
    year             integer NOT NULL DEFAULT 0,
    kind             text NOT NULL DEFAULT '',
    number           integer,
    title            text NOT NULL DEFAULT '',
    body             text NOT NULL DEFAULT '',
    date             text NOT NULL DEFAULT '',
    groups           jsonb NOT NULL DEFAULT '[]',
    classes          jsonb NOT NULL DEFAULT '[]',
    consent_deadline text,
    attachments      jsonb NOT NULL DEFAULT '[]',
    withdrawn        text,
    PRIMARY KEY (school_id, communication_id)
);
CREATE INDEX family_communications_by_year ON family_communications (school_id, year, date);
CREATE TABLE family_receipts (
    school_id        uuid NOT NULL,
    communication_id uuid NOT NULL,
    person           uuid NOT NULL,
    at               timestamptz NOT NULL,
    PRIMARY KEY (school_id, communication_id, person)
);
CREATE TABLE family_consents (
    school_id        uuid NOT NULL,
    communication_id uuid NOT NULL,
    student          uuid NOT NULL,
    consent          text NOT NULL,
    answered_by      uuid NOT NULL,
    at               timestamptz NOT NULL,
    PRIMARY KEY (school_id, communication_id, student)
);
CREATE TABLE family_slots (
    school_id uuid NOT NULL,
    slot_id   uuid NOT NULL,
    teacher   uuid,
    date      text NOT NULL DEFAULT '',
    start_at  text NOT NULL DEFAULT '',
    end_at    text NOT NULL DEFAULT '',
    place     text NOT NULL DEFAULT '',
    cancelled text,
    PRIMARY KEY (school_id, slot_id)
);
CREATE TABLE family_bookings (
    school_id uuid NOT NULL,
    slot_id   uuid NOT NULL,
    student   uuid NOT NULL,
    guardian  uuid NOT NULL,
    PRIMARY KEY (school_id, slot_id, student)
);
CREATE INDEX family_bookings_by_student ON family_bookings (school_id, student);
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['family_grades', 'family_attendance', 'family_notes',
        'family_agenda', 'family_communications', 'family_receipts', 'family_consents',
        'family_slots', 'family_bookings']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY school_isolation ON %I '
            'USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools())) '
            'WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))', t);
    END LOOP;
END
$$;
",
    r"
CREATE TABLE family_scrutini (
    school_id uuid NOT NULL,
    class_id  uuid NOT NULL,
    year      integer NOT NULL,
    term      integer NOT NULL,
    is_final  boolean NOT NULL DEFAULT false,
    published boolean NOT NULL DEFAULT false,
    PRIMARY KEY (school_id, class_id, year, term)
);
CREATE TABLE family_report_grades (
    school_id uuid NOT NULL,
    class_id  uuid NOT NULL,
    year      integer NOT NULL,
    term      integer NOT NULL,
    student   uuid NOT NULL,
    grades    jsonb NOT NULL DEFAULT '{}',
    conduct   integer,
    PRIMARY KEY (school_id, class_id, year, term, student)
);
CREATE INDEX family_report_grades_by_student ON family_report_grades (school_id, student, year);
CREATE TABLE family_outcomes (
    school_id   uuid NOT NULL,
    class_id    uuid NOT NULL,
    year        integer NOT NULL,
    student     uuid NOT NULL,
    outcome     text NOT NULL DEFAULT '',
    subjects    jsonb NOT NULL DEFAULT '[]',
    citizenship boolean NOT NULL DEFAULT false,
    resolved    text,
    PRIMARY KEY (school_id, class_id, year, student)
);
CREATE TABLE family_exemptions (
    school_id uuid NOT NULL,
    student   uuid NOT NULL,
    year      integer NOT NULL,
    from_date text NOT NULL,
    to_date   text NOT NULL DEFAULT '',
    reason    text NOT NULL DEFAULT '',
    PRIMARY KEY (school_id, student, year, from_date)
);
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['family_scrutini', 'family_report_grades', 'family_outcomes',
        'family_exemptions']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY school_isolation ON %I '
            'USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools())) '
            'WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))', t);
    END LOOP;
END
$$;
",
    // Third step: a family's receipts and a student's consents are read by person, with the
    // communications of the year (one snapshot with the rest of the overview).
    r"
CREATE INDEX family_receipts_by_person ON family_receipts (school_id, person);
CREATE INDEX family_consents_by_student ON family_consents (school_id, student);
",
    // Fourth step: the stamps by which the API knows a copy of an overview is still current
    // (ADR 0035).
    r"
CREATE TABLE family_stamps (
    school_id uuid NOT NULL,
    scope     uuid NOT NULL,
    seq       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (school_id, scope)
);
ALTER TABLE family_stamps ENABLE ROW LEVEL SECURITY;
ALTER TABLE family_stamps FORCE ROW LEVEL SECURITY;
CREATE POLICY school_isolation ON family_stamps
    USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))
    WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()));
",
];
/// The SQLite steps.
pub const SQLITE: &[&str] = &[
    r"
CREATE TABLE family_grades (
    school_id   TEXT NOT NULL,
    grade_id    TEXT NOT NULL,
    student     TEXT,
    year        INTEGER NOT NULL DEFAULT 0,
    class_id    TEXT,
    subject     TEXT NOT NULL DEFAULT '',
    date        TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL DEFAULT '',
    scale       TEXT NOT NULL DEFAULT '',
    mark        TEXT NOT NULL DEFAULT '',
    hundredths  INTEGER,
    weight      INTEGER NOT NULL DEFAULT 100,
    counted     INTEGER NOT NULL DEFAULT 1,
    description TEXT NOT NULL DEFAULT '',
    corrected   INTEGER NOT NULL DEFAULT 0,
    annulled    TEXT,
    PRIMARY KEY (school_id, grade_id)
) STRICT;
CREATE INDEX family_grades_by_student ON family_grades (school_id, student, year, date);
CREATE TABLE family_attendance (
    school_id     TEXT NOT NULL,
    entry_id      TEXT NOT NULL,
    student       TEXT,
    year          INTEGER NOT NULL DEFAULT 0,
    class_id      TEXT,
    date          TEXT NOT NULL DEFAULT '',
    kind          TEXT NOT NULL DEFAULT '',
    at            TEXT,
    hours         INTEGER NOT NULL DEFAULT 0,
    cancelled     TEXT,
    justification TEXT NOT NULL DEFAULT 'missing',
    justifier     TEXT,
    PRIMARY KEY (school_id, entry_id)
) STRICT;
CREATE INDEX family_attendance_by_student ON family_attendance (school_id, student, year, date);
CREATE TABLE family_notes (
    school_id TEXT NOT NULL,
    note_id   TEXT NOT NULL,
    student   TEXT,
    class_id  TEXT,
    year      INTEGER NOT NULL DEFAULT 0,
    date      TEXT NOT NULL DEFAULT '',
    kind      TEXT NOT NULL DEFAULT '',
    text      TEXT NOT NULL DEFAULT '',
    annulled  TEXT,
    PRIMARY KEY (school_id, note_id)
) STRICT;
CREATE INDEX family_notes_by_student ON family_notes (school_id, student, year, date);
CREATE INDEX family_notes_by_class ON family_notes (school_id, class_id, year, date);
CREATE TABLE family_agenda (
    school_id   TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    class_id    TEXT NOT NULL,
    year        INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    date        TEXT NOT NULL,
    assigned_on TEXT,
    subject     TEXT NOT NULL,
    text        TEXT NOT NULL,
    PRIMARY KEY (school_id, item_id)
) STRICT;
CREATE INDEX family_agenda_by_class ON family_agenda (school_id, class_id, year, date);
CREATE TABLE family_communications (
    school_id        TEXT NOT NULL,
    communication_id TEXT NOT NULL,
    year             INTEGER NOT NULL DEFAULT 0,
    kind             TEXT NOT NULL DEFAULT '',
    number           INTEGER,
    title            TEXT NOT NULL DEFAULT '',
    body             TEXT NOT NULL DEFAULT '',
    date             TEXT NOT NULL DEFAULT '',
    groups           TEXT NOT NULL DEFAULT '[]',
    classes          TEXT NOT NULL DEFAULT '[]',
    consent_deadline TEXT,
    attachments      TEXT NOT NULL DEFAULT '[]',
    withdrawn        TEXT,
    PRIMARY KEY (school_id, communication_id)
) STRICT;
CREATE INDEX family_communications_by_year ON family_communications (school_id, year, date);
CREATE TABLE family_receipts (
    school_id        TEXT NOT NULL,
    communication_id TEXT NOT NULL,
    person           TEXT NOT NULL,
    at               TEXT NOT NULL,
    PRIMARY KEY (school_id, communication_id, person)
) STRICT;
CREATE TABLE family_consents (
    school_id        TEXT NOT NULL,
    communication_id TEXT NOT NULL,
    student          TEXT NOT NULL,
    consent          TEXT NOT NULL,
    answered_by      TEXT NOT NULL,
    at               TEXT NOT NULL,
    PRIMARY KEY (school_id, communication_id, student)
) STRICT;
CREATE TABLE family_slots (
    school_id TEXT NOT NULL,
    slot_id   TEXT NOT NULL,
    teacher   TEXT,
    date      TEXT NOT NULL DEFAULT '',
    start_at  TEXT NOT NULL DEFAULT '',
    end_at    TEXT NOT NULL DEFAULT '',
    place     TEXT NOT NULL DEFAULT '',
    cancelled TEXT,
    PRIMARY KEY (school_id, slot_id)
) STRICT;
CREATE TABLE family_bookings (
    school_id TEXT NOT NULL,
    slot_id   TEXT NOT NULL,
    student   TEXT NOT NULL,
    guardian  TEXT NOT NULL,
    PRIMARY KEY (school_id, slot_id, student)
) STRICT;
CREATE INDEX family_bookings_by_student ON family_bookings (school_id, student);
",
    r"
CREATE TABLE family_scrutini (
    school_id TEXT NOT NULL,
    class_id  TEXT NOT NULL,
    year      INTEGER NOT NULL,
    term      INTEGER NOT NULL,
    is_final  INTEGER NOT NULL DEFAULT 0,
    published INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (school_id, class_id, year, term)
) STRICT;
CREATE TABLE family_report_grades (
    school_id TEXT NOT NULL,
    class_id  TEXT NOT NULL,
    year      INTEGER NOT NULL,
    term      INTEGER NOT NULL,
    student   TEXT NOT NULL,
    grades    TEXT NOT NULL DEFAULT '{}',
    conduct   INTEGER,
    PRIMARY KEY (school_id, class_id, year, term, student)
) STRICT;
CREATE INDEX family_report_grades_by_student ON family_report_grades (school_id, student, year);
CREATE TABLE family_outcomes (
    school_id   TEXT NOT NULL,
    class_id    TEXT NOT NULL,
    year        INTEGER NOT NULL,
    student     TEXT NOT NULL,
    outcome     TEXT NOT NULL DEFAULT '',
    subjects    TEXT NOT NULL DEFAULT '[]',
    citizenship INTEGER NOT NULL DEFAULT 0,
    resolved    TEXT,
    PRIMARY KEY (school_id, class_id, year, student)
) STRICT;
CREATE TABLE family_exemptions (
    school_id TEXT NOT NULL,
    student   TEXT NOT NULL,
    year      INTEGER NOT NULL,
    from_date TEXT NOT NULL,
    to_date   TEXT NOT NULL DEFAULT '',
    reason    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (school_id, student, year, from_date)
) STRICT;
",
    // Third step: a family's receipts and a student's consents are read by person, with the
    // communications of the year (one snapshot with the rest of the overview).
    r"
CREATE INDEX family_receipts_by_person ON family_receipts (school_id, person);
CREATE INDEX family_consents_by_student ON family_consents (school_id, student);
",
    // Fourth step: the stamps by which the API knows a copy of an overview is still current
    // (ADR 0035).
    r"
CREATE TABLE family_stamps (
    school_id TEXT NOT NULL,
    scope     TEXT NOT NULL,
    seq       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (school_id, scope)
) STRICT;
",
];
