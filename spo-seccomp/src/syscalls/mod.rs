//! Syscall tables: name <-> number for every architecture we know, and the audit
//! architecture constants seccomp filters check.
//!
//! # Source
//!
//! The tables in `generated.rs` are written by `cargo xtask syscalls` from the crates.io crate
//! [linux-raw-sys](https://crates.io/crates/linux-raw-sys) 0.12.1, whose `src/<arch>/general.rs`
//! is bindgen output of Linux's uapi `asm/unistd*.h` headers (Linux 6.17: the newest syscall in
//! it is `file_setattr`, 469). `cargo xtask syscalls --check` (run by CI) fails when the
//! checked-in file differs from what the generator writes. To move to a newer kernel, bump the
//! `=0.12.1` pin in `xtask/Cargo.toml` and `LINUX_RAW_SYS_VERSION` in `xtask/src/main.rs`, then
//! run `cargo xtask syscalls`.
//!
//! Syscalls newer than those headers are listed in `SYSCALL_ADDITIONS` of the generator, each
//! with the kernel table it comes from: `uprobe` (x86_64 336, x32 `0x4000_0150`, Linux 6.18).
//!
//! # Coverage
//!
//! | API architecture                | table (linux-raw-sys `src/` dir)                        |
//! |---------------------------------|---------------------------------------------------------|
//! | `X86_64`                        | `x86_64`, checked against the running kernel in tests   |
//! | `X86`                           | `x86` (i386)                                            |
//! | `X32`                           | `x32`, numbers include `__X32_SYSCALL_BIT` (0x40000000) |
//! | `Aarch64`                       | `aarch64`                                               |
//! | `Arm`                           | `arm` (EABI) plus the private `__ARM_NR_*` calls        |
//! | `Riscv64`                       | `riscv64`                                               |
//! | `Ppc`                           | `powerpc`                                               |
//! | `Ppc64`, `Ppc64le`              | `powerpc64`                                             |
//! | `S390x`                         | `s390x`                                                 |
//! | `Mips`, `Mipsel`                | `mips` (o32, 4000+)                                     |
//! | `Mips64`, `Mipsel64`            | `mips64` (n64, 5000+)                                   |
//! | `S390`, `Mips64N32`, `Mipsel64N32`, `Parisc`, `Parisc64`, `Native` | none     |
//!
//! The numbers are the ones the kernel puts in `seccomp_data.nr`, which is why x32 keeps the
//! x32 bit. The x32 table only has the calls the x32 ABI may make: the 64-bit-only slots of
//! `syscall_64.tbl` (like `rt_sigaction` at 13; x32 uses 512) are absent. The arm table names
//! the private calls `breakpoint`, `cacheflush`, `usr26`, `usr32`, `set_tls` and `get_tls`
//! (0x0f0001..0x0f0006) without their prefix, as libseccomp and strace do.
//!
//! Where a header defines two names for one number (only arm's `sync_file_range2` for
//! `arm_sync_file_range`), both resolve to the number and the number resolves to the kernel's
//! syscall-table name, which the header defines first.
//!
//! 31-bit `S390` has no table: linux-raw-sys has no header for it, and its numbering is not
//! s390x's: the `32` column of `arch/s390/kernel/syscalls/syscall.tbl` differs in dozens of
//! entries (16-bit uid calls, `*64` file calls, `_llseek`, `mmap2`), so borrowing s390x's
//! table would compile wrong filters. MIPS n32 and PA-RISC are not in linux-raw-sys either.

mod generated;

use spo_model::seccomp::Arch;

/// One architecture's syscalls, sorted by name and by number.
#[derive(Debug)]
pub struct SyscallTable {
    /// The architecture.
    pub arch: Arch,
    /// `(name, number)` sorted by name.
    pub by_name: &'static [(&'static str, u32)],
    /// `(number, name)` sorted by number, one name per number.
    pub by_number: &'static [(u32, &'static str)],
    /// Name -> number, built on first use: lookups dominate compile time, and a hash beats a
    /// binary search over ~400 string comparisons.
    index: std::sync::OnceLock<rustc_hash::FxHashMap<&'static str, u32>>,
}

impl SyscallTable {
    /// The number of `name`.
    pub fn number(&self, name: &str) -> Option<u32> {
        self.index
            .get_or_init(|| self.by_name.iter().copied().collect())
            .get(name)
            .copied()
    }

    /// The name of `nr`.
    pub fn name(&self, nr: u32) -> Option<&'static str> {
        self.by_number
            .binary_search_by(|(n, _)| n.cmp(&nr))
            .ok()
            .map(|i| self.by_number[i].1)
    }

    /// Every name.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + Clone + '_ {
        self.by_name.iter().map(|(n, _)| *n)
    }
}

/// Declares one `SyscallTable` static per API architecture over the shared generated slices.
macro_rules! syscall_tables {
    ($($table:ident: $arch:ident => $generated:ident, $by_number:ident;)+) => {
        $(
            static $table: SyscallTable = SyscallTable {
                arch: Arch::$arch,
                by_name: generated::$generated,
                by_number: generated::$by_number,
                index: std::sync::OnceLock::new(),
            };
        )+
    };
}

syscall_tables! {
    X86_TABLE: X86 => X86, X86_BY_NUMBER;
    X86_64_TABLE: X86_64 => X86_64, X86_64_BY_NUMBER;
    X32_TABLE: X32 => X32, X32_BY_NUMBER;
    ARM_TABLE: Arm => ARM, ARM_BY_NUMBER;
    AARCH64_TABLE: Aarch64 => AARCH64, AARCH64_BY_NUMBER;
    RISCV64_TABLE: Riscv64 => RISCV64, RISCV64_BY_NUMBER;
    PPC_TABLE: Ppc => POWERPC, POWERPC_BY_NUMBER;
    PPC64_TABLE: Ppc64 => POWERPC64, POWERPC64_BY_NUMBER;
    PPC64LE_TABLE: Ppc64le => POWERPC64, POWERPC64_BY_NUMBER;
    S390X_TABLE: S390x => S390X, S390X_BY_NUMBER;
    MIPS_TABLE: Mips => MIPS, MIPS_BY_NUMBER;
    MIPSEL_TABLE: Mipsel => MIPS, MIPS_BY_NUMBER;
    MIPS64_TABLE: Mips64 => MIPS64, MIPS64_BY_NUMBER;
    MIPSEL64_TABLE: Mipsel64 => MIPS64, MIPS64_BY_NUMBER;
}

/// The table of `arch` (`None` for SCMP_ARCH_NATIVE and architectures without a table; see the
/// module docs for which those are). Use [`resolve`] first to look up the native architecture.
pub fn table(arch: Arch) -> Option<&'static SyscallTable> {
    match arch {
        Arch::X86 => Some(&X86_TABLE),
        Arch::X86_64 => Some(&X86_64_TABLE),
        Arch::X32 => Some(&X32_TABLE),
        Arch::Arm => Some(&ARM_TABLE),
        Arch::Aarch64 => Some(&AARCH64_TABLE),
        Arch::Riscv64 => Some(&RISCV64_TABLE),
        Arch::Ppc => Some(&PPC_TABLE),
        Arch::Ppc64 => Some(&PPC64_TABLE),
        Arch::Ppc64le => Some(&PPC64LE_TABLE),
        Arch::S390x => Some(&S390X_TABLE),
        Arch::Mips => Some(&MIPS_TABLE),
        Arch::Mipsel => Some(&MIPSEL_TABLE),
        Arch::Mips64 => Some(&MIPS64_TABLE),
        Arch::Mipsel64 => Some(&MIPSEL64_TABLE),
        Arch::Native | Arch::S390 | Arch::Mips64N32 | Arch::Mipsel64N32 | Arch::Parisc | Arch::Parisc64 => None,
    }
}

/// `__AUDIT_ARCH_64BIT` of `include/uapi/linux/audit.h`.
const AUDIT_ARCH_64BIT: u32 = 0x8000_0000;
/// `__AUDIT_ARCH_LE`.
const AUDIT_ARCH_LE: u32 = 0x4000_0000;
/// `__AUDIT_ARCH_CONVENTION_MIPS64_N32`.
const AUDIT_ARCH_CONVENTION_MIPS64_N32: u32 = 0x2000_0000;

/// The `AUDIT_ARCH_*` value the kernel puts in `seccomp_data.arch` for `arch`: the ELF machine
/// (`EM_*`) with the 64-bit, little-endian and MIPS n32 flags of `include/uapi/linux/audit.h`.
/// `None` for SCMP_ARCH_NATIVE; [`resolve`] it first.
pub fn audit_arch(arch: Arch) -> Option<u32> {
    const EM_386: u32 = 3;
    const EM_MIPS: u32 = 8;
    const EM_PARISC: u32 = 15;
    const EM_PPC: u32 = 20;
    const EM_PPC64: u32 = 21;
    const EM_S390: u32 = 22;
    const EM_ARM: u32 = 40;
    const EM_X86_64: u32 = 62;
    const EM_AARCH64: u32 = 183;
    const EM_RISCV: u32 = 243;
    let value = match arch {
        Arch::Native => return None,
        Arch::X86 => EM_386 | AUDIT_ARCH_LE,
        // x32 shares x86_64's audit arch; only the syscall number's x32 bit tells them apart.
        Arch::X86_64 | Arch::X32 => EM_X86_64 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE,
        Arch::Arm => EM_ARM | AUDIT_ARCH_LE,
        Arch::Aarch64 => EM_AARCH64 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE,
        Arch::Mips => EM_MIPS,
        Arch::Mipsel => EM_MIPS | AUDIT_ARCH_LE,
        Arch::Mips64 => EM_MIPS | AUDIT_ARCH_64BIT,
        Arch::Mipsel64 => EM_MIPS | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE,
        Arch::Mips64N32 => EM_MIPS | AUDIT_ARCH_64BIT | AUDIT_ARCH_CONVENTION_MIPS64_N32,
        Arch::Mipsel64N32 => EM_MIPS | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE | AUDIT_ARCH_CONVENTION_MIPS64_N32,
        Arch::Ppc => EM_PPC,
        Arch::Ppc64 => EM_PPC64 | AUDIT_ARCH_64BIT,
        Arch::Ppc64le => EM_PPC64 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE,
        Arch::S390 => EM_S390,
        Arch::S390x => EM_S390 | AUDIT_ARCH_64BIT,
        Arch::Parisc => EM_PARISC,
        Arch::Parisc64 => EM_PARISC | AUDIT_ARCH_64BIT,
        Arch::Riscv64 => EM_RISCV | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE,
    };
    Some(value)
}

/// The architecture this program was built for, as the kernel sees its syscalls. `Native` on
/// targets the API has no architecture for (loongarch64, riscv32, sparc64, ...).
pub fn native_arch() -> Arch {
    let little = cfg!(target_endian = "little");
    if cfg!(all(target_arch = "x86_64", target_pointer_width = "32")) {
        Arch::X32
    } else if cfg!(target_arch = "x86_64") {
        Arch::X86_64
    } else if cfg!(target_arch = "x86") {
        Arch::X86
    } else if cfg!(target_arch = "aarch64") {
        Arch::Aarch64
    } else if cfg!(target_arch = "arm") {
        Arch::Arm
    } else if cfg!(target_arch = "riscv64") {
        Arch::Riscv64
    } else if cfg!(target_arch = "powerpc64") {
        if little { Arch::Ppc64le } else { Arch::Ppc64 }
    } else if cfg!(target_arch = "powerpc") {
        Arch::Ppc
    } else if cfg!(target_arch = "s390x") {
        Arch::S390x
    } else if cfg!(any(target_arch = "mips", target_arch = "mips32r6")) {
        if little { Arch::Mipsel } else { Arch::Mips }
    } else if cfg!(all(
        any(target_arch = "mips64", target_arch = "mips64r6"),
        target_pointer_width = "32"
    )) {
        if little { Arch::Mipsel64N32 } else { Arch::Mips64N32 }
    } else if cfg!(any(target_arch = "mips64", target_arch = "mips64r6")) {
        if little { Arch::Mipsel64 } else { Arch::Mips64 }
    } else {
        Arch::Native
    }
}

/// Whether `name` is a syscall on any architecture we have a table for (a name that is
/// unknown everywhere is a typo, not an architecture difference).
pub fn known_anywhere(name: &str) -> bool {
    Arch::ALL
        .iter()
        .filter_map(|a| table(*a))
        .any(|t| t.number(name).is_some())
}

/// `arch` with SCMP_ARCH_NATIVE replaced by [`native_arch`].
pub fn resolve(arch: Arch) -> Arch {
    match arch {
        Arch::Native => native_arch(),
        other => other,
    }
}

/// The known syscall of `arch` closest to the unknown `name`, for a "did you mean" hint.
/// `None` when `name` is known, when `arch` has no table, or when nothing is within an edit
/// distance of a third of `name`'s length (at least 1).
pub fn suggest(arch: Arch, name: &str) -> Option<&'static str> {
    let table = table(resolve(arch))?;
    // Syscall names are short; comparing a huge hostile string with every name is wasted work.
    if table.number(name).is_some() || name.len() > 64 {
        return None;
    }
    let wanted = name.trim().to_ascii_lowercase();
    if let Ok(i) = table.by_name.binary_search_by(|(n, _)| n.cmp(&wanted.as_str())) {
        return Some(table.by_name[i].0);
    }
    let limit = wanted.chars().count().div_ceil(3).max(1);
    // Among equally distant names, the one sharing the longer start wins (`open` -> `openat`,
    // not `fsopen`): Jaro-Winkler weighs the common prefix.
    table
        .names()
        .map(|known| {
            (
                strsim::osa_distance(&wanted, known),
                strsim::jaro_winkler(&wanted, known),
                known,
            )
        })
        .filter(|(distance, _, _)| *distance <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, known)| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> impl Iterator<Item = &'static SyscallTable> {
        Arch::ALL.iter().filter_map(|&arch| table(arch))
    }

    fn number(arch: Arch, name: &str) -> Option<u32> {
        table(arch).and_then(|t| t.number(name))
    }

    #[test]
    fn known_numbers() {
        assert_eq!(number(Arch::X86_64, "read"), Some(0));
        assert_eq!(number(Arch::X86_64, "openat"), Some(257));
        assert_eq!(number(Arch::X86_64, "clone3"), Some(435));
        assert_eq!(number(Arch::X86_64, "file_setattr"), Some(469));
        assert_eq!(number(Arch::X86_64, "uprobe"), Some(336));
        assert_eq!(number(Arch::X86, "socketcall"), Some(102));
        assert_eq!(number(Arch::X86, "open"), Some(5));
        assert_eq!(number(Arch::X32, "read"), Some(0x4000_0000));
        assert_eq!(number(Arch::X32, "rt_sigaction"), Some(0x4000_0200));
        assert_eq!(number(Arch::X32, "uprobe"), Some(0x4000_0150));
        assert_eq!(number(Arch::Aarch64, "openat"), Some(56));
        assert_eq!(number(Arch::Aarch64, "open"), None);
        assert_eq!(number(Arch::Arm, "open"), Some(5));
        assert_eq!(number(Arch::Arm, "cacheflush"), Some(0x000f_0002));
        assert_eq!(number(Arch::Arm, "set_tls"), Some(0x000f_0005));
        assert_eq!(number(Arch::Arm, "sync_file_range2"), Some(341));
        assert_eq!(number(Arch::Arm, "arm_sync_file_range"), Some(341));
        assert_eq!(table(Arch::Arm).and_then(|t| t.name(341)), Some("arm_sync_file_range"));
        assert_eq!(number(Arch::Riscv64, "openat"), Some(56));
        assert_eq!(number(Arch::Riscv64, "riscv_hwprobe"), Some(258));
        assert_eq!(number(Arch::Ppc64le, "openat"), Some(286));
        assert_eq!(number(Arch::S390x, "openat"), Some(288));
        assert_eq!(number(Arch::Mips, "read"), Some(4003));
        assert_eq!(number(Arch::Mipsel64, "read"), Some(5000));
        for arch in [
            Arch::X86,
            Arch::Aarch64,
            Arch::Arm,
            Arch::Riscv64,
            Arch::Ppc,
            Arch::S390x,
        ] {
            assert_eq!(number(arch, "file_setattr"), Some(469), "{arch}");
        }
    }

    #[test]
    fn tables_without_source_are_none() {
        for arch in [
            Arch::Native,
            Arch::S390,
            Arch::Mips64N32,
            Arch::Mipsel64N32,
            Arch::Parisc,
            Arch::Parisc64,
        ] {
            assert!(table(arch).is_none(), "{arch}");
        }
        for t in tables() {
            assert_eq!(table(t.arch).map(|same| same.arch), Some(t.arch));
        }
    }

    #[test]
    fn every_entry_round_trips() {
        for t in tables() {
            assert!(t.by_name.len() > 300, "{}: {} syscalls", t.arch, t.by_name.len());
            for &(name, nr) in t.by_name {
                assert_eq!(t.number(name), Some(nr), "{}: {name}", t.arch);
                let canonical = t
                    .name(nr)
                    .unwrap_or_else(|| panic!("{}: no name for {nr} ({name})", t.arch));
                assert_eq!(
                    t.number(canonical),
                    Some(nr),
                    "{}: {name} -> {nr} -> {canonical}",
                    t.arch
                );
            }
            for &(nr, name) in t.by_number {
                assert_eq!(t.number(name), Some(nr), "{}: {nr} -> {name}", t.arch);
            }
        }
    }

    #[test]
    fn tables_are_sorted_without_duplicates() {
        for t in tables() {
            assert!(
                t.by_name.windows(2).all(|w| w[0].0 < w[1].0),
                "{}: by_name not strictly sorted",
                t.arch
            );
            assert!(
                t.by_number.windows(2).all(|w| w[0].0 < w[1].0),
                "{}: by_number not strictly sorted",
                t.arch
            );
            let mut numbers: Vec<u32> = t.by_name.iter().map(|&(_, nr)| nr).collect();
            numbers.sort_unstable();
            numbers.dedup();
            assert_eq!(
                numbers.len(),
                t.by_number.len(),
                "{}: every number has one name",
                t.arch
            );
            assert_eq!(t.names().count(), t.by_name.len());
        }
    }

    #[test]
    fn abi_number_ranges() {
        let all =
            |arch: Arch, ok: fn(u32) -> bool| table(arch).is_some_and(|t| t.by_name.iter().all(|&(_, nr)| ok(nr)));
        assert!(all(Arch::X32, |nr| nr & 0x4000_0000 != 0));
        assert!(all(Arch::X86_64, |nr| nr < 512));
        assert!(all(Arch::Mips, |nr| (4000..5000).contains(&nr)));
        assert!(all(Arch::Mips64, |nr| (5000..6000).contains(&nr)));
        assert!(all(Arch::Arm, |nr| nr < 1000 || (0x000f_0001..=0x000f_0006).contains(&nr)));
    }

    #[test]
    fn audit_arch_values() {
        let expected = [
            (Arch::X86, 0x4000_0003),
            (Arch::X86_64, 0xC000_003E),
            (Arch::X32, 0xC000_003E),
            (Arch::Arm, 0x4000_0028),
            (Arch::Aarch64, 0xC000_00B7),
            (Arch::Mips, 0x0000_0008),
            (Arch::Mipsel, 0x4000_0008),
            (Arch::Mips64, 0x8000_0008),
            (Arch::Mipsel64, 0xC000_0008),
            (Arch::Mips64N32, 0xA000_0008),
            (Arch::Mipsel64N32, 0xE000_0008),
            (Arch::Ppc, 0x0000_0014),
            (Arch::Ppc64, 0x8000_0015),
            (Arch::Ppc64le, 0xC000_0015),
            (Arch::S390, 0x0000_0016),
            (Arch::S390x, 0x8000_0016),
            (Arch::Parisc, 0x0000_000F),
            (Arch::Parisc64, 0x8000_000F),
            (Arch::Riscv64, 0xC000_00F3),
        ];
        assert_eq!(expected.len() + 1, Arch::ALL.len(), "every architecture but Native");
        for (arch, value) in expected {
            assert_eq!(audit_arch(arch), Some(value), "{arch}");
        }
        assert_eq!(audit_arch(Arch::Native), None);
    }

    #[test]
    fn native_arch_resolves() {
        if cfg!(all(
            target_os = "linux",
            target_arch = "x86_64",
            target_pointer_width = "64"
        )) {
            assert_eq!(native_arch(), Arch::X86_64);
            assert_eq!(resolve(Arch::Native), Arch::X86_64);
        }
        assert_eq!(resolve(Arch::Arm), Arch::Arm);
        assert_ne!(
            resolve(Arch::Native),
            Arch::Native,
            "tests run on a target the API knows"
        );
        assert!(table(resolve(Arch::Native)).is_some());
    }

    #[test]
    fn native_numbers_match_libc() {
        if native_arch() == Arch::Native {
            return;
        }
        let native = table(native_arch()).expect("native architecture has a table");
        assert_eq!(native.number("read"), u32::try_from(libc::SYS_read).ok());
        assert_eq!(native.number("openat"), u32::try_from(libc::SYS_openat).ok());
        assert_eq!(native.number("exit_group"), u32::try_from(libc::SYS_exit_group).ok());
        assert_eq!(native.number("clone3"), u32::try_from(libc::SYS_clone3).ok());
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest(Arch::X86_64, "opnat"), Some("openat"));
        assert_eq!(suggest(Arch::X86_64, "OPENAT"), Some("openat"));
        assert_eq!(suggest(Arch::X86_64, "getpidd"), Some("getpid"));
        assert_eq!(suggest(Arch::Aarch64, "open"), Some("openat"));
        assert_eq!(suggest(Arch::X86_64, "openat"), None);
        assert_eq!(suggest(Arch::X86_64, "definitely_not_a_syscall"), None);
        assert_eq!(suggest(Arch::Parisc, "opnat"), None);
    }

    /// Every syscall tracepoint of the running kernel names a syscall of the x86_64 table; with
    /// Linux 6.18 on the test machine this shows the table covers 6.18.
    #[cfg(all(target_os = "linux", target_arch = "x86_64", target_pointer_width = "64"))]
    #[test]
    fn x86_64_covers_running_kernel() {
        // Tracepoints are named after the kernel's SYSCALL_DEFINE, which for these differs
        // from the uapi name of the syscall that reaches it on x86_64.
        const TRACEPOINT_ALIASES: &[(&str, &str)] = &[
            // `struct stat` calls: the "new" stat replaced the old one in the kernel, the old
            // numbers never existed on x86_64, so uapi keeps the plain names.
            ("newfstat", "fstat"),
            ("newlstat", "lstat"),
            ("newstat", "stat"),
            // Likewise `struct new_utsname`.
            ("newuname", "uname"),
            // x86_64's sendfile (40) is the 64-bit-offset implementation.
            ("sendfile64", "sendfile"),
            // SYSCALL_DEFINE2(umount) is umount2 (166); x86_64 has no one-argument umount.
            ("umount", "umount2"),
        ];
        let dir = std::path::Path::new("/sys/kernel/tracing/events/syscalls");
        let Ok(entries) = std::fs::read_dir(dir) else {
            // scripts/setup mounts tracefs; in CI nothing may be skipped.
            assert!(
                std::env::var_os("CI").is_none(),
                "tracefs is not mounted at /sys/kernel/tracing"
            );
            eprintln!("skipped: tracefs not mounted (mount -t tracefs nodev /sys/kernel/tracing)");
            return;
        };
        let x86_64 = table(Arch::X86_64).expect("x86_64 table");
        let mut seen = 0;
        let mut missing = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(tracepoint) = file_name.to_str().and_then(|n| n.strip_prefix("sys_enter_")) else {
                continue;
            };
            seen += 1;
            let name = TRACEPOINT_ALIASES
                .iter()
                .find(|(alias, _)| *alias == tracepoint)
                .map_or(tracepoint, |(_, n)| *n);
            if x86_64.number(name).is_none() {
                missing.push(tracepoint.to_owned());
            }
        }
        assert!(seen > 300, "only {seen} syscall tracepoints in {}", dir.display());
        missing.sort();
        assert!(
            missing.is_empty(),
            "syscalls of the running kernel missing from the x86_64 table: {missing:?}"
        );
    }
}
