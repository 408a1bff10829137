//! The denylist of logged-out client-side sessions.
//!
//! A client-side session (`session_location = "client"`) is its own proof: any node with the shared
//! secret accepts the token until it expires, with no store to ask. Logout is the one thing that needs
//! state, as in AM (its client-side session blacklist in the CTS): the session is put on a denylist until
//! the session could have expired on its own, and every node that shares the list refuses it from then
//! on. Entries are keyed by the session handle, which every reissued token of one session carries, so a
//! logout also ends the tokens an idle reset handed out earlier.
//!
//! [`MemoryDenylist`] serves `sessions = "shared"` (one per process) and `"local"` (one per node); the
//! Redis one (`sessions = "redis"`) is [`RedisStore`](crate::auth::store::RedisStore)'s.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::am::time::later;
use crate::auth::session::StoreFuture;

/// Where logged-out client-side sessions are remembered until they would have expired.
///
/// Like [`SessionStore`](crate::auth::session::SessionStore), a networked list may fail with a
/// [`StoreError`](crate::auth::session::StoreError): the request then gets 503, never an answer that
/// might be wrong (a denied session reported live, or a live one reported gone).
pub trait Denylist: Send + Sync {
    /// Denies `handle` for `ttl` from `now`. True iff it was not denied already (the first logout).
    fn deny<'a>(&'a self, handle: &'a str, ttl: Duration, now: Instant) -> StoreFuture<'a, bool>;

    /// Whether `handle` is denied at `now`.
    fn is_denied<'a>(&'a self, handle: &'a str, now: Instant) -> StoreFuture<'a, bool>;

    /// Drops entries that have run out; returns how many. A list whose keys expire by themselves
    /// answers 0.
    fn sweep(&self, _now: Instant) -> usize {
        0
    }
}

/// An in-process [`Denylist`]: handle → when its entry runs out.
///
/// Bounded by the logouts of one maximum session time (an entry never outlives the session it denies)
/// and swept with the node's other state.
#[derive(Debug, Default)]
pub struct MemoryDenylist {
    until: Mutex<HashMap<String, Instant>>,
}

impl MemoryDenylist {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries are held, run-out ones not yet swept included.
    pub fn len(&self) -> usize {
        self.until.lock().len()
    }

    /// Whether no entries are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Denylist for MemoryDenylist {
    fn deny<'a>(&'a self, handle: &'a str, ttl: Duration, now: Instant) -> StoreFuture<'a, bool> {
        let mut until = self.until.lock();
        let fresh = until.get(handle).is_none_or(|end| *end <= now);
        if fresh {
            until.insert(handle.to_owned(), later(now, ttl));
        }
        Box::pin(std::future::ready(Ok(fresh)))
    }

    fn is_denied<'a>(&'a self, handle: &'a str, now: Instant) -> StoreFuture<'a, bool> {
        let denied = self.until.lock().get(handle).is_some_and(|end| now < *end);
        Box::pin(std::future::ready(Ok(denied)))
    }

    fn sweep(&self, now: Instant) -> usize {
        let mut until = self.until.lock();
        let before = until.len();
        until.retain(|_, end| now < *end);
        before - until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_entry_denies_until_its_ttl_then_is_swept() {
        let list = MemoryDenylist::new();
        let now = Instant::now();
        assert!(!list.is_denied("shandle:a", now).await.unwrap());
        assert!(list.deny("shandle:a", Duration::from_secs(60), now).await.unwrap());
        assert!(!list.deny("shandle:a", Duration::from_secs(60), now).await.unwrap(), "second logout");
        assert!(list.is_denied("shandle:a", now + Duration::from_secs(59)).await.unwrap());
        assert!(!list.is_denied("shandle:b", now).await.unwrap());
        let later = now + Duration::from_secs(60);
        assert!(!list.is_denied("shandle:a", later).await.unwrap());
        assert_eq!(list.sweep(later), 1);
        assert!(list.is_empty());
    }
}
