//! A fiscal code (codice fiscale) as a form or a file gives it: never a panic; one that parses
//! parses again from its own text to the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registro_domain::FiscalCode;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(code) = FiscalCode::parse(text) {
        let again = FiscalCode::parse(code.as_str()).expect("a parsed code parses again");
        assert_eq!(again, code);
    }
});
