//! Any line through the enricher's path: parse it as an audit record, attribute it to a pod
//! whose names come from the input too, and print the enriched line. The line must stay one
//! line of `key=value` fields, the same keys in the same order whatever the names hold (no
//! process or pod name forges a field or a line). The container id extraction from cgroup text
//! and the filters' parser are fed the same bytes: they must not panic.
#![no_main]

use spo_enrich::attribution::{Attribution, ContainerId, ContainerInfo, container_id_from_cgroup};
use spo_enrich::audit::{AuditRecord, parse_record};
use spo_enrich::enriched::{Enriched, EnricherFilters};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = container_id_from_cgroup(&text);
    if let Ok(filters) = EnricherFilters::parse(&text) {
        let _ = filters.level(&serde_json::Map::new());
    }
    let (line, names) = text.split_once('\u{0}').unwrap_or((&text, "ns\u{0}pod\u{0}c"));
    let Ok(Some(record)) = parse_record(line) else { return };
    if matches!(record, AuditRecord::Avc(_)) {
        return;
    }
    let mut parts = names.splitn(3, '\u{0}');
    let info = ContainerInfo {
        namespace: parts.next().unwrap_or_default().to_owned(),
        pod: parts.next().unwrap_or_default().to_owned(),
        container: parts.next().unwrap_or_default().to_owned(),
        record_profile: None,
    };
    let who = Attribution::Pod {
        info,
        id: ContainerId::parse(&"0".repeat(64)).expect("64 hex digits"),
    };
    let e = Enriched::new(&record, "node", &who, None, &|_, _| Some("read"));
    let printed = e.log_line();
    assert!(!printed.contains('\n') && !printed.contains('\r'), "{printed:?}");
    // Read back: `audit`, then `key=<JSON value>` pairs, the keys as written.
    let mut rest = printed.strip_prefix("audit ").expect("audit prefix");
    let mut keys = Vec::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').expect("key=value");
        let mut values = serde_json::Deserializer::from_str(after).into_iter::<serde_json::Value>();
        values.next().expect("a value").expect("a JSON value");
        keys.push(key.to_owned());
        rest = after[values.byte_offset()..].strip_prefix(' ').unwrap_or(&after[values.byte_offset()..]);
    }
    let want: Vec<String> = e.log_fields().iter().map(|(k, _)| (*k).to_owned()).collect();
    assert_eq!(keys, want, "{printed:?}");
});
