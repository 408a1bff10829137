//! [`StoreStats`]: how long each round trip to the session store took, and why the failed ones failed.
//!
//! The store records into plain `prometheus_client` handles at its one deadline, so an operation costs
//! an atomic add or two and no label lookup; the admin listener reads them at scrape time
//! (`tether_auth_store_duration_seconds{op}`, `tether_auth_store_errors_total{kind}`), as it reads the
//! auth nodes' other counters.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::auth::session::StoreError;

/// One kind of store operation, the `op` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// A login's session (token pointer, then the quota script).
    Create,
    /// `validate`, `getSessionInfo`.
    Get,
    /// `getSessionInfoAndResetIdleTime`, `refresh`.
    Touch,
    /// `logout`.
    Remove,
    /// One user's live sessions.
    Live,
    /// A journey kept between steps (`auth_sessions = "store"`).
    Keep,
    /// A journey taken to answer its step.
    Take,
    /// A client-mode step spent (`auth_sessions = "client"`).
    Spend,
    /// A client-side session put on the denylist (`logout` with `session_location = "client"`).
    Deny,
    /// A client-side session checked against the denylist.
    Denied,
    /// An administrator's listing of one user's sessions.
    List,
    /// An administrator's logout of a user's sessions or of one session by handle.
    End,
    /// A failed login step counted towards lockout.
    Failure,
    /// A passed login step checked against the lock (and, completing a login, the count cleared).
    Admit,
    /// An account unlocked by the admin.
    Unlock,
    /// A one-time code spent.
    Code,
}

impl StoreOp {
    /// Every operation, in label order.
    pub const ALL: [StoreOp; 16] = [
        Self::Create,
        Self::Get,
        Self::Touch,
        Self::Remove,
        Self::Live,
        Self::Keep,
        Self::Take,
        Self::Spend,
        Self::Deny,
        Self::Denied,
        Self::List,
        Self::End,
        Self::Failure,
        Self::Admit,
        Self::Unlock,
        Self::Code,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Get => "get",
            Self::Touch => "touch",
            Self::Remove => "remove",
            Self::Live => "live",
            Self::Keep => "keep",
            Self::Take => "take",
            Self::Spend => "spend",
            Self::Deny => "deny",
            Self::Denied => "denied",
            Self::List => "list",
            Self::End => "end",
            Self::Failure => "failure",
            Self::Admit => "admit",
            Self::Unlock => "unlock",
            Self::Code => "code",
        }
    }
}

/// The error kinds, the `kind` label: one per [`StoreError`] variant.
const KINDS: [&str; 2] = ["timeout", "unavailable"];

fn kind_index(e: &StoreError) -> usize {
    match e {
        StoreError::Timeout(_) => 0,
        StoreError::Unavailable(_) => 1,
    }
}

/// Round-trip times by operation and failures by kind, for one store.
#[derive(Debug, Clone)]
pub struct StoreStats {
    seconds: [Histogram; StoreOp::ALL.len()],
    errors: [Counter; KINDS.len()],
}

impl Default for StoreStats {
    fn default() -> Self {
        // 0.1 ms (a loopback Redis answers in tens of µs) doubling to ~3.3 s, past any sensible
        // `timeout_ms`: the timeouts land in the top buckets instead of +Inf alone.
        Self {
            seconds: std::array::from_fn(|_| Histogram::new(exponential_buckets(0.0001, 2.0, 16))),
            errors: Default::default(),
        }
    }
}

impl StoreStats {
    /// Records one operation that took `elapsed` and ended with `error`, if any. A failed operation is
    /// timed too: a timeout shows as a round trip as long as the deadline.
    pub fn record(&self, op: StoreOp, elapsed: Duration, error: Option<&StoreError>) {
        let i = StoreOp::ALL.iter().position(|o| *o == op).unwrap_or(0);
        self.seconds[i].observe(elapsed.as_secs_f64());
        if let Some(e) = error {
            self.errors[kind_index(e)].inc();
        }
    }

    /// The latency histogram of each operation, by label value.
    pub fn seconds(&self) -> impl Iterator<Item = (&'static str, &Histogram)> {
        StoreOp::ALL.iter().map(|o| o.as_str()).zip(&self.seconds)
    }

    /// The failures of each kind so far, by label value.
    pub fn errors(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KINDS.iter().copied().zip(self.errors.iter().map(Counter::get))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_a_label_and_every_op_a_histogram() {
        let stats = StoreStats::default();
        stats.record(StoreOp::Touch, Duration::from_millis(2), None);
        stats.record(StoreOp::Touch, Duration::from_millis(250), Some(&StoreError::Timeout(Duration::ZERO)));
        stats.record(StoreOp::Create, Duration::ZERO, Some(&StoreError::Unavailable("refused".into())));
        let errors: Vec<_> = stats.errors().collect();
        assert_eq!(errors, [("timeout", 1), ("unavailable", 1)]);
        let ops: Vec<_> = stats.seconds().map(|(op, _)| op).collect();
        assert_eq!(
            ops,
            [
                "create", "get", "touch", "remove", "live", "keep", "take", "spend", "deny", "denied",
                "list", "end", "failure", "admit", "unlock", "code"
            ]
        );
    }
}
