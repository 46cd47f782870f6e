//! Our audit record parser beside `linux-audit-parser` (the parser of LAUREL, the Rust auditd
//! enrichment plugin) on one corpus: auditd, kmsg and dmesg forms of SECCOMP, AVC and AppArmor
//! records, hostile and truncated lines. Three things, in one run:
//!
//! 1. what each reads from every line (the fields the enricher needs: pid, syscall, arch,
//!    action; SELinux types and class; AppArmor operation, profile and name), as a table;
//! 2. allocations per line (a counting allocator around the system one);
//! 3. time per line on the lines both read (criterion), each parser producing the same fields.
//!
//! `cargo bench -p spo-enrich --bench parsers`; the comparison and the decision are in
//! `docs/benchmarks.md` and `docs/decisions.md`. linux-audit-parser is a dev-dependency of
//! this bench only (LGPL-3.0-or-later; nothing we ship links it).

// A global allocator is an unsafe trait; this one only counts and passes every call on.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::Criterion;
use linux_audit_parser::{Message, Number, Value};
use spo_enrich::audit::{AuditRecord, parse_record};

/// Counts allocations, to compare what each parser allocates per line.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed through to the system allocator unchanged; the counter is a
// relaxed atomic, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (label, line). auditd's lines carry its enrichment after 0x1d when `log_format = ENRICHED`.
const CORPUS: &[(&str, &str)] = &[
    (
        "auditd SECCOMP x86-64",
        "type=SECCOMP msg=audit(1795729387.496:1625): auid=4294967295 uid=0 gid=0 ses=4294967295 subj=unconfined pid=32724 comm=\"mkdir\" exe=\"/usr/bin/mkdir\" sig=0 arch=c000003e syscall=83 compat=0 ip=0x7f19a1ef7f37 code=0x50000\x1dAUID=\"unset\" UID=\"root\" GID=\"root\" ARCH=x86_64 SYSCALL=mkdir",
    ),
    (
        "auditd SECCOMP ia32, hex comm",
        "type=SECCOMP msg=audit(1795729387.496:1626): auid=4294967295 uid=0 gid=0 ses=4294967295 subj=unconfined pid=32724 comm=6D7920636D64 exe=\"/usr/bin/mkdir\" sig=0 arch=40000003 syscall=39 compat=1 ip=0xf7f0 code=0x7ffc0000\x1dAUID=\"unset\" UID=\"root\" ARCH=i386 SYSCALL=mkdir",
    ),
    (
        "kmsg SECCOMP",
        "5,1625,10772590099,-;audit: type=1326 audit(1795729387.496:1625): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=32724 comm=\"mkdir\" exe=\"/usr/bin/mkdir\" sig=0 arch=c000003e syscall=83 compat=0 ip=0x7f19a1ef7f37 code=0x50000",
    ),
    (
        "dmesg SECCOMP",
        "[ 9208.019769] audit: type=1326 audit(1795727822.924:1623): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=9563 comm=\"uname\" exe=\"/usr/bin/uname\" sig=31 arch=c000003e syscall=63 compat=0 ip=0x7f14d9814b07 code=0x80000000",
    ),
    (
        "auditd AVC",
        "type=AVC msg=audit(1700000000.123:77): avc:  denied  { read write } for  pid=1234 comm=\"nginx\" name=\"cache\" dev=\"sda1\" ino=42 scontext=system_u:system_r:container_t:s0:c1,c2 tcontext=system_u:object_r:var_t:s0 tclass=dir permissive=0",
    ),
    (
        "kmsg AVC",
        "3,1700,1000,-;audit: type=1400 audit(1700000000.123:77): avc:  denied  { read } for  pid=1234 comm=\"nginx\" name=\"shadow\" dev=\"sda1\" ino=42 scontext=system_u:system_r:container_t:s0 tcontext=system_u:object_r:shadow_t:s0 tclass=file permissive=0",
    ),
    (
        "auditd AppArmor",
        "type=AVC msg=audit(1725000000.123:456): apparmor=\"DENIED\" operation=\"open\" class=\"file\" profile=\"spo-nginx\" name=\"/etc/shadow\" pid=1234 comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0",
    ),
    (
        "kmsg AppArmor",
        "5,2000,1000,-;audit: type=1400 audit(1725000000.123:456): apparmor=\"DENIED\" operation=\"open\" class=\"file\" profile=\"spo-nginx\" name=\"/etc/shadow\" pid=1234 comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0",
    ),
    (
        "forged: repeated keys (the kernel hex-encodes a comm with quotes or spaces)",
        "type=SECCOMP msg=audit(1795729387.496:1627): pid=1 comm=\"a\" syscall=59 pid=2\" exe=\"/x\" sig=0 arch=c000003e syscall=83 compat=0 ip=0x1 code=0x50000",
    ),
    (
        "truncated in arch",
        "type=SECCOMP msg=audit(1795729387.496:1628): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=32724 comm=\"mkdir\" exe=\"/usr/bin/mkdir\" sig=0 arch=c00",
    ),
    ("truncated in the header", "type=SECCOMP msg=audit(1795729387.4"),
    (
        "not a record",
        "type=SYSCALL msg=audit(1795729387.496:1629): arch=c000003e syscall=83 success=no exit=-1 pid=1",
    ),
];

/// What the enricher needs from a line, as text, from our parser.
fn ours(line: &str) -> String {
    match parse_record(line) {
        Ok(Some(AuditRecord::Seccomp(r))) => {
            format!(
                "seccomp pid={} syscall={} arch={} action={:?}",
                r.pid, r.syscall, r.arch, r.action
            )
        }
        Ok(Some(AuditRecord::Avc(r))) => format!(
            "avc pid={:?} {}->{} class={}",
            r.pid, r.denial.source_type, r.denial.target_type, r.denial.class
        ),
        Ok(Some(AuditRecord::AppArmor(r))) => format!(
            "apparmor pid={:?} op={} profile={:?} name={:?}",
            r.pid, r.operation, r.profile, r.name
        ),
        Ok(None) => "not a record we read".to_owned(),
        Err(e) => format!("refused: {e}"),
    }
}

fn number(v: Option<&Value<'_>>) -> Option<u64> {
    match v? {
        Value::Number(Number::Dec(n)) => u64::try_from(*n).ok(),
        Value::Number(Number::Hex(n)) | Value::Number(Number::Oct(n)) => Some(*n),
        Value::Str(s, _) => {
            let t = std::str::from_utf8(s).ok()?;
            match t.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => t.parse().ok(),
            }
        }
        _ => None,
    }
}

fn text(v: Option<&Value<'_>>) -> Option<String> {
    match v? {
        Value::Str(s, _) => Some(String::from_utf8_lossy(s).into_owned()),
        Value::Owned(s) => Some(String::from_utf8_lossy(s).into_owned()),
        Value::Number(n) => Some(format!("{n:?}")),
        other => Some(format!("{other:?}")),
    }
}

/// The same fields from linux-audit-parser's message.
fn theirs_fields(m: &Message<'_>) -> String {
    let b = &m.body;
    let ty = m.ty.to_string();
    if b.get("apparmor").is_some() {
        return format!(
            "apparmor pid={:?} op={:?} profile={:?} name={:?}",
            number(b.get("pid")),
            text(b.get("operation")),
            text(b.get("profile")),
            text(b.get("name"))
        );
    }
    match ty.as_str() {
        "SECCOMP" => format!(
            "seccomp pid={:?} syscall={:?} arch={:?} code={:?}",
            number(b.get("pid")),
            number(b.get("syscall")),
            number(b.get("arch")),
            number(b.get("code"))
        ),
        "AVC" => format!(
            "avc pid={:?} scontext={:?} tcontext={:?} class={:?}",
            number(b.get("pid")),
            text(b.get("scontext")),
            text(b.get("tcontext")),
            text(b.get("tclass"))
        ),
        other => format!("message type {other}"),
    }
}

/// A line as auditd's log holds it, with its newline (linux-audit-parser wants it).
fn with_newline(line: &str) -> Vec<u8> {
    let mut v = line.as_bytes().to_vec();
    v.push(b'\n');
    v
}

fn theirs(line: &str) -> String {
    match linux_audit_parser::parse(&with_newline(line), true) {
        Ok(m) => theirs_fields(&m),
        Err(e) => format!("refused: {e}"),
    }
}

fn allocations(f: impl Fn()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

fn main() {
    println!("| line | spo-enrich | linux-audit-parser 0.2.8 | allocations (ours / theirs) |");
    println!("| --- | --- | --- | ---: |");
    let mut both = Vec::new();
    for (label, line) in CORPUS {
        let (a, b) = (ours(line), theirs(line));
        let alloc_ours = allocations(|| {
            black_box(parse_record(black_box(line)).ok());
        });
        let input = with_newline(line);
        let alloc_theirs = allocations(|| {
            black_box(linux_audit_parser::parse(black_box(&input), true).ok());
        });
        println!(
            "| {label} | {} | {} | {alloc_ours} / {alloc_theirs} |",
            a.replace('|', "\\|"),
            b.replace('|', "\\|")
        );
        if line.starts_with("type=") && !a.starts_with("refused") && !a.starts_with("not") && !b.starts_with("refused")
        {
            both.push((*line, with_newline(line)));
        }
    }
    println!();
    println!("timed: the {} auditd-form records both read", both.len());
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    c.bench_function(
        "parse the records both read/spo-enrich (record with its fields)",
        |bench| {
            bench.iter(|| {
                for (line, _) in &both {
                    black_box(parse_record(black_box(line)).ok());
                }
            })
        },
    );
    c.bench_function(
        "parse the records both read/linux-audit-parser (message, then the same fields)",
        |bench| {
            bench.iter(|| {
                for (_, raw) in &both {
                    if let Ok(m) = linux_audit_parser::parse(black_box(raw), true) {
                        let b = &m.body;
                        black_box((
                            number(b.get("pid")),
                            number(b.get("syscall")),
                            b.get("tclass").is_some(),
                        ));
                    }
                }
            })
        },
    );
    c.final_summary();
}
