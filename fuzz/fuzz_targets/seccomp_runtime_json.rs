//! Any UTF-8 text through the strict runtime-JSON reader, and whatever it accepts back out
//! through the converters and the node-file renderer. None of it may panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(runtime) = spo_seccomp::oci::parse_runtime_json(text) else {
        return;
    };
    if let Ok(spec) = spo_seccomp::oci::from_runtime(&runtime) {
        let _ = spo_seccomp::oci::to_runtime(&spec);
        let _ = spo_seccomp::oci::render_node_json(&spec);
    }
});
