//! Starting auth nodes: every `embedded = true` backend next to the proxy (`tether run`), or one node
//! alone (`tether node --id`).
//!
//! Nodes of one process share the signing secret (like an AM realm's "Organization Authentication Signing
//! Secret"), and with `sessions = "shared"` one session store and one replay cache, the way AM nodes share
//! the CTS; with `sessions = "redis"` one store on Redis that every process naming it shares. In-progress journeys of `auth_sessions = "memory"` stay inside each node, exactly like AM
//! chains, which is what makes the proxy's stickiness matter; those of `"store"` (and the spent steps of
//! `"client"`) live with the sessions, so they are shared exactly as far as the sessions are.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::StartError;
use crate::am::token::Keys;
use crate::auth::AuthNode;
use crate::auth::lockout::{LoginGuard, MemoryGuard};
use crate::auth::session::{MemoryStore, SessionStore};
use crate::auth::store::RedisStore;
use crate::auth::{Denylist, JourneyStore, MemoryDenylist, MemoryJourneys};
use crate::body::Body;
use crate::config::{AuthConfig, BackendConfig, Config, SessionStoreMode, TrustedProxies};
use crate::server::{self, Handler, Peer, ServeOptions};

/// How often expired sessions and journeys are swept (they are also dropped lazily when met).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

impl Handler for AuthNode {
    async fn call(&self, mut req: Request<Incoming>, peer: Peer) -> Response<Body> {
        // The connection's peer, for the login log lines (the lockout's client address).
        req.extensions_mut().insert(peer.addr);
        self.handle(req).await
    }
}

/// A started node.
pub struct NodeHandle {
    /// The node, for in-process inspection.
    pub node: Arc<AuthNode>,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The state a node keeps outside itself: sessions, journeys, logged-out client-side sessions, and
/// failure counts, locks and spent one-time codes. Shared exactly as far as the sessions are.
#[derive(Clone)]
struct Stores {
    sessions: Arc<dyn SessionStore>,
    journeys: Arc<dyn JourneyStore>,
    denylist: Arc<dyn Denylist>,
    guard: Arc<dyn LoginGuard>,
}

impl Stores {
    /// Fresh in-process stores.
    fn memory() -> Self {
        Self {
            sessions: Arc::new(MemoryStore::new()),
            journeys: Arc::new(MemoryJourneys::new()),
            denylist: Arc::new(MemoryDenylist::new()),
            guard: Arc::new(MemoryGuard::new()),
        }
    }

    /// One Redis store in every role.
    fn redis(redis: Arc<RedisStore>) -> Self {
        Self {
            sessions: Arc::clone(&redis) as _,
            journeys: Arc::clone(&redis) as _,
            denylist: Arc::clone(&redis) as _,
            guard: redis,
        }
    }
}

/// State the nodes of one process share.
struct Shared {
    auth: Arc<AuthConfig>,
    keys: Keys,
    stores: Stores,
    trusted_proxies: TrustedProxies,
}

impl Shared {
    fn new(config: &Config) -> Result<Self, StartError> {
        let auth = config.auth.clone().ok_or_else(|| {
            StartError::Unsupported("auth nodes need an [auth] section in the config (see the README)".into())
        })?;
        let keys = Keys::derive(&signing_secret(auth.signing_secret_file.as_deref())?);
        let stores = match (&auth.sessions, &auth.store) {
            (SessionStoreMode::Redis, Some(store)) => Stores::redis(Arc::new(
                RedisStore::connect(store)
                    .map_err(|e| StartError::Unsupported(format!("{}: {e}", store.servers)))?,
            )),
            (SessionStoreMode::Redis, None) => {
                return Err(StartError::Unsupported(
                    "sessions = \"redis\" needs an [auth.store] table".into(),
                ));
            }
            _ => Stores::memory(),
        };
        Ok(Self { auth: Arc::new(auth), keys, stores, trusted_proxies: config.proxy.trusted_proxies.clone() })
    }

    /// The stores for one node: the shared ones, or its own.
    fn node(&self, backend: &BackendConfig) -> AuthNode {
        let stores = match self.auth.sessions {
            // One Redis store per process: every node of every process on that Redis shares it.
            SessionStoreMode::Shared | SessionStoreMode::Redis => self.stores.clone(),
            SessionStoreMode::Local => Stores::memory(),
        };
        let Stores { sessions, journeys, denylist, guard } = stores;
        AuthNode::new(backend.id.clone(), Arc::clone(&self.auth), self.keys.clone(), sessions, journeys)
            .with_denylist(denylist)
            .with_guard(guard)
            .with_trusted_proxies(self.trusted_proxies.clone())
    }
}

/// Reads the shared secret, or makes one for this process (then only this process's nodes can verify
/// each other's `authId`s, which is all an all-in-one `tether run` needs).
fn signing_secret(file: Option<&Path>) -> Result<Vec<u8>, StartError> {
    match file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                StartError::Unsupported(format!(
                    "cannot read auth.signing_secret_file {}: {e}",
                    path.display()
                ))
            })?;
            let trimmed = bytes.trim_ascii().to_vec();
            if trimmed.len() < 16 {
                return Err(StartError::Unsupported(format!(
                    "auth.signing_secret_file {} holds {} bytes; at least 16 (128 bits) are needed",
                    path.display(),
                    trimmed.len()
                )));
            }
            Ok(trimmed)
        }
        None => {
            let mut secret = vec![0u8; 32];
            SystemRandom::new()
                .fill(&mut secret)
                .map_err(|_| StartError::Unsupported("the system random generator failed".into()))?;
            Ok(secret)
        }
    }
}

/// The address a node binds: its url's host (an IP literal or `localhost`) and port.
fn bind_addr(backend: &BackendConfig) -> Result<SocketAddr, StartError> {
    let host = backend.authority.host().trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().map_err(|_| {
            StartError::Unsupported(format!(
                "backend {}: an auth node listens on its url's host, which must be an IP address or localhost, not {host:?}",
                backend.id
            ))
        })?
    };
    Ok(SocketAddr::new(ip, backend.authority.port_u16().unwrap_or(80)))
}

/// Starts every `embedded = true` backend of `config`. A url with port 0 gets an ephemeral port, and the
/// config is updated to point at it (tests and ad-hoc clusters need no fixed ports).
pub async fn start_embedded(
    config: &mut Config,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Vec<NodeHandle>, StartError> {
    if !config.backends().any(|(_, b)| b.embedded) {
        return Ok(Vec::new());
    }
    let shared = Shared::new(config)?;
    let mut handles = Vec::new();
    for pool in &mut config.pools {
        for backend in pool.backends.iter_mut().filter(|b| b.embedded) {
            let listener = server::bind("auth node", bind_addr(backend)?).await?;
            let addr = listener.local_addr().map_err(|source| StartError::Bind {
                what: "auth node",
                addr: bind_addr(backend).unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
                source,
            })?;
            if backend.authority.port_u16() == Some(0) {
                backend.authority = addr.to_string().parse().unwrap_or_else(|_| backend.authority.clone());
            }
            let node = Arc::new(shared.node(backend));
            serve_node(Arc::clone(&node), listener, &config.proxy, shutdown, tasks);
            handles.push(NodeHandle { node, addr });
        }
    }
    Ok(handles)
}

/// The session store the admin listener of a process without embedded nodes administers: the Redis
/// store its `[auth]` names (`sessions = "redis"`), shared with the standalone nodes on it; `None`
/// when embedded nodes hold the stores, or when the sessions live only inside other processes.
pub fn admin_store(config: &Config) -> Result<Option<Arc<dyn SessionStore>>, StartError> {
    if config.backends().any(|(_, b)| b.embedded) {
        return Ok(None);
    }
    let Some(auth) = &config.auth else { return Ok(None) };
    match (&auth.sessions, &auth.store) {
        (SessionStoreMode::Redis, Some(store)) => {
            let redis = RedisStore::connect(store)
                .map_err(|e| StartError::Unsupported(format!("{}: {e}", store.servers)))?;
            Ok(Some(Arc::new(redis)))
        }
        _ => Ok(None),
    }
}

/// Runs the node of backend `id` alone until `shutdown` fires.
pub async fn run_node(config: Config, id: &str, shutdown: CancellationToken) -> Result<(), StartError> {
    let backend = config.backend(id).cloned().ok_or_else(|| {
        let known: Vec<String> = config.backends().map(|(_, b)| b.id.to_string()).collect();
        StartError::Unsupported(format!("no backend has id {id:?} (backends: {})", known.join(", ")))
    })?;
    if backend.scheme == http::uri::Scheme::HTTPS {
        return Err(StartError::Unsupported(format!(
            "backend {id} is {}: an auth node serves plain http://, so its url must be http://",
            backend.url()
        )));
    }
    let shared = Shared::new(&config)?;
    let listener = server::bind("auth node", bind_addr(&backend)?).await?;
    let addr = listener.local_addr().map_or_else(|_| "-".to_owned(), |a| a.to_string());
    let node = Arc::new(shared.node(&backend));
    let tasks = TaskTracker::new();
    serve_node(node, listener, &config.proxy, &shutdown, &tasks);
    tracing::info!(node = %backend.id, %addr, "auth node is serving");
    tasks.close();
    tasks.wait().await;
    Ok(())
}

fn serve_node(
    node: Arc<AuthNode>,
    listener: TcpListener,
    proxy: &crate::config::ProxySettings,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) {
    let opts = ServeOptions {
        name: "auth node",
        header_timeout: proxy.request_header_timeout,
        grace: proxy.shutdown_grace,
        tls: None,
        connections: prometheus_client::metrics::gauge::Gauge::default(),
        max_connections: None,
        limit_reached: prometheus_client::metrics::counter::Counter::default(),
        accepted: prometheus_client::metrics::counter::Counter::default(),
        tls_failures: prometheus_client::metrics::counter::Counter::default(),
        client_traffic: false,
        send_timeout: proxy.client_send_timeout,
        proxy_protocol: false,
        h2: proxy.h2.clone(),
    };
    tasks.spawn(server::serve(listener, Arc::clone(&node), opts, shutdown.clone()));
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = every.tick() => node.sweep().await,
            }
        }
    });
}
