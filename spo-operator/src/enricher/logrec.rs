//! The log recorder (`recorder: Logs`, kind SeccompProfile): what the containers marked
//! `io.containers.trace-logs/<container>` did, from the audit records the enricher reads.
//!
//! The recording webhook runs a marked container under `log-enricher-trace` (`SCMP_ACT_LOG`
//! for every call), so the kernel writes one record per call, from the call after the runtime
//! installed the filter on. The enricher attributes each record to its pod's container (the
//! exit log covers processes gone before their record is read) and hands the seccomp ones of
//! recorded containers to [`LogRecordings::add`]; when the pod ends, the container's calls
//! become its profile ([`recording`]), written by the same publisher as the eBPF recorder's.
//! Pure: the IO is in [`super`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use spo_enrich::enriched::Enriched;
use spo_model::observed::{Recording, RecordingTarget};
use spo_model::seccomp::Arch;

/// A recorded container: namespace, pod, container.
pub type Key = (String, String, String);

/// The calls of one recorded container (every run of it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Calls {
    /// Names per architecture.
    pub syscalls: BTreeMap<Arch, BTreeSet<String>>,
    /// Numbers the syscall table could not name.
    pub unnamed: BTreeSet<(Arch, u32)>,
    /// Records counted.
    pub records: u64,
}

/// The containers being recorded and their calls so far. Bounded by the pods on the node
/// (a container is added when its pod's marks are checked) and by the syscall tables (each
/// set holds at most one architecture's names).
#[derive(Debug, Default)]
pub struct LogRecordings {
    containers: HashMap<Key, Calls>,
}

impl LogRecordings {
    /// Starts recording a container (keeps what was collected when it is recorded already).
    pub fn start(&mut self, key: Key) {
        self.containers.entry(key).or_default();
    }

    /// Whether any container is recorded.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }

    /// Adds a record when it is a seccomp record of a recorded container; returns whether it
    /// was.
    pub fn add(&mut self, record: &Enriched) -> bool {
        let (Some((nr, name)), Some(arch)) = (&record.syscall, record.arch) else {
            return false;
        };
        if record.pod.is_empty() {
            return false;
        }
        let key = (record.namespace.clone(), record.pod.clone(), record.container.clone());
        let Some(calls) = self.containers.get_mut(&key) else {
            return false;
        };
        calls.records += 1;
        if name.is_empty() {
            calls.unnamed.insert((arch, *nr));
        } else {
            calls.syscalls.entry(arch).or_default().insert(name.clone());
        }
        true
    }

    /// Stops recording a container, giving what it did.
    pub fn take(&mut self, key: &Key) -> Option<Calls> {
        self.containers.remove(key)
    }
}

/// The recording a container's calls make, with the runtime's allowance (runc's own calls
/// after the filter vary from start to start), or why no profile is written.
pub fn recording(key: &Key, container_id: Option<&str>, calls: &Calls) -> Result<Recording, String> {
    let (namespace, pod, container) = key;
    if calls.records == 0 {
        return Err(format!(
            "no audit record of container {container:?} was read: was the SPOD's enableLogEnricher on while \
             it ran, and did it run under operator/{}.json? No profile is written",
            spo_model::names::LOG_ENRICHER_PROFILE
        ));
    }
    if !calls.unnamed.is_empty() {
        return Err(format!(
            "container {container:?} made syscalls this operator cannot name ({:?}); a profile would block them, \
             so none is written",
            calls.unnamed
        ));
    }
    let mut recording = Recording {
        target: RecordingTarget {
            name: format!("{namespace}/{pod}/{container}"),
            container_id: container_id.map(str::to_owned),
            ..RecordingTarget::default()
        },
        syscalls: calls.syscalls.clone(),
        ..Recording::default()
    };
    spo_seccomp::backend::add_runtime_allowance(&mut recording);
    Ok(recording)
}

#[cfg(test)]
mod tests {
    use spo_enrich::attribution::{Attribution, ContainerId, ContainerInfo};
    use spo_enrich::audit::parse_record;

    use super::*;

    fn record(pod: &str, container: &str, syscall: u32) -> Enriched {
        let line = format!(
            "type=SECCOMP msg=audit(1796457384.359:1): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=7 \
             comm=\"sh\" exe=\"/bin/busybox\" sig=0 arch=c000003e syscall={syscall} compat=0 ip=0x1 code=0x7ffc0000"
        );
        let record = parse_record(&line).expect("parse").expect("record");
        let who = if pod.is_empty() {
            Attribution::Node
        } else {
            Attribution::Pod {
                info: ContainerInfo {
                    namespace: "ns".into(),
                    pod: pod.into(),
                    container: container.into(),
                    record_profile: None,
                },
                id: ContainerId::parse(&"a".repeat(64)).expect("id"),
            }
        };
        Enriched::new(&record, "node", &who, None, &|_, nr| match nr {
            83 => Some("mkdir"),
            80 => Some("chdir"),
            _ => None,
        })
    }

    fn key(pod: &str, container: &str) -> Key {
        ("ns".into(), pod.into(), container.into())
    }

    #[test]
    fn only_recorded_containers_calls_are_kept_and_become_a_recording() {
        let mut r = LogRecordings::default();
        assert!(r.is_empty());
        r.start(key("web", "app"));
        assert!(r.add(&record("web", "app", 83)));
        assert!(r.add(&record("web", "app", 80)));
        assert!(r.add(&record("web", "app", 83)));
        assert!(!r.add(&record("web", "side", 83)), "not a recorded container");
        assert!(!r.add(&record("", "", 83)), "the node's");
        // Starting again keeps what was collected.
        r.start(key("web", "app"));
        let calls = r.take(&key("web", "app")).expect("recorded");
        assert_eq!(calls.records, 3);
        let rec = recording(&key("web", "app"), Some("abc"), &calls).expect("a recording");
        let names = &rec.syscalls[&Arch::X86_64];
        assert!(names.contains("mkdir") && names.contains("chdir"), "{names:?}");
        assert!(names.len() > 2, "the runtime's allowance is added: {names:?}");
        assert_eq!(rec.target.name, "ns/web/app");
        assert!(r.take(&key("web", "app")).is_none(), "taken once");
    }

    #[test]
    fn nothing_read_or_an_unnamed_call_writes_no_profile() {
        let mut r = LogRecordings::default();
        r.start(key("web", "app"));
        let none = r.take(&key("web", "app")).expect("recorded");
        let why = recording(&key("web", "app"), None, &none).expect_err("refused");
        assert!(
            why.contains("enableLogEnricher") && why.contains("log-enricher-trace"),
            "{why}"
        );
        r.start(key("web", "app"));
        r.add(&record("web", "app", 999));
        let calls = r.take(&key("web", "app")).expect("recorded");
        let why = recording(&key("web", "app"), None, &calls).expect_err("refused");
        assert!(why.contains("cannot name") && why.contains("999"), "{why}");
    }
}
