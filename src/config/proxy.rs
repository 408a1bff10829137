//! `[proxy]`: listeners, TLS files, timeouts and the upstream connection pool's limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::problem::{Checker, KeyPath};
use super::raw::RawProxy;

/// `[proxy]`.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Public listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// HTTPS on `listen`.
    pub tls: Option<TlsFiles>,
    /// TCP connect timeout towards backends.
    pub connect_timeout: Duration,
    /// Bound on the wait for a backend's response headers.
    pub response_timeout: Duration,
    /// Bound on the wait for a client's request headers.
    pub request_header_timeout: Duration,
    /// Time in-flight requests get after SIGTERM.
    pub shutdown_grace: Duration,
    /// Idle upstream connections are closed after this.
    pub pool_idle_timeout: Duration,
    /// Idle upstream connections kept per backend.
    pub pool_max_idle_per_backend: usize,
    /// Bearer token the admin POST endpoints require, if any.
    pub admin_token: Option<String>,
    /// Runtime worker threads (`None` = one per core).
    pub workers: Option<usize>,
    /// Where admin states are saved and read at start (resolved against the config file's directory).
    pub state_file: Option<PathBuf>,
}

/// `[proxy.tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Bound on the TLS handshake.
    pub handshake_timeout: Duration,
}

/// `[proxy]` from its raw form; `None` when a listener address is unusable (nothing can start then).
pub(super) fn convert(c: &mut Checker, raw: RawProxy) -> Option<ProxySettings> {
    let p = KeyPath::root().key("proxy");
    let listen = c.take(&p.key("listen"), socket_addr(&raw.listen));
    let admin_listen = c.take(&p.key("admin_listen"), socket_addr(&raw.admin_listen));
    if let (Some(l), Some(a)) = (listen, admin_listen)
        && l == a
        && l.port() != 0
    {
        c.report(&p.key("admin_listen"), format!("{a} is also `proxy.listen`"));
    }
    let tls = raw.tls.map(|t| TlsFiles {
        cert: c.file(&t.cert),
        key: c.file(&t.key),
        handshake_timeout: c.duration(
            &p.key("tls").key("handshake_timeout_ms"),
            t.handshake_timeout_ms,
            Duration::from_millis,
        ),
    });
    let millis = Duration::from_millis;
    let connect_timeout = c.duration(&p.key("connect_timeout_ms"), raw.connect_timeout_ms, millis);
    let response_timeout = c.duration(&p.key("response_timeout_ms"), raw.response_timeout_ms, millis);
    let request_header_timeout =
        c.duration(&p.key("request_header_timeout_ms"), raw.request_header_timeout_ms, millis);
    let admin_token = raw.admin_token.filter(|t| {
        let ok = t.len() >= 16 && t.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            c.report(&p.key("admin_token"), "must be at least 16 printable characters without spaces");
        }
        ok
    });
    if raw.workers == Some(0) {
        c.report(&p.key("workers"), "must be at least 1 (leave it out for one per core)");
    }
    let pool_idle_timeout =
        c.duration(&p.key("pool_idle_timeout_s"), raw.pool_idle_timeout_s, Duration::from_secs);
    let state_file = raw.state_file.filter(|f| {
        let ok = !f.is_empty() && !f.ends_with('/');
        if !ok {
            c.report(&p.key("state_file"), "must name a file, e.g. \"tether.state\" (or leave it out)");
        }
        ok
    });
    let state_file = state_file.map(|f| c.file(&f));
    Some(ProxySettings {
        listen: listen?,
        admin_listen: admin_listen?,
        tls,
        connect_timeout,
        response_timeout,
        request_header_timeout,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_s),
        pool_idle_timeout,
        pool_max_idle_per_backend: raw.pool_max_idle_per_backend,
        admin_token,
        workers: raw.workers,
        state_file,
    })
}

fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| format!("{value:?} is not an address like \"127.0.0.1:8080\""))
}
