//! The public listener's service: route, choose a node, forward.
//!
//! Each request loads the current [`Snapshot`] exactly once and uses it to the end, so a reload never
//! mixes two configs within one request.

pub mod access;
pub mod forward;
pub mod headers;
pub mod route;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use forward::Peer;

use crate::body::Body;
use crate::config::{Config, RouteAction};
use crate::error::{ProxyError, am_error};
use crate::metrics::Metrics;
use crate::upstream::select::Outcome;
use crate::upstream::{StateRegistry, Upstreams};

/// The pooled keep-alive client towards the nodes.
pub type UpstreamClient = Client<HttpConnector, Body>;

/// Everything one request needs, swapped whole on reload.
pub struct Snapshot {
    /// The validated config.
    pub config: Arc<Config>,
    /// Pools with live node state.
    pub upstreams: Upstreams,
    /// The upstream client (kept across reloads unless its settings change).
    pub client: UpstreamClient,
}

impl Snapshot {
    /// Builds a snapshot, reusing node state from `registry` and the client of `previous` when its
    /// settings are unchanged (so reloads keep warm connections).
    pub fn build(
        config: Arc<Config>,
        registry: &StateRegistry,
        metrics: &Metrics,
        previous: Option<&Snapshot>,
    ) -> Self {
        let upstreams = Upstreams::build(&config, registry, metrics);
        let client = match previous {
            Some(p) if same_client_settings(&p.config, &config) => p.client.clone(),
            _ => build_client(&config),
        };
        Self { config, upstreams, client }
    }
}

fn same_client_settings(a: &Config, b: &Config) -> bool {
    (a.proxy.connect_timeout, a.proxy.pool_idle_timeout, a.proxy.pool_max_idle_per_backend)
        == (b.proxy.connect_timeout, b.proxy.pool_idle_timeout, b.proxy.pool_max_idle_per_backend)
}

fn build_client(config: &Config) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.proxy.connect_timeout));
    connector.set_keepalive(Some(std::time::Duration::from_secs(60)));
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.proxy.pool_idle_timeout)
        .pool_max_idle_per_host(config.proxy.pool_max_idle_per_backend)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
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
        let snapshot = Snapshot::build(config, &registry, &metrics, None);
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
        let previous = self.snapshot.load_full();
        self.snapshot.store(Arc::new(Snapshot::build(
            config,
            &self.registry,
            &self.metrics,
            Some(&previous),
        )));
    }

    /// Handles one request from the public listener. Never fails: errors become AM-shaped answers.
    pub async fn handle(&self, req: Request<Incoming>, peer: Peer) -> Response<Body> {
        let started = Instant::now();
        let snap = self.snapshot.load_full();
        let method = req.method().clone();
        // The access line is the only reason to copy the path; skip it when the line is filtered out.
        let log = tracing::enabled!(target: "tether::access", tracing::Level::INFO);
        let path = log.then(|| req.uri().path().to_owned());
        let mut trace = forward::Trace::default();
        let action = route::find(&snap.config.routes, req.method(), req.uri(), req.headers()).cloned();
        let (result, pool) = match action {
            None => (Err(ProxyError::NoRoute), None),
            Some(RouteAction::Status(status)) => {
                (Ok(am_error(status, "This path is not served through this proxy")), None)
            }
            Some(RouteAction::Pool(i)) => {
                let pool = &snap.upstreams.pools[i];
                (forward::to_pool(&snap, pool, req, peer, &mut trace).await, Some(pool))
            }
        };
        let resp = result.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "synthetic answer");
            e.to_response()
        });
        let (status, elapsed) = (resp.status(), started.elapsed());
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
        if !log {
            return resp;
        }
        let node = |i: usize| pool.map(|p| p.backends[i].id.to_string());
        let line = access::AccessLog {
            method,
            path: path.unwrap_or_default(),
            status: status.as_u16(),
            pool: pool.map(|p| p.name.clone()),
            backend: trace.choice.and_then(|c| node(c.index)),
            pinned: trace.hints.pinned.and_then(|(i, _)| node(i)),
            affinity: trace.choice.map(|c| c.outcome.as_str()),
            hint: trace.choice.and_then(|c| decided_by(c.outcome)).map(|h| h.as_str()),
            retries: trace.retries,
            started,
            headers_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        };
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, line.attach(body))
    }
}

impl crate::server::Handler for Proxy {
    async fn call(&self, req: Request<Incoming>, peer: Peer) -> Response<Body> {
        self.handle(req, peer).await
    }
}
