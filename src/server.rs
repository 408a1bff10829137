//! Listeners: accept, HTTP/1.1 and HTTP/2 (h2c by prior knowledge) on one port, graceful drain.
//!
//! With [`ServeOptions::proxy_protocol`] every connection starts with a PROXY protocol header (read by
//! the `proxy_protocol` submodule, before TLS), whose source is the [`Peer`] from then on.
//!
//! Every listener of tether (public, admin, embedded auth nodes) runs this loop with its own [`Handler`].
//! A handler may serve HTTP/1.1 connections itself first ([`Handler::serve_http1`]: the proxy's fast
//! path, plain text or TLS, [`ClientStream`]) and hand them to hyper when it meets something it leaves
//! to hyper; a TLS client that chose `h2` by ALPN goes to hyper at once.
//! On shutdown the listener is dropped first, so new connections are refused at once, then in-flight
//! requests get the grace period to finish (hyper-util's `GracefulShutdown`: idle keep-alive connections
//! close, HTTP/2 connections get a GOAWAY; fast-path connections close when idle).

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tokio_rustls::TlsAcceptor;

mod h2;
mod limit;
pub(crate) mod proxy_protocol;
mod send_deadline;
mod stream;

pub use limit::default_max_connections;
pub use send_deadline::{PIECE, SendDeadline};
pub use stream::{ClientStream, Rewind, client_bytes};

use crate::body::Body;
use crate::tls::{self, SharedTls};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

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

    /// Serves an HTTP/1.1 connection (plain text, or TLS without ALPN `h2`) before hyper does, and gives
    /// it back, with the bytes already read from it, when hyper should serve the rest; `None` when the
    /// connection is done. `start` holds the bytes read after a PROXY protocol header. The default gives
    /// every connection to hyper at once; the proxy serves HTTP/1.1 itself (its fast path).
    fn serve_http1(
        self: Arc<Self>,
        start: Handoff,
        addrs: Addresses,
        ctx: ConnContext,
    ) -> impl Future<Output = Option<Handoff>> + Send {
        let _ = (addrs, ctx);
        std::future::ready(Some(start))
    }
}

/// What [`Handler::serve_http1`] gets besides the connection.
#[derive(Debug, Clone)]
pub struct ConnContext {
    /// Time a client has for a request head, counted from when the connection starts waiting for it.
    pub header_timeout: Duration,
    /// Fires when the listener starts draining: idle connections close.
    pub shutdown: CancellationToken,
}

/// A connection handed to hyper, with the bytes already read from it (hyper reads them first).
#[derive(Debug)]
pub struct Handoff {
    /// The client connection.
    pub stream: ClientStream,
    /// Read but not consumed: the start of the request hyper is to serve.
    pub read: Bytes,
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
    /// Connections open at once; at the limit accepting pauses (`None`: no limit).
    pub max_connections: Option<usize>,
    /// Counts the times accepting paused at `max_connections`.
    pub limit_reached: Counter,
    /// Counts the connections accepted (`tether_connections_accepted_total`).
    pub accepted: Counter,
    /// Counts the TLS handshakes that failed or timed out (`tether_tls_handshake_failures_total`).
    pub tls_failures: Counter,
    /// The bytes of plain-text connections are client traffic ([`stream::client_bytes`]): the public
    /// listener's; not the admin listener's or an auth node's. TLS connections always count.
    pub client_traffic: bool,
    /// Time a client has to take each piece of an answer on a connection hyper serves.
    pub send_timeout: Duration,
    /// Every connection starts with a PROXY protocol header, read within `header_timeout`.
    pub proxy_protocol: bool,
    /// HTTP/2 limits (`[proxy.h2]`), for h2c and ALPN `h2` alike.
    pub h2: crate::config::H2Settings,
}

/// Time between two warnings that the connection limit is reached.
const LIMIT_WARNING_EVERY: Duration = Duration::from_secs(10);

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
) -> Option<(Rewind<TcpStream>, Addresses)> {
    if !proxy_protocol {
        return Some((Rewind { stream, read: Bytes::new() }, addrs));
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
) -> Result<(Rewind<TcpStream>, Addresses), &'static str> {
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
                return Ok((Rewind { stream, read: buf.freeze() }, addrs));
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

/// Serves `listener` until `shutdown` fires, then drains.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    opts: ServeOptions,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(opts.header_timeout);
    h2::apply(builder.http2(), &opts.h2);
    // Shared, so an idle connection's task holds a pointer rather than a copy.
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let connections = TaskTracker::new();
    // Every connection's local port is the listener's: read once, not per connection.
    let local_port = listener.local_addr().map_or(0, |a| a.port());
    let slots = limit::Slots::new(opts.connections.clone(), opts.max_connections);
    let mut last_warning: Option<Instant> = None;
    loop {
        if slots.full() {
            // HAProxy's `maxconn`: stop accepting, so new connections wait in the kernel's backlog and
            // are served as open ones close (their deadlines bound how long that takes).
            opts.limit_reached.inc();
            if last_warning.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_EVERY) {
                last_warning = Some(Instant::now());
                tracing::warn!(
                    listener = opts.name,
                    max_connections = opts.max_connections,
                    times = opts.limit_reached.get(),
                    "connection limit reached: new connections wait until open ones close"
                );
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = slots.free() => {}
            }
        }
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
        opts.accepted.inc();
        let handler = Arc::clone(&handler);
        let open = slots.take();
        let addrs = Addresses::new(addr, local_port);
        let (proxy_protocol, header_timeout, send_timeout, client_traffic) =
            (opts.proxy_protocol, opts.header_timeout, opts.send_timeout, opts.client_traffic);
        let tls_failures = opts.tls_failures.clone();
        let ctx = ConnContext { header_timeout: opts.header_timeout, shutdown: shutdown.clone() };
        let tls = opts.tls.as_ref().map(|(tls, timeout)| (TlsAcceptor::from(tls.load_full()), *timeout));
        let (builder, watcher) = (Arc::clone(&builder), graceful.watcher());
        // The PROXY header and the handshake run in the connection's task, so a slow client never holds
        // up accept.
        connections.spawn(async move {
            let _open = open;
            let Some((start, addrs)) = start(stream, addrs, proxy_protocol, header_timeout).await else {
                return;
            };
            let start = match tls {
                None if client_traffic => {
                    Handoff { stream: ClientStream::Plain(start.stream), read: start.read }
                }
                None => Handoff { stream: ClientStream::Internal(Box::new(start.stream)), read: start.read },
                Some((acceptor, timeout)) => {
                    match tokio::time::timeout(timeout, acceptor.accept(start)).await {
                        Ok(Ok(s)) => Handoff { stream: ClientStream::Tls(Box::new(s)), read: Bytes::new() },
                        Ok(Err(e)) => {
                            tls_failures.inc();
                            return tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            tls_failures.inc();
                            return tracing::debug!(peer = %addr, "TLS handshake timed out");
                        }
                    }
                }
            };
            let handoff = if start.stream.alpn_h2() {
                start
            } else {
                match Arc::clone(&handler).serve_http1(start, addrs, ctx).await {
                    Some(handoff) => handoff,
                    None => return,
                }
            };
            let Handoff { stream, read } = handoff;
            let tls_version = stream.tls_version();
            let peer = Peer { tls: tls_version.is_some(), tls_version, ..Peer::new(addrs) };
            let io = TokioIo::new(SendDeadline::new(Rewind { read, stream }, send_timeout));
            let conn = builder.serve_connection_with_upgrades(io, service(handler, peer));
            // Boxed: hyper's connection state is allocated only for connections that reach it.
            if let Err(e) = Box::pin(watcher.watch(conn.into_owned())).await {
                tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    let drained = async {
        tokio::join!(graceful.shutdown(), connections.wait());
    };
    tokio::select! {
        () = drained => tracing::debug!(listener = opts.name, "drained"),
        () = tokio::time::sleep(opts.grace) => {
            tracing::warn!(listener = opts.name, grace_s = opts.grace.as_secs(), "grace period over: closing connections with requests still in flight");
        }
    }
}
