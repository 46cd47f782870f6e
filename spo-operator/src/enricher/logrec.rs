//! The log recorder (`recorder: Logs`): what the containers marked
//! `io.containers.trace-logs/<container>` (SeccompProfile) or
//! `io.containers.trace-avcs/<container>` (SelinuxProfile) did, from the audit records the
//! enricher reads.
//!
//! SELinux: the webhook runs a marked container as `selinuxrecording.process` (a permissive
//! domain that inherits `container`), so the kernel logs an AVC for each access the container
//! policy does not allow, and lets it happen; the container's AVCs become the `allow` rules of
//! its SelinuxProfile ([`selinux_recording`]).
//!
//! The recording webhook runs a marked container under `log-enricher-trace` (`SCMP_ACT_LOG`
//! for every call), so the kernel writes one record per call, from the call after the runtime
//! installed the filter on. The enricher attributes each record to its pod's container (the
//! exit log covers processes gone before their record is read) and hands the seccomp ones of
//! recorded containers to [`LogRecordings::add`]; when the pod ends, the container's calls
//! become its profile ([`recording`]), written by the same publisher as the eBPF recorder's.
//! Pure: the IO is in [`super`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use spo_enrich::enriched::{AvcFields, Enriched};
use spo_model::observed::{AvcDenial, Recording, RecordingTarget};
use spo_model::seccomp::Arch;

/// The most distinct AVC denials one container's recording keeps (a bound on memory; a
/// container with more gets no profile).
pub const MAX_AVCS: usize = 4096;

/// A recorded container: namespace, pod, container.
pub type Key = (String, String, String);

/// The calls of one recorded container (every run of it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Calls {
    /// Names per architecture.
    pub syscalls: BTreeMap<Arch, BTreeSet<String>>,
    /// Numbers the syscall table could not name.
    pub unnamed: BTreeSet<(Arch, u32)>,
    /// Seccomp records counted.
    pub records: u64,
    /// SELinux denials, distinct.
    pub avcs: BTreeSet<AvcDenial>,
    /// AVC records counted.
    pub avc_records: u64,
    /// AVC records whose contexts could not be read, or that came after [`MAX_AVCS`].
    pub avcs_lost: u64,
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

    /// Adds a record when it is a seccomp or AVC record of a recorded container; returns
    /// whether it was.
    pub fn add(&mut self, record: &Enriched) -> bool {
        if record.pod.is_empty() {
            return false;
        }
        let key = (record.namespace.clone(), record.pod.clone(), record.container.clone());
        let Some(calls) = self.containers.get_mut(&key) else {
            return false;
        };
        if let Some(avc) = &record.avc {
            calls.avc_records += 1;
            match denial(avc) {
                Some(d) if calls.avcs.len() < MAX_AVCS || calls.avcs.contains(&d) => {
                    calls.avcs.insert(d);
                }
                _ => calls.avcs_lost += 1,
            }
            return true;
        }
        let (Some((nr, name)), Some(arch)) = (&record.syscall, record.arch) else {
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

/// The type of an SELinux context (`user:role:type:level`).
fn context_type(context: &str) -> Option<&str> {
    context.split(':').nth(2).filter(|t| !t.is_empty())
}

/// An AVC record's denial: source and target types, class and permissions (`None` when a
/// context has no type, or nothing was denied).
pub fn denial(avc: &AvcFields) -> Option<AvcDenial> {
    let permissions: BTreeSet<String> = avc.perm.split_whitespace().map(str::to_owned).collect();
    if permissions.is_empty() || avc.tclass.is_empty() {
        return None;
    }
    Some(AvcDenial {
        source_type: context_type(&avc.scontext)?.to_owned(),
        target_type: context_type(&avc.tcontext)?.to_owned(),
        class: avc.tclass.clone(),
        permissions,
    })
}

/// The SELinux recording a container's AVC denials make, or why no profile is written. No
/// denial at all is a recording too: the container policy allowed everything the container did.
pub fn selinux_recording(key: &Key, container_id: Option<&str>, calls: &Calls) -> Result<Recording, String> {
    let (namespace, pod, container) = key;
    if calls.avcs_lost > 0 {
        return Err(format!(
            "{} AVC records of container {container:?} could not be used (unreadable contexts, or more than {MAX_AVCS} \
             distinct denials); the profile would be incomplete, so none is written",
            calls.avcs_lost
        ));
    }
    Ok(Recording {
        target: RecordingTarget {
            name: format!("{namespace}/{pod}/{container}"),
            container_id: container_id.map(str::to_owned),
            ..RecordingTarget::default()
        },
        avc_denials: calls.avcs.clone(),
        ..Recording::default()
    })
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

    fn avc(pod: &str, container: &str, perms: &str, target: &str, class: &str) -> Enriched {
        let line = format!(
            "type=AVC msg=audit(1796457384.359:2): avc:  denied  {{ {perms} }} for  pid=7 comm=\"sh\" \
             name=\"x\" dev=\"overlay\" ino=1 scontext=system_u:system_r:selinuxrecording.process:s0:c1,c2 \
             tcontext={target} tclass={class} permissive=1"
        );
        let record = parse_record(&line).expect("parse").expect("record");
        let who = Attribution::Pod {
            info: ContainerInfo {
                namespace: "ns".into(),
                pod: pod.into(),
                container: container.into(),
                record_profile: None,
            },
            id: ContainerId::parse(&"b".repeat(64)).expect("id"),
        };
        Enriched::new(&record, "node", &who, None, &|_, _| None)
    }

    #[test]
    fn a_containers_avc_denials_become_its_selinux_recording() {
        let mut r = LogRecordings::default();
        r.start(key("web", "app"));
        assert!(r.add(&avc("web", "app", "read open", "system_u:object_r:etc_t:s0", "file")));
        assert!(r.add(&avc("web", "app", "read open", "system_u:object_r:etc_t:s0", "file")));
        assert!(r.add(&avc(
            "web",
            "app",
            "name_bind",
            "system_u:object_r:http_port_t:s0",
            "tcp_socket"
        )));
        assert!(
            !r.add(&avc("web", "side", "read", "system_u:object_r:etc_t:s0", "file")),
            "not recorded"
        );
        let calls = r.take(&key("web", "app")).expect("recorded");
        assert_eq!(calls.avc_records, 3);
        assert_eq!(calls.avcs.len(), 2, "{:?}", calls.avcs);
        let rec = selinux_recording(&key("web", "app"), Some("abc"), &calls).expect("recording");
        let etc = rec
            .avc_denials
            .iter()
            .find(|d| d.target_type == "etc_t")
            .expect("etc_t");
        assert_eq!(etc.source_type, "selinuxrecording.process");
        assert_eq!(etc.class, "file");
        assert_eq!(
            etc.permissions.iter().map(String::as_str).collect::<Vec<_>>(),
            ["open", "read"]
        );
        assert_eq!(rec.target.container_id.as_deref(), Some("abc"));
        assert!(rec.syscalls.is_empty(), "no seccomp calls in an SELinux recording");
    }

    #[test]
    fn unreadable_or_too_many_avcs_write_no_selinux_profile() {
        // The audit parser refuses contexts that are not `user:role:type[:level]`; a type
        // left empty, or no permission, is no denial either.
        let fields = |scontext: &str, perm: &str| AvcFields {
            perm: perm.into(),
            scontext: scontext.into(),
            tcontext: "system_u:object_r:etc_t:s0".into(),
            tclass: "file".into(),
        };
        assert!(denial(&fields("system_u:system_r::s0", "read")).is_none());
        assert!(denial(&fields("system_u:system_r:x.process:s0", " ")).is_none());
        assert!(denial(&fields("system_u:system_r:x.process:s0", "read")).is_some());

        let mut r = LogRecordings::default();
        r.start(key("web", "app"));
        for i in 0..=MAX_AVCS {
            r.add(&avc(
                "web",
                "app",
                "read",
                &format!("system_u:object_r:t{i}_t:s0"),
                "file",
            ));
        }
        let calls = r.take(&key("web", "app")).expect("recorded");
        assert_eq!(calls.avcs.len(), MAX_AVCS);
        assert_eq!(calls.avcs_lost, 1);
        let why = selinux_recording(&key("web", "app"), None, &calls).expect_err("refused");
        assert!(why.contains("1 AVC records") && why.contains("\"app\""), "{why}");
        // Nothing denied at all is a recording: the container policy was enough.
        let mut r = LogRecordings::default();
        r.start(key("web", "app"));
        let calls = r.take(&key("web", "app")).expect("recorded");
        assert!(
            selinux_recording(&key("web", "app"), None, &calls)
                .expect("recording")
                .avc_denials
                .is_empty()
        );
    }
}
