//! Server-side (authenticated) sessions and the store that holds them.
//!
//! A session lives until it has gone `max_idle` without use or reached `max_time` in all, whichever comes
//! first (AM's `iplanet-am-session-max-idle-time` / `max-session-time`). Expiry is decided from
//! the clock at every read rather than by a background reaper: an expired session is gone from every
//! answer the moment it expires, and never counts against a quota. AM counted sessions that were past
//! their idle timeout but not yet reaped, so users were refused logins by sessions that no longer
//! existed; [`SessionStore::sweep`] here only reclaims memory.
//!
//! The store's heart is [`SessionStore::create`]: the quota check and the insert are one atomic step per
//! login. In AM they were separate CTS operations, so concurrent logins of one user each saw room and
//! together overran the limit (OPENAM-5864, OPENAM-10332).
//!
//! Time is [`tokio::time::Instant`], passed in by the caller, so tests drive expiry with paused time.

pub mod admin;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::am::time::MAX_LIFETIME;
use crate::am::token::node_hint;

use crate::auth::quota::{Decision, LiveSession, Quota, plan_admission};
use crate::auth::store::StoreStats;

/// One authenticated session, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The `tokenId` / `iPlanetDirectoryPro` value, minted by the caller (see [`crate::am::token::mint_token`]).
    pub token: String,
    /// The session handle (`shandle:…`), which names the session without granting it.
    pub handle: String,
    /// The user the session belongs to; quotas count per username.
    pub username: String,
    /// The realm the user authenticated in, e.g. `/`.
    pub realm: String,
    /// When the session was created (monotonic, drives expiry).
    pub created: Instant,
    /// Last time the session was used in a way that resets the idle timer.
    pub last_access: Instant,
    /// Idle timeout: the session ends this long after `last_access`.
    pub max_idle: Duration,
    /// Maximum lifetime: the session ends this long after `created`, however active.
    pub max_time: Duration,
}

impl Session {
    /// A fresh session created (and last accessed) at `now`. Reported wall-clock times come from the node's
    /// [`Clock`](crate::am::time::Clock), which maps these instants, so a session carries none of its own.
    pub fn new(
        token: impl Into<String>,
        handle: impl Into<String>,
        username: impl Into<String>,
        realm: impl Into<String>,
        now: Instant,
        max_idle: Duration,
        max_time: Duration,
    ) -> Self {
        Session {
            token: token.into(),
            handle: handle.into(),
            username: username.into(),
            realm: realm.into(),
            created: now,
            last_access: now,
            max_idle,
            max_time,
        }
    }

    /// When the session ends if it is not used again (AM's `maxIdleExpirationTime`).
    pub fn idle_expiry(&self) -> Instant {
        self.last_access + self.max_idle.min(MAX_LIFETIME)
    }

    /// When the session ends however much it is used (AM's `maxSessionExpirationTime`).
    pub fn max_expiry(&self) -> Instant {
        self.created + self.max_time.min(MAX_LIFETIME)
    }

    /// When the session ends: the earlier of the idle and the maximum expiry.
    pub fn expires_at(&self) -> Instant {
        self.idle_expiry().min(self.max_expiry())
    }

    /// Whether the session still exists at `now`; at its expiry instant it is already gone.
    pub fn is_live(&self, now: Instant) -> bool {
        now < self.expires_at()
    }

    /// How long the session has left at `now` (zero once expired).
    pub fn time_left(&self, now: Instant) -> Duration {
        self.expires_at().saturating_duration_since(now)
    }

    fn planner_view(&self) -> LiveSession {
        LiveSession { created: self.created, expires_at: self.expires_at() }
    }
}

/// A successful [`SessionStore::create`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Created {
    /// Tokens of the user's live sessions the quota action ended to make room, in the order chosen.
    /// Sessions that had merely expired are not listed: they were already gone.
    pub evicted: Vec<String>,
}

/// The user holds the maximum number of live sessions and the action is `DENY_ACCESS`.
///
/// Displays as AM's own message, which the node sends in the 401 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Maximum Sessions Limit Reached.")]
pub struct QuotaExceeded;

/// Why a store operation failed; the request may succeed later, so the node answers 503 with
/// `Retry-After` (never `{"valid":false}`, never 500), and never falls back to local memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused the operation (connection refused, reset, `OOM`).
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer within the per-operation deadline (`[auth.store] timeout_ms`).
    #[error("session store did not answer within {0:?}")]
    Timeout(Duration),
}

impl StoreError {
    /// Whether the same operation may succeed later: always, since the store may come back.
    pub fn retryable(&self) -> bool {
        true
    }
}

/// What a [`SessionStore`] operation returns: boxed so the trait stays usable as `Arc<dyn SessionStore>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where authenticated sessions live, shared by every auth node that serves the same users.
///
/// Every method takes `now` from the caller, and treats a session whose [`Session::expires_at`] is not
/// after `now` as absent: it is never returned, never counted, and removed lazily when met. A networked
/// store decides expiry on its own clock instead (one clock per user, whichever node asks).
///
/// # Atomicity
///
/// [`create`](SessionStore::create) is the one operation per login, and must be atomic per user: dropping
/// the user's expired sessions, planning with `plan_admission`, removing the evicted sessions and
/// inserting the new one happen with no other create, remove or read of that user in between. That is
/// what rules out AM's quota race (OPENAM-5864, OPENAM-10332), where the check and the write were separate
/// steps: with it, no interleaving of concurrent logins, from any threads or nodes sharing the store,
/// leaves more than `limit` live sessions, and no login is refused while fewer than `limit` are live.
///
/// [`MemoryStore`] gets this from a mutex. The Redis store gets the same guarantee by running the whole
/// create as one server-side Lua script, which Redis executes without interleaving other commands.
///
/// # Failure
///
/// Every operation may fail with a [`StoreError`] (a networked store that cannot be reached); the
/// in-process store never fails.
pub trait SessionStore: Send + Sync {
    /// Stores `session`, enforcing `quota` (if any) for its user atomically, as described on the trait.
    ///
    /// Expired sessions of the user are dropped first and neither count nor appear in
    /// `Created::evicted`. A session already stored under the same token is replaced.
    fn create(
        &self,
        session: Session,
        quota: Option<Quota>,
        now: Instant,
    ) -> StoreFuture<'_, Result<Created, QuotaExceeded>>;

    /// The live session for `token`, without resetting its idle timer (`validate`, `getSessionInfo`).
    fn get<'a>(&'a self, token: &'a str, now: Instant) -> StoreFuture<'a, Option<Session>>;

    /// The live session for `token` after resetting its idle timer to `now`
    /// (`getSessionInfoAndResetIdleTime`, `refresh`). The maximum lifetime is unaffected.
    fn touch<'a>(&'a self, token: &'a str, now: Instant) -> StoreFuture<'a, Option<Session>>;

    /// Ends the session for `token`. True iff a live session was removed; an expired or unknown token
    /// gives false, for which AM's `logout` answers `Token has expired`.
    fn remove<'a>(&'a self, token: &'a str, now: Instant) -> StoreFuture<'a, bool>;

    /// Removes every expired session and returns how many; run periodically to reclaim memory. A store
    /// whose keys expire by themselves answers 0.
    fn sweep(&self, now: Instant) -> StoreFuture<'_, usize>;

    /// How many live sessions `username` holds at `now`.
    fn live_sessions<'a>(&'a self, username: &'a str, now: Instant) -> StoreFuture<'a, usize>;

    /// How many sessions this process holds, expired ones not yet removed included; 0 for a store that
    /// keeps its sessions elsewhere (counting those would be a round trip).
    fn len(&self) -> usize;

    /// Whether no sessions are held at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the store answered its last operation or health check; `/json/health/ready` is 503 while
    /// it is false, so the proxy stops sending new logins here.
    fn available(&self) -> bool {
        true
    }

    /// Live sessions grouped by the node that created them (the `S1` of the token), counted in one
    /// pass, so a scrape asks once per store rather than once per node sharing it; `None` for a store
    /// that keeps its sessions elsewhere, which this process cannot count without a round trip per user.
    fn sessions_by_node(&self, _now: Instant) -> Option<HashMap<String, usize>> {
        None
    }

    /// The store's round-trip times and failures; `None` for the in-process store, which has neither.
    fn stats(&self) -> Option<&StoreStats> {
        None
    }

    /// Listing and ending other users' sessions; `None` for a store that cannot (sessions it does not
    /// hold, such as client-side ones).
    fn admin(&self) -> Option<&dyn admin::SessionAdmin> {
        None
    }
}

/// An in-process [`SessionStore`]: every node of one process shares it (`sessions = "shared"`), or each
/// node has its own (`"local"`).
///
/// A single mutex guards both maps, which keeps the token map and the per-user index consistent and makes
/// each [`SessionStore::create`] one critical section. Nothing awaits inside it, so a blocking mutex is right;
/// the work under it is a few map operations and a sort of one user's sessions.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every stored session by token.
    by_token: HashMap<String, Session>,
    /// Each user's tokens in insertion order (the planner's final tie-break). Always exactly the tokens
    /// in `by_token` with that username; users with no sessions have no entry.
    by_user: HashMap<String, Vec<String>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Inner {
    /// Removes `token` from both maps, returning the session if it was stored.
    fn unlink(&mut self, token: &str) -> Option<Session> {
        let session = self.by_token.remove(token)?;
        if let Some(tokens) = self.by_user.get_mut(&session.username) {
            tokens.retain(|t| t != token);
            if tokens.is_empty() {
                self.by_user.remove(&session.username);
            }
        }
        Some(session)
    }

    /// The live session for `token`, removing it if it has expired.
    fn live_mut(&mut self, token: &str, now: Instant) -> Option<&mut Session> {
        let live = self.by_token.get(token)?.is_live(now);
        if !live {
            self.unlink(token);
            return None;
        }
        self.by_token.get_mut(token)
    }
}

/// The in-process operations, synchronous: the [`SessionStore`] methods of the same names wrap them.
impl MemoryStore {
    /// [`SessionStore::create`], which never fails here.
    pub fn create(
        &self,
        session: Session,
        quota: Option<Quota>,
        now: Instant,
    ) -> Result<Created, QuotaExceeded> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.unlink(&session.token);

        // The user's sessions that still exist; the expired ones are dropped without being "evicted".
        // Without a quota nothing is counted, so the scan is skipped: creating stays O(1) for a user
        // with many sessions (the sweep and every lookup drop expired ones anyway).
        let mut tokens = inner.by_user.remove(&session.username).unwrap_or_default();
        tokens.retain(|token| {
            if quota.is_none() {
                return true;
            }
            let live = inner.by_token.get(token).is_some_and(|s| s.is_live(now));
            if !live {
                inner.by_token.remove(token);
            }
            live
        });

        let evict = match quota {
            None => Vec::new(),
            Some(quota) => {
                let live: Vec<LiveSession> =
                    tokens.iter().filter_map(|t| inner.by_token.get(t)).map(Session::planner_view).collect();
                match plan_admission(&live, quota) {
                    Decision::Admit { evict } => evict,
                    Decision::Deny => {
                        tracing::debug!(
                            user = %session.username,
                            limit = quota.limit,
                            "session quota reached, login denied"
                        );
                        if !tokens.is_empty() {
                            inner.by_user.insert(session.username, tokens);
                        }
                        return Err(QuotaExceeded);
                    }
                }
            }
        };

        let evicted: Vec<String> = evict.iter().map(|&i| tokens[i].clone()).collect();
        if !evicted.is_empty() {
            for token in &evicted {
                inner.by_token.remove(token);
            }
            tokens.retain(|t| inner.by_token.contains_key(t));
            tracing::debug!(
                user = %session.username,
                evicted = evicted.len(),
                action = quota.map(|q| q.action.as_str()),
                "session quota reached, ended existing sessions"
            );
        }

        tokens.push(session.token.clone());
        inner.by_user.insert(session.username.clone(), tokens);
        inner.by_token.insert(session.token.clone(), session);
        Ok(Created { evicted })
    }

    /// [`SessionStore::get`].
    pub fn get(&self, token: &str, now: Instant) -> Option<Session> {
        self.inner.lock().live_mut(token, now).cloned()
    }

    /// [`SessionStore::touch`].
    pub fn touch(&self, token: &str, now: Instant) -> Option<Session> {
        let mut inner = self.inner.lock();
        let session = inner.live_mut(token, now)?;
        // Callers read `now` before taking the lock, so a later touch may carry an earlier `now`.
        session.last_access = session.last_access.max(now);
        Some(session.clone())
    }

    /// [`SessionStore::remove`].
    pub fn remove(&self, token: &str, now: Instant) -> bool {
        self.inner.lock().unlink(token).is_some_and(|s| s.is_live(now))
    }

    /// [`SessionStore::sweep`].
    pub fn sweep(&self, now: Instant) -> usize {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let before = inner.by_token.len();
        inner.by_token.retain(|_, s| s.is_live(now));
        let by_token = &inner.by_token;
        inner.by_user.retain(|_, tokens| {
            tokens.retain(|t| by_token.contains_key(t));
            !tokens.is_empty()
        });
        before - inner.by_token.len()
    }

    /// [`SessionStore::live_sessions`].
    pub fn live_sessions(&self, username: &str, now: Instant) -> usize {
        let inner = self.inner.lock();
        inner.by_user.get(username).map_or(0, |tokens| {
            tokens.iter().filter(|t| inner.by_token.get(*t).is_some_and(|s| s.is_live(now))).count()
        })
    }

    /// How many sessions are stored, expired ones not yet removed included.
    pub fn len(&self) -> usize {
        self.inner.lock().by_token.len()
    }

    /// Whether no sessions are stored at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`SessionStore::sessions_by_node`]: one pass under the lock, expired sessions not counted. A
    /// token that names no node (not minted here) counts under `""`.
    pub fn sessions_by_node(&self, now: Instant) -> HashMap<String, usize> {
        let inner = self.inner.lock();
        let mut counts = HashMap::new();
        for (token, _) in inner.by_token.iter().filter(|(_, s)| s.is_live(now)) {
            *counts.entry(node_hint(token).unwrap_or_default()).or_insert(0) += 1;
        }
        counts
    }
}

/// Never fails and never waits: each future is ready at once.
impl SessionStore for MemoryStore {
    fn create(
        &self,
        session: Session,
        quota: Option<Quota>,
        now: Instant,
    ) -> StoreFuture<'_, Result<Created, QuotaExceeded>> {
        Box::pin(std::future::ready(Ok(MemoryStore::create(self, session, quota, now))))
    }

    fn get<'a>(&'a self, token: &'a str, now: Instant) -> StoreFuture<'a, Option<Session>> {
        Box::pin(std::future::ready(Ok(MemoryStore::get(self, token, now))))
    }

    fn touch<'a>(&'a self, token: &'a str, now: Instant) -> StoreFuture<'a, Option<Session>> {
        Box::pin(std::future::ready(Ok(MemoryStore::touch(self, token, now))))
    }

    fn remove<'a>(&'a self, token: &'a str, now: Instant) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(MemoryStore::remove(self, token, now))))
    }

    fn sweep(&self, now: Instant) -> StoreFuture<'_, usize> {
        Box::pin(std::future::ready(Ok(MemoryStore::sweep(self, now))))
    }

    fn live_sessions<'a>(&'a self, username: &'a str, now: Instant) -> StoreFuture<'a, usize> {
        Box::pin(std::future::ready(Ok(MemoryStore::live_sessions(self, username, now))))
    }

    fn len(&self) -> usize {
        MemoryStore::len(self)
    }

    fn sessions_by_node(&self, now: Instant) -> Option<HashMap<String, usize>> {
        Some(MemoryStore::sessions_by_node(self, now))
    }

    fn admin(&self) -> Option<&dyn admin::SessionAdmin> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::quota::ExhaustionAction;
    use std::sync::Arc;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::time::advance;

    const IDLE: Duration = Duration::from_secs(30 * 60);
    const MAX: Duration = Duration::from_secs(120 * 60);

    fn mins(n: u64) -> Duration {
        Duration::from_secs(n * 60)
    }

    fn session(token: &str, user: &str, now: Instant) -> Session {
        Session::new(token, format!("shandle:{token}"), user, "/", now, IDLE, MAX)
    }

    fn quota(limit: u32, action: ExhaustionAction) -> Option<Quota> {
        Some(Quota { limit, action })
    }

    fn live_tokens(store: &MemoryStore, tokens: &[&str], now: Instant) -> Vec<String> {
        tokens.iter().filter(|t| store.get(t, now).is_some()).map(|t| t.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_ends_after_max_idle_without_use() {
        let store = MemoryStore::new();
        store.create(session("a", "demo", Instant::now()), None, Instant::now()).unwrap();
        advance(IDLE - Duration::from_secs(1)).await;
        assert!(store.get("a", Instant::now()).is_some());
        advance(Duration::from_secs(1)).await;
        assert!(store.get("a", Instant::now()).is_none());
        assert_eq!(store.len(), 0, "an expired session met by a read is removed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_ends_at_max_time_however_often_it_is_used() {
        let store = MemoryStore::new();
        store.create(session("a", "demo", Instant::now()), None, Instant::now()).unwrap();
        for _ in 0..11 {
            advance(mins(10)).await;
            assert!(store.touch("a", Instant::now()).is_some());
        }
        advance(mins(10)).await; // 120 minutes in all
        assert!(store.touch("a", Instant::now()).is_none());
        assert!(store.get("a", Instant::now()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn touch_extends_the_idle_expiry_but_not_the_max_expiry() {
        let store = MemoryStore::new();
        let start = Instant::now();
        store.create(session("a", "demo", start), None, start).unwrap();
        advance(mins(20)).await;
        let touched = store.touch("a", Instant::now()).unwrap();
        assert_eq!(touched.last_access, Instant::now());
        assert_eq!(touched.idle_expiry(), Instant::now() + IDLE);
        assert_eq!(touched.max_expiry(), start + MAX);
        advance(mins(20)).await; // 40 minutes after creation, 20 after the touch
        assert!(store.get("a", Instant::now()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn get_does_not_reset_the_idle_timer() {
        let store = MemoryStore::new();
        store.create(session("a", "demo", Instant::now()), None, Instant::now()).unwrap();
        advance(mins(20)).await;
        assert!(store.get("a", Instant::now()).is_some());
        advance(mins(10)).await;
        assert!(store.get("a", Instant::now()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn time_left_counts_down_to_the_earlier_expiry() {
        let now = Instant::now();
        let s = session("a", "demo", now);
        assert_eq!(s.expires_at(), now + IDLE);
        assert_eq!(s.time_left(now + mins(10)), mins(20));
        assert_eq!(s.time_left(now + mins(31)), Duration::ZERO);
        assert!(!s.is_live(now + IDLE));
        let mut late = s.clone();
        late.last_access = now + mins(100);
        assert_eq!(late.expires_at(), now + MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn removing_a_live_session_succeeds_and_an_expired_one_reports_false() {
        let store = MemoryStore::new();
        let now = Instant::now();
        store.create(session("live", "demo", now), None, now).unwrap();
        store.create(session("old", "demo", now), None, now).unwrap();
        assert!(store.remove("live", now));
        assert!(!store.remove("live", now), "already gone");
        advance(IDLE).await;
        assert!(!store.remove("old", Instant::now()), "AM: Token has expired");
        assert_eq!(store.len(), 0);
        assert!(store.is_empty());
        assert!(!store.remove("never", Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_removes_only_expired_sessions_and_counts_them() {
        let store = MemoryStore::new();
        let start = Instant::now();
        store.create(session("a", "demo", start), None, start).unwrap();
        store.create(session("b", "other", start), None, start).unwrap();
        advance(mins(20)).await;
        store.create(session("c", "demo", Instant::now()), None, Instant::now()).unwrap();
        advance(mins(10)).await;
        assert_eq!(store.len(), 3, "nothing is removed until met or swept");
        assert_eq!(store.sweep(Instant::now()), 2);
        assert_eq!(store.len(), 1);
        assert_eq!(store.live_sessions("demo", Instant::now()), 1);
        assert_eq!(store.live_sessions("other", Instant::now()), 0);
        assert_eq!(store.sweep(Instant::now()), 0);
    }

    /// Creates `a`, `b`, `c` for one user a minute apart, then touches `a` so that `b` has least time left.
    async fn three_sessions(store: &MemoryStore, q: Option<Quota>) {
        for token in ["a", "b", "c"] {
            let created = store.create(session(token, "demo", Instant::now()), q, Instant::now()).unwrap();
            assert!(created.evicted.is_empty());
            advance(mins(1)).await;
        }
        store.touch("a", Instant::now()).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn quota_deny_access_refuses_the_fourth_login_and_keeps_the_three() {
        let store = MemoryStore::new();
        let q = quota(3, ExhaustionAction::DenyAccess);
        three_sessions(&store, q).await;
        let err = store.create(session("d", "demo", Instant::now()), q, Instant::now()).unwrap_err();
        assert_eq!(err.to_string(), "Maximum Sessions Limit Reached.");
        assert_eq!(live_tokens(&store, &["a", "b", "c", "d"], Instant::now()), ["a", "b", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn quota_destroy_next_expiring_ends_the_session_with_least_time_left() {
        let store = MemoryStore::new();
        let q = quota(3, ExhaustionAction::DestroyNextExpiring);
        three_sessions(&store, q).await;
        let created = store.create(session("d", "demo", Instant::now()), q, Instant::now()).unwrap();
        assert_eq!(created.evicted, ["b"]);
        assert_eq!(live_tokens(&store, &["a", "b", "c", "d"], Instant::now()), ["a", "c", "d"]);
    }

    #[tokio::test(start_paused = true)]
    async fn quota_destroy_oldest_session_ends_the_session_created_first() {
        let store = MemoryStore::new();
        let q = quota(3, ExhaustionAction::DestroyOldestSession);
        three_sessions(&store, q).await;
        let created = store.create(session("d", "demo", Instant::now()), q, Instant::now()).unwrap();
        assert_eq!(created.evicted, ["a"]);
        assert_eq!(live_tokens(&store, &["a", "b", "c", "d"], Instant::now()), ["b", "c", "d"]);
    }

    #[tokio::test(start_paused = true)]
    async fn quota_destroy_old_sessions_leaves_only_the_new_login() {
        let store = MemoryStore::new();
        let q = quota(3, ExhaustionAction::DestroyOldSessions);
        three_sessions(&store, q).await;
        let created = store.create(session("d", "demo", Instant::now()), q, Instant::now()).unwrap();
        assert_eq!(created.evicted, ["a", "b", "c"]);
        assert_eq!(live_tokens(&store, &["a", "b", "c", "d"], Instant::now()), ["d"]);
        assert_eq!(store.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn quota_counts_each_user_separately() {
        let store = MemoryStore::new();
        let q = quota(1, ExhaustionAction::DenyAccess);
        store.create(session("a", "demo", Instant::now()), q, Instant::now()).unwrap();
        store.create(session("b", "other", Instant::now()), q, Instant::now()).unwrap();
        assert!(store.create(session("c", "demo", Instant::now()), q, Instant::now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_sessions_never_count_and_are_not_reported_as_evicted() {
        let store = MemoryStore::new();
        let q = quota(1, ExhaustionAction::DenyAccess);
        store.create(session("a", "demo", Instant::now()), q, Instant::now()).unwrap();
        assert_eq!(store.create(session("b", "demo", Instant::now()), q, Instant::now()), Err(QuotaExceeded));
        advance(IDLE).await;
        let created = store.create(session("c", "demo", Instant::now()), q, Instant::now()).unwrap();
        assert!(created.evicted.is_empty());
        assert_eq!(store.len(), 1, "the expired session was dropped, not kept");

        // With a destroy action too: the expired session is not "evicted" to make room.
        let q = quota(1, ExhaustionAction::DestroyOldSessions);
        advance(IDLE).await;
        let created = store.create(session("d", "demo", Instant::now()), q, Instant::now()).unwrap();
        assert!(created.evicted.is_empty());
        assert_eq!(live_tokens(&store, &["c", "d"], Instant::now()), ["d"]);
    }

    #[tokio::test(start_paused = true)]
    async fn creating_under_an_existing_token_replaces_the_session() {
        let store = MemoryStore::new();
        let q = quota(1, ExhaustionAction::DenyAccess);
        store.create(session("a", "demo", Instant::now()), q, Instant::now()).unwrap();
        store.create(session("a", "demo", Instant::now()), q, Instant::now()).unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(store.live_sessions("demo", Instant::now()), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn live_sessions_are_grouped_by_the_node_that_minted_their_token() {
        let rng = ring::rand::SystemRandom::new();
        let store = MemoryStore::new();
        let mint = |node| crate::am::token::mint_token(&rng, node);
        let start = Instant::now();
        store.create(session(&mint("01"), "demo", start), None, start).unwrap();
        store.create(session(&mint("01"), "other", start), None, start).unwrap();
        store.create(session(&mint("02"), "demo", start), None, start).unwrap();
        store.create(session("not-an-am-token", "demo", start), None, start).unwrap();
        let counts = store.sessions_by_node(start);
        assert_eq!(counts, HashMap::from([("01".into(), 2), ("02".into(), 1), (String::new(), 1)]));

        advance(mins(20)).await;
        let late = mint("02");
        store.create(session(&late, "demo", Instant::now()), None, Instant::now()).unwrap();
        advance(mins(10)).await;
        let counts = store.sessions_by_node(Instant::now());
        assert_eq!(counts, HashMap::from([("02".into(), 1)]), "expired sessions are not counted");
        assert_eq!(store.len(), 5, "counting removes nothing");
    }

    /// 8 threads × 50 logins of one user against one store with limit 2, while a sampler checks that no
    /// moment observable through the API shows more than 2 live sessions. Returns (admitted, evicted).
    fn hammer(action: ExhaustionAction) -> (usize, usize) {
        const THREADS: usize = 8;
        const PER_THREAD: usize = 50;
        let store = Arc::new(MemoryStore::new());
        let q = quota(2, action);
        let done = Arc::new(AtomicBool::new(false));
        let admitted = Arc::new(AtomicUsize::new(0));
        let evicted = Arc::new(AtomicUsize::new(0));

        // Everyone starts together, so the sampler is running while the logins race.
        let start = Arc::new(Barrier::new(THREADS + 1));

        let sampler = {
            let (store, done, start) = (Arc::clone(&store), Arc::clone(&done), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let mut samples = 0usize;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let live = store.live_sessions("demo", Instant::now());
                    assert!(live <= 2, "{action}: {live} live sessions observed");
                    samples += 1;
                    if finished {
                        return samples;
                    }
                }
            })
        };
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, admitted, evicted) =
                    (Arc::clone(&store), Arc::clone(&admitted), Arc::clone(&evicted));
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait();
                    for i in 0..PER_THREAD {
                        let now = Instant::now();
                        if let Ok(created) = store.create(session(&format!("t{t}-{i}"), "demo", now), q, now)
                        {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            evicted.fetch_add(created.evicted.len(), Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        done.store(true, Ordering::Release);
        sampler.join().unwrap();
        assert_eq!(store.live_sessions("demo", Instant::now()), 2, "{action}");
        assert_eq!(store.len(), 2, "{action}");
        (admitted.load(Ordering::Relaxed), evicted.load(Ordering::Relaxed))
    }

    #[test]
    fn concurrent_logins_with_deny_access_admit_exactly_the_limit() {
        assert_eq!(hammer(ExhaustionAction::DenyAccess), (2, 0));
    }

    #[test]
    fn concurrent_logins_with_destroy_next_expiring_never_exceed_the_limit() {
        assert_eq!(hammer(ExhaustionAction::DestroyNextExpiring), (400, 398));
    }

    #[test]
    fn concurrent_logins_with_destroy_oldest_session_never_exceed_the_limit() {
        assert_eq!(hammer(ExhaustionAction::DestroyOldestSession), (400, 398));
    }

    #[test]
    fn concurrent_logins_with_destroy_old_sessions_never_exceed_the_limit() {
        assert_eq!(hammer(ExhaustionAction::DestroyOldSessions), (400, 398));
    }
}
