//! Sending one request to a pool: hints, node choice, the pooled client, one retry, the cookie rules.
//!
//! Bodies stream both ways. The one exception is the bounded auth-body peek: a JSON request body whose
//! size is known and at most [`PEEK_LIMIT`] is read first, so its `authId` can name the node (SPEC 4.1) and
//! so the request can be sent again if the first node refused the connection (SPEC 4.5). Every other body
//! goes upstream as it arrives and is never retried.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, SET_COOKIE};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::Snapshot;
use super::headers;
use crate::body::{self, Body};
use crate::config::AffinityMode;
use crate::error::ProxyError;
use crate::upstream::conns::{ConnSettings, Lease, LeasedBody, SendError};
use crate::upstream::select::{self, Choice};
use crate::upstream::sticky::{self, Hints};
use crate::upstream::{InFlight, Pool};

/// Largest request body read before forwarding (SPEC 4.1: auth bodies of at most 64 KiB).
pub const PEEK_LIMIT: u64 = 64 * 1024;

/// Who sent the request: one per connection, handed to each of its requests.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Client address.
    pub addr: SocketAddr,
    /// Arrived over TLS.
    pub tls: bool,
    /// The client address as an `X-Forwarded-For` value, rendered once per connection.
    pub forwarded_for: HeaderValue,
}

impl Peer {
    /// The peer of a connection from `addr`.
    pub fn new(addr: SocketAddr, tls: bool) -> Self {
        Self { addr, tls, forwarded_for: headers::forwarded_for_value(addr.ip()) }
    }
}

/// What the proxy decided for one request, for logs and metrics.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Affinity outcome and the hint that decided, when a node was chosen.
    pub choice: Option<Choice>,
    /// Hints read.
    pub hints: Hints,
    /// Retries made.
    pub retries: u32,
}

/// The request body as it will be sent.
enum Outgoing {
    /// No body: can be sent any number of times.
    Empty,
    /// A peeked body: can be sent again.
    Buffered(Bytes),
    /// A streamed body: can be sent once.
    Stream(Incoming),
}

impl Outgoing {
    /// Peeks a small JSON body, within `timeout`: a client trickling its body cannot hold the request
    /// (and the proxy's buffer) open longer than it may take to send its headers.
    async fn prepare(
        headers: &HeaderMap,
        body: Incoming,
        timeout: std::time::Duration,
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
        Ok(Self::Stream(body))
    }

    fn peeked(&self) -> Option<&[u8]> {
        match self {
            Self::Buffered(b) => Some(b),
            _ => None,
        }
    }

    fn replayable(&self) -> bool {
        !matches!(self, Self::Stream(_))
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
            Self::Stream(s) => body::stream(s),
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json") || essence.to_ascii_lowercase().ends_with("+json")
    })
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
    let mut outgoing =
        Outgoing::prepare(&parts.headers, body, snap.config.proxy.request_header_timeout).await?;
    trace.hints = sticky::read(pool, &parts.headers, parts.uri.query(), outgoing.peeked());
    prepare_headers(&mut parts, &peer);

    let mut failover = Failover::default();
    loop {
        let choice = failover.choose(pool, trace)?;
        let backend = &pool.backends[choice.index];
        // Only a replayable request keeps its head for a second attempt (and sends a copy); any other
        // request hands its head over.
        let replayable = outgoing.replayable() && trace.retries == 0;
        let head = if replayable { head_copy(&parts) } else { std::mem::replace(&mut parts, empty_head()) };
        let attempt = upstream_request(head, backend, outgoing.take());
        let guard = backend.state.begin();
        match send(snap, backend, attempt).await {
            Ok((resp, lease)) => {
                served(pool, choice);
                return Ok(finish(resp, lease, pool, choice, &trace.hints, peer.tls, guard));
            }
            Err(err) => failover.failed(pool, choice, err, replayable, idempotent(&parts.method), trace)?,
        }
    }
}

/// The failover rule both request paths share (SPEC 4.5): choose a node, and after a failed attempt
/// record it against the node and decide whether one retry on another node is allowed.
#[derive(Debug, Default)]
pub(super) struct Failover {
    /// The node that failed this request; a retry never goes back to it.
    exclude: Option<usize>,
    /// What went wrong on the first attempt, for the client when no other node is left.
    first_error: Option<ProxyError>,
}

impl Failover {
    /// The node for the next attempt, noted in `trace`.
    pub(super) fn choose(&mut self, pool: &Pool, trace: &mut Trace) -> Result<Choice, ProxyError> {
        match (select::choose(pool, &trace.hints, self.exclude), self.first_error.take()) {
            (Ok(choice), _) => {
                trace.choice = Some(choice);
                Ok(choice)
            }
            // No other node for the retry: the client learns what went wrong with the first one.
            (Err(_), Some(first)) => Err(first),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// Records a failed attempt on `choice` (a passive health check when the error blames the node) and
    /// allows one retry when the request can be sent again (`replayable`) and the error permits it for
    /// this method; otherwise gives the error back.
    pub(super) fn failed(
        &mut self,
        pool: &Pool,
        choice: Choice,
        err: ProxyError,
        replayable: bool,
        idempotent: bool,
        trace: &mut Trace,
    ) -> Result<(), ProxyError> {
        let backend = &pool.backends[choice.index];
        if err.blames_backend().is_some() {
            backend.state.record_passive_failure(&pool.health, &err.to_string());
        }
        if !(replayable && trace.retries == 0 && err.retryable(idempotent)) {
            return Err(err);
        }
        tracing::info!(backend = %backend.id, error = %err, "retrying on another node");
        self.exclude = Some(choice.index);
        trace.retries += 1;
        backend.metrics.retried();
        self.first_error = Some(err);
        Ok(())
    }
}

/// Records that `choice` answered: it ends an open failure streak, and counts a sticky hit.
pub(super) fn served(pool: &Pool, choice: Choice) {
    let state = &pool.backends[choice.index].state;
    state.record_success(&pool.health);
    if choice.outcome == select::Outcome::Hit {
        state.count_sticky_hit();
    }
}

/// Strips hop-by-hop fields and adds forwarding headers, once per request.
fn prepare_headers(parts: &mut Parts, peer: &Peer) {
    let original_host = parts.headers.get(HOST).cloned();
    // `X-Forwarded-Host` is the host without its port: the `Host` value itself when it has none.
    let forwarded_host =
        super::route::request_host(&parts.headers, &parts.uri).and_then(|h| match &original_host {
            Some(v) if v.as_bytes() == h.as_bytes() => Some(v.clone()),
            _ => HeaderValue::from_str(h).ok(),
        });
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_forwarded(&mut parts.headers, &peer.forwarded_for, peer.tls, forwarded_host);
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
        Ok(Ok(sent)) => Ok(sent),
        Ok(Err(SendError::Connect(reason))) => {
            Err(ProxyError::Connect { backend: backend.id.clone(), reason })
        }
        Ok(Err(SendError::Upstream(e))) => {
            Err(ProxyError::Upstream { backend: backend.id.clone(), reason: error_chain(&e) })
        }
        Err(_) => Err(ProxyError::Timeout { backend: backend.id.clone(), timeout_ms: timeout.as_millis() }),
    }
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

/// Response side: hop-by-hop stripping and the `Set-Cookie` rules of SPEC 4.3.
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
    if let Some(value) = cookie_to_set(pool, choice.index, hints, tls)
        && !headers::sets_cookie(&parts.headers, &pool.affinity.cookie)
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

/// The pre-rendered `Set-Cookie` the answer of node `served` gets under the rules of SPEC 4.3 (`insert`:
/// unless the request's cookie already named it; both modes: a cookie that named another node is
/// rewritten), before checking that the node does not set the cookie itself. Both request paths use it.
pub(super) fn cookie_to_set<'a>(
    pool: &'a Pool,
    served: usize,
    hints: &Hints,
    tls: bool,
) -> Option<&'a HeaderValue> {
    let wants = match pool.affinity.mode {
        AffinityMode::Insert => hints.cookie != Some(served),
        AffinityMode::Observe => hints.cookie.is_some_and(|named| named != served),
    };
    let backend = &pool.backends[served];
    wants.then_some(if tls { &backend.set_cookie_secure } else { &backend.set_cookie })
}

/// Methods RFC 9110 §9.2.2 calls idempotent: safe to send again after a node failed mid-request.
pub(super) fn idempotent(method: &http::Method) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
