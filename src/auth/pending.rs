//! Where logins in progress are kept between steps, and the memory of answered steps.
//!
//! * [`PendingJourneys`] (`auth_sessions = "memory"`): the journeys one node holds, keyed by auth session
//!   ID, exactly as AM keeps chain auth sessions. Another node does not hold them and answers `Session has
//!   timed out` (AM error code 110, OPENAM-12675), which is why the proxy must keep a login on one node.
//! * [`SpentOtks`] (`auth_sessions = "client"`): the `otk`s of answered client-mode steps, whose journey
//!   travels sealed inside the `authId`, so a step is answered once.
//! * [`JourneyStore`]: where the nodes that share a session store keep journeys (`auth_sessions =
//!   "store"`, AM's server-side authentication sessions in the CTS) and spent `otk`s. [`MemoryJourneys`]
//!   is the in-process one, [`RedisStore`](crate::auth::store::RedisStore) the one shared across
//!   processes.
//!
//! The in-process ones are bounded maps whose entries leave at their deadline ([`tokio::time::Instant`],
//! passed in by the caller), pruned on every operation.

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::auth::journey::Journey;
use crate::auth::session::StoreFuture;

/// Most journeys one node holds in memory at once. AM bounds its in-memory auth sessions too; without a
/// bound, anyone could exhaust a node's memory by starting logins (the first step needs no credentials).
/// 100 000 journeys of well under 1 KiB each is far above any real login rate times the auth session
/// timeout, and small enough that a flood cannot take the process down: it gets 503 instead.
pub const MAX_PENDING_JOURNEYS: usize = 100_000;

/// Default bound of [`SpentOtks`]. Entries only arise from answered steps of genuine `authId`s and leave
/// at their `exp`, so the bound is about floods, for the same reason as [`MAX_PENDING_JOURNEYS`].
pub const MAX_SPENT_OTKS: usize = 1_000_000;

// ---------------------------------------------------------------------------------------------------------
// Expiring keys
// ---------------------------------------------------------------------------------------------------------

/// A bounded map of string keys with a deadline each, ordered by deadline so that expired entries are
/// dropped in O(log n) each, without scanning: pruning runs on every operation, so memory never holds
/// more than what is live plus nothing.
#[derive(Debug)]
struct Expiring<V> {
    map: HashMap<String, (Instant, V)>,
    by_deadline: BTreeSet<(Instant, String)>,
    cap: usize,
}

/// The map is at its bound with live entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Full;

impl<V> Expiring<V> {
    fn new(cap: usize) -> Self {
        Self { map: HashMap::new(), by_deadline: BTreeSet::new(), cap }
    }

    /// Drops every entry whose deadline is at or before `now` and returns how many.
    fn prune(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some((deadline, _)) = self.by_deadline.first()
            && *deadline <= now
        {
            if let Some((_, key)) = self.by_deadline.pop_first() {
                self.map.remove(&key);
                dropped += 1;
            }
        }
        dropped
    }

    /// Inserts `key` (replacing an entry of the same key) unless the map is full of live entries.
    fn insert(&mut self, key: String, deadline: Instant, value: V, now: Instant) -> Result<(), Full> {
        self.prune(now);
        self.remove(&key);
        if self.map.len() >= self.cap {
            return Err(Full);
        }
        self.by_deadline.insert((deadline, key.clone()));
        self.map.insert(key, (deadline, value));
        Ok(())
    }

    /// The live entry for `key`.
    fn get(&mut self, key: &str, now: Instant) -> Option<&(Instant, V)> {
        self.prune(now);
        self.map.get(key)
    }

    fn remove(&mut self, key: &str) -> Option<(Instant, V)> {
        let (deadline, value) = self.map.remove(key)?;
        self.by_deadline.remove(&(deadline, key.to_owned()));
        Some((deadline, value))
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Memory mode
// ---------------------------------------------------------------------------------------------------------

/// The journeys one node holds in memory (`auth_sessions = "memory"`), keyed by auth session ID.
///
/// Node-local by design, as AM's chain auth sessions: this is the state that makes stickiness *required*
/// (OPENAM-12675). A step is answered by [`take`](Self::take)ing the journey out, so a second,
/// concurrent or later answer of the same step finds nothing; a step that leads on is put back with the
/// next `otk`; a failed step is simply not put back, which ends the chain as AM does.
#[derive(Debug)]
pub struct PendingJourneys {
    inner: Mutex<Expiring<Pending>>,
}

#[derive(Debug)]
struct Pending {
    otk: String,
    journey: Journey,
}

/// The node holds [`MAX_PENDING_JOURNEYS`] live journeys already; the caller answers 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many authentications in progress on this node")]
pub struct TooManyJourneys;

impl PendingJourneys {
    /// An empty table holding at most `cap` journeys.
    pub fn new(cap: usize) -> Self {
        Self { inner: Mutex::new(Expiring::new(cap)) }
    }

    /// Keeps `journey` under `session_id` until `deadline`, answerable with `otk`.
    ///
    /// # Errors
    /// [`TooManyJourneys`] when the table is full of live journeys.
    pub fn insert(
        &self,
        session_id: &str,
        otk: &str,
        journey: Journey,
        deadline: Instant,
        now: Instant,
    ) -> Result<(), TooManyJourneys> {
        let pending = Pending { otk: otk.to_owned(), journey };
        self.inner
            .lock()
            .insert(session_id.to_owned(), deadline, pending, now)
            .map_err(|Full| TooManyJourneys)
    }

    /// Removes and returns the live journey `session_id` with its deadline, if `otk` is its current one.
    ///
    /// A stale `otk` (an earlier step's `authId`) leaves the journey alone: only its holder, who has the
    /// current `authId`, can end it, so a replayed old step cannot break a login in progress.
    pub fn take(&self, session_id: &str, otk: &str, now: Instant) -> Option<(Journey, Instant)> {
        let mut inner = self.inner.lock();
        let (_, pending) = inner.get(session_id, now)?;
        if pending.otk != otk {
            return None;
        }
        let (deadline, pending) = inner.remove(session_id)?;
        Some((pending.journey, deadline))
    }

    /// Drops expired journeys and returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        self.inner.lock().prune(now)
    }

    /// Journeys held, expired ones not yet dropped included.
    pub fn count(&self) -> usize {
        self.inner.lock().len()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Client mode
// ---------------------------------------------------------------------------------------------------------

/// The answered steps of client-mode journeys: each `otk` until its `authId` expires.
///
/// A client-mode `authId` is self-contained, so without this memory the same `authId` could be answered
/// again and again (a captured password step replayed, or a TOTP step retried against the same state).
/// AM solves it with allowlisting state in the CTS; in-process, [`MemoryJourneys`] keeps this set for
/// the nodes that share it, and with `sessions = "redis"` the [`JourneyStore`] on Redis keeps it for
/// every process.
///
/// Entries leave by themselves at their deadline (the `authId`'s `exp`: after it, the `authId` is refused
/// anyway), so the set stays as small as the number of steps answered within one auth session timeout.
#[derive(Debug)]
pub struct SpentOtks {
    inner: Mutex<Expiring<()>>,
}

/// What [`SpentOtks::spend`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// First answer of this step: go ahead.
    Fresh,
    /// The step was answered before: refuse as AM does (`Session has timed out`).
    Replayed,
    /// The set is full of live entries; the caller answers 503 rather than forget a spent key.
    Full,
}

impl Default for SpentOtks {
    fn default() -> Self {
        Self::new()
    }
}

impl SpentOtks {
    /// An empty set bounded by `MAX_SPENT_OTKS`.
    pub fn new() -> Self {
        Self::with_capacity(MAX_SPENT_OTKS)
    }

    /// An empty set holding at most `cap` live keys.
    pub fn with_capacity(cap: usize) -> Self {
        Self { inner: Mutex::new(Expiring::new(cap)) }
    }

    /// Records `otk` as answered until `until`, atomically with checking it was not answered before, so of
    /// two concurrent answers of one step exactly one is `Spend::Fresh`.
    pub fn spend(&self, otk: &str, until: Instant, now: Instant) -> Spend {
        let mut inner = self.inner.lock();
        if inner.get(otk, now).is_some() {
            return Spend::Replayed;
        }
        match inner.insert(otk.to_owned(), until, (), now) {
            Ok(()) => Spend::Fresh,
            Err(Full) => Spend::Full,
        }
    }

    /// Drops keys past their deadline and returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        self.inner.lock().prune(now)
    }

    /// Keys held, expired ones not yet dropped included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether none are held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// ---------------------------------------------------------------------------------------------------------
// Store mode, and spent steps across nodes
// ---------------------------------------------------------------------------------------------------------

/// What [`JourneyStore::take`] hands back: the journey and the deadline of its auth session.
pub type Taken = Option<(Journey, Instant)>;

/// Where journeys wait between steps when any node may continue them (`auth_sessions = "store"`), and
/// which client-mode steps were answered (`auth_sessions = "client"`), for every node that shares it.
///
/// This is AM's server-side authentication session state in the CTS, and its allowlisting of client-side
/// journeys: with a store every node sees, an `authId` is single use on all of them. Every operation may
/// fail with a [`StoreError`](crate::auth::session::StoreError) (a networked store that cannot be
/// reached); the node then answers 503 and never falls back to its own memory, where another node's
/// replay would go unseen.
pub trait JourneyStore: Send + Sync {
    /// Keeps `journey` under `session_id` until `until`, answerable with `otk` only, replacing what the
    /// auth session held before.
    ///
    /// # Errors
    /// `Ok(Err(TooManyJourneys))` when a bounded store is full of live journeys.
    fn keep<'a>(
        &'a self,
        session_id: &'a str,
        otk: &'a str,
        journey: Journey,
        until: Instant,
        now: Instant,
    ) -> StoreFuture<'a, Result<(), TooManyJourneys>>;

    /// Removes and returns the live journey `session_id` with its deadline if `otk` is its current one,
    /// in one atomic step: of two answers of one step (on any nodes) at most one gets it. A stale `otk`
    /// leaves the journey alone, as `PendingJourneys::take` does.
    fn take<'a>(&'a self, session_id: &'a str, otk: &'a str, now: Instant) -> StoreFuture<'a, Taken>;

    /// Records `otk` as answered until `until`, atomically with checking it was not answered before.
    fn spend<'a>(&'a self, otk: &'a str, until: Instant, now: Instant) -> StoreFuture<'a, Spend>;

    /// Drops expired journeys and spent `otk`s held in this process; returns how many of each.
    fn sweep(&self, now: Instant) -> StoreFuture<'_, (usize, usize)>;

    /// Journeys held in this process (0 for a store outside it).
    fn count(&self) -> usize;
}

/// The in-process [`JourneyStore`]: one per process for `sessions = "shared"` (every node of the process
/// continues every journey and sees every spent step), one per node for `sessions = "local"` (spent steps
/// only: a node-local journey store would be `auth_sessions = "memory"`).
///
/// Nodes in *different* processes do not see each other's: a client-mode step replayed to another
/// process within its `exp` would be accepted there. `sessions = "redis"` closes that gap.
#[derive(Debug)]
pub struct MemoryJourneys {
    journeys: PendingJourneys,
    spent: SpentOtks,
}

impl Default for MemoryJourneys {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryJourneys {
    /// An empty store bounded by `MAX_PENDING_JOURNEYS` and `MAX_SPENT_OTKS`.
    pub fn new() -> Self {
        Self::with_capacity(MAX_PENDING_JOURNEYS, MAX_SPENT_OTKS)
    }

    /// An empty store holding at most `journeys` journeys and `otks` spent `otk`s.
    pub fn with_capacity(journeys: usize, otks: usize) -> Self {
        Self { journeys: PendingJourneys::new(journeys), spent: SpentOtks::with_capacity(otks) }
    }
}

impl JourneyStore for MemoryJourneys {
    fn keep<'a>(
        &'a self,
        session_id: &'a str,
        otk: &'a str,
        journey: Journey,
        until: Instant,
        now: Instant,
    ) -> StoreFuture<'a, Result<(), TooManyJourneys>> {
        Box::pin(std::future::ready(Ok(self.journeys.insert(session_id, otk, journey, until, now))))
    }

    fn take<'a>(&'a self, session_id: &'a str, otk: &'a str, now: Instant) -> StoreFuture<'a, Taken> {
        Box::pin(std::future::ready(Ok(self.journeys.take(session_id, otk, now))))
    }

    fn spend<'a>(&'a self, otk: &'a str, until: Instant, now: Instant) -> StoreFuture<'a, Spend> {
        Box::pin(std::future::ready(Ok(self.spent.spend(otk, until, now))))
    }

    fn sweep(&self, now: Instant) -> StoreFuture<'_, (usize, usize)> {
        Box::pin(std::future::ready(Ok((self.journeys.sweep(now), self.spent.sweep(now)))))
    }

    fn count(&self) -> usize {
        self.journeys.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn journey() -> Journey {
        crate::auth::journey::sample()
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_journey_is_taken_once_and_only_with_its_current_otk() {
        let table = PendingJourneys::new(10);
        let now = Instant::now();
        let deadline = now + Duration::from_secs(180);
        table.insert("sid", "otk2", journey(), deadline, now).unwrap();
        assert!(table.take("sid", "otk1", now).is_none(), "stale otk");
        assert_eq!(table.count(), 1, "a stale otk leaves the journey alone");
        assert_eq!(table.take("sid", "otk2", now), Some((journey(), deadline)));
        assert!(table.take("sid", "otk2", now).is_none(), "second answer");
        assert_eq!(table.count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn pending_journeys_expire_and_are_bounded() {
        let table = PendingJourneys::new(2);
        let now = Instant::now();
        let soon = now + Duration::from_secs(10);
        table.insert("a", "o", journey(), soon, now).unwrap();
        table.insert("b", "o", journey(), soon, now).unwrap();
        assert_eq!(table.insert("c", "o", journey(), soon, now), Err(TooManyJourneys));
        assert!(table.take("a", "o", soon).is_none(), "expired at its deadline");
        assert_eq!(table.count(), 0, "expired entries are pruned on use");
        table.insert("c", "o", journey(), soon + Duration::from_secs(10), soon).unwrap();
        table.insert("d", "o", journey(), soon + Duration::from_secs(10), soon).unwrap();
        assert_eq!(table.sweep(soon + Duration::from_secs(10)), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_otk_is_spent_once_until_its_deadline() {
        let spent = SpentOtks::with_capacity(1);
        let now = Instant::now();
        let until = now + Duration::from_secs(5);
        assert_eq!(spent.spend("x", until, now), Spend::Fresh);
        assert_eq!(spent.spend("x", until, now), Spend::Replayed);
        assert_eq!(spent.spend("y", until, now), Spend::Full);
        assert_eq!(spent.spend("y", until + Duration::from_secs(5), until), Spend::Fresh);
        assert_eq!(spent.len(), 1);
        assert_eq!(spent.sweep(until + Duration::from_secs(5)), 1);
        assert!(spent.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_store_takes_a_journey_once_with_its_current_otk_and_keeps_the_deadline() {
        let store: &dyn JourneyStore = &MemoryJourneys::with_capacity(1, 1);
        let now = Instant::now();
        let deadline = now + Duration::from_secs(180);
        store.keep("sid", "otk1", journey(), deadline, now).await.unwrap().unwrap();
        assert_eq!(store.count(), 1);
        let later = now + Duration::from_secs(20);
        assert_eq!(store.take("sid", "otk0", later).await.unwrap(), None, "a stale otk");
        assert_eq!(store.take("sid", "otk1", later).await.unwrap(), Some((journey(), deadline)));
        assert_eq!(store.take("sid", "otk1", later).await.unwrap(), None, "taken once");
        // The next step goes back under the same auth session with a fresh otk and the same deadline.
        store.keep("sid", "otk2", journey(), deadline, later).await.unwrap().unwrap();
        assert_eq!(store.take("sid", "otk1", later).await.unwrap(), None, "the answered step stays spent");
        assert_eq!(store.take("sid", "otk2", deadline).await.unwrap(), None, "gone at its deadline");
        assert_eq!(store.count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_store_is_bounded_and_sweeps_both_tables() {
        let store = MemoryJourneys::with_capacity(1, 1);
        let now = Instant::now();
        let soon = now + Duration::from_secs(10);
        store.keep("a", "o", journey(), soon, now).await.unwrap().unwrap();
        assert_eq!(store.keep("b", "o", journey(), soon, now).await.unwrap(), Err(TooManyJourneys));
        assert_eq!(store.spend("x", soon, now).await.unwrap(), Spend::Fresh);
        assert_eq!(store.spend("x", soon, now).await.unwrap(), Spend::Replayed);
        assert_eq!(store.spend("y", soon, now).await.unwrap(), Spend::Full);
        assert_eq!(store.sweep(soon).await.unwrap(), (1, 1));
        assert_eq!(store.spend("x", soon + Duration::from_secs(10), soon).await.unwrap(), Spend::Fresh);
    }
}
