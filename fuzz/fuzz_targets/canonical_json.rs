//! The canonical bytes the hash chain is computed over (RFC 8785): never a panic; the
//! canonical text is the same document, and canonical again as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registro_store::canonical::to_canonical_json;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(canonical) = to_canonical_json(&value) else {
        return;
    };
    let back: Value = serde_json::from_str(&canonical).expect("canonical text is JSON");
    assert_eq!(back, value, "{canonical}");
    assert_eq!(
        to_canonical_json(&back).expect("canonical again"),
        canonical,
        "canonical text is a fixed point"
    );
});
