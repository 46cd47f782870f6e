//! The node agent's recorder against the real kernel: containers under a watched parent cgroup
//! are recorded each on its own, from the seccomp filter they install. The cgroups are made by
//! the test under the machine's cgroup2 mount (its own directory, removed at the end). Needs root
//! and BTF (skipped otherwise, except in CI).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cgroup2_mount, load};
use spo_model::seccomp::Arch;
use spo_record::{ContainerWatch, RawRecording, RecordError, into_recording};

/// A cgroup tree this test makes and removes: `<cgroup2>/spo-record-test-<pid>/<pod>/{a,b}`.
struct Tree {
    root: PathBuf,
    pod: String,
}

impl Tree {
    fn new(tag: &str) -> Tree {
        let root = cgroup2_mount().join(format!("spo-record-test-{}-{tag}", std::process::id()));
        let pod = format!("pod-spo-test-{}-{tag}", std::process::id());
        fs::create_dir(&root).expect("test cgroup");
        Tree { root, pod }
    }

    fn pod_dir(&self) -> PathBuf {
        self.root.join(&self.pod)
    }

    fn container(&self, name: &str) -> PathBuf {
        let dir = self.pod_dir().join(name);
        fs::create_dir_all(&dir).expect("container cgroup");
        dir
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // Leaves first; every process of the tree has been waited for.
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(d) = stack.pop() {
            if let Ok(entries) = fs::read_dir(&d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
            dirs.push(d);
        }
        for d in dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// Starts `sh -c script` the way a runtime starts a container: the child enters `cgroup`,
/// makes a marker call (`sched_getscheduler`, which nothing else here makes), installs the
/// recording filter, then execs.
#[allow(unsafe_code)]
fn start_in_container(cgroup: &Path, script: &str) -> std::process::Child {
    let procs = fs::OpenOptions::new()
        .write(true)
        .open(cgroup.join("cgroup.procs"))
        .expect("cgroup.procs");
    let fd = procs.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]);
    // SAFETY: runs in the forked child before execve; write(2) and sched_getscheduler(2) are
    // async-signal-safe and nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::sched_getscheduler(0);
            Ok(())
        });
    }
    let program = spo_seccomp::compile::compile(
        &spo_seccomp::backend::recording_filter(),
        &spo_seccomp::compile::CompileOptions::default(),
    )
    .expect("the recording filter compiles");
    spo_seccomp::apply::confine_command(&mut cmd, program, 0).expect("confine");
    let child = cmd.spawn().expect("the container's process starts");
    drop(procs);
    child
}

/// [`start_in_container`], waiting for it to succeed.
fn run_in_container(cgroup: &Path, script: &str) {
    let status = start_in_container(cgroup, script).wait().expect("wait");
    assert!(status.success(), "{script}: {status}");
}

fn names(raw: &RawRecording) -> BTreeSet<String> {
    let named = into_recording(raw, |arch, nr| spo_seccomp::syscalls::table(arch)?.name(nr));
    named.recording.syscalls.get(&Arch::X86_64).cloned().unwrap_or_default()
}

#[test]
fn records_each_container_of_a_watched_pod_from_its_filter() {
    let Some(recorder) = load() else { return };
    let tree = Tree::new("a");
    let mut watch = ContainerWatch::start(recorder).expect("watch");
    let pod = watch.watch(&tree.pod).expect("watch the pod");
    // The pod's directory is made after it is watched, as a kubelet makes it after the agent
    // saw the pod.
    let a = tree.container("a");
    let b = tree.container("b");
    run_in_container(&a, "ls / >/dev/null; echo a >/dev/null");
    run_in_container(&b, "cat /proc/self/status >/dev/null");
    // A container of a pod nobody watches is not recorded.
    let other = Tree::new("b");
    run_in_container(&other.container("x"), "true");

    let mut seen = watch.containers(pod).expect("containers");
    seen.sort_by(|x, y| x.cgroup.cmp(&y.cgroup));
    assert_eq!(
        seen.iter().map(|c| c.cgroup.as_str()).collect::<Vec<_>>(),
        ["a", "b"],
        "{seen:?}"
    );
    for c in &seen {
        assert_eq!(c.filter_starts, 1, "{c:?}");
        assert_eq!(c.processes, 0, "the container's processes exited: {c:?}");
        assert!(c.distinct_syscalls > 5, "{c:?}");
    }

    // Both ran under their filter and have no process left: both exited.
    assert_eq!(
        watch.exited().expect("exited"),
        vec![(pod, "a".to_owned()), (pod, "b".to_owned())]
    );

    let rec_a = watch.collect(pod, "a").expect("collect").expect("a was seen");
    let names_a = names(&rec_a);
    // From the filter on: the exec into the workload is in, the marker before the filter and
    // the cgroup write are not.
    assert!(names_a.contains("execve"), "{names_a:?}");
    assert!(names_a.contains("getdents64"), "ls lists a directory: {names_a:?}");
    assert!(
        !names_a.contains("sched_getscheduler"),
        "recorded before the filter: {names_a:?}"
    );
    assert_eq!(rec_a.filter_starts, 1);
    assert_eq!(rec_a.untracked_processes, 0);

    let rec_b = watch.collect(pod, "b").expect("collect").expect("b was seen");
    let names_b = names(&rec_b);
    assert!(names_b.contains("execve"), "{names_b:?}");
    assert!(
        !names_b.contains("getdents64"),
        "b never listed a directory: {names_b:?}"
    );
    assert!(watch.collect(pod, "a").expect("collect").is_none(), "collected once");

    // A container that starts again after its recording was collected gets a fresh one.
    run_in_container(&a, "true");
    let again = watch.unwatch(pod).expect("unwatch");
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(!names(&again[0].1).contains("getdents64"), "a fresh recording");
    // Unwatched: nothing more is recorded.
    run_in_container(&a, "true");
    assert!(watch.containers(pod).expect("containers").is_empty());
    assert_eq!(watch.containers_without_target(), 0);
}

#[test]
fn a_container_without_a_filter_records_nothing_and_says_so() {
    let Some(recorder) = load() else { return };
    let tree = Tree::new("c");
    let mut watch = ContainerWatch::start(recorder).expect("watch");
    let pod = watch.watch(&tree.pod).expect("watch the pod");
    let dir = tree.container("plain");
    let procs = dir.join("cgroup.procs");
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("echo 0 > {}; ls / >/dev/null", procs.display()))
        .status()
        .expect("sh");
    assert!(status.success());
    let seen = watch.containers(pod).expect("containers");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].filter_starts, 0, "{seen:?}");
    assert!(watch.exited().expect("exited").is_empty(), "never ran under a filter");
    let rec = watch.collect(pod, "plain").expect("collect").expect("seen");
    assert!(rec.syscalls.is_empty(), "nothing before a filter: {:?}", rec.syscalls);
    assert_eq!(rec.filter_starts, 0);
}

#[test]
fn names_the_recorder_cannot_match_are_refused() {
    let Some(recorder) = load() else { return };
    let mut watch = ContainerWatch::start(recorder).expect("watch");
    for bad in ["", "..", "a/b", &"x".repeat(200)] {
        let err = watch.watch(bad).expect_err("refused");
        assert!(matches!(err, RecordError::BadCgroupName { .. }), "{err}");
    }
    let first = watch.watch("pod1").expect("watch");
    assert_eq!(watch.watch("pod1").expect("again"), first, "one id per name");
}

#[test]
fn a_container_has_exited_once_its_last_process_has() {
    let Some(recorder) = load() else { return };
    let tree = Tree::new("d");
    let mut watch = ContainerWatch::start(recorder).expect("watch");
    let pod = watch.watch(&tree.pod).expect("watch the pod");
    // A container whose init has a child: running while either lives.
    let mut running = start_in_container(&tree.container("long"), "sleep 30 & wait");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while watch
        .containers(pod)
        .expect("containers")
        .first()
        .is_none_or(|c| c.processes < 2)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the container's processes are not tracked"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(watch.exited().expect("exited").is_empty(), "still running");
    running.kill().expect("kill");
    running.wait().expect("wait");
    // The child `sleep` lives on (reparented): the container has not exited.
    assert!(watch.exited().expect("exited").is_empty(), "its child still runs");
    let sleeper = fs::read_to_string(tree.container("long").join("cgroup.procs")).expect("procs");
    for pid in sleeper.split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while watch.exited().expect("exited").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the container did not exit");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(watch.exited().expect("exited"), vec![(pod, "long".to_owned())]);
}

/// Starts `program args` the way a runtime starts a container for a watch that starts at exec:
/// the child enters `cgroup` and execs `program` in the test's own mount namespace (as runc's
/// init re-executes itself before it moves into the container's namespaces).
#[allow(unsafe_code)]
fn start_entering(cgroup: &Path, program: &str, args: &[&str]) -> std::process::Child {
    let procs = fs::OpenOptions::new()
        .write(true)
        .open(cgroup.join("cgroup.procs"))
        .expect("cgroup.procs");
    let fd = procs.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: runs in the forked child before execve; write(2) is async-signal-safe and
    // nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("the container's process starts");
    drop(procs);
    child
}

#[test]
fn a_watch_that_starts_at_exec_records_the_container_from_its_own_mount_namespace_with_its_files() {
    use spo_record::{ContainerOptions, ContainerStart, LoadOptions};
    let Some(recorder) = common::load_with(&LoadOptions {
        resources: true,
        ..LoadOptions::default()
    }) else {
        return;
    };
    let tree = Tree::new("e");
    let seccomp_tree = Tree::new("f");
    let scratch = tempfile::tempdir().expect("scratch");
    let written = scratch.path().join("written");
    let before = scratch.path().join("before-the-exec");
    fs::write(&before, "x").expect("a file only the runtime part reads");
    let mut watch = ContainerWatch::start(recorder).expect("watch");
    let pod = watch
        .watch_with(
            &tree.pod,
            ContainerOptions {
                start: ContainerStart::Exec,
                resources: true,
            },
        )
        .expect("watch the pod");
    // A pod recorded from its filter, syscalls only, at the same time.
    let seccomp_pod = watch.watch(&seccomp_tree.pod).expect("watch the other pod");
    assert!(
        watch
            .watch_with(
                &tree.pod,
                ContainerOptions {
                    start: ContainerStart::SeccompFilter,
                    resources: false
                }
            )
            .is_err(),
        "one pod is recorded one way"
    );
    let dir = tree.container("app");
    // The "runtime part": reads a file and execs unshare in the test's mount namespace; unshare
    // moves into a new mount namespace and execs the "workload", whose calls and files count.
    let script = format!(
        "cat {before} >/dev/null; exec unshare -m /bin/sh -c 'cat /etc/hostname >/dev/null; echo y > {written}'",
        before = before.display(),
        written = written.display()
    );
    let status = start_entering(&dir, "/bin/sh", &["-c", &script]).wait().expect("wait");
    assert!(status.success(), "{status}");
    run_in_container(&seccomp_tree.container("s"), "cat /etc/hostname >/dev/null");

    // Events are taken as they come, as the node recorder's thread does.
    watch.drain();
    assert_eq!(watch.exited().expect("exited"), {
        let mut both = vec![(pod, "app".to_owned()), (seccomp_pod, "s".to_owned())];
        both.sort();
        both
    });
    let rec = watch.collect(pod, "app").expect("collect").expect("seen");
    assert_eq!(rec.filter_starts, 1, "one start, at the exec in the new namespace");
    assert_eq!(rec.untracked_processes, 0);
    assert_eq!(rec.lost_events, 0);
    let programs: Vec<&str> = rec.executables.iter().map(String::as_str).collect();
    assert!(
        !programs.iter().any(|p| p.ends_with("/unshare")),
        "unshare was exec'd before the container's namespace: {programs:?}"
    );
    assert!(
        programs
            .iter()
            .any(|p| p.ends_with("/dash") || p.ends_with("/sh") || p.ends_with("/bash")),
        "the workload's shell: {programs:?}"
    );
    assert!(programs.iter().any(|p| p.ends_with("/cat")), "{programs:?}");
    let hostname = rec.files.get("/etc/hostname").expect("the workload read /etc/hostname");
    assert!(hostname.read && !hostname.write, "{hostname:?}");
    let out = rec
        .files
        .get(written.to_str().expect("utf-8"))
        .unwrap_or_else(|| panic!("the workload wrote {}: {:?}", written.display(), rec.files.keys()));
    assert!(out.write, "{out:?}");
    assert!(
        !rec.files.contains_key(before.to_str().expect("utf-8")),
        "read before the container's exec: {:?}",
        rec.files.keys()
    );
    assert!(
        !rec.mapped.is_empty() || programs.iter().all(|p| p.ends_with("/busybox")),
        "libraries: {rec:?}"
    );
    let calls = names(&rec);
    assert!(calls.contains("execve") && calls.contains("openat"), "{calls:?}");
    assert!(
        !calls.contains("unshare"),
        "called before the exec that started it: {calls:?}"
    );

    // The seccomp-only pod's recording holds syscalls and no files.
    let other = watch.collect(seccomp_pod, "s").expect("collect").expect("seen");
    assert_eq!(other.filter_starts, 1);
    assert!(
        other.files.is_empty() && other.executables.is_empty(),
        "{:?}",
        other.files
    );
    assert!(names(&other).contains("openat"));
}
