//! Prometheus metrics (`GET /metrics` on the admin listener), aimed at the questions of a sticky auth
//! cluster: where are clients pinned, what failed over, which logins broke.
//!
//! Two kinds of series:
//! - **Traffic** (requests, latency, affinity outcomes, retries, open connections) is counted on the
//!   request path. Label values are resolved once per config snapshot into plain handles
//!   ([`BackendMetrics`], [`PoolMetrics`]), so a request costs a few atomic adds: no label hashing, no
//!   allocation, no lock. Handles come from the same families across reloads, so counts carry on.
//! - **State** (health, admin state, transitions, checks, in-flight, auth-node counters and live
//!   sessions) already lives in atomics elsewhere; it is read at scrape time instead of being mirrored.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, text};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::auth::AuthNode;
use crate::config::HintSource;
use crate::upstream::select::Outcome;
use crate::upstream::{AdminState, Health, Upstreams};

type Labels = Vec<(&'static str, String)>;

/// Method classes counted separately.
const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OTHER"];
/// Status classes.
const STATUSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const OUTCOMES: [Outcome; 4] = [Outcome::Hit, Outcome::Miss, Outcome::Invalid, Outcome::Redispatch];
const HINTS: [&str; 4] = ["cookie", "auth_id", "session_token", "none"];

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
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
        Self { registry, requests, latency, affinity, retries, connections }
    }
}

/// Per-backend handles.
#[derive(Debug)]
pub struct BackendMetrics {
    requests: [[Counter; STATUSES.len()]; METHODS.len()],
    latency: Histogram,
    retries: Counter,
}

/// Per-pool handles.
#[derive(Debug)]
pub struct PoolMetrics {
    affinity: [[Counter; HINTS.len()]; OUTCOMES.len()],
    /// Answers of the proxy itself for this pool (no backend available, strict refusal).
    unserved: [[Counter; STATUSES.len()]; METHODS.len()],
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

impl Metrics {
    fn request_counters(&self, pool: &str, backend: &str) -> [[Counter; STATUSES.len()]; METHODS.len()] {
        std::array::from_fn(|m| {
            std::array::from_fn(|s| {
                self.requests.get_or_create_owned(&vec![
                    ("pool", pool.to_string()),
                    ("backend", backend.to_string()),
                    ("method", METHODS[m].to_string()),
                    ("status", STATUSES[s].to_string()),
                ])
            })
        })
    }

    /// Handles for one backend of one pool.
    pub fn backend(&self, pool: &str, backend: &str) -> BackendMetrics {
        let labels = vec![("pool", pool.to_string()), ("backend", backend.to_string())];
        BackendMetrics {
            requests: self.request_counters(pool, backend),
            latency: self.latency.get_or_create_owned(&labels),
            retries: self.retries.get_or_create_owned(&labels),
        }
    }

    /// Handles for one pool.
    pub fn pool(&self, pool: &str) -> PoolMetrics {
        PoolMetrics {
            affinity: std::array::from_fn(|o| {
                std::array::from_fn(|h| {
                    self.affinity.get_or_create_owned(&vec![
                        ("pool", pool.to_string()),
                        ("outcome", OUTCOMES[o].as_str().to_string()),
                        ("hint", HINTS[h].to_string()),
                    ])
                })
            }),
            unserved: self.request_counters(pool, "none"),
        }
    }

    /// Requests no route matched.
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

    /// The exposition text: traffic from the registry, state read now from `upstreams` and `nodes`.
    pub fn render(&self, upstreams: &Upstreams, nodes: &[Arc<AuthNode>]) -> String {
        let mut state = Registry::with_prefix("tether");
        state.register_collector(Box::new(StateCollector {
            rows: backend_rows(upstreams),
            auth: auth_rows(nodes),
        }));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = text::encode_registry(&mut out, &self.registry);
        let _ = text::encode_registry(&mut out, &state);
        let _ = text::encode_eof(&mut out);
        out
    }
}

impl BackendMetrics {
    /// Counts one answered request and its time to headers.
    pub fn observe(&self, method: &http::Method, status: http::StatusCode, seconds: f64) {
        self.requests[method_class(method)][status_class(status)].inc();
        self.latency.observe(seconds);
    }

    /// Counts a retry caused by this backend.
    pub fn retried(&self) {
        self.retries.inc();
    }
}

impl PoolMetrics {
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
        self.unserved[method_class(method)][status_class(status)].inc();
    }
}

/// One backend's state, read at scrape time.
#[derive(Debug)]
struct BackendRow {
    labels: Labels,
    up: bool,
    admin: AdminState,
    in_flight: usize,
    failures: u64,
    checks: u64,
    to_up: u64,
    to_down: u64,
}

fn backend_rows(upstreams: &Upstreams) -> Vec<BackendRow> {
    upstreams
        .pools
        .iter()
        .flat_map(|p| p.backends.iter().map(move |b| (p, b)))
        .map(|(p, b)| {
            let info = b.state.health_info();
            BackendRow {
                labels: vec![
                    ("pool", p.name.clone()),
                    ("backend", b.id.to_string()),
                    ("role", b.role.as_str().to_string()),
                ],
                up: b.state.health() == Health::Up,
                admin: b.state.admin(),
                in_flight: b.state.in_flight(),
                failures: b.state.failures(),
                checks: info.checks,
                to_up: info.transitions_up,
                to_down: info.transitions_down,
            }
        })
        .collect()
}

/// One auth node's counters.
#[derive(Debug)]
struct AuthRow {
    node: String,
    counters: [(&'static str, &'static str, u64); 6],
    live: usize,
}

fn auth_rows(nodes: &[Arc<AuthNode>]) -> Vec<AuthRow> {
    use std::sync::atomic::Ordering::Relaxed;
    nodes
        .iter()
        .map(|n| {
            let s = n.stats();
            AuthRow {
                node: n.id().to_string(),
                counters: [
                    (
                        "auth_logins_started",
                        "Logins started (first authenticate step)",
                        s.logins_started.load(Relaxed),
                    ),
                    (
                        "auth_logins_succeeded",
                        "Logins that created a session",
                        s.logins_succeeded.load(Relaxed),
                    ),
                    (
                        "auth_logins_failed",
                        "Logins refused: wrong credentials or quota",
                        s.logins_failed.load(Relaxed),
                    ),
                    (
                        "auth_session_timed_out",
                        "`Session has timed out` (110) answers",
                        s.timed_out.load(Relaxed),
                    ),
                    (
                        "auth_quota_refusals",
                        "Logins refused by DENY_ACCESS quotas",
                        s.quota_refusals.load(Relaxed),
                    ),
                    (
                        "auth_quota_evictions",
                        "Sessions ended by DESTROY_* quota actions",
                        s.quota_evictions.load(Relaxed),
                    ),
                ],
                live: n.live_sessions(),
            }
        })
        .collect()
}

#[derive(Debug)]
struct StateCollector {
    rows: Vec<BackendRow>,
    auth: Vec<AuthRow>,
}

/// Writes one family from rows of const metrics; the rows' type decides counter or gauge.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: Vec<(Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let Some(kind) = rows.first().map(|(_, m)| m.metric_type()) else { return Ok(()) };
    let mut m = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in &rows {
        v.encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(v: impl TryInto<i64>) -> ConstGauge {
    ConstGauge::new(v.try_into().unwrap_or(i64::MAX))
}

impl StateCollector {
    /// One row per backend, with `extra` labels, valued by `f`.
    fn per_backend<M>(
        &self,
        f: impl Fn(&BackendRow) -> Vec<(Option<(&'static str, &str)>, M)>,
    ) -> Vec<(Labels, M)> {
        self.rows
            .iter()
            .flat_map(|r| {
                f(r).into_iter().map(|(extra, m)| {
                    let mut l = r.labels.clone();
                    l.extend(extra.map(|(k, v)| (k, v.to_string())));
                    (l, m)
                })
            })
            .collect()
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let up = self.per_backend(|r| vec![(None, gauge(i64::from(r.up)))]);
        family(e, "backend_up", "1 when the backend passes its health checks", up)?;
        let admin = self.per_backend(|r| {
            [AdminState::Ready, AdminState::Drain, AdminState::Maint]
                .map(|s| (Some(("state", s.as_str())), gauge(i64::from(r.admin == s))))
                .into()
        });
        family(e, "backend_admin_state", "1 for the backend's current admin state", admin)?;
        let in_flight = self.per_backend(|r| vec![(None, gauge(r.in_flight))]);
        family(e, "backend_in_flight", "Requests in flight to the backend", in_flight)?;
        let failures = self.per_backend(|r| vec![(None, ConstCounter::new(r.failures))]);
        family(e, "backend_passive_failures", "Connect failures and timeouts on live traffic", failures)?;
        let checks = self.per_backend(|r| vec![(None, ConstCounter::new(r.checks))]);
        family(e, "health_checks", "Active health checks run", checks)?;
        let transitions = self.per_backend(|r| {
            vec![
                (Some(("to", "up")), ConstCounter::new(r.to_up)),
                (Some(("to", "down")), ConstCounter::new(r.to_down)),
            ]
        });
        family(e, "health_transitions", "Health state changes, by the state entered", transitions)?;
        let node = |a: &AuthRow| vec![("node", a.node.clone())];
        if let Some(first) = self.auth.first() {
            for (i, (name, help, _)) in first.counters.iter().enumerate() {
                let rows = self.auth.iter().map(|a| (node(a), ConstCounter::new(a.counters[i].2))).collect();
                family(e, name, help, rows)?;
            }
        }
        let live = self.auth.iter().map(|a| (node(a), gauge(a.live))).collect();
        family(e, "auth_sessions", "Sessions in the node's store (a shared store shows on every node)", live)
    }
}
