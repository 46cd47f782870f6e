//! The real kernel as an oracle: a seccomp program is installed in a forked child, which then
//! makes many system calls (x86-64 through `syscall`, ia32 through `int 0x80`) and records what
//! each returned in memory shared with the parent.
//!
//! No call may do anything: before the program under test, the child installs a sentinel
//! filter that fails every call with `ERRNO(4095)` (except `seccomp` itself on x86-64, which
//! the child needs to install the program under test, and which is never among the calls).
//! The kernel runs every filter and keeps the action of highest precedence, the newest filter
//! winning a tie, so what a call returns tells the program's action:
//!
//! - killed by `SIGSYS`: `KILL_PROCESS`, `KILL_THREAD` or `TRAP` (no handler) - [`Verdict::Killed`];
//! - `-e` for `e` other than 4095: `ERRNO(e)` (the program's data wins the tie with the
//!   sentinel's) - [`Verdict::Errno`];
//! - `-4095`: `ALLOW`, `LOG`, `TRACE` or `USER_NOTIF`, all of lower precedence than the
//!   sentinel's `ERRNO` - [`Verdict::Passed`].
//!
//! A child killed at a call is replaced by a new one that goes on with the next call. The
//! child only makes raw system calls and stores to the shared memory between `fork` and its
//! end (no allocation, no locks), so forking the multi-threaded test process is safe.

// fork, raw system calls, inline assembly for `int 0x80`, shared memory.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicI64, Ordering};

use spo_seccomp::compile::bpf::Insn;

/// What the kernel did with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The process died of `SIGSYS`.
    Killed,
    /// The call failed with this errno, set by the program.
    Errno(u32),
    /// The program let it through (or traced, notified or logged it): the sentinel failed it.
    Passed,
    /// The call returned this value: it ran. Never expected.
    Ran(i64),
}

/// The verdict the kernel gives for a program that returned `ret` under the sentinel.
pub fn expected(ret: u32) -> Verdict {
    match ret & 0xffff_0000 {
        0x0005_0000 => match (ret & 0xffff).min(4095) {
            4095 => Verdict::Passed,
            e => Verdict::Errno(e),
        },
        // TRACE, USER_NOTIF, LOG, ALLOW: lower precedence than the sentinel's ERRNO.
        0x7ff0_0000 | 0x7fc0_0000 | 0x7ffc_0000 | 0x7fff_0000 => Verdict::Passed,
        // KILL_PROCESS, KILL_THREAD, TRAP, and any action the kernel does not know.
        _ => Verdict::Killed,
    }
}

/// One system call to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The number (with the x32 bit for x32 calls).
    pub nr: u32,
    /// Through `int 0x80` (ia32) rather than `syscall` (x86-64, x32).
    pub ia32: bool,
    /// The arguments (ia32 uses their low 32 bits).
    pub args: [u64; 6],
}

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;
const SENTINEL_ERRNO: u32 = 0x0005_0000 | 4095;

/// The sentinel filter: `seccomp` on x86-64 allowed, everything else `ERRNO(4095)`.
fn sentinel() -> [Insn; 6] {
    let insn = |code, jt, jf, k| Insn { code, jt, jf, k };
    [
        insn(0x20, 0, 0, 4),                        // ld [4]  (arch)
        insn(0x15, 0, 2, AUDIT_ARCH_X86_64),        // jeq x86-64 ? next : errno
        insn(0x20, 0, 0, 0),                        // ld [0]  (nr)
        insn(0x15, 1, 0, libc::SYS_seccomp as u32), // jeq seccomp ? allow : errno
        insn(0x06, 0, 0, SENTINEL_ERRNO),           // ret ERRNO(4095)
        insn(0x06, 0, 0, 0x7fff_0000),              // ret ALLOW
    ]
}

fn fprog(insns: &[Insn]) -> libc::sock_fprog {
    libc::sock_fprog {
        len: insns.len() as u16,
        // `Insn` is `#[repr(C)]` with the layout of `struct sock_filter`; the kernel only
        // reads through this pointer.
        filter: insns.as_ptr() as *mut libc::sock_filter,
    }
}

/// x86-64 `uretprobe` (335) and `uprobe` (336): the kernel runs them without asking any
/// seccomp filter (Linux 6.12 and 6.16: they only work from a uprobe trampoline, and
/// `uprobe` raises SIGILL anywhere else), so no profile can allow or deny them.
const SECCOMP_PASSTHROUGH_X86_64: [u32; 2] = [335, 336];

/// Whether this call may be made at all: `seccomp` itself (allowed by the sentinel), number
/// -1 (which the kernel treats specially) and the calls seccomp does not filter are not.
pub fn makeable(call: &Call) -> bool {
    call.nr != u32::MAX
        && (call.ia32 || (call.nr != libc::SYS_seccomp as u32 && !SECCOMP_PASSTHROUGH_X86_64.contains(&call.nr)))
}

/// Memory shared with the children: slot 0 counts the calls made, slot 1 + i holds call i's
/// return value (or a failure code < -4096 from the child's set-up).
struct Shared {
    ptr: *mut AtomicI64,
    len: usize,
}

impl Shared {
    fn new(len: usize) -> Shared {
        let bytes = len * std::mem::size_of::<AtomicI64>();
        // SAFETY: an anonymous shared mapping of `bytes` bytes; checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap of {bytes} bytes");
        Shared { ptr: ptr.cast(), len }
    }

    fn slot(&self, i: usize) -> &AtomicI64 {
        assert!(i < self.len);
        // SAFETY: within the mapping, which is zero-filled (a valid AtomicI64) and lives as
        // long as `self`.
        unsafe { &*self.ptr.add(i) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len * std::mem::size_of::<AtomicI64>());
        }
    }
}

/// A raw x86-64 system call: the kernel's return value, `-errno` on failure.
#[inline(always)]
unsafe fn syscall64(nr: u32, a: &[u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY (caller): the call cannot run (the sentinel fails it) or kills the process.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A raw ia32 system call through `int 0x80` (arguments in ebx, ecx, edx, esi, edi, ebp).
#[inline(always)]
unsafe fn syscall32(nr: u32, a: &[u64; 6]) -> i64 {
    let ret: i32;
    // SAFETY (caller): as for `syscall64`. ebx and ebp cannot be named as operands (LLVM
    // keeps them): they are saved, set and restored around the call. r8-r11 are cleared by
    // the kernel's compat entry.
    unsafe {
        std::arch::asm!(
            "push rbx",
            "push rbp",
            "mov ebx, {a0:e}",
            "mov ebp, {a5:e}",
            "int 0x80",
            "pop rbp",
            "pop rbx",
            a0 = in(reg) a[0] as u32,
            a5 = in(reg) a[5] as u32,
            inlateout("eax") nr => ret,
            in("ecx") a[1] as u32, in("edx") a[2] as u32,
            in("esi") a[3] as u32, in("edi") a[4] as u32,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
        );
    }
    i64::from(ret)
}

/// The child: filters in, then every call from `start` on, then spin until killed.
///
/// # Safety
/// Called right after `fork`, in the child. Makes only raw system calls and atomic stores.
unsafe fn child(
    sentinel: &libc::sock_fprog,
    program: &libc::sock_fprog,
    calls: &[Call],
    start: usize,
    shared: &Shared,
) -> ! {
    // SAFETY: plain system calls with valid arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        let fail = |code: i64| -> ! {
            shared.slot(0).store(code, Ordering::SeqCst);
            loop {
                std::hint::spin_loop();
            }
        };
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(-10_001);
        }
        if libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, sentinel as *const _) != 0 {
            fail(-10_002);
        }
        if libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, program as *const _) != 0 {
            fail(-10_003);
        }
        for (i, call) in calls.iter().enumerate().skip(start) {
            let ret = if call.ia32 {
                syscall32(call.nr, &call.args)
            } else {
                syscall64(call.nr, &call.args)
            };
            shared.slot(1 + i).store(ret, Ordering::SeqCst);
            shared.slot(0).store((i + 1) as i64, Ordering::SeqCst);
        }
    }
    loop {
        std::hint::spin_loop();
    }
}

/// What the kernel does with each call under `program`. Panics when a child could not set
/// up its filters.
pub fn verdicts(program: &[Insn], calls: &[Call]) -> Vec<Verdict> {
    assert!(calls.iter().all(makeable), "a call that may not be made");
    let sentinel_insns = sentinel();
    let (sentinel, program) = (fprog(&sentinel_insns), fprog(program));
    let shared = Shared::new(calls.len() + 1);
    let mut out = vec![Verdict::Passed; calls.len()];
    let mut start = 0;
    while start < calls.len() {
        shared.slot(0).store(start as i64, Ordering::SeqCst);
        // SAFETY: the child runs `child` only (see there) and never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: in the child, right after fork.
            unsafe { child(&sentinel, &program, calls, start, &shared) }
        }
        let died_at = wait_for(pid, &shared, calls.len());
        let done = shared.slot(0).load(Ordering::SeqCst);
        assert!(done >= 0, "the child could not set up its filters (code {done})");
        let done = done as usize;
        for (i, v) in out.iter_mut().enumerate().take(done).skip(start) {
            let ret = shared.slot(1 + i).load(Ordering::SeqCst);
            *v = match ret {
                -4095 => Verdict::Passed,
                // ERRNO(0) makes the call return 0 without running it.
                r if (-4094..=0).contains(&r) => Verdict::Errno((-r) as u32),
                r => Verdict::Ran(r),
            };
        }
        match died_at {
            Some(signal) => {
                assert_eq!(signal, libc::SIGSYS, "the child died of signal {signal} at call {done}");
                out[done] = Verdict::Killed;
                start = done + 1;
            }
            None => start = calls.len(),
        }
    }
    out
}

/// Waits until the child made every call (then kills it: it spins) or died; returns the
/// signal it died of.
fn wait_for(pid: libc::pid_t, shared: &Shared, total: usize) -> Option<i32> {
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(got >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if got == pid {
            assert!(libc::WIFSIGNALED(status), "the child exited with status {status:#x}");
            return Some(libc::WTERMSIG(status));
        }
        let done = shared.slot(0).load(Ordering::SeqCst);
        if done < 0 || done as usize == total {
            // SAFETY: our own child, still running (not reaped).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// Whether `int 0x80` works here (the kernel runs ia32 programs): `getpid` through it, with
/// no filter, gives the child's pid.
pub fn ia32_works() -> bool {
    let shared = Shared::new(2);
    // SAFETY: the child makes two raw system calls and stores, then exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: in the child: getpid through int 0x80 (ia32 number 20) cannot do harm.
        unsafe {
            let pid32 = syscall32(20, &[0; 6]);
            shared.slot(1).store(pid32, Ordering::SeqCst);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    libc::WIFEXITED(status) && shared.slot(1).load(Ordering::SeqCst) == i64::from(pid)
}
