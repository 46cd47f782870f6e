//! Image references as registries and container tools read them
//! (`[registry/]repository[:tag][@sha256:digest]`), with the same defaults: no registry means
//! Docker Hub (`docker.io`, one-word repositories under `library/`), no tag means `latest`.
//!
//! The grammar is the distribution project's: lowercase path components joined by `/`, each
//! made of `[a-z0-9]` runs separated by `.`, `_`, `__` or dashes; a registry is a first
//! component with a `.` or `:`, or `localhost`; tags are `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
//! Digests must be `sha256:` and 64 lowercase hex digits: the only algorithm registries and
//! this crate compute.

use std::fmt;

use crate::OciError;

/// The registry of references without one.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API is served.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Longest repository name registries accept.
const MAX_NAME: usize = 255;

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses `input` (without any `oci://` prefix). The error names what is wrong.
    pub fn parse(input: &str) -> Result<Reference, OciError> {
        let bad = |reason: &str| OciError::Reference {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(&format!("contains {c:?}")));
        }
        if input.contains("://") {
            return Err(bad("a reference has no scheme (write registry/repository:tag)"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest).map_err(|r| bad(&r))?;
                (rest, Some(digest.to_owned()))
            }
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a registry port is
        // before a '/').
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &rest[at + 1..];
                check_tag(tag).map_err(|r| bad(&r))?;
                (&rest[..at], Some(tag.to_owned()))
            }
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                check_registry(first).map_err(|r| bad(&r))?;
                (first.to_owned(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        check_repository(&repository).map_err(|r| bad(&r))?;
        if registry.len() + 1 + repository.len() > MAX_NAME {
            return Err(bad(&format!("the name is longer than {MAX_NAME} characters")));
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry as written (`docker.io` when none was).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) the registry API is served at.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository (`library/busybox`, `team/profiles`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was written.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// What to ask the registry for: the digest when there is one, else the tag (`latest`
    /// when none was written).
    pub fn identifier(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The tag to push to (`latest` when none was written).
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// `registry/repository`, as signatures name an image.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at `digest`.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = OciError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Checks a `sha256:<64 lowercase hex>` digest.
pub fn check_digest(digest: &str) -> Result<(), String> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(format!(
            "digest {digest:?} is not sha256:<hex> (the only algorithm supported)"
        ));
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("digest {digest:?} does not have 64 lowercase hex digits"));
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok_first = tag
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let ok_rest = tag
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if tag.is_empty() || tag.len() > 128 || !ok_first || !ok_rest {
        return Err(format!(
            "tag {tag:?} is not 1-128 of [A-Za-z0-9_.-] starting with a letter, digit or '_'"
        ));
    }
    Ok(())
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (registry, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(format!("registry port {p:?} is not a number up to 65535"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return Err(format!("registry host {host:?} is not a host name or IPv4 address"));
    }
    Ok(())
}

fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("no repository".into());
    }
    for component in repository.split('/') {
        if !component_ok(component) {
            return Err(format!(
                "repository component {component:?} is not lowercase letters and digits separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+ (sep [a-z0-9]+)*` with sep one of `.`, `_`, `__`, `-+`.
fn component_ok(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let dashes = sep.bytes().all(|b| b == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn defaults_and_parts() {
        let r = Reference::parse("busybox").expect("busybox");
        assert_eq!(
            (r.registry(), r.api_host(), r.repository(), r.identifier()),
            ("docker.io", "registry-1.docker.io", "library/busybox", "latest")
        );
        let r = Reference::parse("127.0.0.1:5000/team/profiles:v1").expect("local");
        assert_eq!(
            (r.registry(), r.repository(), r.tag(), r.identifier()),
            ("127.0.0.1:5000", "team/profiles", Some("v1"), "v1")
        );
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/profiles:v1");
        let r = Reference::parse(&format!("localhost/p@{D}")).expect("digest");
        assert_eq!((r.registry(), r.tag(), r.identifier()), ("localhost", None, D));
        let r = Reference::parse(&format!("ghcr.io/a/b:t@{D}")).expect("both");
        assert_eq!((r.tag(), r.identifier()), (Some("t"), D));
        assert_eq!(r.name(), "ghcr.io/a/b");
        let r = Reference::parse("user/repo").expect("hub user");
        assert_eq!((r.registry(), r.repository()), ("docker.io", "user/repo"));
        assert_eq!(
            Reference::parse("r.io/a.b-c__d/e--f").expect("separators").repository(),
            "a.b-c__d/e--f"
        );
    }

    #[test]
    fn odd_syntax_is_refused_naming_the_part() {
        for (input, needle) in [
            ("", "empty"),
            ("oci://r.io/a", "scheme"),
            ("r.io/A", "component \"A\""),
            ("r.io/a//b", "component \"\""),
            ("r.io/a/../b", "component \"..\""),
            ("r.io/-a", "component"),
            ("r.io/a:", "tag \"\""),
            ("r.io/a:-x", "tag"),
            ("r.io/a:x y", "contains ' '"),
            ("r.io/a\n", "contains '\\n'"),
            ("r.io:99999/a", "port"),
            ("r.io:/a", "port"),
            ("-r.io/a", "registry host"),
            ("r.io/a@sha256:abc", "64 lowercase hex"),
            ("r.io/a@md5:0123", "not sha256"),
            (
                &format!("r.io/a@{}", D.to_uppercase().replace("SHA256", "sha256")),
                "lowercase",
            ),
        ] {
            let e = Reference::parse(input).expect_err(input).to_string();
            assert!(e.contains(needle), "{input:?}: {e}");
        }
        let long = format!("r.io/{}", "a".repeat(300));
        assert!(
            Reference::parse(&long)
                .expect_err("long")
                .to_string()
                .contains("longer than 255")
        );
    }
}
