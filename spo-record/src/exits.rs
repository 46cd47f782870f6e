//! The exit log (`exits.bpf.c`): which processes exited, when they had started and ended, and
//! which cgroup they were in, kept in a bounded LRU map the kernel fills on every process exit.
//!
//! An audit record names a pid. By the time a log reader sees the record, a short-lived
//! process (a container's `mkdir`, `uname`, a shell's child) has usually exited and its
//! `/proc` entry is gone, with the cgroup that said which container it was in. The exit log
//! keeps that for the last [`MAX_EXITED`] processes to exit on the node, so
//! [`ExitLog::get`] can still say where the process ran. Cost: one short program per process
//! exit, nothing per syscall.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject};

use crate::{RecordError, preflight};

#[allow(
    unsafe_code,
    missing_debug_implementations,
    unused_imports,
    unused_qualifications,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/exits.skel.rs"));
}

/// `CGROUP_NAME_MAX` in `exits.bpf.c`.
pub const EXIT_CGROUP_NAME: usize = 96;
/// `MAX_EXITED` in `exits.bpf.c`: the exits remembered (the oldest go first).
pub const MAX_EXITED: usize = 16_384;
/// The map value's size: two u64 and the name.
const VALUE_SIZE: usize = 16 + EXIT_CGROUP_NAME;

/// A process that exited, as the exit log remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    /// Its pid (thread group id).
    pub pid: u32,
    /// When it started, milliseconds since the epoch.
    pub started_ms: u64,
    /// When its last thread exited, milliseconds since the epoch.
    pub exited_ms: u64,
    /// The name of its cgroup directory (the unified hierarchy's, else the first v1 one's):
    /// for a container, its id or a name holding it (`cri-containerd-<id>.scope`).
    pub cgroup: String,
}

/// The loaded and attached exit log.
pub struct ExitLog {
    skel: skel::ExitsSkel<'static>,
    _link: Link,
}

impl std::fmt::Debug for ExitLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitLog").finish_non_exhaustive()
    }
}

/// Milliseconds since the epoch of a CLOCK_BOOTTIME instant in nanoseconds, by the clocks'
/// offset now (a wall clock jump between the exit and now shifts the answer by the jump).
fn boot_ns_to_epoch_ms(boot_ns: u64) -> Option<u64> {
    let read = |clock| {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec into the pointer it is given.
        let ok = unsafe { libc::clock_gettime(clock, &mut ts) } == 0;
        ok.then(|| i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec))
    };
    let offset = read(libc::CLOCK_REALTIME)? - read(libc::CLOCK_BOOTTIME)?;
    u64::try_from((i128::from(boot_ns) + offset) / 1_000_000).ok()
}

/// Reads a map value (see `struct exited`).
fn parse_value(pid: u32, bytes: &[u8]) -> Option<Exited> {
    if bytes.len() != VALUE_SIZE {
        return None;
    }
    let u64_at = |at: usize| bytes.get(at..at + 8)?.try_into().ok().map(u64::from_ne_bytes);
    let name = &bytes[16..];
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    Some(Exited {
        pid,
        started_ms: boot_ns_to_epoch_ms(u64_at(0)?)?,
        exited_ms: boot_ns_to_epoch_ms(u64_at(8)?)?,
        cgroup: String::from_utf8_lossy(&name[..end]).into_owned(),
    })
}

impl ExitLog {
    /// Checks privileges (CAP_BPF and CAP_PERFMON) and the kernel, loads the program and
    /// attaches it: exits are remembered from now on.
    pub fn start() -> Result<ExitLog, RecordError> {
        preflight::check()?;
        // The skeleton borrows its object's storage for as long as it lives: leaked, one box
        // per exit log (one per process in practice), so the log owns its skeleton.
        let storage: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
        let open = skel::ExitsSkelBuilder::default()
            .open(storage)
            .map_err(|source| RecordError::Open { source })?;
        let skel = open.load().map_err(|source| match preflight::missing_tracepoint() {
            Some(tracepoint) => RecordError::MissingTracepoint { tracepoint },
            None => RecordError::Load { source },
        })?;
        let value_size = skel.maps.exited.value_size() as usize;
        if value_size != VALUE_SIZE {
            return Err(RecordError::LayoutMismatch {
                map: "exited",
                expected: VALUE_SIZE,
                actual: value_size,
            });
        }
        let link = skel.progs.note_exit.attach().map_err(|source| RecordError::Attach {
            program: "note_exit",
            source,
        })?;
        Ok(ExitLog { skel, _link: link })
    }

    /// The last process with this pid to exit, if still remembered.
    pub fn get(&self, pid: u32) -> Option<Exited> {
        let bytes = self.skel.maps.exited.lookup(&pid.to_ne_bytes(), MapFlags::ANY).ok()??;
        parse_value(pid, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_the_program_writes_them() {
        let mut v = vec![0u8; VALUE_SIZE];
        v[..8].copy_from_slice(&1_000_000_000u64.to_ne_bytes());
        v[8..16].copy_from_slice(&3_000_000_000u64.to_ne_bytes());
        v[16..16 + 5].copy_from_slice(b"abcde");
        let e = parse_value(7, &v).expect("parsed");
        assert_eq!((e.pid, e.cgroup.as_str()), (7, "abcde"));
        assert_eq!(e.exited_ms - e.started_ms, 2000);
        // The epoch conversion lands near now for a boot time near now.
        let now_boot = {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: as in boot_ns_to_epoch_ms.
            unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        let ms = boot_ns_to_epoch_ms(now_boot).expect("converted");
        assert!(ms.abs_diff(now_ms) < 1000, "{ms} vs {now_ms}");
        // A full name without a NUL, and a wrong size.
        let mut full = v.clone();
        full[16..].fill(b'x');
        assert_eq!(parse_value(1, &full).expect("parsed").cgroup.len(), EXIT_CGROUP_NAME);
        assert!(parse_value(1, &v[..VALUE_SIZE - 1]).is_none());
    }
}
