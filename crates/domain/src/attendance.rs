//! The minimum attendance for the school year to count (validità dell'anno scolastico,
//! `rules.md` section 1; DPR 122/2009 art. 14 c.7, D.Lgs. 62/2017 art. 5): a student must
//! attend at least three quarters of their personalised annual hours, counted in lesson hours.

use serde::{Deserialize, Serialize};
use time::Date;

/// The weeks of lessons a school year is reckoned at.
pub const WEEKS_PER_YEAR: u32 = 33;

/// A student's personalised annual hours (monte ore annuo personalizzato) and the most hours
/// they may miss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnualLimit {
    /// The weekly hours (exempt subjects left out) times [`WEEKS_PER_YEAR`].
    pub annual_hours: u32,
    /// The most hours of absence that keep the year valid: a quarter of the annual hours,
    /// rounded down.
    pub max_absence_hours: u32,
}

impl AnnualLimit {
    /// The limit for a student with `weekly_hours` lesson hours a week (their exempt subjects
    /// already left out).
    #[must_use]
    pub const fn for_weekly_hours(weekly_hours: u32) -> Self {
        let annual_hours = weekly_hours.saturating_mul(WEEKS_PER_YEAR);
        Self {
            annual_hours,
            max_absence_hours: annual_hours / 4,
        }
    }

    /// Whether `absence_hours` (exempted hours left out) are over the limit: such a student
    /// cannot be admitted at the final scrutinio.
    #[must_use]
    pub const fn is_over(self, absence_hours: u32) -> bool {
        absence_hours > self.max_absence_hours
    }

    /// The highest warning `absence_hours` have reached: families and the class coordinator are
    /// warned when a student's absences pass 10 %, 15 % and 20 % of the annual hours.
    #[must_use]
    pub fn warning(self, absence_hours: u32) -> Option<AttendanceWarning> {
        let percent_times_annual = u64::from(absence_hours) * 100;
        let passes = |percent: u64| percent_times_annual > percent * u64::from(self.annual_hours);
        [
            AttendanceWarning::Twenty,
            AttendanceWarning::Fifteen,
            AttendanceWarning::Ten,
        ]
        .into_iter()
        .find(|w| passes(u64::from(w.percent())))
    }
}

/// A warning about absences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AttendanceWarning {
    /// Past 10 % of the annual hours.
    Ten,
    /// Past 15 %.
    Fifteen,
    /// Past 20 % (the limit is 25 %).
    Twenty,
}

impl AttendanceWarning {
    /// The threshold, in percent of the annual hours.
    #[must_use]
    pub const fn percent(self) -> u8 {
        match self {
            Self::Ten => 10,
            Self::Fifteen => 15,
            Self::Twenty => 20,
        }
    }
}

/// Why the class council exempted a period of absence (deroga).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExemptionReason {
    /// Documented health reasons.
    Health,
    /// Therapy and treatment.
    Therapy,
    /// Sport at national level.
    Sport,
    /// Religious days.
    Religious,
    /// Family hardship.
    Family,
}

/// A period of absence the council exempted: its hours do not count toward the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exemption {
    /// The first day covered.
    #[serde(with = "crate::iso_date")]
    pub from: Date,
    /// The last day covered.
    #[serde(with = "crate::iso_date")]
    pub to: Date,
    /// Why.
    pub reason: ExemptionReason,
}

/// The hours of absence that count toward the limit: `absences` (each a day and the lesson
/// hours missed on it) outside every exemption.
#[must_use]
pub fn counted_hours(absences: &[(Date, u32)], exemptions: &[Exemption]) -> u32 {
    absences
        .iter()
        .filter(|(day, _)| !exemptions.iter().any(|e| e.from <= *day && *day <= e.to))
        .map(|(_, hours)| *hours)
        .sum()
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn rule_1_32_hours_a_week_give_1056_hours_and_a_limit_of_264() {
        let limit = AnnualLimit::for_weekly_hours(32);
        assert_eq!(limit.annual_hours, 1056);
        assert_eq!(limit.max_absence_hours, 264);
        assert!(!limit.is_over(264));
        assert!(limit.is_over(265));
    }

    #[test]
    fn rule_1_a_religion_exemption_lowers_the_hours() {
        // One hour of religion a week, no alternative activity: 31 hours.
        let limit = AnnualLimit::for_weekly_hours(31);
        assert_eq!((limit.annual_hours, limit.max_absence_hours), (1023, 255));
    }

    #[test]
    fn rule_1_an_exempted_period_removes_its_hours() {
        let absences = [
            (date!(2025 - 10 - 06), 5),
            (date!(2025 - 11 - 10), 6),
            (date!(2025 - 11 - 11), 6),
            (date!(2025 - 12 - 01), 2),
        ];
        assert_eq!(counted_hours(&absences, &[]), 19);
        let hospital = Exemption {
            from: date!(2025 - 11 - 10),
            to: date!(2025 - 11 - 11),
            reason: ExemptionReason::Health,
        };
        assert_eq!(counted_hours(&absences, &[hospital]), 7);
    }

    #[test]
    fn rule_1_families_are_warned_past_10_15_and_20_percent() {
        let limit = AnnualLimit::for_weekly_hours(32); // 1056 hours
        assert_eq!(limit.warning(105), None); // 9.94 %
        assert_eq!(limit.warning(106), Some(AttendanceWarning::Ten)); // 10.04 %
        assert_eq!(limit.warning(158), Some(AttendanceWarning::Ten)); // 14.96 %
        assert_eq!(limit.warning(159), Some(AttendanceWarning::Fifteen));
        assert_eq!(limit.warning(211), Some(AttendanceWarning::Fifteen)); // 19.98 %
        assert_eq!(limit.warning(212), Some(AttendanceWarning::Twenty));
        assert_eq!(limit.warning(300), Some(AttendanceWarning::Twenty));
        // Exactly 10 % (a year of 1000 hours would need 100) is not past it.
        let round = AnnualLimit {
            annual_hours: 1000,
            max_absence_hours: 250,
        };
        assert_eq!(round.warning(100), None);
        assert_eq!(round.warning(101), Some(AttendanceWarning::Ten));
    }
}
