//! AVC denials (neutral records) -> SelinuxProfile.

use std::collections::{BTreeMap, BTreeSet};

use spo_model::observed::Recording;
use spo_model::selinux::{PolicyRef, PolicyRefKind, SELF_LABEL, SelinuxProfileSpec};

use crate::error::SelinuxError;
use crate::ident::{NameRole, check_identifier};

/// A profile that allows what the recording's AVC denials show was denied: rules grouped by
/// target type and class with the permissions merged and sorted, the recorded process types
/// (every denial's source type) written as `@self`, inheriting the `container` template.
/// A denial holding a string that is not a SELinux name is an error naming its index.
pub fn spec_from_recording(recording: &Recording) -> Result<SelinuxProfileSpec, SelinuxError> {
    let target = &recording.target.name;
    let bad = |index: usize, message: String| SelinuxError::Recording {
        target: target.clone(),
        index,
        message,
    };
    let sources: BTreeSet<&str> = recording.avc_denials.iter().map(|d| d.source_type.as_str()).collect();
    let mut allow: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (index, d) in recording.avc_denials.iter().enumerate() {
        // The process's type may be a block's (`selinuxrecording.process`, the domain log
        // recording runs containers in): it is only compared, never written.
        check_qualified_type(&d.source_type).map_err(|e| bad(index, format!("sourceType: {e}")))?;
        // A target that is a recorded process is written as `@self`; any other is written as
        // it is, so it must be a plain name.
        let is_self = sources.contains(d.target_type.as_str());
        if !is_self {
            check_identifier(&d.target_type, NameRole::Type).map_err(|e| bad(index, format!("targetType: {e}")))?;
        }
        check_identifier(&d.class, NameRole::Class).map_err(|e| bad(index, format!("class: {e}")))?;
        if d.permissions.is_empty() {
            return Err(bad(index, "no permissions".to_owned()));
        }
        for p in &d.permissions {
            check_identifier(p, NameRole::Permission).map_err(|e| bad(index, format!("permissions: {e}")))?;
        }
        let label = if is_self {
            SELF_LABEL.to_owned()
        } else {
            d.target_type.clone()
        };
        let perms = allow.entry(label).or_default().entry(d.class.clone()).or_default();
        perms.extend(d.permissions.iter().cloned());
    }
    for classes in allow.values_mut() {
        for perms in classes.values_mut() {
            perms.sort();
            perms.dedup();
        }
    }
    Ok(SelinuxProfileSpec {
        state: Default::default(),
        disabled: None,
        inherit: vec![PolicyRef {
            kind: PolicyRefKind::System,
            name: "container".to_owned(),
        }],
        mode: Default::default(),
        permissive: None,
        allow: if allow.is_empty() { None } else { Some(allow) },
    })
}

/// A type name, plain or qualified by blocks (`a.b.process`): every part an identifier.
fn check_qualified_type(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return check_identifier(value, NameRole::Type);
    }
    value
        .split('.')
        .try_for_each(|part| check_identifier(part, NameRole::Type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spo_model::observed::AvcDenial;

    fn denial(s: &str, t: &str, c: &str, p: &[&str]) -> AvcDenial {
        AvcDenial {
            source_type: s.into(),
            target_type: t.into(),
            class: c.into(),
            permissions: p.iter().map(|x| (*x).to_owned()).collect(),
        }
    }

    #[test]
    fn groups_by_type_and_class_and_maps_the_process_to_self() {
        let mut rec = Recording::default();
        rec.avc_denials.extend([
            denial("container_t", "var_log_t", "file", &["write", "open"]),
            denial("container_t", "var_log_t", "file", &["append", "open"]),
            denial("container_t", "var_log_t", "dir", &["search"]),
            denial("container_t", "container_t", "tcp_socket", &["listen"]),
            denial("container_t", "http_port_t", "tcp_socket", &["name_bind"]),
        ]);
        let spec = spec_from_recording(&rec).expect("spec");
        let allow = spec.allow.expect("allow");
        assert_eq!(allow.len(), 3);
        assert_eq!(allow["@self"]["tcp_socket"], vec!["listen"]);
        assert_eq!(allow["var_log_t"]["file"], vec!["append", "open", "write"]);
        assert_eq!(allow["var_log_t"]["dir"], vec!["search"]);
        assert_eq!(spec.inherit[0].name, "container");
    }

    #[test]
    fn a_block_qualified_process_type_is_the_recorded_self() {
        let mut rec = Recording::default();
        rec.avc_denials.extend([
            denial("selinuxrecording.process", "etc_t", "file", &["read"]),
            denial(
                "selinuxrecording.process",
                "selinuxrecording.process",
                "unix_stream_socket",
                &["connectto"],
            ),
        ]);
        let spec = spec_from_recording(&rec).expect("spec");
        let allow = spec.allow.expect("allow");
        assert_eq!(allow["etc_t"]["file"], vec!["read"]);
        assert_eq!(allow["@self"]["unix_stream_socket"], vec!["connectto"]);
        // Qualified, but every part must still be a name; and only the process may be one.
        for bad in ["a..b", ".process", "a.b)c", "block.process.", "a.(allow"] {
            let mut rec = Recording::default();
            rec.avc_denials.insert(denial(bad, "etc_t", "file", &["read"]));
            assert!(spec_from_recording(&rec).is_err(), "{bad:?}");
        }
        let mut rec = Recording::default();
        rec.avc_denials
            .insert(denial("container_t", "other.process", "file", &["read"]));
        let err = spec_from_recording(&rec).expect_err("a qualified target cannot be an allow key");
        assert!(err.to_string().contains("targetType"), "{err}");
    }

    #[test]
    fn hostile_records_are_refused_with_their_index() {
        let mut rec = Recording::default();
        rec.target.name = "demo".into();
        rec.avc_denials
            .insert(denial("container_t", "x_t", "file", &["read))) (allow"]));
        let err = spec_from_recording(&rec).expect_err("hostile");
        let text = err.to_string();
        assert!(
            text.contains("avc_denials[0]") && text.contains("permissions"),
            "{text}"
        );
    }
}
