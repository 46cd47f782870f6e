//! Any line through spo-enrich's audit record parser: it must never panic, whatever it reads as
//! a seccomp record has a known architecture, and the same line parses the same way again.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let first = spo_enrich::audit::parse_record(&line);
    assert_eq!(first, spo_enrich::audit::parse_record(&line), "parsing is not deterministic");
});
