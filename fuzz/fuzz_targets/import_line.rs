//! A line of a school's export as an import reads it (another vendor's file, possibly
//! hostile): never a panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registro_domain::SchoolId;
use registro_store::portable::parse_line;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let school = SchoolId::from_uuid(uuid::Uuid::from_bytes([7; 16]));
    let _ = parse_line(school, text);
});
