//! The domain of the school register: identifiers, roles, and (in later milestones) commands,
//! events and the pure `decide`/`evolve` functions.
//!
//! This crate is synchronous and does no IO: outside facts are looked up by the caller and put
//! into the command, so that replaying events is deterministic.

pub mod access;
pub mod attendance;
pub mod calendar;
pub mod catalogue;
pub mod directory;
pub mod fiscal_code;
pub mod grade;
pub mod ids;
pub mod justification;
pub mod record;
pub mod role;
pub mod timetable;

pub use fiscal_code::{FiscalCode, FiscalCodeError};
pub use ids::{CausationId, ClassId, CorrelationId, EventId, GradeId, PersonId, SchoolId};
pub use role::{Role, UnknownRole};

// Dates in events and in the API as ISO 8601 calendar dates, `2025-09-15`: stored events keep
// this form for ever. Use with `#[serde(with = "crate::iso_date")]`.
time::serde::format_description!(
    pub iso_date,
    Date,
    "[year]-[month]-[day]"
);
