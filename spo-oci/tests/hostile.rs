//! The registry client against a hostile registry: a small HTTP/1.1 server written here that
//! answers each request with whatever the test's handler says (a canned response, silence, a
//! body that never ends, a lying digest, a redirect) and records every request it got.
//!
//! This is a stand-in for misbehaviour a real registry (tested in `tests/registry.rs`) never
//! shows on request: it only exercises the bounds the client claims (`src/client.rs`), not
//! the registry protocol, which the real registry keeps honest.
//!
//! The server speaks plain HTTP (clients use `plain_http`); where a case needs `https` (a
//! blob redirected to storage on another origin, a bearer realm in the clear) it speaks TLS
//! with a certificate from a CA made by openssl in a temp directory.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spo_oci::artifact::{Descriptor, EMPTY_CONFIG, MANIFEST_MEDIA_TYPE, Packed, pack, sha256_digest};
use spo_oci::{ClientOptions, Credentials, Limits, OciError, Platform, ProfileFile, Reference, Registry, Verification};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const REPO: &str = "team/profiles";
/// `Basic base64("u:p")`, what the client sends for `Credentials::new("u", "p")`.
const BASIC_U_P: &str = "Basic dTpw";
const TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------
// The hostile registry.
// ---------------------------------------------------------------------------------------

/// One request as the server read it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Path and query, as sent.
    target: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn query(&self, key: &str) -> Option<String> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| percent_decode(v))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], escaped) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the server does with a request.
#[derive(Clone, Debug)]
enum Reply {
    /// A whole response (`Content-Length` set from the body).
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The status line and these headers, then nothing, the connection held open.
    Stall {
        status: u16,
        headers: Vec<(String, String)>,
    },
    /// Nothing at all, the connection held open.
    Hang,
    /// The status line and these headers, then a body that never ends: chunked, or
    /// delimited by a close that never comes.
    Endless {
        status: u16,
        headers: Vec<(String, String)>,
        chunked: bool,
    },
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn full(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    Reply::Full {
        status,
        headers: owned(headers),
        body: body.to_vec(),
    }
}

fn redirect(status: u16, location: &str) -> Reply {
    full(status, &[("Location", location)], b"")
}

fn basic_challenge() -> Reply {
    full(401, &[("WWW-Authenticate", "Basic realm=\"x\"")], b"")
}

/// A manifest as a registry serves it, with its true digest in `Docker-Content-Digest`.
fn manifest_reply(body: &[u8]) -> Reply {
    full(
        200,
        &[
            ("Content-Type", MANIFEST_MEDIA_TYPE),
            ("Docker-Content-Digest", &sha256_digest(body)),
        ],
        body,
    )
}

fn blob_reply(body: &[u8]) -> Reply {
    full(200, &[("Content-Type", "application/octet-stream")], body)
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A running hostile registry on 127.0.0.1, stopped with the test's runtime.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Server {
        Server::listen(None, Arc::new(handler)).await
    }

    async fn start_tls(
        tls: &Arc<rustls::ServerConfig>,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Server::listen(Some(tls.clone()), Arc::new(handler)).await
    }

    async fn listen(tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let stream = match &tls {
                    Some(config) => Stream::Tls(Box::new(TlsStream::new(tcp, config.clone()))),
                    None => Stream::Plain(tcp),
                };
                tokio::spawn(connection(stream, handler.clone(), record.clone()));
            }
        });
        Server { addr, seen }
    }

    /// `127.0.0.1:PORT`.
    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("requests").clone()
    }
}

/// Serves one request on `stream` (`Connection: close`: one request a connection).
async fn connection(mut stream: Stream, handler: Handler, seen: Arc<Mutex<Vec<Seen>>>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    seen.lock().expect("requests").push(request.clone());
    let reply = handler(&request);
    // Write errors mean the client hung up, which hostile replies expect.
    let _ = respond(&mut stream, reply).await;
}

/// The request line and headers, up to CRLFCRLF (at most 64 KiB); a body the client sends
/// along is read and dropped.
async fn read_request(stream: &mut Stream) -> Option<Seen> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 << 10 {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let seen = Seen {
        method,
        target,
        headers,
    };
    let length: usize = seen.header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut have = buf.len() - (end + 4);
    while have < length.min(1 << 20) {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Some(seen)
}

fn status_line(status: u16, headers: &[(String, String)]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} Hostile\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.into_bytes()
}

async fn respond(stream: &mut Stream, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::Full { status, headers, body } => {
            let mut out = status_line(status, &headers);
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(&body);
            stream.write_all(&out).await?;
            stream.close().await
        }
        Reply::Stall { status, headers } => {
            let mut out = status_line(status, &headers);
            out.extend_from_slice(b"\r\n");
            stream.write_all(&out).await?;
            std::future::pending().await
        }
        Reply::Hang => std::future::pending().await,
        Reply::Endless {
            status,
            mut headers,
            chunked,
        } => {
            if chunked {
                headers.push(("Transfer-Encoding".into(), "chunked".into()));
            }
            let mut out = status_line(status, &headers);
            out.extend_from_slice(b"\r\n");
            stream.write_all(&out).await?;
            let piece = vec![b'{'; 16 << 10];
            let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), &piece, b"\r\n"].concat();
            loop {
                stream.write_all(if chunked { &chunk } else { &piece }).await?;
            }
        }
    }
}

/// A connection, in the clear or in TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(data).await,
            Stream::Tls(s) => s.write_all(data).await,
        }
    }

    async fn close(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.close().await,
        }
    }
}

/// rustls's server side driven over a tokio socket (no tokio-rustls among the dependencies).
struct TlsStream {
    tcp: TcpStream,
    conn: rustls::ServerConnection,
}

impl TlsStream {
    fn new(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> TlsStream {
        TlsStream {
            tcp,
            conn: rustls::ServerConnection::new(config).expect("TLS server connection"),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        while self.conn.wants_write() {
            let mut out = Vec::new();
            self.conn.write_tls(&mut out)?;
            self.tcp.write_all(&out).await?;
        }
        Ok(())
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            self.flush().await?;
            let mut raw = [0u8; 16 << 10];
            let n = self.tcp.read(&mut raw).await?;
            if n == 0 {
                return Ok(0);
            }
            let mut rest = &raw[..n];
            while !rest.is_empty() {
                self.conn.read_tls(&mut rest)?;
                self.conn.process_new_packets().map_err(std::io::Error::other)?;
            }
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        for piece in data.chunks(8 << 10) {
            self.conn.writer().write_all(piece)?;
            self.flush().await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> std::io::Result<()> {
        self.conn.send_close_notify();
        self.flush().await?;
        self.tcp.shutdown().await
    }
}

/// A CA (its PEM file, for `ClientOptions::ca_files`) and a server config with a certificate
/// it signed for 127.0.0.1, made by openssl in `dir`.
fn tls_material(dir: &Path) -> (PathBuf, Arc<rustls::ServerConfig>) {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(&[
        &["req", "-x509", "-new"][..],
        &p256,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=hostile test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat());
    run(&[
        &["req", "-new"][..],
        &p256,
        &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .expect("extensions file");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "0x5eed",
        "-days",
        "2",
        "-out",
        "server.pem",
        "-extfile",
        "server.ext",
    ]);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .expect("server.pem")
        .collect::<Result<_, _>>()
        .expect("server certificate");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    (dir.join("ca.pem"), Arc::new(config))
}

// ---------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn options() -> ClientOptions {
    ClientOptions {
        plain_http: true,
        request_timeout: TIMEOUT,
        ..ClientOptions::default()
    }
}

fn client(server: &Server, options: &ClientOptions) -> Registry {
    Registry::new(&server.host(), Some(Credentials::new("u", "p")), options).expect("client")
}

fn amd64() -> Platform {
    Platform::parse("linux/amd64").expect("platform")
}

fn seccomp(name: &str) -> Vec<u8> {
    format!(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata:\n  name: {name}\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n"
    )
    .into_bytes()
}

/// A real profile artifact (manifest and layer) holding the seccomp profile `name`.
fn artifact(name: &str) -> Packed {
    pack(
        &[ProfileFile {
            platform: amd64(),
            yaml: seccomp(name),
        }],
        &BTreeMap::new(),
        "2026-01-01T00:00:00Z",
    )
    .expect("pack")
}

fn layer(packed: &Packed) -> (Descriptor, Vec<u8>) {
    packed.layers[0].clone()
}

/// Serves `packed` honestly: its manifest by `tag` and by digest, its blobs by digest.
fn serve(packed: &Packed, tag: &str, req: &Seen) -> Reply {
    let path = req.path();
    let manifests = format!("/v2/{REPO}/manifests/");
    let blobs = format!("/v2/{REPO}/blobs/");
    if let Some(id) = path.strip_prefix(&manifests)
        && (id == tag || id == packed.digest)
    {
        return manifest_reply(&packed.manifest);
    }
    if let Some(digest) = path.strip_prefix(&blobs) {
        if digest == sha256_digest(EMPTY_CONFIG) {
            return blob_reply(EMPTY_CONFIG);
        }
        if let Some((_, content)) = packed.layers.iter().find(|(d, _)| d.digest == digest) {
            return blob_reply(content);
        }
    }
    full(
        404,
        &[("Content-Type", "application/json")],
        br#"{"errors":[{"code":"NOT_FOUND","message":"not here"}]}"#,
    )
}

/// Characters an error message must never carry raw: they would rewrite a terminal or forge
/// log lines.
fn assert_printable(text: &str) {
    assert!(!text.chars().any(|c| c.is_control()), "control characters in {text:?}");
}

// ---------------------------------------------------------------------------------------
// 1. Bodies are read up to a limit.
// ---------------------------------------------------------------------------------------

fn endless_manifest_is_too_large(chunked: bool) {
    rt().block_on(async {
        let server = Server::start(move |_| Reply::Endless {
            status: 200,
            headers: owned(&[("Content-Type", MANIFEST_MEDIA_TYPE)]),
            chunked,
        })
        .await;
        let opts = ClientOptions {
            limits: Limits {
                manifest_bytes: 64 << 10,
                ..Limits::default()
            },
            ..options()
        };
        let start = Instant::now();
        let e = client(&server, &opts)
            .manifest(REPO, "latest")
            .await
            .expect_err("an endless manifest");
        let elapsed = start.elapsed();
        assert!(
            matches!(&e, OciError::TooLarge { limit: 65536, size, .. } if *size > 65536 && *size < 1 << 20),
            "{e:?}"
        );
        assert!(e.to_string().contains("more than the limit of 65536"), "{e}");
        assert!(e.to_string().contains("fetching manifest team/profiles:latest"), "{e}");
        // Stopped at the limit, not by the deadline.
        assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    });
}

#[test]
fn an_endless_chunked_manifest_stops_at_the_limit() {
    endless_manifest_is_too_large(true);
}

#[test]
fn an_endless_manifest_without_length_stops_at_the_limit() {
    endless_manifest_is_too_large(false);
}

#[test]
fn a_manifest_length_over_the_limit_is_refused_before_its_body() {
    rt().block_on(async {
        // The headers promise 1 GiB and the body never comes: reading any of it would end in
        // the deadline, not in TooLarge.
        let server = Server::start(|_| Reply::Stall {
            status: 200,
            headers: owned(&[("Content-Type", MANIFEST_MEDIA_TYPE), ("Content-Length", "1073741824")]),
        })
        .await;
        let opts = ClientOptions {
            limits: Limits {
                manifest_bytes: 64 << 10,
                ..Limits::default()
            },
            ..options()
        };
        let start = Instant::now();
        let e = client(&server, &opts)
            .manifest(REPO, "latest")
            .await
            .expect_err("1 GiB");
        assert!(
            matches!(
                &e,
                OciError::TooLarge {
                    limit: 65536,
                    size: 1073741824,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("1073741824 bytes"), "{e}");
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "took {:?}",
            start.elapsed()
        );
    });
}

// ---------------------------------------------------------------------------------------
// 2. Content is checked against its digest.
// ---------------------------------------------------------------------------------------

#[test]
fn a_blob_that_is_not_its_digest_is_refused() {
    rt().block_on(async {
        let (descriptor, mut content) = layer(&artifact("web"));
        // Same length, one byte changed.
        content[0] ^= 0x20;
        let forged = content.clone();
        let server = Server::start(move |_| blob_reply(&forged)).await;
        let e = client(&server, &options())
            .blob(REPO, &descriptor)
            .await
            .expect_err("forged blob");
        let OciError::DigestMismatch { expected, actual, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(expected, &descriptor.digest);
        assert_eq!(actual, &sha256_digest(&content));
        assert!(e.to_string().contains("content does not match its digest"), "{e}");
    });
}

#[test]
fn a_blob_longer_than_its_descriptor_is_too_large() {
    rt().block_on(async {
        let (descriptor, content) = layer(&artifact("web"));
        let size = descriptor.size;
        // With a Content-Length: refused before the body (TooLarge).
        let longer = [content.as_slice(), b"# and more\n"].concat();
        let server = Server::start(move |_| blob_reply(&longer)).await;
        let e = client(&server, &options())
            .blob(REPO, &descriptor)
            .await
            .expect_err("longer blob");
        assert!(
            matches!(&e, OciError::TooLarge { limit, size: got, .. } if *limit == size && *got == size + 11),
            "{e:?}"
        );
        assert!(e.to_string().contains(&format!("more than the limit of {size}")), "{e}");
        assert!(e.to_string().contains(&descriptor.digest), "{e}");
        // Without one (an endless body): stopped at the first byte over (TooLarge as well).
        let server = Server::start(|_| Reply::Endless {
            status: 200,
            headers: Vec::new(),
            chunked: true,
        })
        .await;
        let e = client(&server, &options())
            .blob(REPO, &descriptor)
            .await
            .expect_err("endless blob");
        assert!(
            matches!(&e, OciError::TooLarge { limit, .. } if *limit == size),
            "{e:?}"
        );
    });
}

#[test]
fn a_blob_shorter_than_its_descriptor_is_refused() {
    rt().block_on(async {
        let (descriptor, content) = layer(&artifact("web"));
        let shorter = content[..content.len() - 1].to_vec();
        let server = Server::start(move |_| blob_reply(&shorter)).await;
        let e = client(&server, &options())
            .blob(REPO, &descriptor)
            .await
            .expect_err("shorter blob");
        assert!(matches!(&e, OciError::DigestMismatch { .. }), "{e:?}");
        assert!(
            e.to_string().contains(&format!(
                "{} bytes where the manifest says {}",
                content.len() - 1,
                content.len()
            )),
            "{e}"
        );
    });
}

#[test]
fn a_lying_docker_content_digest_is_refused() {
    rt().block_on(async {
        let packed = artifact("web");
        let lie = sha256_digest(b"another manifest");
        let (body, said) = (packed.manifest.clone(), lie.clone());
        let server = Server::start(move |_| {
            full(
                200,
                &[("Content-Type", MANIFEST_MEDIA_TYPE), ("Docker-Content-Digest", &said)],
                &body,
            )
        })
        .await;
        let e = client(&server, &options())
            .manifest(REPO, "latest")
            .await
            .expect_err("lying header");
        let OciError::DigestMismatch { expected, actual, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(expected, &lie);
        assert_eq!(actual, &packed.digest);
        assert!(e.to_string().contains("Docker-Content-Digest"), "{e}");
    });
}

#[test]
fn a_manifest_by_digest_with_another_body_is_refused() {
    rt().block_on(async {
        // Asked for B by digest, the registry answers A (with A's own, true digest header).
        let a = artifact("a");
        let b = artifact("b");
        let body = a.manifest.clone();
        let server = Server::start(move |_| manifest_reply(&body)).await;
        let registry = client(&server, &options());
        let reference = Reference::parse(&format!("{}/{REPO}@{}", server.host(), b.digest)).expect("reference");
        let e = spo_oci::pull(&registry, &reference, &amd64(), &Verification::Disabled)
            .await
            .expect_err("another manifest");
        let OciError::DigestMismatch { expected, actual, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(expected, &b.digest);
        assert_eq!(actual, &a.digest);
        assert!(
            e.to_string()
                .contains(&format!("fetching manifest {REPO}:{}", b.digest)),
            "{e}"
        );
        let seen = server.seen();
        assert_eq!(seen.len(), 1, "nothing after the manifest: {seen:?}");
        assert_eq!(seen[0].path(), format!("/v2/{REPO}/manifests/{}", b.digest));
    });
}

// ---------------------------------------------------------------------------------------
// 3. Every request has a deadline.
// ---------------------------------------------------------------------------------------

#[test]
fn a_registry_that_never_answers_times_out() {
    rt().block_on(async {
        let server = Server::start(|_| Reply::Hang).await;
        let start = Instant::now();
        let e = client(&server, &options())
            .manifest(REPO, "latest")
            .await
            .expect_err("no answer");
        let elapsed = start.elapsed();
        assert!(
            matches!(&e, OciError::Timeout { after, .. } if *after == TIMEOUT),
            "{e:?}"
        );
        assert!(e.to_string().contains("no answer within 2s"), "{e}");
        assert!(
            elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(5),
            "took {elapsed:?}"
        );
        assert_eq!(server.seen().len(), 1, "the request reached the server");
    });
}

#[test]
fn a_body_that_stops_coming_times_out() {
    rt().block_on(async {
        // Headers at once, then 100 promised bytes that never come: the deadline covers the
        // body too.
        let server = Server::start(|_| Reply::Stall {
            status: 200,
            headers: owned(&[("Content-Type", MANIFEST_MEDIA_TYPE), ("Content-Length", "100")]),
        })
        .await;
        let start = Instant::now();
        let e = client(&server, &options())
            .manifest(REPO, "latest")
            .await
            .expect_err("stalled body");
        let elapsed = start.elapsed();
        assert!(matches!(&e, OciError::Timeout { .. }), "{e:?}");
        assert!(e.to_string().contains("no answer within 2s"), "{e}");
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    });
}

// ---------------------------------------------------------------------------------------
// 4. Redirects: blobs only, bounded, https only, no credentials elsewhere.
// ---------------------------------------------------------------------------------------

#[test]
fn a_blob_redirected_elsewhere_is_fetched_without_the_credentials() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, tls) = tls_material(dir.path());
    rt().block_on(async {
        let (descriptor, content) = layer(&artifact("web"));
        let stored = content.clone();
        // Storage on another origin (another port, https), as registries hand blobs to S3.
        let storage = Server::start_tls(&tls, move |req| {
            if req.path().starts_with("/storage/") && req.query("sig").as_deref() == Some("s3cr3t") {
                blob_reply(&stored)
            } else {
                full(403, &[], b"bad signature")
            }
        })
        .await;
        let location = format!("https://{}/storage/blob?sig=s3cr3t", storage.host());
        // The registry (plain HTTP) demands Basic auth, then sends the blob to storage.
        let registry = Server::start(move |req| {
            if req.header("authorization") != Some(BASIC_U_P) {
                return basic_challenge();
            }
            redirect(307, &location)
        })
        .await;
        let opts = ClientOptions {
            ca_files: vec![ca],
            ..options()
        };
        let got = client(&registry, &opts)
            .blob(REPO, &descriptor)
            .await
            .expect("redirected blob");
        assert_eq!(got, content);
        let asked = registry.seen();
        assert_eq!(
            asked.len(),
            2,
            "a challenge, then the request with credentials: {asked:?}"
        );
        assert_eq!(asked[0].header("authorization"), None);
        assert_eq!(asked[1].header("authorization"), Some(BASIC_U_P));
        assert_eq!(asked[1].path(), format!("/v2/{REPO}/blobs/{}", descriptor.digest));
        let stored = storage.seen();
        assert_eq!(stored.len(), 1, "{stored:?}");
        assert_eq!(stored[0].target, "/storage/blob?sig=s3cr3t");
        assert_eq!(
            stored[0].header("authorization"),
            None,
            "credentials leaked to another origin"
        );
    });
}

#[test]
fn a_redirect_loop_ends_after_five_hops() {
    rt().block_on(async {
        let (descriptor, _) = layer(&artifact("web"));
        let hops = Arc::new(AtomicUsize::new(0));
        let count = hops.clone();
        let server = Server::start(move |req| {
            let n = count.fetch_add(1, Ordering::SeqCst);
            redirect(302, &format!("{}?hop={n}", req.path()))
        })
        .await;
        let e = client(&server, &options())
            .blob(REPO, &descriptor)
            .await
            .expect_err("loop");
        assert!(matches!(&e, OciError::Redirect { .. }), "{e:?}");
        assert!(e.to_string().contains("more than 5 redirects"), "{e}");
        // The first request and five redirects followed; the sixth is not.
        assert_eq!(server.seen().len(), 6, "{:?}", server.seen());
    });
}

#[test]
fn a_manifest_redirect_is_refused() {
    rt().block_on(async {
        let elsewhere = Server::start(|_| manifest_reply(&artifact("web").manifest)).await;
        let location = format!("http://{}/v2/{REPO}/manifests/latest", elsewhere.host());
        let to = location.clone();
        let server = Server::start(move |_| redirect(307, &to)).await;
        let e = client(&server, &options())
            .manifest(REPO, "latest")
            .await
            .expect_err("redirected manifest");
        let OciError::Redirect { url, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(url, &location);
        assert!(e.to_string().contains("only followed for blobs"), "{e}");
        assert_eq!(server.seen().len(), 1);
        assert!(elsewhere.seen().is_empty(), "the redirect was followed");
    });
}

#[test]
fn a_blob_redirected_to_plain_http_elsewhere_is_refused() {
    rt().block_on(async {
        let (descriptor, content) = layer(&artifact("web"));
        let elsewhere = Server::start(move |_| blob_reply(&content)).await;
        let location = format!("http://{}/storage/blob", elsewhere.host());
        let to = location.clone();
        let server = Server::start(move |_| redirect(307, &to)).await;
        let e = client(&server, &options())
            .blob(REPO, &descriptor)
            .await
            .expect_err("http elsewhere");
        let OciError::Redirect { url, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(url, &location);
        assert!(e.to_string().contains("away from https"), "{e}");
        assert!(elsewhere.seen().is_empty(), "the redirect was followed");
    });
}

#[test]
fn a_blob_redirected_within_the_registry_over_plain_http_is_followed() {
    rt().block_on(async {
        // The counterpart of the refusals: same origin under plain_http is followed, with the
        // credentials (it is the registry).
        let (descriptor, content) = layer(&artifact("web"));
        let stored = content.clone();
        let server = Server::start(move |req| {
            if req.header("authorization") != Some(BASIC_U_P) {
                return basic_challenge();
            }
            if req.path().starts_with("/v2/") {
                redirect(307, "/storage/blob")
            } else {
                blob_reply(&stored)
            }
        })
        .await;
        let got = client(&server, &options()).blob(REPO, &descriptor).await.expect("blob");
        assert_eq!(got, content);
        let seen = server.seen();
        assert_eq!(seen.last().map(Seen::path), Some("/storage/blob"));
        assert_eq!(seen.last().and_then(|s| s.header("authorization")), Some(BASIC_U_P));
    });
}

// ---------------------------------------------------------------------------------------
// 5. A pull resolves the tag once.
// ---------------------------------------------------------------------------------------

#[test]
fn a_tag_moving_during_a_pull_does_not_matter() {
    rt().block_on(async {
        let a = artifact("first");
        let b = artifact("second");
        let tag_requests = Arc::new(AtomicUsize::new(0));
        let count = tag_requests.clone();
        let (sa, sb) = (a.clone(), b.clone());
        let tag_path = format!("/v2/{REPO}/manifests/latest");
        let server = Server::start(move |req| {
            // The tag moves to B right after it was first read.
            if req.path() == tag_path && count.fetch_add(1, Ordering::SeqCst) > 0 {
                return manifest_reply(&sb.manifest);
            }
            match serve(&sa, "latest", req) {
                Reply::Full { status: 404, .. } => serve(&sb, "-", req),
                reply => reply,
            }
        })
        .await;
        let registry = client(&server, &options());
        let reference = Reference::parse(&format!("{}/{REPO}:latest", server.host())).expect("reference");
        let pulled = spo_oci::pull(&registry, &reference, &amd64(), &Verification::Disabled)
            .await
            .expect("pull");
        assert_eq!(pulled.digest, a.digest);
        assert_eq!(pulled.profile, seccomp("first"));
        assert_eq!(pulled.reference.digest(), Some(a.digest.as_str()));
        let seen = server.seen();
        let by_tag: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.path().ends_with("/manifests/latest"))
            .collect();
        assert_eq!(by_tag.len(), 1, "{seen:?}");
        assert!(
            seen.iter()
                .filter(|s| !s.path().ends_with("/manifests/latest"))
                .all(|s| s.path().contains("/sha256:")),
            "everything after the tag by digest: {seen:?}"
        );
        assert!(seen.len() >= 2, "the layer was fetched: {seen:?}");
        assert!(seen.iter().all(|s| s.method == "GET"), "a pull only reads: {seen:?}");
        // The tag did move: the next pull gets B.
        let again = spo_oci::pull(&registry, &reference, &amd64(), &Verification::Disabled)
            .await
            .expect("second pull");
        assert_eq!(again.digest, b.digest);
        assert_eq!(again.profile, seccomp("second"));
    });
}

// ---------------------------------------------------------------------------------------
// 6. Bearer tokens.
// ---------------------------------------------------------------------------------------

#[test]
fn a_bearer_challenge_gets_a_token_from_the_realm() {
    rt().block_on(async {
        let packed = artifact("web");
        let served = packed.clone();
        let server = Server::start(move |req| {
            if req.path() == "/token" {
                return if req.header("authorization") == Some(BASIC_U_P) {
                    full(200, &[("Content-Type", "application/json")], br#"{"token":"tok-1"}"#)
                } else {
                    full(401, &[], b"")
                };
            }
            if req.header("authorization") != Some("Bearer tok-1") {
                let host = req.header("host").unwrap_or_default();
                let challenge = format!("Bearer realm=\"http://{host}/token\",service=\"reg\"");
                return full(401, &[("WWW-Authenticate", &challenge)], b"");
            }
            serve(&served, "latest", req)
        })
        .await;
        let registry = client(&server, &options());
        let reference = Reference::parse(&format!("{}/{REPO}:latest", server.host())).expect("reference");
        let pulled = spo_oci::pull(&registry, &reference, &amd64(), &Verification::Disabled)
            .await
            .expect("pull with a token");
        assert_eq!(pulled.digest, packed.digest);
        let seen = server.seen();
        let tokens: Vec<&Seen> = seen.iter().filter(|s| s.path() == "/token").collect();
        assert_eq!(tokens.len(), 1, "one token for the pull scope, cached: {seen:?}");
        assert_eq!(tokens[0].header("authorization"), Some(BASIC_U_P));
        assert_eq!(
            tokens[0].query("scope").as_deref(),
            Some("repository:team/profiles:pull")
        );
        assert_eq!(tokens[0].query("service").as_deref(), Some("reg"));
        let api: Vec<&Seen> = seen.iter().filter(|s| s.path().starts_with("/v2/")).collect();
        assert_eq!(api[0].header("authorization"), None, "first asked without");
        assert!(
            api[1..]
                .iter()
                .all(|s| s.header("authorization") == Some("Bearer tok-1")),
            "then with the token only, never the password: {api:?}"
        );
        assert!(api.len() >= 3, "the manifest retried and the layer fetched: {api:?}");
    });
}

#[test]
fn a_bearer_realm_in_the_clear_gets_no_credentials_over_tls() {
    // Possible here since the server speaks TLS as well: a registry over https naming an
    // http:// token realm.
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, tls) = tls_material(dir.path());
    rt().block_on(async {
        let realm = Server::start(|_| full(200, &[], br#"{"token":"t"}"#)).await;
        let challenge = format!("Bearer realm=\"http://{}/token\",service=\"reg\"", realm.host());
        let server = Server::start_tls(&tls, move |_| full(401, &[("WWW-Authenticate", &challenge)], b"")).await;
        let opts = ClientOptions {
            plain_http: false,
            ca_files: vec![ca],
            request_timeout: TIMEOUT,
            ..ClientOptions::default()
        };
        let e = client(&server, &opts)
            .manifest(REPO, "latest")
            .await
            .expect_err("realm in the clear");
        assert!(matches!(&e, OciError::Unauthorized { .. }), "{e:?}");
        assert!(e.to_string().contains("is not https"), "{e}");
        assert_eq!(server.seen().len(), 1);
        assert!(realm.seen().is_empty(), "credentials sent in the clear");
    });
}

// ---------------------------------------------------------------------------------------
// 7. Registry errors.
// ---------------------------------------------------------------------------------------

#[test]
fn a_registry_error_names_its_code() {
    rt().block_on(async {
        let server = Server::start(|_| {
            full(
                404,
                &[("Content-Type", "application/json")],
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            )
        })
        .await;
        let e = client(&server, &options())
            .manifest(REPO, "latest")
            .await
            .expect_err("404");
        let OciError::Status { status, message, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(*status, 404);
        assert_eq!(message, "MANIFEST_UNKNOWN: manifest unknown");
        assert!(e.to_string().contains("HTTP 404: MANIFEST_UNKNOWN"), "{e}");
    });
}

#[test]
fn a_hostile_error_body_is_escaped() {
    rt().block_on(async {
        let server = Server::start(|req| {
            if req.path().ends_with("/json") {
                full(
                    500,
                    &[],
                    br#"{"errors":[{"code":"X\n\u001b[2J","message":"fine\r\nInjected: line\u0007"}]}"#,
                )
            } else {
                full(
                    500,
                    &[("Content-Type", "text/plain")],
                    b"oops\n\x1b[31mred\x1b]0;title\x07\r\nFake log line",
                )
            }
        })
        .await;
        let registry = client(&server, &options());
        for id in ["text", "json"] {
            let e = registry.manifest(REPO, id).await.expect_err("500");
            let OciError::Status { status, message, .. } = &e else {
                panic!("{e:?}");
            };
            assert_eq!(*status, 500);
            assert_printable(message);
            assert_printable(&e.to_string());
            assert!(message.contains("\\n") && message.contains("\\u{1b}"), "{message}");
        }
        let e = registry.manifest(REPO, "text").await.expect_err("500");
        assert!(e.to_string().contains(r"oops\n\u{1b}[31mred"), "{e}");
    });
}

#[test]
fn an_endless_error_body_is_cut_short() {
    rt().block_on(async {
        let server = Server::start(|_| Reply::Endless {
            status: 500,
            headers: Vec::new(),
            chunked: true,
        })
        .await;
        let start = Instant::now();
        let e = client(&server, &options())
            .manifest(REPO, "latest")
            .await
            .expect_err("500");
        assert!(matches!(&e, OciError::Status { status: 500, .. }), "{e:?}");
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "took {:?}",
            start.elapsed()
        );
    });
}
