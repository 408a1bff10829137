//! The backend set: pools of nodes with their live state, built from a [`Config`] snapshot.
//!
//! Per-node state ([`BackendState`]: health, admin state, in-flight and totals) lives in atomics behind an
//! `Arc` that is keyed by server ID in a [`StateRegistry`], so a reload that keeps an ID keeps its state
//! and its in-flight counts. Everything a request needs is reachable from one [`Upstreams`] snapshot.

pub mod select;
pub mod sticky;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cookie::Cookie;
use http::HeaderValue;
use http::uri::{Authority, Scheme};
use tokio::time::Instant;

use crate::config::{Affinity, BackendId, Balance, Config, HealthConfig, Role};

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
#[derive(Debug)]
pub struct BackendState {
    /// Server ID.
    pub id: BackendId,
    health: AtomicU8,
    admin: AtomicU8,
    /// Until health checks run, a node that refused a connection is retried after this many ms of
    /// process time (a half-open window), so it is not lost for good.
    retry_at_ms: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    failures: AtomicU64,
    epoch: Instant,
}

impl BackendState {
    fn new(id: BackendId) -> Self {
        Self {
            id,
            health: AtomicU8::new(0),
            admin: AtomicU8::new(0),
            retry_at_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Current health. A node marked down by a refused connection counts as up again once its
    /// half-open window has passed, so the next request probes it.
    pub fn health(&self) -> Health {
        if self.health.load(Ordering::Relaxed) == 0
            || self.now_ms() >= self.retry_at_ms.load(Ordering::Relaxed)
        {
            Health::Up
        } else {
            Health::Down
        }
    }

    /// Records a passive failure (connect refused or timed out): down for `window`.
    pub fn mark_failed(&self, window: Duration) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        self.retry_at_ms.store(until, Ordering::Relaxed);
        if self.health.swap(1, Ordering::Relaxed) == 0 {
            tracing::warn!(backend = %self.id, "backend marked down: connection failed");
        }
    }

    /// Records a success: up.
    pub fn mark_ok(&self) {
        if self.health.swap(0, Ordering::Relaxed) == 1 {
            tracing::info!(backend = %self.id, "backend up again: request succeeded");
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

    /// Sets the operator state.
    pub fn set_admin(&self, state: AdminState) {
        self.admin.store(state as u8, Ordering::Relaxed);
    }

    /// May take new clients.
    pub fn takes_new(&self) -> bool {
        self.health() == Health::Up && self.admin() == AdminState::Ready
    }

    /// May keep serving clients pinned to it (draining nodes do).
    pub fn takes_pinned(&self) -> bool {
        self.health() == Health::Up && self.admin() != AdminState::Maint
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests sent in total.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Passive failures in total.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
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
        Arc::clone(
            map.entry(id.clone())
                .or_insert_with(|| Arc::new(BackendState::new(id.clone()))),
        )
    }
}

/// One node as a request sees it.
#[derive(Debug)]
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
    /// The session cookie whose token may carry a node hint.
    pub session_cookie: String,
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
    pub fn build(config: &Config, registry: &StateRegistry) -> Self {
        let session_cookie = config
            .auth
            .as_ref()
            .map_or_else(|| "iPlanetDirectoryPro".to_string(), |a| a.session_cookie.clone());
        let pools = config
            .pools
            .iter()
            .map(|p| Pool {
                name: p.name.clone(),
                balance: p.balance,
                affinity: p.affinity.clone(),
                health: p.health.clone(),
                session_cookie: session_cookie.clone(),
                rr: AtomicUsize::new(0),
                backends: p
                    .backends
                    .iter()
                    .map(|b| Backend {
                        id: b.id.clone(),
                        role: b.role,
                        scheme: b.scheme.clone(),
                        authority: b.authority.clone(),
                        state: registry.get(&b.id),
                        set_cookie: render_cookie(&p.affinity, &b.id, false),
                        set_cookie_secure: render_cookie(&p.affinity, &b.id, true),
                    })
                    .collect(),
            })
            .collect();
        Self { pools }
    }

    /// The node with this server ID, in any pool.
    pub fn backend(&self, id: &str) -> Option<&Backend> {
        self.pools
            .iter()
            .flat_map(|p| &p.backends)
            .find(|b| b.id.as_str() == id)
    }
}

/// `amlbcookie=01; Path=/; HttpOnly; SameSite=Lax` with the pool's attributes. No `Expires`: AM's own
/// `amlbcookie` is a session cookie too.
fn render_cookie(a: &Affinity, id: &BackendId, tls: bool) -> HeaderValue {
    let mut c = Cookie::build((a.cookie.as_str(), id.as_str()))
        .path(a.path.as_str())
        .http_only(a.http_only)
        .secure(a.secure || tls)
        .same_site(match a.same_site {
            crate::config::SameSite::Lax => cookie::SameSite::Lax,
            crate::config::SameSite::Strict => cookie::SameSite::Strict,
            crate::config::SameSite::None => cookie::SameSite::None,
        });
    if let Some(d) = &a.domain {
        c = c.domain(d.as_str());
    }
    // Names, IDs and attributes were validated as header-safe when the config loaded.
    HeaderValue::from_str(&c.build().to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}
