//! Hostile manifests that are mostly nesting: the first byte says how many times (up to 255 ×
//! 64) to repeat the next eight bytes before the rest, so short inputs reach deep flow and
//! block nesting, long documents of it, and alias and merge chains. Reading must never panic,
//! and each problem's line must lie inside the source.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (count, rest) = data.split_first().map_or((0, data), |(c, r)| (usize::from(*c) * 64, r));
    let (unit, tail) = rest.split_at(rest.len().min(8));
    let mut bytes = unit.repeat(count);
    bytes.extend_from_slice(tail);
    if let Ok(text) = spo_model::document::decode_source("fuzz", &bytes)
        && let Ok(docs) = spo_model::parse_source("fuzz", text)
    {
        let lines = text.lines().count().max(1);
        for doc in &docs {
            for p in doc.problems.iter() {
                assert!(doc.line_of(&p.path) <= lines + 1, "{p} at line {} of {lines}", doc.line_of(&p.path));
            }
        }
    }
});
