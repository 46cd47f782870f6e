//! Any bytes through the manifest reader: size and UTF-8 checks, YAML/JSON splitting, the
//! strict schema walk and every kind's validate(). It must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = spo_model::document::decode_source("fuzz", data) {
        let _ = spo_model::parse_source("fuzz", text);
    }
});
