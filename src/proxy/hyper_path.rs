//! hyper's path: a request hyper parsed (TLS, HTTP/2, bodies, everything the HTTP/1.1 fast path hands
//! over) sent to a pool through the pooled hyper client, with the same hints, node choice, failover rule
//! and cookie rules as the fast path.
//!
//! Bodies stream both ways. The one exception is the bounded auth-body peek: a JSON request body whose
//! size is known and at most [`PEEK_LIMIT`] is read first, so its `authId` can name the node and so the
//! request can be sent again if the first node refused the connection. Every other body goes upstream
//! as it arrives and is never retried.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, SET_COOKIE};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::failover::{Failover, Trace, admit, idempotent, served};
use super::{ProxyError, Snapshot, headers};
use crate::body::{self, Body};
use crate::config::BodyDeadline;
use crate::server::Peer;
use crate::upstream::affinity::{self, Hints};
use crate::upstream::conns::{ConnSettings, Lease, LeasedBody, SendError};
use crate::upstream::select::Choice;
use crate::upstream::{InFlight, Pool};

/// Largest request body read before forwarding: AM's callback answers (an `authId` and a few callbacks)
/// are far smaller.
pub const PEEK_LIMIT: u64 = 64 * 1024;

/// The request body as it will be sent.
enum Outgoing {
    /// No body: can be sent any number of times.
    Empty,
    /// A peeked body: can be sent again.
    Buffered(Bytes),
    /// A streamed body, within its deadline: can be sent once.
    Stream(Incoming, BodyDeadline),
}

impl Outgoing {
    /// Peeks a small JSON body, within `timeout`: a client trickling its body cannot hold the request
    /// (and the proxy's buffer) open longer than it may take to send its headers.
    async fn prepare(
        headers: &HeaderMap,
        body: Incoming,
        timeout: std::time::Duration,
        deadline: BodyDeadline,
    ) -> Result<Self, ProxyError> {
        if body.is_end_stream() {
            return Ok(Self::Empty);
        }
        let small = body.size_hint().upper().is_some_and(|n| n <= PEEK_LIMIT);
        if small && is_json(headers) {
            let limit = usize::try_from(PEEK_LIMIT).unwrap_or(usize::MAX);
            let bytes = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
                .await
                .map_err(|_| ProxyError::ClientTimeout)?
                .map_err(|e| ProxyError::BadRequest(format!("reading the request body failed: {e}")))?
                .to_bytes();
            return Ok(Self::Buffered(bytes));
        }
        Ok(Self::Stream(body, deadline))
    }

    fn peeked(&self) -> Option<&[u8]> {
        match self {
            Self::Buffered(b) => Some(b),
            _ => None,
        }
    }

    fn replayable(&self) -> bool {
        !matches!(self, Self::Stream(..))
    }

    /// The body for one attempt; a stream is handed over once.
    fn take(&mut self) -> Body {
        match std::mem::replace(self, Self::Empty) {
            Self::Empty => body::empty(),
            Self::Buffered(b) => {
                let out = body::full(b.clone());
                *self = Self::Buffered(b);
                out
            }
            Self::Stream(s, deadline) => body::stream(TimedBody::new(s, deadline)),
        }
    }
}

/// A request body streamed to a node within its deadline (`request_body_timeout_ms`, extended by
/// `request_body_min_rate`): a client trickling it (slow POST) gets 408 and loses the connection, as
/// on the fast path, instead of holding a node connection and the task for as long as it likes.
struct TimedBody {
    inner: Incoming,
    deadline: BodyDeadline,
    started: Instant,
    received: u64,
    timer: Pin<Box<Sleep>>,
}

impl TimedBody {
    fn new(inner: Incoming, deadline: BodyDeadline) -> Self {
        let started = Instant::now();
        let timer = Box::pin(tokio::time::sleep_until(started + deadline.allowed(0)));
        Self { inner, deadline, started, received: 0, timer }
    }
}

/// The error a [`TimedBody`] ends with, found again in the node connection's error.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTooSlow;

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.received += frame.data_ref().map_or(0, |d| d.len() as u64);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                // The deadline only moves later as bytes arrive: a reset costs nothing until then.
                let at = this.started + this.deadline.allowed(this.received);
                if this.timer.deadline() != at {
                    this.timer.as_mut().reset(at);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a node connection failed because the client's body was too slow.
fn body_too_slow(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<BodyTooSlow>() {
            return true;
        }
        cause = e.source();
    }
    false
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| headers::is_json_type(v.as_bytes()))
}

/// Forwards a request to `pool`, retrying once on another node when nothing was sent.
pub async fn to_pool(
    snap: &Snapshot,
    pool: &Pool,
    req: Request<Incoming>,
    peer: Peer,
    trace: &mut Trace,
) -> Result<Response<Body>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let proxy = &snap.config.proxy;
    let mut outgoing =
        Outgoing::prepare(&parts.headers, body, proxy.request_header_timeout, proxy.request_body).await?;
    trace.hints = affinity::read(pool, &parts.headers, parts.uri.query(), outgoing.peeked());
    prepare_headers(&mut parts, &peer, snap);

    let mut failover = Failover::default();
    loop {
        let choice = failover.choose(pool, trace)?;
        let backend = &pool.backends[choice.index];
        let guard = admit(pool, backend).await?;
        // Only a replayable request keeps its head for a second attempt (and sends a copy); any other
        // request hands its head over.
        let replayable = outgoing.replayable() && trace.retries == 0;
        let head = if replayable { head_copy(&parts) } else { std::mem::replace(&mut parts, empty_head()) };
        let attempt = upstream_request(head, backend, outgoing.take());
        match send(snap, backend, attempt).await {
            Ok((resp, lease)) => {
                served(pool, choice);
                return Ok(finish(resp, lease, pool, choice, &trace.hints, peer.tls, guard));
            }
            Err(err) => failover.failed(pool, choice, err, replayable, idempotent(&parts.method), trace)?,
        }
    }
}

/// Strips hop-by-hop fields and adds forwarding headers, once per request (the request ID was set
/// before routing, by [`headers::set_request_id`]).
fn prepare_headers(parts: &mut Parts, peer: &Peer, snap: &Snapshot) {
    let original_host = parts.headers.get(HOST).cloned();
    // `X-Forwarded-Host` is the host as the client named it, port included: `Host`, else HTTP/2's
    // `:authority`.
    let forwarded_host = original_host
        .clone()
        .or_else(|| parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    let proxy = &snap.config.proxy;
    let hop = headers::Hop {
        peer: peer.addr.ip(),
        trusted: proxy.trusted_proxies.contains(peer.addr.ip()),
        tls: peer.tls,
        port: peer.local_port,
        request_id: &proxy.request_id_header,
    };
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_forwarded(&mut parts.headers, &peer.forwarded_for, &hop, forwarded_host);
    // HTTP/2 carries the host in `:authority`; the HTTP/1.1 hop upstream needs it as `Host`.
    if original_host.is_none()
        && let Some(h) = parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(HOST, h);
    }
}

fn empty_head() -> Parts {
    Request::new(()).into_parts().0
}

fn head_copy(parts: &Parts) -> Parts {
    let mut head = empty_head();
    head.method = parts.method.clone();
    head.uri = parts.uri.clone();
    head.version = parts.version;
    head.headers = parts.headers.clone();
    head
}

fn upstream_request(head: Parts, backend: &crate::upstream::Backend, body: Body) -> Request<Body> {
    let Parts { method, uri, mut headers, .. } = head;
    // The connection is already to the node: HTTP/1.1 wants the origin form (path and query only).
    let path = uri.into_parts().path_and_query.unwrap_or_else(|| PathAndQuery::from_static("/"));
    if !headers.contains_key(HOST)
        && let Ok(host) = HeaderValue::from_str(backend.authority.as_str())
    {
        headers.insert(HOST, host);
    }
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = Uri::from(path);
    // Nodes speak HTTP/1.1; a request that came in over h2 must not keep its version.
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    req
}

async fn send(
    snap: &Snapshot,
    backend: &crate::upstream::Backend,
    req: Request<Body>,
) -> Result<(Response<Incoming>, Lease), ProxyError> {
    let proxy = &snap.config.proxy;
    let timeout = proxy.response_timeout;
    let settings = ConnSettings {
        connect_timeout: proxy.connect_timeout,
        idle_timeout: proxy.pool_idle_timeout,
        max_idle: proxy.pool_max_idle_per_backend,
    };
    match tokio::time::timeout(timeout, backend.conns.send(req, settings)).await {
        // tether strips `Upgrade` and never asks for one: a 101 would switch the client to a tunnel
        // nobody relays (RFC 9110 §15.2.2: only in answer to an Upgrade). The lease is dropped, so the
        // connection closes.
        Ok(Ok((resp, _))) if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
            let reason = "101 Switching Protocols without an upgrade asked".to_owned();
            Err(ProxyError::Upstream { backend: backend.id.clone(), reason })
        }
        Ok(Ok(sent)) => Ok(sent),
        Ok(Err(SendError::Connect(reason))) => {
            Err(ProxyError::Connect { backend: backend.id.clone(), reason })
        }
        Ok(Err(SendError::Upstream(e))) if body_too_slow(&e) => Err(ProxyError::ClientTimeout),
        // The client's body failed (a malformed chunk, an early end): the client's fault, answered
        // 400, and no mark against the node.
        Ok(Err(SendError::Upstream(e))) if client_body_failed(&e) => {
            Err(ProxyError::BadRequest(format!("reading the request body failed: {}", error_chain(&e))))
        }
        Ok(Err(SendError::Upstream(e))) => {
            Err(ProxyError::Upstream { backend: backend.id.clone(), reason: error_chain(&e) })
        }
        Err(_) => Err(ProxyError::Timeout { backend: backend.id.clone(), timeout_ms: timeout.as_millis() }),
    }
}

/// Whether the hyper client failed because the body it was sending (the client's, as hyper's server
/// read it) failed.
fn client_body_failed(e: &hyper::Error) -> bool {
    use std::error::Error as _;
    e.is_user() && e.source().is_some_and(|s| s.downcast_ref::<hyper::Error>().is_some())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Response side: hop-by-hop stripping and the affinity cookie ([`affinity::cookie_to_set`]).
fn finish(
    resp: Response<Incoming>,
    lease: Lease,
    pool: &Pool,
    choice: Choice,
    hints: &Hints,
    tls: bool,
    guard: InFlight,
) -> Response<Body> {
    let (mut parts, incoming) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(value) = affinity::cookie_to_set(pool, choice.index, hints, tls)
        && !affinity::sets_cookie(&parts.headers, &pool.affinity.cookie)
    {
        parts.headers.append(SET_COOKIE, value.clone());
    }
    // The connection goes back to its pool at the end of the body: now when there is none, else after the
    // last frame. The guard keeps the node's in-flight count until then, so `least-conn` sees long
    // downloads.
    let body = if incoming.is_end_stream() {
        lease.release();
        drop(guard);
        body::empty()
    } else {
        LeasedBody::new(incoming, lease, guard).boxed()
    };
    Response::from_parts(parts, body)
}
