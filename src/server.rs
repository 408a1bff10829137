//! Listeners: accept, HTTP/1.1 and HTTP/2 (h2c by prior knowledge) on one port, graceful drain.
//!
//! With [`ServeOptions::proxy_protocol`] every connection starts with a PROXY protocol header (read by
//! the `proxy_protocol` submodule, before TLS), whose source is the [`Peer`] from then on.
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

mod proxy_protocol;

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
    /// The peer's address: the socket's, or the source a PROXY protocol header named.
    pub addr: SocketAddr,
    /// The port the client connected to (`X-Forwarded-Port`): the listener's, or the destination a
    /// PROXY protocol header named.
    pub local_port: u16,
    /// Arrived over TLS.
    pub tls: bool,
    /// The TLS version negotiated (`TLSv1.3`), for the access line.
    pub tls_version: Option<&'static str>,
    /// The peer address as an `X-Forwarded-For` element, rendered once per connection.
    pub forwarded_for: HeaderValue,
}

impl Peer {
    /// The peer of a plain-text connection.
    pub fn new(addrs: Addresses) -> Self {
        Self {
            addr: addrs.peer(),
            local_port: addrs.local_port,
            tls: false,
            tls_version: None,
            forwarded_for: forwarded_for_value(addrs.ip),
        }
    }
}

/// The addresses of a connection, after any PROXY protocol header: copied into each request's work.
/// Kept as address and ports rather than a `SocketAddr` (whose IPv6 flow and scope fields nothing
/// here reads): every idle fast-path connection holds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The peer's address (the client, or the proxy in front of tether).
    pub ip: IpAddr,
    /// The peer's port.
    pub port: u16,
    /// The port the peer connected to.
    pub local_port: u16,
}

impl Addresses {
    /// The addresses of a connection from `peer` to `local_port`.
    pub fn new(peer: SocketAddr, local_port: u16) -> Self {
        Self { ip: peer.ip(), port: peer.port(), local_port }
    }

    /// The peer as `ip:port`.
    pub fn peer(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

/// The name of a TLS version as access lines write it.
fn tls_version_name(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "TLS",
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
    /// from it, when hyper should serve the rest; `None` when the connection is done. `start` holds the
    /// bytes read after a PROXY protocol header. The default gives every connection to hyper at once;
    /// the proxy serves HTTP/1.1 itself (its fast path).
    fn serve_plain(
        self: Arc<Self>,
        start: Handoff,
        addrs: Addresses,
        ctx: PlainContext,
    ) -> impl Future<Output = Option<Handoff>> + Send {
        let _ = (addrs, ctx);
        std::future::ready(Some(start))
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
    /// Every connection starts with a PROXY protocol header, read within `header_timeout`.
    pub proxy_protocol: bool,
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
    peer: Peer,
) -> impl hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone {
    service_fn(move |req| {
        let handler = Arc::clone(&handler);
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(handler.call(req, peer).await) }
    })
}

/// The start of a connection: with `proxy_protocol`, its PROXY header is read (within `timeout`) and
/// its source becomes the peer; a connection without a valid one is closed unanswered (`None`), as
/// HAProxy's `accept-proxy` does, so no client can pass for another by skipping it.
async fn start(
    stream: TcpStream,
    addrs: Addresses,
    proxy_protocol: bool,
    timeout: Duration,
) -> Option<(Handoff, Addresses)> {
    if !proxy_protocol {
        return Some((Handoff { stream, read: Bytes::new() }, addrs));
    }
    // Boxed: only connections of such a listener pay for the reader's state, once.
    match tokio::time::timeout(timeout, Box::pin(read_proxy_header(stream, addrs))).await {
        Ok(Ok(started)) => Some(started),
        Ok(Err(reason)) => {
            tracing::debug!(peer = %addrs.peer(), reason, "connection closed: no valid PROXY protocol header");
            None
        }
        Err(_) => {
            tracing::debug!(peer = %addrs.peer(), "connection closed: no PROXY protocol header in time");
            None
        }
    }
}

/// Reads a PROXY protocol header; the bytes read after it start the connection's traffic.
async fn read_proxy_header(
    mut stream: TcpStream,
    addrs: Addresses,
) -> Result<(Handoff, Addresses), &'static str> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = bytes::BytesMut::with_capacity(256);
    loop {
        match proxy_protocol::parse(&buf) {
            proxy_protocol::Parsed::Complete(header, len) => {
                let addrs = match header {
                    proxy_protocol::Header::Proxied { source, destination } => {
                        Addresses::new(source, destination.port())
                    }
                    proxy_protocol::Header::Local => addrs,
                };
                buf.advance(len);
                return Ok((Handoff { stream, read: buf.freeze() }, addrs));
            }
            proxy_protocol::Parsed::Invalid(reason) => return Err(reason),
            proxy_protocol::Parsed::Partial => {}
        }
        if buf.len() >= proxy_protocol::V2_MAX {
            return Err("PROXY header too long");
        }
        buf.reserve(256);
        match stream.read_buf(&mut buf).await {
            Ok(0) => return Err("closed before the PROXY header ended"),
            Ok(_) => {}
            Err(_) => return Err("read failed"),
        }
    }
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
    // Every connection's local port is the listener's: read once, not per connection.
    let local_port = listener.local_addr().map_or(0, |a| a.port());
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
        let addrs = Addresses::new(addr, local_port);
        let (proxy_protocol, header_timeout) = (opts.proxy_protocol, opts.header_timeout);
        match &opts.tls {
            None => {
                let (builder, watcher) = (Arc::clone(&plain_builder), graceful.watcher());
                let ctx = PlainContext { header_timeout: opts.header_timeout, shutdown: shutdown.clone() };
                plain.spawn(async move {
                    let _open = open;
                    let Some((start, addrs)) = start(stream, addrs, proxy_protocol, header_timeout).await
                    else {
                        return;
                    };
                    let Some(Handoff { stream, read }) =
                        Arc::clone(&handler).serve_plain(start, addrs, ctx).await
                    else {
                        return;
                    };
                    let io = TokioIo::new(Rewind { read, stream });
                    let conn = builder.serve_connection_with_upgrades(io, service(handler, Peer::new(addrs)));
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
                    let Some((start, addrs)) = start(stream, addrs, proxy_protocol, header_timeout).await
                    else {
                        return;
                    };
                    let rewind = Rewind { read: start.read, stream: start.stream };
                    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(rewind)).await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            return tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                        }
                        Err(_) => return tracing::debug!(peer = %addr, "TLS handshake timed out"),
                    };
                    let peer = Peer {
                        tls: true,
                        tls_version: stream.get_ref().1.protocol_version().map(tls_version_name),
                        ..Peer::new(addrs)
                    };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service(handler, peer));
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
