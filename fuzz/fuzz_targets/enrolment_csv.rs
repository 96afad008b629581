//! An enrolment file (CSV) as a secretary uploads it: never a panic; rows, when it is clean,
//! come from data lines, at most the limit, each with a valid fiscal code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registro_domain::SchoolId;
use registro_domain::enrolment::{MAX_LINES, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let school = SchoolId::from_uuid(uuid_of(7));
    match parse(text, school, Some("fuzz")) {
        Ok(rows) => {
            assert!(!rows.is_empty() && rows.len() <= MAX_LINES);
            assert!(rows.iter().all(|r| r.line >= 2));
        }
        Err(errors) => assert!(!errors.is_empty()),
    }
});

fn uuid_of(n: u8) -> uuid::Uuid {
    uuid::Uuid::from_bytes([n; 16])
}
