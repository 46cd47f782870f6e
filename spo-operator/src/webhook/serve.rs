//! The webhook process's shell: watches feeding [`WebhookState`], the certificate loop, the
//! configuration loop and the HTTPS server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt as _, watcher::Event};
use kube::{Client, Resource as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use spo_model::apparmor::AppArmorProfile;
use spo_model::binding::{BindingProfileKind, ProfileBinding};
use spo_model::recording::ProfileRecording;
use spo_model::seccomp::SeccompProfile;
use spo_model::selinux::SelinuxProfile;
use spo_model::spod::{SecurityProfilesOperatorDaemon, SpodWebhook};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, warn};

use super::certs::{self, Lifetimes, Plan, Stored};
use super::config::{self, Endpoint};
use super::review::MAX_REVIEW_BYTES;
use super::state::{self, Relist, WebhookState};
use crate::error::OperatorError;
use crate::server::Endpoints;
use crate::tasks::Tasks;

/// Where the serving certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSource {
    /// The webhook makes its CA and certificates and keeps them in the Secret.
    SelfManaged,
    /// Another issuer (cert-manager) fills the Secret; the webhook only reads it.
    Secret,
}

/// The lowest TLS version served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMin {
    /// TLS 1.2 and 1.3.
    V12,
    /// TLS 1.3 only.
    V13,
}

/// The webhook's settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The operator's namespace (Secret, SPOD, Service).
    pub namespace: String,
    /// The SPOD's name.
    pub spod_name: String,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The certificate Secret.
    pub secret_name: String,
    /// Who issues certificates.
    pub cert_source: CertSource,
    /// The names the serving certificate is for.
    pub sans: Vec<String>,
    /// Certificate lifetimes (self-managed).
    pub lifetimes: Lifetimes,
    /// The lowest TLS version.
    pub tls_min: TlsMin,
    /// How the apiserver reaches us; `None`: leave the configuration to someone else.
    pub endpoint: Option<Endpoint>,
    /// How often the Secret and the SPOD are read again.
    pub resync: Duration,
}

/// Serves the webhooks until `shutdown`.
pub async fn run(
    client: Client,
    cfg: WebhookConfig,
    endpoints: Arc<Endpoints>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let state = Arc::new(WebhookState::new());
    let mut tasks = Tasks::default();
    spawn_watches(&client, &state, &mut tasks);

    let resolver = Arc::new(Resolver::default());
    let (ca_tx, ca_rx) = watch::channel(Vec::<u8>::new());
    tasks.spawn(cert_loop(client.clone(), cfg.clone(), resolver.clone(), ca_tx));
    if let Some(endpoint) = cfg.endpoint.clone() {
        tasks.spawn(config_loop(client.clone(), cfg.clone(), endpoint, ca_rx));
    }

    let tls = server_config(resolver.clone(), cfg.tls_min).map_err(OperatorError::Config)?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| OperatorError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| OperatorError::Listen {
        addr: cfg.listen,
        source,
    })?;
    info!(addr = %local, "webhook listening (HTTPS)");
    {
        let (state, endpoints, resolver) = (state.clone(), endpoints.clone(), resolver.clone());
        tasks.spawn(async move {
            // Ready once everything is listed and a certificate is loaded.
            loop {
                let ready = state.is_synced() && resolver.has_cert();
                endpoints.health.set_ready(ready);
                if ready {
                    let (b, r, p) = state.counts();
                    info!(bindings = b, recordings = r, profiles = p, "webhook ready");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let serve = async {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accepting a webhook connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                debug!(%peer, "too many webhook connections; closing one");
                continue;
            };
            let (acceptor, state) = (acceptor.clone(), state.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&state, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .header_read_timeout(Some(REQUEST_TIMEOUT))
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(TokioIo::new(tls), service);
                if let Err(e) = conn.await {
                    debug!(%peer, error = %e, "webhook connection ended");
                }
            });
        }
    };
    tokio::select! {
        () = serve => {}
        () = shutdown => info!("webhook stopping"),
    }
    endpoints.health.set_ready(false);
    drop(tasks);
    Ok(())
}

const MAX_CONNECTIONS: usize = 4096;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r
}

async fn answer(state: &WebhookState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if req.method() == Method::GET && path == "/healthz" {
        return plain(StatusCode::OK, "ok\n".into());
    }
    if req.method() != Method::POST || (path != config::BINDING_PATH && path != config::RECORDING_PATH) {
        return plain(StatusCode::NOT_FOUND, format!("no webhook at {path}\n"));
    }
    let body = Limited::new(req.into_body(), MAX_REVIEW_BYTES);
    let bytes = match tokio::time::timeout(REQUEST_TIMEOUT, body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("reading the AdmissionReview: {e}\n"),
            );
        }
        Err(_) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "reading the AdmissionReview timed out\n".into(),
            );
        }
    };
    let result = if path == config::BINDING_PATH {
        super::handle_binding(state, &bytes)
    } else {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        super::handle_recording(state, &bytes, unix, &mut random_nonce)
    };
    match result {
        Ok((body, decision)) => {
            if decision.verdict.allowed {
                if decision.applied.is_empty() && decision.verdict.warnings.is_empty() {
                    debug!(webhook = decision.webhook, pod = %decision.pod, "admitted unchanged");
                } else {
                    info!(
                        webhook = decision.webhook,
                        pod = %decision.pod,
                        applied = ?decision.applied,
                        warnings = ?decision.verdict.warnings,
                        "admitted"
                    );
                }
            } else {
                warn!(
                    webhook = decision.webhook,
                    pod = %decision.pod,
                    reason = decision.verdict.message.as_deref().unwrap_or_default(),
                    "refused"
                );
            }
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => {
            warn!(path = %path, error = %e, "unreadable AdmissionReview");
            plain(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

fn random_nonce() -> String {
    let mut b = [0u8; 5];
    if getrandom::fill(&mut b).is_err() {
        // The nonce only tells recordings apart; the clock is a fine fallback.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        b.copy_from_slice(
            &t.to_le_bytes()[..4]
                .iter()
                .chain([0u8].iter())
                .copied()
                .collect::<Vec<_>>(),
        );
    }
    super::recording::nonce_from(b)
}

/// The serving certificate, swapped in place when renewed (handshakes in flight keep the
/// one they started with).
#[derive(Debug, Default)]
struct Resolver(RwLock<Option<Arc<CertifiedKey>>>);

impl Resolver {
    fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(key);
    }

    fn has_cert(&self) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

fn server_config(resolver: Arc<Resolver>, min: TlsMin) -> Result<rustls::ServerConfig, String> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        TlsMin::V12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsMin::V13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("setting up TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(c)
}

/// A certified key from PEM text.
fn certified(stored: &Stored) -> Result<Arc<CertifiedKey>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(stored.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if certs.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(stored.key_pem.as_bytes()).map_err(|e| format!("tls.key: {e}"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| format!("tls.key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(certs, signer)))
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn api_err(operation: &'static str, kind: &str, name: &str) -> impl FnOnce(kube::Error) -> OperatorError {
    let (kind, name) = (kind.to_owned(), name.to_owned());
    move |source| OperatorError::Api {
        operation,
        kind,
        name,
        source,
    }
}

/// Keeps the serving certificate current: makes or renews it (self-managed) or reads it
/// (cert-manager), loads it, and publishes the CA bundle.
async fn cert_loop(client: Client, cfg: WebhookConfig, resolver: Arc<Resolver>, ca_tx: watch::Sender<Vec<u8>>) {
    let api: Api<Secret> = Api::namespaced(client, &cfg.namespace);
    let sans = cfg.sans.join(",");
    let mut loaded: Option<Stored> = None;
    loop {
        let mut wait = cfg.resync;
        match cert_step(&api, &cfg, &sans).await {
            Ok((stored, next)) => {
                if loaded.as_ref() != Some(&stored) {
                    match certified(&stored) {
                        Ok(key) => {
                            resolver.set(key);
                            info!(
                                secret = %cfg.secret_name,
                                not_after = stored.cert_not_after.unwrap_or_default(),
                                "serving certificate loaded"
                            );
                            ca_tx.send_replace(stored.ca_pem.clone().into_bytes());
                            loaded = Some(stored);
                        }
                        Err(e) => warn!(secret = %cfg.secret_name, error = %e, "the certificate Secret cannot be used"),
                    }
                }
                if let Some(next) = next {
                    wait = wait.min(next);
                }
            }
            Err(e) => {
                warn!(secret = %cfg.secret_name, error = %spo_model::contract::error_chain(&e), "certificates; retrying");
                wait = wait.min(Duration::from_secs(2));
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// One look at the Secret: returns what to serve and when to look again.
async fn cert_step(
    api: &Api<Secret>,
    cfg: &WebhookConfig,
    sans: &str,
) -> Result<(Stored, Option<Duration>), OperatorError> {
    let name = cfg.secret_name.as_str();
    let secret = api.get_opt(name).await.map_err(api_err("reading", "Secret", name))?;
    let stored = secret.as_ref().and_then(|s| {
        let data: BTreeMap<String, Vec<u8>> = s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
        Stored::from_secret(&data, s.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()))
    });
    if cfg.cert_source == CertSource::Secret {
        let s = stored.ok_or_else(|| {
            OperatorError::Config(format!(
                "Secret {}/{name} has no tls.crt and tls.key yet (issued by cert-manager)",
                cfg.namespace
            ))
        })?;
        return Ok((s, None));
    }
    let now = now_unix();
    match certs::plan(stored.as_ref(), sans, now, cfg.lifetimes) {
        Plan::Keep { renew_at } => {
            let s = stored.ok_or_else(|| OperatorError::Config("certificate plan kept nothing".into()))?;
            let next = Duration::from_secs(u64::try_from(renew_at - now).unwrap_or(0).max(1));
            Ok((s, Some(next)))
        }
        Plan::Issue { new_ca } => {
            let names: Vec<String> = cfg.sans.clone();
            let fresh = certs::issue(stored.as_ref(), new_ca, &names, now, cfg.lifetimes)
                .map_err(|e| OperatorError::Config(e.to_string()))?;
            let mut obj = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(cfg.namespace.clone()),
                    annotations: Some(fresh.annotations()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_owned(),
                        "spo-webhook".to_owned(),
                    )])),
                    ..ObjectMeta::default()
                },
                type_: Some("kubernetes.io/tls".into()),
                data: Some(fresh.data().into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
                ..Secret::default()
            };
            // Optimistic concurrency: when another replica renewed first, use its certificate.
            let written = match secret {
                None => api.create(&PostParams::default(), &obj).await,
                Some(old) => {
                    obj.metadata.resource_version = old.metadata.resource_version.clone();
                    api.replace(name, &PostParams::default(), &obj).await
                }
            };
            match written {
                Ok(_) => {
                    info!(secret = name, new_ca, "issued the webhook's serving certificate");
                    Ok((fresh, Some(Duration::from_secs(1))))
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    debug!(secret = name, "another replica wrote the certificates first");
                    Box::pin(cert_step(api, cfg, sans)).await
                }
                Err(e) => Err(api_err("writing", "Secret", name)(e)),
            }
        }
    }
}

/// Keeps the MutatingWebhookConfiguration as the SPOD and the CA bundle say.
async fn config_loop(client: Client, cfg: WebhookConfig, endpoint: Endpoint, mut ca_rx: watch::Receiver<Vec<u8>>) {
    let spods: Api<SecurityProfilesOperatorDaemon> = Api::namespaced(client.clone(), &cfg.namespace);
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client);
    let spod_watch = watcher(
        spods,
        watcher::Config::default().fields(&format!("metadata.name={}", cfg.spod_name)),
    )
    .default_backoff()
    .applied_objects();
    futures::pin_mut!(spod_watch);
    let mut spod: Option<SpodWebhook> = None;
    let mut tick = tokio::time::interval(cfg.resync);
    loop {
        tokio::select! {
            changed = ca_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            ev = spod_watch.next() => match ev {
                Some(Ok(s)) => spod = s.spec.webhook.clone(),
                Some(Err(e)) => warn!(error = %e, "watching the SPOD"),
                None => return,
            },
            _ = tick.tick() => {}
        }
        let ca = ca_rx.borrow().clone();
        if ca.is_empty() {
            continue;
        }
        if let Err(e) = apply_config(&configs, &endpoint, &ca, spod.as_ref()).await {
            warn!(error = %spo_model::contract::error_chain(&e), "updating the webhook configuration; retrying");
        }
    }
}

async fn apply_config(
    api: &Api<MutatingWebhookConfiguration>,
    endpoint: &Endpoint,
    ca: &[u8],
    spod: Option<&SpodWebhook>,
) -> Result<(), OperatorError> {
    let name = config::CONFIG_NAME;
    let want = if config::is_static(spod) {
        match api
            .get_opt(name)
            .await
            .map_err(api_err("reading", "MutatingWebhookConfiguration", name))?
        {
            Some(existing) => {
                let mut c = config::with_ca_bundle(&existing, ca);
                c.metadata.managed_fields = None;
                c.metadata.resource_version = None;
                c
            }
            None => config::build(endpoint, ca, spod),
        }
    } else {
        config::build(endpoint, ca, spod)
    };
    let mut want = want;
    want.metadata.uid = None;
    want.metadata.creation_timestamp = None;
    want.metadata.generation = None;
    let mut value = serde_json::to_value(&want).map_err(|e| OperatorError::Config(format!("encoding: {e}")))?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "apiVersion".into(),
            MutatingWebhookConfiguration::api_version(&()).into(),
        );
        obj.insert("kind".into(), MutatingWebhookConfiguration::kind(&()).into());
    }
    api.patch(name, &PatchParams::apply("spo-webhook").force(), &Patch::Apply(&value))
        .await
        .map_err(api_err("applying", "MutatingWebhookConfiguration", name))?;
    debug!(name, "webhook configuration applied");
    Ok(())
}

fn spawn_watches(client: &Client, state: &Arc<WebhookState>, tasks: &mut Tasks) {
    fn relist<T>(ev: Event<T>) -> Relist<T> {
        match ev {
            Event::Apply(o) => Relist::Apply(o),
            Event::Delete(o) => Relist::Delete(o),
            Event::Init => Relist::Begin,
            Event::InitApply(o) => Relist::Item(o),
            Event::InitDone => Relist::Done,
        }
    }
    let wc = || watcher::Config::default().page_size(500);
    {
        let st = state.clone();
        let s = watcher(Api::<ProfileBinding>::all(client.clone()), wc()).default_backoff();
        tasks.spawn(drive("ProfileBinding", s, move |ev| {
            let r = relist(ev);
            st.on_binding(r.as_ref());
        }));
    }
    {
        let st = state.clone();
        let s = watcher(Api::<ProfileRecording>::all(client.clone()), wc()).default_backoff();
        tasks.spawn(drive("ProfileRecording", s, move |ev| {
            st.on_recording(relist(ev).as_ref());
        }));
    }
    {
        let st = state.clone();
        let s = watcher(Api::<SeccompProfile>::all(client.clone()), wc()).default_backoff();
        tasks.spawn(drive("SeccompProfile", s, move |ev| {
            st.on_profile(
                BindingProfileKind::SeccompProfile,
                relist(ev).map(|o| state::seccomp_readiness(&o)),
            );
        }));
    }
    {
        let st = state.clone();
        let s = watcher(Api::<SelinuxProfile>::all(client.clone()), wc()).default_backoff();
        tasks.spawn(drive("SelinuxProfile", s, move |ev| {
            st.on_profile(
                BindingProfileKind::SelinuxProfile,
                relist(ev).map(|o| state::selinux_readiness(&o)),
            );
        }));
    }
    {
        let st = state.clone();
        let s = watcher(Api::<AppArmorProfile>::all(client.clone()), wc()).default_backoff();
        tasks.spawn(drive("AppArmorProfile", s, move |ev| {
            st.on_profile(
                BindingProfileKind::AppArmorProfile,
                relist(ev).map(|o| state::apparmor_readiness(&o)),
            );
        }));
    }
}

impl<T> Relist<T> {
    fn as_ref(&self) -> Relist<&T> {
        match self {
            Relist::Apply(o) => Relist::Apply(o),
            Relist::Delete(o) => Relist::Delete(o),
            Relist::Begin => Relist::Begin,
            Relist::Item(o) => Relist::Item(o),
            Relist::Done => Relist::Done,
        }
    }
}

async fn drive<S, T>(what: &'static str, stream: S, mut on_event: impl FnMut(Event<T>))
where
    S: futures::Stream<Item = Result<Event<T>, watcher::Error>>,
{
    let stream = stream.into_stream();
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(ev) => on_event(ev),
            Err(e) => warn!(watch = what, error = %spo_model::contract::error_chain(&e), "watch failed; retrying"),
        }
    }
    warn!(watch = what, "watch ended");
}
