//! Filters compiled by us and installed in the real kernel, each in a child process (a filter
//! cannot be removed, so the test process itself must stay unconfined).
//!
//! Each test re-runs this test binary with `SPO_APPLY_CHILD=<scenario>`: `main` then runs the
//! child's part instead of the tests (install the filter, make the syscall, report through the
//! exit status). The binary has its own small harness (`harness = false`) so that the child's
//! part is not a test of its own that would pass whenever it is run without a scenario.

use std::process::{Command, ExitStatus};

use spo_model::seccomp::{SeccompAction, SeccompFlag, SeccompProfileSpec, SeccompSyscall};
use spo_seccomp::apply::{flags_of, install_filter};
use spo_seccomp::compile::{CompileOptions, compile};

const CHILD_ENV: &str = "SPO_APPLY_CHILD";

fn profile(rule_action: SeccompAction, errno: Option<i64>, flags: Vec<SeccompFlag>) -> SeccompProfileSpec {
    SeccompProfileSpec {
        state: Default::default(),
        disabled: None,
        default_action: SeccompAction::Allow,
        architectures: None,
        listener_path: None,
        listener_metadata: None,
        syscalls: Some(vec![SeccompSyscall {
            names: vec!["getppid".into()],
            action: rule_action,
            errno_ret: errno,
            args: None,
        }]),
        flags: if flags.is_empty() { None } else { Some(flags) },
        base_profile_name: None,
    }
}

fn scenario(name: &str) -> SeccompProfileSpec {
    match name {
        "errno" => profile(SeccompAction::Errno, Some(77), vec![SeccompFlag::Tsync]),
        "kill" => profile(SeccompAction::KillProcess, None, vec![]),
        "log" => profile(SeccompAction::Log, None, vec![SeccompFlag::Log]),
        other => panic!("unknown scenario {other}"),
    }
}

/// Runs in the child: install the scenario's filter, call getppid, exit with a code that
/// says what happened (0: returned normally, 77: EBADFD as configured, 1: anything else).
fn child(name: &str) -> ! {
    let spec = scenario(name);
    let program = compile(&spec, &CompileOptions::default()).expect("compile");
    install_filter(&program, flags_of(&spec)).expect("install");
    // std's parent_id is getppid(2); a failure comes back as -1 cast to u32, errno set.
    // glibc's getppid does not go through errno: a filter's ERRNO(e) arrives as -e.
    let rc = std::os::unix::process::parent_id() as i32;
    let errno = match rc {
        -1 => std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        rc if rc < 0 => -rc,
        _ => 0,
    };
    let code = match (rc > 0, errno) {
        (true, _) => 0,
        (false, 77) => 77,
        _ => 1,
    };
    std::process::exit(code);
}

fn run_child(name: &str) -> (ExitStatus, u32) {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe).env(CHILD_ENV, name).spawn().expect("spawn child");
    let pid = child.id();
    (child.wait().expect("wait child"), pid)
}

fn denied_syscall_returns_the_configured_errno() {
    let (status, _) = run_child("errno");
    assert_eq!(status.code(), Some(77), "{status:?}");
}

fn kill_process_dies_with_sigsys() {
    use std::os::unix::process::ExitStatusExt;
    let (status, _) = run_child("kill");
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");
}

fn log_lets_the_syscall_through_and_the_kernel_logs_it() {
    let (status, pid) = run_child("log");
    assert_eq!(status.code(), Some(0), "{status:?}");
    // The kernel writes `type=1326 audit(...): ... pid=<pid> ... syscall=110 ...` to the
    // kernel log when no audit daemon is listening, and to the audit log when one is.
    let needle = format!(" pid={pid} ");
    let getppid = format!("syscall={}", libc::SYS_getppid);
    let found_in = |text: &str| {
        text.lines().any(|l| {
            (l.contains("type=1326") || l.contains("type=SECCOMP")) && l.contains(&needle) && l.contains(&getppid)
        })
    };
    // kauditd hands records to the kernel log asynchronously: poll for a few seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (mut kmsg, mut audit);
    loop {
        kmsg = read_kmsg();
        audit = std::fs::read_to_string("/var/log/audit/audit.log").unwrap_or_default();
        if found_in(&kmsg) || found_in(&audit) || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        found_in(&kmsg) || found_in(&audit),
        "no seccomp log record for pid {pid} in /dev/kmsg or the audit log (kmsg had {} bytes)",
        kmsg.len()
    );
}

/// Everything /dev/kmsg holds now (one record per read, non-blocking until it runs dry).
fn read_kmsg() -> String {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = String::new();
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return out;
    };
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
            // EPIPE: records were overwritten while reading; keep going.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    out
}

/// The tests, run one after the other (each starts a child of its own), reported in libtest's
/// words so the suite's summary counts them. Arguments that are not flags filter by name.
fn main() {
    if let Ok(name) = std::env::var(CHILD_ENV) {
        child(&name);
    }
    let tests: [(&str, fn()); 3] = [
        (
            "denied_syscall_returns_the_configured_errno",
            denied_syscall_returns_the_configured_errno,
        ),
        ("kill_process_dies_with_sigsys", kill_process_dies_with_sigsys),
        (
            "log_lets_the_syscall_through_and_the_kernel_logs_it",
            log_lets_the_syscall_through_and_the_kernel_logs_it,
        ),
    ];
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let chosen: Vec<_> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", chosen.len());
    let mut failed = Vec::new();
    for (name, test) in &chosen {
        let ok = std::panic::catch_unwind(test).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(*name);
        }
    }
    let result = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {result}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out\n",
        chosen.len() - failed.len(),
        failed.len(),
        tests.len() - chosen.len()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}
