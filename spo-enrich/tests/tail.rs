//! The log follower against real files: appends, auditd-style rotation (rename, shift, delete
//! the oldest) during a burst, copytruncate, resuming after a restart, a symlink or FIFO put in
//! the log's place, and the real auditd's log with real seccomp records, rotated by the real
//! auditd during a burst.

// The burst test makes its calls in its child between fork and exec; it signals auditd.
#![allow(unsafe_code)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use spo_enrich::tail::{Checkpoint, Line, LogTail, Start, TailError};

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

fn texts(lines: &[Line]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

fn sibling(path: &Path, k: u32) -> PathBuf {
    PathBuf::from(format!("{}.{k}", path.display()))
}

/// auditd's rotation: PATH.(n-1) -> PATH.n ... PATH -> PATH.1, the oldest beyond `keep` deleted.
fn rotate(path: &Path, keep: u32) {
    let _ = fs::remove_file(sibling(path, keep));
    for k in (1..keep).rev() {
        let _ = fs::rename(sibling(path, k), sibling(path, k + 1));
    }
    fs::rename(path, sibling(path, 1)).expect("rotate");
}

#[test]
fn whole_lines_only_and_long_lines_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    let mut tail = LogTail::open(&log, Start::Beginning, 16).expect("open");
    assert!(tail.poll().expect("poll").is_empty(), "no file yet is no line");
    append(&log, "first\nsec");
    assert_eq!(texts(&tail.poll().expect("poll")), ["first"]);
    append(&log, "ond\n");
    assert_eq!(texts(&tail.poll().expect("poll")), ["second"]);
    append(&log, &format!("{}\nshort\n", "x".repeat(40)));
    let lines = tail.poll().expect("poll");
    assert_eq!(lines[0].text, "x".repeat(16));
    assert!(lines[0].cut);
    assert_eq!(
        lines[1],
        Line {
            text: "short".into(),
            cut: false
        }
    );
    assert_eq!(tail.stats().cut_lines, 1);
}

#[test]
fn start_at_end_skips_what_was_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    append(&log, "old 1\nold 2\n");
    let mut tail = LogTail::open(&log, Start::End, 4096).expect("open");
    append(&log, "new\n");
    assert_eq!(texts(&tail.poll().expect("poll")), ["new"]);
}

/// A writer writes numbered lines in a burst and rotates every 200 lines, 100 times, keeping
/// 10 old files; a reader polls meanwhile. The writer runs ahead freely but never more than 5
/// rotations (auditd keeps 5 files of 8 MB: a reader that far behind has lost data anywhere),
/// so a line missing here is the follower's fault, not the machine's load. Every line arrives
/// once, in order.
#[test]
fn no_line_lost_or_repeated_across_100_rotations_during_a_burst() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    let total: usize = 100 * 200 + 17;
    let done = Arc::new(AtomicBool::new(false));
    let seen_count = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Barrier::new(2));
    // The log exists before the reader opens it (a reader opened from the beginning reads
    // the file that is there at open, even when it is rotated before the first poll).
    append(&log, "");
    let writer = {
        let (log, done, started, seen_count) = (log.clone(), done.clone(), started.clone(), seen_count.clone());
        std::thread::spawn(move || {
            let mut f = OpenOptions::new().create(true).append(true).open(&log).expect("create");
            started.wait();
            for i in 0..total {
                // Half a line, then the rest: the reader sees torn writes too.
                write!(f, "type=SECCOMP msg=audit(1.{i}):").expect("write");
                writeln!(f, " pid={i}").expect("write");
                if i % 200 == 199 && i / 200 < 100 {
                    while i.saturating_sub(seen_count.load(Ordering::SeqCst)) > 5 * 200 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    rotate(&log, 10);
                    f = OpenOptions::new().create(true).append(true).open(&log).expect("reopen");
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut tail = LogTail::open(&log, Start::Beginning, 4096).expect("open");
    started.wait();
    let mut seen = Vec::new();
    let pid_of = |line: &Line| -> usize {
        assert!(!line.cut, "torn line {:?}", line.text);
        line.text
            .rsplit("pid=")
            .next()
            .and_then(|p| p.parse().ok())
            .expect("pid")
    };
    loop {
        let finished = done.load(Ordering::SeqCst);
        seen.extend(tail.poll().expect("poll").iter().map(pid_of));
        seen_count.store(seen.len(), Ordering::SeqCst);
        if finished {
            break;
        }
    }
    seen.extend(tail.poll().expect("last poll").iter().map(pid_of));
    writer.join().expect("writer");
    assert_eq!(tail.stats().gaps, 0);
    assert_eq!(seen.len(), total, "lines lost or repeated");
    assert!(seen.iter().enumerate().all(|(i, &p)| i == p), "out of order");
    assert_eq!(tail.stats().rotations, 100);
}

#[test]
fn two_rotations_between_polls_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    append(&log, "a\n");
    let mut tail = LogTail::open(&log, Start::Beginning, 4096).expect("open");
    assert_eq!(texts(&tail.poll().expect("poll")), ["a"]);
    append(&log, "b\n");
    rotate(&log, 5);
    append(&log, "c\n");
    rotate(&log, 5);
    append(&log, "d\n");
    assert_eq!(texts(&tail.poll().expect("poll")), ["b", "c", "d"]);
    assert_eq!(tail.stats().rotations, 2);
}

/// The reader looks while a rotation is half done: the names shift from the top down, so one
/// of them is missing for a moment. The files behind the gap are still found.
#[test]
fn a_rotation_caught_half_done_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    append(&log, "a1\n");
    let mut tail = LogTail::open(&log, Start::Beginning, 4096).expect("open");
    assert_eq!(texts(&tail.poll().expect("poll")), ["a1"]);
    append(&log, "a2\n");
    rotate(&log, 5); // A is .1
    append(&log, "b\n");
    rotate(&log, 5); // A is .2, B is .1
    append(&log, "c\n");
    // The third rotation, half done: .2 -> .3 and .1 -> .2 renamed, C not yet moved to .1.
    fs::rename(sibling(&log, 2), sibling(&log, 3)).expect("rename");
    fs::rename(sibling(&log, 1), sibling(&log, 2)).expect("rename");
    assert!(!sibling(&log, 1).exists());
    assert_eq!(texts(&tail.poll().expect("poll")), ["a2", "b", "c"]);
    assert_eq!(tail.stats().gaps, 0);
}

#[test]
fn truncation_in_place_is_read_from_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    append(&log, "one\ntwo\n");
    let mut tail = LogTail::open(&log, Start::Beginning, 4096).expect("open");
    assert_eq!(texts(&tail.poll().expect("poll")), ["one", "two"]);
    // copytruncate: the same file, emptied, then written again.
    OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    append(&log, "3\n");
    assert_eq!(texts(&tail.poll().expect("poll")), ["3"]);
    assert_eq!(tail.stats().truncations, 1);
}

#[test]
fn a_restarted_reader_resumes_without_repeats_or_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    append(&log, "1\n2\n");
    let mut tail = LogTail::open(&log, Start::Beginning, 4096).expect("open");
    assert_eq!(texts(&tail.poll().expect("poll")), ["1", "2"]);
    let saved = tail.checkpoint().expect("checkpoint").to_line();
    drop(tail);
    // While no reader runs: more lines, two rotations, more lines.
    append(&log, "3\n");
    rotate(&log, 5);
    append(&log, "4\n");
    rotate(&log, 5);
    append(&log, "5\n");
    let at = Checkpoint::parse(&saved).expect("parse");
    let mut tail = LogTail::open(&log, Start::Resume(at), 4096).expect("resume");
    assert_eq!(texts(&tail.poll().expect("poll")), ["3", "4", "5"]);
    // Resuming in the same file.
    let at = tail.checkpoint().expect("checkpoint");
    append(&log, "6\n");
    let mut tail = LogTail::open(&log, Start::Resume(at), 4096).expect("resume");
    assert_eq!(texts(&tail.poll().expect("poll")), ["6"]);
    // A checkpoint of a file rotated out of existence: a gap, reported.
    for _ in 0..6 {
        rotate(&log, 5);
        append(&log, "x\n");
    }
    let mut tail = LogTail::open(&log, Start::Resume(at), 4096).expect("resume");
    assert_eq!(tail.stats().gaps, 1);
    assert_eq!(texts(&tail.poll().expect("poll")), ["x"]);
}

#[test]
fn a_symlink_or_fifo_in_the_logs_place_is_refused_and_nothing_read_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    let secret = dir.path().join("secret");
    fs::write(&secret, "do not read\n").expect("write");
    append(&log, "real\n");
    let mut tail = LogTail::open(&log, Start::Beginning, 4096).expect("open");
    assert_eq!(texts(&tail.poll().expect("poll")), ["real"]);
    append(&log, "last words\n");
    fs::rename(&log, sibling(&log, 1)).expect("rename");
    std::os::unix::fs::symlink(&secret, &log).expect("symlink");
    // Everything of the real file arrives first; then the symlink is refused, naming it.
    assert_eq!(texts(&tail.poll().expect("poll")), ["last words"]);
    let err = tail.poll().expect_err("a symlink is refused");
    assert!(matches!(err, TailError::NotRegular { kind: "symlink", .. }), "{err}");
    assert!(err.to_string().contains("audit.log is a symlink"), "{err}");
    fs::remove_file(&log).expect("rm symlink");
    let made = std::process::Command::new("mkfifo").arg(&log).status().expect("mkfifo");
    assert!(made.success());
    let err = tail.poll().expect_err("a FIFO is refused");
    assert!(matches!(err, TailError::NotRegular { kind: "FIFO", .. }), "{err}");
    // A regular file again: read from its start, nothing of the secret ever read.
    fs::remove_file(&log).expect("rm fifo");
    append(&log, "new file\n");
    assert_eq!(texts(&tail.poll().expect("poll")), ["new file"]);
    // A reader started on a symlink refuses it at once.
    fs::remove_file(&log).expect("rm");
    std::os::unix::fs::symlink(&secret, &log).expect("symlink");
    let mut tail = LogTail::open(&log, Start::Beginning, 4096).expect("open");
    assert!(matches!(
        tail.poll(),
        Err(TailError::NotRegular { kind: "symlink", .. })
    ));
}

/// The audit daemon's pid as the kernel knows it (0: none), from `auditctl -s`.
/// A profile (JSON) compiled by the project's compiler, for a child to run under.
fn program(profile: &str) -> spo_seccomp::compile::Program {
    let spec: spo_model::seccomp::SeccompProfileSpec = serde_json::from_str(profile).expect("profile json");
    spo_seccomp::compile::compile(&spec, &spo_seccomp::compile::CompileOptions::default())
        .expect("the profile compiles")
}

fn auditd_pid() -> Option<u32> {
    let out = std::process::Command::new("auditctl").arg("-s").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pid ").and_then(|p| p.trim().parse().ok()))
}

/// Real seccomp records from a real process, read from the real auditd's log as it writes
/// them. scripts/test starts auditd (scripts/auditd); elsewhere the test says it skipped.
#[test]
fn real_seccomp_records_arrive_through_auditds_log() {
    let log = Path::new("/var/log/audit/audit.log");
    if auditd_pid().unwrap_or(0) == 0 || !log.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run auditd (scripts/auditd start)"
        );
        eprintln!("skipped: no auditd runs (scripts/auditd start)");
        return;
    }
    let mut tail = LogTail::open(log, Start::End, 64 * 1024).expect("open the audit log");
    // A child that logs every syscall it makes (SECCOMP_RET_LOG), then runs /bin/true.
    let mut cmd = std::process::Command::new("/bin/true");
    spo_seccomp::apply::confine_command(&mut cmd, program(r#"{"defaultAction": "SCMP_ACT_LOG"}"#), 0).expect("confine");
    let child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let status = { child }.wait().expect("wait");
    assert!(status.success());
    // auditd writes asynchronously: poll until the child's exit_group record is there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ours = Vec::new();
    while Instant::now() < deadline {
        for line in tail.poll().expect("poll") {
            if let Ok(Some(spo_enrich::audit::AuditRecord::Seccomp(r))) = spo_enrich::audit::parse_record(&line.text)
                && r.pid == pid
            {
                ours.push(r.syscall);
            }
        }
        // exit_group (231 on x86-64) is the last call /bin/true makes.
        if ours.contains(&231) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        ours.contains(&231),
        "no exit_group record of pid {pid} in {}: saw {ours:?}",
        log.display()
    );
    // execve happened before the filter; everything after it is logged: a dynamically linked
    // /bin/true makes well over ten calls.
    assert!(ours.len() >= 10, "only {} records of pid {pid}: {ours:?}", ours.len());
}

/// Opened from the beginning, a reader reads the file that was there at open, even when it
/// is rotated away before the first poll (found by the burst test: one file's lines lost).
#[test]
fn a_file_rotated_before_the_first_poll_is_still_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    append(&log, "first\n");
    let mut tail = LogTail::open(&log, Start::Beginning, 4096).expect("open");
    rotate(&log, 5);
    append(&log, "second\n");
    assert_eq!(texts(&tail.poll().expect("poll")), ["first", "second"]);
}

/// Records of `pid` among `lines`: their serials (the kernel's, unique per boot).
fn serials_of(lines: &[Line], pid: u32) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| match spo_enrich::audit::parse_record(&l.text) {
            Ok(Some(spo_enrich::audit::AuditRecord::Seccomp(r))) if r.pid == pid => Some(r.stamp.serial),
            _ => None,
        })
        .collect()
}

fn audit_lost() -> u64 {
    let out = std::process::Command::new("auditctl")
        .arg("-s")
        .output()
        .expect("auditctl -s");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("lost ").and_then(|v| v.trim().parse().ok()))
        .expect("lost in auditctl -s")
}

/// The real auditd, rotating its log (SIGUSR1, as `service auditd rotate` does) again and
/// again while a process makes 20,000 logged calls: every record is read once, none is lost
/// or repeated, and the follower saw the rotations. Only an auditd that scripts/test started
/// (`SPO_TEST_AUDITD_PID`) is rotated: the machine's own audit trail is never touched.
#[test]
fn the_real_auditd_rotating_during_a_burst_loses_and_repeats_nothing() {
    const CALLS: usize = 20_000;
    const ROTATIONS: u64 = 12;
    let log = Path::new("/var/log/audit/audit.log");
    let ours = std::env::var("SPO_TEST_AUDITD_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok());
    let Some(auditd) = ours.filter(|p| auditd_pid() == Some(*p)) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the tests' own auditd (scripts/test exports SPO_TEST_AUDITD_PID)"
        );
        eprintln!("skipped: no auditd started by scripts/test to rotate (SPO_TEST_AUDITD_PID)");
        return;
    };
    let lost_before = audit_lost();
    let mut tail = LogTail::open(log, Start::End, 64 * 1024).expect("open the audit log");
    // A child that logs getppid (SECCOMP_RET_LOG for it, allow the rest) and calls it CALLS
    // times before exec.
    let mut cmd = std::process::Command::new("/bin/true");
    spo_seccomp::apply::confine_command(
        &mut cmd,
        program(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_LOG"}]}"#,
        ),
        0,
    )
    .expect("confine");
    // SAFETY: getppid is async-signal-safe; pre_exec closures run in order, so this one runs
    // under the filter installed above.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            for _ in 0..CALLS {
                libc::getppid();
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let mut read = Vec::new();
    let mut rotated = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_rotation = Instant::now();
    let mut exited = false;
    while Instant::now() < deadline {
        read.extend(tail.poll().expect("poll"));
        if !exited && child.try_wait().expect("try_wait").is_some() {
            exited = true;
        }
        // Rotate while the burst runs (and after it, until the count is reached).
        if rotated < ROTATIONS && last_rotation.elapsed() >= Duration::from_millis(40) {
            // SAFETY: kill(2) on the pid of the auditd scripts/test started.
            let rc = unsafe { libc::kill(auditd as i32, libc::SIGUSR1) };
            assert_eq!(rc, 0, "signalling the tests' auditd");
            rotated += 1;
            last_rotation = Instant::now();
        }
        if exited && rotated >= ROTATIONS && serials_of(&read, pid).len() >= CALLS {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "the burst's process: {status}");
    // A last look for anything still arriving (a repeat would show here).
    std::thread::sleep(Duration::from_millis(500));
    read.extend(tail.poll().expect("poll"));
    let serials = serials_of(&read, pid);
    let mut unique = serials.clone();
    unique.sort_unstable();
    unique.dedup();
    let stats = tail.stats();
    assert_eq!(
        audit_lost(),
        lost_before,
        "the kernel lost records (backlog): the count below would not hold"
    );
    assert_eq!(unique.len(), serials.len(), "records read twice");
    assert_eq!(
        serials.len(),
        CALLS,
        "records of pid {pid}: {} of {CALLS}; {stats:?}",
        serials.len()
    );
    assert!(stats.rotations >= ROTATIONS, "{stats:?}");
    assert_eq!(stats.gaps, 0, "{stats:?}");
    assert!(serials.windows(2).all(|w| w[0] < w[1]), "in order");
}
