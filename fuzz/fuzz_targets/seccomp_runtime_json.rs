//! Any UTF-8 text through the strict runtime-JSON reader and the engine-format reader
//! (Docker's, podman's and containerd's profiles, evaluated for a fixed machine), and whatever
//! they accept back out through the converters and the node-file renderer. None of it may
//! panic.
#![no_main]

use spo_seccomp::oci::{DEFAULT_CONTAINER_CAPABILITIES, EngineContext, parse_runtime_profile};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(runtime) = spo_seccomp::oci::parse_runtime_json(text)
        && let Ok(spec) = spo_seccomp::oci::from_runtime(&runtime)
    {
        let _ = spo_seccomp::oci::to_runtime(&spec);
        let _ = spo_seccomp::oci::render_node_json(&spec);
    }
    // A fixed machine, so a run never depends on the host; and one with no known kernel, for
    // the minKernel error path.
    for kernel in [Some((6, 18)), None] {
        let ctx = EngineContext {
            arch: spo_model::seccomp::Arch::X86_64,
            kernel,
            capabilities: DEFAULT_CONTAINER_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
        };
        if let Ok(profile) = parse_runtime_profile(text, &ctx) {
            let _ = spo_seccomp::oci::render_node_json(&profile.spec);
        }
    }
});
