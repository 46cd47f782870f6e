//! The recorder against the real kernel: needs root and BTF (skipped otherwise, except in CI).

mod common;

use std::collections::BTreeSet;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{load, load_with};
use spo_model::seccomp::Arch;
use spo_record::{LoadOptions, RawRecording, RecordError, RecordOptions, Recorder, into_recording};

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn record(recorder: &mut Recorder, args: &[&str]) -> RawRecording {
    let raw = recorder
        .record_command(&argv(args))
        .unwrap_or_else(|e| panic!("recording {args:?}: {e}: {:?}", e.source()));
    assert_eq!(
        recorder.tracked_processes(),
        0,
        "per-process state left after recording {args:?}"
    );
    // A skipped program run can be a lost syscall: no test may pass over one.
    assert_eq!(
        raw.skipped_runs, 0,
        "the kernel skipped recorder runs while recording {args:?}"
    );
    raw
}

/// The names of the syscalls `raw` saw through `arch`, named by the seccomp table as `spoc` does.
fn names(raw: &RawRecording, arch: Arch) -> BTreeSet<String> {
    let named = into_recording(raw, |arch, nr| spo_seccomp::syscalls::table(arch)?.name(nr));
    assert!(named.unnamed.is_empty(), "numbers without a name: {:?}", named.unnamed);
    named.recording.syscalls.get(&arch).cloned().unwrap_or_default()
}

#[test]
fn records_a_process_that_lives_microseconds() {
    let Some(mut recorder) = load() else { return };
    let raw = record(&mut recorder, &["/bin/true"]);
    eprintln!("attached in {:?}", raw.attach_time);
    assert!(raw.succeeded());
    let seen = names(&raw, Arch::X86_64);
    for expected in ["execve", "exit_group"] {
        assert!(seen.contains(expected), "{expected} missing from {seen:?}");
    }
    assert!(
        seen.contains("brk") || seen.contains("mmap"),
        "no memory syscall in {seen:?}"
    );
    assert_eq!((raw.untracked_processes, raw.out_of_range_syscalls), (0, 0));
    assert!(
        !raw.syscalls.contains_key(&Arch::X86),
        "64-bit code recorded as 32-bit: {:?}",
        raw.syscalls
    );
}

#[test]
fn records_every_syscall_strace_reports() {
    let script = "ls / > /dev/null; cat /etc/hostname > /dev/null";
    let Some(mut recorder) = load() else { return };
    let raw = record(&mut recorder, &["sh", "-c", script]);
    let seen = names(&raw, Arch::X86_64);

    let dir = tempfile::tempdir().expect("temp dir");
    let summary = dir.path().join("strace.txt");
    let status = match Command::new("strace")
        .arg("-f")
        .arg("-c")
        .arg("-o")
        .arg(&summary)
        .args(["sh", "-c", script])
        .status()
    {
        Ok(status) => status,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "CI must have strace: {e}");
            eprintln!("skipped: strace not runnable ({e}); scripts/setup installs it");
            return;
        }
    };
    assert!(status.success(), "strace failed: {status}");
    let strace_saw = strace_summary_names(&std::fs::read_to_string(&summary).expect("strace summary"));
    assert!(strace_saw.len() > 10, "strace summary looks wrong: {strace_saw:?}");
    let missed: Vec<_> = strace_saw.difference(&seen).collect();
    assert!(
        missed.is_empty(),
        "strace saw {missed:?} that the recorder missed (recorded {seen:?})"
    );
}

/// The syscall names of `strace -c`'s table: the last column of the rows between the dashed
/// rules, without the `total` row.
fn strace_summary_names(summary: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_table = false;
    for line in summary.lines() {
        if line.starts_with("------") {
            in_table = !in_table;
            continue;
        }
        if in_table && let Some(name) = line.split_whitespace().last() {
            names.insert(name.to_string());
        }
    }
    names
}

#[test]
fn follows_children_across_fork_and_exec() {
    let Some(mut recorder) = load() else { return };
    let raw = record(&mut recorder, &["sh", "-c", "sleep 0.1 & wait"]);
    let seen = names(&raw, Arch::X86_64);
    // Only the forked child (which execs sleep) sleeps; the shell itself waits in wait4.
    assert!(
        seen.contains("clock_nanosleep") || seen.contains("nanosleep"),
        "the child's sleep is missing: {seen:?}"
    );
    assert!(seen.contains("wait4"), "{seen:?}");
}

#[test]
fn forgets_descendants_that_outlive_the_command() {
    let Some(mut recorder) = load() else { return };
    // The background sleep is still running when the shell exits; `record` checks that its
    // entry is gone anyway.
    let raw = record(&mut recorder, &["sh", "-c", "sleep 0.5 > /dev/null 2>&1 &"]);
    assert!(raw.succeeded());
    // And a later recording starts from a clean bitmap.
    let again = record(&mut recorder, &["/bin/true"]);
    assert!(
        !names(&again, Arch::X86_64).contains("wait4"),
        "bits of the previous recording leaked"
    );
}

#[test]
fn reports_exit_status_and_missing_commands() {
    let Some(mut recorder) = load() else { return };
    let raw = record(&mut recorder, &["sh", "-c", "exit 3"]);
    assert_eq!(raw.exit_status().and_then(|s| s.code()), Some(3));

    let err = recorder
        .record_command(&argv(&["no-such-command-spo"]))
        .expect_err("no such command");
    assert!(matches!(err, RecordError::CommandNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "command not found: no-such-command-spo (not an executable file, nor one in PATH)"
    );
    assert!(matches!(recorder.record_command(&[]), Err(RecordError::EmptyCommand)));
    assert_eq!(recorder.tracked_processes(), 0);
}

/// Builds `source` (C or assembly, by `file_name`'s extension) with clang and `flags`; `None`
/// (after saying `skipped:`) when clang cannot, a failure in CI.
fn build_with_clang(dir: &Path, file_name: &str, source: &str, flags: &[&str]) -> Option<PathBuf> {
    let source_path = dir.join(file_name);
    let binary = dir.join(file_name.split('.').next().unwrap_or(file_name));
    std::fs::write(&source_path, source).expect("write test program source");
    let built = Command::new("clang")
        .args(flags)
        .arg("-o")
        .arg(&binary)
        .arg(&source_path)
        .status();
    if built.as_ref().is_ok_and(|s| s.success()) {
        return Some(binary);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must build test program {file_name}: {built:?}"
    );
    eprintln!("skipped: clang cannot build {file_name} ({built:?}); scripts/setup installs clang");
    None
}

#[test]
fn tells_32_bit_syscalls_apart() {
    let Some(mut recorder) = load() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    // getpid (20) then exit (1) through the i386 ABI, no libc.
    let source = ".globl _start\n_start:\n movl $20, %eax\n int $0x80\n movl $1, %eax\n xorl %ebx, %ebx\n int $0x80\n";
    let Some(binary) = build_with_clang(dir.path(), "getpid32.S", source, &["-m32", "-nostdlib", "-static"]) else {
        return;
    };
    let raw = record(&mut recorder, &[binary.to_str().expect("utf-8 path")]);
    assert!(raw.succeeded());
    assert_eq!(
        names(&raw, Arch::X86),
        BTreeSet::from(["getpid".to_string(), "exit".to_string()])
    );
    // The exec itself is made by the 64-bit recorder side of the fork.
    assert!(names(&raw, Arch::X86_64).contains("execve"));
}

/// open, mmap2 (executable), openat (relative), socket and socketcall(SYS_SOCKET) through the
/// i386 ABI, no libc.
const RESOURCES_32: &str = "
.data
etc: .asciz \"/etc/hostname\"
rel: .asciz \"Cargo.toml\"
sockargs: .long 1, 1, 0
.text
.globl _start
_start:
 movl $5, %eax
 movl $etc, %ebx
 xorl %ecx, %ecx
 int $0x80
 movl %eax, %edi
 movl $192, %eax
 xorl %ebx, %ebx
 movl $4096, %ecx
 movl $5, %edx
 movl $2, %esi
 xorl %ebp, %ebp
 int $0x80
 movl $295, %eax
 movl $-100, %ebx
 movl $rel, %ecx
 xorl %edx, %edx
 int $0x80
 movl $359, %eax
 movl $2, %ebx
 movl $2, %ecx
 xorl %edx, %edx
 int $0x80
 movl $102, %eax
 movl $1, %ebx
 movl $sockargs, %ecx
 int $0x80
 movl $1, %eax
 xorl %ebx, %ebx
 int $0x80
";

#[test]
fn records_32_bit_files_mappings_and_sockets() {
    let Some(mut recorder) = load_with(&LoadOptions {
        resources: true,
        ..LoadOptions::default()
    }) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(binary) = build_with_clang(
        dir.path(),
        "resources32.S",
        RESOURCES_32,
        &["-m32", "-nostdlib", "-static"],
    ) else {
        return;
    };
    let options = RecordOptions {
        resources: true,
        ..RecordOptions::default()
    };
    // Run from this crate's directory, where the relative Cargo.toml is.
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let argv = argv(&[
        "sh",
        "-c",
        &format!("cd '{manifest_dir}' && exec '{}'", binary.display()),
    ]);
    let raw = recorder
        .record_command_with(&argv, &options, |_| {})
        .expect("recording the i386 program");
    assert!(raw.succeeded(), "{:?}", raw.subject);
    assert_eq!(
        names(&raw, Arch::X86),
        BTreeSet::from(["open", "mmap2", "openat", "socket", "socketcall", "exit"].map(String::from))
    );
    assert!(raw.files["/etc/hostname"].read, "{:?}", raw.files);
    let manifest = format!("{manifest_dir}/Cargo.toml");
    assert!(
        raw.files.get(&manifest).is_some_and(|a| a.read && !a.write),
        "{manifest} missing: {:?}",
        raw.files
    );
    assert!(raw.mapped.contains("/etc/hostname"), "{:?}", raw.mapped);
    // socket(AF_INET, SOCK_DGRAM) directly, socket(AF_UNIX, SOCK_STREAM) through socketcall.
    assert!(raw.sockets.contains(&(2, 2)), "{:?}", raw.sockets);
    assert!(raw.sockets.contains(&(1, 1)), "{:?}", raw.sockets);
}

/// The main thread exits first; the process lives on in a second thread, which then makes a
/// syscall and forks a child that makes another. Both must be recorded: the process is tracked
/// until its last thread exits, and a fork from any thread is followed.
const LEADER_EXITS_FIRST: &str = r#"
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void *worker(void *arg) {
    (void)arg;
    usleep(50000);
    syscall(SYS_getpgid, 0);
    pid_t child = fork();
    if (child == 0) {
        syscall(SYS_getsid, 0);
        _exit(0);
    }
    waitpid(child, NULL, 0);
    return NULL;
}

int main(void) {
    pthread_t thread;
    pthread_create(&thread, NULL, worker, NULL);
    pthread_exit(NULL);
}
"#;

#[test]
fn follows_threads_after_the_leader_exits() {
    let Some(mut recorder) = load() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(binary) = build_with_clang(
        dir.path(),
        "leader_exits_first.c",
        LEADER_EXITS_FIRST,
        &["-O1", "-pthread"],
    ) else {
        return;
    };
    let raw = record(&mut recorder, &[binary.to_str().expect("utf-8 path")]);
    assert!(raw.succeeded());
    let seen = names(&raw, Arch::X86_64);
    for expected in ["getpgid", "getsid"] {
        assert!(seen.contains(expected), "{expected} missing from {seen:?}");
    }
}

/// Two threads making about a million syscalls a second between them, each making one rare
/// syscall exactly once in the middle of the storm. Both rare ones must be recorded: the
/// recorder aggregates in the kernel, so there is no event queue to overflow.
const TWO_THREAD_STORM: &str = r#"
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CALLS 1000000

static void *storm(void *arg) {
    long rare = (long)arg;
    for (long i = 0; i < CALLS; i++) {
        syscall(SYS_getppid);
        if (i == CALLS / 2)
            syscall(rare, 0);
    }
    return NULL;
}

int main(void) {
    pthread_t a, b;
    pthread_create(&a, NULL, storm, (void *)(long)SYS_getpgid);
    pthread_create(&b, NULL, storm, (void *)(long)SYS_getsid);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    return 0;
}
"#;

#[test]
fn misses_nothing_under_two_threads_of_load() {
    let Some(mut recorder) = load() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(binary) = build_with_clang(dir.path(), "storm.c", TWO_THREAD_STORM, &["-O2", "-pthread"]) else {
        return;
    };
    let started = std::time::Instant::now();
    let raw = record(&mut recorder, &[binary.to_str().expect("utf-8 path")]);
    eprintln!("2 x 1,000,000 syscalls recorded in {:?}", started.elapsed());
    assert!(raw.succeeded());
    let seen = names(&raw, Arch::X86_64);
    for expected in ["getppid", "getpgid", "getsid", "clone3", "exit"] {
        assert!(seen.contains(expected), "{expected} missing from {seen:?}");
    }
}

/// 10,000 processes that each live for a moment: per-process state is freed as each one
/// exits, so the number of tracked processes stays small while the storm runs and is zero
/// after it, and every process was tracked.
#[test]
fn ten_thousand_short_lived_processes_leave_no_state() {
    let Some(mut recorder) = load() else { return };
    let script = "i=0; while [ $i -lt 10000 ]; do (exit 0); i=$((i+1)); done";
    let mut most_tracked = 0;
    let mut samples = 0;
    let raw = recorder
        .record_command_with(&argv(&["sh", "-c", script]), &RecordOptions::default(), |p| {
            most_tracked = most_tracked.max(p.tracked_processes);
            samples += 1;
        })
        .expect("recording the storm");
    assert!(raw.succeeded());
    assert_eq!(raw.untracked_processes, 0, "some processes were not tracked");
    assert!(samples > 0, "no progress while 10,000 processes ran");
    // The shell, a subshell being born or dying, and slack for a sample taken mid-exit.
    assert!(
        most_tracked <= 8,
        "{most_tracked} processes tracked at once: state of exited processes is kept"
    );
    assert_eq!(recorder.tracked_processes(), 0, "state left after the recording");
    let seen = names(&raw, Arch::X86_64);
    assert!(seen.contains("exit_group"), "{seen:?}");
}

/// Waits for the file `argv[1]` to exist, then makes syscalls that tell it apart: `inside`
/// calls getpgid and forks a child that calls getsid; `outside` calls getpriority.
const WAIT_THEN_CALL: &str = r#"
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    struct timespec pause = {0, 5 * 1000 * 1000};
    for (int i = 0; access(argv[1], F_OK) != 0; i++) {
        if (i > 2000)
            return 3; /* 10 s without the go file */
        nanosleep(&pause, NULL);
    }
    if (strcmp(argv[2], "inside") == 0) {
        syscall(SYS_getpgid, 0);
        pid_t child = fork();
        if (child == 0) {
            syscall(SYS_getsid, 0);
            _exit(0);
        }
        waitpid(child, NULL, 0);
    } else {
        syscall(SYS_getpriority, 0, 0);
    }
    return 0;
}
"#;

/// Starts `program args` in a new mount namespace (`unshare --mount`) and returns it with the
/// namespace's inode, once the process is in it.
fn in_new_mount_namespace(program: &Path, args: &[&std::ffi::OsStr]) -> (std::process::Child, u64) {
    let child = Command::new("unshare")
        .args(["--mount", "--"])
        .arg(program)
        .args(args)
        .spawn()
        .expect("unshare --mount (util-linux)");
    let ours = spo_record::mount_namespace_of(std::process::id()).expect("our mount namespace");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match spo_record::mount_namespace_of(child.id()) {
            Some(inode) if inode != ours => return (child, inode),
            _ if std::time::Instant::now() > deadline => panic!("unshare never entered a new mount namespace"),
            _ => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
}

/// A container-like target: the processes of a mount namespace, already running when the
/// recording starts, plus a process that enters the namespace later (`nsenter`, as `runc exec`
/// does). A process of the same program outside the namespace is not recorded.
#[test]
fn records_a_mount_namespace() {
    let Some(mut recorder) = load() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(binary) = build_with_clang(dir.path(), "wait_then_call.c", WAIT_THEN_CALL, &["-O1"]) else {
        return;
    };
    let go = dir.path().join("go");
    let (mut inside, inode) = in_new_mount_namespace(&binary, &[go.as_os_str(), "inside".as_ref()]);
    let mut outside = Command::new(&binary).arg(&go).arg("outside").spawn().expect("outside");

    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut released = false;
    let mut entered = None;
    let raw = recorder
        .record_selected(&spo_record::Selector::MountNamespace(inode), false, &stop, |_| {
            if !released {
                released = true;
                // A newcomer first (it joins when it execs uname in the namespace), then the go.
                entered = Some(
                    Command::new("nsenter")
                        .arg(format!("--mount=/proc/{}/ns/mnt", inside.id()))
                        .args(["--", "uname", "-r"])
                        .stdout(std::process::Stdio::null())
                        .status(),
                );
                std::fs::write(&go, b"").expect("create the go file");
            }
        })
        .expect("recording the mount namespace");
    assert!(matches!(entered, Some(Ok(s)) if s.success()), "nsenter: {entered:?}");
    assert!(inside.wait().expect("wait inside").success());
    assert!(outside.wait().expect("wait outside").success());
    assert_eq!(recorder.tracked_processes(), 0, "state left after the recording");
    assert_eq!(raw.exit_status(), None);

    let seen = names(&raw, Arch::X86_64);
    for expected in ["getpgid", "getsid", "uname"] {
        assert!(seen.contains(expected), "{expected} missing from {seen:?}");
    }
    assert!(
        !seen.contains("getpriority"),
        "the process outside the namespace was recorded: {seen:?}"
    );
}

/// Spins on `access(go)` (never sleeping, so its CPU need not switch tasks) until the go file
/// exists, then calls getpgid once.
const SPIN_THEN_CALL: &str = r#"
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (access(argv[1], F_OK) != 0) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 10)
            return 3;
    }
    syscall(SYS_getpgid, 0);
    return 0;
}
"#;

/// A process already running (and busy making syscalls) when the recording adds it is recorded
/// from then on, context switch or not: adding it moves the generation, so the CPU it runs on
/// stops trusting the slot that said "untracked".
#[test]
fn records_a_busy_process_from_the_moment_it_is_added() {
    let Some(mut recorder) = load() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(binary) = build_with_clang(dir.path(), "spin_then_call.c", SPIN_THEN_CALL, &["-O1"]) else {
        return;
    };
    let go = dir.path().join("go");
    let (mut spinner, inode) = in_new_mount_namespace(&binary, &[go.as_os_str()]);
    // Let it spin for a while before the recording starts.
    std::thread::sleep(std::time::Duration::from_millis(100));

    let stop = std::sync::atomic::AtomicBool::new(false);
    let raw = recorder
        .record_selected(&spo_record::Selector::MountNamespace(inode), false, &stop, |_| {
            if !go.exists() {
                std::fs::write(&go, b"").expect("create the go file");
            }
        })
        .expect("recording the spinning process");
    assert!(spinner.wait().expect("wait for the spinner").success());
    let seen = names(&raw, Arch::X86_64);
    for expected in ["access", "getpgid", "exit_group"] {
        assert!(seen.contains(expected), "{expected} missing from {seen:?}");
    }
}

/// Parent and child bounce a byte over two pipes `rounds` times (0: until killed), so every
/// round is two context switches. `mark` picks the syscall each round adds: the recorded tree
/// calls getsid, the untracked one running beside it getpriority.
const PING_PONG: &str = r#"
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    int rounds = atoi(argv[1]);
    int tracked = strcmp(argv[2], "tracked") == 0;
    int ping[2], pong[2];
    if (pipe(ping) != 0 || pipe(pong) != 0)
        return 3;
    char b = 0;
    pid_t child = fork();
    if (child == 0) {
        /* Only the ends it uses: when the parent dies, its read sees end of file. */
        close(ping[1]);
        close(pong[0]);
        for (int i = 0; rounds == 0 || i < rounds; i++) {
            if (read(ping[0], &b, 1) != 1 || write(pong[1], &b, 1) != 1)
                _exit(4);
            if (tracked)
                syscall(SYS_getsid, 0);
            else
                syscall(SYS_getpriority, PRIO_PROCESS, 0);
        }
        _exit(0);
    }
    close(ping[0]);
    close(pong[1]);
    for (int i = 0; rounds == 0 || i < rounds; i++)
        if (write(ping[1], &b, 1) != 1 || read(pong[0], &b, 1) != 1)
            return 5;
    int status = 0;
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 6;
}
"#;

/// Under heavy context switching (two ping-pong pairs, one recorded and one not, on every CPU)
/// each CPU's slot always describes the task it runs: the recorded pair's calls are all there,
/// and nothing of the untracked pair leaks in.
#[test]
fn context_switch_storms_neither_leak_nor_lose() {
    let Some(mut recorder) = load() else { return };
    ping_pong_beside_an_untracked_pair(&mut recorder);
}

/// The per-CPU cache of what each CPU runs must not rely on seeing every context switch (on
/// this project's build VM some switches reach no sched_switch probe): with the switch program
/// left out, the cache is filled only when a syscall finds it naming another task, and the
/// storm must still neither leak nor lose.
#[test]
fn context_switches_need_not_be_seen() {
    let Some(mut recorder) = load_with(&LoadOptions {
        blind_to_switches: true,
        ..LoadOptions::default()
    }) else {
        return;
    };
    ping_pong_beside_an_untracked_pair(&mut recorder);
}

/// Records a ping-pong pair (getsid each round) while an untracked pair (getpriority) runs
/// beside it: every call of the recorded pair must be in, none of the other's.
fn ping_pong_beside_an_untracked_pair(recorder: &mut Recorder) {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(binary) = build_with_clang(dir.path(), "ping_pong.c", PING_PONG, &["-O1"]) else {
        return;
    };
    let program = binary.to_str().expect("utf-8");
    let mut beside = Command::new(program)
        .args(["0", "untracked"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the untracked pair");
    let raw = record(recorder, &[program, "20000", "tracked"]);
    let still_running = beside.try_wait().expect("the untracked pair's status").is_none();
    // Its child sees end of file on the pipe and exits too.
    let _ = beside.kill();
    let _ = beside.wait();
    assert!(
        still_running,
        "the untracked pair (which runs until killed) died during the recording: nothing was tested"
    );
    assert!(raw.succeeded(), "{:?}", raw.subject);
    let seen = names(&raw, Arch::X86_64);
    for expected in ["pipe2", "clone", "read", "write", "getsid", "wait4", "exit_group"] {
        assert!(seen.contains(expected), "{expected} missing from {seen:?}");
    }
    assert!(
        !seen.contains("getpriority"),
        "the untracked pair leaked into the recording: {seen:?}"
    );
}

/// Files through every kind of path (relative to the working directory, relative to a
/// directory fd with `..`, absolute, written, through a symlink), a file mapped readable and
/// then made executable, sockets, a capability check and an exec.
const RESOURCES: &str = r#"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2 || chdir(argv[1]) != 0)
        return 2;
    int fd = open("written.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "x", 1) != 1)
        return 3;
    close(fd);
    mkdir("sub", 0755);
    int dir = open("sub", O_RDONLY | O_DIRECTORY);
    int again = openat(dir, "../written.txt", O_RDONLY);
    if (dir < 0 || again < 0)
        return 4;
    if (open("/etc/hostname", O_RDONLY) < 0)
        return 5;
    /* Through a symlink: recorded as the file it names (what AppArmor checks). */
    if (symlink("written.txt", "link.txt") != 0 || open("link.txt", O_RDONLY) < 0)
        return 8;
    /* Mapped without exec, made executable afterwards (as some loaders and JITs do). */
    int code = open("code.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (code < 0 || ftruncate(code, 4096) != 0)
        return 9;
    void *page = mmap(0, 4096, PROT_READ, MAP_PRIVATE, code, 0);
    if (page == MAP_FAILED || mprotect(page, 4096, PROT_READ | PROT_EXEC) != 0)
        return 10;
    socket(AF_INET, SOCK_STREAM, 0);
    socket(AF_UNIX, SOCK_DGRAM, 0);
    if (setpriority(PRIO_PROCESS, 0, -1) != 0) /* raising priority: a CAP_SYS_NICE check */
        return 6;
    execl("/bin/true", "true", (char *)0);
    return 7;
}
"#;

#[test]
fn records_files_programs_sockets_and_capabilities() {
    let Some(mut recorder) = load_with(&LoadOptions {
        resources: true,
        ..LoadOptions::default()
    }) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(binary) = build_with_clang(dir.path(), "resources.c", RESOURCES, &["-O1"]) else {
        return;
    };
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("work dir");
    let options = RecordOptions {
        resources: true,
        ..RecordOptions::default()
    };
    let argv = argv(&[binary.to_str().expect("utf-8"), work.to_str().expect("utf-8")]);
    let raw = recorder
        .record_command_with(&argv, &options, |_| {})
        .expect("recording with resources");
    // A recorder loaded without the resource programs refuses instead of recording nothing.
    let Some(mut plain) = load() else { return };
    let refused = plain
        .record_command_with(&argv, &options, |_| {})
        .expect_err("not loaded");
    assert!(refused.to_string().contains("loaded without"), "{refused}");
    assert!(raw.succeeded(), "{:?}", raw.subject);
    assert_eq!((raw.unresolved_paths, raw.lost_events), (0, 0));

    let written = work.join("written.txt").display().to_string();
    let access = raw
        .files
        .get(&written)
        .unwrap_or_else(|| panic!("{written} missing: {:?}", raw.files.keys()));
    assert!(
        access.read && access.write && !access.exec,
        "{access:?} in {:?}",
        raw.files
    );
    assert!(raw.files["/etc/hostname"].read);
    let link = work.join("link.txt").display().to_string();
    assert!(
        !raw.files.contains_key(&link),
        "an open through a symlink is recorded as its target: {:?}",
        raw.files.keys()
    );
    assert!(
        raw.executables.contains(binary.to_str().expect("utf-8")),
        "{:?}",
        raw.executables
    );
    // execl("/bin/true"): recorded as the file the kernel ran (on merged-/usr systems
    // /usr/bin/true), which is the path AppArmor checks.
    let true_path = std::fs::canonicalize("/bin/true").expect("/bin/true");
    assert!(
        raw.executables.contains(true_path.to_str().expect("utf-8")),
        "{true_path:?} missing: {:?}",
        raw.executables
    );
    assert!(
        raw.sockets.contains(&(2, 1)) && raw.sockets.contains(&(1, 2)),
        "{:?}",
        raw.sockets
    );
    // CAP_SYS_NICE (23), allowed for root.
    assert_eq!(raw.capabilities.get(&23), Some(&true), "{:?}", raw.capabilities);

    // The dynamic loader maps libc executable: a library by what happened, not by its name.
    let libc = raw
        .mapped
        .iter()
        .find(|l| l.contains("/libc.so"))
        .unwrap_or_else(|| panic!("libc not mapped: {:?}", raw.mapped));
    assert!(Path::new(libc).is_file(), "{libc} is not a real path");
    assert!(
        !raw.mapped.contains(binary.to_str().expect("utf-8")),
        "the kernel maps the program itself, not mmap(2): {:?}",
        raw.mapped
    );
    // A file mapped readable, then made executable by mprotect(2).
    let code = work.join("code.bin").display().to_string();
    assert!(raw.mapped.contains(&code), "{code} missing: {:?}", raw.mapped);
    // The ELF interpreter, which the kernel maps at exec (no mmap(2) shows it).
    let ld_so = std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2").expect("ld.so");
    assert!(
        raw.mapped.contains(ld_so.to_str().expect("utf-8")),
        "{ld_so:?} missing: {:?}",
        raw.mapped
    );
    let named = into_recording(&raw, |arch, nr| spo_seccomp::syscalls::table(arch)?.name(nr));
    let r = &named.recording;
    assert!(r.libraries.contains(libc), "{:?}", r.libraries);
    assert!(
        !r.files.contains_key(libc),
        "libc's read-only open is covered by the library"
    );
    assert!(r.capabilities.get("sys_nice") == Some(&true));
    assert!(
        r.sockets
            .iter()
            .any(|s| s.domain == "AF_INET" && s.type_ == "SOCK_STREAM")
    );
}

/// Records `args` with resources.
fn record_resources(recorder: &mut Recorder, args: &[&str]) -> RawRecording {
    let options = RecordOptions {
        resources: true,
        ..RecordOptions::default()
    };
    let raw = recorder
        .record_command_with(&argv(args), &options, |_| {})
        .unwrap_or_else(|e| panic!("recording {args:?}: {e}: {:?}", e.source()));
    assert!(raw.succeeded(), "{args:?}: {:?}", raw.subject);
    assert_eq!(
        raw.skipped_runs, 0,
        "the kernel skipped recorder runs while recording {args:?}"
    );
    // Every check was told apart by its caller: none counted for want of knowing.
    assert_eq!(raw.unclassified_capability_checks, 0, "{args:?}");
    raw
}

/// Programs that need no privilege record no capability, even run as root: the checks the
/// kernel makes without auditing them (CAP_SYS_ADMIN for the overcommit heuristic on every
/// writable private mapping, brk and stack growth) are not needs, and AppArmor never asks a
/// profile about them.
#[test]
fn unprivileged_programs_record_no_capability() {
    let Some(mut recorder) = load_with(&LoadOptions {
        resources: true,
        ..LoadOptions::default()
    }) else {
        return;
    };
    for args in [&["/bin/true"][..], &["ls", "/"], &["date"]] {
        let raw = record_resources(&mut recorder, args);
        assert!(
            raw.capabilities.is_empty(),
            "{args:?} recorded capabilities {:?}",
            raw.capabilities
        );
        // They were checked (mmap, brk), and left out as unaudited.
        assert!(raw.unaudited_capability_checks > 0, "{args:?}: {raw:?}");
    }
}

/// Chowning a file to another user needs CAP_CHOWN and nothing else.
#[test]
fn chown_to_another_user_records_exactly_chown() {
    let Some(mut recorder) = load_with(&LoadOptions {
        resources: true,
        ..LoadOptions::default()
    }) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("owned");
    std::fs::write(&file, "x").expect("temp file");
    let raw = record_resources(&mut recorder, &["chown", "65534", file.to_str().expect("utf-8")]);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&file).expect("stat").uid(),
        65534,
        "chown did not happen"
    );
    // CAP_CHOWN is 0.
    assert_eq!(raw.capabilities, std::collections::BTreeMap::from([(0, true)]));
}
