//! Parsers for the kernel's audit records, in every form they reach us:
//!
//! - `/dev/kmsg` records: `5,1625,10772590099,-;audit: type=1326 audit(1795729387.496:1625): pid=...`
//! - `dmesg` or syslog lines: `[10772.590099] audit: type=1326 audit(...): ...`
//! - auditd's log: `type=SECCOMP msg=audit(1795729387.496:1625): pid=... code=0x50000` followed by
//!   a 0x1d byte and the fields auditd added (`ARCH=x86_64 SYSCALL=mkdir ...`), which we ignore.
//!
//! [`parse_record`] decides what a line is: `Ok(None)` for a line that is not an audit record
//! we read (most of a kernel log), a [`ParseError`] naming the field for one that claims to be
//! but is truncated or malformed, and the parsed [`AuditRecord`] otherwise. Pure functions, no
//! IO: the callers own the sources.

use std::collections::BTreeSet;

use spo_model::observed::AvcDenial;
use spo_model::seccomp::{Arch, SeccompAction};

/// One audit record we understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditRecord {
    /// A seccomp filter's decision (`type=1326`, `SECCOMP`).
    Seccomp(SeccompRecord),
    /// An SELinux access decision (`type=1400`, `AVC`).
    Avc(AvcRecord),
    /// An AppArmor decision (`type=1400` with `apparmor=`, which auditd also names `AVC`).
    AppArmor(AppArmorRecord),
}

impl AuditRecord {
    /// When the kernel wrote the record.
    pub fn stamp(&self) -> AuditStamp {
        match self {
            AuditRecord::Seccomp(r) => r.stamp,
            AuditRecord::Avc(r) => r.stamp,
            AuditRecord::AppArmor(r) => r.stamp,
        }
    }

    /// The process the record names, when it names one.
    pub fn pid(&self) -> Option<u32> {
        match self {
            AuditRecord::Seccomp(r) => Some(r.pid),
            AuditRecord::Avc(r) => r.pid,
            AuditRecord::AppArmor(r) => r.pid,
        }
    }
}

/// An AppArmor decision the kernel logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppArmorRecord {
    /// When.
    pub stamp: AuditStamp,
    /// The decision: `DENIED`, `ALLOWED` (complain mode), `AUDIT`, `STATUS`, `HINT`, `ERROR`...
    pub apparmor: String,
    /// What was done: `open`, `exec`, `capable`, `profile_load`...
    pub operation: String,
    /// The profile that decided (absent for some status records).
    pub profile: Option<String>,
    /// The object (a path, a capability name...), when the record names one.
    pub name: Option<String>,
    /// The process id, when present.
    pub pid: Option<u32>,
    /// The task's command name, when present.
    pub comm: Option<String>,
    /// The access asked for and the part refused (`r`, `wc`...), when the record has them.
    pub requested_mask: Option<String>,
    /// The part of the access refused.
    pub denied_mask: Option<String>,
}

/// Where an audit record came from and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditStamp {
    /// Seconds since the epoch, as the kernel stamped the record.
    pub seconds: u64,
    /// Milliseconds within the second.
    pub millis: u32,
    /// The record's serial number (unique per boot).
    pub serial: u64,
}

/// A seccomp decision the kernel logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompRecord {
    /// When.
    pub stamp: AuditStamp,
    /// The process (thread group) id, in the initial pid namespace.
    pub pid: u32,
    /// The audit session (`ses=`), inherited by every descendant of the process that started
    /// it; `None` when unset.
    pub session: Option<u32>,
    /// The task's command name, when present.
    pub comm: Option<String>,
    /// The executable, when present.
    pub exe: Option<String>,
    /// The architecture of the call.
    pub arch: Arch,
    /// The syscall number in that architecture (the x32 bit removed for [`Arch::X32`]).
    pub syscall: u32,
    /// What the filter decided. The kernel logs the action only (`code=` is masked with
    /// SECCOMP_RET_ACTION_FULL), so the errno of an SCMP_ACT_ERRNO is not in the record.
    pub action: SeccompAction,
}

/// An SELinux decision the kernel logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcRecord {
    /// When.
    pub stamp: AuditStamp,
    /// Whether access was denied (`denied`) rather than granted (`granted`).
    pub denied: bool,
    /// Whether the domain (or the machine) was permissive, so the access happened anyway.
    pub permissive: bool,
    /// The process id, when present.
    pub pid: Option<u32>,
    /// The full source context.
    pub scontext: String,
    /// The full target context.
    pub tcontext: String,
    /// The denial reduced to what a policy rule needs.
    pub denial: AvcDenial,
}

/// Why a line that claims to be an audit record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A required field is absent (often: the line was truncated).
    #[error("audit record {kind}: missing field {field} (truncated line?)")]
    MissingField {
        /// `SECCOMP`, `AVC` or `APPARMOR`.
        kind: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field's value is not what the kernel writes.
    #[error("audit record {kind}: field {field}={value:?} is not {expected}")]
    BadField {
        /// `SECCOMP`, `AVC` or `APPARMOR`.
        kind: &'static str,
        /// The field.
        field: &'static str,
        /// The value found.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The `audit(SECONDS.MILLIS:SERIAL)` stamp is missing or malformed.
    #[error("audit record: malformed or missing stamp audit(SECONDS.MILLIS:SERIAL)")]
    BadStamp,
}

/// `AUDIT_ARCH_*` values (linux/audit.h) and the seccomp architecture they stand for.
const AUDIT_ARCHES: &[(u32, Arch)] = &[
    (0xc000_003e, Arch::X86_64),
    (0x4000_0003, Arch::X86),
    (0xc000_00b7, Arch::Aarch64),
    (0x4000_0028, Arch::Arm),
    (0xc000_00f3, Arch::Riscv64),
    (0x0000_0014, Arch::Ppc),
    (0x8000_0015, Arch::Ppc64),
    (0xc000_0015, Arch::Ppc64le),
    (0x0000_0016, Arch::S390),
    (0x8000_0016, Arch::S390x),
    (0x0000_0008, Arch::Mips),
    (0x4000_0008, Arch::Mipsel),
    (0x8000_0008, Arch::Mips64),
    (0xc000_0008, Arch::Mipsel64),
    (0x0000_000f, Arch::Parisc),
    (0x8000_000f, Arch::Parisc64),
];

/// x32 syscalls are x86-64 calls with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The seccomp architecture of an `AUDIT_ARCH_*` value.
pub fn arch_of_audit_arch(value: u32) -> Option<Arch> {
    AUDIT_ARCHES.iter().find(|(v, _)| *v == value).map(|(_, a)| *a)
}

/// The action of a `SECCOMP_RET_*` value (`code=` of a record; its data bits are ignored).
pub fn action_of_code(code: u32) -> Option<SeccompAction> {
    Some(match code & 0xffff_0000 {
        0x8000_0000 => SeccompAction::KillProcess,
        0x0000_0000 => SeccompAction::KillThread,
        0x0003_0000 => SeccompAction::Trap,
        0x0005_0000 => SeccompAction::Errno,
        0x7fc0_0000 => SeccompAction::Notify,
        0x7ff0_0000 => SeccompAction::Trace,
        0x7ffc_0000 => SeccompAction::Log,
        0x7fff_0000 => SeccompAction::Allow,
        _ => return None,
    })
}

/// Parses one line of a kernel log or an auditd log; see the module docs.
pub fn parse_record(line: &str) -> Result<Option<AuditRecord>, ParseError> {
    // auditd appends its own interpretation after a 0x1d byte; only the kernel's part counts.
    let line = line.split('\x1d').next().unwrap_or_default().trim_end();
    let Some((kind, rest)) = record_kind(line) else {
        return Ok(None);
    };
    let (stamp, body) = parse_stamp(rest)?;
    match kind {
        Kind::Seccomp => parse_seccomp(stamp, body).map(|r| Some(AuditRecord::Seccomp(r))),
        // type=1400 (auditd: AVC) carries SELinux's `avc:` records and AppArmor's `apparmor=`.
        Kind::Avc1400 | Kind::Avc if body.trim_start().starts_with("apparmor=") => {
            parse_apparmor(stamp, body).map(|r| Some(AuditRecord::AppArmor(r)))
        }
        Kind::Avc1400 if !body.trim_start().starts_with("avc:") => Ok(None),
        Kind::Avc1400 | Kind::Avc => parse_avc(stamp, body).map(|r| Some(AuditRecord::Avc(r))),
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Seccomp,
    Avc,
    Avc1400,
}

/// The record type and the text after it, for lines holding one we read.
fn record_kind(line: &str) -> Option<(Kind, &str)> {
    for (token, kind) in [
        ("type=1326", Kind::Seccomp),
        ("type=SECCOMP", Kind::Seccomp),
        ("type=1400", Kind::Avc1400),
        ("type=AVC", Kind::Avc),
    ] {
        if let Some(at) = line.find(token) {
            let rest = &line[at + token.len()..];
            if rest.is_empty() || rest.starts_with(' ') {
                return Some((kind, rest));
            }
        }
    }
    None
}

/// Splits `msg=audit(S.MS:N): fields` or `audit(S.MS:N): fields` into the stamp and the fields.
fn parse_stamp(rest: &str) -> Result<(AuditStamp, &str), ParseError> {
    let start = rest.find("audit(").ok_or(ParseError::BadStamp)? + "audit(".len();
    let end = start + rest[start..].find("):").ok_or(ParseError::BadStamp)?;
    let inner = &rest[start..end];
    let (time, serial) = inner.split_once(':').ok_or(ParseError::BadStamp)?;
    let (seconds, millis) = time.split_once('.').ok_or(ParseError::BadStamp)?;
    // The kernel prints `%llu.%03lu:%u`: digits only, exactly three of them after the dot.
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(seconds) || millis.len() != 3 || !digits(millis) || !digits(serial) {
        return Err(ParseError::BadStamp);
    }
    let seconds: u64 = seconds.parse().map_err(|_| ParseError::BadStamp)?;
    // A stamp must be representable in milliseconds (every later consumer works in them).
    if seconds.checked_mul(1000).is_none() {
        return Err(ParseError::BadStamp);
    }
    let stamp = AuditStamp {
        seconds,
        millis: millis.parse().map_err(|_| ParseError::BadStamp)?,
        serial: serial.parse().map_err(|_| ParseError::BadStamp)?,
    };
    Ok((stamp, &rest[end + 2..]))
}

/// The `key=value` fields of a record body. Values are bare, `"quoted"` (no escapes: the
/// kernel hex-encodes any value holding a quote, space or control byte), or hex-encoded
/// (decoded only where a field is read as text, see [`text_value`]).
fn fields(body: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = &rest[..eq];
        if key.contains(char::is_whitespace) {
            // A word without `=` (such as `avc:` or `{ read }`): skip it.
            let skip = rest.find(char::is_whitespace).unwrap_or(rest.len());
            rest = rest[skip..].trim_start();
            continue;
        }
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(close) => (&after[..close + 2], &quoted[close + 1..]),
                None => (after, ""), // truncated inside a quote: keep what there is
            }
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push((key, value));
        rest = next.trim_start();
    }
    out
}

fn field<'a>(fields: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// A text field: `"quoted"` as is, `(null)` as absent, otherwise hex-encoded bytes (the kernel's
/// form for values with spaces, quotes or control bytes), decoded lossily.
fn text_value(value: &str) -> Option<String> {
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        return Some(inner.to_owned());
    }
    if value == "(null)" || value == "?" {
        return None;
    }
    if value.len().is_multiple_of(2) && !value.is_empty() && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        let bytes: Vec<u8> = (0..value.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&value[i..i + 2], 16).ok())
            .collect();
        return Some(String::from_utf8_lossy(&bytes).into_owned());
    }
    Some(value.to_owned())
}

fn required<'a>(fields: &[(&str, &'a str)], kind: &'static str, key: &'static str) -> Result<&'a str, ParseError> {
    field(fields, key)
        .filter(|v| !v.is_empty() && *v != "\"")
        .ok_or(ParseError::MissingField { kind, field: key })
}

fn number<T: TryFrom<u64>>(
    value: &str,
    kind: &'static str,
    key: &'static str,
    hex: bool,
    expected: &'static str,
) -> Result<T, ParseError> {
    let bad = || ParseError::BadField {
        kind,
        field: key,
        value: value.to_owned(),
        expected,
    };
    let parsed = if hex {
        u64::from_str_radix(value.trim_start_matches("0x"), 16)
    } else {
        value.parse::<u64>()
    };
    parsed.ok().and_then(|n| T::try_from(n).ok()).ok_or_else(bad)
}

fn parse_seccomp(stamp: AuditStamp, body: &str) -> Result<SeccompRecord, ParseError> {
    const K: &str = "SECCOMP";
    let fields = fields(body);
    let pid: u32 = number(required(&fields, K, "pid")?, K, "pid", false, "a process id")?;
    let arch_value: u32 = number(required(&fields, K, "arch")?, K, "arch", true, "an AUDIT_ARCH value")?;
    let mut arch = arch_of_audit_arch(arch_value).ok_or_else(|| ParseError::BadField {
        kind: K,
        field: "arch",
        value: format!("{arch_value:x}"),
        expected: "an architecture seccomp knows",
    })?;
    let mut syscall: u32 = number(
        required(&fields, K, "syscall")?,
        K,
        "syscall",
        false,
        "a syscall number",
    )?;
    if arch == Arch::X86_64 && syscall & X32_SYSCALL_BIT != 0 {
        arch = Arch::X32;
        syscall &= !X32_SYSCALL_BIT;
    }
    let code_text = required(&fields, K, "code")?;
    let code: u32 = number(code_text, K, "code", true, "a SECCOMP_RET_* value")?;
    let action = action_of_code(code).ok_or_else(|| ParseError::BadField {
        kind: K,
        field: "code",
        value: code_text.to_owned(),
        expected: "a SECCOMP_RET_* value",
    })?;
    let session = match field(&fields, "ses") {
        Some(v) => Some(number::<u32>(v, K, "ses", false, "an audit session id")?).filter(|&s| s != u32::MAX),
        None => None,
    };
    Ok(SeccompRecord {
        stamp,
        pid,
        session,
        comm: field(&fields, "comm").and_then(text_value),
        exe: field(&fields, "exe").and_then(text_value),
        arch,
        syscall,
        action,
    })
}

fn parse_avc(stamp: AuditStamp, body: &str) -> Result<AvcRecord, ParseError> {
    const K: &str = "AVC";
    let body = body
        .trim_start()
        .strip_prefix("avc:")
        .ok_or(ParseError::MissingField { kind: K, field: "avc:" })?
        .trim_start();
    let denied = if body.starts_with("denied") {
        true
    } else if body.starts_with("granted") {
        false
    } else {
        return Err(ParseError::MissingField {
            kind: K,
            field: "denied|granted",
        });
    };
    let open = body.find('{').ok_or(ParseError::MissingField {
        kind: K,
        field: "{ permissions }",
    })?;
    let close = body.find('}').ok_or(ParseError::MissingField {
        kind: K,
        field: "{ permissions }",
    })?;
    if close < open {
        return Err(ParseError::MissingField {
            kind: K,
            field: "{ permissions }",
        });
    }
    let permissions: BTreeSet<String> = body[open + 1..close].split_whitespace().map(str::to_owned).collect();
    if permissions.is_empty() {
        return Err(ParseError::MissingField {
            kind: K,
            field: "{ permissions }",
        });
    }
    let fields = fields(&body[close + 1..]);
    let scontext = required(&fields, K, "scontext")?.to_owned();
    let tcontext = required(&fields, K, "tcontext")?.to_owned();
    let class = required(&fields, K, "tclass")?.to_owned();
    let type_of = |context: &str, key: &'static str| {
        context
            .split(':')
            .nth(2)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ParseError::BadField {
                kind: K,
                field: key,
                value: context.to_owned(),
                expected: "an SELinux context user:role:type[:level]",
            })
    };
    // The kernel writes `permissive=` after the class (since Linux 3.16); requiring it also
    // tells a record cut inside `tclass=` from a whole one.
    let permissive = match required(&fields, K, "permissive")? {
        "0" => false,
        "1" => true,
        other => {
            return Err(ParseError::BadField {
                kind: K,
                field: "permissive",
                value: other.to_owned(),
                expected: "0 or 1",
            });
        }
    };
    let pid = match field(&fields, "pid") {
        Some(v) => Some(number(v, K, "pid", false, "a process id")?),
        None => None,
    };
    Ok(AvcRecord {
        stamp,
        denied,
        permissive,
        pid,
        denial: AvcDenial {
            source_type: type_of(&scontext, "scontext")?,
            target_type: type_of(&tcontext, "tcontext")?,
            class,
            permissions,
        },
        scontext,
        tcontext,
    })
}

fn parse_apparmor(stamp: AuditStamp, body: &str) -> Result<AppArmorRecord, ParseError> {
    const K: &str = "APPARMOR";
    let fields = fields(body);
    let text = |key: &str| field(&fields, key).and_then(text_value).filter(|v| !v.is_empty());
    let required_text = |key: &'static str| {
        required(&fields, K, key)?;
        text(key).ok_or(ParseError::MissingField { kind: K, field: key })
    };
    let apparmor = required_text("apparmor")?;
    let operation = required_text("operation")?;
    let pid = match field(&fields, "pid") {
        Some(v) => Some(number(v, K, "pid", false, "a process id")?),
        None => None,
    };
    Ok(AppArmorRecord {
        stamp,
        apparmor,
        operation,
        profile: text("profile"),
        name: text("name"),
        pid,
        comm: text("comm"),
        requested_mask: text("requested_mask"),
        denied_mask: text("denied_mask"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPARMOR: &str = "type=1400 audit(1725000000.123:456): apparmor=\"DENIED\" operation=\"open\" class=\"file\" profile=\"spo-nginx\" name=\"/etc/shadow\" pid=1234 comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0";

    #[test]
    fn reads_apparmor_records_from_the_kernel_and_auditd() {
        let expect = AppArmorRecord {
            stamp: AuditStamp {
                seconds: 1_725_000_000,
                millis: 123,
                serial: 456,
            },
            apparmor: "DENIED".into(),
            operation: "open".into(),
            profile: Some("spo-nginx".into()),
            name: Some("/etc/shadow".into()),
            pid: Some(1234),
            comm: Some("cat".into()),
            requested_mask: Some("r".into()),
            denied_mask: Some("r".into()),
        };
        assert_eq!(parse_record(APPARMOR), Ok(Some(AuditRecord::AppArmor(expect.clone()))));
        assert_eq!(
            parse_record(&format!("5,99,1,-;audit: {APPARMOR}")),
            Ok(Some(AuditRecord::AppArmor(expect.clone())))
        );
        let auditd = format!(
            "{}\x1dFSUID=\"root\" OUID=\"root\"",
            APPARMOR.replace("type=1400 audit(", "type=AVC msg=audit(")
        );
        assert_eq!(parse_record(&auditd), Ok(Some(AuditRecord::AppArmor(expect))));
        // A name with a space is hex-encoded by the kernel.
        let hex = APPARMOR.replace("name=\"/etc/shadow\"", "name=2F746D702F612062");
        match parse_record(&hex) {
            Ok(Some(AuditRecord::AppArmor(r))) => assert_eq!(r.name.as_deref(), Some("/tmp/a b")),
            other => panic!("{other:?}"),
        }
        // A status record without a pid or a name.
        let status = "type=1400 audit(1725000000.123:457): apparmor=\"STATUS\" operation=\"profile_load\" profile=\"unconfined\" name=\"spo-nginx\"";
        match parse_record(status) {
            Ok(Some(AuditRecord::AppArmor(r))) => assert_eq!((r.apparmor.as_str(), r.pid), ("STATUS", None)),
            other => panic!("{other:?}"),
        }
        // Cut before the operation: an error naming it.
        let cut = &APPARMOR[..APPARMOR.find(" operation").expect("operation")];
        assert_eq!(
            parse_record(cut),
            Err(ParseError::MissingField {
                kind: "APPARMOR",
                field: "operation"
            })
        );
        let bad_pid = APPARMOR.replace("pid=1234", "pid=12x4");
        assert!(matches!(
            parse_record(&bad_pid),
            Err(ParseError::BadField { field: "pid", .. })
        ));
    }

    const KMSG: &str = "5,1625,10772590099,-;audit: type=1326 audit(1795729387.496:1625): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=32724 comm=\"mkdir\" exe=\"/usr/bin/mkdir\" sig=0 arch=c000003e syscall=83 compat=0 ip=0x7f19a1ef7f37 code=0x50000";
    const DMESG: &str = "[ 9208.019769] audit: type=1326 audit(1795727822.924:1623): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=9563 comm=\"uname\" exe=\"/usr/bin/uname\" sig=31 arch=c000003e syscall=63 compat=0 ip=0x7f14d9814b07 code=0x80000000";
    const AUDITD: &str = "type=SECCOMP msg=audit(1795729387.496:1625): auid=4294967295 uid=0 gid=0 ses=4294967295 subj=unconfined pid=32724 comm=6D7920636D64 exe=\"/usr/bin/mkdir\" sig=0 arch=40000003 syscall=39 compat=1 ip=0xf7f0 code=0x7ffc0000\x1dAUID=\"unset\" UID=\"root\" ARCH=i386 SYSCALL=mkdir";
    const AVC: &str = "type=AVC msg=audit(1700000000.123:77): avc:  denied  { read write } for  pid=1234 comm=\"nginx\" name=\"cache\" dev=\"sda1\" ino=42 scontext=system_u:system_r:container_t:s0:c1,c2 tcontext=system_u:object_r:var_t:s0 tclass=dir permissive=0";

    fn seccomp(line: &str) -> SeccompRecord {
        match parse_record(line) {
            Ok(Some(AuditRecord::Seccomp(r))) => r,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn reads_seccomp_records_from_kmsg_dmesg_and_auditd() {
        let r = seccomp(KMSG);
        assert_eq!(
            (r.pid, r.arch, r.syscall, r.action),
            (32724, Arch::X86_64, 83, SeccompAction::Errno)
        );
        assert_eq!(r.comm.as_deref(), Some("mkdir"));
        assert_eq!(r.exe.as_deref(), Some("/usr/bin/mkdir"));
        assert_eq!(
            r.stamp,
            AuditStamp {
                seconds: 1_795_729_387,
                millis: 496,
                serial: 1625
            }
        );

        assert_eq!(r.session, None, "4294967295 is unset");
        let r = seccomp(&KMSG.replace("ses=4294967295", "ses=17"));
        assert_eq!(r.session, Some(17));

        let r = seccomp(DMESG);
        assert_eq!((r.syscall, r.action), (63, SeccompAction::KillProcess));

        // auditd: hex-encoded comm (it has a space), i386, LOG, and auditd's own fields after
        // 0x1d ignored.
        let r = seccomp(AUDITD);
        assert_eq!(r.comm.as_deref(), Some("my cmd"));
        assert_eq!((r.arch, r.syscall, r.action), (Arch::X86, 39, SeccompAction::Log));
    }

    #[test]
    fn x32_calls_are_told_apart() {
        let line = KMSG.replace("syscall=83", "syscall=1073741907");
        let r = seccomp(&line);
        assert_eq!((r.arch, r.syscall), (Arch::X32, 83));
    }

    #[test]
    fn other_lines_are_not_records() {
        for line in [
            "",
            "[    0.000000] Linux version 6.18",
            "type=SYSCALL msg=audit(1.001:1): arch=c000003e syscall=59",
            "audit: type=1400 audit(1.001:2): some_other_lsm=\"DENIED\" operation=\"open\"",
        ] {
            assert_eq!(parse_record(line), Ok(None), "{line}");
        }
    }

    #[test]
    fn truncated_and_malformed_records_name_the_field() {
        let cut = &KMSG[..KMSG.find(" code=").expect("code")];
        assert_eq!(
            parse_record(cut),
            Err(ParseError::MissingField {
                kind: "SECCOMP",
                field: "code"
            })
        );
        let cut = &KMSG[..KMSG.find("audit(").expect("stamp") + 10];
        assert_eq!(parse_record(cut), Err(ParseError::BadStamp));
        // Found by the enrich_line fuzz target: seconds that overflow once made milliseconds
        // panicked downstream; the stamp is now refused where it is read.
        let start = KMSG.find("audit(").expect("stamp") + "audit(".len();
        let end = start + KMSG[start..].find('.').expect("dot");
        let huge = format!("{}17964444444444457384{}", &KMSG[..start], &KMSG[end..]);
        assert_eq!(parse_record(&huge), Err(ParseError::BadStamp));
        for stamp in [
            "+1795729387.496:1",
            "1795729387.49:1",
            "1795729387.4960:1",
            "1795729387.496:-1",
        ] {
            let bad = format!(
                "{}{}{}",
                &KMSG[..start],
                stamp,
                &KMSG[start + KMSG[start..].find(')').expect("paren")..]
            );
            assert_eq!(parse_record(&bad), Err(ParseError::BadStamp), "{stamp}");
        }
        let bad = KMSG.replace("arch=c000003e", "arch=zz");
        let err = parse_record(&bad).expect_err("bad arch");
        assert!(err.to_string().contains("arch=\"zz\""), "{err}");
        let bad = KMSG.replace("code=0x50000", "code=0x12340000");
        let err = parse_record(&bad).expect_err("bad code");
        assert!(err.to_string().contains("SECCOMP_RET_"), "{err}");
        // Truncated inside a quoted value: still a clear error, never a panic.
        let cut = &KMSG[..KMSG.find("exe=\"").expect("exe") + 7];
        assert!(matches!(
            parse_record(cut),
            Err(ParseError::MissingField { field: "arch", .. })
        ));
    }

    #[test]
    fn reads_avc_denials() {
        let Ok(Some(AuditRecord::Avc(r))) = parse_record(AVC) else {
            panic!("{:?}", parse_record(AVC))
        };
        assert!(r.denied && !r.permissive);
        assert_eq!(r.pid, Some(1234));
        assert_eq!(r.denial.source_type, "container_t");
        assert_eq!(r.denial.target_type, "var_t");
        assert_eq!(r.denial.class, "dir");
        assert_eq!(
            r.denial.permissions,
            BTreeSet::from(["read".to_owned(), "write".to_owned()])
        );
        let cut = &AVC[..AVC.find(" tclass").expect("tclass")];
        assert_eq!(
            parse_record(cut),
            Err(ParseError::MissingField {
                kind: "AVC",
                field: "tclass"
            })
        );
        let no_perms = AVC.replace("{ read write }", "{ }");
        assert!(parse_record(&no_perms).is_err());
    }

    #[test]
    fn every_truncation_is_an_error_or_not_a_record() {
        // Every prefix of every sample: before the type token it is no record; from there up to
        // the last field it is an error. (A cut inside the last field's digits cannot be told
        // from a shorter value; the kernel writes whole records, so only a broken file does it.)
        for sample in [KMSG, DMESG, AUDITD, AVC] {
            let kernel_part = sample.split('\x1d').next().expect("part");
            let type_at = kernel_part.find("type=").expect("type");
            let type_end = type_at + kernel_part[type_at..].find(' ').expect("space after the type");
            let last_field = kernel_part.rfind(' ').expect("fields");
            for end in (0..=last_field).filter(|&i| sample.is_char_boundary(i)) {
                let parsed = parse_record(&sample[..end]);
                if end < type_end {
                    assert_eq!(parsed, Ok(None), "{:?}", &sample[..end]);
                } else {
                    assert!(parsed.is_err(), "{:?} parsed as {parsed:?}", &sample[..end]);
                }
            }
        }
    }
}
