//! [`SessionAdmin`]: what an operator does with other people's sessions (AM's amadmin): list a user's
//! live sessions, end them all, end one by its handle.
//!
//! A listing names each session by its handle (`shandle:…`), which AM made for exactly this: it
//! identifies a session without granting it, so an operator's screen or log never holds a usable token.

use tokio::time::Instant;

use crate::am::token::node_hint;
use crate::auth::session::{MemoryStore, Session, StoreFuture};

/// One live session as an administrator sees it: never its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionListing {
    /// The session handle, the name to end it by.
    pub handle: String,
    /// Whose session it is.
    pub username: String,
    /// The realm the user authenticated in.
    pub realm: String,
    /// The server ID of the node that created it (the token's `S1`); empty if its token names none.
    pub node: String,
    /// When it was created.
    pub created: Instant,
    /// When it was last used (idle timer reset).
    pub last_access: Instant,
    /// When it ends if not used again (AM's `maxIdleExpirationTime`).
    pub idle_expiry: Instant,
    /// When it ends however much it is used (AM's `maxSessionExpirationTime`).
    pub max_expiry: Instant,
}

impl SessionListing {
    /// The listing of `session`, whose token names the node that minted it.
    pub fn of(session: &Session) -> Self {
        Self {
            handle: session.handle.clone(),
            username: session.username.clone(),
            realm: session.realm.clone(),
            node: node_hint(&session.token).unwrap_or_default(),
            created: session.created,
            last_access: session.last_access,
            idle_expiry: session.idle_expiry(),
            max_expiry: session.max_expiry(),
        }
    }
}

/// Administration of a [`SessionStore`](crate::auth::session::SessionStore), reached through
/// [`SessionStore::admin`](crate::auth::session::SessionStore::admin).
///
/// An ended session is gone from every node sharing the store at once: it no longer validates and no
/// longer counts against its user's quota. Expired sessions are never listed nor counted as ended.
pub trait SessionAdmin: Send + Sync {
    /// The live sessions of `username`, oldest first.
    fn list<'a>(&'a self, username: &'a str, now: Instant) -> StoreFuture<'a, Vec<SessionListing>>;

    /// Ends every session of `username`; how many of them were live.
    fn end_user<'a>(&'a self, username: &'a str, now: Instant) -> StoreFuture<'a, usize>;

    /// Ends the session named `handle`; whether a live one was ended.
    fn end_handle<'a>(&'a self, handle: &'a str, now: Instant) -> StoreFuture<'a, bool>;
}

/// The in-process store: one critical section per call, like every other operation on it.
impl SessionAdmin for MemoryStore {
    fn list<'a>(&'a self, username: &'a str, now: Instant) -> StoreFuture<'a, Vec<SessionListing>> {
        let inner = self.inner.lock();
        let tokens = inner.by_user.get(username).map(Vec::as_slice).unwrap_or_default();
        let listed = tokens
            .iter()
            .filter_map(|t| inner.by_token.get(t))
            .filter(|s| s.is_live(now))
            .map(SessionListing::of)
            .collect();
        Box::pin(std::future::ready(Ok(listed)))
    }

    fn end_user<'a>(&'a self, username: &'a str, now: Instant) -> StoreFuture<'a, usize> {
        let mut inner = self.inner.lock();
        let tokens = inner.by_user.remove(username).unwrap_or_default();
        let ended = tokens.iter().filter_map(|t| inner.by_token.remove(t)).filter(|s| s.is_live(now)).count();
        Box::pin(std::future::ready(Ok(ended)))
    }

    /// A scan of the store under its lock: the map is keyed by token, and ending a session by handle is
    /// an operator's action, rare enough not to warrant a second index that every login would pay for.
    fn end_handle<'a>(&'a self, handle: &'a str, now: Instant) -> StoreFuture<'a, bool> {
        let mut inner = self.inner.lock();
        let token = inner.by_token.iter().find(|(_, s)| s.handle == handle).map(|(t, _)| t.clone());
        let ended = token.and_then(|t| inner.unlink(&t)).is_some_and(|s| s.is_live(now));
        Box::pin(std::future::ready(Ok(ended)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::quota::{ExhaustionAction, Quota};
    use std::time::Duration;

    const IDLE: Duration = Duration::from_secs(30 * 60);
    const MAX: Duration = Duration::from_secs(120 * 60);

    fn three_sessions_of_demo(store: &MemoryStore, now: Instant) -> Vec<String> {
        let rng = ring::rand::SystemRandom::new();
        let tokens: Vec<String> =
            ["01", "02", "03"].iter().map(|n| crate::am::token::mint_token(&rng, n)).collect();
        for (i, t) in tokens.iter().enumerate() {
            let s = Session::new(t.clone(), format!("shandle:{i}"), "demo", "/", now, IDLE, MAX);
            store.create(s, None, now).unwrap();
        }
        store.create(Session::new("other", "shandle:o", "other", "/", now, IDLE, MAX), None, now).unwrap();
        tokens
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_names_handles_and_nodes_never_tokens() {
        let store = MemoryStore::new();
        let now = Instant::now();
        three_sessions_of_demo(&store, now);
        let listed = store.list("demo", now).await.unwrap();
        let names: Vec<(&str, &str)> = listed.iter().map(|l| (l.handle.as_str(), l.node.as_str())).collect();
        assert_eq!(names, [("shandle:0", "01"), ("shandle:1", "02"), ("shandle:2", "03")]);
        assert_eq!(listed[0].idle_expiry, now + IDLE);
        assert_eq!(listed[0].max_expiry, now + MAX);
        assert!(store.list("nobody", now).await.unwrap().is_empty());
        tokio::time::advance(IDLE).await;
        assert!(store.list("demo", Instant::now()).await.unwrap().is_empty(), "expired: not listed");
    }

    #[tokio::test(start_paused = true)]
    async fn ending_a_user_ends_only_their_sessions_and_frees_their_quota() {
        let store = MemoryStore::new();
        let now = Instant::now();
        let tokens = three_sessions_of_demo(&store, now);
        assert_eq!(store.end_user("demo", now).await.unwrap(), 3);
        assert!(tokens.iter().all(|t| store.get(t, now).is_none()));
        assert!(store.get("other", now).is_some());
        assert_eq!(store.end_user("demo", now).await.unwrap(), 0);
        let quota = Some(Quota { limit: 1, action: ExhaustionAction::DenyAccess });
        let again = Session::new("again", "shandle:a", "demo", "/", now, IDLE, MAX);
        assert!(store.create(again, quota, now).is_ok(), "ended sessions no longer count");
    }

    #[tokio::test(start_paused = true)]
    async fn ending_by_handle_ends_that_session_once() {
        let store = MemoryStore::new();
        let now = Instant::now();
        let tokens = three_sessions_of_demo(&store, now);
        assert!(store.end_handle("shandle:1", now).await.unwrap());
        assert!(!store.end_handle("shandle:1", now).await.unwrap());
        assert!(!store.end_handle("shandle:none", now).await.unwrap());
        let live: Vec<bool> = tokens.iter().map(|t| store.get(t, now).is_some()).collect();
        assert_eq!(live, [true, false, true]);
    }
}
