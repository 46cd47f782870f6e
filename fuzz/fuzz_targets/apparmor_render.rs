//! Bytes as AppArmorProfile manifests (YAML or JSON) and as one read-only path, rendered and
//! read back by our reader: each is refused with field errors or becomes exactly its rules.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = spo_apparmor::reader::fuzz_render(data) {
        panic!("{e}");
    }
});
