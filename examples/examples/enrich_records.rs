//! Read kernel audit records with spo-enrich as a log tool would: a seccomp decision, an
//! SELinux denial, an AppArmor denial, and a line cut short, which is refused with the reason.
//!
//! ```text
//! cargo run -p spo-examples --example enrich_records
//! ```

use anyhow::{Result, bail};
use spo_enrich::audit::{AuditRecord, parse_record};

const LINES: &[&str] = &[
    r#"type=SECCOMP msg=audit(1733400000.123:42): auid=4294967295 uid=0 gid=0 ses=4294967295 subj=unconfined pid=4242 comm="mkdir" exe="/usr/bin/mkdir" sig=0 arch=c000003e syscall=83 compat=0 ip=0x7f00 code=0x50001"#,
    r#"type=AVC msg=audit(1733400001.000:43): avc:  denied  { read } for  pid=4243 comm="cat" name="shadow" dev="vda" ino=42 scontext=system_u:system_r:web_t:s0 tcontext=system_u:object_r:shadow_t:s0 tclass=file permissive=0"#,
    r#"type=AVC msg=audit(1733400002.000:44): apparmor="DENIED" operation="open" class="file" profile="web-frontend" name="/etc/shadow" pid=4244 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
    r#"type=SECCOMP msg=audit(1733400003.000:45): pid=4245 comm="x" arch=c00"#,
];

fn main() -> Result<()> {
    let mut parsed = 0;
    for line in LINES {
        match parse_record(line) {
            Ok(Some(AuditRecord::Seccomp(r))) => {
                parsed += 1;
                println!(
                    "seccomp: pid {} {:?} syscall {} on {} -> {:?}",
                    r.pid, r.exe, r.syscall, r.arch, r.action
                );
            }
            Ok(Some(AuditRecord::Avc(r))) => {
                parsed += 1;
                println!("selinux: {r:?}");
            }
            Ok(Some(AuditRecord::AppArmor(r))) => {
                parsed += 1;
                println!("apparmor: {r:?}");
            }
            Ok(None) => println!("not a record this tool reads: {line}"),
            Err(e) => println!("refused: {e}"),
        }
    }
    if parsed != 3 {
        bail!("expected three records, read {parsed}");
    }
    Ok(())
}
