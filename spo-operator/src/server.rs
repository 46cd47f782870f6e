//! The HTTP endpoints of a process: `/metrics` (Prometheus), `/healthz` (liveness) and
//! `/readyz` (readiness), on one configurable address.
//!
//! - `/healthz` answers 200 while the process's control loops run. It does **not** depend on
//!   the apiserver: an apiserver outage must not make the kubelet restart every operator pod
//!   (they reconnect by themselves), which would turn an outage into a crash loop.
//! - `/readyz` answers 200 once the process has listed what it needs (the daemon: SPOD, node
//!   statuses and profiles; the manager: its indexes, or, while another replica leads, a
//!   working lease loop).
//!
//! Routing is a pure function ([`respond`]); [`serve`] is the hyper shell around it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tracing::{debug, info, warn};

use crate::error::OperatorError;
use crate::metrics::{CONTENT_TYPE, Metrics};

/// Liveness and readiness flags, set by the control loops.
#[derive(Debug)]
pub struct Health {
    live: AtomicBool,
    ready: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            live: AtomicBool::new(true),
            ready: AtomicBool::new(false),
        }
    }
}

impl Health {
    /// Marks the process ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Marks the control loops as dead (a bug or a fatal error): liveness fails so the
    /// kubelet restarts the container.
    pub fn set_dead(&self) {
        self.live.store(false, Ordering::Relaxed);
    }

    /// Whether the process is live.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// What the endpoints read.
#[derive(Debug, Default)]
pub struct Endpoints {
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The flags.
    pub health: Arc<Health>,
}

/// An HTTP answer (status, content type, body).
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

const TEXT: &str = "text/plain; charset=utf-8";

fn text(status: StatusCode, body: &str) -> Answer {
    Answer {
        status,
        content_type: TEXT,
        body: format!("{body}\n"),
    }
}

/// Answers one request (pure apart from reading the flags and counters).
pub fn respond(method: &Method, path: &str, endpoints: &Endpoints) -> Answer {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are served");
    }
    match path {
        "/metrics" => Answer {
            status: StatusCode::OK,
            content_type: CONTENT_TYPE,
            body: endpoints.metrics.render(),
        },
        "/healthz" | "/livez" => {
            if endpoints.health.is_live() {
                text(StatusCode::OK, "ok")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "control loop stopped")
            }
        }
        "/readyz" => {
            if endpoints.health.is_ready() {
                text(StatusCode::OK, "ok")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready: initial lists not complete")
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found; try /metrics, /healthz or /readyz"),
    }
}

/// Binds `addr`; returns the listener and the address it got (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), OperatorError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| OperatorError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| OperatorError::Listen { addr, source })?;
    Ok((listener, local))
}

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, endpoints: Arc<Endpoints>) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accepting a metrics/health connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let answer = respond(req.method(), req.uri().path(), &endpoints);
                let body = if req.method() == Method::HEAD {
                    Bytes::new()
                } else {
                    Bytes::from(answer.body)
                };
                let response = Response::builder()
                    .status(answer.status)
                    .header(hyper::header::CONTENT_TYPE, answer.content_type)
                    .body(Full::new(body));
                async move { response }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "metrics/health connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let e = Endpoints::default();
        let get = Method::GET;
        assert_eq!(respond(&get, "/healthz", &e).status, StatusCode::OK);
        assert_eq!(respond(&get, "/readyz", &e).status, StatusCode::SERVICE_UNAVAILABLE);
        e.health.set_ready(true);
        assert_eq!(respond(&get, "/readyz", &e).status, StatusCode::OK);
        let m = respond(&get, "/metrics", &e);
        assert_eq!((m.status, m.content_type), (StatusCode::OK, CONTENT_TYPE));
        assert!(
            m.body.contains("security_profiles_operator_seccomp_profile_total"),
            "{}",
            m.body
        );
        assert_eq!(respond(&get, "/nope", &e).status, StatusCode::NOT_FOUND);
        assert_eq!(
            respond(&Method::POST, "/metrics", &e).status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        e.health.set_dead();
        assert_eq!(respond(&get, "/healthz", &e).status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn serves_over_http() {
        let endpoints = Arc::new(Endpoints::default());
        endpoints.health.set_ready(true);
        let (listener, addr) = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
        let server = tokio::spawn(serve(listener, endpoints));
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
                .await
                .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        let ready = get("/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        let metrics = get("/metrics").await;
        assert!(metrics.contains("application/openmetrics-text"), "{metrics}");
        assert!(metrics.contains("security_profiles_operator_leader 0"), "{metrics}");
        server.abort();
    }
}
