//! One line's way through the enricher: parse, attribute, enrich, filter, batch.
//!
//! [`Pipeline`] is what a node's enricher runs for every line its source reads, and what the
//! throughput bench measures: the record is parsed ([`crate::audit`]), its process attributed
//! to a pod's container or the node ([`crate::attribution`]), joined into an [`Enriched`]
//! record, and handed to the two outputs as the SPOD switches them:
//!
//! - the log enricher: the record's log line, unless `logEnricherFilters` drop it;
//! - the JSON enricher: the record is batched per process ([`JsonBatcher`]), unless
//!   `jsonEnricherFilters` drop it; [`Pipeline::flush_json`] gives the interval's lines. A
//!   batch that reaches [`JSON_MAX_PROCESSES`] or [`JSON_MAX_BYTES`] is turned into lines
//!   early ([`Pipeline::take_json_ready`]): memory stays bounded and no record is dropped.
//!
//! A record of a container the pod index does not know yet is held back for up to
//! [`Pipeline::set_hold`] (the first records of a container are written before the kubelet
//! reports its id in the pod's status) and given out by [`Pipeline::release`] once its pod is
//! known or its time is up.
//!
//! Lines that are not audit records are passed over; records that are malformed (truncated,
//! interleaved) are counted, the last one kept for the caller to report. No IO happens here
//! apart from what the [`ProcessSource`] reads.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spo_model::seccomp::Arch;

use crate::attribution::{Attribution, Attributor, CacheBounds, ContainerId, PodIndex, ProcessInfo, ProcessSource};
use crate::audit::{AuditRecord, parse_record};
use crate::enriched::{Enriched, EnricherFilters, JsonBatcher, Level, stamp_ms};

/// Resolves a seccomp call's number to its name in an architecture.
pub type SyscallNames = fn(Arch, u32) -> Option<&'static str>;

/// The most processes one JSON interval holds before its lines are made early.
pub const JSON_MAX_PROCESSES: usize = 10_000;
/// About the most bytes one JSON interval holds before its lines are made early.
pub const JSON_MAX_BYTES: usize = 4 << 20;

/// The most records held back waiting for their container's pod (more are given out at once,
/// attributed to the container only).
pub const MAX_HELD: usize = 10_000;

/// The longest piece of a malformed line kept for the report.
const MALFORMED_EXCERPT: usize = 200;

/// What went through a pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Lines fed.
    pub lines: u64,
    /// Audit records read from them.
    pub records: u64,
    /// Lines that claimed to be records we read but were malformed.
    pub malformed: u64,
    /// The last malformed line's error and the start of the line.
    pub last_malformed: Option<String>,
    /// Records the log enricher's filters dropped.
    pub log_filtered: u64,
    /// Records the JSON enricher's filters dropped.
    pub json_filtered: u64,
    /// Records given out attributed to a container no pod on the node had, after their hold.
    pub unmatched_containers: u64,
}

/// A record waiting for its container's pod.
#[derive(Debug)]
struct Held {
    record: AuditRecord,
    process: Option<Arc<ProcessInfo>>,
    id: ContainerId,
    since: Instant,
}

/// A record that went through.
#[derive(Debug, Clone, PartialEq)]
pub struct Fed {
    /// The record with who made it.
    pub record: Enriched,
    /// The log enricher's line, when it is on and its filters keep the record (upstream
    /// counts the audit metrics for exactly these records).
    pub log_line: Option<String>,
}

/// The enricher's per-line path; see the module docs.
#[derive(Debug)]
pub struct Pipeline<S> {
    node: String,
    attributor: Attributor<S>,
    names: SyscallNames,
    log: Option<EnricherFilters>,
    json: Option<(EnricherFilters, JsonBatcher)>,
    /// JSON lines of batches that filled up before their interval ended.
    ready: Vec<String>,
    hold: Duration,
    held: VecDeque<Held>,
    stats: PipelineStats,
}

impl<S: ProcessSource> Pipeline<S> {
    /// A pipeline for records of `node`, looking processes up in `source` and remembering
    /// them within `bounds`; both outputs off.
    pub fn new(node: impl Into<String>, source: S, bounds: CacheBounds, names: SyscallNames) -> Pipeline<S> {
        Pipeline {
            node: node.into(),
            attributor: Attributor::new(source, bounds),
            names,
            log: None,
            json: None,
            ready: Vec::new(),
            hold: Duration::ZERO,
            held: VecDeque::new(),
            stats: PipelineStats::default(),
        }
    }

    /// Switches the log enricher on (with its filters) or off.
    pub fn set_log(&mut self, filters: Option<EnricherFilters>) {
        self.log = filters;
    }

    /// Switches the JSON enricher on (with its filters) or off. Turning it off drops the
    /// batch of the current interval; changing only the filters keeps it.
    pub fn set_json(&mut self, filters: Option<EnricherFilters>) {
        self.json = match (filters, self.json.take()) {
            (Some(f), Some((_, batch))) => Some((f, batch)),
            (Some(f), None) => Some((f, JsonBatcher::new(JSON_MAX_PROCESSES, JSON_MAX_BYTES))),
            (None, _) => {
                self.ready.clear();
                None
            }
        };
    }

    /// How long a record of a container no pod has (yet) is held back (zero: not at all).
    pub fn set_hold(&mut self, hold: Duration) {
        self.hold = hold;
    }

    /// Records held back now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Gives out the held records whose container's pod is known now, and those held for
    /// the whole hold by `now` (attributed to their container only), in the order they came.
    pub fn release(&mut self, pods: &PodIndex, now: Instant) -> Vec<Fed> {
        let mut out = Vec::new();
        while let Some(front) = self.held.front() {
            let known = pods.get(&front.id).is_some();
            if !known && now.saturating_duration_since(front.since) < self.hold {
                break;
            }
            let Some(h) = self.held.pop_front() else { break };
            let who = match pods.get(&h.id) {
                Some(info) => Attribution::Pod {
                    info: info.clone(),
                    id: h.id,
                },
                None => {
                    self.stats.unmatched_containers += 1;
                    Attribution::Container(h.id)
                }
            };
            out.push(self.emit(&h.record, &who, h.process));
        }
        out
    }

    /// Whether either output is on.
    pub fn is_on(&self) -> bool {
        self.log.is_some() || self.json.is_some()
    }

    /// Takes one line read from a source. Returns the record when the line held one.
    pub fn feed(&mut self, line: &str, pods: &PodIndex) -> Option<Fed> {
        self.stats.lines += 1;
        let record = match parse_record(line) {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                self.stats.malformed += 1;
                let mut end = line.len().min(MALFORMED_EXCERPT);
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                self.stats.last_malformed = Some(format!("{e}: {:?}", &line[..end]));
                return None;
            }
        };
        self.stats.records += 1;
        let (who, process) = match record.pid() {
            Some(pid) => self.attributor.attribute(pid, stamp_ms(&record.stamp()), pods),
            None => (Attribution::Unknown, None),
        };
        // Behind a held record of the same container, or a container no pod has yet: wait.
        if let Attribution::Container(id) = &who
            && !self.hold.is_zero()
            && self.held.len() < MAX_HELD
        {
            self.held.push_back(Held {
                record,
                process,
                id: id.clone(),
                since: Instant::now(),
            });
            return None;
        }
        if matches!(who, Attribution::Container(_)) {
            self.stats.unmatched_containers += 1;
        }
        Some(self.emit(&record, &who, process))
    }

    fn emit(&mut self, record: &AuditRecord, who: &Attribution, process: Option<Arc<ProcessInfo>>) -> Fed {
        let names = self.names;
        let enriched = Enriched::new(record, &self.node, who, process, &names);
        let log_line = match &self.log {
            Some(filters) if keeps(filters, &enriched) => Some(enriched.log_line()),
            Some(_) => {
                self.stats.log_filtered += 1;
                None
            }
            None => None,
        };
        if let Some((filters, batch)) = &mut self.json {
            if keeps(filters, &enriched) {
                if !batch.would_take(&enriched) {
                    self.ready.extend(batch.flush());
                }
                batch.add(enriched.clone());
            } else {
                self.stats.json_filtered += 1;
            }
        }
        Fed {
            record: enriched,
            log_line,
        }
    }

    /// The JSON enricher's lines of the interval that ended (none when it is off), after
    /// those made early.
    pub fn flush_json(&mut self) -> Vec<String> {
        let mut lines = std::mem::take(&mut self.ready);
        if let Some((_, b)) = &mut self.json {
            lines.extend(b.flush());
        }
        lines
    }

    /// The JSON lines made early because a batch filled up (write them now: they are held
    /// until then).
    pub fn take_json_ready(&mut self) -> Vec<String> {
        std::mem::take(&mut self.ready)
    }

    /// JSON records dropped because an interval held too many processes.
    pub fn json_dropped(&self) -> u64 {
        self.json.as_ref().map_or(0, |(_, b)| b.dropped)
    }

    /// What went through so far.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// The attributor (its cache and counters).
    pub fn attributor(&self) -> &Attributor<S> {
        &self.attributor
    }
}

fn keeps(filters: &EnricherFilters, record: &Enriched) -> bool {
    filters.is_empty() || filters.level(&record.field_map()) == Level::Metadata
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::attribution::{ContainerId, ContainerInfo, ProcessInfo};

    struct Procs(HashMap<u32, ProcessInfo>);

    impl ProcessSource for &Procs {
        fn lookup(&self, pid: u32) -> Option<ProcessInfo> {
            self.0.get(&pid).cloned()
        }
    }

    fn names(_: Arch, nr: u32) -> Option<&'static str> {
        (nr == 83).then_some("mkdir")
    }

    const ID: &str = "4e2a1c8b7f0d9e3a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a";

    fn line(pid: u32, serial: u32) -> String {
        format!(
            "type=SECCOMP msg=audit(1796457384.359:{serial}): auid=4294967295 uid=0 gid=0 ses=4294967295 \
             subj=unconfined pid={pid} comm=\"mkdir\" exe=\"/bin/mkdir\" sig=0 arch=c000003e syscall=83 \
             compat=0 ip=0x7f code=0x7ffc0000\u{1d}ARCH=x86_64 SYSCALL=mkdir"
        )
    }

    fn setup() -> (Procs, PodIndex) {
        let id = ContainerId::parse(ID).expect("id");
        let procs = Procs(
            [
                (
                    10,
                    ProcessInfo {
                        pid: 10,
                        started_ms: 0,
                        container: Some(id.clone()),
                        executable: None,
                        cmdline: Some("mkdir /x".into()),
                        uid: Some(0),
                        gid: Some(0),
                    },
                ),
                (
                    20,
                    ProcessInfo {
                        pid: 20,
                        started_ms: 0,
                        container: None,
                        executable: None,
                        cmdline: None,
                        uid: None,
                        gid: None,
                    },
                ),
            ]
            .into(),
        );
        let mut pods = PodIndex::new(10);
        let info = ContainerInfo {
            namespace: "team-a".into(),
            pod: "web".into(),
            container: "app".into(),
            record_profile: None,
        };
        pods.set_pod("team-a", "web", vec![(id, info)]);
        (procs, pods)
    }

    #[test]
    fn records_are_attributed_logged_filtered_and_batched() {
        let (procs, pods) = setup();
        let mut p = Pipeline::new("node-1", &procs, CacheBounds::processes(10), names);
        assert!(!p.is_on());
        // Off: records are still read and attributed (the log recorder reads them), nothing
        // is logged or batched.
        let fed = p.feed(&line(10, 1), &pods).expect("a record");
        assert_eq!((fed.record.pod.as_str(), fed.log_line), ("web", None));
        assert!(p.flush_json().is_empty());

        p.set_log(Some(EnricherFilters::default()));
        let fed = p.feed(&line(10, 2), &pods).expect("a record");
        let logged = fed.log_line.expect("logged");
        assert!(
            logged.contains("namespace=\"team-a\" pod=\"web\" container=\"app\"")
                && logged.contains("syscallName=\"mkdir\""),
            "{logged}"
        );
        // A filter dropping the node's records: the pod's is logged, the node's is not.
        let drop_node = r#"[{"priority":1,"level":"None","matchKeys":["namespace"],"matchValues":[""]}]"#;
        p.set_log(Some(EnricherFilters::parse(drop_node).expect("filters")));
        p.set_json(Some(EnricherFilters::default()));
        assert!(p.feed(&line(10, 3), &pods).expect("record").log_line.is_some());
        let node = p.feed(&line(20, 4), &pods).expect("record");
        assert_eq!((node.record.namespace.as_str(), node.log_line), ("", None));
        assert_eq!(p.stats().log_filtered, 1);
        // Both processes in the JSON interval, one line each.
        let json = p.flush_json();
        assert_eq!(json.len(), 2, "{json:?}");
        assert!(p.flush_json().is_empty(), "a flush empties the interval");
        // Changing the JSON filters keeps the batch; switching it off drops it.
        p.feed(&line(10, 5), &pods);
        p.set_json(Some(EnricherFilters::default()));
        assert_eq!(p.flush_json().len(), 1);
        p.feed(&line(10, 6), &pods);
        p.set_json(None);
        assert!(p.flush_json().is_empty());
    }

    #[test]
    fn records_of_a_container_not_yet_in_the_index_wait_for_its_pod() {
        let (procs, full) = setup();
        let empty = PodIndex::new(10);
        let mut p = Pipeline::new("n", &procs, CacheBounds::processes(10), names);
        p.set_log(Some(EnricherFilters::default()));
        p.set_hold(Duration::from_secs(5));
        // The container's first records, before the pod's status names it.
        assert!(p.feed(&line(10, 1), &empty).is_none());
        assert!(p.feed(&line(10, 2), &empty).is_none());
        // The node's own records are not held.
        assert!(p.feed(&line(20, 3), &empty).is_some());
        assert_eq!(p.held(), 2);
        assert!(p.release(&empty, Instant::now()).is_empty(), "still within the hold");
        // The pod's status arrives: both go out, in order, attributed to it.
        let out = p.release(&full, Instant::now());
        let pods: Vec<(&str, &str)> = out
            .iter()
            .map(|f| (f.record.pod.as_str(), f.record.timestamp.as_str()))
            .collect();
        assert_eq!(pods, [("web", "1796457384.359:1"), ("web", "1796457384.359:2")]);
        assert!(
            out.iter()
                .all(|f| f.log_line.as_deref().is_some_and(|l| l.contains("pod=\"web\"")))
        );
        // A container no pod ever names: given out after the hold, to the container only.
        assert!(p.feed(&line(10, 4), &empty).is_none());
        let late = p.release(&empty, Instant::now() + Duration::from_secs(6));
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].record.pod, "");
        assert_eq!(late[0].record.container_id.as_deref(), Some(ID));
        assert_eq!(p.stats().unmatched_containers, 1);
        // Without a hold nothing waits.
        p.set_hold(Duration::ZERO);
        assert!(p.feed(&line(10, 5), &empty).is_some());
    }

    #[test]
    fn a_full_json_batch_is_turned_into_lines_early_not_dropped() {
        let (_, pods) = setup();
        let many = Procs(
            (1..=(JSON_MAX_PROCESSES as u32 + 5))
                .map(|pid| {
                    (
                        pid,
                        ProcessInfo {
                            pid,
                            started_ms: 0,
                            container: None,
                            executable: None,
                            cmdline: None,
                            uid: None,
                            gid: None,
                        },
                    )
                })
                .collect(),
        );
        let mut p = Pipeline::new("n", &many, CacheBounds::processes(100_000), names);
        p.set_json(Some(EnricherFilters::default()));
        for pid in 1..=(JSON_MAX_PROCESSES as u32 + 5) {
            p.feed(&line(pid, pid), &pods);
        }
        // The batch filled (by bytes or count) at least once: lines were made early, and
        // with the rest of the interval every process has its line, none dropped.
        let early = p.take_json_ready();
        assert!(!early.is_empty() && early.len() <= JSON_MAX_PROCESSES);
        let rest = p.flush_json();
        assert_eq!(early.len() + rest.len(), JSON_MAX_PROCESSES + 5);
        assert_eq!(p.json_dropped(), 0);
    }

    #[test]
    fn other_lines_are_passed_over_and_malformed_ones_counted() {
        let (procs, pods) = setup();
        let mut p = Pipeline::new("n", &procs, CacheBounds::processes(10), names);
        assert!(p.feed("type=CWD msg=audit(1.000:1): cwd=\"/\"", &pods).is_none());
        let full = line(10, 1);
        let cut = &full[..full.find(" syscall=").expect("syscall")];
        assert!(p.feed(cut, &pods).is_none());
        let s = p.stats();
        assert_eq!((s.lines, s.records, s.malformed), (2, 0, 1));
        let why = s.last_malformed.as_deref().expect("kept");
        assert!(why.contains("missing field syscall"), "{why}");
        // A malformed line with multi-byte text is cut on a character boundary.
        let wide = format!("type=SECCOMP msg=audit(1.000:1): pid=1 {}", "é".repeat(300));
        p.feed(&wide, &pods);
        assert_eq!(p.stats().malformed, 2);
    }
}
