//! Where in the kernel's text a capability check comes from: the address ranges, read from
//! `/proc/kallsyms`, the capability program compares the check's kernel stack against to leave
//! out the checks the kernel makes without auditing them (see `record_capable` in
//! `recorder.bpf.c`).

use std::io::BufRead;

/// The functions of a capability check itself, between the tracepoint and the function that
/// asked: the commoncap hook, the LSM dispatcher in front of it, and the helper that `ns_capable`
/// and `ns_capable_noaudit` share when the compiler keeps it out of line.
pub(crate) const CHECK_FUNCTIONS: [&str; 3] = ["cap_capable", "security_capable", "ns_capable_common"];

/// The functions that ask for a check with `CAP_OPT_NOAUDIT` (Linux 5.1 to 6.18; every other
/// no-audit check goes through one of them). `cap_vm_enough_memory` tail-calls `cap_capable`,
/// so its frame is gone from the stack and the dispatcher that called it,
/// `security_vm_enough_memory_mm`, is where the check seems to come from; that dispatcher asks
/// nothing else. A function missing from a kernel (inlined, renamed) is skipped: its checks then
/// count as audited, more than needed rather than less.
pub(crate) const UNAUDITED_CALLERS: [&str; 7] = [
    "ns_capable_noaudit",
    "has_ns_capability_noaudit",
    "has_capability_noaudit",
    "ptracer_capable",
    "kallsyms_show_value",
    "cap_vm_enough_memory",
    "security_vm_enough_memory_mm",
];

/// `CAP_RANGES` in `recorder.bpf.c`: the check's functions and the askers together.
pub(crate) const CAP_RANGES: usize = 16;
/// At most this many of them are the check's functions (with their compiler clones).
const CHECK_RANGES: usize = 4;
/// `RANGE_CHECK` and `RANGE_UNAUDITED` in `recorder.bpf.c`.
pub(crate) const RANGE_CHECK: u64 = 1;
pub(crate) const RANGE_UNAUDITED: u64 = 2;

/// A function's text, `[start, end)` as kallsyms gives it (`end` is the next symbol's address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TextRange {
    pub start: u64,
    pub end: u64,
}

/// The ranges the capability program needs; both empty when the kernel's symbols could not be
/// read (addresses hidden by `kernel.kptr_restrict`, no `/proc/kallsyms`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CapabilityCallers {
    pub check: Vec<TextRange>,
    pub unaudited: Vec<TextRange>,
}

impl CapabilityCallers {
    /// Whether the program can tell checks apart: the check's own functions were found.
    pub(crate) fn known(&self) -> bool {
        !self.check.is_empty()
    }

    /// Reads `/proc/kallsyms` (root sees the addresses unless `kernel.kptr_restrict` is 2);
    /// empty when it cannot.
    pub(crate) fn read() -> CapabilityCallers {
        match std::fs::File::open("/proc/kallsyms") {
            Ok(file) => Self::parse(std::io::BufReader::with_capacity(1 << 16, file)),
            Err(_) => CapabilityCallers::default(),
        }
    }

    /// The ranges of [`CHECK_FUNCTIONS`] and [`UNAUDITED_CALLERS`] in kallsyms text: lines of
    /// `address type name [module]`. A function ends where the next symbol at a higher address
    /// starts (kallsyms has no sizes). Compiler clones (`name.isra.0`, `name.cold`) count as the
    /// function. Symbols with a zero address (hidden) are ignored.
    pub(crate) fn parse(kallsyms: impl BufRead) -> CapabilityCallers {
        let mut addresses = Vec::new();
        let mut check = Vec::new();
        let mut unaudited = Vec::new();
        for line in kallsyms.lines() {
            let Ok(line) = line else { break };
            let mut fields = line.split_ascii_whitespace();
            let (Some(address), Some(_kind), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            let Ok(address) = u64::from_str_radix(address, 16) else {
                continue;
            };
            if address == 0 {
                continue;
            }
            addresses.push(address);
            let base = name.split('.').next().unwrap_or(name);
            if CHECK_FUNCTIONS.contains(&base) {
                check.push(address);
            } else if UNAUDITED_CALLERS.contains(&base) {
                unaudited.push(address);
            }
        }
        addresses.sort_unstable();
        addresses.dedup();
        let range = |start: u64| {
            let next = addresses.partition_point(|&a| a <= start);
            addresses.get(next).map(|&end| TextRange { start, end })
        };
        let ranges = |starts: Vec<u64>, max: usize| -> Vec<TextRange> {
            starts.into_iter().filter_map(range).take(max).collect()
        };
        CapabilityCallers {
            check: ranges(check, CHECK_RANGES),
            unaudited: ranges(unaudited, CAP_RANGES - CHECK_RANGES),
        }
    }

    /// The table the capability program reads (`cap_ranges`): `(start, end, kind)`, the check's
    /// functions first, at most [`CAP_RANGES`] entries.
    pub(crate) fn table(&self) -> Vec<(TextRange, u64)> {
        let check = self.check.iter().map(|&r| (r, RANGE_CHECK));
        let unaudited = self.unaudited.iter().map(|&r| (r, RANGE_UNAUDITED));
        check.chain(unaudited).take(CAP_RANGES).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff8136fe70 T file_ns_capable
ffffffff8136fec0 T has_capability_noaudit
ffffffff8136ff90 T ns_capable
ffffffff81370000 T capable
ffffffff81370070 T ns_capable_noaudit
ffffffff813700d0 T __pfx___x64_sys_capget
ffffffff81abf930 T cap_capable
ffffffff81abfa40 T __pfx_cap_capset
ffffffff81ac4ef0 T security_capable
ffffffff81ac4fd0 T __pfx_security_quotactl
ffffffff81ac5280 T security_vm_enough_memory_mm
ffffffff81ac5300 T __pfx_security_bprm_creds_for_exec
ffffffff81207a92 t has_ns_capability_noaudit.cold
ffffffff81207a99 t other.cold
ffffffffc0001000 t helper\t[some_module]
";

    #[test]
    fn finds_each_function_up_to_the_next_symbol() {
        let callers = CapabilityCallers::parse(KALLSYMS.as_bytes());
        assert_eq!(
            callers.check,
            [
                TextRange {
                    start: 0xffffffff81abf930,
                    end: 0xffffffff81abfa40
                },
                TextRange {
                    start: 0xffffffff81ac4ef0,
                    end: 0xffffffff81ac4fd0
                },
            ]
        );
        let starts: Vec<u64> = callers.unaudited.iter().map(|r| r.start).collect();
        assert_eq!(
            starts,
            [
                0xffffffff8136fec0,
                0xffffffff81370070,
                0xffffffff81ac5280,
                0xffffffff81207a92
            ]
        );
        // Out of address order (a .cold part listed later): still ends at the next address.
        assert_eq!(callers.unaudited[3].end, 0xffffffff81207a99);
        assert!(callers.known());
        let kinds: Vec<u64> = callers.table().iter().map(|&(_, kind)| kind).collect();
        assert_eq!(kinds, [1, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn hidden_addresses_give_nothing() {
        let hidden = "0000000000000000 T cap_capable\n0000000000000000 T security_capable\n";
        let callers = CapabilityCallers::parse(hidden.as_bytes());
        assert_eq!(callers, CapabilityCallers::default());
        assert!(!callers.known());
    }

    #[test]
    fn a_last_symbol_has_no_end_and_is_left_out() {
        let callers = CapabilityCallers::parse("ffffffff81000000 T cap_capable\n".as_bytes());
        assert!(callers.check.is_empty());
    }
}
