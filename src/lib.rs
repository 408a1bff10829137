//! tether: a sticky sidecar load balancer for AM-style auth clusters, with an embedded AM-compatible
//! auth node so a whole cluster runs from one command.
//!
//! # Request flow
//! ```text
//! client ──► server (accept, TLS, drain) ──► proxy::h1 (plain HTTP/1.1 without a body: the head parsed once)
//!             │            │ anything else: handed to hyper (h1/h2c, TLS) ──► proxy::hyper_path
//!             │            ▼                                    ▼
//!             │          proxy::route (rules → pool | status) ◄─┘
//!             │            ▼
//!             │          upstream::affinity (hints → node: cookie, authId, session token; Set-Cookie rules)
//!             │            ▼
//!             │          upstream::select (tier, balance, health, admin state) ─► upstream::conns
//!             │            ▼                                  (pooled keep-alive connections)
//!             │          proxy::failover (one retry on another node), proxy::headers (one header policy)
//!             │            ▼
//!             │          auth node (embedded or remote): auth::http ─► auth::login ─► journey, session
//!             └──► admin (healthz, readyz, metrics, status, backend states, reload)
//! ```
//! AM's wire formats (token layout, CREST errors, dates, where a request carries its token) live once in
//! [`am`], the file format in [`config`]. [`start`] binds every listener of a [`config::Config`] and
//! returns their addresses; [`run`] serves until the shutdown token fires, then drains.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Two modules are public as they are: the file format and AM's wire formats are the contracts tether
// shares with operators and with AM's clients. Everything else is private, and the items the binary, the
// tests, the benches and the examples need are re-exported below.
pub mod am;
pub mod config;
pub mod terminal;

mod admin;
mod auth;
mod body;
mod metrics;
mod nodes;
mod proxy;
mod reload;
mod server;
mod shutdown;
mod tls;
mod upstream;

pub use crate::auth::journey::AuthIdClaims;
pub use crate::auth::lockout::{LoginGuard, MemoryGuard};
pub use crate::auth::quota::Quota;
pub use crate::auth::session::{MemoryStore, Session, SessionStore, StoreError};
pub use crate::auth::store::RedisStore;
pub use crate::auth::totp::totp;
pub use crate::auth::user::hash_password;
pub use crate::auth::{
    AuthNode, AuthStats, Denylist, JourneyStore, MemoryDenylist, MemoryJourneys, SpentOtks,
};
pub use crate::body::Body;
pub use crate::metrics::Metrics;
pub use crate::nodes::NodeHandle;
pub use crate::proxy::{Proxy, Snapshot};
pub use crate::reload::Reloader;
pub use crate::server::{Handler, Peer, ServeOptions, StartError, serve};

/// The per-request pieces of the proxy, for the criterion benches (`benches/hot_path.rs`) and the
/// property tests of the decoders (`tests/decoders.rs`), which time and fuzz them one at a time.
pub mod hot_path {
    pub use crate::proxy::h1::forwarded_request;
    pub use crate::proxy::h1::framing::Chunked;
    pub use crate::proxy::headers::{Hop, add_forwarded, forwarded_for_value, strip_hop_by_hop};
    pub use crate::upstream::affinity::{Hints, read as read_hints};
    pub use crate::upstream::select::choose;
    pub use crate::upstream::{StateRegistry, Upstreams};
}

/// Entry points for the coverage-guided fuzz targets of `fuzz/`, which reach parsers of client bytes
/// that are not public otherwise. Thin on purpose: the targets hold the checks. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::proxy::h1::framing::Framing as BodyFraming;
    pub use crate::proxy::h1::{Decision, decide as request_head};
    pub use crate::server::proxy_protocol::{
        Header as ProxyHeader, Parsed as ProxyParsed, parse as proxy_protocol,
    };

    /// What hyper's path refuses of this request (the same RFC 9112 rules as the fast path's
    /// refusals), so a target can check that both paths refuse the same requests.
    pub fn hyper_refusal(req: &http::Request<()>) -> Option<&'static str> {
        crate::proxy::strictness::refused(req)
    }
}

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;

/// A started tether: its bound addresses and the tasks serving them.
pub struct Running {
    /// Public listener address (the real port when the config said `:0`).
    pub listen: SocketAddr,
    /// Admin listener address.
    pub admin: SocketAddr,
    /// The proxy, for in-process inspection.
    pub proxy: Arc<Proxy>,
    /// Embedded auth nodes.
    pub nodes: Vec<nodes::NodeHandle>,
    /// Re-reads the config file (SIGHUP, `POST /reload`).
    pub reloader: Arc<reload::Reloader>,
    tasks: TaskTracker,
}

impl Running {
    /// Waits until every listener has drained after the shutdown token fired.
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Binds every listener of `config` and starts serving; returns once all are bound. When `shutdown`
/// fires, the listeners close in phases (the `shutdown` module): `/readyz` turns 503 at once, the
/// public listener closes after `shutdown_delay_s` and drains, then the embedded nodes, then the admin
/// listener.
pub async fn start(mut config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let tasks = TaskTracker::new();
    let phases = shutdown::Phases::default();
    let node_tasks = TaskTracker::new();
    // The state file before anything starts: a node saved in maint must never take a request, so a
    // file that cannot be read stops the start. It is a few hundred bytes; reading it blocks briefly.
    let state_file = config.proxy.state_file.clone().map(|p| Arc::new(upstream::StateFile::new(p)));
    let saved = match &state_file {
        Some(file) => file.read().map_err(|e| StartError::StateFile(e.to_string()))?,
        None => None,
    };
    // Nodes first: a `:0` url gets its real port before the proxy reads the backend set.
    let nodes = nodes::start_embedded(&mut config, &phases.nodes, &node_tasks).await?;
    // A start that fails from here on stops the nodes it started.
    let stop_nodes = phases.nodes.clone().drop_guard();
    let admin_store = nodes::admin_store(&config)?;
    if !config.proxy.admin_listen.ip().is_loopback() && config.proxy.admin_token.is_none() {
        tracing::warn!(
            admin = %config.proxy.admin_listen,
            "the admin listener is reachable beyond this host and has no admin_token: anyone who reaches it can drain or reload; set proxy.admin_token"
        );
    }
    let public = server::bind("public listener", config.proxy.listen).await?;
    let admin = server::bind("admin listener", config.proxy.admin_listen).await?;
    let addr_of = |l: &tokio::net::TcpListener, fallback| l.local_addr().unwrap_or(fallback);
    let (listen, admin_addr) =
        (addr_of(&public, config.proxy.listen), addr_of(&admin, config.proxy.admin_listen));

    let tls = match &config.proxy.tls {
        Some(files) => Some((tls::shared(files)?, files.handshake_timeout)),
        None => None,
    };
    let metrics = Arc::new(metrics::Metrics::default());
    // Only the public listener is limited: the admin listener stays reachable (metrics, status) while
    // a flood holds every public slot.
    let max_connections = config.proxy.max_connections.unwrap_or_else(server::default_max_connections);
    let opts = |name, tls| ServeOptions {
        name,
        header_timeout: config.proxy.request_header_timeout,
        grace: config.proxy.shutdown_grace,
        tls,
        connections: metrics.connections(name),
        max_connections: (name == "public").then_some(max_connections),
        limit_reached: if name == "public" {
            metrics.connection_limit(name, max_connections)
        } else {
            Counter::default()
        },
        accepted: metrics.accepted(name),
        tls_failures: metrics.tls_handshake_failures().clone(),
        client_traffic: name == "public",
        send_timeout: config.proxy.client_send_timeout,
        proxy_protocol: name == "public" && config.proxy.proxy_protocol,
        h2: config.proxy.h2.clone(),
    };
    let (public_opts, admin_opts) = (opts("public", tls.clone()), opts("admin", None));
    let proxy = Arc::new(Proxy::new(Arc::new(config), metrics));
    if let (Some(file), Some(saved)) = (&state_file, &saved) {
        let snap = proxy.snapshot();
        file.apply(saved, &snap.config, &snap.upstreams);
    }
    let checkers = Arc::new(upstream::health::Checkers::new(phases.nodes.clone(), tasks.clone()));
    checkers.sync(&proxy.snapshot().upstreams);
    let reloader = Arc::new(reload::Reloader::new(
        Arc::clone(&proxy),
        checkers,
        tls.as_ref().map(|(t, _)| Arc::clone(t)),
        &nodes,
    ));
    let public = tasks.spawn(server::serve(public, Arc::clone(&proxy), public_opts, phases.public.clone()));
    tasks.spawn(server::serve(
        admin,
        Arc::new(
            admin::Admin::new(
                Arc::clone(&proxy),
                Arc::clone(&reloader),
                nodes.iter().map(|n| Arc::clone(&n.node)).collect(),
                state_file,
            )
            .with_session_store(admin_store)
            .with_shutdown(shutdown.clone()),
        ),
        admin_opts,
        phases.admin.clone(),
    ));
    tasks.spawn(shutdown::run(shutdown, phases, Arc::clone(&proxy), public, node_tasks));
    stop_nodes.disarm();
    let node_addrs: Vec<String> = nodes.iter().map(|n| format!("{}={}", n.node.id(), n.addr)).collect();
    tracing::info!(%listen, admin = %admin_addr, nodes = %node_addrs.join(" "), max_connections, "tether is serving");
    Ok(Running { listen, admin: admin_addr, proxy, nodes, reloader, tasks })
}

/// Serves `config` until `shutdown` fires, then closes the listeners in phases and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    start(config, shutdown).await?.wait().await;
    Ok(())
}

/// Runs the auth node of backend `id` alone, on the host:port of its url, until `shutdown` fires.
pub async fn run_node(config: Config, id: &str, shutdown: CancellationToken) -> Result<(), StartError> {
    nodes::run_node(config, id, shutdown).await
}
