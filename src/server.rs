//! Listeners: accept, HTTP/1.1 and HTTP/2 (h2c by prior knowledge) on one port, graceful drain.
//!
//! Every listener of tether (public, admin, embedded auth nodes) runs this loop with its own [`Handler`].
//! A handler may serve plain-text connections itself first ([`Handler::serve_plain`]: the proxy's
//! HTTP/1.1 fast path) and hand them to hyper when it meets something it leaves to hyper.
//! On shutdown the listener is dropped first, so new connections are refused at once, then in-flight
//! requests get the grace period to finish (hyper-util's `GracefulShutdown`: idle keep-alive connections
//! close, HTTP/2 connections get a GOAWAY; fast-path connections close when idle).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tokio_rustls::TlsAcceptor;

use crate::body::Body;
use crate::tls::{self, SharedTls};
use prometheus_client::metrics::gauge::Gauge;

/// Why tether could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen on {addr} for the {what}: {source}")]
    Bind {
        /// The listener that failed: "public listener", "admin listener" or an auth node.
        what: &'static str,
        /// The address from the config.
        addr: SocketAddr,
        /// What the OS said (in use, permission denied, no such address).
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The config asks for something this build cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// The admin state file exists but cannot be used; the message names the file and the fix.
    #[error("{0}")]
    StateFile(String),
}

/// Who sent the request: one per connection, handed to each of its requests.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Client address.
    pub addr: SocketAddr,
    /// Arrived over TLS.
    pub tls: bool,
    /// The client address as an `X-Forwarded-For` element, rendered once per connection.
    pub forwarded_for: HeaderValue,
}

impl Peer {
    /// The peer of a connection from `addr`.
    pub fn new(addr: SocketAddr, tls: bool) -> Self {
        Self { addr, tls, forwarded_for: forwarded_for_value(addr.ip()) }
    }
}

/// A client address as an `X-Forwarded-For` element: the address alone, no port (what AM's
/// `ipAddressHeader` setting expects to parse).
pub fn forwarded_for_value(client: IpAddr) -> HeaderValue {
    // An IP address is always a valid header value.
    HeaderValue::from_str(&client.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// A service run by a listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Errors are answers too: there is no failure path.
    fn call(&self, req: Request<Incoming>, peer: Peer) -> impl Future<Output = Response<Body>> + Send;

    /// Serves a plain-text connection before hyper does, and gives it back, with the bytes already read
    /// from it, when hyper should serve the rest; `None` when the connection is done. The default gives
    /// every connection to hyper at once; the proxy serves HTTP/1.1 itself (its fast path).
    fn serve_plain(
        self: Arc<Self>,
        stream: TcpStream,
        addr: SocketAddr,
        ctx: PlainContext,
    ) -> impl Future<Output = Option<Handoff>> + Send {
        let _ = (addr, ctx);
        std::future::ready(Some(Handoff { stream, read: Bytes::new() }))
    }
}

/// What [`Handler::serve_plain`] gets besides the connection.
#[derive(Debug, Clone)]
pub struct PlainContext {
    /// Time a client has for a request head, counted from when the connection starts waiting for it.
    pub header_timeout: Duration,
    /// Fires when the listener starts draining: idle connections close.
    pub shutdown: CancellationToken,
}

/// A connection handed to hyper, with the bytes already read from it (hyper reads them first).
#[derive(Debug)]
pub struct Handoff {
    /// The client connection.
    pub stream: TcpStream,
    /// Read but not consumed: the start of the request hyper is to serve.
    pub read: Bytes,
}

/// The stream hyper serves after a handoff: first the bytes read before, then the socket.
struct Rewind {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
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
pub async fn bind(name: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { what: name, addr, source })
}

/// Largest HTTP/2 header list a client may send (SETTINGS_MAX_HEADER_LIST_SIZE).
pub const MAX_H2_HEADER_LIST: u32 = 64 * 1024;

/// Serves `listener` until `shutdown` fires, then drains.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    opts: ServeOptions,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(opts.header_timeout);
    // hyper's h2 default (16 KiB for all fields, RFC 9113 §6.5.2 counting) refuses a 16 KiB client-side
    // AM session cookie that h1 (~400 KiB of head) takes; 64 KiB admits it with the rest of the fields.
    builder.http2().timer(TokioTimer::new()).max_header_list_size(MAX_H2_HEADER_LIST);
    // Shared, so an idle plain-text connection's task holds a pointer rather than a copy.
    let plain_builder = Arc::new(builder.clone());
    let graceful = GracefulShutdown::new();
    let plain = TaskTracker::new();
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
                let (builder, watcher) = (Arc::clone(&plain_builder), graceful.watcher());
                let ctx = PlainContext { header_timeout: opts.header_timeout, shutdown: shutdown.clone() };
                plain.spawn(async move {
                    let _open = open;
                    let Some(Handoff { stream, read }) =
                        Arc::clone(&handler).serve_plain(stream, addr, ctx).await
                    else {
                        return;
                    };
                    let io = TokioIo::new(Rewind { read, stream });
                    let conn = builder.serve_connection_with_upgrades(io, service(handler, addr, false));
                    // Boxed: hyper's connection state is allocated only for connections that reach it.
                    if let Err(e) = Box::pin(watcher.watch(conn.into_owned())).await {
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
    plain.close();
    let drained = async {
        tokio::join!(graceful.shutdown(), plain.wait());
    };
    tokio::select! {
        () = drained => tracing::debug!(listener = opts.name, "drained"),
        () = tokio::time::sleep(opts.grace) => {
            tracing::warn!(listener = opts.name, grace_s = opts.grace.as_secs(), "grace period over: closing connections with requests still in flight");
        }
    }
}
