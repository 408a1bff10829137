//! The connection limit of a listener (`[proxy] max_connections` on the public one), HAProxy's
//! `maxconn`: at the limit the accept loop stops accepting, so new connections wait in the kernel's
//! listen backlog (SYNs beyond it are retried by the client's TCP) and are served, in order, as open
//! ones close. Refusing them instead (accept and close) would turn every ordinary client that arrives
//! during a flood into an error; pausing keeps them queued, and the deadlines of the connections
//! holding the slots (header, body, send) bound how long that queue waits.
//!
//! The default is sized to the open-file limit so tether never meets `EMFILE` on accept: every client
//! connection may hold one node connection while a request is in flight, and a reserve covers the
//! rest (listeners, idle pooled node connections, Redis, the state file, health checks).

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

/// File descriptors kept out of the default for everything that is not a client connection or its node
/// connection.
const RESERVED_FDS: u64 = 128;

/// The default when the open-file limit cannot be read (`/proc/self/limits` is Linux's): the usual
/// soft limit of 1024, sized by the same rule.
const FALLBACK_NOFILE: u64 = 1024;

/// The open connections of one listener against its limit.
#[derive(Debug)]
pub(super) struct Slots {
    /// Open connections (the listener's `tether_open_connections` gauge).
    open: Gauge,
    /// The limit; `i64::MAX` for a listener without one.
    max: i64,
    /// Woken when a connection closes at the limit.
    freed: Notify,
}

impl Slots {
    /// The slots of a listener with `limit` connections at most (`None`: no limit).
    pub(super) fn new(open: Gauge, limit: Option<usize>) -> Arc<Self> {
        let max = limit.map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX));
        Arc::new(Self { open, max, freed: Notify::new() })
    }

    /// Every slot is taken.
    pub(super) fn full(&self) -> bool {
        self.open.get() >= self.max
    }

    /// Waits until a slot is free.
    pub(super) async fn free(&self) {
        loop {
            let mut freed = std::pin::pin!(self.freed.notified());
            // Registered before the check, so a close between the check and the wait still wakes it.
            freed.as_mut().enable();
            if !self.full() {
                return;
            }
            freed.await;
        }
    }

    /// Takes a slot for an accepted connection, until the returned guard drops.
    pub(super) fn take(self: &Arc<Self>) -> Open {
        self.open.inc();
        Open(Arc::clone(self))
    }
}

/// Counts a connection as open until its task ends, however it ends.
pub(super) struct Open(Arc<Slots>);

impl Drop for Open {
    fn drop(&mut self) {
        // Only a close at the limit can unblock the accept loop; below it nobody waits.
        if self.0.open.dec() >= self.0.max {
            self.0.freed.notify_one();
        }
    }
}

/// The default `max_connections`: `(soft open-file limit - RESERVED_FDS) / 2`, at least 1.
pub fn default_max_connections() -> usize {
    max_for(open_file_limit().unwrap_or(FALLBACK_NOFILE))
}

fn max_for(nofile: u64) -> usize {
    usize::try_from((nofile.saturating_sub(RESERVED_FDS) / 2).max(1)).unwrap_or(usize::MAX)
}

/// The soft `RLIMIT_NOFILE` of this process, read from `/proc/self/limits` (no `unsafe` needed);
/// `None` where that file does not exist; `u64::MAX` when it says "unlimited".
fn open_file_limit() -> Option<u64> {
    soft_nofile(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The soft limit on the `Max open files` line of a `/proc/PID/limits` text.
fn soft_nofile(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    match line["Max open files".len()..].split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_half_the_open_file_limit_past_the_reserve() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63459                63459                processes \n\
                      Max open files            20000                524288               files     \n";
        assert_eq!(soft_nofile(limits), Some(20_000));
        assert_eq!(
            soft_nofile("Max open files            unlimited            unlimited files"),
            Some(u64::MAX)
        );
        assert_eq!(soft_nofile("Max processes 1 1 processes"), None);
        assert_eq!(max_for(20_000), 9_936);
        assert_eq!(max_for(1024), 448);
        assert_eq!(max_for(100), 1);
        assert!(default_max_connections() >= 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_listener_waits_for_a_close() {
        let slots = Slots::new(Gauge::default(), Some(2));
        let (a, _b) = (slots.take(), slots.take());
        assert!(slots.full());
        let waiting = tokio::time::timeout(std::time::Duration::from_secs(1), slots.free()).await;
        assert!(waiting.is_err(), "no slot is free while both are open");
        let freed = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.free().await }
        });
        tokio::task::yield_now().await;
        drop(a);
        tokio::time::timeout(std::time::Duration::from_secs(1), freed).await.unwrap().unwrap();
        assert!(!slots.full());
        assert!(!Slots::new(Gauge::default(), None).full());
    }
}
