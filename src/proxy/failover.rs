//! The failover rule both request paths share: choose a node, and after a failed attempt record it
//! against the node (a passive health check) and decide whether one retry on another node is allowed.
//!
//! One retry at most, never on the node that failed, and only when [`ProxyError::retryable`] allows it for
//! the method (RFC 9110 §9.2.2) and the request can be sent again. When no other node is left, the client
//! learns what went wrong with the first one rather than "no backend".

use super::ProxyError;
use crate::upstream::affinity::Hints;
use crate::upstream::select::{self, Choice};
use crate::upstream::{Backend, InFlight, Pool};

/// What the proxy decided for one request, for logs and metrics.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Affinity outcome and the hint that decided, when a node was chosen.
    pub choice: Option<Choice>,
    /// Hints read.
    pub hints: Hints,
    /// Retries made.
    pub retries: u32,
}

/// The failover state of one request.
#[derive(Debug, Default)]
pub(super) struct Failover {
    /// The node that failed this request; a retry never goes back to it.
    exclude: Option<usize>,
    /// What went wrong on the first attempt, for the client when no other node is left.
    first_error: Option<ProxyError>,
}

impl Failover {
    /// The node for the next attempt, noted in `trace`.
    pub(super) fn choose(&mut self, pool: &Pool, trace: &mut Trace) -> Result<Choice, ProxyError> {
        match (select::choose(pool, &trace.hints, self.exclude), self.first_error.take()) {
            (Ok(choice), _) => {
                trace.choice = Some(choice);
                Ok(choice)
            }
            // No other node for the retry: the client learns what went wrong with the first one.
            (Err(_), Some(first)) => Err(first),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// Records a failed attempt on `choice` (a passive health check when the error blames the node) and
    /// allows one retry when the request can be sent again (`replayable`) and the error permits it for
    /// this method; otherwise gives the error back.
    pub(super) fn failed(
        &mut self,
        pool: &Pool,
        choice: Choice,
        err: ProxyError,
        replayable: bool,
        idempotent: bool,
        trace: &mut Trace,
    ) -> Result<(), ProxyError> {
        let backend = &pool.backends[choice.index];
        if err.blames_backend().is_some() {
            backend.state.record_passive_failure(&pool.health, &err.to_string());
        }
        if !(replayable && trace.retries == 0 && err.retryable(idempotent)) {
            return Err(err);
        }
        tracing::info!(backend = %backend.id, error = %err, "retrying on another node");
        self.exclude = Some(choice.index);
        trace.retries += 1;
        backend.metrics.retried();
        self.first_error = Some(err);
        Ok(())
    }
}

/// Counts the request in flight on `backend` once it has a `maxconn` slot, waiting in the node's queue
/// for at most the pool's `queue_timeout_ms`. A queue timeout is answered 503 and never retried: for a
/// pinned client no other node has its login state, and an unpinned one was sent here because every node
/// was full.
pub(super) async fn admit(pool: &Pool, backend: &Backend) -> Result<InFlight, ProxyError> {
    // Counted in `backend_queue_timeouts_total`; the answer is logged as every synthetic one is.
    backend.state.admit(pool.queue_timeout).await.map_err(|_| ProxyError::QueueTimeout {
        backend: backend.id.clone(),
        maxconn: backend.maxconn.map_or(0, std::num::NonZeroU32::get),
        timeout_ms: pool.queue_timeout.as_millis(),
    })
}

/// Records that `choice` answered: it ends an open failure streak, and counts a sticky hit.
pub(super) fn served(pool: &Pool, choice: Choice) {
    let state = &pool.backends[choice.index].state;
    state.record_success(&pool.health);
    if choice.outcome == select::Outcome::Hit {
        state.count_sticky_hit();
    }
}

/// Methods RFC 9110 §9.2.2 calls idempotent: safe to send again after a node failed mid-request.
pub(super) fn idempotent(method: &http::Method) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
