//! Structural checks of rendered policy, shared by the property tests and the fuzz targets.
//!
//! Each check reads rendered CIL back with our own reader and compares it with what the spec
//! says, computed here independently of the renderer (as plain strings), so a user string that
//! changed the structure of the output (an extra statement, a closed block, a rule with more
//! permissions) is caught.

use std::collections::BTreeSet;

use spo_model::contract::SecurityProfile;
use spo_model::selinux::{PolicyRefKind, RawSelinuxProfile, SELF_LABEL, SelinuxMode, SelinuxProfile};

use crate::cil::{Expr, parse};
use crate::render::{RenderContext, RenderedModule, render_selinux_profile};
use crate::templates::template;

/// The statements of the single block in `text`, as written text, or why there is not exactly
/// one block named `name`.
fn block_statements(text: &str, name: &str) -> Result<Vec<String>, String> {
    let top = parse(text).map_err(|e| format!("rendered CIL does not read back: {e}"))?;
    let [block] = top.as_slice() else {
        return Err(format!("{} top-level statements, expected one block", top.len()));
    };
    let items = block.as_list().unwrap_or_default();
    if block.keyword() != Some("block") || items.get(1).and_then(Expr::as_symbol) != Some(name) {
        return Err(format!("the top-level statement is not (block {name} ...): {block}"));
    }
    Ok(items.iter().skip(2).map(ToString::to_string).collect())
}

/// The statements a SelinuxProfile's block must hold, in order, as text.
pub fn expected_statements(profile: &SelinuxProfile) -> Vec<String> {
    let spec = &profile.spec;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut declared = false;
    for r in &spec.inherit {
        if seen.insert(r.name.clone()) {
            declared |=
                r.kind == PolicyRefKind::SelinuxProfile || template(&r.name).is_some_and(|t| t.declares_process);
            out.push(format!("(blockinherit {})", r.name));
        }
    }
    if !declared {
        out.push("(type process)".to_owned());
        out.push("(roletype system_r process)".to_owned());
        out.push("(typeattributeset domain (process))".to_owned());
    }
    for (label, classes) in spec.allow.iter().flatten() {
        let target = if label == SELF_LABEL { "process" } else { label };
        for (class, perms) in classes {
            let perms: BTreeSet<&str> = perms.iter().map(String::as_str).collect();
            if !perms.is_empty() {
                let perms: Vec<&str> = perms.into_iter().collect();
                out.push(format!("(allow process {target} ({class} ({})))", perms.join(" ")));
            }
        }
    }
    if spec.effective_mode() == SelinuxMode::Permissive {
        out.push("(typepermissive process)".to_owned());
    }
    out
}

/// Checks that `module` is exactly one block named after `profile` holding exactly the
/// statements its spec means.
pub fn verify_selinux_module(profile: &SelinuxProfile, module: &RenderedModule) -> Result<(), String> {
    let got = block_statements(&module.text, profile.name())?;
    let want = expected_statements(profile);
    if got != want {
        return Err(format!("block holds {got:?}, the spec means {want:?}"));
    }
    Ok(())
}

/// Checks that `module` is exactly one block named after `profile` holding exactly the
/// statements of its `spec.policy`, and that nothing in it is an `in` statement.
pub fn verify_raw_module(profile: &RawSelinuxProfile, module: &RenderedModule) -> Result<(), String> {
    let got = block_statements(&module.text, profile.name())?;
    let want: Vec<String> = parse(&profile.spec.policy)
        .map_err(|e| format!("accepted policy does not parse: {e}"))?
        .iter()
        .map(ToString::to_string)
        .collect();
    if got != want {
        return Err(format!("block holds {got:?}, the policy says {want:?}"));
    }
    let top = parse(&module.text).map_err(|e| e.to_string())?;
    for (e, _) in crate::raw::statement_positions(&top).into_iter().skip(1) {
        let keyword = e.keyword().unwrap_or_default();
        if !(crate::raw::ALLOWED_STATEMENTS.contains(&keyword) || matches!(keyword, "true" | "false")) {
            return Err(format!("statement {keyword:?} was written: {e}"));
        }
    }
    Ok(())
}

/// Fuzz entry: arbitrary bytes as CIL. Whatever reads must write and read back to the same
/// text; reading must never panic.
pub fn fuzz_cil_reader(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(exprs) = parse(text) else { return };
    let written: Vec<String> = exprs.iter().map(ToString::to_string).collect();
    let again = parse(&written.join("\n")).unwrap_or_else(|e| panic!("written CIL does not read back: {e}"));
    let rewritten: Vec<String> = again.iter().map(ToString::to_string).collect();
    assert_eq!(written, rewritten, "writing is not a fixed point");
}

/// Fuzz entry: arbitrary bytes as a SelinuxProfile (JSON) and as a RawSelinuxProfile's policy.
/// Rendering must never panic, and whatever renders must have exactly the intended structure.
pub fn fuzz_render(data: &[u8]) {
    if let Ok(profile) = serde_json::from_slice::<SelinuxProfile>(data)
        && let Ok(module) = render_selinux_profile(&profile, &RenderContext::default())
    {
        verify_selinux_module(&profile, &module).unwrap_or_else(|e| panic!("{e}"));
    }
    if let Ok(policy) = std::str::from_utf8(data) {
        let profile = RawSelinuxProfile::new(
            "fuzz",
            spo_model::selinux::RawSelinuxProfileSpec {
                state: Default::default(),
                disabled: None,
                policy: policy.to_owned(),
            },
        );
        if let Ok(module) = crate::raw::render_raw_selinux_profile(&profile) {
            verify_raw_module(&profile, &module).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
