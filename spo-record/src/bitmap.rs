//! The per-target value of the `syscalls` BPF map, decoded from its raw bytes.

use std::collections::{BTreeMap, BTreeSet};

/// Syscall numbers below this are recorded (`MAX_SYSCALL_NR` in `recorder.bpf.c`).
pub(crate) const MAX_SYSCALL_NR: u32 = 1024;
const WORDS: usize = (MAX_SYSCALL_NR / 64) as usize;

/// Size in bytes of `struct target_syscalls`; checked against the loaded map so the C and this
/// decoder cannot drift apart silently.
/// `SOCKET_WORDS` in `recorder.bpf.c`.
const SOCKET_WORDS: usize = 16;
pub(crate) const VALUE_SIZE: usize = (2 * WORDS + 3 + 2 + SOCKET_WORDS + 3) * 8;

/// What one target did, as `struct target_syscalls` in `recorder.bpf.c` lays it out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TargetSyscalls {
    /// Numbers of syscalls made through the native ABI.
    pub native: BTreeSet<u32>,
    /// Numbers of syscalls made through the compat ABI (ia32 on x86-64).
    pub compat: BTreeSet<u32>,
    /// Syscalls whose number was too large to record.
    pub out_of_range: u64,
    /// Processes the tree created that could not be tracked (the `targets` map was full).
    pub untracked_processes: u64,
    /// Waiting processes that installed a seccomp filter and so started being recorded.
    pub filter_starts: u64,
    /// Capabilities checked with auditing (CAP_* numbers), with whether a check allowed it.
    pub capabilities: BTreeMap<u32, bool>,
    /// Checks left out because the kernel made them without auditing them.
    pub caps_unaudited: u64,
    /// Checks counted although the program could not tell whether they were audited.
    pub caps_unclassified: u64,
    /// Sockets created, as (domain, type) numbers.
    pub sockets: BTreeSet<(u32, u32)>,
    /// File and program events the ring buffer had no room for.
    pub lost_events: u64,
}

impl TargetSyscalls {
    /// Decodes a map value; `None` when it does not have [`VALUE_SIZE`] bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Option<TargetSyscalls> {
        if bytes.len() != VALUE_SIZE {
            return None;
        }
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
            .collect();
        Some(TargetSyscalls {
            native: numbers(&words[..WORDS]),
            compat: numbers(&words[WORDS..2 * WORDS]),
            out_of_range: words[2 * WORDS],
            untracked_processes: words[2 * WORDS + 1],
            filter_starts: words[2 * WORDS + 2],
            capabilities: numbers(&words[2 * WORDS + 3..2 * WORDS + 4])
                .into_iter()
                .map(|cap| (cap, words[2 * WORDS + 4] & (1 << cap) != 0))
                .collect(),
            sockets: numbers(&words[2 * WORDS + 5..2 * WORDS + 5 + SOCKET_WORDS])
                .into_iter()
                .map(|bit| (bit >> 4, bit & 15))
                .collect(),
            lost_events: words[2 * WORDS + 5 + SOCKET_WORDS],
            caps_unaudited: words[2 * WORDS + 6 + SOCKET_WORDS],
            caps_unclassified: words[2 * WORDS + 7 + SOCKET_WORDS],
        })
    }
}

/// The set bits of a bitmap, bit `n` of word `w` being syscall `w * 64 + n`.
fn numbers(words: &[u64]) -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    for (w, &word) in (0u32..).zip(words) {
        let mut rest = word;
        while rest != 0 {
            let bit = rest.trailing_zeros();
            set.insert(w * 64 + bit);
            rest &= rest - 1;
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(native: &[u32], compat: &[u32], out_of_range: u64, untracked: u64, starts: u64) -> Vec<u8> {
        let mut words = vec![0u64; VALUE_SIZE / 8];
        for &n in native {
            words[(n / 64) as usize] |= 1 << (n % 64);
        }
        for &n in compat {
            words[WORDS + (n / 64) as usize] |= 1 << (n % 64);
        }
        words[2 * WORDS] = out_of_range;
        words[2 * WORDS + 1] = untracked;
        words[2 * WORDS + 2] = starts;
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn decodes_bits_in_both_halves_and_the_counters() {
        let bytes = encode(&[0, 1, 59, 63, 64, 231, 1023], &[1, 20, 252], 3, 2, 1);
        let got = TargetSyscalls::decode(&bytes).expect("right size");
        assert_eq!(got.native, BTreeSet::from([0, 1, 59, 63, 64, 231, 1023]));
        assert_eq!(got.compat, BTreeSet::from([1, 20, 252]));
        assert_eq!(
            (got.out_of_range, got.untracked_processes, got.filter_starts),
            (3, 2, 1)
        );
    }

    #[test]
    fn rejects_a_value_of_another_size() {
        assert_eq!(TargetSyscalls::decode(&[0; VALUE_SIZE - 8]), None);
        assert_eq!(
            TargetSyscalls::decode(&[0; VALUE_SIZE]),
            Some(TargetSyscalls::default())
        );
    }
}
