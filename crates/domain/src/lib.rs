//! The domain of the school register: identifiers, roles, and (in later milestones) commands,
//! events and the pure `decide`/`evolve` functions.
//!
//! This crate is synchronous and does no IO: outside facts are looked up by the caller and put
//! into the command, so that replaying events is deterministic.

pub mod access;
pub mod attendance;
pub mod calendar;
pub mod catalogue;
pub mod class_register;
pub mod communications;
pub mod directory;
pub mod enrolment;
pub mod fiscal_code;
pub mod grade;
pub mod ids;
pub mod justification;
pub mod meetings;
pub mod record;
pub mod retention;
pub mod role;
pub mod scrutiny;
pub mod timetable;

pub use fiscal_code::{FiscalCode, FiscalCodeError};
/// An event enum stored as `{type, data}`: the variant's name is the event type, its fields the
/// data (serde's adjacently tagged form).
pub trait StoredEvent: serde::Serialize + serde::de::DeserializeOwned {
    /// The event from its stored type name and data (schema version 1).
    ///
    /// # Errors
    /// When the type is not one of the enum's or the data does not fit it.
    fn from_stored(event_type: &str, data: &serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "type": event_type, "data": data }))
    }

    /// The event's data as stored (its fields, without the type).
    fn data(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .ok()
            .and_then(|mut v| v.get_mut("data").map(serde_json::Value::take))
            .unwrap_or_default()
    }
}

pub use ids::{
    AttendanceId, BadContentHash, CausationId, ClassId, CommunicationId, ContentHash,
    CorrelationId, EventId, GradeId, HomeworkId, NoteId, PersonId, SchoolId, SlotId, TestId,
};
pub use role::{Role, UnknownRole};

// Dates in events and in the API as ISO 8601 calendar dates, `2025-09-15`: stored events keep
// this form for ever. Use with `#[serde(with = "crate::iso_date")]`.
time::serde::format_description!(
    pub iso_date,
    Date,
    "[year]-[month]-[day]"
);

/// Lists of dates in events and in the API, each as [`iso_date`] writes it. Use with
/// `#[serde(with = "crate::iso_dates")]`.
pub mod iso_dates {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use time::Date;

    #[derive(Serialize, Deserialize)]
    struct Iso(#[serde(with = "crate::iso_date")] Date);

    /// Writes the dates.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(dates: &[Date], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(dates.iter().map(|d| Iso(*d)))
    }

    /// Reads the dates.
    ///
    /// # Errors
    /// For anything but a list of `YYYY-MM-DD` dates.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Date>, D::Error> {
        Ok(Vec::<Iso>::deserialize(d)?
            .into_iter()
            .map(|i| i.0)
            .collect())
    }
}

// Times of day in events and in the API as `08:00`. Use with
// `#[serde(with = "crate::hour_minute")]`.
time::serde::format_description!(pub hour_minute, Time, "[hour]:[minute]");

/// Weekdays in events and in the API as their English names, `monday` to `sunday`. Use with
/// `#[serde(with = "crate::weekday_name")]`.
pub mod weekday_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Weekday;

    const NAMES: [(&str, Weekday); 7] = [
        ("monday", Weekday::Monday),
        ("tuesday", Weekday::Tuesday),
        ("wednesday", Weekday::Wednesday),
        ("thursday", Weekday::Thursday),
        ("friday", Weekday::Friday),
        ("saturday", Weekday::Saturday),
        ("sunday", Weekday::Sunday),
    ];

    /// Writes the weekday's name.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(day: &Weekday, s: S) -> Result<S::Ok, S::Error> {
        let name = NAMES
            .iter()
            .find(|(_, d)| d == day)
            .map_or("monday", |(n, _)| n);
        s.serialize_str(name)
    }

    /// Reads a weekday's name.
    ///
    /// # Errors
    /// For anything but `monday` to `sunday`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Weekday, D::Error> {
        let name = String::deserialize(d)?;
        NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, day)| *day)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("{name:?} is not a weekday (monday to sunday)"))
            })
    }
}
