//! Justifications (giustificazioni) as the rules compute them (`rules.md` section 5): who may
//! justify an absence, a late entry or an early exit; the reason categories, of which health is
//! special-category data (GDPR art. 9) to be sealed; the life of a justification (submitted,
//! changed until a teacher decides, accepted or rejected with a reason); and when it is due.
//!
//! Pure: the student's date of birth, the school's settings and the class's lesson days are
//! looked up by the caller and passed in.

use serde::{Deserialize, Serialize};
use time::{Date, Month};

/// A school's settings for justifications, with the defaults of `rules.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JustificationSettings {
    /// Whether a student who is 18 or over on the day justifies their own absences (default
    /// on). Then their guardians do not; with it off, the guardians do.
    pub adults_justify_themselves: bool,
    /// Within how many school days a justification is due (default 5).
    pub due_within_school_days: u8,
}

impl Default for JustificationSettings {
    fn default() -> Self {
        Self {
            adults_justify_themselves: true,
            due_within_school_days: 5,
        }
    }
}

/// Who submits a justification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Justifier {
    /// A guardian linked to the student.
    Guardian,
    /// The student.
    Student,
}

/// Why a justification was refused. Shown to families and teachers, in Italian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JustificationError {
    /// A minor's absences are justified by a guardian.
    #[error("le assenze di uno studente minorenne sono giustificate da un genitore o tutore")]
    MinorCannotJustify,
    /// The school has adult students' absences justified by their guardians too.
    #[error(
        "la scuola prevede che anche le assenze degli studenti maggiorenni siano giustificate da \
         un genitore o tutore"
    )]
    GuardiansJustifyAdults,
    /// An adult student justifies their own (when the school allows it).
    #[error("lo studente maggiorenne giustifica da sé le proprie assenze")]
    AdultJustifiesOwn,
    /// A teacher has already decided.
    #[error("la giustificazione è già stata valutata dal docente e non si può più modificare")]
    AlreadyDecided,
    /// There is nothing to decide on.
    #[error("non c'è una giustificazione da valutare")]
    NothingToDecide,
    /// A rejection needs a reason.
    #[error("il rifiuto di una giustificazione richiede una motivazione")]
    ReasonRequired,
}

/// Whether a person born on `birth` is 18 or over on `day` (maggiorenne). Someone born on 29
/// February comes of age on 1 March in a year without one.
#[must_use]
pub fn is_adult_on(birth: Date, day: Date) -> bool {
    let eighteenth = Date::from_calendar_date(birth.year() + 18, birth.month(), birth.day())
        .or_else(|_| Date::from_calendar_date(birth.year() + 18, Month::March, 1));
    eighteenth.is_ok_and(|d| day >= d)
}

/// Whether `justifier` may justify the absence, late entry or early exit on `day` of a student
/// born on `birth`.
///
/// # Errors
/// [`JustificationError::MinorCannotJustify`] for a minor student;
/// [`JustificationError::AdultJustifiesOwn`] for a guardian of an adult student when the
/// school lets adults justify themselves.
pub fn may_justify(
    settings: &JustificationSettings,
    justifier: Justifier,
    birth: Date,
    day: Date,
) -> Result<(), JustificationError> {
    let adult_on_their_own = is_adult_on(birth, day) && settings.adults_justify_themselves;
    match (justifier, adult_on_their_own) {
        (Justifier::Guardian, false) | (Justifier::Student, true) => Ok(()),
        (Justifier::Guardian, true) => Err(JustificationError::AdultJustifiesOwn),
        (Justifier::Student, false) if is_adult_on(birth, day) => {
            Err(JustificationError::GuardiansJustifyAdults)
        }
        (Justifier::Student, false) => Err(JustificationError::MinorCannotJustify),
    }
}

/// The reason given, by category (free text may go with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCategory {
    /// Motivi di salute: special-category data, sealed with the student's key.
    Health,
    /// Motivi di famiglia.
    Family,
    /// Sport (at national level, among the exemptions of `rules.md` section 1).
    Sport,
    /// Trasporti.
    Transport,
    /// Religious days.
    Religious,
    /// Altro.
    Other,
}

impl ReasonCategory {
    /// Whether the category, and the free text that goes with it, is special-category data
    /// (GDPR art. 9): sealed with the student's key, erasable when its retention ends.
    #[must_use]
    pub const fn is_special_category(self) -> bool {
        matches!(self, Self::Health)
    }
}

/// Where a justification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JustificationState {
    /// Nothing submitted yet.
    Missing,
    /// Submitted, waiting for a teacher; its author may still change it.
    Submitted,
    /// Accepted by a teacher.
    Accepted,
    /// Rejected by a teacher, with a reason; a new justification may be submitted.
    Rejected,
}

impl JustificationState {
    /// Whether a justification may be submitted, or the submitted one changed, now.
    ///
    /// # Errors
    /// [`JustificationError::AlreadyDecided`] once a teacher has accepted it.
    pub fn may_submit(self) -> Result<(), JustificationError> {
        match self {
            Self::Missing | Self::Submitted | Self::Rejected => Ok(()),
            Self::Accepted => Err(JustificationError::AlreadyDecided),
        }
    }

    /// Whether a teacher may accept it (`reason` is ignored) or reject it (`reason` required).
    ///
    /// # Errors
    /// [`JustificationError::NothingToDecide`] unless it is submitted;
    /// [`JustificationError::ReasonRequired`] for a rejection without a reason.
    pub fn may_decide(self, accept: bool, reason: &str) -> Result<(), JustificationError> {
        if self != Self::Submitted {
            return Err(JustificationError::NothingToDecide);
        }
        if !accept && reason.trim().is_empty() {
            return Err(JustificationError::ReasonRequired);
        }
        Ok(())
    }
}

/// The last day a justification of an absence on `day` is due: the `within`-th school day after
/// it, among the class's `school_days` (its lesson days, holidays left out, in any order).
/// `None` when the calendar has too few school days after it (the end of the year).
#[must_use]
pub fn due_on(day: Date, within: u8, school_days: impl IntoIterator<Item = Date>) -> Option<Date> {
    let mut later: Vec<Date> = school_days.into_iter().filter(|d| *d > day).collect();
    later.sort_unstable();
    later.dedup();
    later.get(usize::from(within).checked_sub(1)?).copied()
}

/// Whether a justification in `state`, due on `due`, is overdue on `today` (flagged to the
/// class coordinator): still missing, or rejected and not submitted again, after its due day.
#[must_use]
pub fn is_overdue(state: JustificationState, due: Date, today: Date) -> bool {
    matches!(
        state,
        JustificationState::Missing | JustificationState::Rejected
    ) && today > due
}

#[cfg(test)]
mod tests {
    use time::macros::date;
    use time::{Duration, Weekday};

    use super::*;

    /// Monday to Saturday from `from` for `days` days, leaving out `holidays`.
    fn lesson_days(from: Date, days: i64, holidays: &[Date]) -> Vec<Date> {
        (0..days)
            .map(|i| from + Duration::days(i))
            .filter(|d| d.weekday() != Weekday::Sunday && !holidays.contains(d))
            .collect()
    }

    #[test]
    fn rule_5_a_student_of_18_on_the_day_is_an_adult() {
        let birth = date!(2007 - 03 - 15);
        assert!(!is_adult_on(birth, date!(2025 - 03 - 14)));
        assert!(is_adult_on(birth, date!(2025 - 03 - 15)));
        // Born on 29 February: of age on 1 March when the year has no 29 February.
        let leap = date!(2008 - 02 - 29);
        assert!(!is_adult_on(leap, date!(2026 - 02 - 28)));
        assert!(is_adult_on(leap, date!(2026 - 03 - 01)));
    }

    #[test]
    fn rule_5_a_minors_absences_are_justified_by_a_guardian() {
        let s = JustificationSettings::default();
        let birth = date!(2010 - 05 - 01);
        let day = date!(2025 - 10 - 06);
        assert_eq!(may_justify(&s, Justifier::Guardian, birth, day), Ok(()));
        assert_eq!(
            may_justify(&s, Justifier::Student, birth, day),
            Err(JustificationError::MinorCannotJustify)
        );
    }

    #[test]
    fn rule_5_an_adult_student_justifies_their_own_when_the_school_allows_it() {
        let birth = date!(2007 - 10 - 06);
        let day = date!(2025 - 10 - 06);
        let allowed = JustificationSettings::default();
        assert_eq!(
            may_justify(&allowed, Justifier::Student, birth, day),
            Ok(())
        );
        assert_eq!(
            may_justify(&allowed, Justifier::Guardian, birth, day),
            Err(JustificationError::AdultJustifiesOwn)
        );
        // The day before the birthday, still a minor's absence.
        let eve = date!(2025 - 10 - 05);
        assert_eq!(
            may_justify(&allowed, Justifier::Guardian, birth, eve),
            Ok(())
        );
        let not_allowed = JustificationSettings {
            adults_justify_themselves: false,
            ..allowed
        };
        assert_eq!(
            may_justify(&not_allowed, Justifier::Guardian, birth, day),
            Ok(())
        );
        assert_eq!(
            may_justify(&not_allowed, Justifier::Student, birth, day),
            Err(JustificationError::GuardiansJustifyAdults)
        );
    }

    #[test]
    fn rule_5_health_reasons_are_special_category_data() {
        assert!(ReasonCategory::Health.is_special_category());
        for other in [
            ReasonCategory::Family,
            ReasonCategory::Sport,
            ReasonCategory::Transport,
            ReasonCategory::Religious,
            ReasonCategory::Other,
        ] {
            assert!(!other.is_special_category(), "{other:?}");
        }
    }

    #[test]
    fn rule_5_a_justification_changes_until_a_teacher_decides() {
        use JustificationState as S;
        assert_eq!(S::Missing.may_submit(), Ok(()));
        assert_eq!(
            S::Submitted.may_submit(),
            Ok(()),
            "the author may still change it"
        );
        assert_eq!(
            S::Rejected.may_submit(),
            Ok(()),
            "a new one after a rejection"
        );
        assert_eq!(
            S::Accepted.may_submit(),
            Err(JustificationError::AlreadyDecided)
        );
        assert_eq!(S::Submitted.may_decide(true, ""), Ok(()));
        assert_eq!(
            S::Submitted.may_decide(false, "  "),
            Err(JustificationError::ReasonRequired)
        );
        assert_eq!(
            S::Submitted.may_decide(false, "firma non leggibile"),
            Ok(())
        );
        for s in [S::Missing, S::Accepted, S::Rejected] {
            assert_eq!(
                s.may_decide(true, ""),
                Err(JustificationError::NothingToDecide),
                "{s:?}"
            );
        }
    }

    #[test]
    fn rule_5_a_justification_is_due_within_five_school_days() {
        // Absent on Thursday 30 October 2025; Saturday is a school day here, Sunday is not,
        // and 1 November (Saturday) is a holiday.
        let days = lesson_days(date!(2025 - 10 - 27), 21, &[date!(2025 - 11 - 01)]);
        let absent = date!(2025 - 10 - 30);
        // Fri 31, Mon 3, Tue 4, Wed 5, Thu 6.
        let due = due_on(absent, 5, days.clone()).unwrap();
        assert_eq!(due, date!(2025 - 11 - 06));
        assert_eq!(due_on(absent, 0, days.clone()), None);
        assert_eq!(due_on(absent, 30, days), None, "past the calendar's end");
        assert!(!is_overdue(JustificationState::Missing, due, due));
        assert!(is_overdue(
            JustificationState::Missing,
            due,
            date!(2025 - 11 - 07)
        ));
        assert!(is_overdue(
            JustificationState::Rejected,
            due,
            date!(2025 - 11 - 07)
        ));
        assert!(!is_overdue(
            JustificationState::Submitted,
            due,
            date!(2025 - 11 - 07)
        ));
        assert!(!is_overdue(
            JustificationState::Accepted,
            due,
            date!(2025 - 12 - 07)
        ));
    }
}
