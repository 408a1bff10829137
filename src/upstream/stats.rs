//! The traffic metric handles of one snapshot: what a request adds to when it is answered.
//!
//! Label values (pool, backend, outcome, hint) are resolved into plain counters once per snapshot, when
//! [`super::Upstreams::build`] runs, so counting a request is a few atomic adds with no label hashing, no
//! allocation and no lock. The families behind the handles live in [`crate::metrics::Metrics`] and
//! outlast snapshots, so counts carry on across reloads.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::select::Outcome;
use crate::config::HintSource;
use crate::metrics::{Metrics, RequestCounters};

const OUTCOMES: [Outcome; 4] = [Outcome::Hit, Outcome::Miss, Outcome::Invalid, Outcome::Redispatch];
/// The hint labels: one per [`HintSource`], then `none`.
const HINTS: [&str; 4] = ["cookie", "auth_id", "session_token", "none"];

/// The handles of one backend in one pool: a node listed in two pools counts apart in each.
#[derive(Debug)]
pub struct BackendMetrics {
    requests: RequestCounters,
    latency: Histogram,
    retries: Counter,
}

impl BackendMetrics {
    /// Handles for `backend` in `pool`.
    pub fn new(metrics: &Metrics, pool: &str, backend: &str) -> Self {
        Self {
            requests: metrics.requests(pool, backend),
            latency: metrics.latency(pool, backend),
            retries: metrics.retries(pool, backend),
        }
    }

    /// Counts one answered request and its time to headers.
    pub fn observe(&self, method: &http::Method, status: http::StatusCode, seconds: f64) {
        self.requests.count(method, status);
        self.latency.observe(seconds);
    }

    /// Counts a retry caused by this backend.
    pub fn retried(&self) {
        self.retries.inc();
    }
}

/// The handles of one pool: its affinity decisions and the answers the proxy gave itself.
#[derive(Debug)]
pub struct PoolMetrics {
    affinity: [[Counter; HINTS.len()]; OUTCOMES.len()],
    /// Answers of the proxy itself for this pool (no backend available, strict refusal).
    unserved: RequestCounters,
}

impl PoolMetrics {
    /// Handles for `pool`.
    pub fn new(metrics: &Metrics, pool: &str) -> Self {
        Self {
            affinity: std::array::from_fn(|o| {
                std::array::from_fn(|h| metrics.affinity(pool, OUTCOMES[o].as_str(), HINTS[h]))
            }),
            unserved: metrics.requests(pool, "none"),
        }
    }

    /// Counts an affinity decision.
    pub fn affinity(&self, outcome: Outcome, hint: Option<HintSource>) {
        let o = OUTCOMES.iter().position(|x| *x == outcome).unwrap_or(0);
        let h = match hint {
            Some(HintSource::Cookie) => 0,
            Some(HintSource::AuthId) => 1,
            Some(HintSource::SessionToken) => 2,
            None => 3,
        };
        self.affinity[o][h].inc();
    }

    /// Counts an answer the proxy gave itself for this pool.
    pub fn unserved(&self, method: &http::Method, status: http::StatusCode) {
        self.unserved.count(method, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_labels_follow_the_config_names() {
        for (i, source) in
            [HintSource::Cookie, HintSource::AuthId, HintSource::SessionToken].iter().enumerate()
        {
            assert_eq!(HINTS[i], source.as_str());
        }
    }
}
