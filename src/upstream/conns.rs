//! Keep-alive HTTP/1.1 connections to one node, built on `hyper::client::conn::http1`.
//!
//! Why not hyper-util's legacy `Client`: callgrind put it at ~12 400 of the ~40 500 instructions tether
//! spends per request (`bench/RESULTS.md`): `Client::send_request` with its checkout/connect race and
//! boxed futures (8 100), the pool's `put`, `Pooled` drop and `Checkout::poll` (~4 300, of which 2 300 are
//! SipHash of the `(Scheme, Authority)` key). Here each node owns its [`Conns`] directly: a checkout is
//! a mutex-guarded `Vec::pop`, and a sender goes back with a `Vec::push` when its response body ends, with
//! no task spawned per request (one reaper task per node address closes connections idle past the timeout).
//! Measured: 18.29 → 15.97 µs of proxy CPU per request (`bench/run.sh`, "Changes and their effect").
//!
//! Connections are [`NodeStream`]s: plain TCP, or TLS for `https://` nodes, one rustls client config per
//! pool so that a new connection resumes the TLS session of an earlier one.
//!
//! One [`Conns`] belongs to one (server ID, authority, TLS settings): [`crate::upstream::BackendState::conns`] keeps
//! it across reloads while a node's address is unchanged and starts a fresh one when it changes, so a
//! connection to an old address is never reused. (The pool of *nodes* a route sends to is
//! [`crate::upstream::Pool`]; this module only ever holds connections to one node.)

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;

use super::stream::{self, NodeStream, TlsTarget, Traffic};
use crate::body::{Body, BoxError};

/// How a request failed to reach a node. The variant is what a retry decision needs: nothing was sent,
/// or the request may have reached the node.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection: refused, timed out, the TLS or HTTP handshake failed (a certificate that does not
    /// verify among them). Nothing was sent, so another
    /// node may always take the request.
    #[error("{0}")]
    Connect(String),
    /// The request may have reached the node (the connection failed while sending or awaiting the
    /// answer): only an idempotent request may be sent again.
    #[error(transparent)]
    Upstream(hyper::Error),
}

/// Connection settings, read from the current config on each call (so a reload applies them at once).
#[derive(Debug, Clone, Copy)]
pub struct ConnSettings {
    /// Bound on the TCP connect.
    pub connect_timeout: Duration,
    /// Idle connections older than this are dropped at checkout.
    pub idle_timeout: Duration,
    /// Most idle connections kept.
    pub max_idle: usize,
}

/// Idle connections to one node address.
#[derive(Debug)]
pub struct Conns {
    /// `host:port` every connection here goes to.
    authority: Authority,
    /// For `https://` nodes: the TLS client config (whose session cache resumes sessions) and name.
    tls: Option<TlsTarget>,
    /// Idle hyper senders.
    idle: IdleStack<SendRequest<Body>>,
    /// Idle connections of the proxy's HTTP/1.1 fast path, which writes and parses the messages
    /// itself; same rules.
    streams: IdleStack<NodeStream>,
    /// The idle timeout last put into effect, in milliseconds, for the reaper.
    idle_timeout_ms: AtomicU64,
    /// The reaper task was started (on the first request, from inside the runtime).
    reaping: AtomicBool,
    /// The node's byte counters, which every connection made here adds to.
    traffic: Arc<Traffic>,
}

/// Extra attempts on a fresh connection when a pooled one gave the request back unsent.
const UNSENT_RETRIES: usize = 2;

impl Conns {
    /// No connections yet, to `authority`, over TLS when `tls` is given, counting bytes in `traffic`.
    pub fn new(authority: Authority, tls: Option<TlsTarget>, traffic: Arc<Traffic>) -> Self {
        Self {
            authority,
            tls,
            traffic,
            idle: IdleStack::default(),
            streams: IdleStack::default(),
            idle_timeout_ms: AtomicU64::new(u64::MAX),
            reaping: AtomicBool::new(false),
        }
    }

    /// The address these connections go to.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// How connections are secured: `None` for plain `http://`.
    pub fn tls(&self) -> Option<&TlsTarget> {
        self.tls.as_ref()
    }

    /// Whether connections made for `authority` with `tls` may be taken from here: same address, same
    /// TLS name, roots and client certificate (a reload that changed any of them starts afresh, so no
    /// connection verified under the old rules is reused).
    pub fn serves(&self, authority: &Authority, tls: Option<&TlsTarget>) -> bool {
        self.authority == *authority
            && match (&self.tls, tls) {
                (None, None) => true,
                (Some(a), Some(b)) => a.same_as(b),
                _ => false,
            }
    }

    /// Idle connections now (both kinds).
    pub fn idle_count(&self) -> usize {
        self.idle.len() + self.streams.len()
    }

    /// Idle connections now: hyper's senders, and the fast path's streams.
    pub fn idle_by_path(&self) -> (usize, usize) {
        (self.idle.len(), self.streams.len())
    }

    /// Closes idle connections older than `idle_timeout` even when no request comes to take them: a task
    /// per node address wakes every idle timeout (as read at each wake-up) and ends with its [`Conns`].
    fn start_reaper(self: &Arc<Self>, idle_timeout: Duration) {
        if self.reaping.load(Ordering::Relaxed) || self.reaping.swap(true, Ordering::Relaxed) {
            return;
        }
        self.idle_timeout_ms.store(millis(idle_timeout), Ordering::Relaxed);
        let conns: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(ms) = conns.upgrade().map(|p| p.idle_timeout_ms.load(Ordering::Relaxed)) else {
                    return;
                };
                tokio::time::sleep(Duration::from_millis(ms.clamp(1000, 3_600_000))).await;
                let Some(conns) = conns.upgrade() else { return };
                let timeout = Duration::from_millis(ms);
                conns.idle.prune(timeout, SendRequest::is_closed);
                conns.streams.prune(timeout, |_| false);
            }
        });
    }

    /// Puts a sender whose exchange is complete back, if there is room.
    fn put(&self, sender: SendRequest<Body>, settings: &ConnSettings) {
        if !sender.is_closed() {
            self.idle_timeout_ms.store(millis(settings.idle_timeout), Ordering::Relaxed);
            self.idle.push(sender, settings);
        }
    }

    /// A new connection within the connect timeout (TCP, and TLS for `https://` nodes).
    async fn connect_stream(&self, settings: &ConnSettings) -> Result<NodeStream, SendError> {
        stream::connect(
            &self.authority,
            self.tls.as_ref(),
            settings.connect_timeout,
            Arc::clone(&self.traffic),
        )
        .await
        .map_err(SendError::Connect)
    }

    /// A connection for the fast path and whether it was reused: the most recently used idle one that
    /// shows no sign of having been closed by the node, else a new one (`fresh` skips the idle ones).
    pub async fn checkout_stream(
        self: &Arc<Self>,
        settings: &ConnSettings,
        fresh: bool,
    ) -> Result<(NodeStream, bool), SendError> {
        self.start_reaper(settings.idle_timeout);
        if !fresh && let Some(stream) = self.streams.pop(settings.idle_timeout, NodeStream::quiet) {
            return Ok((stream, true));
        }
        Ok((self.connect_stream(settings).await?, false))
    }

    /// Puts a fast-path connection whose exchange ended cleanly back, if there is room.
    pub fn put_stream(&self, stream: NodeStream, settings: &ConnSettings) {
        self.idle_timeout_ms.store(millis(settings.idle_timeout), Ordering::Relaxed);
        self.streams.push(stream, settings);
    }

    /// A new connection: TCP connect (and TLS handshake) within the timeout, no Nagle, HTTP/1
    /// handshake, connection task spawned.
    async fn connect(&self, settings: &ConnSettings) -> Result<SendRequest<Body>, SendError> {
        let addr = self.authority.as_str();
        let stream = self.connect_stream(settings).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(format!("handshake with {addr}: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// A sender ready for a request: a pooled one if any is still usable, else a new connection.
    async fn checkout(&self, settings: &ConnSettings) -> Result<SendRequest<Body>, SendError> {
        while let Some(mut sender) =
            self.idle.pop(settings.idle_timeout, |s: &mut SendRequest<Body>| !s.is_closed())
        {
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let mut sender = self.connect(settings).await?;
        sender.ready().await.map_err(|e| SendError::Connect(format!("connection closed before use: {e}")))?;
        Ok(sender)
    }

    /// Sends `req` and returns the answer; the connection returns to the idle stack once the response body has
    /// been read to the end. A request a pooled connection gave back unsent goes out again on a fresh
    /// connection (at most `UNSENT_RETRIES` times).
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
        settings: ConnSettings,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        self.start_reaper(settings.idle_timeout);
        let mut fresh_only = false;
        for _ in 0..=UNSENT_RETRIES {
            let mut sender = if fresh_only {
                let mut s = self.connect(&settings).await?;
                s.ready()
                    .await
                    .map_err(|e| SendError::Connect(format!("connection closed before use: {e}")))?;
                s
            } else {
                self.checkout(&settings).await?
            };
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Lease { conns: Arc::clone(self), sender, settings })),
                Err(mut e) => match e.take_message() {
                    Some(back) => {
                        tracing::debug!(error = %e.error(), "request not sent; trying a fresh connection");
                        req = back;
                        fresh_only = true;
                    }
                    None => return Err(SendError::Upstream(e.into_error())),
                },
            }
        }
        Err(SendError::Connect(format!(
            "connections to {} closed before the request was sent",
            self.authority
        )))
    }
}

/// Idle connections of one kind with the time each went idle, the most recently used last. The lock is
/// never held across an `.await`, nor while a refused connection is dropped.
#[derive(Debug)]
struct IdleStack<C>(Mutex<Vec<(C, Instant)>>);

impl<C> Default for IdleStack<C> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<C> IdleStack<C> {
    fn lock(&self) -> MutexGuard<'_, Vec<(C, Instant)>> {
        self.0.lock()
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// The most recently used connection that `usable` accepts; the ones it refuses are dropped, and an
    /// expired one ends the search (the rest are older still).
    fn pop(&self, idle_timeout: Duration, mut usable: impl FnMut(&mut C) -> bool) -> Option<C> {
        loop {
            let mut conn = {
                let mut idle = self.lock();
                match idle.pop() {
                    Some((_, since)) if since.elapsed() > idle_timeout => {
                        idle.clear();
                        return None;
                    }
                    Some((conn, _)) => conn,
                    None => return None,
                }
            };
            if usable(&mut conn) {
                return Some(conn);
            }
        }
    }

    /// Puts a connection back after dropping the expired ones, and the oldest when `max_idle` are held.
    fn push(&self, conn: C, settings: &ConnSettings) {
        if settings.max_idle == 0 {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        let expired = idle.iter().take_while(|(_, t)| now.duration_since(*t) > settings.idle_timeout).count();
        let excess = (idle.len() + 1).saturating_sub(settings.max_idle);
        let cut = expired.max(excess).min(idle.len());
        idle.drain(..cut);
        idle.push((conn, now));
    }

    /// Drops, from the oldest end, the connections that expired or are `dead`.
    fn prune(&self, timeout: Duration, dead: impl Fn(&C) -> bool) {
        let now = Instant::now();
        let mut idle = self.lock();
        let gone = idle.iter().take_while(|(c, t)| dead(c) || now.duration_since(*t) > timeout).count();
        idle.drain(..gone);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A connection in use by one exchange; [`Lease::release`] returns it to its [`Conns`].
#[derive(Debug)]
pub struct Lease {
    conns: Arc<Conns>,
    sender: SendRequest<Body>,
    settings: ConnSettings,
}

impl Lease {
    /// The exchange is complete: the connection may take the next request.
    pub fn release(self) {
        self.conns.put(self.sender, &self.settings);
    }
}

/// A response body that hands its connection back to its [`Conns`] after the last frame (or when dropped
/// with nothing left to read) and holds `guard` (the node's in-flight count) until then. Dropped early,
/// it drops the connection with it, which closes it.
pub struct LeasedBody<G> {
    inner: Incoming,
    lease: Option<Lease>,
    guard: Option<G>,
}

impl<G> LeasedBody<G> {
    /// Wraps `inner`, whose exchange runs on `lease`.
    pub fn new(inner: Incoming, lease: Lease, guard: G) -> Self {
        Self { inner, lease: Some(lease), guard: Some(guard) }
    }
}

impl<G> Drop for LeasedBody<G> {
    /// hyper's server stops polling a body of known length once its last byte arrived (it asks
    /// `is_end_stream`), so the end is also recognised here: the exchange is complete, the connection can
    /// go back. Any other early drop closes it.
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take()
            && http_body::Body::is_end_stream(&self.inner)
        {
            lease.release();
        }
    }
}

impl<G: Unpin> http_body::Body for LeasedBody<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(lease) = self.lease.take() {
                    lease.release();
                }
                self.guard = None;
            }
            Poll::Ready(Some(Err(_))) => {
                self.lease = None;
                self.guard = None;
            }
            _ => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    use super::*;

    fn settings() -> ConnSettings {
        ConnSettings {
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
            max_idle: 4,
        }
    }

    /// A keep-alive node answering "ok", counting the connections it accepted.
    async fn node() -> (Authority, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let authority: Authority =
            listener.local_addr().expect("addr").to_string().parse().expect("authority");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let svc = service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, std::convert::Infallible>(Response::new(crate::body::full("ok")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (authority, accepted)
    }

    fn get() -> Request<Body> {
        let mut req = Request::new(crate::body::empty());
        req.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("node"));
        req
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_body_was_read() {
        let (authority, accepted) = node().await;
        let conns = Arc::new(Conns::new(authority, None, Arc::default()));
        for _ in 0..3 {
            let (resp, lease) = conns.send(get(), settings()).await.expect("send");
            let body = LeasedBody::new(resp.into_body(), lease, ());
            assert_eq!(body.collect().await.expect("body").to_bytes(), "ok");
            assert_eq!(conns.idle_count(), 1);
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_after_its_last_byte_returns_its_connection() {
        let (authority, accepted) = node().await;
        let conns = Arc::new(Conns::new(authority, None, Arc::default()));
        for _ in 0..3 {
            let (resp, lease) = conns.send(get(), settings()).await.expect("send");
            let mut body = LeasedBody::new(resp.into_body(), lease, ());
            // What hyper's server does with a body of known length: one frame, then `is_end_stream`.
            let frame = body.frame().await.expect("frame").expect("data");
            assert_eq!(frame.into_data().expect("data"), "ok");
            assert!(http_body::Body::is_end_stream(&body));
            drop(body);
            assert_eq!(conns.idle_count(), 1);
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_early_drops_its_connection() {
        let (authority, accepted) = node().await;
        let conns = Arc::new(Conns::new(authority, None, Arc::default()));
        let (resp, lease) = conns.send(get(), settings()).await.expect("send");
        drop(LeasedBody::new(resp.into_body(), lease, ()));
        assert_eq!(conns.idle_count(), 0);
        let (resp, lease) = conns.send(get(), settings()).await.expect("send");
        let body = LeasedBody::new(resp.into_body(), lease, ());
        assert_eq!(body.collect().await.expect("body").to_bytes(), "ok");
        assert_eq!(accepted.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let authority: Authority =
            listener.local_addr().expect("addr").to_string().parse().expect("authority");
        drop(listener);
        let conns = Arc::new(Conns::new(authority, None, Arc::default()));
        assert!(matches!(conns.send(get(), settings()).await, Err(SendError::Connect(_))));
    }
}

#[cfg(test)]
mod tls_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn settings() -> ConnSettings {
        ConnSettings {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_idle: 4,
        }
    }

    /// A keep-alive node over TLS for `node.test` answering "ok": its address, the proxy's side of the
    /// TLS settings, the connections it accepted and how many of their handshakes resumed a session.
    async fn tls_node() -> (Authority, TlsTarget, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("ca");
        let key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["node.test".to_string()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("leaf");
        let dir = std::env::temp_dir().join(format!("tether-conns-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write");
        let config = crate::config::parse(&format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[[pool]]\nname = \"a\"\n\
             [pool.tls]\nca_file = {ca_file:?}\nserver_name = \"node.test\"\n\
             [[pool.backend]]\nid = \"01\"\nurl = \"https://127.0.0.1:1\"\n[[route]]\npool = \"a\"\n"
        ))
        .expect("config");
        let pool_tls = config.pools[0].tls.clone().expect("pool tls");
        let target = TlsTarget::new(&pool_tls, ServerName::try_from("node.test").expect("name"));

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key"),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let authority: Authority =
            listener.local_addr().expect("addr").to_string().parse().expect("authority");
        let (accepted, resumed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (a, r) = (Arc::clone(&accepted), Arc::clone(&resumed));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(stream) = acceptor.accept(stream).await else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                if stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                    r.fetch_add(1, Ordering::SeqCst);
                }
                tokio::spawn(async move {
                    let svc = service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, std::convert::Infallible>(Response::new(crate::body::full("ok")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (authority, target, accepted, resumed)
    }

    fn get() -> Request<Body> {
        let mut req = Request::new(crate::body::empty());
        req.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("node.test"));
        req
    }

    /// One fast-path style exchange written and read by hand on `stream`.
    async fn exchange(stream: &mut NodeStream) {
        stream.write_all(b"GET / HTTP/1.1\r\nhost: node.test\r\n\r\n").await.expect("write");
        stream.flush().await.expect("flush");
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\nok") {
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn tls_connections_are_kept_alive_on_both_paths_and_resume_their_session() {
        let (authority, target, accepted, resumed) = tls_node().await;
        let conns = Arc::new(Conns::new(authority, Some(target), Arc::default()));
        for _ in 0..3 {
            let (resp, lease) = conns.send(get(), settings()).await.expect("send");
            let body = LeasedBody::new(resp.into_body(), lease, ());
            assert_eq!(body.collect().await.expect("body").to_bytes(), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "hyper's path keeps one TLS connection");
        for round in 0..3 {
            let (mut stream, reused) = conns.checkout_stream(&settings(), false).await.expect("stream");
            // An idle TLS connection is taken again (its TLS 1.3 session tickets were read with the answer).
            assert_eq!(reused, round > 0, "round {round}");
            exchange(&mut stream).await;
            conns.put_stream(stream, &settings());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "the fast path keeps one TLS connection too");
        assert_eq!(
            resumed.load(Ordering::SeqCst),
            1,
            "the second connection resumed the first one's session"
        );
    }
}
