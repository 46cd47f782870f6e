//! Any bytes as a SelinuxProfile (JSON) and as a RawSelinuxProfile's policy: rendering must
//! never panic, and whatever renders must be one block with exactly the intended statements.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spo_selinux::verify::fuzz_render(data));
