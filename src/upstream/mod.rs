//! The backend set: pools of nodes with their live state, built from a [`Config`] snapshot.
//!
//! Per-node state ([`BackendState`]: health, admin state, in-flight and totals) lives in atomics behind an
//! `Arc` that is keyed by server ID in a [`StateRegistry`], so a reload that keeps an ID keeps its state
//! and its in-flight counts. Everything a request needs is reachable from one [`Upstreams`] snapshot.

pub mod affinity;
pub mod health;
pub mod pool;
pub mod select;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use http::uri::{Authority, Scheme};
use tokio::time::Instant;

use crate::am::request::TokenPlaces;
use crate::config::{Affinity, BackendId, Balance, Config, HealthConfig, Role};
use crate::metrics::{BackendMetrics, Metrics, PoolMetrics};
use health::{CheckResult, HealthMachine, Transition};
use pool::ConnPool;

/// Health as seen by the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Taking requests.
    Up,
    /// Refusing connections or failing checks.
    Down,
}

/// Operator-set state (HAProxy's `set server state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// In service.
    Ready,
    /// Keeps clients pinned to it, takes no new ones.
    Drain,
    /// Out of service entirely.
    Maint,
}

impl AdminState {
    /// Name used by the admin API and status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Drain => "drain",
            Self::Maint => "maint",
        }
    }
}

/// Live state of one node, shared by every snapshot that contains its ID.
///
/// The request path reads only atomics; the health machine and the last check result sit behind a
/// small mutex taken by the checker, by passive failures, and by a success that follows a failure.
#[derive(Debug)]
pub struct BackendState {
    /// Server ID.
    pub id: BackendId,
    up: AtomicBool,
    /// A failure streak is open, so the next success must close it.
    suspect: AtomicBool,
    health: Mutex<HealthInfo>,
    admin: AtomicU8,
    /// Milliseconds after `epoch` when a drain stops keeping pinned clients; `u64::MAX` = never.
    drain_until_ms: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    sticky_hits: AtomicU64,
    failures: AtomicU64,
    epoch: Instant,
    /// Keep-alive connections, for the address of the newest snapshot that built this node.
    conns: Mutex<Option<Arc<ConnPool>>>,
}

/// Health details for the status page.
#[derive(Debug, Default, Clone)]
pub struct HealthInfo {
    /// The rise/fall machine.
    pub machine: HealthMachine,
    /// The last active check.
    pub last_check: Option<CheckResult>,
    /// Transitions so far.
    pub transitions: u64,
    /// Transitions to up so far.
    pub transitions_up: u64,
    /// Transitions to down so far.
    pub transitions_down: u64,
    /// Active checks run so far.
    pub checks: u64,
    /// The reason of the last transition.
    pub last_reason: Option<String>,
}

impl BackendState {
    fn new(id: BackendId) -> Self {
        Self {
            id,
            up: AtomicBool::new(true),
            suspect: AtomicBool::new(false),
            health: Mutex::default(),
            admin: AtomicU8::new(0),
            drain_until_ms: AtomicU64::new(u64::MAX),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            sticky_hits: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            epoch: Instant::now(),
            conns: Mutex::new(None),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Current health.
    pub fn health(&self) -> Health {
        if self.up.load(Ordering::Relaxed) { Health::Up } else { Health::Down }
    }

    /// A copy of the health details.
    pub fn health_info(&self) -> HealthInfo {
        self.health.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn observe(&self, pass: bool, rise: u32, fall: u32, reason: impl FnOnce(&HealthMachine) -> String) {
        let mut info = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let transition = info.machine.observe(pass, rise, fall);
        self.suspect.store(info.machine.streak() > 0, Ordering::Relaxed);
        if let Some(t) = transition {
            let why = reason(&info.machine);
            self.up.store(t == Transition::Up, Ordering::Relaxed);
            info.transitions += 1;
            match t {
                Transition::Up => info.transitions_up += 1,
                Transition::Down => info.transitions_down += 1,
            }
            health::log_transition(self, t, &why);
            info.last_reason = Some(why);
        }
    }

    /// Feeds an active check result.
    pub fn record_check(&self, pass: bool, detail: String, rise: u32, fall: u32) {
        let reason = |_: &HealthMachine| {
            if pass {
                format!("{rise} check(s) passed in a row (last: {detail})")
            } else {
                format!("{fall} check(s) failed in a row (last: {detail})")
            }
        };
        self.observe(pass, rise, fall, reason);
        let mut info = self.health.lock().unwrap_or_else(|p| p.into_inner());
        info.checks += 1;
        info.last_check = Some(CheckResult { at: SystemTime::now(), pass, detail });
    }

    /// Records a failure seen on real traffic (connect refused or timed out): it counts as a failed
    /// check at once.
    pub fn record_passive_failure(&self, health: &HealthConfig, what: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let fall = health.fall;
        self.observe(false, health.rise, fall, |_| {
            format!("{fall} failure(s) in a row on live traffic (last: {what})")
        });
    }

    /// Records a success on real traffic: it ends an open failure streak (cheap when there is none).
    pub fn record_success(&self, health: &HealthConfig) {
        if self.suspect.load(Ordering::Relaxed) && self.health() == Health::Up {
            self.observe(true, health.rise, health.fall, |_| String::new());
        }
    }

    /// Operator-set state.
    pub fn admin(&self) -> AdminState {
        match self.admin.load(Ordering::Relaxed) {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }

    /// Sets the operator state; a drain may end its hold on pinned clients after `drain_deadline`.
    pub fn set_admin(&self, state: AdminState, drain_deadline: Option<Duration>) {
        let until = match (state, drain_deadline) {
            (AdminState::Drain, Some(d)) => {
                self.now_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }
            _ => u64::MAX,
        };
        self.drain_until_ms.store(until, Ordering::Relaxed);
        self.admin.store(state as u8, Ordering::Relaxed);
        tracing::info!(backend = %self.id, state = state.as_str(), deadline_ms = ?drain_deadline.map(|d| d.as_millis()), "admin state changed");
    }

    /// Seconds left before a drain releases its pinned clients.
    pub fn drain_left(&self) -> Option<Duration> {
        let until = self.drain_until_ms.load(Ordering::Relaxed);
        (self.admin() == AdminState::Drain && until != u64::MAX)
            .then(|| Duration::from_millis(until.saturating_sub(self.now_ms())))
    }

    /// May take new clients.
    pub fn takes_new(&self) -> bool {
        self.health() == Health::Up && self.admin() == AdminState::Ready
    }

    /// May keep serving clients pinned to it: draining nodes do until their deadline.
    pub fn takes_pinned(&self) -> bool {
        self.health() == Health::Up
            && match self.admin() {
                AdminState::Ready => true,
                AdminState::Maint => false,
                AdminState::Drain => self.now_ms() < self.drain_until_ms.load(Ordering::Relaxed),
            }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests sent in total.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests a hint pinned to this node (affinity outcome `hit`).
    pub fn sticky_hits(&self) -> u64 {
        self.sticky_hits.load(Ordering::Relaxed)
    }

    /// Counts a request that a hint pinned here.
    pub fn count_sticky_hit(&self) {
        self.sticky_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Passive failures in total.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The connection pool for this node at `authority`: the existing one while the address is
    /// unchanged (so reloads keep warm connections), a fresh one when it changed (so nothing is ever sent
    /// to an old address). Called once per node per snapshot, never per request.
    pub fn conn_pool(&self, authority: &Authority) -> Arc<ConnPool> {
        let mut slot = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(pool) if pool.authority() == authority => Arc::clone(pool),
            _ => {
                let pool = Arc::new(ConnPool::new(authority.clone()));
                *slot = Some(Arc::clone(&pool));
                pool
            }
        }
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }
}

/// Decrements the in-flight count on drop (also when a client goes away mid-response).
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Node state by server ID, surviving reloads.
#[derive(Debug, Default)]
pub struct StateRegistry(Mutex<HashMap<BackendId, Arc<BackendState>>>);

impl StateRegistry {
    /// The state of `id`, created on first use.
    pub fn get(&self, id: &BackendId) -> Arc<BackendState> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(id.clone()).or_insert_with(|| Arc::new(BackendState::new(id.clone()))))
    }
}

/// One node as a request sees it.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Server ID.
    pub id: BackendId,
    /// Active or passive.
    pub role: Role,
    /// `http`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
    /// Live state.
    pub state: Arc<BackendState>,
    /// `Set-Cookie` pinning a client to this node, rendered once per snapshot.
    pub set_cookie: HeaderValue,
    /// The same with `Secure`, for TLS listeners.
    pub set_cookie_secure: HeaderValue,
    /// Traffic metrics of this backend in this pool.
    pub metrics: Arc<BackendMetrics>,
    /// Keep-alive connections to `authority` (shared with other snapshots while the address holds).
    pub conns: Arc<ConnPool>,
}

/// A pool of nodes.
#[derive(Debug)]
pub struct Pool {
    /// Name routes refer to.
    pub name: String,
    /// How new clients are spread.
    pub balance: Balance,
    /// Cookie and hint policy.
    pub affinity: Affinity,
    /// Health check settings.
    pub health: HealthConfig,
    /// Nodes in file order.
    pub backends: Vec<Backend>,
    /// Where the session token (which may carry a node hint) is read, parsed once per snapshot.
    pub session_token: TokenPlaces,
    /// Traffic metrics of this pool.
    pub metrics: PoolMetrics,
    rr: AtomicUsize,
}

impl Pool {
    /// Index of the node with this server ID.
    pub fn index_of(&self, id: &[u8]) -> Option<usize> {
        self.backends.iter().position(|b| b.id.as_str().as_bytes() == id)
    }

    /// Next round-robin ticket.
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
        let session_cookie =
            config.auth.as_ref().map_or("iPlanetDirectoryPro", |a| a.session_cookie.as_str());
        // Cookie names were validated as RFC 9110 tokens, which are valid header names.
        let session_token = TokenPlaces::named(session_cookie)
            .or_else(|| TokenPlaces::named("iPlanetDirectoryPro"))
            .expect("the default session cookie name is a valid header name");
        let pools = config
            .pools
            .iter()
            .map(|p| Pool {
                name: p.name.clone(),
                balance: p.balance,
                affinity: p.affinity.clone(),
                health: p.health.clone(),
                session_token: session_token.clone(),
                metrics: metrics.pool(&p.name),
                rr: AtomicUsize::new(0),
                backends: p
                    .backends
                    .iter()
                    .map(|b| {
                        let state = registry.get(&b.id);
                        Backend {
                            id: b.id.clone(),
                            role: b.role,
                            scheme: b.scheme.clone(),
                            authority: b.authority.clone(),
                            conns: state.conn_pool(&b.authority),
                            state,
                            set_cookie: affinity::render_cookie(&p.affinity, &b.id, false),
                            set_cookie_secure: affinity::render_cookie(&p.affinity, &b.id, true),
                            metrics: Arc::new(metrics.backend(&p.name, b.id.as_str())),
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
