//! Injection: hostile strings anywhere in a spec are refused with an error at their field,
//! or become exactly the one rule they were meant to be (checked by our reader, and by
//! apparmor_parser's own view of the compiled rules).

use proptest::prelude::*;
use spo_apparmor::reader::{Rule, read_profile};
use spo_apparmor::{AppArmorError, render_and_check, render_profile};
use spo_model::AppArmorProfile;
use spo_model::apparmor::{AppArmorCapability, AppArmorExecutable, AppArmorFilesystem, AppArmorMode};

use crate::support::{added, fixture, parser_entries, require_parser};

/// The six path lists: (field name, perms, deny).
const LISTS: [(&str, &str, bool); 6] = [
    ("executable.allowedExecutables", "ixr", false),
    ("executable.allowedLibraries", "mr", false),
    ("filesystem.readOnlyPaths", "r", false),
    ("filesystem.writeOnlyPaths", "wlk", false),
    ("filesystem.readWritePaths", "rwlk", false),
    ("filesystem.deniedPaths", "rwmlkx", true),
];

/// A complain-mode profile (no companions) whose only entry is `value` in list `which`.
fn profile_with(which: usize, value: &str) -> AppArmorProfile {
    let mut p = fixture("report-complain");
    let abs = p.spec.abstract_.get_or_insert_with(Default::default);
    abs.executable = Some(AppArmorExecutable::default());
    abs.filesystem = Some(AppArmorFilesystem::default());
    abs.network = None;
    let v = Some(vec![value.to_owned()]);
    let (e, f) = (
        abs.executable.as_mut().expect("set"),
        abs.filesystem.as_mut().expect("set"),
    );
    match which {
        0 => e.allowed_executables = v,
        1 => e.allowed_libraries = v,
        2 => f.read_only_paths = v,
        3 => f.write_only_paths = v,
        4 => f.read_write_paths = v,
        _ => f.denied_paths = v,
    }
    p
}

/// Strings built from the characters that matter to AppArmor's lexer and globs.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("..".to_owned()),
        Just("*".to_owned()),
        Just("**".to_owned()),
        Just("?".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just(",".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("^".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("#".to_owned()),
        Just("!".to_owned()),
        Just(" ".to_owned()),
        Just("\n".to_owned()),
        Just("\t".to_owned()),
        Just("\0".to_owned()),
        Just("@{".to_owned()),
        Just("{a,,b}".to_owned()),
        Just("{,,,}".to_owned()),
        Just("{x,{,},{,}}".to_owned()),
        Just("[#--]".to_owned()),
        Just("[a-]".to_owned()),
        Just("@{pid}".to_owned()),
        Just("@{nope}".to_owned()),
        Just(" r,\n  /etc/shadow rw,\n".to_owned()),
        Just("}\nprofile evil {".to_owned()),
        Just(" ix, capability sys_admin".to_owned()),
        "[a-z0-9._-]{1,6}",
        "\\PC{1,3}",
    ];
    prop_oneof![
        1 => proptest::collection::vec(piece.clone(), 0..10).prop_map(|v| v.concat()),
        3 => proptest::collection::vec(piece, 0..10).prop_map(|v| format!("/{}", v.concat())),
    ]
}

/// Mostly grammatical paths: globs, classes, alternations, variables, quoting characters.
fn globby() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z0-9._-]{1,6}",
        Just("/".to_owned()),
        Just("*".to_owned()),
        Just("**".to_owned()),
        Just("?".to_owned()),
        "\\[\\^?(-|[a-z!#' ]|[a-c]-[x-z]){1,4}\\]",
        "\\{[a-z*]{0,3}(,[a-z?]{0,3}){1,3}\\}",
        Just("{a,{b,c}}".to_owned()),
        Just("@{pid}".to_owned()),
        Just("@{HOME}".to_owned()),
        "[ #!'$&()<>^=+~%:@]{1,3}",
        "\\PL{1,2}",
    ];
    proptest::collection::vec(piece, 1..8).prop_map(|v| v.concat())
}

fn file_rules(text: &str) -> Vec<Rule> {
    read_profile(text)
        .unwrap_or_else(|e| panic!("our reader cannot read rendered text: {e}\n{text}"))
        .rules
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| !matches!(r, Rule::Include(_)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_path_is_refused_at_its_field_or_becomes_exactly_one_rule(which in 0..6usize, value in hostile()) {
        let profile = profile_with(which, &value);
        let (list, perms, deny) = LISTS[which];
        let field = format!("spec.abstract.{list}[0]");
        match render_profile(&profile) {
            Err(AppArmorError::Invalid { problems, .. }) => {
                prop_assert!(problems.errors().all(|p| p.path.as_str() == field), "{problems}");
                prop_assert!(problems.has_errors());
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
            Ok(rendered) => {
                let want = vec![Rule::File { deny, path: value.clone(), perms: perms.to_owned() }];
                prop_assert_eq!(file_rules(&rendered.text), want);
            }
        }
    }

    #[test]
    fn a_capability_is_refused_at_its_field_or_becomes_exactly_one_rule(value in hostile()) {
        let mut profile = profile_with(0, "/bin/true");
        profile.spec.abstract_.as_mut().expect("abstract").capability = Some(AppArmorCapability {
            allowed_capabilities: Some(vec![value.clone()]),
        });
        match render_profile(&profile) {
            Err(e) => {
                let problems = e.problems().expect("problems");
                prop_assert!(problems.has_errors(), "{problems}");
                prop_assert!(problems.errors().all(|p| p.path.as_str() == "spec.abstract.capability.allowedCapabilities[0]"), "{problems}");
            }
            Ok(rendered) => {
                let caps: Vec<Rule> = file_rules(&rendered.text).into_iter().filter(|r| matches!(r, Rule::Capability { .. })).collect();
                prop_assert_eq!(caps, vec![Rule::Capability { deny: false, names: vec![value.clone()] }]);
            }
        }
    }
}

/// A path our grammar accepts is accepted by apparmor_parser and becomes exactly one rule in
/// its own view of the compiled profile. Each case runs the parser up to three times (20-70 ms
/// each); refused inputs are counted, and enough must be accepted to reach the parser.
#[test]
fn apparmor_parser_agrees_that_an_accepted_path_is_one_rule() {
    use proptest::test_runner::{Config, TestRunner};
    use std::cell::Cell;
    let Some(parser) = require_parser() else { return };
    let cases = 200;
    let (accepted, refused) = (Cell::new(0usize), Cell::new(0usize));
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let strategy = (2..5usize, prop_oneof![1 => hostile(), 4 => globby()]);
    let outcome = runner.run(&strategy, |(which, suffix)| {
        let value = format!("/spo-test/{}", suffix.trim_start_matches('/'));
        let profile = profile_with(which, &value);
        let Ok(rendered) = render_profile(&profile) else {
            refused.set(refused.get() + 1);
            return Ok(());
        };
        accepted.set(accepted.get() + 1);
        let checked = render_and_check(&parser, &profile);
        prop_assert!(
            checked.is_ok(),
            "grammar accepted {value:?} but apparmor_parser did not: {:?}\n{}",
            checked.err(),
            rendered.text
        );
        let baseline = render_profile(&profile_with(which, "/spo-test/baseline")).expect("baseline");
        let before = parser_entries(&parser, &baseline.text);
        let after = parser_entries(&parser, &rendered.text);
        let extra = added(&before, &after);
        let missing = added(&after, &before);
        prop_assert_eq!(missing.len(), 1, "{:?} lost {:?}", value, missing);
        prop_assert_eq!(&missing[0].1, "/spo-test/baseline");
        prop_assert_eq!(extra.len(), 1, "{:?} gave {:?}", value, extra);
        let mode = match which {
            2 => "r",
            3 => "walk",
            _ => "rwalk",
        };
        prop_assert_eq!(&extra[0].0, mode);
        if !value.contains("@{") {
            prop_assert_eq!(&extra[0].1, &value);
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let (accepted, refused) = (accepted.get(), refused.get());
    eprintln!("apparmor_parser agreement: {accepted} accepted paths checked, {refused} refused by our grammar");
    // Four in five inputs are mostly grammatical: about 55 % reach the parser; the floor is
    // six deviations below that.
    assert!(
        accepted * 3 >= cases as usize,
        "only {accepted} of {cases} reached apparmor_parser"
    );
    assert!(refused >= 5, "the hostile inputs were never refused ({refused})");
}

#[test]
fn hostile_values_in_every_field_are_refused_precisely() {
    let cases: &[(usize, &str, &str)] = &[
        (0, "/bin/sh ix,\n  /** rwlkmix", "control character"),
        (1, "/lib/x.so\" mr, /** \"", "'\"'"),
        (2, "/etc/passwd, /etc/shadow", "',' outside an alternation"),
        (3, "/var/log/x}\nprofile evil {", "control character"),
        (4, "/tmp/{a", "'{' is never closed"),
        (5, "/etc/../shadow", "'..' component"),
        (2, "/a #comment", ""),
        (2, "/x/@{HOM}/y", "did you mean @{HOME}?"),
    ];
    for (which, value, want) in cases {
        let profile = profile_with(*which, value);
        match render_profile(&profile) {
            Err(e) => {
                let text = e.to_string();
                assert!(!want.is_empty(), "{value:?} refused: {text}");
                assert!(
                    text.contains(LISTS[*which].0) && text.contains(want),
                    "{value:?}: {text}"
                );
            }
            Ok(r) => {
                assert!(want.is_empty(), "{value:?} accepted:\n{}", r.text);
                assert!(r.text.contains("\"/a #comment\" r,"), "{}", r.text);
            }
        }
    }
    let mut bad_name = profile_with(0, "/bin/true");
    bad_name.metadata.name = Some("evil {\n".into());
    let err = render_profile(&bad_name).expect_err("name");
    assert!(err.to_string().contains("metadata.name"), "{err}");
    let mut mode = profile_with(0, "/bin/true");
    mode.spec.mode = AppArmorMode::Enforce;
    assert!(render_profile(&mode).is_ok());
}

/// One hostile entry in one list (or the capabilities) of an otherwise valid profile with an
/// entry in every list, either mode, any network flags: the library's round-trip check (also
/// the fuzz target's) holds, and enough cases render to reach it (a refused profile passes the
/// check without reaching it).
#[test]
fn one_hostile_entry_in_a_whole_profile_round_trips() {
    use proptest::test_runner::{Config, TestRunner};
    use std::cell::Cell;
    let valid = [
        "/usr/bin/app",
        "/usr/lib/libapp.so*",
        "/etc/app/**",
        "/var/log/app/*.log",
        "/var/lib/app/{data,cache}/**",
        "/etc/shadow",
    ];
    let cases = 1000;
    let (rendered, refused) = (Cell::new([0usize; 7]), Cell::new([0usize; 7]));
    let bump = |c: &Cell<[usize; 7]>, i: usize| {
        let mut v = c.get();
        v[i] += 1;
        c.set(v);
    };
    // Paths: hostile strings and mostly grammatical ones; capabilities: names good and bad.
    let entry = (0..7usize).prop_flat_map(|which| {
        let value = if which < 6 {
            prop_oneof![hostile(), globby().prop_map(|g| format!("/{}", g.trim_start_matches('/')))].boxed()
        } else {
            prop_oneof![
                2 => prop::sample::select(vec!["chown", "kill", "net_bind_service", "sys_admin"]).prop_map(str::to_owned),
                1 => "[a-z_ ,]{1,10}",
                1 => hostile(),
            ]
            .boxed()
        };
        (Just(which), value)
    });
    let strategy = (
        entry,
        any::<bool>(),
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
        ),
    );
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let outcome = runner.run(&strategy, |((which, value), complain, net)| {
        let mut lists: Vec<Vec<String>> = valid.iter().map(|v| vec![(*v).to_owned()]).collect();
        let mut caps = vec!["chown".to_owned()];
        if which < 6 {
            lists[which].push(value.clone());
        } else {
            caps.push(value.clone());
        }
        let mut p = profile_with(0, "/bin/true");
        p.spec.mode = if complain {
            AppArmorMode::Complain
        } else {
            AppArmorMode::Enforce
        };
        let abs = p.spec.abstract_.as_mut().expect("abstract");
        let e = abs.executable.as_mut().expect("executable");
        e.allowed_executables = Some(lists[0].clone());
        e.allowed_libraries = Some(lists[1].clone());
        let f = abs.filesystem.as_mut().expect("filesystem");
        f.read_only_paths = Some(lists[2].clone());
        f.write_only_paths = Some(lists[3].clone());
        f.read_write_paths = Some(lists[4].clone());
        f.denied_paths = Some(lists[5].clone());
        abs.capability = Some(AppArmorCapability {
            allowed_capabilities: Some(caps),
        });
        abs.network = Some(spo_model::apparmor::AppArmorNetwork {
            allow_raw: net.0,
            allowed_protocols: Some(spo_model::apparmor::AppArmorProtocols {
                allow_tcp: net.1,
                allow_udp: net.2,
            }),
        });
        if render_profile(&p).is_ok() {
            bump(&rendered, which);
        } else {
            bump(&refused, which);
        }
        let checked = spo_apparmor::reader::check_round_trip(&p);
        prop_assert!(checked.is_ok(), "{}", checked.err().unwrap_or_default());
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let (rendered, refused) = (rendered.get(), refused.get());
    eprintln!("round trip: rendered per field {rendered:?}, refused {refused:?}");
    for i in 0..7 {
        assert!(
            rendered[i] >= 20 && refused[i] >= 20,
            "field {i}: rendered {} refused {}",
            rendered[i],
            refused[i]
        );
    }
    assert!(
        rendered.iter().sum::<usize>() * 8 >= cases as usize,
        "fewer than an eighth reached the round-trip check: {rendered:?}"
    );
}

#[test]
fn the_fuzz_seeds_round_trip() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/apparmor_render");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("seed");
        assert_eq!(spo_apparmor::reader::fuzz_render(&bytes), Ok(()));
        seen += 1;
    }
    assert!(seen >= 5);
}
