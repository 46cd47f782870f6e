//! spoc's side of the blocked-call report of `spoc run`: its own audit session, and the
//! report's lines. Reading the records and deciding which are the command's is spo-enrich's
//! (`spo_enrich::source`, `spo_enrich::command`), shared with the node's enricher.
//!
//! `spoc run` installs the filter with SECCOMP_FILTER_FLAG_LOG, so the kernel writes a
//! `type=1326` record for every call the profile did not simply allow (without the flag,
//! SCMP_ACT_ERRNO decisions are silent). spoc starts a fresh audit session for itself before
//! starting the command (writing `/proc/self/loginuid`, which needs CAP_AUDIT_CONTROL), and
//! every descendant inherits it, so a record is the command's exactly when its `ses=` is that
//! session. When that is not possible (not root, loginuid immutable), the command's processes
//! are the pids collected while it runs.

use super::output::clean;

/// Starts a new audit session for this process (and so for every process it starts from now
/// on) and returns its id. The login uid written is the one already set, else the user who ran
/// sudo, else the real uid. Fails without CAP_AUDIT_CONTROL or when the login uid is immutable.
pub fn start_audit_session() -> std::io::Result<u32> {
    let current: u32 = std::fs::read_to_string("/proc/self/loginuid")?
        .trim()
        .parse()
        .map_err(std::io::Error::other)?;
    let uid = if current != u32::MAX {
        current
    } else if let Some(sudo) = std::env::var("SUDO_UID").ok().and_then(|u| u.parse().ok()) {
        sudo
    } else {
        own_uid(UidField::Real).ok_or_else(|| std::io::Error::other("no Uid in /proc/self/status"))?
    };
    std::fs::write("/proc/self/loginuid", uid.to_string())?;
    let session: u32 = std::fs::read_to_string("/proc/self/sessionid")?
        .trim()
        .parse()
        .map_err(std::io::Error::other)?;
    if session == u32::MAX {
        return Err(std::io::Error::other("the kernel assigned no audit session"));
    }
    Ok(session)
}

/// One of the ids on the `Uid:` line of `/proc/self/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UidField {
    /// The real uid (first column).
    Real = 0,
    /// The effective uid (second column).
    Effective = 1,
}

/// This process's uid of kind `field`, from `/proc/self/status`.
pub(crate) fn own_uid(field: UidField) -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(field as usize)?
        .parse()
        .ok()
}

/// The report line of a call, escaped for a terminal (the program's name is the program's to
/// choose): `mkdir [SCMP_ARCH_X86_64] SCMP_ACT_ERRNO by /usr/bin/mkdir, 2
/// times`, names escaped.
pub fn describe_call(syscall: &str, arch: &str, action: &str, program: &str, count: usize) -> String {
    let times = if count == 1 {
        String::new()
    } else {
        format!(", {count} times")
    };
    format!("{} [{arch}] {action} by {}{times}", clean(syscall), clean(program))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_count_and_escape_names() {
        assert_eq!(
            describe_call("mkdir", "SCMP_ARCH_X86_64", "SCMP_ACT_ERRNO", "/usr/bin/mkdir", 2),
            "mkdir [SCMP_ARCH_X86_64] SCMP_ACT_ERRNO by /usr/bin/mkdir, 2 times"
        );
        assert_eq!(
            describe_call(
                "mkdir",
                "SCMP_ARCH_X86_64",
                "SCMP_ACT_LOG",
                "/tmp/evil\nspoc: the profile blocked nothing\x1b[2J",
                1
            ),
            "mkdir [SCMP_ARCH_X86_64] SCMP_ACT_LOG by /tmp/evil\\nspoc: the profile blocked nothing\\x1b[2J"
        );
    }
}
