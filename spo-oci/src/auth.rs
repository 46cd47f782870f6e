//! Registry credentials from the docker config file (`~/.docker/config.json`, or
//! `$DOCKER_CONFIG/config.json`), as `docker login` and `podman login --compat-auth-file` write
//! it: `auths.<registry>.auth` (base64 `user:password`) or `username` and `password`.
//!
//! Credential helpers (`credsStore`, `credHelpers`) and identity tokens are not run or
//! exchanged: a registry that needs one gets an error saying so, not an anonymous request.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::OciError;
use crate::client::Credentials;
use crate::reference::DOCKER_HUB;

/// The largest config file read.
const MAX_CONFIG: u64 = 1 << 20;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The docker config file in use: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The keys a registry may be filed under.
fn keys_for(registry: &str) -> Vec<String> {
    let mut keys = vec![
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ];
    if registry == DOCKER_HUB || registry == "index.docker.io" || registry == "registry-1.docker.io" {
        keys.extend(
            [
                "https://index.docker.io/v1/",
                "index.docker.io",
                "docker.io",
                "registry-1.docker.io",
            ]
            .map(String::from),
        );
    }
    keys
}

/// The credentials for `registry` (as written in the reference: `docker.io`, `r.io:5000`) in
/// a docker config's text; `None` when it has none. `origin` names the file in errors.
pub fn credentials_from_docker_config(
    text: &[u8],
    registry: &str,
    origin: &str,
) -> Result<Option<Credentials>, OciError> {
    let bad = |reason: String| OciError::DockerConfig {
        path: origin.to_owned(),
        reason,
    };
    let config: DockerConfig = serde_json::from_slice(text).map_err(|e| bad(format!("does not read: {e}")))?;
    let keys = keys_for(registry);
    if let Some((key, entry)) = keys.iter().find_map(|k| config.auths.get(k).map(|e| (k, e))) {
        if entry.identitytoken.as_deref().is_some_and(|t| !t.is_empty()) {
            return Err(bad(format!(
                "auths.{key} holds an identity token, which is not exchanged here; pass --username and PASSWORD"
            )));
        }
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| bad(format!("auths.{key}.auth is not base64: {e}")))?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad(format!("auths.{key}.auth is not UTF-8")))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| bad(format!("auths.{key}.auth is not user:password")))?;
            return Ok(Some(Credentials::new(user, password)));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials::new(u.clone(), p.clone())));
        }
    }
    if let Some(helper) = keys.iter().find_map(|k| config.cred_helpers.get(k)) {
        return Err(bad(format!(
            "credentials for {registry} are kept by the helper docker-credential-{helper}, which is not run here; pass --username and PASSWORD"
        )));
    }
    if let Some(store) = &config.creds_store
        && !store.is_empty()
        && config.auths.keys().any(|k| keys.contains(k))
    {
        return Err(bad(format!(
            "credentials for {registry} are kept by docker-credential-{store}, which is not run here; pass --username and PASSWORD"
        )));
    }
    Ok(None)
}

/// Reads the credentials for `registry` from the docker config file at `path`; `None` when
/// the file does not exist or has none.
pub fn load_docker_credentials(path: &Path, registry: &str) -> Result<Option<Credentials>, OciError> {
    let origin = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(OciError::DockerConfig {
                path: origin,
                reason: e.to_string(),
            });
        }
    };
    if !meta.is_file() || meta.len() > MAX_CONFIG {
        return Err(OciError::DockerConfig {
            path: origin,
            reason: "not a regular file of at most 1 MiB".into(),
        });
    }
    let text = std::fs::read(path).map_err(|e| OciError::DockerConfig {
        path: origin.clone(),
        reason: e.to_string(),
    })?;
    credentials_from_docker_config(&text, registry, &origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn reads_docker_login_files() {
        let text = format!(
            r#"{{"auths": {{"r.io:5000": {{"auth": "{}"}}, "https://index.docker.io/v1/": {{"auth": "{}"}}, "q.io": {{"username": "u", "password": "p"}}}}}}"#,
            b64("spo:pa:ss"),
            b64("hub:pw")
        );
        let c = credentials_from_docker_config(text.as_bytes(), "r.io:5000", "cfg").expect("read");
        assert_eq!(c, Some(Credentials::new("spo", "pa:ss")));
        let c = credentials_from_docker_config(text.as_bytes(), "docker.io", "cfg").expect("hub");
        assert_eq!(c, Some(Credentials::new("hub", "pw")));
        let c = credentials_from_docker_config(text.as_bytes(), "q.io", "cfg").expect("fields");
        assert_eq!(c, Some(Credentials::new("u", "p")));
        assert_eq!(
            credentials_from_docker_config(text.as_bytes(), "other.io", "cfg").expect("none"),
            None
        );
    }

    #[test]
    fn helpers_tokens_and_garbage_are_errors_naming_the_file() {
        for (text, needle) in [
            (
                r#"{"credHelpers": {"r.io": "ecr-login"}}"#.to_owned(),
                "docker-credential-ecr-login",
            ),
            (
                r#"{"auths": {"r.io": {"identitytoken": "x"}}}"#.to_owned(),
                "identity token",
            ),
            (r#"{"auths": {"r.io": {"auth": "%%%"}}}"#.to_owned(), "not base64"),
            (
                format!(r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#, b64("nocolon")),
                "user:password",
            ),
            ("[".to_owned(), "does not read"),
        ] {
            let e = credentials_from_docker_config(text.as_bytes(), "r.io", "/home/u/.docker/config.json")
                .expect_err(&text)
                .to_string();
            assert!(
                e.contains(needle) && e.contains("/home/u/.docker/config.json"),
                "{text}: {e}"
            );
        }
    }
}
