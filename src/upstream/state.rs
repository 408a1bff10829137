//! Node state that survives reloads: health, operator state, in-flight and totals, and the node's
//! keep-alive connections.
//!
//! Each [`BackendState`] lives behind an `Arc` keyed by server ID in the [`StateRegistry`], so a reload
//! that keeps an ID keeps its state and its in-flight counts. A node starts in its configured
//! `admin_state` the first time its ID is seen; the state file ([`super::state_file`]) may then restore
//! an operator's earlier choice. The request path reads only atomics.
//!
//! Times are kept as milliseconds after the state's `epoch` (tokio's clock, so paused-time tests control
//! them) in atomics; a [`Clock`] read at the same moment turns them into Unix timestamps for `/metrics`.
//! "State" for `state_since` is what HAProxy's `lastchg` tracks: health (up/down) and the operator
//! state together; a change of either starts a new one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::Authority;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::conns::Conns;
use super::health::{Health, HealthInfo, NodeHealth};
use super::slots::{QueueTimeout, Slot, Slots};
use super::stream::{TlsTarget, Traffic};
use crate::am::time::Clock;
pub use crate::config::AdminState;
use crate::config::{BackendId, HealthConfig};

/// Live state of one node, shared by every snapshot that contains its ID.
#[derive(Debug)]
pub struct BackendState {
    /// Server ID, the key under which this state survives reloads.
    pub id: BackendId,
    health: NodeHealth,
    /// Active checks stopped by the operator (HAProxy's `disable health`): the node then counts as up.
    checks_disabled: AtomicBool,
    admin: AtomicU8,
    /// Milliseconds after `epoch` when a drain stops keeping pinned clients; `u64::MAX` = never.
    drain_until_ms: AtomicU64,
    /// Milliseconds after `epoch` when the node last came back (health up, or maint → ready), for
    /// `slowstart`; `u64::MAX` = never.
    returned_ms: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    sticky_hits: AtomicU64,
    failures: AtomicU64,
    /// Milliseconds after `epoch`, plus one, when the last request began (`begin`); 0 = never.
    last_request_ms: AtomicU64,
    /// Milliseconds after `epoch` when health or the operator state last changed (0: since first seen).
    state_since_ms: AtomicU64,
    /// Bytes to and from the node, counted by its connections.
    traffic: Arc<Traffic>,
    epoch: Instant,
    /// The wall clock, following tokio's from `epoch` on.
    clock: Clock,
    /// Keep-alive connections, for the address of the newest snapshot that built this node.
    conns: Mutex<Option<Arc<Conns>>>,
    /// `maxconn` slots and queue, resized by each snapshot that builds this node.
    pub slots: Arc<Slots>,
}

impl BackendState {
    fn new(id: BackendId, admin: AdminState) -> Self {
        Self {
            id,
            health: NodeHealth::default(),
            checks_disabled: AtomicBool::new(false),
            admin: AtomicU8::new(admin_code(admin)),
            drain_until_ms: AtomicU64::new(u64::MAX),
            returned_ms: AtomicU64::new(u64::MAX),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            sticky_hits: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_request_ms: AtomicU64::new(0),
            state_since_ms: AtomicU64::new(0),
            traffic: Arc::default(),
            epoch: Instant::now(),
            clock: Clock::new(),
            conns: Mutex::new(None),
            slots: Arc::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `change` and starts a new state when it changed the health.
    fn noting_health(&self, change: impl FnOnce()) {
        let was = self.health();
        change();
        if self.health() != was {
            self.state_since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Bytes to and from the node.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// When the last request to the node began, in milliseconds since the Unix epoch; `None` before
    /// the first.
    pub fn last_request_unix_ms(&self) -> Option<u64> {
        let at = self.last_request_ms.load(Ordering::Relaxed);
        (at != 0).then(|| self.unix_ms_after_epoch(at - 1))
    }

    /// Time since the last request began (HAProxy's `lastsess`): how an operator knows a drain is done.
    pub fn last_request_age(&self) -> Option<Duration> {
        let at = self.last_request_ms.load(Ordering::Relaxed);
        (at != 0).then(|| Duration::from_millis(self.now_ms().saturating_sub(at - 1)))
    }

    /// When the current state (health and operator state) began, in milliseconds since the Unix epoch:
    /// when the node was first seen if it never changed.
    pub fn state_since_unix_ms(&self) -> u64 {
        self.unix_ms_after_epoch(self.state_since_ms.load(Ordering::Relaxed))
    }

    /// `ms` after `epoch` on the wall clock, in milliseconds since the Unix epoch.
    fn unix_ms_after_epoch(&self, ms: u64) -> u64 {
        let unix = self.clock.unix_at(self.epoch + Duration::from_millis(ms));
        u64::try_from(unix.as_millis()).unwrap_or(u64::MAX)
    }

    /// Time in the current state (HAProxy's `lastchg`).
    pub fn time_in_state(&self) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(self.state_since_ms.load(Ordering::Relaxed)))
    }

    /// Current health: up while the operator has disabled the checks, as HAProxy's `disable health`
    /// (the operator vouches for the node, e.g. while its check endpoint is broken).
    pub fn health(&self) -> Health {
        if self.checks_disabled.load(Ordering::Relaxed) { Health::Up } else { self.health.get() }
    }

    /// Whether active checks run (`POST /backends/{id}/health/disable|enable`).
    pub fn health_checks_enabled(&self) -> bool {
        !self.checks_disabled.load(Ordering::Relaxed)
    }

    /// Stops or resumes the active checks; resuming starts from the health the checks last found.
    pub fn set_health_checks(&self, enabled: bool) {
        self.noting_health(|| self.checks_disabled.store(!enabled, Ordering::Relaxed));
        tracing::info!(backend = %self.id, enabled, "health checks changed");
    }

    /// A copy of the health details.
    pub fn health_info(&self) -> HealthInfo {
        self.health.info()
    }

    /// Feeds an active check result.
    pub fn record_check(&self, pass: bool, detail: String, rise: u32, fall: u32) {
        let was = self.health.get();
        self.noting_health(|| self.health.record_check(&self.id, pass, detail, rise, fall));
        if was == Health::Down && self.health.get() == Health::Up {
            self.returned_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Time since the node last came back into service, if it ever did (for `slowstart`).
    pub fn since_return(&self) -> Option<Duration> {
        let at = self.returned_ms.load(Ordering::Relaxed);
        (at != u64::MAX).then(|| Duration::from_millis(self.now_ms().saturating_sub(at)))
    }

    /// Records a failure seen on real traffic (connect refused or timed out): it counts as a failed
    /// check at once.
    pub fn record_passive_failure(&self, health: &HealthConfig, what: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.noting_health(|| self.health.record_failure(&self.id, health, what));
    }

    /// Records a success on real traffic: it ends an open failure streak (cheap when there is none).
    pub fn record_success(&self, health: &HealthConfig) {
        self.noting_health(|| self.health.record_success(&self.id, health));
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
        let was = self.admin.swap(admin_code(state), Ordering::Relaxed);
        if was != admin_code(state) {
            self.state_since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        if was == admin_code(AdminState::Maint) && state == AdminState::Ready {
            self.returned_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        // In the words of the admin API (`deadline_s`), and absent when there is none.
        match drain_deadline {
            Some(d) => {
                tracing::info!(backend = %self.id, state = state.as_str(), deadline_s = d.as_secs(), "admin state changed")
            }
            None => tracing::info!(backend = %self.id, state = state.as_str(), "admin state changed"),
        }
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

    /// The keep-alive connections of this node at `authority`: the existing set while the address is
    /// unchanged (so reloads keep warm connections), a fresh one when it changed (so nothing is ever sent
    /// to an old address). Called once per node per snapshot, never per request.
    pub fn conns(&self, authority: &Authority, tls: Option<TlsTarget>) -> Arc<Conns> {
        let mut slot = self.conns.lock();
        match &*slot {
            Some(conns) if conns.serves(authority, tls.as_ref()) => Arc::clone(conns),
            _ => {
                let conns = Arc::new(Conns::new(authority.clone(), tls, Arc::clone(&self.traffic)));
                *slot = Some(Arc::clone(&conns));
                conns
            }
        }
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.last_request_ms.store(self.now_ms().saturating_add(1), Ordering::Relaxed);
        InFlight(Arc::clone(self), None)
    }

    /// [`Self::begin`] once the node has a free `maxconn` slot, waiting in its queue for at most
    /// `queue_timeout`; the slot is held as long as the in-flight count (until the answer's body is
    /// relayed or the request is dropped), as HAProxy holds a server's connection slot.
    pub async fn admit(self: &Arc<Self>, queue_timeout: Duration) -> Result<InFlight, QueueTimeout> {
        let slot = self.slots.acquire(queue_timeout).await?;
        let mut guard = self.begin();
        guard.1 = slot;
        Ok(guard)
    }
}

/// The atomic's encoding of an operator state, read back by [`BackendState::admin`].
fn admin_code(state: AdminState) -> u8 {
    match state {
        AdminState::Ready => 0,
        AdminState::Drain => 1,
        AdminState::Maint => 2,
    }
}

/// Decrements the in-flight count on drop (also when a client goes away mid-response), and gives back
/// the node's `maxconn` slot when it took one.
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>, Option<Slot>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Node state by server ID, surviving reloads.
#[derive(Debug, Default)]
pub struct StateRegistry(Mutex<HashMap<BackendId, Arc<BackendState>>>);

impl StateRegistry {
    /// The state of `id`, created on first use in the operator state `initial` (the backend's
    /// configured `admin_state`): a node already known keeps the state it has, so a reload never undoes
    /// an operator's drain or maint.
    pub fn get(&self, id: &BackendId, initial: AdminState) -> Arc<BackendState> {
        let mut map = self.0.lock();
        let state = map.entry(id.clone()).or_insert_with(|| Arc::new(BackendState::new(id.clone(), initial)));
        Arc::clone(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn last_request_and_state_since_follow_the_node() {
        let registry = StateRegistry::default();
        let state = registry.get(&BackendId::new("01").expect("id"), AdminState::Ready);
        assert_eq!((state.last_request_unix_ms(), state.last_request_age()), (None, None));
        let first_seen = state.state_since_unix_ms();
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(state.begin());
        assert_eq!(state.last_request_unix_ms(), Some(first_seen + 5000));
        assert_eq!(state.time_in_state(), Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(state.last_request_age(), Some(Duration::from_secs(2)));
        state.set_admin(AdminState::Drain, None);
        assert_eq!(state.state_since_unix_ms(), first_seen + 7000);
        assert_eq!(state.time_in_state(), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(1)).await;
        state.set_admin(AdminState::Drain, None);
        assert_eq!(state.time_in_state(), Duration::from_secs(1), "the same state again is no change");
        state.record_check(false, "refused".into(), 1, 1);
        assert_eq!(state.state_since_unix_ms(), first_seen + 8000, "health down is a new state");
    }

    #[test]
    fn a_node_keeps_its_connections_until_its_address_changes() {
        let registry = StateRegistry::default();
        let id = BackendId::new("01").expect("id");
        let state = registry.get(&id, AdminState::Ready);
        let a: Authority = "127.0.0.1:8081".parse().expect("authority");
        let b: Authority = "127.0.0.1:8082".parse().expect("authority");
        let first = state.conns(&a, None);
        assert!(Arc::ptr_eq(&first, &registry.get(&id, AdminState::Ready).conns(&a, None)));
        let moved = state.conns(&b, None);
        assert!(!Arc::ptr_eq(&first, &moved));
        assert_eq!(moved.authority(), &b);
    }
}
