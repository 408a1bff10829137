//! `maxconn`: at most N requests in flight to one node, the others waiting in a FIFO queue for at most the
//! pool's `queue_timeout_ms`, as HAProxy's server `maxconn` with its backend queue and `timeout queue`.
//!
//! A node's [`Slots`] live in its [`super::BackendState`], so they survive reloads with the node's ID: a
//! reload that changes `maxconn` resizes the same semaphore, so requests already queued keep their place
//! and requests in flight keep counting. Growing adds permits at once; shrinking takes the free ones away
//! and, for the rest, keeps the next permits released until the new limit holds (a debt), so a shrink
//! never cuts off a request in flight. Removing `maxconn` lets every queued request through; setting it on
//! a node that had none starts counting with the next request (the ones in flight took no permit).
//!
//! The request path touches only atomics and the semaphore (tokio's is FIFO and fair): the lock is taken
//! by reloads only.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The connection slots and queue of one node.
#[derive(Debug, Default)]
pub struct Slots {
    /// `None` while the node has no `maxconn`.
    semaphore: ArcSwapOption<Semaphore>,
    /// Permits still to be taken away after a shrink, from the next ones released.
    debt: AtomicUsize,
    /// The limit the semaphore is sized for; written by reloads only.
    max: Mutex<Option<usize>>,
    queued: AtomicUsize,
    timeouts: AtomicU64,
}

/// A request waited `queue_timeout_ms` and no slot came free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueTimeout;

impl Slots {
    /// Applies the `maxconn` of a new snapshot (see the module docs for what happens to queued and
    /// in-flight requests).
    pub fn set_max(&self, max: Option<NonZeroU32>) {
        let new = max.map(|n| usize::try_from(n.get()).unwrap_or(Semaphore::MAX_PERMITS));
        let new = new.map(|n| n.min(Semaphore::MAX_PERMITS));
        let mut current = self.max.lock();
        match (*current, new, self.semaphore.load_full()) {
            (Some(old), Some(new), Some(semaphore)) => {
                if new > old {
                    let grow = new - old;
                    let paid = self.pay_debt(grow);
                    semaphore.add_permits(grow - paid);
                } else if new < old {
                    let shrink = old - new;
                    let taken = semaphore.forget_permits(shrink);
                    self.debt.fetch_add(shrink - taken, Ordering::Relaxed);
                }
            }
            (_, Some(new), _) => {
                self.debt.store(0, Ordering::Relaxed);
                self.semaphore.store(Some(Arc::new(Semaphore::new(new))));
            }
            (_, None, semaphore) => {
                self.semaphore.store(None);
                // Queued requests wake up with "closed" and go ahead without a limit.
                if let Some(semaphore) = semaphore {
                    semaphore.close();
                }
            }
        }
        *current = new;
    }

    /// Takes up to `n` off the debt, returning how much it took.
    fn pay_debt(&self, n: usize) -> usize {
        let before = self.debt.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| Some(d - d.min(n)));
        before.map_or(0, |d| d.min(n))
    }

    /// Whether a request would get a slot without waiting (always, without `maxconn`): new clients go
    /// to a node with room when there is one.
    pub fn has_room(&self) -> bool {
        self.semaphore.load().as_ref().is_none_or(|s| s.available_permits() > 0)
    }

    /// A slot, waiting in the queue for at most `timeout`; `None` inside the `Ok` when the node has no
    /// limit. Cancellation-safe: a request dropped while queued leaves the queue.
    pub async fn acquire(self: &Arc<Self>, timeout: Duration) -> Result<Option<Slot>, QueueTimeout> {
        let Some(semaphore) = self.semaphore.load_full() else { return Ok(None) };
        let slot = |permit| Some(Slot { permit: Some(permit), slots: Arc::clone(self) });
        if let Ok(permit) = Arc::clone(&semaphore).try_acquire_owned() {
            return Ok(slot(permit));
        }
        let _queued = Queued::enter(&self.queued);
        match tokio::time::timeout(timeout, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(slot(permit)),
            // A reload removed `maxconn` while this request waited.
            Ok(Err(_closed)) => Ok(None),
            Err(_elapsed) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(QueueTimeout)
            }
        }
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Requests that waited the whole queue timeout, in total.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }
}

/// Counts a request in the queue until dropped (served, timed out, or cancelled by a client gone).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One taken slot, given back on drop, on every path (answered, failed, client gone); after a shrink it
/// pays the debt instead.
#[derive(Debug)]
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else { return };
        let current = self.slots.semaphore.load();
        // A permit of a semaphore replaced since (maxconn removed and set again) owes nothing.
        let ours = current.as_ref().is_some_and(|s| Arc::ptr_eq(s, permit.semaphore()));
        if ours && self.slots.pay_debt(1) == 1 {
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn a_full_node_queues_and_times_out() {
        let slots = Arc::new(Slots::default());
        slots.set_max(limit(1));
        let held = slots.acquire(WAIT).await.unwrap();
        assert!(held.is_some() && !slots.has_room());
        assert_eq!(slots.acquire(Duration::from_millis(100)).await.unwrap_err(), QueueTimeout);
        assert_eq!((slots.timeouts(), slots.queued()), (1, 0));
        drop(held);
        assert!(slots.has_room());
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_slot_goes_to_the_queued_request() {
        let slots = Arc::new(Slots::default());
        slots.set_max(limit(1));
        let held = slots.acquire(WAIT).await.unwrap();
        let waiting = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.acquire(WAIT).await.map(|s| s.is_some()) }
        });
        tokio::task::yield_now().await;
        assert_eq!(slots.queued(), 1);
        drop(held);
        assert_eq!(waiting.await.unwrap(), Ok(true));
        assert_eq!(slots.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shrink_waits_for_requests_in_flight_and_a_grow_applies_at_once() {
        let slots = Arc::new(Slots::default());
        slots.set_max(limit(2));
        let (a, b) = (slots.acquire(WAIT).await.unwrap(), slots.acquire(WAIT).await.unwrap());
        slots.set_max(limit(1));
        drop(a);
        assert!(!slots.has_room(), "one still in flight fills the new limit of 1");
        drop(b);
        assert!(slots.has_room());
        let c = slots.acquire(WAIT).await.unwrap();
        assert!(!slots.has_room());
        slots.set_max(limit(3));
        assert!(slots.has_room());
        drop(c);
    }

    #[tokio::test(start_paused = true)]
    async fn removing_maxconn_lets_the_queue_through() {
        let slots = Arc::new(Slots::default());
        slots.set_max(limit(1));
        let _held = slots.acquire(WAIT).await.unwrap();
        let waiting = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.acquire(WAIT).await }
        });
        tokio::task::yield_now().await;
        slots.set_max(None);
        assert!(matches!(waiting.await.unwrap(), Ok(None)));
        assert!(slots.has_room());
    }
}
