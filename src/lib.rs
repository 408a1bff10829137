//! tether: a sticky sidecar load balancer for AM-style auth clusters, with an embedded AM-compatible
//! auth node so a whole cluster runs from one command.
//!
//! # Request flow
//! ```text
//! client ──► server (accept, drain) ──► proxy::h1 (plain HTTP/1.1 without a body: parse the head once)
//!             │            │ anything else: handed to hyper (h1/h2c, TLS) ──► proxy::Proxy::handle
//!             │            ▼                                   ▼
//!             │          proxy::route (rules → pool | status)
//!             │                                      │
//!             │                      upstream::affinity (hints → node ID: cookie, authId, session token)
//!             │                                      │
//!             │                      upstream::select (tier, balance, health, admin state)
//!             │                                      │
//!             │       proxy::h1 (bytes to a pooled TCP stream, framing relayed) | proxy::hyper_path
//!             │       (HeaderMap, hyper's pooled client); both: one retry, Set-Cookie rules
//!             │                                      ▼
//!             │                         auth node (embedded or remote): auth::node
//!             └──► admin (healthz, readyz)
//! ```
//! [`start`] binds every listener of a [`config::Config`] and returns their addresses; [`run`] serves
//! until the shutdown token fires, then drains.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod am;
pub mod auth;
pub mod body;
pub mod config;
pub mod metrics;
pub mod nodes;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::proxy::Proxy;
use crate::server::ServeOptions;
pub use crate::server::StartError;

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

/// Binds every listener of `config` and starts serving; returns once all are bound.
pub async fn start(mut config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let tasks = TaskTracker::new();
    // Nodes first: a `:0` url gets its real port before the proxy reads the backend set.
    let nodes = nodes::start_embedded(&mut config, &shutdown, &tasks).await?;
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
    let opts = |name, tls| ServeOptions {
        name,
        header_timeout: config.proxy.request_header_timeout,
        grace: config.proxy.shutdown_grace,
        tls,
        connections: metrics.connections(name),
        proxy_protocol: name == "public" && config.proxy.proxy_protocol,
    };
    let (public_opts, admin_opts) = (opts("public", tls.clone()), opts("admin", None));
    let proxy = Arc::new(Proxy::new(Arc::new(config), metrics));
    let checkers = Arc::new(upstream::health::Checkers::new(shutdown.clone(), tasks.clone()));
    checkers.sync(&proxy.snapshot().upstreams);
    let reloader = Arc::new(reload::Reloader::new(
        Arc::clone(&proxy),
        checkers,
        tls.as_ref().map(|(t, _)| Arc::clone(t)),
        &nodes,
    ));
    tasks.spawn(server::serve(public, Arc::clone(&proxy), public_opts, shutdown.clone()));
    tasks.spawn(server::serve(
        admin,
        Arc::new(admin::Admin::new(
            Arc::clone(&proxy),
            Arc::clone(&reloader),
            nodes.iter().map(|n| Arc::clone(&n.node)).collect(),
        )),
        admin_opts,
        shutdown,
    ));
    let node_addrs: Vec<String> = nodes.iter().map(|n| format!("{}={}", n.node.id(), n.addr)).collect();
    tracing::info!(%listen, admin = %admin_addr, nodes = %node_addrs.join(" "), "tether is serving");
    Ok(Running { listen, admin: admin_addr, proxy, nodes, reloader, tasks })
}

/// Serves `config` until `shutdown` fires, then drains in-flight requests and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    start(config, shutdown).await?.wait().await;
    Ok(())
}

/// Runs the auth node of backend `id` alone, on the host:port of its url, until `shutdown` fires.
pub async fn run_node(config: Config, id: &str, shutdown: CancellationToken) -> Result<(), StartError> {
    nodes::run_node(config, id, shutdown).await
}
