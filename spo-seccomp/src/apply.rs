//! Installing a compiled filter on the calling process.
//!
//! This is one of the two places where the workspace allows `unsafe` (the other is the eBPF
//! loader): two raw kernel calls, `prctl(PR_SET_NO_NEW_PRIVS)` and
//! `seccomp(SECCOMP_SET_MODE_FILTER)`. A filter, once installed, cannot be removed; it is
//! inherited by children and survives `execve`, which is how `spoc run` confines a command.
//! The supervisor of a confined command also catches the signals it passes on to the command
//! (`sigaction` and `kill`, the same kind of raw call).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use spo_model::seccomp::{SeccompFlag, SeccompProfileSpec};

use crate::compile::Program;
use crate::compile::bpf::{BPF_MAXINSNS, BPF_RET, RET_ACTION_FULL, RET_USER_NOTIF};
use crate::error::SeccompError;

/// `SECCOMP_SET_MODE_FILTER`.
const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
/// `SECCOMP_FILTER_FLAG_TSYNC`.
pub const FLAG_TSYNC: u32 = 1;
/// `SECCOMP_FILTER_FLAG_LOG`.
pub const FLAG_LOG: u32 = 2;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`.
pub const FLAG_SPEC_ALLOW: u32 = 4;
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (Linux 5.19).
pub const FLAG_WAIT_KILLABLE_RECV: u32 = 32;

/// The seccomp(2) flags a profile asks for.
pub fn flags_of(spec: &SeccompProfileSpec) -> u32 {
    spec.flags
        .iter()
        .flatten()
        .map(|f| match f {
            SeccompFlag::Tsync => FLAG_TSYNC,
            SeccompFlag::Log => FLAG_LOG,
            SeccompFlag::SpecAllow => FLAG_SPEC_ALLOW,
            SeccompFlag::WaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        })
        .fold(0, |a, b| a | b)
}

/// Sets `no_new_privs` and installs `program` on the calling thread (on every thread of the
/// process with [`FLAG_TSYNC`]).
///
/// Programs that notify a user-space agent are refused: without an agent holding the
/// listener, every notified syscall would fail with ENOSYS.
pub fn install_filter(program: &Program, flags: u32) -> Result<(), SeccompError> {
    check_installable(program)?;
    install_raw(&program.insns, flags)
}

/// The checks [`install_filter`] makes before touching the kernel.
pub fn check_installable(program: &Program) -> Result<(), SeccompError> {
    let insns = &program.insns;
    if insns.is_empty() {
        return Err(SeccompError::Invalid("the filter program is empty".into()));
    }
    if insns.len() > BPF_MAXINSNS {
        return Err(SeccompError::TooLong {
            len: insns.len(),
            limit: BPF_MAXINSNS,
        });
    }
    if insns
        .iter()
        .any(|i| i.class() == BPF_RET && i.k & RET_ACTION_FULL == RET_USER_NOTIF)
    {
        return Err(SeccompError::Invalid(
            "the profile uses SCMP_ACT_NOTIFY, which needs a seccomp agent; this command does not run one".into(),
        ));
    }
    Ok(())
}

/// Arranges for `cmd` to run under `program`: the filter is installed in the child between
/// fork and execve, so nothing but `execve` itself runs confined before the command starts
/// (the profile must allow `execve`). The program is checked here, in the parent.
pub fn confine_command(cmd: &mut std::process::Command, program: Program, flags: u32) -> Result<(), SeccompError> {
    use std::os::unix::process::CommandExt;
    check_installable(&program)?;
    let insns = program.insns;
    // SAFETY: the closure runs in the forked child before execve. It only calls prctl and
    // seccomp through `install_raw`, which are async-signal-safe system calls; it allocates
    // nothing (`insns` was allocated before the fork and is only read), and its error is an
    // `io::Error` from errno, which does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            install_raw(&insns, flags).map_err(|e| match e {
                SeccompError::Kernel { source, .. } => source,
                _ => std::io::Error::from_raw_os_error(libc::EINVAL),
            })
        });
    }
    Ok(())
}

/// The two kernel calls, with no allocation on success or failure.
fn install_raw(insns: &[crate::compile::bpf::Insn], flags: u32) -> Result<(), SeccompError> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only and touches no
    // memory of ours.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(SeccompError::Kernel {
            operation: "setting no_new_privs",
            source: std::io::Error::last_os_error(),
        });
    }
    let len = u16::try_from(insns.len()).map_err(|_| SeccompError::TooLong {
        len: insns.len(),
        limit: BPF_MAXINSNS,
    })?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads the program; `Insn` is `#[repr(C)]` with the layout of
        // `struct sock_filter`.
        filter: insns.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `len` valid, initialised `sock_filter`-layout instructions
    // that outlive the call; the kernel copies the program before returning.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    match rc {
        0 => Ok(()),
        tid if tid > 0 => Err(SeccompError::Kernel {
            operation: "synchronising the seccomp filter to every thread (TSYNC): another thread has a different filter",
            source: std::io::Error::from_raw_os_error(libc::ESRCH),
        }),
        _ => Err(SeccompError::Kernel {
            operation: "installing the seccomp filter",
            source: std::io::Error::last_os_error(),
        }),
    }
}

/// The signals a supervisor of a confined command (`spoc run`, `spoc record`) catches and
/// passes on to the command instead of dying of them and leaving the command behind.
pub const RELAYED_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// How many of each relayed signal arrived, by sender: index 0 for signals a process sent
/// (`kill`), 1 for those the kernel sent (a terminal's Ctrl-C, which the kernel already
/// delivered to the whole foreground process group, the command included).
static RECEIVED: [[AtomicU32; 2]; 3] = [
    [AtomicU32::new(0), AtomicU32::new(0)],
    [AtomicU32::new(0), AtomicU32::new(0)],
    [AtomicU32::new(0), AtomicU32::new(0)],
];

/// A relayed signal that arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedSignal {
    /// The signal number.
    pub signal: i32,
    /// Whether the kernel sent it to the whole process group (a terminal's Ctrl-C or hangup):
    /// the command got it already and must not get it twice.
    pub from_terminal: bool,
}

extern "C" fn note_signal(signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // Only atomics are touched: async-signal-safe.
    let from_kernel = !info.is_null() && {
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler; it is only read.
        unsafe { (*info).si_code == libc::SI_KERNEL }
    };
    if let Some(i) = RELAYED_SIGNALS.iter().position(|s| *s == signal) {
        RECEIVED[i][usize::from(from_kernel)].fetch_add(1, Ordering::SeqCst);
    }
}

/// Catches [`RELAYED_SIGNALS`] for the rest of the process's life: they are counted for
/// [`take_received_signals`] instead of ending it. A command started afterwards gets the
/// default dispositions back at `execve`.
pub fn catch_relayed_signals() -> Result<(), SeccompError> {
    for signal in RELAYED_SIGNALS {
        // SAFETY: a zeroed sigaction is a valid value (empty mask, no flags); the handler
        // is an `extern "C"` function with the SA_SIGINFO signature that only touches atomics,
        // and `sigaction` reads the struct before returning.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(SeccompError::Kernel {
                operation: "installing a signal handler",
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// The relayed signals that arrived since the last call, in the order of [`RELAYED_SIGNALS`].
pub fn take_received_signals() -> Vec<ReceivedSignal> {
    let mut out = Vec::new();
    for (i, signal) in RELAYED_SIGNALS.iter().enumerate() {
        for (from_terminal, counter) in [(false, &RECEIVED[i][0]), (true, &RECEIVED[i][1])] {
            for _ in 0..counter.swap(0, Ordering::SeqCst) {
                out.push(ReceivedSignal {
                    signal: *signal,
                    from_terminal,
                });
            }
        }
    }
    out
}

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: i32) -> Result<(), SeccompError> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| SeccompError::Invalid(format!("pid {pid} is out of range")))?;
    // SAFETY: kill takes integers only.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        return Err(SeccompError::Kernel {
            operation: "passing a signal on to the command",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The name of a signal for messages (`SIGTERM`), or its number.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::bpf::{BPF_K, Insn, RET_ALLOW};

    #[test]
    fn flags_map_to_kernel_bits() {
        let mut spec: SeccompProfileSpec = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG"]}"#,
        )
        .expect("spec");
        assert_eq!(flags_of(&spec), 3);
        spec.flags = None;
        assert_eq!(flags_of(&spec), 0);
    }

    #[test]
    fn refuses_programs_that_cannot_work() {
        let empty = Program {
            insns: vec![],
            comments: vec![],
        };
        assert!(install_filter(&empty, 0).is_err());
        let notify = Program {
            insns: vec![Insn::stmt(BPF_RET | BPF_K, RET_USER_NOTIF)],
            comments: vec![None],
        };
        assert!(install_filter(&notify, 0).is_err());
        let long = Program {
            insns: vec![Insn::stmt(BPF_RET | BPF_K, RET_ALLOW); BPF_MAXINSNS + 1],
            comments: vec![],
        };
        assert!(matches!(install_filter(&long, 0), Err(SeccompError::TooLong { .. })));
    }
}
