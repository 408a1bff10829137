//! One AM-compatible auth node: its identity, what it shares with the other nodes, its readiness and the
//! sweep that reclaims expired state. What it answers is in [`crate::auth::http`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

use crate::am::request::TokenPlaces;
use crate::am::time::Clock;
use crate::am::token::Keys;
use crate::auth::denylist::{Denylist, MemoryDenylist};
use crate::auth::lockout::LoginGuard;
use crate::auth::login::{AuthStats, LOG, Login};
use crate::auth::pending::JourneyStore;
use crate::auth::session::{SessionStore, StoreError};
use crate::config::{AuthConfig, BackendId, TrustedProxies};

/// An embedded, AM-compatible auth node.
///
/// Cheap to share behind an `Arc`: every method takes `&self`, and no lock is held across an `.await`.
pub struct AuthNode {
    pub(super) id: BackendId,
    pub(super) auth: Arc<AuthConfig>,
    pub(super) login: Login,
    pub(super) store: Arc<dyn SessionStore>,
    /// The one wall clock of the node, shared (it is `Copy`) with [`Login`].
    pub(super) clock: Clock,
    /// Where `/json/sessions` finds the session token: the `tokenId` query parameter, the header named
    /// like the session cookie, the cookie (AM's order).
    pub(super) token_places: TokenPlaces,
    /// Logged-out client-side sessions (`session_location = "client"`); see [`AuthNode::with_denylist`].
    pub(super) denylist: Arc<dyn Denylist>,
    /// `[proxy] trusted_proxies`, to find the client in `X-Forwarded-For` for the login's log lines.
    pub(super) trusted_proxies: TrustedProxies,
    ready: AtomicBool,
}

impl std::fmt::Debug for AuthNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthNode")
            .field("id", &self.id)
            .field("auth_sessions", &self.auth.auth_sessions)
            .finish_non_exhaustive()
    }
}

impl AuthNode {
    /// A node with server ID `id`.
    ///
    /// `store` and `journeys` decide what nodes share: give every node of a process the same ones for
    /// `sessions = "shared"` (like AM's CTS; a [`MemoryJourneys`](crate::auth::pending::MemoryJourneys)),
    /// each node its own for `"local"`, and every node the one [`RedisStore`](crate::auth::store::RedisStore)
    /// as both for `"redis"`. `journeys` keeps the journeys of `auth_sessions = "store"` and the spent
    /// steps of `"client"`. `keys` must be derived from the secret every node of the cluster shares, or
    /// nodes refuse each other's `authId`s as badly signed.
    pub fn new(
        id: BackendId,
        auth: Arc<AuthConfig>,
        keys: Keys,
        store: Arc<dyn SessionStore>,
        journeys: Arc<dyn JourneyStore>,
    ) -> Self {
        let clock = Clock::new();
        let token_places = TokenPlaces::configured(&auth.session_cookie);
        let login = Login::new(id.clone(), Arc::clone(&auth), keys, Arc::clone(&store), journeys, clock);
        let denylist = Arc::new(MemoryDenylist::new());
        AuthNode {
            id,
            auth,
            login,
            store,
            clock,
            token_places,
            denylist,
            trusted_proxies: TrustedProxies::default(),
            ready: AtomicBool::new(true),
        }
    }

    /// The node with `denylist` for logged-out client-side sessions instead of its own in-process one:
    /// share one the way `store` is shared (one per process for `sessions = "shared"`, the
    /// [`RedisStore`](crate::auth::store::RedisStore) for `"redis"`), or a logout on one node is not seen
    /// by the others.
    pub fn with_denylist(mut self, denylist: Arc<dyn Denylist>) -> Self {
        self.denylist = denylist;
        self
    }

    /// The node with `guard` (failure counts, locks, spent one-time codes) instead of one of its own:
    /// give every node that shares a session store the guard that goes with it.
    #[must_use]
    pub fn with_guard(mut self, guard: Arc<dyn LoginGuard>) -> Self {
        self.login.set_guard(guard);
        self
    }

    /// The node trusting `trusted` proxies' `X-Forwarded-For` entries when it names a login's client.
    #[must_use]
    pub fn with_trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted_proxies = trusted;
        self
    }

    /// The guard the node counts failures and spends codes in: the same `Arc` for every node sharing it.
    pub fn guard(&self) -> &Arc<dyn LoginGuard> {
        self.login.lockout().guard()
    }

    /// Ends `user`'s lockout on every node sharing this node's guard; true iff a lock was in force.
    ///
    /// # Errors
    /// The guard's store cannot be reached.
    pub async fn unlock(&self, user: &str) -> Result<bool, StoreError> {
        let unlocked = self.guard().unlock(user, Instant::now()).await?;
        tracing::info!(target: LOG, node = %self.id, user, unlocked, "account unlocked by the admin");
        Ok(unlocked)
    }

    /// The node's server ID.
    pub fn id(&self) -> &BackendId {
        &self.id
    }

    /// The node's counters.
    pub fn stats(&self) -> &AuthStats {
        self.login.stats()
    }

    /// The node's session store: the same `Arc` for every node that shares it.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// Sessions in the node's store (shared by all nodes with `sessions = "shared"`), expired ones that no
    /// read or [`sweep`](Self::sweep) has removed yet included; 0 with `sessions = "redis"`, whose
    /// sessions are not held in this process.
    pub fn live_sessions(&self) -> usize {
        self.store.len()
    }

    /// Logins this node holds in memory between steps (always 0 with `auth_sessions = "client"`; with
    /// `"store"`, those of the in-process journey store its process shares, 0 on Redis).
    pub fn pending_logins(&self) -> usize {
        self.login.pending()
    }

    /// Sets what `/json/health/ready` answers: 200 when true (the default), 503 when false. Lets the
    /// integrator take a node out of rotation (drain) while `/json/health/live` stays 200, as AM's
    /// readiness does.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `/json/health/ready` answers 200: not drained, and the session store reachable (a node
    /// that cannot create sessions should get no new logins).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.store.available()
    }

    /// Reclaims memory: removes expired logins in progress, expired spent `otk`s and expired sessions.
    ///
    /// Expiry never depends on it (every read checks the clock), so a few seconds between runs are fine.
    /// Run it periodically, e.g. every 10–60 s per node (shared `store`/`spent` are then swept by each node,
    /// which is harmless).
    pub async fn sweep(&self) {
        let now = Instant::now();
        let (logins, otks) = self.login.sweep(now).await;
        // A store that cannot be reached now is swept next time; its failure shows on readiness.
        let sessions = self.store.sweep(now).await.unwrap_or(0);
        let denied = self.denylist.sweep(now);
        if logins + otks + sessions + denied > 0 {
            tracing::debug!(target: LOG, node = %self.id, logins, otks, sessions, denied, "swept expired state");
        }
    }
}
