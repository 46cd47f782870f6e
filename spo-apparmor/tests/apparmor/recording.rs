//! Profiles from recordings, and the union merge.

use std::collections::BTreeSet;

use proptest::prelude::*;
use spo_apparmor::reader::{Rule, read_profile};
use spo_apparmor::recording::{COLLAPSE_THRESHOLD, profile_from_recording};
use spo_apparmor::{merge_profiles, render_and_check, render_profile};
use spo_model::AppArmorProfile;
use spo_model::apparmor::AppArmorMode;
use spo_model::observed::{FileAccess, Recording, SocketUse};

use crate::support::{fixture, require_parser};

fn access(read: bool, write: bool, exec: bool) -> FileAccess {
    FileAccess { read, write, exec }
}

fn sample_recording() -> Recording {
    let mut rec = Recording::default();
    rec.executables
        .extend(["/usr/bin/python3.11".to_owned(), "/bin/sh".to_owned()]);
    rec.libraries.insert("/usr/lib/x86_64-linux-gnu/libc.so.6".to_owned());
    for (path, a) in [
        ("/etc/passwd", access(true, false, false)),
        ("/proc/4242/status", access(true, false, false)),
        ("/proc/4242/task/4243/comm", access(true, true, false)),
        ("/var/log/app.log", access(false, true, false)),
        ("/var/lib/app/state.db", access(true, true, false)),
        ("/usr/lib/python3.11/lib-dynload/_ssl.so", access(true, false, true)),
        ("/usr/bin/python3.11", access(true, false, true)),
        (
            "/var/lib/containers/storage/overlay/3f4e5d6c7b8a90123f4e5d6c7b8a9012/merged/x",
            access(true, false, false),
        ),
        ("pipe:[55]", access(true, true, false)),
        ("/tmp/we\"ird\nname", access(true, true, false)),
    ] {
        rec.files.insert(path.to_owned(), a);
    }
    for i in 0..=COLLAPSE_THRESHOLD {
        rec.files
            .insert(format!("/usr/share/zoneinfo/Zone{i}"), access(true, false, false));
    }
    for (domain, type_) in [
        ("AF_INET", "SOCK_STREAM"),
        ("AF_INET6", "SOCK_DGRAM|SOCK_CLOEXEC"),
        ("AF_UNIX", "SOCK_STREAM"),
        ("AF_NETLINK", "SOCK_DGRAM"),
    ] {
        rec.sockets.insert(SocketUse {
            domain: domain.into(),
            type_: type_.into(),
            protocol: 0,
        });
    }
    rec.capabilities.insert("CAP_NET_BIND_SERVICE".into(), true);
    rec.capabilities.insert("sys_admin".into(), false);
    rec.capabilities.insert("cap_made_up".into(), true);
    rec
}

#[test]
fn a_recording_becomes_a_sorted_normalised_profile() {
    let out = profile_from_recording("recorded-app", &sample_recording());
    let yaml = serde_norway::to_string(&out.profile.spec).expect("yaml");
    insta::assert_snapshot!("recorded_spec", yaml);
    assert_eq!(
        out.dropped,
        vec![
            "file \"pipe:[55]\": not an absolute canonical path".to_owned(),
            "socket AF_NETLINK/SOCK_DGRAM: the abstract profile has no rule for it (only TCP, UDP and raw)".to_owned(),
            "capability \"cap_made_up\": not a Linux capability".to_owned(),
        ]
    );
    // Equal recordings give equal profiles, whatever order they were filled in.
    assert_eq!(profile_from_recording("recorded-app", &sample_recording()), out);
    assert!(!out.profile.validate().has_errors());
}

#[test]
fn a_recorded_profile_compiles() {
    let Some(parser) = require_parser() else { return };
    let out = profile_from_recording("recorded-app", &sample_recording());
    render_and_check(&parser, &out.profile).unwrap_or_else(|e| panic!("{e}"));
}

fn path_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "/(etc|usr/lib|var/log|tmp)/[a-z]{1,3}",
        "/proc/[0-9]{1,5}/(status|maps|fd/[0-9]{1,2})",
        "/var/lib/[0-9a-f]{16,20}/[a-z]{1,4}",
        "/\\PC{1,12}",
        "[a-z:]{1,8}\\[[0-9]{1,3}\\]",
    ]
}

fn recording_strategy() -> impl Strategy<Value = Recording> {
    (
        proptest::collection::btree_set(path_strategy(), 0..6),
        proptest::collection::btree_set(path_strategy(), 0..6),
        proptest::collection::btree_map(path_strategy(), (any::<bool>(), any::<bool>(), any::<bool>()), 0..24),
        proptest::collection::btree_map("(cap_)?[a-z_]{3,12}|CAP_NET_ADMIN|chown", any::<bool>(), 0..4),
    )
        .prop_map(|(executables, libraries, files, capabilities)| Recording {
            executables,
            libraries,
            files: files.into_iter().map(|(p, (r, w, x))| (p, access(r, w, x))).collect(),
            capabilities,
            ..Recording::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever was recorded, the profile is valid, renders, reads back, and every list is
    /// sorted without duplicates.
    #[test]
    fn recorded_profiles_always_render(rec in recording_strategy()) {
        let out = profile_from_recording("rec", &rec);
        let rendered = render_profile(&out.profile);
        prop_assert!(rendered.is_ok(), "{:?}", rendered.err());
        let rendered = rendered.expect("checked");
        prop_assert!(read_profile(&rendered.text).is_ok());
        let abs = out.profile.spec.abstract_.clone().unwrap_or_default();
        let fs = abs.filesystem.unwrap_or_default();
        let ex = abs.executable.unwrap_or_default();
        for list in [fs.read_only_paths, fs.write_only_paths, fs.read_write_paths, ex.allowed_executables, ex.allowed_libraries].into_iter().flatten() {
            let mut sorted = list.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(&sorted, &list);
        }
    }

    /// The merge is a union: commutative on the rules, idempotent, and keeps every allow
    /// rule of both sides.
    #[test]
    fn merge_is_a_union(a in recording_strategy(), b in recording_strategy(), complain in any::<bool>()) {
        let mut pa = profile_from_recording("m", &a).profile;
        let pb = profile_from_recording("m", &b).profile;
        if complain {
            pa.spec.mode = AppArmorMode::Complain;
        }
        let ab = merge_profiles(&pa, &pb).expect("merge");
        let ba = merge_profiles(&pb, &pa).expect("merge");
        prop_assert_eq!(&ab.spec, &ba.spec);
        prop_assert_eq!(&merge_profiles(&ab, &ab).expect("merge").spec, &ab.spec);
        prop_assert_eq!(ab.spec.mode == AppArmorMode::Complain, complain);
        let allow = |p: &AppArmorProfile| -> BTreeSet<Rule> {
            let text = render_profile(p).expect("render").text;
            read_profile(&text).expect("read").rules.into_iter().map(|(_, r)| r).filter(|r| !matches!(r, Rule::File { deny: true, .. } | Rule::Network { deny: true, .. })).collect()
        };
        let merged = allow(&ab);
        let mut a_enforce = pa.clone();
        a_enforce.spec.mode = ab.spec.mode;
        let mut b_mode = pb.clone();
        b_mode.spec.mode = ab.spec.mode;
        prop_assert!(allow(&a_enforce).is_subset(&merged));
        prop_assert!(allow(&b_mode).is_subset(&merged));
    }
}

#[test]
fn merge_drops_a_deny_whose_glob_meets_a_path_the_other_side_allows() {
    let mut a = fixture("web-enforce");
    let mut b = fixture("report-complain");
    b.metadata.name = Some("other".into());
    let fs = |p: &mut spo_model::apparmor::AppArmorProfile| {
        p.spec
            .abstract_
            .as_mut()
            .and_then(|x| x.filesystem.as_mut())
            .expect("fs")
            .clone()
    };
    let mut fs_a = fs(&mut a);
    fs_a.denied_paths = Some(vec![
        "/var/secrets/**".into(),
        "/etc/passwd".into(),
        "/srv/data/private.db".into(),
    ]);
    let mut fs_b = fs(&mut b);
    fs_b.read_only_paths = Some(vec![
        "/var/secrets/app.key".into(),
        "/etc/h*".into(),
        "/srv/data/*.db".into(),
    ]);
    fs_b.denied_paths = None;
    for (p, f) in [(&mut a, fs_a), (&mut b, fs_b)] {
        p.spec.abstract_.as_mut().expect("abstract").filesystem = Some(f);
    }
    let merged = merge_profiles(&a, &b).expect("merge");
    let denied = merged
        .spec
        .abstract_
        .as_ref()
        .and_then(|x| x.filesystem.as_ref())
        .and_then(|f| f.denied_paths.clone());
    // a's glob deny would take b's app.key away, and b's glob allow covers a's private.db:
    // both denies go. /etc/passwd is not among /etc/h*, so it stays denied.
    assert_eq!(denied, Some(vec!["/etc/passwd".to_owned()]));
}

#[test]
fn merge_keeps_a_deny_only_where_no_side_allows_the_path() {
    let mut a = fixture("web-enforce");
    let mut b = fixture("report-complain");
    b.metadata.name = Some("other".into());
    let fs_b = b
        .spec
        .abstract_
        .as_mut()
        .and_then(|x| x.filesystem.as_mut())
        .expect("fs");
    fs_b.read_only_paths = Some(vec!["/root/**".into()]);
    fs_b.denied_paths = Some(vec!["/etc/shadow".into(), "/etc/report-builder/secret.key".into()]);
    let merged = merge_profiles(&a, &b).expect("merge");
    assert_eq!(merged.metadata.name.as_deref(), Some("web-frontend"));
    assert_eq!(merged.spec.mode, AppArmorMode::Complain);
    let fs = merged
        .spec
        .abstract_
        .as_ref()
        .and_then(|x| x.filesystem.as_ref())
        .expect("fs");
    // /root/** is allowed by b, so a's deny goes; /etc/shadow is denied by both;
    // secret.key is denied by b and not allowed by a.
    assert_eq!(
        fs.denied_paths,
        Some(vec![
            "/etc/report-builder/secret.key".to_owned(),
            "/etc/shadow".to_owned()
        ])
    );
    let net = merged
        .spec
        .abstract_
        .as_ref()
        .and_then(|x| x.network.as_ref())
        .expect("net");
    assert_eq!(
        net.allow_raw,
        Some(true),
        "b allows raw sockets, a denied them explicitly"
    );
    a.spec.policy = Some("profile web-frontend { }".into());
    let err = merge_profiles(&a, &b).expect_err("raw");
    assert!(err.to_string().contains("raw policy, which cannot be merged"), "{err}");
}
