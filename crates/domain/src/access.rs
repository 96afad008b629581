//! The read-access log (registro degli accessi): every read of a student's personal data by
//! anyone other than that student or their linked guardians is a fact, recorded in the
//! school's access stream ([`STREAM`]) and hash-chained like every other event (GDPR art. 5(2),
//! accountability). Who read and in which role, and when, are in the event's envelope (actor,
//! actor role, time); the event's data says whose data and which view.

use serde::{Deserialize, Serialize};

use crate::PersonId;

/// The name of the stream that holds a school's access log.
pub const STREAM: &str = "access-log";
/// The event type of a recorded read.
pub const STUDENT_DATA_READ: &str = "StudentDataRead";

/// Somebody read personal data of these students.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudentDataRead {
    /// Whose data was read (interessati).
    pub students: Vec<PersonId>,
    /// Which view was read, e.g. `student.record` or `class.roster`.
    pub view: String,
    /// The id of the request that read it, as in the server's logs.
    pub request_id: String,
}
