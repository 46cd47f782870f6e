//! Bytes as two AppArmor path globs (split at the first NUL): whether they may overlap is
//! answered within the work bound, the same both ways round, and a glob the path grammar accepts
//! always overlaps itself (it matches at least one path).
#![no_main]

use spo_apparmor::glob::may_overlap;
use spo_apparmor::grammar::check_path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\0').unwrap_or((&text, ""));
    assert_eq!(may_overlap(a, b), may_overlap(b, a), "{a:?} and {b:?}");
    if check_path(a).is_ok() {
        assert!(may_overlap(a, a), "{a:?} does not overlap itself");
    }
});
