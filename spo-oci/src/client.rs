//! A registry client for the calls a profile artifact needs (distribution API v2): manifests
//! and blobs up and down, with the bounds a node daemon needs against a hostile or broken
//! registry.
//!
//! - Every body is read up to a limit, never whole into memory first: a manifest up to
//!   [`Limits::manifest_bytes`], a blob up to its descriptor's size (itself bounded by the
//!   caller), an error body to 4 KiB, a token to 64 KiB.
//! - Every request has a deadline ([`ClientOptions::request_timeout`], connection included): a
//!   registry that hangs is an error naming the call, not a stuck thread.
//! - Content is checked against its digest: a manifest against the digest asked for and the
//!   registry's `Docker-Content-Digest`, a blob against its descriptor (digest and size).
//! - Redirects are followed for blob downloads only (registries hand those to storage
//!   elsewhere, and the digest protects the content), at most [`MAX_REDIRECTS`], to `https`
//!   only, and without credentials once the origin changes. Any other redirect is refused.
//! - Authentication as registries do it: HTTP Basic, or a bearer token from the realm the
//!   registry names in its challenge (fetched with the credentials, `https` only), cached per
//!   scope in a bounded map.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};

use crate::OciError;
use crate::artifact::{Descriptor, INDEX_MEDIA_TYPE, Limits, MANIFEST_MEDIA_TYPE, sha256_digest};

/// Redirects followed for one blob download at most.
pub const MAX_REDIRECTS: usize = 5;
/// Cached tokens at most (one per repository and access).
const MAX_TOKENS: usize = 64;
/// The most of an error body kept for the message.
const MAX_ERROR_BODY: usize = 4096;
/// The largest token response read.
const MAX_TOKEN_BODY: usize = 64 << 10;

/// How to reach registries.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// CA certificates (PEM files) trusted besides the system's.
    pub ca_files: Vec<PathBuf>,
    /// Speak plain HTTP (a registry on localhost without TLS); never for anything else.
    pub plain_http: bool,
    /// Deadline of each request, connecting and reading the body included.
    pub request_timeout: Duration,
    /// Deadline of connecting.
    pub connect_timeout: Duration,
    /// What a pull holds at most.
    pub limits: Limits,
    /// How to log in, told when the registry refuses a client without credentials (after
    /// "no credentials given"): each front end knows its own way (flags, pull secrets).
    pub login_hint: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ca_files: Vec::new(),
            plain_http: false,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            limits: Limits::default(),
            login_hint: None,
        }
    }
}

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    password: String,
}

impl Credentials {
    /// Credentials of `username` with `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How the registry wants to be authenticated, once it said so.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scheme {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// One registry, with its credentials.
#[derive(Debug, Clone)]
pub struct Registry {
    host: String,
    base: String,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    limits: Limits,
    plain_http: bool,
    timeout: Duration,
    login_hint: Option<String>,
    scheme: Arc<Mutex<Option<Scheme>>>,
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

/// A fetched manifest or index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedManifest {
    /// Its bytes.
    pub body: Vec<u8>,
    /// The `Content-Type` the registry gave.
    pub content_type: Option<String>,
    /// Its digest (computed, and equal to what was asked for and what the registry said).
    pub digest: String,
}

impl Registry {
    /// A client of the registry at `host` (`127.0.0.1:5000`, `ghcr.io`).
    pub fn new(host: &str, credentials: Option<Credentials>, options: &ClientOptions) -> Result<Registry, OciError> {
        let scheme = if options.plain_http { "http" } else { "https" };
        // TLS is configured under plain_http too: a plain registry may send blobs to https
        // storage, and reqwest without a configured rustls provider panics when it builds.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            .user_agent(concat!("spo-oci/", env!("CARGO_PKG_VERSION")))
            .use_preconfigured_tls(tls_config(&options.ca_files)?)
            .build()
            .map_err(|e| OciError::Tls(format!("building the HTTP client: {e}")))?;
        Ok(Registry {
            host: host.to_owned(),
            base: format!("{scheme}://{host}"),
            http,
            credentials,
            limits: options.limits,
            plain_http: options.plain_http,
            timeout: options.request_timeout,
            login_hint: options.login_hint.clone(),
            scheme: Arc::new(Mutex::new(None)),
            tokens: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The registry's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Why a client without credentials was refused, with the front end's login hint.
    fn no_credentials(&self) -> String {
        match &self.login_hint {
            Some(hint) => format!("no credentials given; {hint}"),
            None => "no credentials given".into(),
        }
    }

    /// The limits of pulls through this client.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Fetches the manifest or index `identifier` (a tag or digest) of `repository`.
    pub async fn manifest(&self, repository: &str, identifier: &str) -> Result<FetchedManifest, OciError> {
        let (op, url, response) = self.request_manifest(repository, identifier).await?;
        self.read_manifest(&op, &url, identifier, response).await
    }

    /// Fetches the manifest or index `identifier` of `repository`, `None` when the registry
    /// does not have it (one request, where a `HEAD` first would take two).
    pub async fn manifest_if_exists(
        &self,
        repository: &str,
        identifier: &str,
    ) -> Result<Option<FetchedManifest>, OciError> {
        let (op, url, response) = self.request_manifest(repository, identifier).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.read_manifest(&op, &url, identifier, response).await.map(Some)
    }

    /// `GET` of a manifest: the operation's name, the URL and the response.
    async fn request_manifest(
        &self,
        repository: &str,
        identifier: &str,
    ) -> Result<(String, String, reqwest::Response), OciError> {
        let url = format!("{}/v2/{repository}/manifests/{identifier}", self.base);
        let op = format!("fetching manifest {repository}:{identifier}");
        let accept = format!("{MANIFEST_MEDIA_TYPE}, {INDEX_MEDIA_TYPE}");
        let response = self
            .send(&op, repository, false, |c| {
                c.request(Method::GET, &url).header("Accept", accept.as_str())
            })
            .await?;
        Ok((op, url, response))
    }

    /// A manifest response read to its limit and checked against the digest asked for and
    /// the one the registry said.
    async fn read_manifest(
        &self,
        op: &str,
        url: &str,
        identifier: &str,
        response: reqwest::Response,
    ) -> Result<FetchedManifest, OciError> {
        let response = expect_status(op, url, response, &[StatusCode::OK]).await?;
        let said = header(response.headers(), "docker-content-digest");
        let content_type = header(response.headers(), CONTENT_TYPE.as_str());
        let body = read_bounded(op, url, response, self.limits.manifest_bytes as u64, self.timeout).await?;
        let digest = sha256_digest(&body);
        if identifier.starts_with("sha256:") && identifier != digest {
            return Err(OciError::DigestMismatch {
                what: op.to_owned(),
                expected: identifier.to_owned(),
                actual: digest,
            });
        }
        if let Some(said) = said.filter(|s| s.starts_with("sha256:"))
            && said != digest
        {
            return Err(OciError::DigestMismatch {
                what: format!("{op} (the registry's Docker-Content-Digest)"),
                expected: said,
                actual: digest,
            });
        }
        Ok(FetchedManifest {
            body,
            content_type,
            digest,
        })
    }

    /// Whether the manifest `identifier` exists; its digest if the registry says it.
    pub async fn manifest_exists(&self, repository: &str, identifier: &str) -> Result<bool, OciError> {
        let url = format!("{}/v2/{repository}/manifests/{identifier}", self.base);
        let op = format!("looking for manifest {repository}:{identifier}");
        let accept = format!("{MANIFEST_MEDIA_TYPE}, {INDEX_MEDIA_TYPE}");
        let response = self
            .send(&op, repository, false, |c| {
                c.request(Method::HEAD, &url).header("Accept", accept.as_str())
            })
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => expect_status(&op, &url, response, &[]).await.map(|_| false),
        }
    }

    /// Fetches the blob `descriptor` names: at most its size, checked against its digest.
    /// Redirects to storage elsewhere are followed (see the module docs).
    pub async fn blob(&self, repository: &str, descriptor: &Descriptor) -> Result<Vec<u8>, OciError> {
        crate::reference::check_digest(&descriptor.digest).map_err(OciError::NotAProfileArtifact)?;
        let mut url = format!("{}/v2/{repository}/blobs/{}", self.base, descriptor.digest);
        let op = format!("fetching blob {}", descriptor.digest);
        let origin = Url::parse(&self.base).map_err(|e| OciError::Tls(e.to_string()))?;
        let mut response = self
            .send(&op, repository, false, |c| c.request(Method::GET, &url))
            .await?;
        let mut hops = 0;
        while response.status().is_redirection() {
            hops += 1;
            let to = header(response.headers(), LOCATION.as_str()).ok_or_else(|| OciError::Redirect {
                url: url.clone(),
                reason: "a redirect without a Location".into(),
            })?;
            let next = Url::parse(&url)
                .and_then(|u| u.join(&to))
                .map_err(|e| OciError::Redirect {
                    url: url.clone(),
                    reason: format!("Location {to:?} does not read: {e}"),
                })?;
            if hops > MAX_REDIRECTS {
                return Err(OciError::Redirect {
                    url: next.to_string(),
                    reason: format!("more than {MAX_REDIRECTS} redirects"),
                });
            }
            let same_origin = next.origin() == origin.origin();
            if next.scheme() != "https" && !(self.plain_http && same_origin) {
                return Err(OciError::Redirect {
                    url: next.to_string(),
                    reason: "a redirect away from https".into(),
                });
            }
            url = next.to_string();
            response = if same_origin {
                self.send(&op, repository, false, |c| c.request(Method::GET, &url))
                    .await?
            } else {
                // Storage elsewhere gets no credentials; its URL carries what it needs.
                self.http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| http_error(&op, &url, &e, self.timeout))?
            };
        }
        let response = expect_status(&op, &url, response, &[StatusCode::OK]).await?;
        let body = read_bounded(&op, &url, response, descriptor.size, self.timeout).await?;
        if body.len() as u64 != descriptor.size {
            return Err(OciError::DigestMismatch {
                what: format!("{op}: {} bytes where the manifest says {}", body.len(), descriptor.size),
                expected: descriptor.digest.clone(),
                actual: sha256_digest(&body),
            });
        }
        let actual = sha256_digest(&body);
        if actual != descriptor.digest {
            return Err(OciError::DigestMismatch {
                what: op,
                expected: descriptor.digest.clone(),
                actual,
            });
        }
        Ok(body)
    }

    /// Uploads `content` as a blob unless the repository has it (a `HEAD`, then
    /// [`Registry::upload_blob`]). Returns its digest.
    pub async fn push_blob(&self, repository: &str, content: &[u8]) -> Result<String, OciError> {
        let digest = sha256_digest(content);
        let head = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        let op = format!("uploading blob {digest} to {repository}");
        let exists = self
            .send(&op, repository, true, |c| c.request(Method::HEAD, &head))
            .await?;
        if exists.status() == StatusCode::OK {
            return Ok(digest);
        }
        self.upload_blob(repository, content).await
    }

    /// Uploads `content` as a blob without asking first whether the repository has it (one
    /// `POST` and one `PUT`, monolithic): for content that is new almost always (a profile
    /// just written, a signature), where the question costs a round trip and the answer is
    /// no. A registry that has the blob takes it again unchanged. Returns its digest.
    pub async fn upload_blob(&self, repository: &str, content: &[u8]) -> Result<String, OciError> {
        let digest = sha256_digest(content);
        let op = format!("uploading blob {digest} to {repository}");
        let start = format!("{}/v2/{repository}/blobs/uploads/", self.base);
        let response = self
            .send(&op, repository, true, |c| c.request(Method::POST, &start))
            .await?;
        let response = expect_status(&op, &start, response, &[StatusCode::ACCEPTED]).await?;
        let location = header(response.headers(), LOCATION.as_str()).ok_or_else(|| OciError::Status {
            operation: op.clone(),
            url: start.clone(),
            status: response.status().as_u16(),
            message: "no Location for the upload".into(),
        })?;
        let mut upload = Url::parse(&start)
            .and_then(|u| u.join(&location))
            .map_err(|e| OciError::Status {
                operation: op.clone(),
                url: start.clone(),
                status: 202,
                message: format!("upload Location {location:?} does not read: {e}"),
            })?;
        if upload.origin()
            != Url::parse(&self.base)
                .map_err(|e| OciError::Tls(e.to_string()))?
                .origin()
        {
            return Err(OciError::Redirect {
                url: upload.to_string(),
                reason: "the upload is sent elsewhere than the registry".into(),
            });
        }
        upload.query_pairs_mut().append_pair("digest", &digest);
        let upload = upload.to_string();
        let response = self
            .send(&op, repository, true, |c| {
                c.request(Method::PUT, &upload)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(content.to_vec())
            })
            .await?;
        expect_status(&op, &upload, response, &[StatusCode::CREATED]).await?;
        Ok(digest)
    }

    /// Puts a manifest at `reference` (a tag or its digest). Returns its digest, checked
    /// against the registry's.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String, OciError> {
        let digest = sha256_digest(body);
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let op = format!("putting manifest {repository}:{reference}");
        let response = self
            .send(&op, repository, true, |c| {
                c.request(Method::PUT, &url)
                    .header(CONTENT_TYPE, media_type)
                    .body(body.to_vec())
            })
            .await?;
        let response = expect_status(&op, &url, response, &[StatusCode::CREATED, StatusCode::OK]).await?;
        if let Some(said) = header(response.headers(), "docker-content-digest").filter(|s| s.starts_with("sha256:"))
            && said != digest
        {
            return Err(OciError::DigestMismatch {
                what: format!("{op} (the registry's Docker-Content-Digest)"),
                expected: digest,
                actual: said,
            });
        }
        Ok(digest)
    }

    /// Sends a request built by `build` with what authentication the registry asked for,
    /// answering one challenge.
    async fn send(
        &self,
        op: &str,
        repository: &str,
        push: bool,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OciError> {
        let scope = format!("repository:{repository}:{}", if push { "pull,push" } else { "pull" });
        let mut answered = false;
        loop {
            let mut request = build(&self.http);
            if let Some(auth) = self.authorization(&scope) {
                request = request.header(AUTHORIZATION, auth);
            }
            let request = request
                .build()
                .map_err(|e| http_error(op, &self.base, &e, self.timeout))?;
            let url = request.url().to_string();
            let response = self
                .http
                .execute(request)
                .await
                .map_err(|e| http_error(op, &url, &e, self.timeout))?;
            if response.status() != StatusCode::UNAUTHORIZED || answered {
                if response.status() == StatusCode::UNAUTHORIZED {
                    return Err(OciError::Unauthorized {
                        operation: op.to_owned(),
                        registry: self.host.clone(),
                        detail: if self.credentials.is_some() {
                            "the registry refused the credentials".into()
                        } else {
                            self.no_credentials()
                        },
                    });
                }
                return Ok(response);
            }
            answered = true;
            let challenge = header(response.headers(), WWW_AUTHENTICATE.as_str()).unwrap_or_default();
            let scheme = parse_challenge(&challenge).ok_or_else(|| OciError::Unauthorized {
                operation: op.to_owned(),
                registry: self.host.clone(),
                detail: format!("an authentication challenge this client does not speak: {challenge:?}"),
            })?;
            if let Scheme::Bearer { realm, service } = &scheme {
                let token = self.fetch_token(op, realm, service.as_deref(), &scope).await?;
                let mut tokens = lock(&self.tokens);
                if tokens.len() >= MAX_TOKENS {
                    tokens.clear();
                }
                tokens.insert(scope.clone(), token);
            } else if self.credentials.is_none() {
                return Err(OciError::Unauthorized {
                    operation: op.to_owned(),
                    registry: self.host.clone(),
                    detail: self.no_credentials(),
                });
            }
            *lock(&self.scheme) = Some(scheme);
        }
    }

    fn authorization(&self, scope: &str) -> Option<String> {
        match &*lock(&self.scheme) {
            Some(Scheme::Basic) => self.credentials.as_ref().map(Credentials::basic),
            Some(Scheme::Bearer { .. }) => lock(&self.tokens).get(scope).map(|t| format!("Bearer {t}")),
            None => None,
        }
    }

    async fn fetch_token(&self, op: &str, realm: &str, service: Option<&str>, scope: &str) -> Result<String, OciError> {
        let mut url = Url::parse(realm).map_err(|e| OciError::Unauthorized {
            operation: op.to_owned(),
            registry: self.host.clone(),
            detail: format!("token realm {realm:?} does not read: {e}"),
        })?;
        if url.scheme() != "https" && !self.plain_http {
            return Err(OciError::Unauthorized {
                operation: op.to_owned(),
                registry: self.host.clone(),
                detail: format!("token realm {realm} is not https: credentials are never sent in the clear"),
            });
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let url = url.to_string();
        let mut request = self.http.get(&url);
        if let Some(c) = &self.credentials {
            request = request.header(AUTHORIZATION, c.basic());
        }
        let top = format!("{op}: getting a token");
        let response = request
            .send()
            .await
            .map_err(|e| http_error(&top, &url, &e, self.timeout))?;
        if response.status() == StatusCode::UNAUTHORIZED || response.status() == StatusCode::FORBIDDEN {
            return Err(OciError::Unauthorized {
                operation: op.to_owned(),
                registry: self.host.clone(),
                detail: "the token service refused the credentials".into(),
            });
        }
        let response = expect_status(&top, &url, response, &[StatusCode::OK]).await?;
        let body = read_bounded(&top, &url, response, MAX_TOKEN_BODY as u64, self.timeout).await?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|e| OciError::Status {
            operation: top.clone(),
            url: url.clone(),
            status: 200,
            message: format!("the token response does not read: {e}"),
        })?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or(OciError::Status {
                operation: top,
                url,
                status: 200,
                message: "no token in the response".into(),
            })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads a `WWW-Authenticate` challenge: `Basic realm=...` or `Bearer realm="...",service="..."`.
fn parse_challenge(value: &str) -> Option<Scheme> {
    let (scheme, params) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Scheme::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key {
            "realm" => realm = Some(value.to_owned()),
            "service" => service = Some(value.to_owned()),
            _ => {}
        }
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Scheme::Bearer { realm: realm?, service })
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn http_error(op: &str, url: &str, e: &reqwest::Error, timeout: Duration) -> OciError {
    if e.is_timeout() {
        OciError::Timeout {
            operation: op.to_owned(),
            url: url.to_owned(),
            after: timeout,
        }
    } else {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        OciError::Http {
            operation: op.to_owned(),
            url: url.to_owned(),
            message,
        }
    }
}

/// Passes a response with one of `ok`; otherwise an error with the registry's message.
async fn expect_status(
    op: &str,
    url: &str,
    response: reqwest::Response,
    ok: &[StatusCode],
) -> Result<reqwest::Response, OciError> {
    if ok.contains(&response.status()) {
        return Ok(response);
    }
    let status = response.status();
    if status.is_redirection() {
        return Err(OciError::Redirect {
            url: header(response.headers(), LOCATION.as_str()).unwrap_or_else(|| url.to_owned()),
            reason: format!("{op}: the registry redirects ({status}), which is only followed for blobs"),
        });
    }
    let body = read_bounded(op, url, response, MAX_ERROR_BODY as u64, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    Err(OciError::Status {
        operation: op.to_owned(),
        url: url.to_owned(),
        status: status.as_u16(),
        message: registry_message(&body),
    })
}

/// The registry's error codes and messages (`{"errors":[{"code","message"}]}`), else the
/// start of the body, printable characters only.
fn registry_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        return e
            .errors
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.code.as_deref().unwrap_or("?"),
                    e.message.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
            .escape_debug()
            .to_string();
    }
    String::from_utf8_lossy(&body[..body.len().min(200)])
        .escape_debug()
        .to_string()
}

/// Reads a body up to `limit` bytes: refuses a larger `Content-Length` up front and stops
/// reading at the first byte over the limit.
async fn read_bounded(
    op: &str,
    url: &str,
    mut response: reqwest::Response,
    limit: u64,
    timeout: Duration,
) -> Result<Vec<u8>, OciError> {
    if let Some(len) = response.content_length()
        && len > limit
    {
        return Err(OciError::TooLarge {
            what: format!("{op} ({url})"),
            limit,
            size: len,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| http_error(op, url, &e, timeout))? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(OciError::TooLarge {
                what: format!("{op} ({url})"),
                limit,
                size: (body.len() + chunk.len()) as u64,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// TLS with the system's roots and `ca_files`, on ring (the provider the operator's kube
/// client uses).
fn tls_config(ca_files: &[PathBuf]) -> Result<rustls::ClientConfig, OciError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for file in ca_files {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(file)
            .map_err(|e| OciError::Tls(format!("reading CA file {}: {e}", file.display())))?
        {
            let cert = cert.map_err(|e| OciError::Tls(format!("reading CA file {}: {e}", file.display())))?;
            roots
                .add(cert)
                .map_err(|e| OciError::Tls(format!("CA file {}: {e}", file.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(OciError::Tls(format!(
                "CA file {} holds no certificate",
                file.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OciError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_read_as_registries_write_them() {
        assert_eq!(parse_challenge("Basic realm=\"Registry\""), Some(Scheme::Basic));
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/busybox:pull\""
            ),
            Some(Scheme::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=https://r/t, service=r"),
            Some(Scheme::Bearer {
                realm: "https://r/t".into(),
                service: Some("r".into())
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None, "no realm");
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer realm=\"unterminated"), None);
    }

    #[test]
    fn registry_errors_are_read_and_escaped() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert_eq!(registry_message(body), "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(registry_message(b"oops\n\x1b[31m"), "oops\\n\\u{1b}[31m");
    }

    #[test]
    fn passwords_never_print() {
        let c = Credentials::new("u", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
