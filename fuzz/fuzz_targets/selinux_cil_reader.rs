//! Any bytes through spo-selinux's CIL reader: it must never panic, and whatever it reads must
//! write back and read again to the same text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spo_selinux::verify::fuzz_cil_reader(data));
