//! Listeners: accept, HTTP/1.1 and HTTP/2 (h2c by prior knowledge) on one port, graceful drain.
//!
//! Every listener of tether (public, admin, embedded auth nodes) runs this loop with its own [`Handler`].
//! On shutdown the listener is dropped first, so new connections are refused at once, then in-flight
//! requests get the grace period to finish (hyper-util's `GracefulShutdown`: idle keep-alive connections
//! close, HTTP/2 connections get a GOAWAY).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use tokio_rustls::TlsAcceptor;

use crate::body::Body;
use crate::proxy::Peer;
use crate::tls::SharedTls;
use prometheus_client::metrics::gauge::Gauge;

/// A service run by a listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Errors are answers too: there is no failure path.
    fn call(&self, req: Request<Incoming>, peer: Peer) -> impl Future<Output = Response<Body>> + Send;
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Listener name for logs.
    pub name: &'static str,
    /// Time a client has for its request headers (HTTP/1).
    pub header_timeout: Duration,
    /// Time in-flight requests get after shutdown starts.
    pub grace: Duration,
    /// TLS, with the bound on the handshake.
    pub tls: Option<(SharedTls, Duration)>,
    /// Open client connections.
    pub connections: Gauge,
}

/// Counts a connection as open until its task ends, however it ends.
struct Open(Gauge);

impl Open {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The hyper service of one connection.
fn service<H: Handler>(
    handler: Arc<H>,
    addr: SocketAddr,
    tls: bool,
) -> impl hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone {
    let peer = Peer::new(addr, tls);
    service_fn(move |req| {
        let handler = Arc::clone(&handler);
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(handler.call(req, peer).await) }
    })
}

/// Binds `addr`, naming the listener in the error.
pub async fn bind(name: &'static str, addr: SocketAddr) -> Result<TcpListener, crate::StartError> {
    TcpListener::bind(addr).await.map_err(|source| crate::StartError::Bind { what: name, addr, source })
}

/// Serves `listener` until `shutdown` fires, then drains.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    opts: ServeOptions,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(opts.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, addr) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(listener = opts.name, error = %e, "accept failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(20)) => continue,
                    }
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        let open = Open::new(&opts.connections);
        match &opts.tls {
            None => {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service(handler, addr, false));
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _open = open;
                    if let Err(e) = conn.await {
                        tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
                    }
                });
            }
            Some((tls, handshake_timeout)) => {
                // The handshake runs in the connection's task, so a slow client never holds up accept.
                let acceptor = TlsAcceptor::from(tls.load_full());
                let (builder, watcher, handshake_timeout) =
                    (builder.clone(), graceful.watcher(), *handshake_timeout);
                tokio::spawn(async move {
                    let _open = open;
                    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            return tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                        }
                        Err(_) => return tracing::debug!(peer = %addr, "TLS handshake timed out"),
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service(handler, addr, true));
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!(listener = opts.name, "drained"),
        () = tokio::time::sleep(opts.grace) => {
            tracing::warn!(listener = opts.name, grace_s = opts.grace.as_secs(), "grace period over: closing connections with requests still in flight");
        }
    }
}
