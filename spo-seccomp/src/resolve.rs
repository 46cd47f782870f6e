//! Base profile resolution: following `baseProfileName` chains and unioning them.
//!
//! Where base profiles come from is a port, [`BaseResolver`]: [`MemoryResolver`] serves
//! profiles already in memory (the operator's cache, the files given to `spoc merge`) and
//! refuses `oci://` references; the node daemon answers those with a resolver that pulls
//! them (spo-operator's `daemon::oci`, through spo-oci).

use std::collections::BTreeMap;

use spo_model::SeccompProfileSpec;

use crate::SeccompError;
use crate::merge::union_of;

/// The deepest chain of base profiles the operator follows (upstream's limit): a profile may
/// have a base, whose base may have a base, and so on, 15 bases in all.
pub const MAX_BASE_DEPTH: usize = 15;

/// Looks up base profiles by the value of `baseProfileName`.
pub trait BaseResolver {
    /// The profile `reference` names (a SeccompProfile name or an `oci://` reference);
    /// `Ok(None)` when there is no such profile.
    fn resolve(&self, reference: &str) -> Result<Option<SeccompProfileSpec>, SeccompError>;
}

/// Base profiles held in memory, by SeccompProfile name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryResolver(pub BTreeMap<String, SeccompProfileSpec>);

impl MemoryResolver {
    /// An empty resolver.
    pub fn new() -> MemoryResolver {
        MemoryResolver::default()
    }

    /// Adds (or replaces) the profile called `name`, returning the one it replaces.
    pub fn insert(&mut self, name: impl Into<String>, spec: SeccompProfileSpec) -> Option<SeccompProfileSpec> {
        self.0.insert(name.into(), spec)
    }
}

impl FromIterator<(String, SeccompProfileSpec)> for MemoryResolver {
    fn from_iter<I: IntoIterator<Item = (String, SeccompProfileSpec)>>(iter: I) -> MemoryResolver {
        MemoryResolver(iter.into_iter().collect())
    }
}

impl BaseResolver for MemoryResolver {
    fn resolve(&self, reference: &str) -> Result<Option<SeccompProfileSpec>, SeccompError> {
        if reference.starts_with("oci://") {
            return Err(SeccompError::Resolve(format!(
                "OCI base profiles are not fetched here ({reference}); \
                 pull the profile (spoc pull) and give it as a file, or apply it as a \
                 SeccompProfile and name that in baseProfileName"
            )));
        }
        Ok(self.0.get(reference).cloned())
    }
}

/// A profile with every base profile unioned in.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedProfile {
    /// The union of the chain, with the named profile's `defaultAction`, `architectures`,
    /// `flags` and listener, and no `baseProfileName`.
    pub spec: SeccompProfileSpec,
    /// The profiles used, the named one first, then its base, its base's base, ...
    pub chain: Vec<String>,
}

/// Why a chain of base profiles cannot be resolved. Every variant names the chain.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// More than [`MAX_BASE_DEPTH`] bases.
    #[error(
        "base profile chain {} is deeper than {MAX_BASE_DEPTH} levels; \
         merge some of its profiles into one (spoc merge) to shorten it",
        chain_text(.chain)
    )]
    TooDeep {
        /// The chain up to and including the base one too many.
        chain: Vec<String>,
    },
    /// A profile is its own base, directly or through others.
    #[error("base profiles form a cycle: {}; remove one of these baseProfileName fields", chain_text(.cycle))]
    Cycle {
        /// The cycle, starting and ending with the same profile.
        cycle: Vec<String>,
    },
    /// `baseProfileName` names a profile that does not exist.
    #[error(
        "base profile {reference:?} does not exist (chain {}); create it or correct baseProfileName",
        chain_text_with(.chain, .reference)
    )]
    Missing {
        /// The missing profile.
        reference: String,
        /// The chain up to the profile that names it.
        chain: Vec<String>,
    },
    /// The resolver failed, such as for an `oci://` reference it cannot fetch.
    #[error("looking up base profile {reference:?} (chain {})", chain_text_with(.chain, .reference))]
    Lookup {
        /// The profile being looked up.
        reference: String,
        /// The chain up to the profile that names it.
        chain: Vec<String>,
        /// The resolver's error.
        #[source]
        source: Box<SeccompError>,
    },
}

impl ResolveError {
    /// The chain of profile names the error is about.
    pub fn chain(&self) -> &[String] {
        match self {
            ResolveError::TooDeep { chain }
            | ResolveError::Missing { chain, .. }
            | ResolveError::Lookup { chain, .. } => chain,
            ResolveError::Cycle { cycle } => cycle,
        }
    }
}

fn chain_text(chain: &[String]) -> String {
    chain.join(" -> ")
}

fn chain_text_with(chain: &[String], last: &str) -> String {
    let mut text = chain_text(chain);
    text.push_str(" -> ");
    text.push_str(last);
    text
}

/// Resolves the profile `name` with spec `spec`: follows `baseProfileName` through `resolver`
/// up to [`MAX_BASE_DEPTH`] bases and returns the [union](crate::merge::union) of the chain,
/// the named profile first (so its settings are kept and it wins ties), then its base, and so
/// on. Cycles, missing bases, chains that are too deep and resolver failures are errors that
/// name the chain. A profile without `baseProfileName` resolves to its canonical self.
pub fn resolve_profile(
    name: &str,
    spec: &SeccompProfileSpec,
    resolver: &dyn BaseResolver,
) -> Result<ResolvedProfile, ResolveError> {
    let mut chain = vec![name.to_owned()];
    let mut bases: Vec<SeccompProfileSpec> = Vec::new();
    let mut next = spec.base_profile_name.clone();
    while let Some(reference) = next {
        if let Some(start) = chain.iter().position(|n| *n == reference) {
            let mut cycle = chain.split_off(start);
            cycle.push(reference);
            return Err(ResolveError::Cycle { cycle });
        }
        // `chain` holds the named profile and the bases found so far.
        if chain.len() > MAX_BASE_DEPTH {
            chain.push(reference);
            return Err(ResolveError::TooDeep { chain });
        }
        let base = match resolver.resolve(&reference) {
            Ok(Some(base)) => base,
            Ok(None) => return Err(ResolveError::Missing { reference, chain }),
            Err(e) => {
                return Err(ResolveError::Lookup {
                    reference,
                    chain,
                    source: Box::new(e),
                });
            }
        };
        next = base.base_profile_name.clone();
        chain.push(reference);
        bases.push(base);
    }
    let bases: Vec<&SeccompProfileSpec> = bases.iter().collect();
    let mut spec = union_of(spec, &bases);
    spec.base_profile_name = None;
    Ok(ResolvedProfile { spec, chain })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::effective_actions;
    use spo_model::seccomp::{Arch, SeccompAction, SeccompSyscall};

    fn spec(default_action: SeccompAction, base: Option<&str>, allow: &[&str]) -> SeccompProfileSpec {
        SeccompProfileSpec {
            state: Default::default(),
            disabled: None,
            default_action,
            architectures: None,
            listener_path: None,
            listener_metadata: None,
            syscalls: Some(vec![SeccompSyscall {
                names: allow.iter().map(|n| (*n).to_owned()).collect(),
                action: SeccompAction::Allow,
                errno_ret: None,
                args: None,
            }]),
            flags: None,
            base_profile_name: base.map(str::to_owned),
        }
    }

    /// `p0 -> p1 -> ... -> p<levels>`, each allowing its own syscall `s<i>`.
    fn chain_of(levels: usize) -> MemoryResolver {
        (0..=levels)
            .map(|i| {
                let base = (i < levels).then(|| format!("p{}", i + 1));
                (
                    format!("p{i}"),
                    spec(SeccompAction::Errno, base.as_deref(), &[&format!("s{i}")]),
                )
            })
            .collect()
    }

    #[test]
    fn no_base_is_the_profile_itself() {
        let s = spec(SeccompAction::Errno, None, &["read"]);
        let got = resolve_profile("a", &s, &MemoryResolver::new()).expect("resolve");
        assert_eq!(got.chain, ["a"]);
        assert_eq!(got.spec, s);
    }

    #[test]
    fn unions_the_chain_and_keeps_the_child_settings() {
        let mut child = spec(SeccompAction::Errno, Some("runtime"), &["read"]);
        child.architectures = Some(vec![Arch::X86_64]);
        let mut resolver = MemoryResolver::new();
        resolver.insert("runtime", spec(SeccompAction::Allow, Some("minimal"), &["clone"]));
        resolver.insert("minimal", spec(SeccompAction::KillProcess, None, &["exit_group"]));
        let got = resolve_profile("app", &child, &resolver).expect("resolve");
        assert_eq!(got.chain, ["app", "runtime", "minimal"]);
        assert_eq!(got.spec.default_action, SeccompAction::Errno);
        assert_eq!(got.spec.architectures, child.architectures);
        assert_eq!(got.spec.base_profile_name, None);
        let allowed: Vec<String> = effective_actions(&got.spec).into_keys().collect();
        assert_eq!(allowed, ["clone", "exit_group", "read"]);
    }

    #[test]
    fn fifteen_levels_resolve() {
        let resolver = chain_of(MAX_BASE_DEPTH);
        let root = resolver.0.get("p0").expect("p0").clone();
        let got = resolve_profile("p0", &root, &resolver).expect("15 levels");
        assert_eq!(got.chain.len(), MAX_BASE_DEPTH + 1);
        assert_eq!(effective_actions(&got.spec).len(), MAX_BASE_DEPTH + 1);
    }

    #[test]
    fn sixteen_levels_fail_naming_the_chain() {
        let resolver = chain_of(MAX_BASE_DEPTH + 1);
        let root = resolver.0.get("p0").expect("p0").clone();
        let e = resolve_profile("p0", &root, &resolver).expect_err("16 levels");
        assert!(matches!(e, ResolveError::TooDeep { .. }), "{e:?}");
        assert_eq!(e.chain().len(), MAX_BASE_DEPTH + 2);
        let text = e.to_string();
        assert!(text.starts_with("base profile chain p0 -> p1 -> "), "{text}");
        assert!(text.contains("p15 -> p16 is deeper than 15 levels"), "{text}");
    }

    #[test]
    fn cycles_are_named() {
        let mut resolver = MemoryResolver::new();
        resolver.insert("b", spec(SeccompAction::Errno, Some("a"), &["write"]));
        let a = spec(SeccompAction::Errno, Some("b"), &["read"]);
        resolver.insert("a", a.clone());
        let e = resolve_profile("a", &a, &resolver).expect_err("cycle");
        assert_eq!(
            e.to_string().split(';').next(),
            Some("base profiles form a cycle: a -> b -> a")
        );

        // A cycle further down the chain is reported from where it starts.
        resolver.insert("c", spec(SeccompAction::Errno, Some("d"), &[]));
        resolver.insert("d", spec(SeccompAction::Errno, Some("e"), &[]));
        resolver.insert("e", spec(SeccompAction::Errno, Some("c"), &[]));
        let top = spec(SeccompAction::Errno, Some("c"), &[]);
        let e = resolve_profile("top", &top, &resolver).expect_err("cycle");
        assert_eq!(e.chain(), ["c", "d", "e", "c"]);

        let own = spec(SeccompAction::Errno, Some("self"), &[]);
        let e = resolve_profile("self", &own, &resolver).expect_err("self");
        assert_eq!(e.chain(), ["self", "self"]);
    }

    #[test]
    fn missing_base_names_the_chain() {
        let mut resolver = MemoryResolver::new();
        resolver.insert("b", spec(SeccompAction::Errno, Some("gone"), &["write"]));
        let a = spec(SeccompAction::Errno, Some("b"), &["read"]);
        let e = resolve_profile("a", &a, &resolver).expect_err("missing");
        assert!(matches!(&e, ResolveError::Missing { reference, .. } if reference == "gone"));
        assert_eq!(
            e.to_string(),
            "base profile \"gone\" does not exist (chain a -> b -> gone); create it or correct baseProfileName"
        );
        // And through the crate's error type.
        let e: SeccompError = e.into();
        assert!(e.to_string().contains("a -> b -> gone"), "{e}");
    }

    #[test]
    fn oci_references_are_not_supported_yet() {
        let a = spec(SeccompAction::Errno, Some("oci://ghcr.io/x/profile:v1"), &["read"]);
        let e = resolve_profile("a", &a, &MemoryResolver::new()).expect_err("oci");
        assert!(e.to_string().contains("chain a -> oci://ghcr.io/x/profile:v1"), "{e}");
        let source = std::error::Error::source(&e).expect("source").to_string();
        assert!(source.contains("OCI base profiles are not fetched here"), "{source}");
    }
}
