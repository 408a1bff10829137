//! The Prometheus registry and the traffic metric families (`GET /metrics` on the admin listener), aimed
//! at the questions of a sticky auth cluster: where are clients pinned, what failed over, which logins
//! broke.
//!
//! Two kinds of series:
//! - **Traffic** (requests, latency, affinity outcomes, retries, open connections) is counted on the
//!   request path. The families live here; label values are resolved once per config snapshot into
//!   plain handles (`upstream::stats`), so a request costs a few atomic adds: no label hashing, no
//!   allocation, no lock. Handles come from the same families across reloads, so counts carry on.
//! - **State** (health, admin state, transitions, checks, in-flight, auth-node counters and live
//!   sessions) already lives in atomics elsewhere; the admin listener reads it at scrape time instead of
//!   having it mirrored here.
//!
//! This module knows label *values* only as strings, so it depends on nothing else in the crate.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::io::ReadBuf;

/// The crate version, for `tether_build_info` and `/status.json`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit built (12 hex digits), or `unknown` when built outside a git checkout (`build.rs`).
pub const REVISION: &str = env!("TETHER_REVISION");

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

/// Method classes counted separately.
const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OTHER"];
/// Status classes: the first digit tells failures from answers and keeps the number of series fixed.
const STATUSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Bytes a stream moved, added where it is read or written: the client side (`server`) and each node's
/// connections (`upstream`) count alike. One atomic; `const` so a process-wide count can be a static.
#[derive(Debug, Default)]
pub struct ByteCount(AtomicU64);

impl ByteCount {
    /// Zero.
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// The bytes counted.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds what a read put in `buf` beyond its first `before` bytes.
    pub fn read(&self, before: usize, buf: &ReadBuf<'_>) {
        self.0.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
    }

    /// Adds what a write took, and hands its result on.
    pub fn written(&self, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = &result {
            self.0.fetch_add(*n as u64, Ordering::Relaxed);
        }
        result
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

fn method_class(m: &http::Method) -> usize {
    match *m {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::DELETE => 4,
        _ => 5,
    }
}

fn status_class(s: http::StatusCode) -> usize {
    usize::from(s.as_u16() / 100).saturating_sub(1).min(STATUSES.len() - 1)
}

/// The traffic metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    affinity: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    connections: Family<Labels, Gauge>,
    max_connections: Family<Labels, Gauge>,
    limit_reached: Family<Labels, Counter>,
    shutting_down: Gauge,
    accepted: Family<Labels, Counter>,
    tls_handshake_failures: Counter,
    cert_expiry: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tether");
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let affinity = Family::<Labels, Counter>::default();
        let retries = Family::<Labels, Counter>::default();
        let connections = Family::<Labels, Gauge>::default();
        registry.register(
            "requests",
            "Requests answered, by pool, backend (none: answered by the proxy), method and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the response headers, by pool and backend",
            latency.clone(),
        );
        registry.register(
            "affinity",
            "Affinity decisions by pool, outcome (hit|miss|invalid|redispatch) and the hint that decided",
            affinity.clone(),
        );
        registry.register("retries", "Requests sent again after this backend failed them", retries.clone());
        registry.register("open_connections", "Client connections open, by listener", connections.clone());
        let max_connections = Family::<Labels, Gauge>::default();
        registry.register(
            "max_connections",
            "Client connections a listener keeps open at most (max_connections)",
            max_connections.clone(),
        );
        let limit_reached = Family::<Labels, Counter>::default();
        registry.register(
            "connection_limit_reached",
            "Times a listener stopped accepting at max_connections, new connections waiting in the backlog",
            limit_reached.clone(),
        );
        let shutting_down = Gauge::default();
        registry.register(
            "shutting_down",
            "1 from SIGTERM/SIGINT on: /readyz answers 503 and the listeners close in turn",
            shutting_down.clone(),
        );
        // `_info` with the value 1, as the Prometheus naming conventions have build information.
        registry.register(
            "build",
            "The version of tether running",
            Info::new(vec![("version", VERSION), ("revision", REVISION)]),
        );
        let accepted = Family::<Labels, Counter>::default();
        registry.register(
            "connections_accepted",
            "Client connections accepted, by listener",
            accepted.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes on the public listener that failed or timed out (handshake_timeout_ms)",
            tls_handshake_failures.clone(),
        );
        let cert_expiry = Family::<Labels, Gauge>::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the certificate chain served stops being valid (its earliest not-after), by file",
            cert_expiry.clone(),
        );
        Self {
            registry,
            accepted,
            tls_handshake_failures,
            cert_expiry,
            requests,
            latency,
            affinity,
            retries,
            connections,
            max_connections,
            limit_reached,
            shutting_down,
        }
    }
}

/// The request counters of one (pool, backend), one per method and status class, resolved up front.
#[derive(Debug)]
pub struct RequestCounters([[Counter; STATUSES.len()]; METHODS.len()]);

impl RequestCounters {
    /// Counts one answered request.
    pub fn count(&self, method: &http::Method, status: http::StatusCode) {
        self.0[method_class(method)][status_class(status)].inc();
    }
}

impl Metrics {
    /// The request counters of `backend` in `pool` (`none`: answers of the proxy itself).
    pub fn requests(&self, pool: &str, backend: &str) -> RequestCounters {
        RequestCounters(std::array::from_fn(|m| {
            std::array::from_fn(|s| {
                self.requests.get_or_create_owned(&vec![
                    ("pool", pool.to_string()),
                    ("backend", backend.to_string()),
                    ("method", METHODS[m].to_string()),
                    ("status", STATUSES[s].to_string()),
                ])
            })
        }))
    }

    /// The time-to-headers histogram of `backend` in `pool`.
    pub fn latency(&self, pool: &str, backend: &str) -> Histogram {
        self.latency.get_or_create_owned(&vec![("pool", pool.to_string()), ("backend", backend.to_string())])
    }

    /// The retry counter of `backend` in `pool`.
    pub fn retries(&self, pool: &str, backend: &str) -> Counter {
        self.retries.get_or_create_owned(&vec![("pool", pool.to_string()), ("backend", backend.to_string())])
    }

    /// The counter of one affinity `outcome` decided by `hint` (`none` when no hint decided) in `pool`.
    pub fn affinity(&self, pool: &str, outcome: &str, hint: &str) -> Counter {
        self.affinity.get_or_create_owned(&vec![
            ("pool", pool.to_string()),
            ("outcome", outcome.to_string()),
            ("hint", hint.to_string()),
        ])
    }

    /// Requests no route matched. Created on first use, so a proxy whose routes match everything shows
    /// no `pool="none"` series.
    pub fn unrouted(&self, method: &http::Method, status: http::StatusCode) {
        self.requests
            .get_or_create(&vec![
                ("pool", "none".to_string()),
                ("backend", "none".to_string()),
                ("method", METHODS[method_class(method)].to_string()),
                ("status", STATUSES[status_class(status)].to_string()),
            ])
            .inc();
    }

    /// The open-connections gauge of a listener.
    pub fn connections(&self, listener: &str) -> Gauge {
        self.connections.get_or_create_owned(&vec![("listener", listener.to_string())])
    }

    /// The connection limit of a listener, shown as a gauge, and the counter of the times it was reached.
    pub fn connection_limit(&self, listener: &str, max: usize) -> Counter {
        let labels = vec![("listener", listener.to_string())];
        self.max_connections.get_or_create(&labels).set(i64::try_from(max).unwrap_or(i64::MAX));
        self.limit_reached.get_or_create_owned(&labels)
    }

    /// The accepted-connections counter of a listener.
    pub fn accepted(&self, listener: &str) -> Counter {
        self.accepted.get_or_create_owned(&vec![("listener", listener.to_string())])
    }

    /// The counter of failed TLS handshakes.
    pub fn tls_handshake_failures(&self) -> &Counter {
        &self.tls_handshake_failures
    }

    /// Sets the certificate expiry series to `certs` (file, not-after in Unix seconds), dropping those
    /// of files no longer served, so a reload that changes the file leaves no stale series.
    pub fn set_certificate_expiry(&self, certs: &[(String, i64)]) {
        self.cert_expiry.clear();
        for (file, at) in certs {
            self.cert_expiry.get_or_create(&vec![("file", file.clone())]).set(*at);
        }
    }

    /// 1 once the phased shutdown has begun.
    pub fn shutting_down(&self) -> &Gauge {
        &self.shutting_down
    }

    /// The registry of the traffic families, for the exposition.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_method_and_status() {
        assert_eq!(METHODS[method_class(&http::Method::PATCH)], "OTHER");
        assert_eq!(METHODS[method_class(&http::Method::HEAD)], "HEAD");
        assert_eq!(STATUSES[status_class(http::StatusCode::CONTINUE)], "1xx");
        assert_eq!(STATUSES[status_class(http::StatusCode::SERVICE_UNAVAILABLE)], "5xx");
        assert_eq!(STATUSES[status_class(http::StatusCode::from_u16(999).expect("status"))], "5xx");
    }
}
