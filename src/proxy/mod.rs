//! The public listener's service: route, choose a node, forward.
//!
//! Each request loads the current [`Snapshot`] exactly once and uses it to the end, so a reload never
//! mixes two configs within one request.

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
    pub fn build(config: Arc<Config>, registry: &StateRegistry, previous: Option<&Snapshot>) -> Self {
        let upstreams = Upstreams::build(&config, registry);
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
}

impl Proxy {
    /// A proxy serving `config`.
    pub fn new(config: Arc<Config>) -> Self {
        let registry = StateRegistry::default();
        let snapshot = Snapshot::build(config, &registry, None);
        Self { snapshot: ArcSwap::from_pointee(snapshot), registry }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new config; node state of unchanged IDs carries over.
    pub fn reload(&self, config: Arc<Config>) {
        let previous = self.snapshot.load_full();
        self.snapshot.store(Arc::new(Snapshot::build(config, &self.registry, Some(&previous))));
    }

    /// Handles one request from the public listener. Never fails: errors become AM-shaped answers.
    pub async fn handle(&self, req: Request<Incoming>, peer: Peer) -> Response<Body> {
        let started = Instant::now();
        let snap = self.snapshot.load_full();
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let mut trace = forward::Trace::default();
        let action = route::find(&snap.config.routes, req.method(), req.uri(), req.headers()).cloned();
        let (result, pool_name) = match action {
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
        let backend = pool_name.zip(trace.choice).map(|(p, c)| p.backends[c.index].id.as_str());
        tracing::info!(
            target: "tether::access",
            method = %method,
            path = %path,
            status = resp.status().as_u16(),
            duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            pool = pool_name.map(|p| p.name.as_str()),
            backend,
            affinity = trace.choice.map(|c| c.outcome.as_str()),
            hint = trace.hints.pinned.map(|(_, s)| s.as_str()),
            retries = trace.retries,
        );
        resp
    }
}

impl crate::server::Handler for Proxy {
    async fn call(&self, req: Request<Incoming>, peer: Peer) -> Response<Body> {
        self.handle(req, peer).await
    }
}
