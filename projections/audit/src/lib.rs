//! The audit trail (registro delle attività): one row per event of a school, with when, who, in
//! which role, what (the event type and a short summary without personal data), on which stream
//! and in which request; and, apart, the students each row concerns, so that the trail can be
//! queried by student as well as by actor, time and action. The reads of students' data
//! (`StudentDataRead`, the access log) are events too, so they are in the trail with the rest.

use registro_domain::catalogue::CATALOGUE;
use registro_projector::Projection;
use registro_store::{Cell, ProjectionSchema, RecordedEvent, RowOp};
use serde_json::Value;
use uuid::Uuid;

/// The projection's name.
pub const NAME: &str = "audit";

/// The projection's tables: the entries, and the students each entry concerns.
pub const TABLES: &[&str] = &["audit_entries", "audit_subjects"];

const POSTGRES: &[&str] = &[r"
CREATE TABLE audit_entries (
    school_id      uuid NOT NULL,
    school_seq     bigint NOT NULL,
    recorded_at    timestamptz NOT NULL,
    actor_id       uuid,
    actor_role     text NOT NULL,
    action         text NOT NULL,
    stream_id      text NOT NULL,
    correlation_id uuid NOT NULL,
    summary        text NOT NULL,
    PRIMARY KEY (school_id, school_seq)
);
CREATE INDEX audit_entries_by_actor ON audit_entries (school_id, actor_id, school_seq);
CREATE INDEX audit_entries_by_time ON audit_entries (school_id, recorded_at);
CREATE INDEX audit_entries_by_action ON audit_entries (school_id, action, school_seq);
CREATE TABLE audit_subjects (
    school_id  uuid NOT NULL,
    student    uuid NOT NULL,
    school_seq bigint NOT NULL,
    PRIMARY KEY (school_id, student, school_seq)
);
ALTER TABLE audit_entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_entries FORCE ROW LEVEL SECURITY;
CREATE POLICY school_isolation ON audit_entries
    USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))
    WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()));
ALTER TABLE audit_subjects ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_subjects FORCE ROW LEVEL SECURITY;
CREATE POLICY school_isolation ON audit_subjects
    USING (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()))
    WITH CHECK (school_id = (SELECT registro_school()) OR (SELECT registro_all_schools()));
"];

const SQLITE: &[&str] = &[r"
CREATE TABLE audit_entries (
    school_id      TEXT NOT NULL,
    school_seq     INTEGER NOT NULL,
    recorded_at    TEXT NOT NULL,
    actor_id       TEXT,
    actor_role     TEXT NOT NULL,
    action         TEXT NOT NULL,
    stream_id      TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    summary        TEXT NOT NULL,
    PRIMARY KEY (school_id, school_seq)
) STRICT;
CREATE INDEX audit_entries_by_actor ON audit_entries (school_id, actor_id, school_seq);
CREATE INDEX audit_entries_by_time ON audit_entries (school_id, recorded_at);
CREATE INDEX audit_entries_by_action ON audit_entries (school_id, action, school_seq);
CREATE TABLE audit_subjects (
    school_id  TEXT NOT NULL,
    student    TEXT NOT NULL,
    school_seq INTEGER NOT NULL,
    PRIMARY KEY (school_id, student, school_seq)
) STRICT;
"];

/// The audit trail.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditTrail;

impl Projection for AuditTrail {
    fn schema(&self) -> ProjectionSchema {
        ProjectionSchema {
            name: NAME,
            tables: TABLES,
            postgres: POSTGRES,
            sqlite: SQLITE,
        }
    }

    fn apply(&self, event: &RecordedEvent) -> anyhow::Result<Vec<RowOp>> {
        let school = Cell::Uuid(*event.school_id.as_uuid());
        let seq = Cell::Int(i64::try_from(event.school_seq)?);
        let mut ops = vec![RowOp::Upsert {
            table: "audit_entries",
            key: vec![("school_id", school.clone()), ("school_seq", seq.clone())],
            values: vec![
                ("recorded_at", Cell::Time(event.recorded_at)),
                (
                    "actor_id",
                    event
                        .actor_id
                        .map_or(Cell::Null, |a| Cell::Uuid(*a.as_uuid())),
                ),
                ("actor_role", Cell::Text(event.actor_role.to_string())),
                ("action", Cell::Text(event.event_type.as_str().to_owned())),
                ("stream_id", Cell::Text(event.stream_id.as_str().to_owned())),
                (
                    "correlation_id",
                    Cell::Uuid(*event.correlation_id.as_uuid()),
                ),
                ("summary", Cell::Text(summary(event))),
            ],
        }];
        for student in students(event) {
            ops.push(RowOp::Upsert {
                table: "audit_subjects",
                key: vec![
                    ("school_id", school.clone()),
                    ("student", Cell::Uuid(student)),
                    ("school_seq", seq.clone()),
                ],
                values: vec![],
            });
        }
        Ok(ops)
    }
}

/// A short description without personal data: the event's Italian term from the catalogue
/// (`docs/events.md`), and for a read of students' data, which view was read.
fn summary(event: &RecordedEvent) -> String {
    let kind = event.event_type.as_str();
    let term = CATALOGUE
        .iter()
        .find(|e| e.name == kind)
        .map_or(kind, |e| e.italian);
    match event.data.get("view").and_then(Value::as_str) {
        Some(view) if kind == registro_domain::access::STUDENT_DATA_READ => {
            format!("{term}: {view}")
        }
        _ => term.to_owned(),
    }
}

/// The students an event concerns: the student of a student's record stream
/// (`student-<id>-<year>`), and those its data names as `student` or `students`.
#[must_use]
pub fn students(event: &RecordedEvent) -> Vec<Uuid> {
    let mut found = Vec::new();
    if let Some(rest) = event.stream_id.as_str().strip_prefix("student-")
        && let Some(id) = rest.get(..36).and_then(|s| Uuid::parse_str(s).ok())
    {
        found.push(id);
    }
    let named = |v: &Value| v.as_str().and_then(|s| Uuid::parse_str(s).ok());
    if let Some(id) = event.data.get("student").and_then(named) {
        found.push(id);
    }
    if let Some(ids) = event.data.get("students").and_then(Value::as_array) {
        found.extend(ids.iter().filter_map(named));
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Which entries of the trail to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only those about this student.
    pub student: Option<Uuid>,
    /// Only those by this person.
    pub actor: Option<Uuid>,
    /// Only this event type.
    pub action: Option<String>,
    /// Only those recorded at or after this instant.
    pub from: Option<time::OffsetDateTime>,
    /// Only those recorded before this instant.
    pub to: Option<time::OffsetDateTime>,
    /// Only those before this `school_seq` (the cursor of the next page).
    pub before: Option<u64>,
    /// At most this many.
    pub limit: u32,
}

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the school's log.
    pub school_seq: u64,
    /// When it was recorded.
    pub recorded_at: time::OffsetDateTime,
    /// Who (none: the software itself).
    pub actor: Option<Uuid>,
    /// In which role.
    pub role: String,
    /// The event type.
    pub action: String,
    /// The stream.
    pub stream: String,
    /// The request it came from.
    pub correlation: Uuid,
    /// A short description without personal data.
    pub summary: String,
}

/// The school's trail entries that `filter` selects, newest first.
///
/// # Errors
/// The store's (the projection's tables must exist: its projector prepares them).
pub async fn entries(
    store: &dyn registro_store::EventStore,
    school: registro_domain::SchoolId,
    filter: &Filter,
) -> Result<Vec<Entry>, registro_store::StoreError> {
    use registro_store::CellType as T;
    let mut params = vec![Cell::Uuid(*school.as_uuid())];
    let mut sql = String::from(
        "SELECT e.school_seq, e.recorded_at, e.actor_id, e.actor_role, e.action, e.stream_id, \
         e.correlation_id, e.summary FROM audit_entries e",
    );
    if let Some(student) = filter.student {
        params.push(Cell::Uuid(student));
        sql.push_str(
            " JOIN audit_subjects s ON s.school_id = e.school_id AND s.school_seq = e.school_seq \
             AND s.student = $2",
        );
    }
    sql.push_str(" WHERE e.school_id = $1");
    let mut condition = |column: &str, op: &str, value: Cell| {
        params.push(value);
        sql.push_str(&format!(" AND e.{column} {op} ${}", params.len()));
    };
    if let Some(actor) = filter.actor {
        condition("actor_id", "=", Cell::Uuid(actor));
    }
    if let Some(action) = &filter.action {
        condition("action", "=", Cell::Text(action.clone()));
    }
    if let Some(from) = filter.from {
        condition("recorded_at", ">=", Cell::Time(from));
    }
    if let Some(to) = filter.to {
        condition("recorded_at", "<", Cell::Time(to));
    }
    if let Some(before) = filter.before {
        condition(
            "school_seq",
            "<",
            Cell::Int(i64::try_from(before).unwrap_or(i64::MAX)),
        );
    }
    sql.push_str(&format!(
        " ORDER BY e.school_seq DESC LIMIT {}",
        filter.limit.clamp(1, 1000)
    ));
    let columns = [
        T::Int,
        T::Time,
        T::Uuid,
        T::Text,
        T::Text,
        T::Text,
        T::Uuid,
        T::Text,
    ];
    let rows = store
        .query_projection(school, &sql, &params, &columns)
        .await?;
    rows.into_iter()
        .map(|row| match row.as_slice() {
            [
                Cell::Int(seq),
                Cell::Time(at),
                actor,
                Cell::Text(role),
                Cell::Text(action),
                Cell::Text(stream),
                Cell::Uuid(correlation),
                Cell::Text(summary),
            ] => Ok(Entry {
                school_seq: u64::try_from(*seq).unwrap_or_default(),
                recorded_at: *at,
                actor: match actor {
                    Cell::Uuid(a) => Some(*a),
                    _ => None,
                },
                role: role.clone(),
                action: action.clone(),
                stream: stream.clone(),
                correlation: *correlation,
                summary: summary.clone(),
            }),
            other => Err(registro_store::StoreError::internal(format!(
                "an audit row of an unexpected shape: {other:?}"
            ))),
        })
        .collect()
}
