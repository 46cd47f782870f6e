//! Compiles the BPF C under `src/bpf/` and generates their libbpf-rs skeletons in `OUT_DIR`.

use std::env;
use std::ffi::OsStr;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

/// Each BPF source and the skeleton generated from it.
const SOURCES: [(&str, &str); 2] = [
    ("src/bpf/recorder.bpf.c", "recorder.skel.rs"),
    ("src/bpf/exits.bpf.c", "exits.skel.rs"),
];

fn main() {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let vmlinux_dir = PathBuf::from("src/bpf/vmlinux").join(&arch);
    if !vmlinux_dir.join("vmlinux.h").exists() {
        panic!(
            "no vmlinux.h for target arch {arch}: generate {}/vmlinux.h on such a machine with \
             `bpftool btf dump file /sys/kernel/btf/vmlinux format c` (see spo-record/README.md)",
            vmlinux_dir.display()
        );
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (source, skeleton) in SOURCES {
        if let Err(e) = SkeletonBuilder::new()
            .source(source)
            .clang_args([
                OsStr::new("-I"),
                vmlinux_dir.as_os_str(),
                // Warnings in our BPF C are errors, as clippy's are for the Rust side.
                OsStr::new("-Wall"),
                OsStr::new("-Werror"),
            ])
            .build_and_generate(out_dir.join(skeleton))
        {
            panic!(
                "compiling {source} failed (needs clang with the BPF target: `scripts/setup` \
                 installs it): {e:#}"
            );
        }
    }
    println!("cargo:rerun-if-changed=src/bpf");
}
