//! Retention (rules.md section 7): the register and the scrutini are permanent records, but the
//! special-category details in them (a justification's health reason) are erased when their
//! retention ends, by destroying the key that seals them. Each student's record of a school year
//! has a key of its own ([`crate::record::sealing_subject`]), so a year is erased whole, the
//! other years untouched. Pure: the date is given.

use serde::Serialize;
use time::Date;

use crate::calendar::SchoolYear;

/// The most school years a school may keep the details after the year they belong to.
pub const MAX_YEARS_AFTER: u8 = 10;

/// A school's retention of special-category details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RetentionSettings {
    /// The school years after the record's own during which its details are kept: with the
    /// default 2, the details of 2025/26 are kept to the end of 2027/28 ("the end of the school
    /// year after next").
    pub years_after: u8,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { years_after: 2 }
    }
}

impl RetentionSettings {
    /// The first day on which the details of `year` are to be erased: the day after the last
    /// school year that keeps them.
    #[must_use]
    pub fn erasure_from(self, year: SchoolYear) -> Date {
        SchoolYear::starting(year.start_year() + 1 + i32::from(self.years_after)).first_day()
    }

    /// Whether the details of `year` are to be erased on `today`.
    #[must_use]
    pub fn erasure_due(self, year: SchoolYear, today: Date) -> bool {
        today >= self.erasure_from(year)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn rule_7_details_are_kept_to_the_end_of_the_school_year_after_next() {
        let default = RetentionSettings::default();
        let year = SchoolYear::starting(2025);
        assert_eq!(default.erasure_from(year), date!(2028 - 09 - 01));
        assert!(!default.erasure_due(year, date!(2028 - 08 - 31)));
        assert!(default.erasure_due(year, date!(2028 - 09 - 01)));
        let shorter = RetentionSettings { years_after: 0 };
        assert_eq!(shorter.erasure_from(year), date!(2026 - 09 - 01));
    }
}
