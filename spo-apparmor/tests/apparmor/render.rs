//! Rendered text: snapshots, the real parser's verdict, our reader, field-mapped errors.

use spo_apparmor::reader::{Rule, read_profile};
use spo_apparmor::render::{ENFORCE_DENY_RULES, RenderedProfile};
use spo_apparmor::validate::{Diagnostic, PolicySummary, ProfileValidator, Verdict};
use spo_apparmor::{AppArmorError, check_profile, render_and_check, render_profile};
use spo_model::AppArmorProfile;
use spo_model::apparmor::AppArmorMode;

use crate::support::{fixture, fixtures, require_parser};

#[test]
fn snapshots_of_every_fixture() {
    for (stem, profile) in fixtures() {
        let rendered = render_profile(&profile).unwrap_or_else(|e| panic!("{stem}: {e}"));
        insta::assert_snapshot!(stem, rendered.text);
    }
}

#[test]
fn every_fixture_compiles_with_apparmor_parser() {
    let Some(parser) = require_parser() else { return };
    for (stem, profile) in fixtures() {
        let rendered = render_and_check(&parser, &profile).unwrap_or_else(|e| panic!("{stem}: {e}"));
        // The profile is closed by its last line, and nothing follows it.
        assert!(rendered.text.ends_with("\n}\n"), "{stem}:\n{}", rendered.text);
        assert_eq!(rendered.text.matches("\n}\n").count(), 1, "{stem}:\n{}", rendered.text);
    }
}

/// The rules a profile should render to, computed straight from the spec's meaning.
fn expected_rules(profile: &AppArmorProfile) -> Vec<Rule> {
    let enforce = profile.spec.effective_mode() == AppArmorMode::Enforce;
    let abs = profile.spec.abstract_.clone().unwrap_or_default();
    let ex = abs.executable.unwrap_or_default();
    let fs = abs.filesystem.unwrap_or_default();
    let file = |deny: bool, path: &String, perms: &str| Rule::File {
        deny,
        path: path.clone(),
        perms: perms.to_owned(),
    };
    let mut out = vec![Rule::Include("<abstractions/base>".into())];
    let lists = [
        (&ex.allowed_executables, "ixr", None, false),
        (&ex.allowed_libraries, "mr", None, false),
        (&fs.read_only_paths, "r", Some("wlk"), false),
        (&fs.write_only_paths, "wlk", Some("r"), false),
        (&fs.read_write_paths, "rwlk", None, false),
        (&fs.denied_paths, "rwmlkx", None, true),
    ];
    for (values, perms, companion, deny) in lists {
        let values = values.clone().unwrap_or_default();
        out.extend(values.iter().map(|v| file(deny, v, perms)));
        if let (true, Some(c)) = (enforce, companion) {
            out.extend(values.iter().map(|v| file(true, v, c)));
        }
    }
    if let Some(net) = abs.network {
        let p = net.allowed_protocols.unwrap_or_default();
        let network = |deny: bool, a: &str| Rule::Network {
            deny,
            args: vec![a.to_owned()],
        };
        if p.allow_tcp == Some(true) {
            out.push(network(false, "tcp"));
        }
        if p.allow_udp == Some(true) {
            out.push(network(false, "udp"));
        }
        match net.allow_raw {
            Some(true) => out.push(network(false, "raw")),
            Some(false) if enforce => out.push(network(true, "raw")),
            _ => {}
        }
    }
    for cap in abs.capability.and_then(|c| c.allowed_capabilities).unwrap_or_default() {
        out.push(Rule::Capability {
            deny: false,
            names: vec![cap],
        });
    }
    if enforce {
        for r in ENFORCE_DENY_RULES {
            let parsed = read_profile(&format!("profile x {{\n{r}\n}}\n")).expect("deny block reads");
            out.extend(parsed.rules.into_iter().map(|(_, r)| r));
        }
    }
    out
}

#[test]
fn our_reader_sees_exactly_the_spec_in_every_abstract_fixture() {
    for (stem, profile) in fixtures() {
        if profile.spec.policy.is_some() {
            continue;
        }
        let rendered = render_profile(&profile).expect("render");
        let read = read_profile(&rendered.text).unwrap_or_else(|e| panic!("{stem}: {e}\n{}", rendered.text));
        assert_eq!(read.preamble, vec!["<tunables/global>"], "{stem}");
        assert_eq!(read.name, profile.metadata.name.clone().expect("name"), "{stem}");
        let mode = match profile.spec.effective_mode() {
            AppArmorMode::Enforce => "enforce",
            AppArmorMode::Complain => "complain",
        };
        assert_eq!(
            read.flags,
            vec![mode, "attach_disconnected", "mediate_deleted"],
            "{stem}"
        );
        let rules: Vec<Rule> = read.rules.into_iter().map(|(_, r)| r).collect();
        assert_eq!(rules, expected_rules(&profile), "{stem}");
    }
}

#[test]
fn every_rule_line_knows_its_field() {
    let rendered = render_profile(&fixture("web-enforce")).expect("render");
    let origin_of = |needle: &str| {
        let (n, _) = rendered
            .text
            .lines()
            .enumerate()
            .find(|(_, l)| l.trim() == needle)
            .unwrap_or_else(|| panic!("no line {needle:?}"));
        rendered.origin(n + 1).map(|o| o.field.to_string())
    };
    assert_eq!(
        origin_of("\"/srv/My Site/index.html\" r,").as_deref(),
        Some("spec.abstract.filesystem.readOnlyPaths[2]")
    );
    assert_eq!(
        origin_of("deny \"/srv/My Site/index.html\" wlk,").as_deref(),
        Some("spec.abstract.filesystem.readOnlyPaths[2]")
    );
    assert_eq!(
        origin_of("deny /root/** rwmlkx,").as_deref(),
        Some("spec.abstract.filesystem.deniedPaths[1]")
    );
    assert_eq!(
        origin_of("capability setgid,").as_deref(),
        Some("spec.abstract.capability.allowedCapabilities[2]")
    );
    assert_eq!(
        origin_of("deny network raw,").as_deref(),
        Some("spec.abstract.network.allowRaw")
    );
    assert_eq!(origin_of("deny @{PROC}/kcore rwklx,"), None);
}

/// A validator that rejects whatever line it is told to, the way apparmor_parser reports it.
struct RejectLine(Diagnostic);

impl ProfileValidator for RejectLine {
    fn compile(&self, _: &str) -> Result<Verdict, AppArmorError> {
        Ok(Verdict::Rejected(vec![self.0.clone()]))
    }
    fn summarize(&self, _: &str) -> Result<PolicySummary, AppArmorError> {
        Ok(PolicySummary::default())
    }
}

fn line_of(rendered: &RenderedProfile, needle: &str) -> usize {
    rendered
        .text
        .lines()
        .position(|l| l.trim() == needle)
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line {needle:?}"))
}

#[test]
fn parser_complaints_are_reported_at_field_paths() {
    let profile = fixture("web-enforce");
    let rendered = render_profile(&profile).expect("render");
    let line = line_of(&rendered, "/usr/bin/{envsubst,sed} ixr,");
    let by_line = RejectLine(Diagnostic {
        line: Some(line),
        input: None,
        message: "syntax error, unexpected TOK_ID.".into(),
    });
    let err = render_and_check(&by_line, &profile).expect_err("rejected");
    let AppArmorError::Rejected { problems, .. } = &err else {
        panic!("{err}")
    };
    let p = problems.iter().next().expect("one problem");
    assert_eq!(p.path.as_str(), "spec.abstract.executable.allowedExecutables[2]");
    assert_eq!(
        p.message,
        "\"/usr/bin/{envsubst,sed}\": apparmor_parser: syntax error, unexpected TOK_ID"
    );
    assert!(
        p.hint.as_deref().is_some_and(|h| h.contains(&format!("line {line}"))),
        "{p}"
    );

    let by_input = RejectLine(Diagnostic {
        line: None,
        input: Some("/var/log/nginx/{access,error}.log".into()),
        message: "Regex grouping error: Invalid number of items between {}".into(),
    });
    let err = render_and_check(&by_input, &profile).expect_err("rejected");
    let p = err.problems().and_then(|p| p.iter().next()).expect("problem").clone();
    assert_eq!(p.path.as_str(), "spec.abstract.filesystem.writeOnlyPaths[0]");
    assert!(
        err.to_string()
            .contains("apparmor_parser rejected AppArmorProfile web-frontend"),
        "{err}"
    );
}

fn raw_profile(name: &str, mode: AppArmorMode, policy: &str) -> AppArmorProfile {
    let mut p = fixture("raw-policy");
    p.metadata.name = Some(name.to_owned());
    p.spec.mode = mode;
    p.spec.policy = Some(policy.to_owned());
    p
}

#[test]
fn raw_policy_errors_point_at_policy_lines() {
    let Some(parser) = require_parser() else { return };
    let policy = "#include <tunables/global>\nprofile raw {\n  /usr/bin/x ix,\n  /etc/y rq zz,\n}\n";
    let err = render_and_check(&parser, &raw_profile("raw", AppArmorMode::Enforce, policy)).expect_err("syntax");
    let problems: Vec<String> = err
        .problems()
        .expect("problems")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("spec.policy: line 4: apparmor_parser: ")),
        "{problems:#?}"
    );

    let bad_regex = "profile raw {\n  /a/{b r,\n}\n";
    let err = render_and_check(&parser, &raw_profile("raw", AppArmorMode::Enforce, bad_regex)).expect_err("regex");
    let problems: Vec<String> = err
        .problems()
        .expect("problems")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("spec.policy: line 2: apparmor_parser: Regex grouping error")),
        "{problems:#?}"
    );
}

#[test]
fn raw_policy_must_define_its_own_profile_in_the_spec_mode() {
    let Some(parser) = require_parser() else { return };
    let cases = [
        (
            "raw",
            AppArmorMode::Enforce,
            "profile other { }\n",
            "must define exactly one, named \"raw\"",
        ),
        (
            "raw",
            AppArmorMode::Enforce,
            "profile raw { }\nprofile docker-default { }\n",
            "[\"docker-default\", \"raw\"]",
        ),
        (
            "raw",
            AppArmorMode::Enforce,
            "profile raw flags=(unconfined) { }\n",
            "in unconfined mode",
        ),
        (
            "raw",
            AppArmorMode::Enforce,
            "profile raw flags=(complain) { }\n",
            "in complain mode, but spec.mode is enforce",
        ),
        (
            "raw",
            AppArmorMode::Complain,
            "profile raw { }\n",
            "in enforce mode, but spec.mode is complain",
        ),
        (
            "raw",
            AppArmorMode::Enforce,
            "profile raw {\n  ^hat flags=(complain) { }\n}\n",
            "\"hat\" of the policy is in complain mode",
        ),
    ];
    for (name, mode, policy, want) in cases {
        let err = render_and_check(&parser, &raw_profile(name, mode, policy)).expect_err(policy);
        assert!(err.to_string().contains(want), "{policy:?}: {err}");
        assert!(
            err.problems()
                .is_some_and(|p| p.iter().all(|p| p.path.as_str() == "spec.policy"))
        );
    }
    for ok in ["profile raw { }\n", "profile raw flags=(enforce) {\n  ^hat { }\n}\n"] {
        render_and_check(&parser, &raw_profile("raw", AppArmorMode::Enforce, ok))
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn raw_policy_includes_are_restricted() {
    for bad in [
        "#include \"/etc/shadow\"\nprofile raw { }\n",
        "profile raw {\n  #include </etc/shadow>\n}\n",
        "profile raw {\n  include <../../etc/shadow>\n}\n",
        "profile raw {\n  include if exists \"/root/x\"\n}\n",
    ] {
        let problems = check_profile(&raw_profile("raw", AppArmorMode::Enforce, bad));
        let errors: Vec<String> = problems.errors().map(ToString::to_string).collect();
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.policy: line ") && e.contains("is not allowed")),
            "{bad:?}: {errors:#?}"
        );
    }
    let fine = "#include <tunables/global>\nprofile raw {\n  include if exists <local/raw>\n}\n";
    assert!(!check_profile(&raw_profile("raw", AppArmorMode::Enforce, fine)).has_errors());
}

#[test]
fn every_example_manifest_compiles_with_apparmor_parser() {
    let Some(parser) = require_parser() else { return };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        for doc in spo_model::parse_source(&path.display().to_string(), &text).expect("parse") {
            if let spo_model::Outcome::Valid(spo_model::AnyObject::AppArmorProfile(p)) = doc.outcome {
                render_and_check(&parser, &p).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
    }
    assert!(seen >= 4, "only {seen} AppArmorProfiles in examples/manifests");
}
