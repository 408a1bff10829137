//! Live reload: SIGHUP or `POST /reload` re-reads the file the process was started from.
//!
//! The whole file is parsed and validated first; any problem leaves the running config untouched and is
//! reported (log line and the 400 body of `/reload`). A valid file is swapped in as one new snapshot, so
//! each request sees either the old config or the new one, never a mix. Node state is keyed by server ID,
//! so health, admin state and in-flight counts of unchanged IDs carry over; checkers start for added nodes
//! and stop for removed ones; the TLS certificate is re-read.
//!
//! Some settings are bound at start (listening sockets, TLS on or off, the embedded auth nodes and their
//! `[auth]` settings). A file that changes them is refused as a whole, naming what changed, rather than
//! applied in part: a half-applied reload is harder to reason about than a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::config::{self, BackendId, Config, ConfigError};
use crate::nodes::NodeHandle;
use crate::proxy::Proxy;
use crate::tls::{self, SharedTls, TlsError};
use crate::upstream::health::Checkers;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The running config did not come from a file.
    #[error("nothing to reload: this instance was started from inline configuration, not a file")]
    NoSource,
    /// The file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The file changes settings that only a restart can apply.
    #[error("the new file changes {0}, which only a restart applies; nothing was changed")]
    NeedsRestart(String),
    /// The new certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The outcome of the last reload, for `/metrics` and `/status.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastReload {
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// `None` when it applied; else why nothing changed, as the log line and `/reload` said it.
    pub error: Option<String>,
}

/// Reloads counted since start (Prometheus `tether_config_reloads_total{result}`).
#[derive(Debug)]
pub struct ReloadStats {
    ok: AtomicU64,
    error: AtomicU64,
    last: Mutex<Option<LastReload>>,
    /// When the config running at start was loaded, in milliseconds since the Unix epoch.
    loaded_at_unix_ms: u64,
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl ReloadStats {
    fn new() -> Self {
        Self {
            ok: AtomicU64::new(0),
            error: AtomicU64::new(0),
            last: Mutex::new(None),
            loaded_at_unix_ms: unix_ms_now(),
        }
    }

    /// Whether the last load of the file applied and when, in milliseconds since the Unix epoch: the
    /// start's load until the first reload (as Prometheus's own `config_last_reload_successful`).
    pub fn last_load(&self) -> (bool, u64) {
        match &*self.last.lock() {
            Some(last) => (last.error.is_none(), last.at_unix_ms),
            None => (true, self.loaded_at_unix_ms),
        }
    }

    /// Reloads applied and refused.
    pub fn counts(&self) -> (u64, u64) {
        (self.ok.load(Ordering::Relaxed), self.error.load(Ordering::Relaxed))
    }

    /// The last reload, `None` before the first.
    pub fn last(&self) -> Option<LastReload> {
        self.last.lock().clone()
    }

    fn record(&self, result: &Result<String, ReloadError>) {
        let counter = if result.is_ok() { &self.ok } else { &self.error };
        counter.fetch_add(1, Ordering::Relaxed);
        let last =
            LastReload { at_unix_ms: unix_ms_now(), error: result.as_ref().err().map(ToString::to_string) };
        *self.last.lock() = Some(last);
    }
}

/// The not-after date of each certificate file of `config`, for the metric. A file that cannot be read
/// now (it was read when the config loaded) is left out rather than shown as expired.
fn certificate_expiry(config: &Config) -> Vec<(String, i64)> {
    config
        .certificate_files()
        .into_iter()
        .filter_map(|(_, file)| Some((file.display().to_string(), config::not_after(file).ok()?)))
        .collect()
}

/// Re-reads and applies the config file.
pub struct Reloader {
    proxy: Arc<Proxy>,
    checkers: Arc<Checkers>,
    tls: Option<SharedTls>,
    /// Embedded nodes and where they really listen (their url may say `:0`).
    nodes: Vec<(BackendId, http::uri::Authority)>,
    one_at_a_time: Mutex<()>,
    stats: ReloadStats,
}

impl Reloader {
    pub(crate) fn new(
        proxy: Arc<Proxy>,
        checkers: Arc<Checkers>,
        tls: Option<SharedTls>,
        nodes: &[NodeHandle],
    ) -> Self {
        let nodes = nodes
            .iter()
            .filter_map(|n| Some((n.node.id().clone(), n.addr.to_string().parse().ok()?)))
            .collect();
        proxy.metrics().set_certificate_expiry(&certificate_expiry(&proxy.snapshot().config));
        Self { proxy, checkers, tls, nodes, one_at_a_time: Mutex::new(()), stats: ReloadStats::new() }
    }

    /// The reloads so far.
    pub fn stats(&self) -> &ReloadStats {
        &self.stats
    }

    /// Reloads the file; on success returns the new config's summary.
    pub fn reload(&self) -> Result<String, ReloadError> {
        let _one = self.one_at_a_time.lock();
        let old = Arc::clone(&self.proxy.snapshot().config);
        let path = old.source.clone().ok_or(ReloadError::NoSource)?;
        let result = config::load(&path).map_err(ReloadError::from).and_then(|new| self.apply(&old, new));
        self.stats.record(&result);
        match &result {
            Ok(summary) => tracing::info!(file = %path.display(), summary, "config reloaded"),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "config reload refused; the running config is unchanged")
            }
        }
        result
    }

    fn apply(&self, old: &Config, mut new: Config) -> Result<String, ReloadError> {
        let mut changed = Vec::new();
        if new.proxy.listen != old.proxy.listen {
            changed.push("proxy.listen");
        }
        if new.proxy.admin_listen != old.proxy.admin_listen {
            changed.push("proxy.admin_listen");
        }
        if new.proxy.state_file != old.proxy.state_file {
            changed.push("proxy.state_file");
        }
        if new.proxy.tls.is_some() != old.proxy.tls.is_some() {
            changed.push("whether [proxy.tls] is on");
        }
        if new.proxy.proxy_protocol != old.proxy.proxy_protocol {
            changed.push("proxy.proxy_protocol");
        }
        // Both are the listeners' own, set when they start.
        if new.proxy.max_connections != old.proxy.max_connections {
            changed.push("proxy.max_connections");
        }
        if new.proxy.client_send_timeout != old.proxy.client_send_timeout {
            changed.push("proxy.client_send_timeout_ms");
        }
        if new.proxy.h2 != old.proxy.h2 {
            changed.push("[proxy.h2]");
        }
        let embedded = |c: &Config| {
            let mut ids: Vec<BackendId> =
                c.backends().filter(|(_, b)| b.embedded).map(|(_, b)| b.id.clone()).collect();
            ids.sort();
            ids
        };
        if embedded(&new) != embedded(old) {
            changed.push("the set of embedded backends");
        }
        if !embedded(old).is_empty() && new.auth != old.auth {
            changed.push("[auth] of the running auth nodes");
        }
        if !changed.is_empty() {
            return Err(ReloadError::NeedsRestart(changed.join(", ")));
        }
        if let (Some(shared), Some(files)) = (&self.tls, &new.proxy.tls) {
            shared.store(Arc::new(tls::server_config(files)?));
        }
        for pool in &mut new.pools {
            for b in pool.backends.iter_mut().filter(|b| b.embedded) {
                if let Some((_, authority)) = self.nodes.iter().find(|(id, _)| *id == b.id) {
                    b.authority = authority.clone();
                }
            }
        }
        let summary = new.summary();
        self.proxy.metrics().set_certificate_expiry(&certificate_expiry(&new));
        self.proxy.reload(Arc::new(new));
        self.checkers.sync(&self.proxy.snapshot().upstreams);
        Ok(summary)
    }
}
