//! Compiles the BPF C under `src/bpf/` and generates its libbpf-rs skeleton in `OUT_DIR`.

use std::env;
use std::ffi::OsStr;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SOURCE: &str = "src/bpf/recorder.bpf.c";

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
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("recorder.skel.rs");

    if let Err(e) = SkeletonBuilder::new()
        .source(SOURCE)
        .clang_args([
            OsStr::new("-I"),
            vmlinux_dir.as_os_str(),
            // Warnings in our BPF C are errors, as clippy's are for the Rust side.
            OsStr::new("-Wall"),
            OsStr::new("-Werror"),
        ])
        .build_and_generate(&out)
    {
        panic!(
            "compiling {SOURCE} failed (needs clang with the BPF target: `scripts/setup` installs \
             it): {e:#}"
        );
    }
    println!("cargo:rerun-if-changed=src/bpf");
}
