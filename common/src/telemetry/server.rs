//! The `/metrics` listener, the only thing a worker ever listens on: HTTP/1.1
//! (hyper) over a bounded number of connections, stopped by a
//! [`CancellationToken`].
//!
//! Bounds: at most [`ServerConfig::max_connections`] connections are served at
//! once; further clients wait in the listen backlog (they are not accepted, so
//! they cost no task and no buffer) until a slot frees, and are refused by the
//! kernel when the listener closes. Each served connection lives at most
//! [`ServerConfig::connection_timeout`] and must send its request head within
//! [`ServerConfig::header_timeout`], so a silent or slow client cannot hold a
//! slot for long. One request per connection (no keep-alive).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The content type of the prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Limits of the `/metrics` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Connections served at the same time (at least 1). Prometheus needs one;
    /// the rest is room for a person with curl.
    pub max_connections: usize,
    /// How long a client may take to send its request head.
    pub header_timeout: Duration,
    /// The longest life of one connection, a slow reader of the response included.
    pub connection_timeout: Duration,
    /// On shutdown, how long responses under way may take to finish.
    pub grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 16,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(2),
        }
    }
}

/// A bound `/metrics` listener that is not serving yet: bind first (so that an
/// address in use is found before anything else starts), then [`run`](Self::run)
/// or [`spawn`](Self::spawn).
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    local: SocketAddr,
    registry: Registry,
    config: ServerConfig,
}

impl MetricsServer {
    /// Bind `addr` (port 0 picks a free port) to serve `registry`.
    ///
    /// # Errors
    /// The bind error: the address is in use, not local, or not allowed.
    pub async fn bind(
        addr: SocketAddr,
        registry: Registry,
        config: ServerConfig,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        Ok(MetricsServer {
            listener,
            local,
            registry,
            config,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serve `GET /metrics` (and `HEAD`) until `shutdown` fires; other paths get
    /// 404, other methods 405. On shutdown the listener closes at once (clients
    /// still in the backlog are refused), responses under way get
    /// [`ServerConfig::grace`] to finish, and this returns when every
    /// connection task has ended.
    pub async fn run(self, shutdown: CancellationToken) {
        let MetricsServer {
            listener,
            registry,
            config,
            ..
        } = self;
        let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let tracker = TaskTracker::new();
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => match a {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors or a connection reset before it
                        // was accepted: wait a little rather than spin.
                        tracing::debug!(error = %e, "/metrics accept failed");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        }
                    }
                },
            };
            tracker.spawn(connection(
                stream,
                registry.clone(),
                config.clone(),
                shutdown.clone(),
                permit,
            ));
        }
        drop(listener);
        tracker.close();
        tracker.wait().await;
    }

    /// [`run`](Self::run) on a task of its own.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }
}

/// Bind `addr` with the default [`ServerConfig`] and serve `registry` on a task
/// of its own until `shutdown`; returns the bound address.
///
/// # Errors
/// The bind error (see [`MetricsServer::bind`]).
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    shutdown: CancellationToken,
) -> io::Result<SocketAddr> {
    let server = MetricsServer::bind(addr, registry, ServerConfig::default()).await?;
    let local = server.local_addr();
    server.spawn(shutdown);
    Ok(local)
}

/// Serve one connection, holding its slot until it ends.
async fn connection(
    stream: TcpStream,
    registry: Registry,
    config: ServerConfig,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let response = respond(&req, &registry);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let served = tokio::time::timeout(config.connection_timeout, async {
        tokio::select! {
            r = conn.as_mut() => r,
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(config.grace, conn.as_mut()).await {
                    Ok(r) => r,
                    Err(_) => Ok(()),
                }
            }
        }
    })
    .await;
    match served {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "/metrics connection ended with an error"),
        Err(_) => tracing::debug!("/metrics connection timed out"),
    }
}

/// The response to one request.
fn respond(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let (status, body) = if req.uri().path() != "/metrics" {
        (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n"))
    } else if req.method() == Method::GET || req.method() == Method::HEAD {
        (StatusCode::OK, Bytes::from(super::render(registry)))
    } else {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(b"method not allowed\n"),
        )
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}
