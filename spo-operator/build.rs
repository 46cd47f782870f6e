//! Link options of the operator's binaries.

fn main() {
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        // Relative relocations packed (DT_RELR, glibc 2.36 and binutils 2.38 or later): the
        // binaries are position independent, and their table of some 45,000 relative
        // relocations was 1 MiB that every process read at start and kept mapped; packed it is
        // a few KiB (docs/decisions.md, "The node daemon's own binary").
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
