//! The backend set: pools of nodes with their live state, built from a [`Config`] snapshot.
//!
//! Everything a request needs is reachable from one [`Upstreams`] snapshot, rebuilt on each reload; the
//! node state inside it survives reloads.
//!
//! - [`state`]: node state kept across reloads by server ID ([`BackendState`], [`AdminState`],
//!   [`InFlight`], [`StateRegistry`]).
//! - [`state_file`]: operator states saved on every change and read at start ([`StateFile`]).
//! - [`health`]: the rise/fall machine and the bookkeeping of check results (pure), and the active
//!   checker ([`health::Checkers`]).
//! - [`sticky`]: node hints read from a request, and the affinity cookie.
//! - [`select`]: the choice of node (tier, balance, health, admin state, free `maxconn` slots).
//! - [`slots`]: `maxconn` slots and the queue of requests waiting for one.
//! - [`conns`]: keep-alive connections to one node address.
//! - [`stream`]: one connection to a node, plain or TLS, and how it is opened.
//! - [`stats`]: the traffic metric handles of a snapshot.
//!
//! [`Pool`] is always a pool of *nodes*; the connections to one node are its [`conns::Conns`].

pub mod affinity;
pub mod conns;
pub mod health;
pub mod select;
pub mod slots;
pub mod state;
pub mod state_file;
pub mod stats;
pub mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderValue;
use http::uri::{Authority, Scheme};

use crate::am::request::TokenPlaces;
use crate::config::{Affinity, BackendId, Balance, Config, HealthConfig, Role};
use crate::metrics::Metrics;
use conns::Conns;
pub use health::Health;
pub use state::{AdminState, BackendState, InFlight, StateRegistry};
pub use state_file::StateFile;
pub use stats::{BackendMetrics, PoolMetrics};

/// One node as a request sees it.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Server ID: the value of AM's `amlbcookie` and of the `S1`/`SI` hints that name this node.
    pub id: BackendId,
    /// Active nodes take new clients; passive ones (HAProxy's `backup`) only when no active one can.
    pub role: Role,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
    /// Live state, shared with every snapshot that contains this ID.
    pub state: Arc<BackendState>,
    /// Share of new clients (`weight`); 0 takes none but keeps its pinned clients, as HAProxy's.
    pub weight: u32,
    /// The pool's `slowstart_s`, for the time a returning node has left on its ramp.
    pub slowstart: Option<std::time::Duration>,
    /// Most requests in flight at once (`maxconn`), `None` = no limit; the slots are in `state`.
    pub maxconn: Option<std::num::NonZeroU32>,
    /// `Set-Cookie` pinning a client to this node, rendered once per snapshot.
    pub set_cookie: HeaderValue,
    /// The same with `Secure`, for TLS listeners.
    pub set_cookie_secure: HeaderValue,
    /// Traffic metrics of this backend in this pool.
    pub metrics: Arc<BackendMetrics>,
    /// Keep-alive connections to `authority` (shared with other snapshots while the address holds).
    pub conns: Arc<Conns>,
}

/// A pool of nodes.
#[derive(Debug)]
pub struct Pool {
    /// Name routes refer to.
    pub name: String,
    /// How new clients are spread.
    pub balance: Balance,
    /// Ramp of a node that comes back (`slowstart_s`).
    pub slowstart: Option<std::time::Duration>,
    /// How long a request waits for a slot of a node at its `maxconn` (`queue_timeout_ms`).
    pub queue_timeout: std::time::Duration,
    /// Cookie and hint policy.
    pub affinity: Affinity,
    /// Active check settings; `rise` and `fall` also govern failures seen on live traffic.
    pub health: HealthConfig,
    /// Nodes in file order.
    pub backends: Vec<Backend>,
    /// Where the session token (which may carry a node hint) is read, parsed once per snapshot.
    pub session_token: TokenPlaces,
    /// Traffic metrics of this pool.
    pub metrics: PoolMetrics,
    rr: AtomicUsize,
}

impl Backend {
    /// Time left on the `slowstart` ramp of a node that came back, `None` when it is at full weight.
    pub fn slowstart_left(&self) -> Option<std::time::Duration> {
        let since = self.state.since_return()?;
        self.slowstart.and_then(|ramp| ramp.checked_sub(since)).filter(|left| !left.is_zero())
    }
}

impl Pool {
    /// Index of the node with this server ID.
    pub fn index_of(&self, id: &[u8]) -> Option<usize> {
        self.backends.iter().position(|b| b.id.as_str().as_bytes() == id)
    }

    /// Next round-robin ticket; least-conn uses it too, to rotate where ties are broken.
    pub(crate) fn next_ticket(&self) -> usize {
        self.rr.fetch_add(1, Ordering::Relaxed)
    }
}

/// Every pool of one config snapshot.
#[derive(Debug)]
pub struct Upstreams {
    /// Pools in file order (route actions index into this).
    pub pools: Vec<Pool>,
}

impl Upstreams {
    /// Builds the pools of `config`, reusing node state from `registry`.
    pub fn build(config: &Config, registry: &StateRegistry, metrics: &Metrics) -> Self {
        let auth_cookie = config.auth.as_ref().map(|a| a.session_cookie.as_str());
        let pools = config
            .pools
            .iter()
            .map(|p| Pool {
                name: p.name.clone(),
                balance: p.balance,
                slowstart: p.slowstart,
                queue_timeout: p.queue_timeout,
                affinity: p.affinity.clone(),
                health: p.health.clone(),
                session_token: TokenPlaces::configured(p.affinity.session_cookie_or(auth_cookie)),
                metrics: PoolMetrics::new(metrics, &p.name),
                rr: AtomicUsize::new(0),
                backends: p
                    .backends
                    .iter()
                    .map(|b| {
                        let state = registry.get(&b.id, b.admin_state);
                        // A reload's new limit applies to the next requests; queued ones keep their place.
                        state.slots.set_max(b.maxconn);
                        let tls = p.tls.as_ref().zip(b.server_name.clone());
                        let tls = tls.map(|(tls, name)| stream::TlsTarget::new(tls, name));
                        Backend {
                            id: b.id.clone(),
                            role: b.role,
                            weight: b.weight,
                            slowstart: p.slowstart,
                            maxconn: b.maxconn,
                            scheme: b.scheme.clone(),
                            authority: b.authority.clone(),
                            conns: state.conns(&b.authority, tls),
                            state,
                            set_cookie: affinity::render_cookie(&p.affinity, &b.id, false),
                            set_cookie_secure: affinity::render_cookie(&p.affinity, &b.id, true),
                            metrics: Arc::new(BackendMetrics::new(metrics, &p.name, b.id.as_str())),
                        }
                    })
                    .collect(),
            })
            .collect();
        Self { pools }
    }

    /// The node with this server ID, in any pool.
    pub fn backend(&self, id: &str) -> Option<&Backend> {
        self.pools.iter().flat_map(|p| &p.backends).find(|b| b.id.as_str() == id)
    }
}
