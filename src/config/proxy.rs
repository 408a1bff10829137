//! `[proxy]`: listeners, TLS files, timeouts and the upstream connection pool's limits.

use std::net::{IpAddr, SocketAddr};

use http::HeaderName;
use ipnet::IpNet;
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
    /// `[proxy.h2]`: the HTTP/2 limits of every listener.
    pub h2: super::H2Settings,
    /// TCP connect timeout towards backends.
    pub connect_timeout: Duration,
    /// Bound on the wait for a backend's response headers.
    pub response_timeout: Duration,
    /// Bound on the wait for a client's request headers.
    pub request_header_timeout: Duration,
    /// The time a request body may take ([`BodyDeadline`]).
    pub request_body: BodyDeadline,
    /// Bound on the wait for a client to take one piece of an answer (a slow reader).
    pub client_send_timeout: Duration,
    /// Client connections open at once on the public listener (`None`: sized from the open-file limit
    /// when the listener starts).
    pub max_connections: Option<usize>,
    /// Time in-flight requests get after SIGTERM.
    pub shutdown_grace: Duration,
    /// Time the public listener keeps serving after SIGTERM while `/readyz` answers 503: a load
    /// balancer or Kubernetes, probing readiness, takes the process out before it stops accepting (the
    /// preStop pattern). Read at SIGTERM, so a reload applies it.
    pub shutdown_delay: Duration,
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
    /// Peers whose `X-Forwarded-For` is believed (appended to); any other peer's is replaced.
    pub trusted_proxies: TrustedProxies,
    /// Every connection on `listen` starts with a PROXY protocol header (behind an L4 balancer).
    pub proxy_protocol: bool,
    /// The field carrying the request ID to the nodes (AM's audit logs read `X-ForgeRock-TransactionId`).
    pub request_id_header: HeaderName,
}

/// `trusted_proxies`: the networks of the proxies in front of tether. Whatever a client writes into
/// `X-Forwarded-For` is only believed when the peer that sent it is one of them (HAProxy's
/// `option forwardfor` + `http-request set-header` practice), because AM's adaptive risk and IP
/// conditions read the address from that header (`ipAddressHeader`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// The list of `nets`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// The right-most `X-Forwarded-For` address that is not a trusted proxy, or the left-most when all
    /// are: the first hop no trusted proxy vouches for. Entries to its left were written by the client and
    /// may be anything. `None` for an empty list or an entry that is not an address.
    pub fn rightmost_untrusted<'a>(
        &self,
        forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> Option<IpAddr> {
        let mut leftmost = None;
        for value in forwarded_for.rev() {
            for element in value.rsplit(|&b| b == b',') {
                let ip = std::str::from_utf8(element.trim_ascii()).ok()?.parse::<IpAddr>().ok()?;
                if !self.contains(ip) {
                    return Some(ip);
                }
                leftmost = Some(ip);
            }
        }
        leftmost
    }

    /// Whether `ip` is in one of the networks. An IPv4 peer on a dual-stack socket (`::ffff:a.b.c.d`)
    /// is matched as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        !self.0.is_empty() && {
            let ip = ip.to_canonical();
            self.0.iter().any(|net| net.contains(&ip))
        }
    }

    /// Whether no peer is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How long a request body may take: `timeout`, plus one second for every `min_rate` bytes received.
/// A body that keeps up with the rate is never cut, however large; one trickled a few bytes at a time
/// (slow POST, "R-U-Dead-Yet") loses its connection soon after `timeout`. The shape and the defaults
/// (20 s, 500 bytes/s) are Apache `mod_reqtimeout`'s `body=20,MinRate=500`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDeadline {
    /// Time for the body before the rate earns more.
    pub timeout: Duration,
    /// Bytes per second that earn one more second (0: none do).
    pub min_rate: u64,
}

impl BodyDeadline {
    /// Time allowed for a body of which `received` bytes have arrived, counted from its start.
    pub fn allowed(&self, received: u64) -> Duration {
        match received.saturating_mul(1000).checked_div(self.min_rate) {
            Some(earned_ms) => self.timeout.saturating_add(Duration::from_millis(earned_ms)),
            None => self.timeout,
        }
    }
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
impl TlsFiles {
    /// The rustls server config of the public listener, read from the PEM files exactly as `run` and a
    /// reload read them, so `tether check` refuses what they would. The error names the key at fault
    /// (`cert` or `key`).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, (&'static str, String)> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&self.cert).and_then(Iterator::collect).map_err(|e| {
                ("cert", format!("cannot read PEM certificates from {}: {e}", self.cert.display()))
            })?;
        if certs.is_empty() {
            return Err(("cert", format!("{} holds no PEM certificate", self.cert.display())));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| {
            ("key", format!("cannot read a PEM private key from {}: {e}", self.key.display()))
        })?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ("cert", e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| ("key", format!("does not fit the certificate {}: {e}", self.cert.display())))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

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
    if let Some(files) = &tls
        && let Err((key, e)) = files.server_config()
    {
        c.report(&p.key("tls").key(key), e);
    }
    let millis = Duration::from_millis;
    let connect_timeout = c.duration(&p.key("connect_timeout_ms"), raw.connect_timeout_ms, millis);
    let response_timeout = c.duration(&p.key("response_timeout_ms"), raw.response_timeout_ms, millis);
    let request_header_timeout =
        c.duration(&p.key("request_header_timeout_ms"), raw.request_header_timeout_ms, millis);
    let request_body = BodyDeadline {
        timeout: c.duration(&p.key("request_body_timeout_ms"), raw.request_body_timeout_ms, millis),
        min_rate: raw.request_body_min_rate,
    };
    let client_send_timeout =
        c.duration(&p.key("client_send_timeout_ms"), raw.client_send_timeout_ms, millis);
    if raw.max_connections == Some(0) {
        c.report(&p.key("max_connections"), "must be at least 1 (leave it out to size it from `ulimit -n`)");
    }
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
    let trusted_proxies = TrustedProxies(
        raw.trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, net)| c.take(&p.key("trusted_proxies").at(i), ip_net(net)))
            .collect(),
    );
    let request_id_header = c.take(
        &p.key("request_id_header"),
        HeaderName::from_bytes(raw.request_id_header.as_bytes())
            .map_err(|_| format!("{:?} is not a header name", raw.request_id_header))
            .and_then(|name| {
                // A field the proxy already owns would be overwritten twice, or frame the message.
                let owned = ["host", "content-length", "transfer-encoding", "connection", "te", "upgrade"];
                if owned.contains(&name.as_str()) || name.as_str().starts_with("x-forwarded-") {
                    Err(format!("{name:?} is a field the proxy sets or reads itself; name another"))
                } else {
                    Ok(name)
                }
            }),
    );
    let h2 = super::h2::convert(c, &p.key("h2"), raw.h2);
    Some(ProxySettings {
        listen: listen?,
        admin_listen: admin_listen?,
        tls,
        h2,
        connect_timeout,
        response_timeout,
        request_header_timeout,
        request_body,
        client_send_timeout,
        max_connections: raw.max_connections,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_s),
        shutdown_delay: Duration::from_secs(raw.shutdown_delay_s),
        pool_idle_timeout,
        pool_max_idle_per_backend: raw.pool_max_idle_per_backend,
        admin_token,
        workers: raw.workers,
        state_file,
        trusted_proxies,
        proxy_protocol: raw.proxy_protocol,
        // After a problem the default stands in, so the rest of the file is still checked.
        request_id_header: request_id_header
            .unwrap_or_else(|| HeaderName::from_static("x-forgerock-transactionid")),
    })
}

fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| match value.rsplit_once(':').map(|(_, port)| port.parse::<u64>()) {
        Some(Ok(port)) if port > 65535 => format!("{value:?}: port {port} is out of range (0 to 65535)"),
        _ => format!("{value:?} is not an address like \"127.0.0.1:8080\""),
    })
}

/// A network like `"10.0.0.0/8"`, or one address (a `/32` or `/128`).
fn ip_net(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{value:?} is not a network like \"10.0.0.0/8\" or an address"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::BodyDeadline;

    use crate::config::minimal::{BASE, TAIL};

    #[test]
    fn trusted_proxies_are_networks_or_addresses() {
        let text = format!(
            "{BASE}trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\", \"::1/128\", \"192.168.1.7/24\"]\n{TAIL}"
        );
        let config = crate::config::parse(&text).unwrap();
        let trusted = &config.proxy.trusted_proxies;
        for ip in ["10.9.8.7", "127.0.0.1", "::1", "::ffff:10.1.1.1", "192.168.1.200"] {
            assert!(trusted.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["11.0.0.1", "127.0.0.2", "::2", "192.168.2.1"] {
            assert!(!trusted.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(!config.proxy.proxy_protocol);
        assert_eq!(config.proxy.request_id_header, "x-forgerock-transactionid");
        assert_eq!(config.proxy.client_send_timeout, Duration::from_secs(30));
        assert_eq!(config.proxy.max_connections, None);
        assert_eq!(config.proxy.shutdown_delay, Duration::ZERO);
        assert!(crate::config::parse(&format!("{BASE}{TAIL}")).unwrap().proxy.trusted_proxies.is_empty());
    }

    #[test]
    fn a_body_earns_a_second_per_min_rate_bytes() {
        let config = crate::config::parse(&format!("{BASE}{TAIL}")).unwrap();
        let body = config.proxy.request_body;
        assert_eq!(body, BodyDeadline { timeout: Duration::from_secs(20), min_rate: 500 });
        assert_eq!(body.allowed(0), Duration::from_secs(20));
        assert_eq!(body.allowed(5_000), Duration::from_secs(30));
        assert_eq!(body.allowed(u64::MAX), Duration::from_secs(20) + Duration::from_millis(u64::MAX / 500));
        let flat = BodyDeadline { min_rate: 0, ..body };
        assert_eq!(flat.allowed(1 << 30), Duration::from_secs(20));
    }

    #[test]
    fn zero_deadlines_and_limits_name_their_key() {
        let text = format!(
            "{BASE}request_body_timeout_ms = 0\nclient_send_timeout_ms = 0\nmax_connections = 0\n{TAIL}"
        );
        let err = crate::config::parse(&text).unwrap_err().to_string();
        for key in ["request_body_timeout_ms", "client_send_timeout_ms", "max_connections"] {
            assert!(err.contains(&format!("proxy.{key}")), "{key}: {err}");
        }
    }

    #[test]
    fn bad_networks_and_header_names_name_their_key() {
        let text = format!(
            "{BASE}trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\nrequest_id_header = \"a b\"\n{TAIL}"
        );
        let err = crate::config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("proxy.trusted_proxies[1]") && err.contains("10.0.0.0/33"), "{err}");
        assert!(err.contains("proxy.request_id_header") && err.contains("not a header name"), "{err}");
        let text = format!("{BASE}request_id_header = \"X-Forwarded-For\"\n{TAIL}");
        let err = crate::config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("proxy.request_id_header") && err.contains("sets or reads itself"), "{err}");
    }
}
