//! `GET /metrics`: the traffic families of [`Metrics`] plus the node and auth-node state, the reloads,
//! the client bytes and the process figures ([`super::process`]), read at scrape time.
//!
//! Health, admin state, transitions, checks, in-flight counts and the auth nodes' counters already live
//! in atomics; mirroring them into the registry would cost the request path for nothing, so a scrape
//! builds const metrics from them instead.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, text};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::process;
use crate::auth::AuthNode;
use crate::auth::session::SessionStore;
use crate::auth::store::StoreStats;
use crate::metrics::{Labels, Metrics};
use crate::reload::ReloadStats;
use crate::upstream::{AdminState, Health, Upstreams};

/// The exposition text: traffic from the registry, state read now from `upstreams`, `nodes`, the
/// reloads and `/proc/self`.
pub fn render(
    metrics: &Metrics,
    upstreams: &Upstreams,
    nodes: &[Arc<AuthNode>],
    reloads: &ReloadStats,
) -> String {
    let mut state = Registry::with_prefix("tether");
    state.register_collector(Box::new(StateCollector {
        rows: backend_rows(upstreams),
        auth: auth_rows(nodes),
        stores: store_stats(nodes),
    }));
    let (ok, error) = reloads.counts();
    let (last_ok, last_at_ms) = reloads.last_load();
    state.register_collector(Box::new(ReloadsAndClientBytes {
        reloads: [("ok", ok), ("error", error)],
        last_ok,
        last_at_s: last_at_ms as f64 / 1000.0,
        client: crate::server::client_bytes(),
    }));
    // The process collector's names, without the `tether_` prefix: dashboards share them across jobs.
    let mut process = Registry::default();
    process.register_collector(Box::new(ProcessFigures(process::read())));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = text::encode_registry(&mut out, metrics.registry());
    let _ = text::encode_registry(&mut out, &state);
    let _ = text::encode_registry(&mut out, &process);
    let _ = text::encode_eof(&mut out);
    out
}

/// The reloads and the client bytes.
#[derive(Debug)]
struct ReloadsAndClientBytes {
    reloads: [(&'static str, u64); 2],
    last_ok: bool,
    last_at_s: f64,
    client: (u64, u64),
}

impl Collector for ReloadsAndClientBytes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let rows =
            self.reloads.iter().map(|(r, n)| (vec![("result", (*r).to_owned())], ConstCounter::new(*n)));
        family(
            e,
            "config_reloads",
            "Config reloads (SIGHUP, POST /reload), by result (ok|error)",
            rows.collect(),
        )?;
        let last = vec![(vec![], gauge(i64::from(self.last_ok)))];
        family(e, "config_last_reload_successful", "1 when the last load of the config file applied", last)?;
        let at = vec![(vec![], ConstGauge::new(self.last_at_s))];
        family(
            e,
            "config_last_reload_timestamp_seconds",
            "When the config file was last loaded (the start, before any reload)",
            at,
        )?;
        let received = vec![(vec![], ConstCounter::new(self.client.0))];
        family(
            e,
            "client_received_bytes",
            "Bytes of HTTP received from clients of the public listener",
            received,
        )?;
        let sent = vec![(vec![], ConstCounter::new(self.client.1))];
        family(e, "client_sent_bytes", "Bytes of HTTP sent to clients of the public listener", sent)
    }
}

/// `process_*` as the Prometheus client libraries name them; a figure that could not be read is absent.
#[derive(Debug)]
struct ProcessFigures(process::Figures);

impl Collector for ProcessFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (e, f) = (&mut encoder, &self.0);
        let start = one(f.start_time_s.map(ConstGauge::new));
        family(e, "process_start_time_seconds", "Start time of the process since the Unix epoch", start)?;
        let rss = one(f.resident_bytes.map(gauge));
        family(e, "process_resident_memory_bytes", "Resident memory size in bytes", rss)?;
        let cpu = one(f.cpu_seconds.map(ConstCounter::new));
        family(e, "process_cpu_seconds", "Total user and system CPU time spent in seconds", cpu)?;
        family(e, "process_open_fds", "Number of open file descriptors", one(f.open_fds.map(gauge)))?;
        family(e, "process_max_fds", "Maximum number of open file descriptors", one(f.max_fds.map(gauge)))
    }
}

/// The one unlabelled row of a family, or none.
fn one<M>(metric: Option<M>) -> Vec<(Labels, M)> {
    metric.map(|m| (Labels::new(), m)).into_iter().collect()
}

/// One backend's state, read at scrape time.
#[derive(Debug)]
struct BackendRow {
    labels: Labels,
    up: bool,
    admin: AdminState,
    in_flight: usize,
    weight: u32,
    /// `maxconn`, `None` when unlimited (then no `backend_max_connections` row).
    maxconn: Option<u32>,
    queued: usize,
    queue_timeouts: u64,
    failures: u64,
    bytes_to: u64,
    bytes_from: u64,
    /// Seconds since the Unix epoch.
    state_since_s: f64,
    last_request_s: Option<f64>,
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
                weight: b.weight,
                maxconn: b.maxconn.map(std::num::NonZeroU32::get),
                queued: b.state.slots.queued(),
                queue_timeouts: b.state.slots.timeouts(),
                failures: b.state.failures(),
                bytes_to: b.state.traffic().sent(),
                bytes_from: b.state.traffic().received(),
                state_since_s: b.state.state_since_unix_ms() as f64 / 1000.0,
                last_request_s: b.state.last_request_unix_ms().map(|ms| ms as f64 / 1000.0),
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
    /// Live sessions this node created; `None` when its store cannot count them in this process.
    live: Option<usize>,
}

/// Identifies a store by its allocation: nodes sharing one hold the same `Arc`.
pub(super) fn store_key(store: &Arc<dyn SessionStore>) -> *const () {
    Arc::as_ptr(store).cast::<()>()
}

/// Each node's live sessions, by the server ID their tokens name: one pass per distinct store (all
/// nodes of `sessions = "shared"` share one), not one per node.
pub(super) fn sessions_by_node(nodes: &[Arc<AuthNode>]) -> Vec<Option<usize>> {
    let now = Instant::now();
    let mut counted: Vec<(*const (), Option<HashMap<String, usize>>)> = Vec::new();
    nodes
        .iter()
        .map(|n| {
            let key = store_key(n.store());
            let i = counted.iter().position(|(k, _)| *k == key).unwrap_or_else(|| {
                counted.push((key, n.store().sessions_by_node(now)));
                counted.len() - 1
            });
            counted[i].1.as_ref().map(|c| c.get(n.id().as_str()).copied().unwrap_or(0))
        })
        .collect()
}

/// The round-trip stats of each distinct store that keeps them (one Redis store per process).
fn store_stats(nodes: &[Arc<AuthNode>]) -> Vec<StoreStats> {
    let mut seen = Vec::new();
    let mut stats = Vec::new();
    for n in nodes {
        let key = store_key(n.store());
        if !seen.contains(&key) {
            seen.push(key);
            stats.extend(n.store().stats().cloned());
        }
    }
    stats
}

fn auth_rows(nodes: &[Arc<AuthNode>]) -> Vec<AuthRow> {
    use std::sync::atomic::Ordering::Relaxed;
    nodes
        .iter()
        .zip(sessions_by_node(nodes))
        .map(|(n, live)| {
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
                live,
            }
        })
        .collect()
}

#[derive(Debug)]
struct StateCollector {
    rows: Vec<BackendRow>,
    auth: Vec<AuthRow>,
    stores: Vec<StoreStats>,
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
    if let [(labels, v)] = rows.as_slice()
        && labels.is_empty()
    {
        // A series without labels is written `name value`, not `name{} value`.
        return v.encode(m);
    }
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
        let weight = self.per_backend(|r| vec![(None, gauge(i64::from(r.weight)))]);
        family(e, "backend_weight", "Configured share of new clients (0 takes none)", weight)?;
        let max = self.per_backend(|r| r.maxconn.map(|m| (None, gauge(i64::from(m)))).into_iter().collect());
        family(e, "backend_max_connections", "Configured maxconn: most requests in flight at once", max)?;
        let queued = self.per_backend(|r| vec![(None, gauge(r.queued))]);
        family(e, "backend_queue_length", "Requests waiting for a maxconn slot of the backend", queued)?;
        let timeouts = self.per_backend(|r| vec![(None, ConstCounter::new(r.queue_timeouts))]);
        family(
            e,
            "backend_queue_timeouts",
            "Requests answered 503 after queue_timeout_ms in the queue",
            timeouts,
        )?;
        let failures = self.per_backend(|r| vec![(None, ConstCounter::new(r.failures))]);
        family(e, "backend_passive_failures", "Connect failures and timeouts on live traffic", failures)?;
        let sent = self.per_backend(|r| vec![(None, ConstCounter::new(r.bytes_to))]);
        family(e, "backend_sent_bytes", "Bytes of HTTP sent to the node (health checks not included)", sent)?;
        let received = self.per_backend(|r| vec![(None, ConstCounter::new(r.bytes_from))]);
        family(e, "backend_received_bytes", "Bytes of HTTP received from the node", received)?;
        let since = self.per_backend(|r| vec![(None, ConstGauge::new(r.state_since_s))]);
        family(
            e,
            "backend_last_transition_timestamp_seconds",
            "When health or admin state last changed (first seen, if never)",
            since,
        )?;
        let last =
            self.per_backend(|r| r.last_request_s.map(|s| (None, ConstGauge::new(s))).into_iter().collect());
        family(
            e,
            "backend_last_request_timestamp_seconds",
            "When the last request to the node began (absent before the first)",
            last,
        )?;
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
        let live = self.auth.iter().filter_map(|a| Some((node(a), gauge(a.live?)))).collect();
        family(e, "auth_sessions", "Live sessions created by the node (the server ID in their token)", live)?;
        let seconds: Vec<(Labels, Histogram)> = (self.stores.iter())
            .flat_map(|s| s.seconds().map(|(op, h)| (vec![("op", op.to_string())], h.clone())))
            .collect();
        family(e, "auth_store_duration_seconds", "Session store round trips, by operation", seconds)?;
        let errors = (self.stores.iter())
            .flat_map(|s| {
                s.errors().map(|(kind, n)| (vec![("kind", kind.to_string())], ConstCounter::new(n)))
            })
            .collect();
        family(
            e,
            "auth_store_errors",
            "Session store operations that failed, by kind (timeout|unavailable)",
            errors,
        )
    }
}
