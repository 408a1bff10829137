//! Stage one of the config: the file exactly as serde reads it.
//!
//! Every struct denies unknown keys, and every optional key has its default written next to it, so this
//! file doubles as the reference of what `proxy.toml` may contain. Nothing here is validated beyond its
//! TOML type; [`super::Config`]'s `TryFrom` does that and names the key of every problem.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[proxy]`: listeners and timeouts.
    pub proxy: RawProxy,
    /// `[[pool]]`: groups of backends a route can send to.
    #[serde(default)]
    pub pool: Vec<RawPool>,
    /// `[[route]]`: first match wins; no match is 404.
    #[serde(default)]
    pub route: Vec<RawRoute>,
    /// `[auth]`: settings of every embedded or standalone auth node.
    pub auth: Option<RawAuth>,
}

/// `[proxy]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// Public listener, e.g. `"127.0.0.1:8080"`.
    pub listen: String,
    /// Admin listener (health, readiness, metrics, status). Default `"127.0.0.1:9090"`.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    /// `[proxy.tls]`: HTTPS on `listen`.
    pub tls: Option<RawTls>,
    /// TCP connect timeout to a backend. Default 1000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time a backend has to send its response headers. Default 30000.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// Time a client has to send its request headers (HTTP/1). Default 10000.
    #[serde(default = "default_request_header_timeout_ms")]
    pub request_header_timeout_ms: u64,
    /// How long in-flight requests may run after SIGTERM/SIGINT. Default 10.
    #[serde(default = "default_shutdown_grace_s")]
    pub shutdown_grace_s: u64,
    /// Idle keep-alive connections to backends are closed after this long. Default 90.
    #[serde(default = "default_pool_idle_timeout_s")]
    pub pool_idle_timeout_s: u64,
    /// Idle keep-alive connections kept per backend. Default 256.
    #[serde(default = "default_pool_max_idle_per_backend")]
    pub pool_max_idle_per_backend: usize,
    /// When set, the admin listener's POST endpoints require `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// Runtime worker threads. Default: one per CPU core.
    pub workers: Option<usize>,
}

/// `[proxy.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain, relative to the config file.
    pub cert: String,
    /// PEM private key, relative to the config file.
    pub key: String,
    /// Time a client has to finish the TLS handshake. Default 10000.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

/// `[[pool]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Name routes refer to.
    pub name: String,
    /// `"round-robin"` (default) or `"least-conn"`.
    #[serde(default = "default_balance")]
    pub balance: String,
    /// `[pool.affinity]`.
    #[serde(default)]
    pub affinity: RawAffinity,
    /// `[pool.health]`.
    #[serde(default)]
    pub health: RawHealth,
    /// `[[pool.backend]]`.
    #[serde(default)]
    pub backend: Vec<RawBackend>,
}

/// `[pool.affinity]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAffinity {
    /// Affinity cookie name. Default `"amlbcookie"`.
    pub cookie: String,
    /// `"observe"` (default) or `"insert"`.
    pub mode: String,
    /// Where a node ID is looked for, in order. Default `["cookie", "auth_id", "session_token"]`.
    pub hints: Vec<String>,
    /// `"redispatch"` (default) or `"strict"`.
    pub on_down: String,
    /// `"sticky"` (default) or `"primary"`.
    pub failback: String,
    /// Cookie `Path`. Default `"/"`.
    pub path: String,
    /// Cookie `Domain`. Default: none (host-only cookie).
    pub domain: Option<String>,
    /// Cookie `HttpOnly`. Default true.
    pub http_only: bool,
    /// Cookie `Secure`. Default false (always set on TLS listeners).
    pub secure: bool,
    /// Cookie `SameSite`: `"Lax"` (default), `"Strict"` or `"None"`.
    pub same_site: String,
}

impl Default for RawAffinity {
    fn default() -> Self {
        Self {
            cookie: "amlbcookie".into(),
            mode: "observe".into(),
            hints: vec!["cookie".into(), "auth_id".into(), "session_token".into()],
            on_down: "redispatch".into(),
            failback: "sticky".into(),
            path: "/".into(),
            domain: None,
            http_only: true,
            secure: false,
            same_site: "Lax".into(),
        }
    }
}

/// `[pool.health]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHealth {
    /// Active check: `GET` this path, 2xx passes. Default `"/am/json/health/ready"`.
    pub path: String,
    /// Default 1000.
    pub interval_ms: u64,
    /// Default 500.
    pub timeout_ms: u64,
    /// Passes in a row to mark a node up. Default 2.
    pub rise: u32,
    /// Failures in a row to mark a node down. Default 2.
    pub fall: u32,
}

impl Default for RawHealth {
    fn default() -> Self {
        Self { path: "/am/json/health/ready".into(), interval_ms: 1000, timeout_ms: 500, rise: 2, fall: 2 }
    }
}

/// `[[pool.backend]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// Server ID, the affinity cookie value for this node (`01`, `02`, …).
    pub id: String,
    /// `http://host:port`.
    pub url: String,
    /// `"active"` (default) or `"passive"`.
    #[serde(default = "default_role")]
    pub role: String,
    /// `tether run` starts an auth node for it in-process. Default false.
    #[serde(default)]
    pub embedded: bool,
}

/// `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Match the `Host` (or `:authority`), port ignored; `*.example.com` matches subdomains.
    pub host: Option<String>,
    /// Match paths starting with this.
    pub path_prefix: Option<String>,
    /// Match these methods.
    pub methods: Option<Vec<String>>,
    /// Send to this pool …
    pub pool: Option<String>,
    /// … or answer with this status directly.
    pub status: Option<i64>,
}

/// `[auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// Default `"/am"`.
    pub context_path: String,
    /// Shared secret for `authId` signing; when absent, `run` generates one per process.
    pub signing_secret_file: Option<String>,
    /// `"memory"` (default) or `"client"`.
    pub auth_sessions: String,
    /// Default 180.
    pub auth_session_timeout_s: u64,
    /// `"shared"` (default) or `"local"`.
    pub sessions: String,
    /// Default 120.
    pub max_session_time_min: u64,
    /// Default 30.
    pub max_idle_time_min: u64,
    /// Default `"iPlanetDirectoryPro"`.
    pub session_cookie: String,
    /// Default `"amlbcookie"`.
    pub lb_cookie: String,
    /// Default `"ldapService"`.
    pub default_chain: String,
    /// `[auth.quota]`.
    pub quota: RawQuota,
    /// `[[auth.chain]]`.
    pub chain: Vec<RawChain>,
    /// `[[auth.user]]`.
    pub user: Vec<RawUser>,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            context_path: "/am".into(),
            signing_secret_file: None,
            auth_sessions: "memory".into(),
            auth_session_timeout_s: 180,
            sessions: "shared".into(),
            max_session_time_min: 120,
            max_idle_time_min: 30,
            session_cookie: "iPlanetDirectoryPro".into(),
            lb_cookie: "amlbcookie".into(),
            default_chain: "ldapService".into(),
            quota: RawQuota::default(),
            chain: Vec::new(),
            user: Vec::new(),
        }
    }
}

/// `[auth.quota]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawQuota {
    /// Default false, as in AM.
    pub enabled: bool,
    /// Default 5, as in AM.
    pub limit: u32,
    /// Default `"DESTROY_NEXT_EXPIRING"`, as in AM.
    pub exhaustion_action: String,
}

impl Default for RawQuota {
    fn default() -> Self {
        Self { enabled: false, limit: 5, exhaustion_action: "DESTROY_NEXT_EXPIRING".into() }
    }
}

/// `[[auth.chain]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChain {
    /// Name used by `authIndexType=service`.
    pub name: String,
    /// Modules in order: `"DataStore"`, `"TOTP"`.
    pub modules: Vec<String>,
}

/// `[[auth.user]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    /// Login name.
    pub username: String,
    /// PHC string (`$argon2id$…`); plain text is refused.
    pub password: String,
    /// Base32 secret for the TOTP module.
    pub totp_secret: Option<String>,
    /// Per-user override of `auth.quota.limit`.
    pub session_quota: Option<u32>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}
fn default_connect_timeout_ms() -> u64 {
    1000
}
fn default_response_timeout_ms() -> u64 {
    30_000
}
fn default_request_header_timeout_ms() -> u64 {
    10_000
}
fn default_shutdown_grace_s() -> u64 {
    10
}
fn default_pool_idle_timeout_s() -> u64 {
    90
}
fn default_pool_max_idle_per_backend() -> usize {
    256
}
fn default_handshake_timeout_ms() -> u64 {
    10_000
}
fn default_balance() -> String {
    "round-robin".into()
}
fn default_role() -> String {
    "active".into()
}
