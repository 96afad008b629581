//! Grades (voti) as the rules compute them (`rules.md` section 2): numeric grades from 1 to 10
//! with the modifiers Italian teachers write (`6+` = 6.25, `6½` = 6.5, `6-` = 5.75), the
//! judgement scale of religion and its alternative activity, the six levels of primary school,
//! weights, and the weighted average with the proposal of a whole grade.
//!
//! Values are exact: hundredths as integers, never floating point.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A numeric grade (voto) from 1.00 to 10.00, in hundredths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct GradeValue(u16);

/// Why a grade, a weight or a judgement was refused. Shown to teachers, in Italian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GradeError {
    /// Not a grade as teachers write them.
    #[error("voto non valido: {0:?} (si scrive come 7, 7+, 7-, 7½, 7.5 o 7,25; da 1 a 10)")]
    Notation(String),
    /// Outside 1 to 10.
    #[error("il voto deve essere tra 1 e 10")]
    OutOfRange,
    /// Not a weight.
    #[error("peso non valido: {0:?} (un numero tra 0,01 e 10, ad esempio 1, 0,5 o 2)")]
    Weight(String),
    /// Not a judgement of the scale.
    #[error("giudizio non valido: {0:?}")]
    Judgement(String),
}

impl GradeValue {
    /// The lowest grade, 1.
    pub const MIN: GradeValue = GradeValue(100);
    /// The highest grade, 10.
    pub const MAX: GradeValue = GradeValue(1000);
    /// The pass mark, 6 (sufficienza).
    pub const PASS: GradeValue = GradeValue(600);

    /// A grade from hundredths (625 is 6.25).
    ///
    /// # Errors
    /// [`GradeError::OutOfRange`] outside 100..=1000.
    pub const fn from_hundredths(hundredths: u16) -> Result<Self, GradeError> {
        if hundredths < Self::MIN.0 || hundredths > Self::MAX.0 {
            return Err(GradeError::OutOfRange);
        }
        Ok(Self(hundredths))
    }

    /// The grade in hundredths.
    #[must_use]
    pub const fn hundredths(self) -> u16 {
        self.0
    }

    /// Parses a grade as teachers write it: a whole grade `7`; with a modifier `7+` (7.25),
    /// `7-` (6.75), `7½`, `7 1/2` or `7 e mezzo` (7.5); or a decimal with a point or a comma and
    /// at most two decimals, `7.5`, `6,25`.
    ///
    /// # Errors
    /// [`GradeError::Notation`] for anything else; [`GradeError::OutOfRange`] outside 1 to 10
    /// (`10+` and `1-` included).
    pub fn parse(text: &str) -> Result<Self, GradeError> {
        let notation = || GradeError::Notation(text.to_owned());
        let t = text.trim().to_lowercase();
        let (whole, modifier): (&str, i32) = if let Some(w) = t.strip_suffix('+') {
            (w, 25)
        } else if let Some(w) = t.strip_suffix('-') {
            (w, -25)
        } else if let Some(w) = t
            .strip_suffix('½')
            .or_else(|| t.strip_suffix("1/2"))
            .or_else(|| t.strip_suffix("e mezzo"))
        {
            (w, 50)
        } else {
            return Self::parse_decimal(&t).unwrap_or_else(|| Err(notation()));
        };
        let whole = whole.trim();
        if whole.is_empty() || whole.len() > 2 || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(notation());
        }
        let whole: i32 = whole.parse().map_err(|_| notation())?;
        let hundredths = whole * 100 + modifier;
        u16::try_from(hundredths)
            .map_err(|_| GradeError::OutOfRange)
            .and_then(Self::from_hundredths)
    }

    /// `7`, `7.5`, `6,25`: `None` when it is not such a number (a value out of range is an
    /// error of its own, reported by the caller).
    fn parse_decimal(t: &str) -> Option<Result<Self, GradeError>> {
        let (whole, fraction) = match t.split_once(['.', ',']) {
            Some((w, f)) => (w, f),
            None => (t, ""),
        };
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || whole.len() > 2
            || fraction.len() > 2
            || !digits(whole)
            || !digits(fraction)
            || (t.contains(['.', ',']) && fraction.is_empty())
        {
            return None;
        }
        let whole: u16 = whole.parse().ok()?;
        let fraction: u16 = match fraction.len() {
            0 => 0,
            1 => fraction.parse::<u16>().ok()? * 10,
            _ => fraction.parse().ok()?,
        };
        Some(
            whole
                .checked_mul(100)
                .and_then(|w| w.checked_add(fraction))
                .ok_or(GradeError::OutOfRange)
                .and_then(Self::from_hundredths),
        )
    }

    /// Whether it is a pass (6 or more).
    #[must_use]
    pub const fn is_pass(self) -> bool {
        self.0 >= Self::PASS.0
    }
}

impl TryFrom<u16> for GradeValue {
    type Error = GradeError;
    fn try_from(hundredths: u16) -> Result<Self, Self::Error> {
        Self::from_hundredths(hundredths)
    }
}

impl From<GradeValue> for u16 {
    fn from(g: GradeValue) -> Self {
        g.0
    }
}

impl FromStr for GradeValue {
    type Err = GradeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for GradeValue {
    /// As teachers write it: `7`, `7+`, `7½`, `7-` (for 6.75), otherwise with two decimals
    /// (`6.40`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, rest) = (self.0 / 100, self.0 % 100);
        match rest {
            0 => write!(f, "{whole}"),
            25 => write!(f, "{whole}+"),
            50 => write!(f, "{whole}½"),
            75 => write!(f, "{}-", whole + 1),
            _ => write!(f, "{whole}.{rest:02}"),
        }
    }
}

/// The weight of a grade in the average, in hundredths (100 is the default weight 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Weight(u16);

impl Weight {
    /// The default weight, 1.
    pub const ONE: Weight = Weight(100);
    /// The largest weight, 10.
    pub const MAX: Weight = Weight(1000);

    /// A weight from hundredths (50 is 0.5), from 0.01 to 10.
    ///
    /// # Errors
    /// [`GradeError::Weight`] outside 1..=1000.
    pub fn from_hundredths(hundredths: u16) -> Result<Self, GradeError> {
        if hundredths == 0 || hundredths > Self::MAX.0 {
            return Err(GradeError::Weight(hundredths.to_string()));
        }
        Ok(Self(hundredths))
    }

    /// The weight in hundredths.
    #[must_use]
    pub const fn hundredths(self) -> u16 {
        self.0
    }

    /// Parses a weight as written: `1`, `0.5`, `0,25`, `2` (at most two decimals).
    ///
    /// # Errors
    /// [`GradeError::Weight`] for anything else, or outside 0.01 to 10.
    pub fn parse(text: &str) -> Result<Self, GradeError> {
        let bad = || GradeError::Weight(text.to_owned());
        let t = text.trim();
        let (whole, fraction) = t.split_once(['.', ',']).unwrap_or((t, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || whole.len() > 2
            || fraction.len() > 2
            || !digits(whole)
            || !digits(fraction)
            || (t.contains(['.', ',']) && fraction.is_empty())
        {
            return Err(bad());
        }
        let whole: u16 = whole.parse().map_err(|_| bad())?;
        let fraction: u16 = match fraction.len() {
            0 => 0,
            1 => fraction.parse::<u16>().map_err(|_| bad())? * 10,
            _ => fraction.parse().map_err(|_| bad())?,
        };
        Self::from_hundredths(whole * 100 + fraction).map_err(|_| bad())
    }
}

impl fmt::Display for Weight {
    /// `1`, `0.5`, `0.25`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, rest) = (self.0 / 100, self.0 % 100);
        match rest {
            0 => write!(f, "{whole}"),
            r if r % 10 == 0 => write!(f, "{whole}.{}", r / 10),
            r => write!(f, "{whole}.{r:02}"),
        }
    }
}

impl Default for Weight {
    fn default() -> Self {
        Self::ONE
    }
}

impl TryFrom<u16> for Weight {
    type Error = GradeError;
    fn try_from(hundredths: u16) -> Result<Self, Self::Error> {
        Self::from_hundredths(hundredths)
    }
}

impl From<Weight> for u16 {
    fn from(w: Weight) -> Self {
        w.0
    }
}

/// The scale a subject is graded on (`rules.md` section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Numbers from 1 to 10 with their modifiers, averaged (secondary schools).
    Numeric,
    /// Judgements (religion and its alternative activity), never averaged.
    Judgement,
    /// The six levels of primary school, never averaged.
    Level,
}

/// The judgement scale of religion (IRC) and its alternative activity, never averaged with
/// numbers: insufficiente, sufficiente, discreto, buono, distinto, ottimo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// Insufficiente.
    Insufficiente,
    /// Sufficiente.
    Sufficiente,
    /// Discreto.
    Discreto,
    /// Buono.
    Buono,
    /// Distinto.
    Distinto,
    /// Ottimo.
    Ottimo,
}

/// The six levels of primary school (L. 150/2024, OM 3/2025), lowest first; no numeric average
/// is ever computed from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryLevel {
    /// Non sufficiente.
    NonSufficiente,
    /// Sufficiente.
    Sufficiente,
    /// Discreto.
    Discreto,
    /// Buono.
    Buono,
    /// Distinto.
    Distinto,
    /// Ottimo.
    Ottimo,
}

macro_rules! italian_names {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// The name as written in the register.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }
        }

        impl FromStr for $ty {
            type Err = GradeError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim().to_lowercase().replace('_', " ");
                $(if t == $name { return Ok(Self::$variant); })*
                Err(GradeError::Judgement(s.to_owned()))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

italian_names!(Judgement {
    Insufficiente => "insufficiente",
    Sufficiente => "sufficiente",
    Discreto => "discreto",
    Buono => "buono",
    Distinto => "distinto",
    Ottimo => "ottimo",
});

italian_names!(PrimaryLevel {
    NonSufficiente => "non sufficiente",
    Sufficiente => "sufficiente",
    Discreto => "discreto",
    Buono => "buono",
    Distinto => "distinto",
    Ottimo => "ottimo",
});

/// The kind of test a grade is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradeKind {
    /// Scritto.
    Written,
    /// Orale.
    Oral,
    /// Pratico.
    Practical,
    /// Grafico.
    Graphic,
}

/// A weighted average of numeric grades, rounded half up to hundredths: what the register shows
/// (with two decimals) and what the proposal is computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Average(u16);

impl Average {
    /// The weighted arithmetic mean of `grades` (value and weight), rounded half up to
    /// hundredths; `None` without grades.
    #[must_use]
    pub fn of(grades: impl IntoIterator<Item = (GradeValue, Weight)>) -> Option<Self> {
        let (sum, weights) = grades
            .into_iter()
            .fold((0u64, 0u64), |(s, w), (g, weight)| {
                let weight = u64::from(weight.0);
                (s + u64::from(g.0) * weight, w + weight)
            });
        if weights == 0 {
            return None;
        }
        // Half up: floor((2 * sum + weights) / (2 * weights)).
        let rounded = (2 * sum + weights) / (2 * weights);
        u16::try_from(rounded).ok().map(Self)
    }

    /// The average in hundredths.
    #[must_use]
    pub const fn hundredths(self) -> u16 {
        self.0
    }

    /// The whole grade a teacher's proposal (proposta di voto) is pre-filled with: the shown
    /// average (two decimals) rounded half up, so 5.50 proposes 6 and 5.49 proposes 5.
    #[must_use]
    pub const fn proposal(self) -> u8 {
        // At most 10: an average of grades from 1 to 10.
        ((self.0 + 50) / 100) as u8
    }
}

impl fmt::Display for Average {
    /// With two decimals, as the register shows it: `6.53`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(text: &str) -> GradeValue {
        GradeValue::parse(text).unwrap()
    }

    #[test]
    fn rule_2_modifiers_are_the_values_the_rules_give() {
        assert_eq!(g("6+").hundredths(), 625);
        assert_eq!(g("6½").hundredths(), 650);
        assert_eq!(g("6 1/2").hundredths(), 650);
        assert_eq!(g("6 e mezzo").hundredths(), 650);
        assert_eq!(g("6-").hundredths(), 575);
        assert_eq!(g("7-").hundredths(), 675);
        assert_eq!(g("10-").hundredths(), 975);
        assert_eq!(g("1+").hundredths(), 125);
        assert_eq!(g(" 8 ").hundredths(), 800);
        assert_eq!(g("7.5").hundredths(), 750);
        assert_eq!(g("6,25").hundredths(), 625);
        assert_eq!(g("6.4").hundredths(), 640);
        assert_eq!(g("10").hundredths(), 1000);
    }

    #[test]
    fn out_of_range_and_malformed_grades_are_refused() {
        for bad in ["10+", "1-", "0", "11", "10.5", "0.75"] {
            assert_eq!(GradeValue::parse(bad), Err(GradeError::OutOfRange), "{bad}");
        }
        for bad in [
            "", "+", "sei", "6++", "6.", ".5", "6.125", "-6", "6/7", "100", "6 +x",
        ] {
            assert!(
                matches!(GradeValue::parse(bad), Err(GradeError::Notation(_))),
                "{bad}: {:?}",
                GradeValue::parse(bad)
            );
        }
    }

    #[test]
    fn grades_print_as_teachers_write_them() {
        for text in ["7", "7+", "7½", "7-", "10", "1+", "6.40"] {
            assert_eq!(g(text).to_string(), text);
        }
        assert_eq!(g("6,75").to_string(), "7-");
        assert!(g("6").is_pass() && !g("6-").is_pass());
    }

    #[test]
    fn rule_2_grades_are_stored_as_hundredths_never_floats() {
        assert_eq!(serde_json::to_string(&g("6+")).unwrap(), "625");
        assert_eq!(serde_json::from_str::<GradeValue>("650").unwrap(), g("6½"));
        assert!(serde_json::from_str::<GradeValue>("1001").is_err());
        assert!(serde_json::from_str::<Weight>("0").is_err());
    }

    #[test]
    fn rule_2_the_average_is_weighted_and_rounded_half_up_to_hundredths() {
        let one = Weight::ONE;
        // (6 + 7 + 8) / 3 = 7.00
        let avg = Average::of([(g("6"), one), (g("7"), one), (g("8"), one)]).unwrap();
        assert_eq!(
            (avg.hundredths(), avg.to_string()),
            (700, "7.00".to_owned())
        );
        // (6+ + 5-) / 2 = (6.25 + 4.75) / 2 = 5.50
        let avg = Average::of([(g("6+"), one), (g("5-"), one)]).unwrap();
        assert_eq!(avg.to_string(), "5.50");
        assert_eq!(avg.proposal(), 6);
        // 5 with weight 2 and 8 with weight 1: 18 / 3 = 6.00
        let two = Weight::from_hundredths(200).unwrap();
        assert_eq!(
            Average::of([(g("5"), two), (g("8"), one)])
                .unwrap()
                .to_string(),
            "6.00"
        );
        // (6 + 7 + 7) / 3 = 20 / 3 = 6.666.. -> 6.67
        assert_eq!(
            Average::of([(g("6"), one), (g("7"), one), (g("7"), one)])
                .unwrap()
                .to_string(),
            "6.67"
        );
        // 16/3 = 5.333.. -> 5.33, proposes 5
        let avg = Average::of([(g("5"), one), (g("5"), one), (g("6"), one)]).unwrap();
        assert_eq!((avg.to_string(), avg.proposal()), ("5.33".to_owned(), 5));
        // Exactly half a hundredth rounds up: (6.25 + 6.50 + 6.50 + 6.50) / 4 = 6.4375 -> 6.44
        let avg = Average::of([
            (g("6+"), one),
            (g("6½"), one),
            (g("6½"), one),
            (g("6½"), one),
        ])
        .unwrap();
        assert_eq!(avg.to_string(), "6.44");
        assert_eq!(Average::of([]), None);
    }

    #[test]
    fn rule_2_weights_default_to_one_and_read_as_written() {
        assert_eq!(Weight::default(), Weight::ONE);
        for (text, hundredths, shown) in [
            ("1", 100, "1"),
            ("0.5", 50, "0.5"),
            ("0,25", 25, "0.25"),
            ("2", 200, "2"),
            ("10", 1000, "10"),
        ] {
            let w = Weight::parse(text).unwrap();
            assert_eq!(
                (w.hundredths(), w.to_string()),
                (hundredths, shown.to_owned()),
                "{text}"
            );
        }
        for bad in ["0", "0.00", "10.5", "-1", "1.", "abc", "", "1.255"] {
            assert!(Weight::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rule_2_proposals_round_the_shown_average_half_up() {
        let avg = |h| Average(h);
        assert_eq!(avg(549).proposal(), 5);
        assert_eq!(avg(550).proposal(), 6);
        assert_eq!(avg(1000).proposal(), 10);
        assert_eq!(avg(100).proposal(), 1);
    }

    #[test]
    fn rule_2_judgements_and_levels_read_and_print_their_italian_names() {
        assert_eq!("Distinto".parse::<Judgement>(), Ok(Judgement::Distinto));
        assert_eq!(
            "non sufficiente".parse::<PrimaryLevel>(),
            Ok(PrimaryLevel::NonSufficiente)
        );
        assert_eq!(
            "non_sufficiente".parse::<PrimaryLevel>(),
            Ok(PrimaryLevel::NonSufficiente)
        );
        assert!("eccellente".parse::<Judgement>().is_err());
        assert!(Judgement::Insufficiente < Judgement::Sufficiente);
        assert!(PrimaryLevel::Distinto < PrimaryLevel::Ottimo);
        assert_eq!(PrimaryLevel::NonSufficiente.to_string(), "non sufficiente");
        assert_eq!(
            serde_json::to_string(&PrimaryLevel::NonSufficiente).unwrap(),
            "\"non_sufficiente\""
        );
    }
}
