//! The exit log against the real kernel: a short-lived process in a cgroup the test makes
//! (named like a container, under the machine's cgroup2 mount, removed at the end) is
//! remembered after it is gone from /proc, with its cgroup's name and its start and exit
//! times. Needs root and BTF (skipped otherwise, except in CI).

mod common;

use std::fs;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{cgroup2_mount, or_skip};
use spo_record::ExitLog;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64
}

/// Runs `/bin/true` inside `cgroup` (entered in the child before exec) and returns its pid.
#[allow(unsafe_code)]
fn run_in(cgroup: &std::path::Path) -> u32 {
    let procs = fs::OpenOptions::new()
        .write(true)
        .open(cgroup.join("cgroup.procs"))
        .expect("cgroup.procs");
    let fd = procs.as_raw_fd();
    let mut cmd = Command::new("/bin/true");
    // SAFETY: runs in the forked child before execve; write(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start");
    let pid = child.id();
    assert!(child.wait().expect("wait").success());
    pid
}

#[test]
fn a_process_gone_from_proc_is_remembered_with_its_cgroup() {
    let Some(log) = or_skip(ExitLog::start()) else { return };
    let id = format!("{:064x}", u64::from(std::process::id()) << 20 | 0xe417);
    let root = cgroup2_mount().join(format!("spo-record-exits-{}", std::process::id()));
    let container = root.join(&id);
    fs::create_dir_all(&container).expect("test cgroup");

    let before = now_ms();
    let pid = run_in(&container);
    let after = now_ms();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "reaped");
    let e = log.get(pid).expect("the exit was logged");
    assert_eq!(e.pid, pid);
    assert_eq!(e.cgroup, id, "the container's cgroup name");
    assert!(e.started_ms <= e.exited_ms, "{e:?}");
    // Times from the boot clock, converted: within the run, a few ms of slack for rounding.
    assert!(
        e.started_ms + 5 >= before && e.exited_ms <= after + 5,
        "{e:?} not in {before}..{after}"
    );

    // A process outside the test's cgroup: its own cgroup's name (this test's).
    let own = fs::read_to_string("/proc/self/cgroup").expect("cgroup");
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a unified line")
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut outside = Command::new("/bin/true").spawn().expect("start");
    let outside_pid = outside.id();
    outside.wait().expect("wait");
    assert_eq!(log.get(outside_pid).expect("logged").cgroup, own);

    // A pid that never exited while the log ran.
    assert!(log.get(u32::MAX - 1).is_none());

    fs::remove_dir(&container).expect("remove test cgroup");
    fs::remove_dir(&root).expect("remove test cgroup");
}
