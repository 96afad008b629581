//! A grade and a weight as teachers write them (`7+`, `6 1/2`, `7 e mezzo`, `0,5`): never a
//! panic; a value that parses is in range and parses again from its own text to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registro_domain::grade::{GradeValue, Weight};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(grade) = GradeValue::parse(text) {
        assert!((100..=1000).contains(&grade.hundredths()), "{text:?}");
        assert_eq!(GradeValue::parse(&grade.to_string()), Ok(grade), "{text:?}");
    }
    if let Ok(weight) = Weight::parse(text) {
        assert!((1..=1000).contains(&weight.hundredths()), "{text:?}");
        assert_eq!(Weight::parse(&weight.to_string()), Ok(weight), "{text:?}");
    }
});
