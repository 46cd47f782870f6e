//! Union merge of AppArmorProfiles (what `spoc merge` and merged recordings use).
//!
//! The result allows what either profile allows:
//! - every allow list is the sorted union of both;
//! - network flags are OR-ed; an explicit `allowRaw: false` survives only when neither side
//!   allows raw sockets;
//! - capabilities are the sorted union;
//! - the mode is `Complain` when either is (deprecated flags folded in first);
//! - a `deniedPaths` entry survives only when the other profile denies it as well or allows
//!   nothing it could match, so a path one side allows is not taken away by the other side's
//!   deny, globs on either side included ([`crate::glob::may_overlap`]);
//! - metadata and state are the first profile's; status is dropped.
//!
//! Profiles with a raw `policy` cannot be merged: that is text, not a set of rules.

use std::collections::BTreeSet;

use spo_model::apparmor::{
    AppArmorAbstract, AppArmorCapability, AppArmorExecutable, AppArmorFilesystem, AppArmorMode, AppArmorNetwork,
    AppArmorProfile, AppArmorProfileSpec, AppArmorProtocols,
};

use crate::error::AppArmorError;
use crate::glob::may_overlap;

/// The union of two profiles (see the module documentation).
pub fn merge_profiles(base: &AppArmorProfile, other: &AppArmorProfile) -> Result<AppArmorProfile, AppArmorError> {
    for p in [base, other] {
        if p.spec.policy.is_some() {
            return Err(AppArmorError::Merge(format!(
                "AppArmorProfile {} has a raw policy, which cannot be merged; describe it under abstract",
                p.metadata.name.as_deref().unwrap_or_default()
            )));
        }
    }
    let empty = AppArmorAbstract::default();
    let a = base.spec.abstract_.as_ref().unwrap_or(&empty);
    let b = other.spec.abstract_.as_ref().unwrap_or(&empty);

    let ex = |x: &AppArmorAbstract| x.executable.clone().unwrap_or_default();
    let fs = |x: &AppArmorAbstract| x.filesystem.clone().unwrap_or_default();
    let (ea, eb, fa, fb) = (ex(a), ex(b), fs(a), fs(b));
    let executable = AppArmorExecutable {
        allowed_executables: union(&ea.allowed_executables, &eb.allowed_executables),
        allowed_libraries: union(&ea.allowed_libraries, &eb.allowed_libraries),
    };
    let denied: BTreeSet<&String> = fa
        .denied_paths
        .iter()
        .chain(fb.denied_paths.iter())
        .flatten()
        .filter(|d| still_denied(d, &ea, &fa) && still_denied(d, &eb, &fb))
        .collect();
    let filesystem = AppArmorFilesystem {
        read_only_paths: union(&fa.read_only_paths, &fb.read_only_paths),
        write_only_paths: union(&fa.write_only_paths, &fb.write_only_paths),
        read_write_paths: union(&fa.read_write_paths, &fb.read_write_paths),
        denied_paths: (!denied.is_empty()).then(|| denied.into_iter().cloned().collect()),
    };

    let na = a.network.clone().unwrap_or_default();
    let nb = b.network.clone().unwrap_or_default();
    let pa = na.allowed_protocols.clone().unwrap_or_default();
    let pb = nb.allowed_protocols.clone().unwrap_or_default();
    let protocols = AppArmorProtocols {
        allow_tcp: or(pa.allow_tcp, pb.allow_tcp),
        allow_udp: or(pa.allow_udp, pb.allow_udp),
    };
    let network = AppArmorNetwork {
        allow_raw: or(na.allow_raw, nb.allow_raw),
        allowed_protocols: (protocols != AppArmorProtocols::default()).then_some(protocols),
    };
    let caps = |x: &AppArmorAbstract| x.capability.as_ref().and_then(|c| c.allowed_capabilities.clone());
    let capabilities = union(&caps(a), &caps(b));

    let abs = AppArmorAbstract {
        executable: (executable != AppArmorExecutable::default()).then_some(executable),
        filesystem: (filesystem != AppArmorFilesystem::default()).then_some(filesystem),
        network: (network != AppArmorNetwork::default()).then_some(network),
        capability: capabilities.map(|c| AppArmorCapability {
            allowed_capabilities: Some(c),
        }),
    };
    let complain = [base, other]
        .iter()
        .any(|p| p.spec.effective_mode() == AppArmorMode::Complain);
    let mut merged = AppArmorProfile::new(
        base.metadata.name.as_deref().unwrap_or_default(),
        AppArmorProfileSpec {
            state: base.spec.effective_state(),
            disabled: None,
            mode: if complain {
                AppArmorMode::Complain
            } else {
                AppArmorMode::Enforce
            },
            complain_mode: None,
            policy: None,
            abstract_: (abs != AppArmorAbstract::default()).then_some(abs),
        },
    );
    merged.metadata = base.metadata.clone();
    Ok(merged)
}

/// Whether a profile keeps denying `path`: it denies it too, or allows nothing the deny could
/// take away (no allowed path or glob that may match a path `path` matches: [`may_overlap`]).
fn still_denied(path: &String, e: &AppArmorExecutable, f: &AppArmorFilesystem) -> bool {
    if f.denied_paths.as_ref().is_some_and(|v| v.contains(path)) {
        return true;
    }
    ![
        &e.allowed_executables,
        &e.allowed_libraries,
        &f.read_only_paths,
        &f.write_only_paths,
        &f.read_write_paths,
    ]
    .into_iter()
    .flatten()
    .flatten()
    .any(|allowed| may_overlap(path, allowed))
}

fn union(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> Option<Vec<String>> {
    let set: BTreeSet<&String> = a.iter().chain(b.iter()).flatten().collect();
    (!set.is_empty()).then(|| set.into_iter().cloned().collect())
}

fn or(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), _) | (_, Some(false)) => Some(false),
        (None, None) => None,
    }
}
