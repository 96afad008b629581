//! The Italian fiscal code (codice fiscale) of a person: 16 characters, validated once at the
//! edge into [`FiscalCode`].
//!
//! Layout: `SSS NNN YY M DD CCCC K`: three letters from the surname, three from the name, the
//! year of birth (two digits), the month as a letter (`ABCDEHLMPRST`), the day of birth (plus 40
//! for women), the birthplace code (cadastral code of the comune, or `Z` and a country code),
//! and a check character. When two people would get the same code (omocodia), the revenue
//! agency replaces digits, from the right, with the letters `LMNPQRSTUV` (0 to 9); such codes
//! are valid too and are kept as issued.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A validated fiscal code, uppercase, exactly as issued (omocodic letters kept).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct FiscalCode(String);

/// Why a text is not a fiscal code. The messages are shown to school staff, in Italian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FiscalCodeError {
    /// Not 16 characters after removing spaces.
    #[error("il codice fiscale deve avere 16 caratteri, non {0}")]
    Length(usize),
    /// A character that cannot stand at that position.
    #[error("carattere non valido in posizione {position}: {found:?}")]
    Character {
        /// 1-based position.
        position: usize,
        /// What was found.
        found: char,
    },
    /// The month letter is not one of `ABCDEHLMPRST`.
    #[error("lettera del mese non valida: {0:?}")]
    Month(char),
    /// The day is not 1-31 (men) or 41-71 (women), or does not exist in that month.
    #[error("giorno di nascita non valido: {0}")]
    Day(u8),
    /// The check character does not match the other fifteen.
    #[error("carattere di controllo errato: atteso {expected:?}, trovato {found:?}")]
    CheckCharacter {
        /// What the other fifteen characters give.
        expected: char,
        /// What was written.
        found: char,
    },
}

/// The letters that stand for the digits 0..=9 in an omocodic code.
const OMOCODIA: &[u8; 10] = b"LMNPQRSTUV";
/// The month letters, January to December.
const MONTHS: &[u8; 12] = b"ABCDEHLMPRST";
/// The positions (0-based) that hold digits, possibly replaced by omocodic letters.
const DIGIT_POSITIONS: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];
/// The values of characters in odd (1-based) positions, for `0`/`A` to `9`/`J` and `K` to `Z`.
const ODD_VALUES: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

impl FiscalCode {
    /// Validates a fiscal code: spaces are removed and letters uppercased first.
    ///
    /// # Errors
    /// [`FiscalCodeError`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, FiscalCodeError> {
        let code: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let len = code.chars().count();
        if len != 16 {
            return Err(FiscalCodeError::Length(len));
        }
        let bytes = code.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            let ok = if DIGIT_POSITIONS.contains(&i) {
                b.is_ascii_digit() || OMOCODIA.contains(&b)
            } else {
                b.is_ascii_uppercase()
            };
            if !ok {
                return Err(FiscalCodeError::Character {
                    position: i + 1,
                    found: code[i..].chars().next().unwrap_or('?'),
                });
            }
        }
        let month = MONTHS
            .iter()
            .position(|&m| m == bytes[8])
            .ok_or(FiscalCodeError::Month(char::from(bytes[8])))?;
        let day = digit(bytes[9]) * 10 + digit(bytes[10]);
        let day_of_month = if day > 40 { day - 40 } else { day };
        // The century is not in the code, so 29 February is always allowed.
        const DAYS: [u8; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if day_of_month == 0 || day_of_month > DAYS[month] || (32..=40).contains(&day) {
            return Err(FiscalCodeError::Day(day));
        }
        let expected = check_character(&bytes[..15]);
        if bytes[15] != expected {
            return Err(FiscalCodeError::CheckCharacter {
                expected: char::from(expected),
                found: char::from(bytes[15]),
            });
        }
        Ok(Self(code))
    }

    /// Parses the fiscal code as an identity provider sends it: SPID gives
    /// `TINIT-<code>` (ETSI natural-person identifier for Italian tax numbers).
    ///
    /// # Errors
    /// As [`FiscalCode::parse`].
    pub fn parse_claim(claim: &str) -> Result<Self, FiscalCodeError> {
        let claim = claim.trim();
        let code = claim
            .get(..6)
            .filter(|p| p.eq_ignore_ascii_case("TINIT-"))
            .map_or(claim, |_| &claim[6..]);
        Self::parse(code)
    }

    /// Builds a code from its fifteen leading characters, adding the check character. For
    /// generating demo and test people; never a way around [`FiscalCode::parse`].
    ///
    /// # Errors
    /// As [`FiscalCode::parse`], when the fifteen characters are not well formed.
    pub fn with_check_character(first15: &str) -> Result<Self, FiscalCodeError> {
        let upper = first15.to_ascii_uppercase();
        if upper.len() != 15 || !upper.is_ascii() {
            return Err(FiscalCodeError::Length(upper.chars().count() + 1));
        }
        let check = char::from(check_character(upper.as_bytes()));
        Self::parse(&format!("{upper}{check}"))
    }

    /// The code as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code with any omocodic letters turned back into digits: the base code this one was
    /// derived from. An omocodic code and its base belong to **different** people (the letters
    /// are how the revenue agency tells them apart), so people are never matched in this form;
    /// it only tells that two codes look alike.
    #[must_use]
    pub fn without_omocodia(&self) -> String {
        let mut bytes = self.0.as_bytes().to_vec();
        for i in DIGIT_POSITIONS {
            if let Some(d) = OMOCODIA.iter().position(|&l| l == bytes[i]) {
                bytes[i] = b'0' + d as u8;
            }
        }
        let mut s: String = bytes[..15].iter().map(|&b| char::from(b)).collect();
        s.push(char::from(check_character(&bytes[..15])));
        s
    }
}

/// A digit, or the digit an omocodic letter stands for.
fn digit(b: u8) -> u8 {
    if b.is_ascii_digit() {
        b - b'0'
    } else {
        OMOCODIA.iter().position(|&l| l == b).map_or(0, |d| d as u8)
    }
}

/// The check character of the first fifteen characters (which must be digits or uppercase
/// letters).
fn check_character(first15: &[u8]) -> u8 {
    let sum: u32 = first15
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            let index = if b.is_ascii_digit() {
                b - b'0'
            } else {
                b.wrapping_sub(b'A')
            };
            let index = usize::from(index).min(25);
            // Positions are counted from 1: odd positions are the even indexes.
            if i % 2 == 0 {
                ODD_VALUES[index]
            } else {
                index as u32
            }
        })
        .sum();
    b'A' + (sum % 26) as u8
}

impl fmt::Display for FiscalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FiscalCode {
    // Personal data: logs show only the first three characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FiscalCode({}…)", &self.0[..3])
    }
}

impl FromStr for FiscalCode {
    type Err = FiscalCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for FiscalCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Synthetic codes only: surname XXX, name YYY, birthplace Z999 (no such country).
    fn synthetic(date: &str) -> FiscalCode {
        FiscalCode::with_check_character(&format!("XXXYYY{date}Z999")).unwrap()
    }

    #[test]
    fn the_check_character_follows_the_odd_and_even_tables() {
        // Worked by hand, position: character (value). Odd positions use the odd table, even
        // positions the plain value (digits 0-9, letters A=0..Z=25):
        // 1 X(25) 2 X(23) 3 X(25) 4 Y(24) 5 Y(24) 6 Y(24) 7 0(1) 8 1(1) 9 A(1) 10 0(0) 11 1(0)
        // 12 Z(25) 13 9(21) 14 9(9) 15 9(21): sum 224, 224 mod 26 = 16 → 'Q'.
        assert_eq!(synthetic("01A01").as_str(), "XXXYYY01A01Z999Q");
    }

    #[test]
    fn valid_codes_parse_with_spaces_and_lowercase() {
        let code = synthetic("85M52");
        let written = code.as_str().to_lowercase();
        let spaced = format!("{} {}", &written[..6], &written[6..]);
        assert_eq!(FiscalCode::parse(&spaced).unwrap(), code);
    }

    #[test]
    fn a_wrong_check_character_is_named() {
        let code = synthetic("01A01");
        let wrong = format!("{}A", &code.as_str()[..15]);
        assert_eq!(
            FiscalCode::parse(&wrong),
            Err(FiscalCodeError::CheckCharacter {
                expected: 'Q',
                found: 'A'
            })
        );
    }

    #[test]
    fn malformed_codes_are_refused_with_the_reason() {
        assert_eq!(FiscalCode::parse("XXXYYY"), Err(FiscalCodeError::Length(6)));
        assert!(matches!(
            FiscalCode::parse("XXX1YY01A01Z999O"),
            Err(FiscalCodeError::Character { position: 4, .. })
        ));
        assert!(matches!(
            FiscalCode::with_check_character("XXXYYY01F01Z999"),
            Err(FiscalCodeError::Month('F'))
        ));
        assert!(matches!(
            FiscalCode::with_check_character("XXXYYY01A32Z999"),
            Err(FiscalCodeError::Day(32))
        ));
        assert!(matches!(
            FiscalCode::with_check_character("XXXYYY01B30Z999"),
            Err(FiscalCodeError::Day(30))
        ));
        assert!(matches!(
            FiscalCode::with_check_character("XXXYYY01A00Z999"),
            Err(FiscalCodeError::Day(0))
        ));
        assert!(
            FiscalCode::with_check_character("XXXYYY01B29Z999").is_ok(),
            "29 February is allowed"
        );
        assert!(
            FiscalCode::with_check_character("XXXYYY01A71Z999").is_ok(),
            "a woman born on the 31st"
        );
        assert!(
            FiscalCode::with_check_character("XXXYYY01A31Z999").is_ok(),
            "a man born on the 31st"
        );
        assert!(matches!(
            FiscalCode::with_check_character("XXXYYY01A32Z999"),
            Err(FiscalCodeError::Day(32))
        ));
        assert!(FiscalCode::parse("XXXYYY01A01Z999Ò").is_err());
        assert!(FiscalCode::parse("XXXYYY01A01Z999Q").is_ok());
    }

    #[test]
    fn omocodic_codes_are_valid_and_map_back_to_their_base() {
        let base = synthetic("01A01");
        // The last digit of the birthplace (9) replaced by V, then the check recomputed.
        let omocodic = FiscalCode::with_check_character("XXXYYY01A01Z99V").unwrap();
        assert_ne!(omocodic, base);
        assert_eq!(omocodic.without_omocodia(), base.as_str());
        // Letters outside LMNPQRSTUV cannot stand for digits.
        assert!(matches!(
            FiscalCode::with_check_character("XXXYYY01A01Z99A"),
            Err(FiscalCodeError::Character { position: 15, .. })
        ));
    }

    #[test]
    fn spid_claims_lose_their_tinit_prefix() {
        let code = synthetic("90H45");
        assert_eq!(
            FiscalCode::parse_claim(&format!("TINIT-{code}")).unwrap(),
            code
        );
        assert_eq!(
            FiscalCode::parse_claim(&format!("tinit-{}", code.as_str().to_lowercase())).unwrap(),
            code
        );
        assert_eq!(FiscalCode::parse_claim(code.as_str()).unwrap(), code);
    }

    #[test]
    fn debug_output_hides_the_code() {
        assert_eq!(format!("{:?}", synthetic("01A01")), "FiscalCode(XXX…)");
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let code = synthetic("01A01");
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(serde_json::from_str::<FiscalCode>(&json).unwrap(), code);
        assert!(serde_json::from_str::<FiscalCode>("\"XXXYYY01A01Z999A\"").is_err());
    }
}
