//! A neutral [`Recording`] -> AppArmorProfile (pure).
//!
//! - executables -> `allowedExecutables`; libraries, and files only mapped executable ->
//!   `allowedLibraries`; other files by the access seen: read -> `readOnlyPaths`, write ->
//!   `writeOnlyPaths`, both -> `readWritePaths` (a file read and mapped is a library only,
//!   `mr` covers the read; a file that is also an executable is not repeated as read-only);
//! - sockets: `AF_INET`/`AF_INET6` with `SOCK_STREAM` -> `allowTcp`, with `SOCK_DGRAM` ->
//!   `allowUdp`; `SOCK_RAW` in any family -> `allowRaw`; `AF_UNIX` needs nothing
//!   (abstractions/base allows it); anything else is reported as dropped;
//! - capabilities whose check was allowed, lower case without `cap_`.
//!
//! Paths are normalised ([`normalize_path`]): `/proc/<pid>` -> `@{PROC}/@{pid}` (and
//! `task/<tid>` -> `task/@{tid}`), other numeric components -> `[0-9]*`, UUIDs and runs of 16
//! or more hex digits (container ids, hashes) -> `*`, characters that are glob syntax or
//! refused by the grammar -> `?` (one per byte), a kernel ` (deleted)` suffix removed,
//! pseudo-files that are not paths (`pipe:[12]`, `anon_inode:...`) dropped. Then, within
//! each list, when more than [`COLLAPSE_THRESHOLD`] entries share a directory at depth 2 or
//! more, they become `<dir>/*`. Every list is sorted and free of duplicates, so equal
//! recordings give equal profiles.

use std::collections::{BTreeMap, BTreeSet};

use spo_model::apparmor::{
    AppArmorAbstract, AppArmorCapability, AppArmorExecutable, AppArmorFilesystem, AppArmorNetwork, AppArmorProfile,
    AppArmorProfileSpec, AppArmorProtocols, CAPABILITIES,
};
use spo_model::observed::Recording;

use crate::grammar::check_path;

/// More than this many entries of one list in one directory collapse into `<dir>/*`.
pub const COLLAPSE_THRESHOLD: usize = 8;

/// A profile from a recording and what could not be expressed in it.
#[derive(Clone, Debug, PartialEq)]
pub struct FromRecording {
    /// The profile.
    pub profile: AppArmorProfile,
    /// What was left out and why, such as `socket AF_NETLINK/SOCK_RAW: ...`.
    pub dropped: Vec<String>,
}

/// A profile named `name` that allows what `recording` saw (see the module documentation).
pub fn profile_from_recording(name: &str, recording: &Recording) -> FromRecording {
    let mut dropped = Vec::new();
    let mut normalize = |p: &str, what: &str| match normalize_path(p) {
        Some(n) => Some(n),
        None => {
            dropped.push(format!("{what} {p:?}: not an absolute canonical path"));
            None
        }
    };
    let executables: BTreeSet<String> = recording
        .executables
        .iter()
        .filter_map(|p| normalize(p, "executable"))
        .collect();
    let mut libraries: BTreeSet<String> = recording
        .libraries
        .iter()
        .filter_map(|p| normalize(p, "library"))
        .collect();
    let (mut read_only, mut write_only, mut read_write) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (path, access) in &recording.files {
        let Some(p) = normalize(path, "file") else { continue };
        if access.exec && !executables.contains(&p) {
            libraries.insert(p.clone());
        }
        match (access.read, access.write) {
            (true, true) => {
                read_write.insert(p);
            }
            (false, true) => {
                write_only.insert(p);
            }
            (true, false) if !access.exec => {
                read_only.insert(p);
            }
            _ => {}
        }
    }
    read_only.retain(|p| !executables.contains(p) && !libraries.contains(p));

    let (mut tcp, mut udp, mut raw) = (false, false, false);
    for s in &recording.sockets {
        let kind = s.type_.split('|').next().unwrap_or_default().trim();
        match (s.domain.as_str(), kind) {
            (_, "SOCK_RAW") => raw = true,
            ("AF_INET" | "AF_INET6", "SOCK_STREAM") => tcp = true,
            ("AF_INET" | "AF_INET6", "SOCK_DGRAM") => udp = true,
            ("AF_UNIX" | "AF_LOCAL", _) => {}
            (domain, kind) => dropped.push(format!(
                "socket {domain}/{kind}: the abstract profile has no rule for it (only TCP, UDP and raw)"
            )),
        }
    }

    let mut capabilities = BTreeSet::new();
    for (cap, allowed) in &recording.capabilities {
        let lower = cap.to_ascii_lowercase();
        let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
        match CAPABILITIES.iter().find(|c| **c == bare) {
            Some(c) if *allowed => {
                capabilities.insert((*c).to_owned());
            }
            Some(_) => {}
            None => dropped.push(format!("capability {cap:?}: not a Linux capability")),
        }
    }

    let list = |set: BTreeSet<String>| {
        let v = collapse(set);
        if v.is_empty() { None } else { Some(v) }
    };
    let executable = AppArmorExecutable {
        allowed_executables: list(executables),
        allowed_libraries: list(libraries),
    };
    let filesystem = AppArmorFilesystem {
        read_only_paths: list(read_only),
        write_only_paths: list(write_only),
        read_write_paths: list(read_write),
        denied_paths: None,
    };
    let network = AppArmorNetwork {
        allow_raw: raw.then_some(true),
        allowed_protocols: (tcp || udp).then_some(AppArmorProtocols {
            allow_tcp: tcp.then_some(true),
            allow_udp: udp.then_some(true),
        }),
    };
    let abs = AppArmorAbstract {
        executable: (executable != AppArmorExecutable::default()).then_some(executable),
        filesystem: (filesystem != AppArmorFilesystem::default()).then_some(filesystem),
        network: (network != AppArmorNetwork::default()).then_some(network),
        capability: (!capabilities.is_empty()).then(|| AppArmorCapability {
            allowed_capabilities: Some(capabilities.into_iter().collect()),
        }),
    };
    let spec = AppArmorProfileSpec {
        state: Default::default(),
        disabled: None,
        mode: Default::default(),
        complain_mode: None,
        policy: None,
        abstract_: Some(abs),
    };
    FromRecording {
        profile: AppArmorProfile::new(name, spec),
        dropped,
    }
}

/// A recorded path as a profile path (see the module documentation); `None` for what is not
/// an absolute canonical path.
pub fn normalize_path(path: &str) -> Option<String> {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let rest = path.strip_prefix('/')?;
    let components: Vec<&str> = rest.split('/').filter(|c| !c.is_empty()).collect();
    if components.iter().any(|c| *c == "." || *c == "..") {
        return None;
    }
    let mut out = String::with_capacity(path.len() + 16);
    let mut i = 0;
    if components.first() == Some(&"proc") {
        out.push_str("@{PROC}");
        i = 1;
        if components.get(1).is_some_and(|c| is_number(c)) {
            out.push_str("/@{pid}");
            i = 2;
            if components.get(2) == Some(&"task") && components.get(3).is_some_and(|c| is_number(c)) {
                out.push_str("/task/@{tid}");
                i = 4;
            }
        }
    }
    for c in &components[i..] {
        out.push('/');
        out.push_str(&normalize_component(c));
    }
    if out.is_empty() || (path.ends_with('/') && !out.ends_with('/')) {
        out.push('/');
    }
    check_path(&out).ok().map(|()| out)
}

fn is_number(c: &str) -> bool {
    !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit())
}

fn is_uuid(c: &str) -> bool {
    let parts: Vec<&str> = c.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// One path component as profile text.
fn normalize_component(c: &str) -> String {
    if is_number(c) {
        return "[0-9]*".to_owned();
    }
    if is_uuid(c) {
        return "*".to_owned();
    }
    let mut out = String::with_capacity(c.len());
    let bytes = c.as_bytes();
    let mut i = 0;
    while i < c.len() {
        let run = bytes[i..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if run >= 16 {
            out.push('*');
            i += run;
            continue;
        }
        if run > 0 {
            out.push_str(&c[i..i + run]);
            i += run;
            continue;
        }
        let Some(ch) = c[i..].chars().next() else { break };
        let starts_variable = ch == '@' && c[i + 1..].starts_with('{');
        let plain = ch.is_ascii_alphanumeric()
            || ".-_+=~%:@$&'()<>^!# ".contains(ch)
            || (!ch.is_ascii() && ch.is_alphanumeric());
        if plain && !starts_variable {
            out.push(ch);
        } else {
            // AppArmor matches bytes, so one '?' per UTF-8 byte.
            out.extend(std::iter::repeat_n('?', ch.len_utf8()));
        }
        i += ch.len_utf8();
    }
    out
}

/// Collapses crowded directories into `<dir>/*` (see the module documentation).
fn collapse(paths: BTreeSet<String>) -> Vec<String> {
    let mut by_dir: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &paths {
        if let Some((dir, _)) = p.rsplit_once('/') {
            *by_dir.entry(dir).or_default() += 1;
        }
    }
    let crowded: BTreeSet<String> = by_dir
        .into_iter()
        .filter(|(dir, n)| *n > COLLAPSE_THRESHOLD && dir.matches('/').count() >= 2)
        .map(|(dir, _)| dir.to_owned())
        .collect();
    if crowded.is_empty() {
        return paths.into_iter().collect();
    }
    let mut out = BTreeSet::new();
    for p in paths {
        match p.rsplit_once('/') {
            Some((dir, _)) if crowded.contains(dir) => {
                out.insert(format!("{dir}/*"));
            }
            _ => {
                out.insert(p);
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let cases = [
            ("/proc/1234/status", "@{PROC}/@{pid}/status"),
            ("/proc/1234/task/1240/comm", "@{PROC}/@{pid}/task/@{tid}/comm"),
            ("/proc/self/maps", "@{PROC}/self/maps"),
            ("/proc/sys/kernel/ngroups_max", "@{PROC}/sys/kernel/ngroups_max"),
            ("/dev/pts/3", "/dev/pts/[0-9]*"),
            (
                "/var/lib/containers/0123456789abcdef0123456789abcdef/rootfs/etc/hosts",
                "/var/lib/containers/*/rootfs/etc/hosts",
            ),
            ("/run/user/1000/bus", "/run/user/[0-9]*/bus"),
            ("/tmp/cache-0123456789abcdef01.tmp", "/tmp/cache-*.tmp"),
            (
                "/sys/fs/cgroup/9f1c2a2e-3b4c-4d5e-8f90-123456789abc/cpu.max",
                "/sys/fs/cgroup/*/cpu.max",
            ),
            ("/tmp/a*b?c[d]{e,f}", "/tmp/a?b?c?d??e?f?"),
            ("/tmp/quote\"back\\slash", "/tmp/quote?back?slash"),
            ("/tmp/@{pid}", "/tmp/??pid?"),
            ("/run/systemd/user@1000.service", "/run/systemd/user@1000.service"),
            ("/srv/été/x", "/srv/été/x"),
            ("/srv/a\u{2028}b", "/srv/a???b"),
            ("/usr/lib/x (deleted)", "/usr/lib/x"),
            ("/var/log//x", "/var/log/x"),
            ("/", "/"),
            ("/etc/ssl/", "/etc/ssl/"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input).as_deref(), Some(want), "{input:?}");
        }
        for bad in ["pipe:[1234]", "anon_inode:[eventfd]", "relative", "/a/../b", ""] {
            assert_eq!(normalize_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn crowded_directories_collapse() {
        let many: BTreeSet<String> = (0..=COLLAPSE_THRESHOLD)
            .map(|i| format!("/usr/share/zoneinfo/zone{i}"))
            .chain(["/usr/share/other".to_owned(), "/etc/a".to_owned()])
            .collect();
        assert_eq!(
            collapse(many),
            vec!["/etc/a", "/usr/share/other", "/usr/share/zoneinfo/*"]
        );
        let few: BTreeSet<String> = (0..COLLAPSE_THRESHOLD).map(|i| format!("/usr/share/z/f{i}")).collect();
        assert_eq!(collapse(few.clone()), few.into_iter().collect::<Vec<_>>());
        let top: BTreeSet<String> = (0..20).map(|i| format!("/etc/f{i}")).collect();
        assert_eq!(collapse(top).len(), 20, "directories at depth 1 are never collapsed");
    }
}
