//! The school calendar: the school year (anno scolastico, 1 September to 31 August) and its
//! terms (periodi: trimestri, or quadrimestre and pentamestre), chosen by each school. Terms
//! decide which grades are averaged together and which ones a closed scrutinio locks
//! (`rules.md` sections 2 and 6).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Date, Month};

/// A school year, named by the calendar year it starts in: 2025 is 2025/26, from 1 September
/// 2025 to 31 August 2026.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SchoolYear(i32);

/// Why a calendar was refused. Shown to the secretary, in Italian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// Not a school year.
    #[error("anno scolastico non valido: {0:?} (si scrive 2025/26 o 2025/2026)")]
    Year(String),
    /// No terms.
    #[error("l'anno scolastico deve avere almeno un periodo")]
    NoTerms,
    /// A term's name is empty or too long.
    #[error("nome del periodo mancante o troppo lungo")]
    TermName,
    /// A term ends before it starts.
    #[error("il periodo {0:?} finisce prima di cominciare")]
    Backwards(String),
    /// A term lies outside the school year.
    #[error("il periodo {0:?} è fuori dall'anno scolastico")]
    OutsideYear(String),
    /// Two terms overlap, or are not in order.
    #[error("i periodi {0:?} e {1:?} si sovrappongono o non sono in ordine")]
    Overlap(String, String),
    /// A holiday outside the school year, or too many.
    #[error("giorni di vacanza non validi: al massimo {MAX_HOLIDAYS}, tutti nell'anno scolastico")]
    Holidays,
}

impl SchoolYear {
    /// The school year starting in September of `year`.
    #[must_use]
    pub const fn starting(year: i32) -> Self {
        Self(year)
    }

    /// The school year `date` falls in.
    #[must_use]
    pub fn of(date: Date) -> Self {
        if date.month() as u8 >= Month::September as u8 {
            Self(date.year())
        } else {
            Self(date.year() - 1)
        }
    }

    /// The calendar year it starts in.
    #[must_use]
    pub const fn start_year(self) -> i32 {
        self.0
    }

    /// 1 September.
    #[must_use]
    pub fn first_day(self) -> Date {
        #[allow(clippy::expect_used)] // 1 September exists in every year time supports
        Date::from_calendar_date(self.0, Month::September, 1).expect("1 September")
    }

    /// 31 August of the next year.
    #[must_use]
    pub fn last_day(self) -> Date {
        #[allow(clippy::expect_used)] // 31 August exists in every year time supports
        Date::from_calendar_date(self.0 + 1, Month::August, 31).expect("31 August")
    }

    /// Whether `date` is in this school year.
    #[must_use]
    pub fn contains(self, date: Date) -> bool {
        Self::of(date) == self
    }
}

impl fmt::Display for SchoolYear {
    /// `2025/26`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:02}", self.0, (self.0 + 1).rem_euclid(100))
    }
}

impl FromStr for SchoolYear {
    type Err = CalendarError;

    /// `2025/26`, `2025/2026` or `2025-26`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CalendarError::Year(s.to_owned());
        let (first, second) = s.trim().split_once(['/', '-']).ok_or_else(bad)?;
        let first: i32 = first.parse().map_err(|_| bad())?;
        let second: i32 = second.parse().map_err(|_| bad())?;
        let next = first + 1;
        let fits = match second {
            0..=99 => second == next.rem_euclid(100),
            _ => second == next,
        };
        if !(2000..=2200).contains(&first) || !fits {
            return Err(bad());
        }
        Ok(Self(first))
    }
}

/// The date in Italy at the instant `utc`: Central European Time (UTC+1), or summer time
/// (UTC+2) from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday of
/// October, as EU law sets it (Directive 2000/84/EC), without a time-zone database.
#[must_use]
pub fn italian_date(utc: time::OffsetDateTime) -> Date {
    let utc = utc.to_offset(time::UtcOffset::UTC);
    // 01:00 UTC on the last Sunday of March or October (both months have 31 days).
    let change = |month: Month| {
        Date::from_calendar_date(utc.year(), month, 31).map(|last| {
            let back = i64::from(last.weekday().number_days_from_sunday());
            (last - time::Duration::days(back)).midnight().assume_utc() + time::Duration::hours(1)
        })
    };
    let summer = matches!(
        (change(Month::March), change(Month::October)),
        (Ok(start), Ok(end)) if start <= utc && utc < end
    );
    (utc + time::Duration::hours(if summer { 2 } else { 1 })).date()
}

/// A term (periodo) of a school year.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// Its name, e.g. "primo trimestre", "pentamestre".
    pub name: String,
    /// Its first day.
    #[serde(with = "crate::iso_date")]
    pub start: Date,
    /// Its last day.
    #[serde(with = "crate::iso_date")]
    pub end: Date,
}

/// The most holidays a school year may list.
pub const MAX_HOLIDAYS: usize = 200;

/// The terms of one school year, checked: at least one, each inside the year, in order and not
/// overlapping. Days between two terms (none, usually) belong to no term. With them, the
/// holidays (giorni di sospensione delle lezioni: national and regional holidays, the school's
/// own closures), when no lesson is held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Terms {
    year: SchoolYear,
    terms: Vec<Term>,
    holidays: BTreeSet<Date>,
}

impl Terms {
    /// Checks `terms` for `year`.
    ///
    /// # Errors
    /// [`CalendarError`] saying which term is wrong.
    pub fn new(year: SchoolYear, terms: Vec<Term>) -> Result<Self, CalendarError> {
        if terms.is_empty() {
            return Err(CalendarError::NoTerms);
        }
        for t in &terms {
            if t.name.trim().is_empty() || t.name.chars().count() > 50 {
                return Err(CalendarError::TermName);
            }
            if t.end < t.start {
                return Err(CalendarError::Backwards(t.name.clone()));
            }
            if !year.contains(t.start) || !year.contains(t.end) {
                return Err(CalendarError::OutsideYear(t.name.clone()));
            }
        }
        for pair in terms.windows(2) {
            if pair[1].start <= pair[0].end {
                return Err(CalendarError::Overlap(
                    pair[0].name.clone(),
                    pair[1].name.clone(),
                ));
            }
        }
        Ok(Self {
            year,
            terms,
            holidays: BTreeSet::new(),
        })
    }

    /// The same terms with these holidays.
    ///
    /// # Errors
    /// [`CalendarError::Holidays`] for a day outside the year, or more than [`MAX_HOLIDAYS`].
    pub fn with_holidays(
        self,
        holidays: impl IntoIterator<Item = Date>,
    ) -> Result<Self, CalendarError> {
        let holidays: BTreeSet<Date> = holidays.into_iter().collect();
        if holidays.len() > MAX_HOLIDAYS || holidays.iter().any(|d| !self.year.contains(*d)) {
            return Err(CalendarError::Holidays);
        }
        Ok(Self { holidays, ..self })
    }

    /// The holidays, in order.
    pub fn holidays(&self) -> impl Iterator<Item = Date> + '_ {
        self.holidays.iter().copied()
    }

    /// Whether no lesson is held on `date` for a holiday.
    #[must_use]
    pub fn is_holiday(&self, date: Date) -> bool {
        self.holidays.contains(&date)
    }

    /// The school year.
    #[must_use]
    pub const fn year(&self) -> SchoolYear {
        self.year
    }

    /// The terms, in order.
    #[must_use]
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// The index and the term `date` falls in, if any.
    #[must_use]
    pub fn term_of(&self, date: Date) -> Option<(usize, &Term)> {
        self.terms
            .iter()
            .enumerate()
            .find(|(_, t)| t.start <= date && date <= t.end)
    }
}

/// Why a write dated in a closed term was refused (`rules.md` section 6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "il periodo {term:?} è chiuso: lo scrutinio della classe è concluso e solo il dirigente \
     scolastico può riaprirlo"
)]
pub struct TermClosed {
    /// The closed term's name.
    pub term: String,
}

impl Terms {
    /// Checks that a grade or an absence dated `date` may still be written for a class whose
    /// scrutini are closed for the terms `closed` (their indexes in [`Terms::terms`]): refused
    /// when `date` falls in one of them. A date in no term is not locked by any scrutinio.
    ///
    /// # Errors
    /// [`TermClosed`] naming the term.
    pub fn check_open(&self, closed: &BTreeSet<usize>, date: Date) -> Result<(), TermClosed> {
        match self.term_of(date) {
            Some((i, term)) if closed.contains(&i) => Err(TermClosed {
                term: term.name.clone(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn term(name: &str, start: Date, end: Date) -> Term {
        Term {
            name: name.into(),
            start,
            end,
        }
    }

    #[test]
    fn a_school_year_runs_from_september_to_august() {
        let y = SchoolYear::of(date!(2025 - 09 - 01));
        assert_eq!(y, SchoolYear::starting(2025));
        assert_eq!(SchoolYear::of(date!(2026 - 08 - 31)), y);
        assert_eq!(
            SchoolYear::of(date!(2025 - 08 - 31)),
            SchoolYear::starting(2024)
        );
        assert_eq!(
            (y.first_day(), y.last_day()),
            (date!(2025 - 09 - 01), date!(2026 - 08 - 31))
        );
        assert_eq!(y.to_string(), "2025/26");
        assert_eq!(SchoolYear::starting(2099).to_string(), "2099/00");
    }

    #[test]
    fn school_years_parse_as_written() {
        for text in ["2025/26", "2025/2026", "2025-26", " 2025/26 "] {
            assert_eq!(
                text.parse::<SchoolYear>(),
                Ok(SchoolYear::starting(2025)),
                "{text}"
            );
        }
        for bad in ["2025/27", "2025", "25/26", "2025/2025", "abc/de", "1999/00"] {
            assert!(bad.parse::<SchoolYear>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_quadrimestre_and_a_pentamestre_place_every_school_day() {
        let year = SchoolYear::starting(2025);
        let terms = Terms::new(
            year,
            vec![
                term("trimestre", date!(2025 - 09 - 01), date!(2025 - 12 - 22)),
                term("pentamestre", date!(2025 - 12 - 23), date!(2026 - 08 - 31)),
            ],
        )
        .unwrap();
        assert_eq!(terms.term_of(date!(2025 - 12 - 22)).unwrap().0, 0);
        assert_eq!(terms.term_of(date!(2025 - 12 - 23)).unwrap().0, 1);
        assert_eq!(
            terms.term_of(date!(2026 - 06 - 08)).unwrap().1.name,
            "pentamestre"
        );
        assert!(terms.term_of(date!(2026 - 09 - 01)).is_none());
    }

    #[test]
    fn terms_must_be_inside_the_year_in_order_and_apart() {
        let year = SchoolYear::starting(2025);
        let first = term("primo", date!(2025 - 09 - 10), date!(2026 - 01 - 31));
        assert_eq!(Terms::new(year, vec![]), Err(CalendarError::NoTerms));
        assert_eq!(
            Terms::new(
                year,
                vec![term("primo", date!(2025 - 08 - 31), date!(2025 - 12 - 31))]
            ),
            Err(CalendarError::OutsideYear("primo".into()))
        );
        assert_eq!(
            Terms::new(
                year,
                vec![term("primo", date!(2025 - 12 - 31), date!(2025 - 09 - 10))]
            ),
            Err(CalendarError::Backwards("primo".into()))
        );
        assert_eq!(
            Terms::new(
                year,
                vec![
                    first.clone(),
                    term("secondo", date!(2026 - 01 - 31), date!(2026 - 06 - 10))
                ]
            ),
            Err(CalendarError::Overlap("primo".into(), "secondo".into()))
        );
        assert_eq!(
            Terms::new(
                year,
                vec![term(" ", date!(2025 - 09 - 10), date!(2025 - 09 - 11))]
            ),
            Err(CalendarError::TermName)
        );
        assert!(Terms::new(year, vec![first]).is_ok());
    }

    #[test]
    fn rule_6_a_date_in_a_closed_term_is_locked_until_the_term_reopens() {
        let year = SchoolYear::starting(2025);
        let terms = Terms::new(
            year,
            vec![
                term(
                    "primo quadrimestre",
                    date!(2025 - 09 - 15),
                    date!(2026 - 01 - 31),
                ),
                term(
                    "secondo quadrimestre",
                    date!(2026 - 02 - 01),
                    date!(2026 - 06 - 10),
                ),
            ],
        )
        .unwrap();
        let mut closed = BTreeSet::new();
        let january = date!(2026 - 01 - 20);
        assert_eq!(terms.check_open(&closed, january), Ok(()));
        closed.insert(0);
        assert_eq!(
            terms.check_open(&closed, january),
            Err(TermClosed {
                term: "primo quadrimestre".into()
            })
        );
        assert_eq!(terms.check_open(&closed, date!(2026 - 02 - 01)), Ok(()));
        assert_eq!(
            terms.check_open(&closed, date!(2025 - 09 - 10)),
            Ok(()),
            "in no term"
        );
        // The principal reopens it: writable again.
        closed.remove(&0);
        assert_eq!(terms.check_open(&closed, january), Ok(()));
    }

    #[test]
    fn the_italian_date_follows_central_european_time_and_its_summer_time() {
        use time::macros::datetime;
        // Winter, UTC+1: 23:30 UTC is already tomorrow; 22:30 UTC is still today.
        assert_eq!(
            italian_date(datetime!(2025-12-01 23:30 UTC)),
            date!(2025 - 12 - 02)
        );
        assert_eq!(
            italian_date(datetime!(2025-12-01 22:30 UTC)),
            date!(2025 - 12 - 01)
        );
        // Summer, UTC+2: 22:30 UTC is tomorrow.
        assert_eq!(
            italian_date(datetime!(2025-07-01 22:30 UTC)),
            date!(2025 - 07 - 02)
        );
        assert_eq!(
            italian_date(datetime!(2025-07-01 21:30 UTC)),
            date!(2025 - 07 - 01)
        );
        // Summer time starts at 01:00 UTC on the last Sunday of March (30 March 2025) and ends
        // at 01:00 UTC on the last Sunday of October (26 October 2025).
        assert_eq!(
            italian_date(datetime!(2025-03-29 22:30 UTC)),
            date!(2025 - 03 - 29)
        );
        assert_eq!(
            italian_date(datetime!(2025-03-30 22:30 UTC)),
            date!(2025 - 03 - 31)
        );
        assert_eq!(
            italian_date(datetime!(2025-10-25 22:30 UTC)),
            date!(2025 - 10 - 26)
        );
        assert_eq!(
            italian_date(datetime!(2025-10-26 22:30 UTC)),
            date!(2025 - 10 - 26)
        );
        // New Year's Eve in Rome starts at 23:00 UTC.
        assert_eq!(
            italian_date(datetime!(2025-12-31 23:00 UTC)),
            date!(2026 - 01 - 01)
        );
    }
}
