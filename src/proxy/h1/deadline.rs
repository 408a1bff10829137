//! The connection's one timer, re-armed lazily: a deadline later than the armed one is only recorded;
//! the timer fires at the old one, sees it is early and re-arms. Only an earlier deadline re-arms at
//! once. A request's deadlines (the head's, then the response's) usually move later, so the usual
//! request costs no timer work (HAProxy's task timers work the same way).

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// When the current phase of a connection (waiting for a head, or for an answer) times out.
pub(super) struct Deadline<'a> {
    sleep: Pin<&'a mut Sleep>,
    at: Instant,
}

impl<'a> Deadline<'a> {
    /// A deadline on the connection's timer, at the timer's own deadline.
    pub(super) fn new(sleep: Pin<&'a mut Sleep>) -> Self {
        Self { at: sleep.deadline(), sleep }
    }

    /// Moves the deadline; the timer is re-armed now only when it would fire too late.
    pub(super) fn set(&mut self, at: Instant) {
        self.at = at;
        if at < self.sleep.deadline() {
            self.sleep.as_mut().reset(at);
        }
    }

    /// Ready once the deadline has passed.
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.sleep.as_mut().poll(cx).is_ready() {
            if self.sleep.deadline() >= self.at {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(self.at);
        }
        Poll::Pending
    }
}

/// `fut`, unless the deadline passes first (`None`).
pub(super) async fn before<F: Future>(deadline: &mut Deadline<'_>, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if deadline.poll_expired(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_fires_late_and_an_earlier_one_early() {
        let sleep = pin!(tokio::time::sleep(Duration::from_secs(1)));
        let mut deadline = Deadline::new(sleep);
        let start = Instant::now();
        deadline.set(start + Duration::from_secs(3));
        assert_eq!(before(&mut deadline, std::future::pending::<()>()).await, None);
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        deadline.set(Instant::now() + Duration::from_millis(10));
        assert_eq!(before(&mut deadline, tokio::time::sleep(Duration::from_secs(1))).await, None);
        assert_eq!(Instant::now() - start, Duration::from_millis(3010));
        deadline.set(Instant::now() + Duration::from_secs(1));
        assert_eq!(before(&mut deadline, std::future::ready(7)).await, Some(7));
    }
}
