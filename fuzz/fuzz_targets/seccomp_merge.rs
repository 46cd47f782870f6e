//! Two SeccompProfileSpecs as JSON, one in each half of the input (pad the shorter with spaces),
//! through union, intersection and the behaviour diff. None of it may panic.
#![no_main]

use spo_model::seccomp::SeccompProfileSpec;
use spo_seccomp::merge;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (left, right) = data.split_at(data.len() / 2);
    let (Ok(a), Ok(b)) = (
        serde_json::from_slice::<SeccompProfileSpec>(left),
        serde_json::from_slice::<SeccompProfileSpec>(right),
    ) else {
        return;
    };
    let united = merge::union(&a, &b);
    let _ = merge::behaviour_changes(&a, &united);
    if let Ok(common) = merge::intersect(&a, &b) {
        let _ = merge::behaviour_changes(&a, &common);
    }
});
