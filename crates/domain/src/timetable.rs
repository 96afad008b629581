//! A class's weekly timetable (orario delle lezioni) and the lesson hours a student misses by
//! an absence, a late entry (ritardo, entrata posticipata) or an early exit (uscita
//! anticipata): the hours that count toward the attendance limit (`rules.md` section 1).
//!
//! A lesson hour cut short counts as missed when the student missed more than half of it: a
//! default of registro's (the rules leave it to the school), see
//! `docs/decisions/0015-partial-lesson-hours.md`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::{Date, Time, Weekday};

use crate::PersonId;

/// One weekly lesson hour of a class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LessonHour {
    /// The day of the week.
    #[serde(with = "crate::weekday_name")]
    pub weekday: Weekday,
    /// Its number in the day, from 1 ("prima ora").
    pub number: u8,
    /// When it starts.
    #[serde(with = "crate::hour_minute")]
    pub start: Time,
    /// When it ends.
    #[serde(with = "crate::hour_minute")]
    pub end: Time,
    /// The subject taught.
    pub subject: String,
    /// The teacher, when known.
    pub teacher: Option<PersonId>,
}

/// Why a timetable was refused. Shown to the secretary, in Italian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimetableError {
    /// An hour ends before it starts.
    #[error("l'ora {number} del {weekday} finisce prima di cominciare")]
    Backwards {
        /// The day.
        weekday: Weekday,
        /// The hour's number.
        number: u8,
    },
    /// Two hours of a day share a number or overlap.
    #[error("le ore {first} e {second} del {weekday} si sovrappongono o hanno lo stesso numero")]
    Overlap {
        /// The day.
        weekday: Weekday,
        /// The first hour.
        first: u8,
        /// The second hour.
        second: u8,
    },
    /// An hour numbered 0, or a subject missing.
    #[error("ogni ora ha un numero da 1 e una materia")]
    Incomplete,
}

/// What a student missed on a day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "at", rename_all = "snake_case")]
pub enum Missed {
    /// Absent the whole day (assenza).
    WholeDay,
    /// Entered at this time (ritardo, entrata posticipata).
    LateEntry(#[serde(with = "crate::hour_minute")] Time),
    /// Left at this time (uscita anticipata).
    EarlyExit(#[serde(with = "crate::hour_minute")] Time),
}

/// A class's weekly timetable, checked: within each day hours are numbered uniquely from 1, in
/// time order, and do not overlap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Timetable {
    hours: Vec<LessonHour>,
}

impl Timetable {
    /// Checks and orders `hours`.
    ///
    /// # Errors
    /// [`TimetableError`] saying which hours are wrong.
    pub fn new(mut hours: Vec<LessonHour>) -> Result<Self, TimetableError> {
        if hours
            .iter()
            .any(|h| h.number == 0 || h.subject.trim().is_empty())
        {
            return Err(TimetableError::Incomplete);
        }
        if let Some(h) = hours.iter().find(|h| h.end <= h.start) {
            return Err(TimetableError::Backwards {
                weekday: h.weekday,
                number: h.number,
            });
        }
        hours.sort_by_key(|h| (h.weekday.number_days_from_monday(), h.start, h.number));
        for pair in hours.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.weekday == b.weekday && (b.start < a.end || b.number <= a.number) {
                return Err(TimetableError::Overlap {
                    weekday: a.weekday,
                    first: a.number,
                    second: b.number,
                });
            }
        }
        Ok(Self { hours })
    }

    /// Every hour, by day and time.
    #[must_use]
    pub fn hours(&self) -> &[LessonHour] {
        &self.hours
    }

    /// The hours of a weekday, in order.
    pub fn hours_on(&self, weekday: Weekday) -> impl Iterator<Item = &LessonHour> {
        self.hours.iter().filter(move |h| h.weekday == weekday)
    }

    /// The lesson hours a week, less those of the subjects the student is exempt from (e.g.
    /// religion without an alternative activity): the weekly hours of `rules.md` section 1.
    #[must_use]
    pub fn weekly_hours(&self, exempt_subjects: &BTreeSet<String>) -> u32 {
        let counted = self
            .hours
            .iter()
            .filter(|h| !exempt_subjects.contains(&h.subject))
            .count();
        u32::try_from(counted).unwrap_or(u32::MAX)
    }

    /// The numbers of the lesson hours of `date` that `missed` makes the student miss, leaving
    /// out the subjects they are exempt from. An hour cut short counts when more than half of
    /// it was missed.
    #[must_use]
    pub fn missed_hours(
        &self,
        date: Date,
        missed: Missed,
        exempt_subjects: &BTreeSet<String>,
    ) -> Vec<u8> {
        self.hours_on(date.weekday())
            .filter(|h| !exempt_subjects.contains(&h.subject))
            .filter(|h| {
                let length = h.end - h.start;
                let away = match missed {
                    Missed::WholeDay => length,
                    // The part of the hour before the student came in...
                    Missed::LateEntry(at) => (at.min(h.end) - h.start).max(time::Duration::ZERO),
                    // ...or after they left.
                    Missed::EarlyExit(at) => (h.end - at.max(h.start)).max(time::Duration::ZERO),
                };
                away * 2 > length
            })
            .map(|h| h.number)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, time};

    use super::*;

    fn hour(weekday: Weekday, number: u8, start: Time, end: Time, subject: &str) -> LessonHour {
        LessonHour {
            weekday,
            number,
            start,
            end,
            subject: subject.into(),
            teacher: None,
        }
    }

    /// Monday: five hours of 60 minutes from 8:00, religion in the fourth.
    fn monday() -> Timetable {
        let subjects = ["Italiano", "Matematica", "Storia", "Religione", "Inglese"];
        Timetable::new(
            subjects
                .iter()
                .zip(1u8..)
                .map(|(s, n)| {
                    let start = Time::from_hms(7 + n, 0, 0).unwrap();
                    let end = Time::from_hms(8 + n, 0, 0).unwrap();
                    hour(Weekday::Monday, n, start, end, s)
                })
                .collect(),
        )
        .unwrap()
    }

    const MONDAY: Date = date!(2025 - 10 - 06);

    #[test]
    fn rule_1_a_whole_day_absence_misses_every_hour_of_the_class_that_day() {
        let none = BTreeSet::new();
        assert_eq!(
            monday().missed_hours(MONDAY, Missed::WholeDay, &none),
            vec![1, 2, 3, 4, 5]
        );
        // No lessons on Sunday: nothing missed.
        assert!(
            monday()
                .missed_hours(date!(2025 - 10 - 05), Missed::WholeDay, &none)
                .is_empty()
        );
        // Exempt from religion: that hour was never theirs to attend.
        let exempt = BTreeSet::from(["Religione".to_owned()]);
        assert_eq!(
            monday().missed_hours(MONDAY, Missed::WholeDay, &exempt),
            vec![1, 2, 3, 5]
        );
    }

    #[test]
    fn rule_1_late_entries_and_early_exits_miss_the_hours_mostly_missed() {
        let none = BTreeSet::new();
        let t = monday();
        // In at 9:10: the first hour missed, ten minutes of the second do not make it missed.
        assert_eq!(
            t.missed_hours(MONDAY, Missed::LateEntry(time!(9:10)), &none),
            vec![1]
        );
        // In at 9:40: forty minutes of sixty, more than half: missed.
        assert_eq!(
            t.missed_hours(MONDAY, Missed::LateEntry(time!(9:40)), &none),
            vec![1, 2]
        );
        // Exactly half is not more than half.
        assert_eq!(
            t.missed_hours(MONDAY, Missed::LateEntry(time!(9:30)), &none),
            vec![1]
        );
        // Out at 11:20: the rest of the fourth (40 minutes) and the fifth.
        assert_eq!(
            t.missed_hours(MONDAY, Missed::EarlyExit(time!(11:20)), &none),
            vec![4, 5]
        );
        // Out after the last hour: nothing missed.
        assert!(
            t.missed_hours(MONDAY, Missed::EarlyExit(time!(13:30)), &none)
                .is_empty()
        );
    }

    #[test]
    fn rule_1_weekly_hours_leave_out_exempt_subjects() {
        let t = monday();
        assert_eq!(t.weekly_hours(&BTreeSet::new()), 5);
        assert_eq!(t.weekly_hours(&BTreeSet::from(["Religione".to_owned()])), 4);
    }

    #[test]
    fn hours_and_what_was_missed_are_stored_readably() {
        let h = hour(Weekday::Monday, 1, time!(8:00), time!(8:50), "Italiano");
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["weekday"], "monday");
        assert_eq!(
            (json["start"].as_str(), json["end"].as_str()),
            (Some("08:00"), Some("08:50"))
        );
        assert_eq!(serde_json::from_value::<LessonHour>(json).unwrap(), h);
        let late = serde_json::to_value(Missed::LateEntry(time!(9:10))).unwrap();
        assert_eq!(
            late,
            serde_json::json!({"kind": "late_entry", "at": "09:10"})
        );
        assert_eq!(
            serde_json::to_value(Missed::WholeDay).unwrap(),
            serde_json::json!({"kind": "whole_day"})
        );
        assert!(
            serde_json::from_value::<LessonHour>(serde_json::json!({
                "weekday": "lunedì", "number": 1, "start": "08:00", "end": "09:00",
                "subject": "x", "teacher": null
            }))
            .is_err()
        );
    }

    #[test]
    fn a_timetable_refuses_overlaps_duplicates_and_backwards_hours() {
        let m = Weekday::Monday;
        assert_eq!(
            Timetable::new(vec![
                hour(m, 1, time!(8:00), time!(9:00), "A"),
                hour(m, 2, time!(8:30), time!(9:30), "B"),
            ]),
            Err(TimetableError::Overlap {
                weekday: m,
                first: 1,
                second: 2
            })
        );
        assert!(matches!(
            Timetable::new(vec![
                hour(m, 1, time!(8:00), time!(9:00), "A"),
                hour(m, 1, time!(9:00), time!(10:00), "B"),
            ]),
            Err(TimetableError::Overlap { .. })
        ));
        assert_eq!(
            Timetable::new(vec![hour(m, 1, time!(9:00), time!(8:00), "A")]),
            Err(TimetableError::Backwards {
                weekday: m,
                number: 1
            })
        );
        assert_eq!(
            Timetable::new(vec![hour(m, 0, time!(8:00), time!(9:00), "A")]),
            Err(TimetableError::Incomplete)
        );
        // The same hour numbers on different days are fine.
        assert!(
            Timetable::new(vec![
                hour(m, 1, time!(8:00), time!(9:00), "A"),
                hour(Weekday::Tuesday, 1, time!(8:00), time!(9:00), "A"),
            ])
            .is_ok()
        );
    }
}
