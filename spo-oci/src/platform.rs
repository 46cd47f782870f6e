//! Platforms (`os[/architecture][/variant][:os_version]`, Go's names) and the file name each
//! platform's profile has inside an artifact, as the Security Profiles Operator names it:
//! `profile` and each non-empty part joined by `-`, then `.yaml` (`profile-linux-amd64.yaml`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::OciError;

/// The file name of a profile that names no platform (read when none matches).
pub const PLATFORM_NEUTRAL_FILE: &str = "profile.yaml";

/// An OCI platform.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// `os` (`linux`).
    pub os: String,
    /// `architecture` (`amd64`, `arm64`), Go's names.
    pub architecture: String,
    /// `variant` (`v7`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `os.version`, when there is one.
    #[serde(default, rename = "os.version", skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
}

impl Platform {
    /// This machine's platform, in Go's architecture names.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
            os_version: None,
        }
    }

    /// Parses `os[/architecture][/variant][:os_version]`; an OS alone takes this machine's
    /// architecture.
    pub fn parse(input: &str) -> Result<Platform, OciError> {
        let bad = |reason: String| OciError::Platform {
            input: input.to_owned(),
            reason,
        };
        let (path, os_version) = match input.split_once(':') {
            Some((p, v)) => (p, Some(v)),
            None => (input, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() > 3 {
            return Err(bad("more than os/architecture/variant".into()));
        }
        let word = |what: &str, s: &str, dots: bool| -> Result<String, OciError> {
            let ok = !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (dots && b == b'.'));
            if ok {
                Ok(s.to_owned())
            } else {
                Err(bad(format!(
                    "{what} {s:?} is not 1-64 lowercase letters, digits or '_'"
                )))
            }
        };
        let os = word("os", parts[0], false)?;
        let architecture = match parts.get(1) {
            Some(a) => word("architecture", a, false)?,
            None => Platform::host().architecture,
        };
        let variant = parts.get(2).map(|v| word("variant", v, false)).transpose()?;
        let os_version = os_version.map(|v| word("os version", v, true)).transpose()?;
        Ok(Platform {
            os,
            architecture,
            variant,
            os_version,
        })
    }

    /// The profile's file name in an artifact (`profile-linux-arm-v7.yaml`).
    pub fn file_name(&self) -> String {
        let mut name = String::from("profile");
        for part in [
            Some(self.os.as_str()),
            Some(self.architecture.as_str()),
            self.variant.as_deref(),
            self.os_version.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
        {
            name.push('-');
            name.push_str(part);
        }
        name.push_str(".yaml");
        name
    }

    /// Whether a descriptor's platform is this one: OS and architecture equal, and the
    /// variant and OS version equal where this one names them.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && self.variant.as_ref().is_none_or(|v| other.variant.as_ref() == Some(v))
            && self
                .os_version
                .as_ref()
                .is_none_or(|v| other.os_version.as_ref() == Some(v))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        if let Some(v) = &self.os_version {
            write!(f, ":{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_files_as_upstream() {
        let p = Platform::parse("linux/arm/v7").expect("arm");
        assert_eq!(p.file_name(), "profile-linux-arm-v7.yaml");
        assert_eq!(p.to_string(), "linux/arm/v7");
        let p = Platform::parse("windows/amd64:10.0.17763").expect("windows");
        assert_eq!(p.file_name(), "profile-windows-amd64-10.0.17763.yaml");
        let p = Platform::parse("linux").expect("os alone");
        assert_eq!(p.architecture, Platform::host().architecture);
        assert_eq!(
            Platform::host().file_name(),
            "profile-linux-amd64.yaml".replace("amd64", &p.architecture)
        );
    }

    #[test]
    fn matching_ignores_what_the_wanted_platform_leaves_open() {
        let want = Platform::parse("linux/arm").expect("want");
        assert!(want.matches(&Platform::parse("linux/arm/v7").expect("v7")));
        assert!(
            !Platform::parse("linux/arm/v6")
                .expect("v6")
                .matches(&Platform::parse("linux/arm/v7").expect("v7"))
        );
        assert!(!want.matches(&Platform::parse("linux/arm64").expect("arm64")));
    }

    #[test]
    fn bad_platforms_name_the_part() {
        for (input, needle) in [
            ("", "os \"\""),
            ("Linux/amd64", "os \"Linux\""),
            ("linux/", "architecture \"\""),
            ("linux/amd64/v1/x", "more than"),
            ("linux/amd64:../x", "os version"),
            ("linux/am d64", "architecture"),
        ] {
            let e = Platform::parse(input).expect_err(input).to_string();
            assert!(e.contains(needle), "{input:?}: {e}");
        }
    }
}
