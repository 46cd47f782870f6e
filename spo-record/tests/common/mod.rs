//! What the recorder's test files share: loading the recorder (or saying why this machine
//! cannot), and the machine's cgroup2 mount.

#![allow(dead_code)] // each test file uses its own part

use std::error::Error as _;
use std::path::PathBuf;

use spo_record::{LoadOptions, RecordError, Recorder};

/// Loads a recorder, or says why this machine cannot and returns `None` (a failure in CI).
pub fn load() -> Option<Recorder> {
    load_with(&LoadOptions::default())
}

/// [`load`] with options.
pub fn load_with(options: &LoadOptions) -> Option<Recorder> {
    let recorder = or_skip(Recorder::load_with(options))?;
    eprintln!("recorder loaded in {:?}", recorder.load_time());
    Some(recorder)
}

/// What loading BPF gave: the value, or `None` after saying why this machine cannot load BPF
/// programs (a failure in CI); any other error fails the test.
pub fn or_skip<T>(loaded: Result<T, RecordError>) -> Option<T> {
    match loaded {
        Ok(value) => Some(value),
        Err(
            e @ (RecordError::NotPermitted | RecordError::NoKernelBtf { .. } | RecordError::MissingTracepoint { .. }),
        ) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must be able to load BPF programs: {e}"
            );
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{e}: {:?}", e.source()),
    }
}

/// The machine's cgroup2 mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
/// hybrid machine).
pub fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .expect("a cgroup2 mount")
}
