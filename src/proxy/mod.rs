//! The public listener's service: route, choose a node, forward.
//!
//! Each request loads the current [`Snapshot`] exactly once and uses it to the end, so a reload never
//! mixes two configs within one request. Two request paths share every decision:
//!
//! - `h1`: the HTTP/1.1 fast path, plain text and TLS (head parsing, forwarded head, exchange with a
//!   node, body relays both ways on bytes), handing anything else to hyper;
//! - `hyper_path`: requests hyper parsed (HTTP/2, h2c, `Expect`, upgrades, HTTP/1.0, everything the fast
//!   path hands over), sent through the pooled hyper client;
//! - `route`: `[[route]]` matching, a pool or a status;
//! - `headers`: the header policy (hop-by-hop fields, `X-Forwarded-*`), rendered onto a `HeaderMap` and
//!   onto bytes;
//! - `failover`: choosing a node, one retry on another, passive health checks; the request's [`Trace`];
//! - `error`: [`ProxyError`], its status, whether it allows a retry, whether it blames the node;
//! - `access`: the access line, written when the body is done;
//! - `strictness`: the HTTP/1 requests refused with 400 whatever path parsed them (RFC 9112).
//!
//! The affinity rules (hints, the cookie) live in [`crate::upstream::affinity`].

pub mod access;
pub mod error;
pub mod failover;
pub mod h1;
pub mod headers;
pub mod hyper_path;
pub mod route;
pub mod strictness;

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::am::crest;
use crate::body::Body;
use crate::config::{Config, RouteAction};
use crate::metrics::Metrics;
use crate::server::Peer;
use crate::upstream::select::Outcome;
use crate::upstream::{StateRegistry, Upstreams};

pub use error::ProxyError;
pub use failover::Trace;

/// The message of a route's `status` answer.
const NOT_SERVED: &str = "This path is not served through this proxy";

/// Everything one request needs, swapped whole on reload.
pub struct Snapshot {
    /// The validated config.
    pub config: Arc<Config>,
    /// Pools with live node state, each node with its keep-alive connections
    /// (`crate::upstream::conns`).
    pub upstreams: Upstreams,
}

impl Snapshot {
    /// Builds a snapshot, reusing node state and warm connections from `registry` (a node keeps its
    /// connections while its ID and address are unchanged).
    pub fn build(config: Arc<Config>, registry: &StateRegistry, metrics: &Metrics) -> Self {
        let upstreams = Upstreams::build(&config, registry, metrics);
        Self { config, upstreams }
    }
}

/// The proxy service shared by every connection of the public listener.
pub struct Proxy {
    snapshot: ArcSwap<Snapshot>,
    registry: StateRegistry,
    metrics: Arc<Metrics>,
}

impl Proxy {
    /// A proxy serving `config`.
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Self {
        let registry = StateRegistry::default();
        let snapshot = Snapshot::build(config, &registry, &metrics);
        Self { snapshot: ArcSwap::from_pointee(snapshot), registry, metrics }
    }

    /// The traffic metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new config; node state of unchanged IDs carries over.
    pub fn reload(&self, config: Arc<Config>) {
        self.snapshot.store(Arc::new(Snapshot::build(config, &self.registry, &self.metrics)));
    }

    /// Handles one request from the public listener. Never fails: errors become AM-shaped answers.
    pub async fn handle(&self, mut req: Request<Incoming>, peer: Peer) -> Response<Body> {
        let started = Instant::now();
        let snap = self.snapshot.load_full();
        let method = req.method().clone();
        let request_id = headers::set_request_id(req.headers_mut(), &snap.config.proxy.request_id_header);
        // The access line is the only reason to copy these; skip it when the line is filtered out.
        let log = tracing::enabled!(target: "tether::access", tracing::Level::INFO);
        let seen = log.then(|| seen(&snap, &req, &peer, &request_id));
        let mut trace = Trace::default();
        let (result, pool) = if let Some(reason) = strictness::refused(&req) {
            (Err(ProxyError::BadRequest(reason.to_owned())), None)
        } else {
            let action = route::find(&snap.config.routes, req.method(), req.uri(), req.headers()).cloned();
            match action {
                None => (Err(ProxyError::NoRoute), None),
                Some(RouteAction::Status(status)) => (Ok(crest::error(status, NOT_SERVED)), None),
                Some(RouteAction::Pool(i)) => {
                    let pool = &snap.upstreams.pools[i];
                    (hyper_path::to_pool(&snap, pool, req, peer, &mut trace).await, Some(pool))
                }
            }
        };
        let resp = result.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "synthetic answer");
            let close = matches!(e, ProxyError::BadRequest(_));
            let mut resp = e.to_response();
            // RFC 9112 §6.3: after a request whose framing cannot be trusted the connection closes
            // (hyper does when the answer says so).
            if close {
                resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            resp
        });
        let status = resp.status();
        let Some(line) = self.record(pool, &trace, method, status, seen, started) else {
            return resp;
        };
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, line.attach(body))
    }
}

/// What the access line says about a request hyper parsed.
fn seen(
    snap: &Snapshot,
    req: &Request<Incoming>,
    peer: &Peer,
    request_id: &http::HeaderValue,
) -> access::Seen {
    let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let xff = req.headers().get_all(&headers::X_FORWARDED_FOR);
    let forwarded = headers::forwarded_client(
        &snap.config.proxy.trusted_proxies,
        peer.addr.ip(),
        xff.iter().map(|v| v.as_bytes()),
    );
    access::Seen {
        path: req.uri().path().to_owned(),
        client: access::Client::of(peer.addr, forwarded),
        host: req
            .headers()
            .get(http::header::HOST)
            .map(text)
            .or_else(|| req.uri().authority().map(|a| a.to_string())),
        user_agent: req.headers().get(http::header::USER_AGENT).map(text),
        proto: access::Proto { http: access::http_version(req.version()), tls: peer.tls_version },
        request_id: text(request_id),
    }
}

impl Proxy {
    /// Counts one answered request (node, pool or unrouted metrics, by how far it got) and builds its
    /// access line when one is wanted (`seen` is `Some` exactly then). Shared by hyper's path and the
    /// HTTP/1.1 fast path, so both count and log alike.
    fn record(
        &self,
        pool: Option<&crate::upstream::Pool>,
        trace: &Trace,
        method: http::Method,
        status: http::StatusCode,
        seen: Option<access::Seen>,
        started: Instant,
    ) -> Option<access::AccessLog> {
        let elapsed = started.elapsed();
        // The hint that decided: the pinning one for hits and redispatches, none when the pool balanced.
        let decided_by = |outcome| match outcome {
            Outcome::Hit | Outcome::Redispatch => trace.hints.pinned.map(|(_, source)| source),
            Outcome::Miss | Outcome::Invalid => None,
        };
        match (pool, trace.choice) {
            (Some(pool), Some(choice)) => {
                pool.backends[choice.index].metrics.observe(&method, status, elapsed.as_secs_f64());
                pool.metrics.affinity(choice.outcome, decided_by(choice.outcome));
            }
            (Some(pool), None) => pool.metrics.unserved(&method, status),
            (None, _) => self.metrics.unrouted(&method, status),
        }
        let seen = seen?;
        let node = |i: usize| pool.map(|p| p.backends[i].id.to_string());
        Some(access::AccessLog {
            method,
            seen,
            status: status.as_u16(),
            pool: pool.map(|p| p.name.clone()),
            backend: trace.choice.and_then(|c| node(c.index)),
            pinned: trace.hints.pinned.and_then(|(i, _)| node(i)),
            affinity: trace.choice.map(|c| c.outcome.as_str()),
            hint: trace.choice.and_then(|c| decided_by(c.outcome)).map(|h| h.as_str()),
            retries: trace.retries,
            started,
            headers_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        })
    }
}

impl crate::server::Handler for Proxy {
    async fn call(&self, req: Request<Incoming>, peer: Peer) -> Response<Body> {
        self.handle(req, peer).await
    }

    fn serve_http1(
        self: Arc<Self>,
        start: crate::server::Handoff,
        addrs: crate::server::Addresses,
        ctx: crate::server::ConnContext,
    ) -> impl Future<Output = Option<crate::server::Handoff>> + Send {
        h1::serve(self, start, addrs, ctx)
    }
}
