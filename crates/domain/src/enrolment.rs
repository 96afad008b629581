//! The enrolment file (iscrizioni da CSV): a secretary's spreadsheet of new students, one line
//! each, read into [`EnrolmentRow`]s or every bad line with its reason. Pure: no IO.

use time::Date;
use uuid::Uuid;

use crate::directory::EnrolmentRow;
use crate::{FiscalCode, PersonId, SchoolId};

/// The most data lines one file may have (an append carries at most 10,000 events, two a
/// student).
pub const MAX_LINES: usize = 4000;

/// The columns of the file's header, in order.
pub const COLUMNS: [&str; 5] = [
    "fiscal_code",
    "family_name",
    "given_name",
    "birth_date",
    "class",
];

/// A line of the file that cannot be taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The line's number in the file (1 is the header).
    pub line: usize,
    /// Why, in Italian.
    pub reason: String,
}

/// Parses the file into rows, or every line that cannot be read. A new student's id is derived
/// from the idempotency key and the line when there is a key, so that a retried upload is the
/// same command.
///
/// # Errors
/// Every line that cannot be read, with its number (1 is the header) and why, in Italian.
pub fn parse(
    text: &str,
    school: SchoolId,
    key: Option<&str>,
) -> Result<Vec<EnrolmentRow>, Vec<LineError>> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let bad = |line, reason: String| LineError { line, reason };
    let Some((_, header)) = lines.next() else {
        return Err(vec![bad(1, "il file è vuoto".into())]);
    };
    let delimiter = if header.contains(';') { ';' } else { ',' };
    let names: Vec<String> = header
        .trim_start_matches('\u{feff}')
        .split(delimiter)
        .map(|h| h.trim().to_lowercase())
        .collect();
    if names != COLUMNS {
        return Err(vec![bad(
            1,
            format!(
                "l'intestazione deve essere {}",
                COLUMNS.join(&delimiter.to_string())
            ),
        )]);
    }
    let data_lines = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    if data_lines == 0 {
        return Err(vec![bad(2, "il file non ha righe di dati".into())]);
    }
    if data_lines > MAX_LINES {
        return Err(vec![bad(
            MAX_LINES + 2,
            format!("il file ha {data_lines} righe: al più {MAX_LINES} per invio"),
        )]);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    for (line, text) in lines {
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split(delimiter).map(str::trim).collect();
        let [fiscal_code, family_name, given_name, birth_date, class] = fields[..] else {
            errors.push(bad(
                line,
                format!("servono {} campi, non {}", COLUMNS.len(), fields.len()),
            ));
            continue;
        };
        let fiscal_code = match FiscalCode::parse(fiscal_code) {
            Ok(code) => code,
            Err(e) => {
                errors.push(bad(line, format!("fiscal_code: {e}")));
                continue;
            }
        };
        let birth_date = match birth_date {
            "" => None,
            text => match Date::parse(text, &format) {
                Ok(d) => Some(d),
                Err(_) => {
                    errors.push(bad(line, "birth_date: si scrive AAAA-MM-GG".into()));
                    continue;
                }
            },
        };
        let person = PersonId::from_uuid(match key {
            Some(key) => Uuid::new_v5(
                school.as_uuid(),
                format!("enrolment:{key}:{line}").as_bytes(),
            ),
            None => Uuid::now_v7(),
        });
        rows.push(EnrolmentRow {
            line,
            person,
            fiscal_code,
            family_name: family_name.to_owned(),
            given_name: given_name.to_owned(),
            birth_date,
            class: class.to_owned(),
        });
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "fiscal_code;family_name;given_name;birth_date;class\n";

    #[test]
    fn a_clean_file_is_read_and_bad_lines_are_all_listed() {
        let school = SchoolId::new();
        let code = FiscalCode::with_check_character("XXXYYY12E50Z999").unwrap();
        let good = format!("{HEADER}{};Rossi;Anna;2012-05-10;1A\n", code.as_str());
        let rows = parse(&good, school, Some("k")).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].class, "1A");
        // The same key, the same ids: a retried upload is the same command.
        assert_eq!(parse(&good, school, Some("k")).unwrap(), rows);
        let bad = format!(
            "{HEADER}nope;Rossi;Anna;2012-05-10;1A\n{};Rossi\n",
            code.as_str()
        );
        let errors = parse(&bad, school, None).unwrap_err();
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(parse("", school, None).unwrap_err()[0].line, 1);
        assert_eq!(parse(HEADER, school, None).unwrap_err()[0].line, 2);
    }
}
