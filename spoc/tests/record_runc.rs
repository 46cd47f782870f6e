//! Profiles that start: the most common complaint about every recorder is a recorded profile
//! that stops the container from starting, because the runtime's own syscalls after it
//! installs the filter were missed. Here a real runc container is recorded with
//! `spoc record --from-seccomp` (its config carries the do-nothing filter `spoc record
//! --recording-filter` prints, so runc installs a filter exactly where the real profile will
//! go), the recording becomes a profile with defaultAction SCMP_ACT_ERRNO, and the same
//! container must start under it and its workload succeed. Each workload's profile must also
//! refuse what the workload never did, so "it starts" cannot come from a profile that allows
//! everything.
//!
//! Needs root, kernel BTF, runc and a static busybox; CI has them all.

mod common;

use std::collections::BTreeSet;

use common::{can_record, spoc};
use serde_json::Value;
use spo_testkit::runc::{Bundle, RunOutput, require_runtime, run_with_deadline};

/// A shell script touching files.
const FILES: &[&str] = &[
    "sh",
    "-c",
    "mkdir -p /work/d && echo data > /work/d/f && cat /work/d/f && ls /work/d && rm -r /work/d && echo files-ok",
];

/// A web server listening on loopback in the container's own network namespace and a client
/// fetching a page from it; `net-ok` only when the page arrived.
const NETWORK: &[&str] = &[
    "sh",
    "-c",
    "mkdir -p /www && echo pong > /www/index.html; httpd -f -p 127.0.0.1:8080 -h /www & \
     for i in $(seq 50); do r=$(wget -q -O - http://127.0.0.1:8080/index.html 2>/dev/null) && break; sleep 0.1; done; \
     kill $!; [ \"$r\" = pong ] && echo net-ok",
];

/// A process that forks children and waits for them. The children sleep so that the shell is
/// always waiting when they exit: busybox's `wait` calls `rt_sigsuspend` only then, and a
/// recording is only as complete as the paths the workload took while recorded (a workload
/// whose syscalls depend on timing needs several recordings, merged).
const FORKS: &[&str] = &[
    "sh",
    "-c",
    "for i in 1 2 3; do (sleep 0.2; echo child $i) & done; wait; sh -c 'echo grandchild'; echo forks-ok",
];

/// The filter `spoc record --recording-filter` prints.
fn recording_filter() -> Value {
    let o = spoc(&["record", "--recording-filter"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("the recording filter is JSON")
}

/// Runs `spoc record --from-seccomp --as-root OPTIONS -o FILE -- runc run ...` on a container
/// of `bundle` running `args` under the recording filter; returns what spoc wrote to FILE and
/// what the container printed.
fn record_from_filter(bundle: &Bundle, args: &[&str], options: &[&str]) -> (String, RunOutput) {
    bundle.configure(Some(recording_filter()), args);
    let out_file = bundle.scratch().join("recorded");
    let (runc, container) = bundle.run_command();
    let mut record = std::process::Command::new(env!("CARGO_BIN_EXE_spoc"));
    record
        .args(["record", "--from-seccomp", "--as-root"])
        .args(options)
        .arg("-o")
        .arg(&out_file)
        .arg("--")
        .arg(runc.get_program())
        .args(runc.get_args());
    let out = run_with_deadline(record, &format!("spoc record runc run {}", container.id));
    assert!(out.status.success(), "recording the container failed: {out:?}");
    // A process the recorder could not track, or a program run the kernel skipped, is a hole
    // in the profile.
    assert!(
        !out.stderr.contains("could not be tracked") && !out.stderr.contains("skipped"),
        "the recording lost processes or program runs: {out:?}"
    );
    // `-t all -o FILE` writes FILE.seccomp.yaml and FILE.apparmor.yaml: one stream of both here.
    let written = if options.contains(&"all") {
        let read = |suffix: &str| {
            std::fs::read_to_string(bundle.scratch().join(format!("recorded.{suffix}.yaml")))
                .unwrap_or_else(|e| panic!("recorded {suffix} profile written: {e}"))
        };
        format!("{}\n---\n{}", read("seccomp").trim_end(), read("apparmor"))
    } else {
        std::fs::read_to_string(&out_file).expect("recorded profile written")
    };
    (written, out)
}

/// Records `args` in a runc container of `bundle` and returns the recorded OCI profile and what
/// the container printed.
fn record_container(bundle: &Bundle, args: &[&str]) -> (Value, RunOutput) {
    let (written, out) = record_from_filter(bundle, args, &["-t", "raw-seccomp"]);
    let profile = serde_json::from_str(&written).expect("the recorded profile is JSON");
    (profile, out)
}

fn allowed_names(profile: &Value) -> BTreeSet<String> {
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO", "{profile}");
    profile["syscalls"]
        .as_array()
        .expect("syscalls")
        .iter()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|r| r["names"].as_array().expect("names").iter())
        .map(|n| n.as_str().expect("name").to_owned())
        .collect()
}

/// Records `workload`, runs it under the recorded profile, and checks both runs printed
/// `expected`; returns the profile.
fn recorded_profile_starts(bundle: &Bundle, workload: &[&str], expected: &str) -> Value {
    let (profile, recorded) = record_container(bundle, workload);
    assert!(
        recorded.stdout.contains(expected),
        "the workload failed while recorded: {recorded:?}"
    );
    let names = allowed_names(&profile);
    // Recorded from the filter on: nothing of runc's set-up before it.
    for before_filter in ["pivot_root", "mount", "unshare", "sethostname"] {
        assert!(
            !names.contains(before_filter),
            "{before_filter} happens before the filter is installed, yet was recorded: {names:?}"
        );
    }
    // The runtime's own calls after the filter, and the exec into the workload, are in.
    assert!(names.contains("execve"), "{names:?}");

    // Several starts: a profile that misses a call the runtime makes only now and then fails
    // some of them.
    for start in 1..=3 {
        let confined = bundle.run(Some(profile.clone()), workload);
        assert!(
            confined.status.success() && confined.stdout.contains(expected),
            "start {start}: the container did not start or its workload failed under its recorded profile {names:?}: {confined:?}; the recording said {:?}",
            recorded.stderr
        );
    }
    profile
}

#[test]
fn recorded_container_profiles_start_and_stay_tight() {
    if !can_record("recorded_container_profiles_start_and_stay_tight") {
        return;
    }
    let Some(rt) = require_runtime() else { return };
    let bundle = Bundle::new(&rt);

    let files = recorded_profile_starts(&bundle, FILES, "files-ok");
    let network = recorded_profile_starts(&bundle, NETWORK, "net-ok");
    let forks = recorded_profile_starts(&bundle, FORKS, "forks-ok");
    let net_names = allowed_names(&network);
    for call in ["socket", "bind", "listen", "accept", "connect"] {
        assert!(
            net_names.iter().any(|n| n.starts_with(call)),
            "{call} missing: {net_names:?}"
        );
    }

    // Tight: the file workload never made a socket, so under its profile the web server fails
    // while the container itself still starts (the shell runs and reports).
    assert!(!allowed_names(&files).contains("socket"));
    let out = bundle.run(
        Some(files),
        &["sh", "-c", "httpd -f -p 127.0.0.1:8081 -h /; echo httpd-status $?"],
    );
    assert!(
        out.stdout.contains("httpd-status 1"),
        "httpd ran under a profile recorded without sockets: {out:?}"
    );
    // Nor did the fork workload create directories.
    assert!(!allowed_names(&forks).iter().any(|n| n.starts_with("mkdir")));
    let out = bundle.run(Some(forks), &["sh", "-c", "mkdir /x; echo mkdir-status $?"]);
    assert!(
        out.stdout.contains("mkdir-status 1") && out.stderr.contains("Operation not permitted"),
        "mkdir ran under a profile recorded without it: {out:?}"
    );
}

#[test]
fn recording_a_container_without_a_filter_is_an_error() {
    if !can_record("recording_a_container_without_a_filter_is_an_error") {
        return;
    }
    let Some(rt) = require_runtime() else { return };
    let bundle = Bundle::new(&rt);
    bundle.configure(None, &["true"]);
    let (runc, _container) = bundle.run_command();
    let mut args = vec!["record", "--from-seccomp", "--as-root", "--"];
    let program = runc.get_program().to_str().expect("utf-8").to_owned();
    let rest: Vec<String> = runc.get_args().map(|a| a.to_str().expect("utf-8").to_owned()).collect();
    args.push(&program);
    args.extend(rest.iter().map(String::as_str));
    let o = spoc(&args, None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("installed no seccomp filter") && err.contains("--recording-filter"),
        "{err}"
    );
}

/// A running container recorded by id: spoc finds it, records what it does from then on, and
/// on Ctrl-C stops and still writes the profile.
#[test]
fn records_a_running_container_until_ctrl_c() {
    if !can_record("records_a_running_container_until_ctrl_c") {
        return;
    }
    let Some(rt) = require_runtime() else { return };
    let bundle = Bundle::new(&rt);
    bundle.configure(
        None,
        &[
            "sh",
            "-c",
            "while [ ! -e /go ]; do sleep 0.05; done; mkdir /made; sleep 60",
        ],
    );
    let (mut detached, container) = bundle.detached_command();
    let started = detached
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("runc run --detach");
    assert!(started.success(), "runc run --detach failed");

    let profile = bundle.scratch().join("running.yaml");
    let mut record = std::process::Command::new(env!("CARGO_BIN_EXE_spoc"))
        .args(["record", "--container", &container.id, "-o"])
        .arg(&profile)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spoc record --container");
    let mut stderr = std::io::BufReader::new(record.stderr.take().expect("stderr"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).expect("spoc's first line");
    assert!(
        line.contains(&format!("recording container {}", container.id)),
        "{line}"
    );

    // Only now does the container do what the profile must show.
    let rootfs = bundle.bundle.join("rootfs");
    std::fs::write(rootfs.join("go"), b"").expect("go file");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !rootfs.join("made").exists() {
        assert!(std::time::Instant::now() < deadline, "the container never made /made");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &record.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    let status = record.wait().expect("wait spoc");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("spoc's stderr");
    assert!(status.success(), "{rest}");
    assert!(rest.contains("stopped by SIGINT"), "{rest}");

    let text = std::fs::read_to_string(&profile).expect("profile written");
    assert!(text.contains("kind: SeccompProfile"), "{text}");
    for call in ["mkdir", "clone", "wait4"] {
        assert!(
            text.lines().any(|l| l.trim() == format!("- {call}")),
            "{call} missing: {text}"
        );
    }
    // What runc did to start it, before the recording, is not in.
    assert!(!text.lines().any(|l| l.trim() == "- pivot_root"), "{text}");
}

/// Both kinds from one recording of a container: the seccomp profile lets it start, and the
/// AppArmor profile holds what the workload touched and compiles with the real apparmor_parser.
#[test]
fn records_seccomp_and_apparmor_profiles_of_a_container() {
    if !can_record("records_seccomp_and_apparmor_profiles_of_a_container") {
        return;
    }
    let Some(rt) = require_runtime() else { return };
    let validator = spo_apparmor::ParserValidator::default();
    if let Err(why) = validator.available() {
        assert!(std::env::var_os("CI").is_none(), "CI must have apparmor_parser: {why}");
        eprintln!("skipped: {why}");
        return;
    }
    let bundle = Bundle::new(&rt);
    let (text, out) = record_from_filter(&bundle, FILES, &["-t", "all", "--name", "files"]);
    assert!(out.stdout.contains("files-ok"), "{out:?}");
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .map(|d| serde_norway::from_str(d).expect("each document is YAML"))
        .collect();
    assert_eq!(docs.len(), 2, "{text}");
    assert_eq!(docs[0]["kind"], "SeccompProfile");
    assert_eq!(docs[1]["kind"], "AppArmorProfile");
    let abstract_ = &docs[1]["spec"]["abstract"];
    let listed = |field: &str| -> Vec<String> {
        abstract_["filesystem"][field]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    // Paths as the container sees them (from its root, not the host's bundle directory).
    let written = [listed("writeOnlyPaths"), listed("readWritePaths")].concat();
    assert!(written.iter().any(|p| p == "/work/d/f"), "{written:?} in {text}");
    assert!(
        !text.contains(bundle.bundle.to_str().expect("utf-8")),
        "host paths leaked into the profile: {text}"
    );
    let programs = abstract_["executable"]["allowedExecutables"].to_string();
    assert!(
        programs.contains("/bin/busybox") || programs.contains("/bin/sh"),
        "{programs}"
    );

    let profile: spo_model::AppArmorProfile =
        serde_norway::from_str(text.split("\n---\n").nth(1).expect("second doc")).expect("an AppArmorProfile");
    let rendered = spo_apparmor::render_profile(&profile).expect("renders");
    let problems = spo_apparmor::validate::check_rendered(&validator, &rendered).expect("apparmor_parser ran");
    assert!(
        problems.is_empty(),
        "apparmor_parser refused the recorded profile:\n{problems}\n{}",
        rendered.text
    );
}
