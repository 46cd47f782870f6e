//! The enricher's log follower and the pipeline behind it, driven by a writer that appends,
//! rotates as auditd does (`audit.log` -> `audit.log.1` -> ... keeping four), and a reader
//! that polls in between, all chosen by the input. Whenever no file was rotated away unread
//! (no gap counted), the reader must return every complete line once, in order, and each line
//! torn by a rotation once, marked cut; nothing else. Every line then goes through the
//! pipeline (parse, attribution against made-up processes and pods, both outputs), which must
//! not panic and must print one line per logged record.
#![no_main]

use std::io::Write as _;
use std::path::{Path, PathBuf};

use spo_enrich::attribution::{CacheBounds, ContainerId, ContainerInfo, PodIndex, ProcessInfo, ProcessSource};
use spo_enrich::enriched::EnricherFilters;
use spo_enrich::pipeline::Pipeline;
use spo_enrich::tail::{LogTail, Start};

const KEEP: usize = 4;

/// Processes made up from the pid: some gone, some in containers, some on the node.
struct MadeUp;

impl ProcessSource for MadeUp {
    fn lookup(&self, pid: u32) -> Option<ProcessInfo> {
        (pid % 5 != 0).then(|| ProcessInfo {
            pid,
            started_ms: u64::from(pid % 7) * 1000,
            container: (pid % 3 != 0).then(|| id(pid % 4)),
            executable: Some(format!("/bin/p{}", pid % 11)),
            cmdline: Some("p --x".into()),
            uid: Some(pid % 2),
            gid: None,
        })
    }
}

fn id(n: u32) -> ContainerId {
    ContainerId::parse(&format!("{n:064x}")).expect("64 hex digits")
}

fn sibling(path: &Path, n: usize) -> PathBuf {
    PathBuf::from(format!("{}.{n}", path.display()))
}

fn rotate(path: &Path) {
    let _ = std::fs::remove_file(sibling(path, KEEP));
    for n in (1..KEEP).rev() {
        let _ = std::fs::rename(sibling(path, n), sibling(path, n + 1));
    }
    let _ = std::fs::rename(path, sibling(path, 1));
    let _ = std::fs::File::create(path);
}

/// The lines a reader must return for files written in order (the last one still current).
fn expected(files: &[Vec<u8>]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let mut pieces: Vec<&[u8]> = f.split(|b| *b == b'\n').collect();
        let last = pieces.pop().unwrap_or_default();
        out.extend(pieces.iter().map(|p| (String::from_utf8_lossy(p).into_owned(), false)));
        if i + 1 < files.len() && !last.is_empty() {
            out.push((String::from_utf8_lossy(last).into_owned(), true));
        }
    }
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.log");
    std::fs::File::create(&path).expect("log");
    let mut tail = LogTail::open(&path, Start::Beginning, 64 * 1024).expect("open");
    let mut files: Vec<Vec<u8>> = vec![Vec::new()];
    let mut got = Vec::new();
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        match op % 4 {
            0 | 3 => {
                let n = usize::from(bytes.next().unwrap_or(0) % 96);
                let mut chunk: Vec<u8> = bytes.by_ref().take(n).collect();
                if op % 4 == 3 {
                    chunk.push(b'\n');
                }
                let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("append");
                f.write_all(&chunk).expect("write");
                if let Some(current) = files.last_mut() {
                    current.extend_from_slice(&chunk);
                }
            }
            1 => got.extend(tail.poll().expect("poll")),
            _ => {
                rotate(&path);
                files.push(Vec::new());
            }
        }
    }
    // Let the reader settle (a rotation is looked at again before it is decided).
    for _ in 0..8 {
        got.extend(tail.poll().expect("poll"));
    }
    let stats = tail.stats();
    let read: Vec<(String, bool)> = got.iter().map(|l| (l.text.clone(), l.cut)).collect();
    if stats.gaps == 0 {
        assert_eq!(read, expected(&files), "{stats:?}");
    }

    let mut pods = PodIndex::new(8);
    for n in 0..3u32 {
        let info = ContainerInfo {
            namespace: format!("ns{n}"),
            pod: format!("pod{n}"),
            container: "c".into(),
            record_profile: None,
        };
        pods.set_pod(&info.namespace.clone(), &info.pod.clone(), vec![(id(n), info)]);
    }
    let mut p = Pipeline::new("node", MadeUp, CacheBounds::processes(16), |_, _| Some("read"));
    p.set_log(Some(EnricherFilters::default()));
    p.set_json(Some(EnricherFilters::default()));
    p.set_hold(std::time::Duration::from_secs(1));
    let mut fed = Vec::new();
    for line in &got {
        fed.extend(p.feed(&line.text, &pods));
    }
    fed.extend(p.release(&pods, std::time::Instant::now() + std::time::Duration::from_secs(2)));
    assert_eq!(p.held(), 0);
    for f in &fed {
        if let Some(l) = &f.log_line {
            assert!(!l.contains('\n'), "{l:?}");
        }
    }
    for l in p.flush_json() {
        serde_json::from_str::<serde_json::Value>(&l).expect("JSON line");
    }
});
