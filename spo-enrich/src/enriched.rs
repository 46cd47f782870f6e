//! Enriched records: what the log enricher prints and the JSON enricher writes.
//!
//! - [`Enriched::log_fields`]: one line per record with upstream's field names in upstream's
//!   order (`timestamp type node namespace pod container executable pid syscallID syscallName`
//!   for seccomp; `… perm scontext tcontext tclass` for SELinux; `… executable pid apparmor
//!   operation profile name` for AppArmor), as `key="value"` pairs with
//!   strings quoted and escaped (a newline, quote or escape sequence in a process name cannot
//!   forge a line or a field).
//! - [`EnricherFilters`]: SPOD `logEnricherFilters` / `jsonEnricherFilters`, a JSON list of
//!   `{priority, level: Metadata|None, matchKeys, matchValues?}`; the lowest priority number
//!   that matches decides, and a record no filter matches is logged.
//! - [`JsonBatcher`]: the JSON enricher's lines, one per process and interval with the
//!   syscalls it made, fields as upstream (`version: "spo/v1_alpha"`, `auditID`, `executable`,
//!   `cmdLine`, `uid`, `gid`, `resource` {pod, namespace, container} or {name} of the node,
//!   `pid`, `node`, `syscalls`, `timestamp`), bounded in processes per interval.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::attribution::{Attribution, ProcessInfo};
use crate::audit::{AuditRecord, AuditStamp};

/// One record with who made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Enriched {
    /// `SECONDS.MILLIS:SERIAL` of the record (upstream's `timestamp` field).
    pub timestamp: String,
    /// `seccomp` or `selinux`.
    pub kind: &'static str,
    /// This node.
    pub node: String,
    /// The pod's namespace, pod and container, empty when not a pod's.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// The container id, when the process runs in a container.
    pub container_id: Option<String>,
    /// The process id.
    pub pid: Option<u32>,
    /// The executable (from the record, else from `/proc`).
    pub executable: String,
    /// Seccomp: the call's number and name (empty when the table does not know it).
    pub syscall: Option<(u32, String)>,
    /// Seccomp: the call's architecture.
    pub arch: Option<spo_model::seccomp::Arch>,
    /// SELinux: permissions, contexts and class.
    pub avc: Option<AvcFields>,
    /// AppArmor: the decision, operation, profile and object.
    pub apparmor: Option<AppArmorFields>,
    /// The process's command line, uid and gid, when it was looked up.
    pub process: Option<Arc<ProcessInfo>>,
    /// Milliseconds since the epoch of the record.
    pub time_ms: u64,
}

/// An SELinux record's fields as upstream prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcFields {
    /// The permissions, space-separated.
    pub perm: String,
    /// Source context.
    pub scontext: String,
    /// Target context.
    pub tcontext: String,
    /// Target class.
    pub tclass: String,
}

/// An AppArmor record's fields as upstream prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppArmorFields {
    /// `DENIED`, `ALLOWED`, `AUDIT`...
    pub apparmor: String,
    /// The operation (`open`, `exec`, `capable`...).
    pub operation: String,
    /// The profile that decided.
    pub profile: String,
    /// The object (path, capability...).
    pub name: String,
}

/// Milliseconds since the epoch of an audit stamp.
pub fn stamp_ms(stamp: &AuditStamp) -> u64 {
    // Saturating: a parsed stamp always fits, but the fields are public.
    stamp
        .seconds
        .saturating_mul(1000)
        .saturating_add(u64::from(stamp.millis))
}

impl Enriched {
    /// Joins a record with who made it. `syscall_name` resolves a seccomp call's number.
    pub fn new(
        record: &AuditRecord,
        node: &str,
        who: &Attribution,
        process: Option<Arc<ProcessInfo>>,
        syscall_name: &dyn Fn(spo_model::seccomp::Arch, u32) -> Option<&'static str>,
    ) -> Enriched {
        let (stamp, pid) = (record.stamp(), record.pid());
        let exe = match record {
            AuditRecord::Seccomp(r) => r.exe.clone(),
            AuditRecord::Avc(_) | AuditRecord::AppArmor(_) => None,
        };
        let (namespace, pod, container, container_id) = match who {
            Attribution::Pod { info, id } => (
                info.namespace.clone(),
                info.pod.clone(),
                info.container.clone(),
                Some(id.to_string()),
            ),
            Attribution::Container(id) => (String::new(), String::new(), String::new(), Some(id.to_string())),
            Attribution::Node | Attribution::Unknown => Default::default(),
        };
        let comm = match record {
            AuditRecord::AppArmor(r) => r.comm.clone(),
            AuditRecord::Seccomp(_) | AuditRecord::Avc(_) => None,
        };
        let executable = exe
            .or_else(|| process.as_ref().and_then(|p| p.executable.clone()))
            .or(comm)
            .unwrap_or_default();
        let (kind, syscall, avc, apparmor) = match record {
            AuditRecord::Seccomp(r) => (
                "seccomp",
                Some((
                    r.syscall,
                    syscall_name(r.arch, r.syscall).unwrap_or_default().to_owned(),
                )),
                None,
                None,
            ),
            AuditRecord::Avc(r) => (
                "selinux",
                None,
                Some(AvcFields {
                    perm: r.denial.permissions.iter().cloned().collect::<Vec<_>>().join(" "),
                    scontext: r.scontext.clone(),
                    tcontext: r.tcontext.clone(),
                    tclass: r.denial.class.clone(),
                }),
                None,
            ),
            AuditRecord::AppArmor(r) => (
                "apparmor",
                None,
                None,
                Some(AppArmorFields {
                    apparmor: r.apparmor.clone(),
                    operation: r.operation.clone(),
                    profile: r.profile.clone().unwrap_or_default(),
                    name: r.name.clone().unwrap_or_default(),
                }),
            ),
        };
        Enriched {
            timestamp: format!("{}.{:03}:{}", stamp.seconds, stamp.millis, stamp.serial),
            kind,
            node: node.to_owned(),
            namespace,
            pod,
            container,
            container_id,
            pid,
            executable,
            syscall,
            arch: match record {
                AuditRecord::Seccomp(r) => Some(r.arch),
                AuditRecord::Avc(_) | AuditRecord::AppArmor(_) => None,
            },
            avc,
            apparmor,
            process,
            time_ms: stamp_ms(&stamp),
        }
    }

    /// The fields upstream's log enricher prints, in its order.
    pub fn log_fields(&self) -> Vec<(&'static str, Value)> {
        let mut m: Vec<(&'static str, Value)> = vec![
            ("timestamp", self.timestamp.clone().into()),
            ("type", self.kind.into()),
            ("node", self.node.clone().into()),
            ("namespace", self.namespace.clone().into()),
            ("pod", self.pod.clone().into()),
            ("container", self.container.clone().into()),
        ];
        if let Some(avc) = &self.avc {
            m.push(("perm", avc.perm.clone().into()));
            m.push(("scontext", avc.scontext.clone().into()));
            m.push(("tcontext", avc.tcontext.clone().into()));
            m.push(("tclass", avc.tclass.clone().into()));
        } else {
            m.push(("executable", self.executable.clone().into()));
            m.push(("pid", self.pid.map_or(Value::Null, Value::from)));
            if let Some(a) = &self.apparmor {
                m.push(("apparmor", a.apparmor.clone().into()));
                m.push(("operation", a.operation.clone().into()));
                m.push(("profile", a.profile.clone().into()));
                m.push(("name", a.name.clone().into()));
            }
            if let Some((id, name)) = &self.syscall {
                m.push(("syscallID", (*id).into()));
                m.push(("syscallName", name.clone().into()));
            }
        }
        m
    }

    /// The fields as an object, for [`EnricherFilters::level`].
    pub fn field_map(&self) -> Map<String, Value> {
        self.log_fields().into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The log line: `audit` then `key=value` pairs in upstream's order, strings quoted.
    pub fn log_line(&self) -> String {
        let mut line = String::from("audit");
        for (key, value) in self.log_fields() {
            // serde_json escapes quotes, backslashes and every control character.
            let _ = write!(line, " {key}={value}");
        }
        line
    }
}

/// What a filter decides for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum Level {
    /// Log it.
    Metadata,
    /// Drop it.
    None,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Filter {
    priority: i64,
    level: Level,
    match_keys: Vec<String>,
    #[serde(default)]
    match_values: Option<Vec<String>>,
}

/// SPOD `logEnricherFilters` / `jsonEnricherFilters`.
#[derive(Debug, Clone, Default)]
pub struct EnricherFilters {
    filters: Vec<Filter>,
}

/// Why filters could not be read.
#[derive(Debug, thiserror::Error)]
#[error("enricher filters: {0}")]
pub struct FilterError(String);

impl EnricherFilters {
    /// Reads the JSON list (empty text: no filters).
    pub fn parse(text: &str) -> Result<EnricherFilters, FilterError> {
        if text.trim().is_empty() {
            return Ok(EnricherFilters::default());
        }
        let mut filters: Vec<Filter> = serde_json::from_str(text).map_err(|e| FilterError(e.to_string()))?;
        if let Some(i) = filters.iter().position(|f| f.match_keys.is_empty()) {
            return Err(FilterError(format!("[{i}].matchKeys: at least one key is required")));
        }
        filters.sort_by_key(|f| f.priority);
        Ok(EnricherFilters { filters })
    }

    /// Whether no filter is set (every record is logged).
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The level of a record with these fields: the first filter (lowest priority number)
    /// with a key present (a `a/b` key looks into object `a`) whose value is one of its
    /// values (any value when it lists none; numbers compare as numbers).
    pub fn level(&self, fields: &Map<String, Value>) -> Level {
        for f in &self.filters {
            if f.match_keys
                .iter()
                .any(|k| matches_key(fields, k, f.match_values.as_deref()))
            {
                return f.level;
            }
        }
        Level::Metadata
    }
}

fn matches_key(fields: &Map<String, Value>, key: &str, values: Option<&[String]>) -> bool {
    if let Some((head, rest)) = key.split_once('/') {
        return matches!(fields.get(head), Some(Value::Object(inner)) if matches_key(inner, rest, values));
    }
    let Some(value) = fields.get(key) else { return false };
    let Some(values) = values.filter(|v| !v.is_empty()) else {
        return true;
    };
    values.iter().any(|want| match value {
        Value::String(s) => s == want,
        Value::Number(n) => want.parse::<i64>().ok().is_some_and(|w| n.as_i64() == Some(w)),
        _ => false,
    })
}

/// One process's calls within an interval.
#[derive(Debug)]
struct Bucket {
    first: Enriched,
    syscalls: BTreeSet<String>,
}

/// Groups seccomp records per process over an interval and writes one JSON line each,
/// holding at most `max_processes` processes and about `max_bytes` bytes: a caller that must
/// not drop records flushes early when [`JsonBatcher::would_take`] says no.
#[derive(Debug)]
pub struct JsonBatcher {
    max_processes: usize,
    max_bytes: usize,
    bytes: usize,
    buckets: BTreeMap<(String, u32), Bucket>,
    /// Records dropped because the interval was full.
    pub dropped: u64,
}

impl Enriched {
    /// About the bytes this record holds (its strings and the process's).
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Enriched>()
            + self.timestamp.len()
            + self.node.len()
            + self.namespace.len()
            + self.pod.len()
            + self.container.len()
            + self.container_id.as_ref().map_or(0, String::len)
            + self.executable.len()
            + self.syscall.as_ref().map_or(0, |(_, n)| n.len())
            + self.process.as_ref().map_or(0, |p| p.footprint())
    }
}

impl JsonBatcher {
    /// A batcher holding at most `max_processes` processes and about `max_bytes` per interval.
    pub fn new(max_processes: usize, max_bytes: usize) -> JsonBatcher {
        JsonBatcher {
            max_processes,
            max_bytes,
            bytes: 0,
            buckets: BTreeMap::new(),
            dropped: 0,
        }
    }

    fn key(record: &Enriched) -> Option<(String, u32)> {
        Some((record.container_id.clone().unwrap_or_default(), record.pid?))
    }

    /// Whether `record` fits: its process is batched already, or there is room for one more.
    pub fn would_take(&self, record: &Enriched) -> bool {
        match Self::key(record) {
            Some(key) if self.buckets.contains_key(&key) => true,
            _ => self.buckets.len() < self.max_processes && self.bytes + record.footprint() <= self.max_bytes,
        }
    }

    /// Whether nothing is batched.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Adds a seccomp record (others are not batched: upstream's JSON enricher writes calls).
    pub fn add(&mut self, record: Enriched) {
        let (Some(key), Some((_, name))) = (Self::key(&record), record.syscall.clone()) else {
            return;
        };
        if !self.buckets.contains_key(&key) {
            if !self.would_take(&record) {
                self.dropped += 1;
                return;
            }
            self.bytes += record.footprint();
        }
        let bucket = self.buckets.entry(key).or_insert_with(|| Bucket {
            first: record,
            syscalls: BTreeSet::new(),
        });
        if !name.is_empty() && bucket.syscalls.insert(name.clone()) {
            self.bytes += name.len() + 24;
        }
    }

    /// The lines of the interval that ended, one JSON object per process; empties the batch.
    pub fn flush(&mut self) -> Vec<String> {
        self.bytes = 0;
        std::mem::take(&mut self.buckets)
            .into_values()
            .map(|b| json_line(&b.first, &b.syscalls).to_string())
            .collect()
    }
}

fn json_line(e: &Enriched, syscalls: &BTreeSet<String>) -> Value {
    let resource = if e.pod.is_empty() {
        json!({ "name": e.node })
    } else {
        json!({ "pod": e.pod, "namespace": e.namespace, "container": e.container })
    };
    let process = e.process.as_ref();
    let mut line = json!({
        "version": "spo/v1_alpha",
        // Unique per node and boot: the kernel's serial of the process's first record.
        "auditID": format!("{}:{}", e.node, e.timestamp),
        "executable": e.executable,
        "cmdLine": process.and_then(|p| p.cmdline.clone()).unwrap_or_default(),
        "uid": process.and_then(|p| p.uid),
        "gid": process.and_then(|p| p.gid),
        "resource": resource,
        "pid": e.pid,
        "node": e.node,
        "syscalls": syscalls.iter().collect::<Vec<_>>(),
        "timestamp": iso_time(e.time_ms),
    });
    if let Some(id) = &e.container_id
        && let Some(obj) = line.as_object_mut()
    {
        obj.insert("containerID".into(), id.clone().into());
    }
    line
}

/// `2026-12-05T08:00:00.123Z` for milliseconds since the epoch (UTC, proleptic Gregorian).
pub fn iso_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::{ContainerId, ContainerInfo};
    use crate::audit::parse_record;

    const LINE: &str = "type=SECCOMP msg=audit(1796457384.359:2): auid=0 uid=0 gid=0 ses=2 pid=7236 comm=\"busybox\" exe=\"/usr/bin/busybox\" sig=0 arch=c000003e syscall=83 compat=0 ip=0x47b567 code=0x50000";

    fn names(_: spo_model::seccomp::Arch, nr: u32) -> Option<&'static str> {
        (nr == 83).then_some("mkdir")
    }

    fn pod() -> Attribution {
        Attribution::Pod {
            info: ContainerInfo {
                namespace: "team-a".into(),
                pod: "web-0".into(),
                container: "nginx".into(),
                record_profile: None,
            },
            id: ContainerId::parse(&"ab".repeat(32)).expect("id"),
        }
    }

    fn record(line: &str) -> AuditRecord {
        parse_record(line).expect("parse").expect("a record")
    }

    #[test]
    fn log_line_has_upstreams_fields_in_order() {
        let e = Enriched::new(&record(LINE), "node-1", &pod(), None, &names);
        assert_eq!(
            e.log_line(),
            "audit timestamp=\"1796457384.359:2\" type=\"seccomp\" node=\"node-1\" namespace=\"team-a\" \
             pod=\"web-0\" container=\"nginx\" executable=\"/usr/bin/busybox\" pid=7236 syscallID=83 \
             syscallName=\"mkdir\""
        );
        // A process outside any container: the node, empty pod fields.
        let e = Enriched::new(&record(LINE), "node-1", &Attribution::Node, None, &names);
        assert!(
            e.log_line().contains("namespace=\"\" pod=\"\" container=\"\""),
            "{}",
            e.log_line()
        );
    }

    #[test]
    fn apparmor_log_line_has_upstreams_fields_in_order() {
        let line = "type=AVC msg=audit(1796457384.359:3): apparmor=\"DENIED\" operation=\"open\" class=\"file\" \
                    profile=\"spo-web\" name=\"/etc/shadow\" pid=7236 comm=\"cat\" requested_mask=\"r\" \
                    denied_mask=\"r\" fsuid=0 ouid=0";
        let e = Enriched::new(&record(line), "node-1", &pod(), None, &names);
        assert_eq!(
            e.log_line(),
            "audit timestamp=\"1796457384.359:3\" type=\"apparmor\" node=\"node-1\" namespace=\"team-a\" \
             pod=\"web-0\" container=\"nginx\" executable=\"cat\" pid=7236 apparmor=\"DENIED\" \
             operation=\"open\" profile=\"spo-web\" name=\"/etc/shadow\""
        );
        // The JSON enricher writes calls only.
        let mut batch = JsonBatcher::new(10, 1 << 20);
        batch.add(e);
        assert!(batch.flush().is_empty());
    }

    #[test]
    fn hostile_executables_cannot_forge_lines_or_fields() {
        // The kernel hex-encodes such names; auditd decodes them in its enriched part, and a
        // process can name itself anything: the line must stay one line with the same fields.
        let mut e = Enriched::new(&record(LINE), "n", &pod(), None, &names);
        e.executable = "/x\" pod=\"forged\nI1205 audit pod=\"evil\u{1b}[2J".into();
        let line = e.log_line();
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
        // Read back as `key=<JSON value>` pairs: the same keys in the same order, the same
        // executable.
        let fields = read_back(&line);
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        let want: Vec<&str> = e.log_fields().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, want, "{line}");
        assert_eq!(fields[6].1, Value::String(e.executable.clone()));
    }

    /// Splits a log line into its fields, each value read as JSON.
    fn read_back(line: &str) -> Vec<(String, Value)> {
        let mut rest = line.strip_prefix("audit ").expect("audit prefix");
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=').expect("key=");
            let mut values = serde_json::Deserializer::from_str(after).into_iter::<Value>();
            let value = values.next().expect("a value").expect("JSON value");
            out.push((key.to_owned(), value));
            rest = after[values.byte_offset()..].trim_start_matches(' ');
        }
        out
    }

    #[test]
    fn filters_pick_the_lowest_priority_that_matches() {
        let filters = EnricherFilters::parse(
            r#"[{"priority":100,"level":"None","matchKeys":["namespace"],"matchValues":["team-a"]},
                {"priority":10,"level":"Metadata","matchKeys":["syscallID"],"matchValues":["83"]},
                {"priority":50,"level":"None","matchKeys":["syscallName"]}]"#,
        )
        .expect("filters");
        let e = Enriched::new(&record(LINE), "n", &pod(), None, &names);
        // syscallID 83 (priority 10) wins over the namespace (100) and the name (50).
        assert_eq!(filters.level(&e.field_map()), Level::Metadata);
        let other = LINE.replace("syscall=83", "syscall=84");
        let e = Enriched::new(&record(&other), "n", &pod(), None, &names);
        assert_eq!(filters.level(&e.field_map()), Level::None);
        assert_eq!(EnricherFilters::default().level(&e.field_map()), Level::Metadata);
        // Nested keys look into objects.
        let nested =
            EnricherFilters::parse(r#"[{"priority":1,"level":"None","matchKeys":["resource/pod"]}]"#).expect("filters");
        let mut m = Map::new();
        m.insert("resource".into(), json!({"pod": "x"}));
        assert_eq!(nested.level(&m), Level::None);
        for (bad, what) in [
            (
                "[{\"priority\":1,\"level\":\"Loud\",\"matchKeys\":[\"a\"]}]",
                "unknown variant",
            ),
            (
                "[{\"priority\":1,\"level\":\"None\",\"matchKeys\":[]}]",
                "[0].matchKeys",
            ),
            (
                "[{\"priority\":1,\"level\":\"None\",\"matchKey\":[\"a\"]}]",
                "unknown field",
            ),
            ("{", "expected a sequence"),
        ] {
            let e = EnricherFilters::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn json_lines_group_a_process_calls_per_interval() {
        let mut batch = JsonBatcher::new(2, 1 << 20);
        for nr in [83, 83, 84] {
            let line = LINE.replace("syscall=83", &format!("syscall={nr}"));
            let mut e = Enriched::new(&record(&line), "node-1", &pod(), None, &names);
            if nr == 84 {
                e.syscall = Some((84, "rmdir".into()));
            }
            batch.add(e);
        }
        for pid in [1, 2] {
            let line = LINE.replace("pid=7236", &format!("pid={pid}"));
            batch.add(Enriched::new(
                &record(&line),
                "node-1",
                &Attribution::Node,
                None,
                &names,
            ));
        }
        assert_eq!(batch.dropped, 1, "two processes per interval at most");
        let lines = batch.flush();
        assert_eq!(lines.len(), 2);
        let v: Value = serde_json::from_str(&lines[1]).expect("json");
        assert_eq!(v["version"], "spo/v1_alpha");
        assert_eq!(v["syscalls"], json!(["mkdir", "rmdir"]));
        assert_eq!(
            v["resource"],
            json!({"pod": "web-0", "namespace": "team-a", "container": "nginx"})
        );
        assert_eq!(v["pid"], 7236);
        assert_eq!(v["timestamp"], "2026-12-05T07:56:24.359Z");
        let v: Value = serde_json::from_str(&lines[0]).expect("json");
        assert_eq!(v["resource"], json!({"name": "node-1"}));
        assert!(batch.flush().is_empty());
    }

    #[test]
    fn iso_times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_time(1_796_457_384_359), "2026-12-05T07:56:24.359Z");
    }
}
