//! Stage one of the config: the file exactly as serde reads it.
//!
//! Every optional key has its default written next to it, so this file doubles as the reference of what
//! `proxy.toml` may contain. Nothing here is validated beyond its TOML type; [`super::Config`]'s `TryFrom`
//! does that and names the key of every problem. Unknown keys are let through serde and refused by the
//! loader, which collects them all in one pass (`keys_of` names the keys each table takes).

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};

pub use super::h2::RawH2;

/// The whole file.
#[derive(Debug, Deserialize)]
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
pub struct RawProxy {
    /// Public listener, e.g. `"127.0.0.1:8080"`.
    pub listen: String,
    /// Admin listener (health, readiness, metrics, status). Default `"127.0.0.1:9090"`.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    /// `[proxy.tls]`: HTTPS on `listen`.
    pub tls: Option<RawTls>,
    /// `[proxy.h2]`: HTTP/2 limits (streams, header list, resets, windows, PINGs).
    #[serde(default)]
    pub h2: RawH2,
    /// TCP connect timeout to a backend. Default 1000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time a backend has to send its response headers. Default 30000.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// Time a client has to send its request headers (HTTP/1). Default 10000.
    #[serde(default = "default_request_header_timeout_ms")]
    pub request_header_timeout_ms: u64,
    /// Time a client has for a request body: this much, plus one second for every
    /// `request_body_min_rate` bytes it has sent. Default 20000.
    #[serde(default = "default_request_body_timeout_ms")]
    pub request_body_timeout_ms: u64,
    /// Bytes per second a request body must keep up to earn more time (0: the body gets
    /// `request_body_timeout_ms` in all). Default 500.
    #[serde(default = "default_request_body_min_rate")]
    pub request_body_min_rate: u64,
    /// Time a client has to take each piece (at most 16 KiB) of an answer. Default 30000.
    #[serde(default = "default_client_send_timeout_ms")]
    pub client_send_timeout_ms: u64,
    /// Client connections open at once on the public listener; at the limit, accepting pauses.
    /// Default: from the open-file limit, `(soft limit - 128) / 2`.
    pub max_connections: Option<usize>,
    /// How long in-flight requests may run after SIGTERM/SIGINT. Default 10.
    #[serde(default = "default_shutdown_grace_s")]
    pub shutdown_grace_s: u64,
    /// Seconds between SIGTERM/SIGINT and the public listener closing, while `/readyz` answers 503,
    /// so load balancers stop sending first. Default 0.
    #[serde(default)]
    pub shutdown_delay_s: u64,
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
    /// File (relative to the config file) where admin states are saved on every change and read at
    /// start, so a node put in maint or drain stays there across restarts. Default: none.
    pub state_file: Option<String>,
    /// Peers (CIDRs) whose `X-Forwarded-For` is appended to rather than replaced. Default none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Every connection on `listen` starts with a PROXY protocol v1 or v2 header. Default false.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// The request ID field, forwarded when valid, else generated. Default `X-ForgeRock-TransactionId`.
    #[serde(default = "default_request_id_header")]
    pub request_id_header: String,
}

/// `[proxy.tls]`.
#[derive(Debug, Deserialize)]
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
pub struct RawPool {
    /// Name routes refer to.
    pub name: String,
    /// `"round-robin"` (default) or `"least-conn"`.
    #[serde(default = "default_balance")]
    pub balance: String,
    /// Seconds over which a node that comes back (health down → up, or admin maint → ready) ramps from
    /// a sixteenth of its weight to all of it (HAProxy's `slowstart`). Default 0: at once.
    #[serde(default)]
    pub slowstart_s: u64,
    /// Time a request waits for a free slot of a node at its `maxconn` before it is answered 503
    /// (HAProxy's `timeout queue`). Default 5000.
    #[serde(default = "default_queue_timeout_ms")]
    pub queue_timeout_ms: u64,
    /// `[pool.affinity]`.
    #[serde(default)]
    pub affinity: RawAffinity,
    /// `[pool.health]`.
    #[serde(default)]
    pub health: RawHealth,
    /// `[pool.tls]`: how `https://` backends are verified (and the proxy's client certificate).
    #[serde(default)]
    pub tls: Option<RawPoolTls>,
    /// `[[pool.backend]]`.
    #[serde(default)]
    pub backend: Vec<RawBackend>,
}

/// `[pool.affinity]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawAffinity {
    /// Affinity cookie name. Default `"amlbcookie"`.
    pub cookie: String,
    /// `"observe"` (default) or `"insert"`.
    pub mode: String,
    /// The nodes' session cookie (and header) name the `session_token` hint reads. Default: `[auth]`'s
    /// `session_cookie`, else `"iPlanetDirectoryPro"`.
    pub session_cookie: Option<String>,
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
            session_cookie: None,
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
#[serde(default)]
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
    /// Statuses that pass: codes (`200`) and ranges (`"200-399"`). Default: any 2xx.
    pub expect_status: Vec<RawStatus>,
    /// A substring that must appear in the first 16 KiB of the check's body. Default: none.
    pub expect_body: Option<String>,
    /// `Host` header of the check. Default: the backend URL's `host:port`.
    pub host: Option<String>,
}

/// One entry of `expect_status`: a code or a `"low-high"` range.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawStatus {
    /// `200`.
    Code(i64),
    /// `"200-399"` (or `"204"`).
    Range(String),
}

impl Default for RawHealth {
    fn default() -> Self {
        Self {
            path: "/am/json/health/ready".into(),
            interval_ms: 1000,
            timeout_ms: 500,
            rise: 2,
            fall: 2,
            expect_status: Vec::new(),
            expect_body: None,
            host: None,
        }
    }
}

/// `[pool.tls]`, used by the pool's `https://` backends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawPoolTls {
    /// PEM roots the nodes' certificates must chain to, relative to the config file. Default: the
    /// platform's roots (the system store, as `rustls-native-certs` reads it).
    pub ca_file: Option<String>,
    /// SNI and the name the certificate must carry. Default: the host of each backend URL.
    pub server_name: Option<String>,
    /// PEM certificate chain the proxy presents (mutual TLS); needs `client_key`.
    pub client_cert: Option<String>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<String>,
}

/// `[[pool.backend]]`.
#[derive(Debug, Deserialize)]
pub struct RawBackend {
    /// Server ID, the affinity cookie value for this node (`01`, `02`, …).
    pub id: String,
    /// `http://host:port` or `https://host:port` (default ports 80 and 443).
    pub url: String,
    /// `"active"` (default) or `"passive"`.
    #[serde(default = "default_role")]
    pub role: String,
    /// `tether run` starts an auth node for it in-process. Default false.
    #[serde(default)]
    pub embedded: bool,
    /// State at start: `"ready"` (default), `"drain"` (no deadline) or `"maint"`; an entry of
    /// `proxy.state_file` wins.
    #[serde(default = "default_admin_state")]
    pub admin_state: String,
    /// Share of new clients, 0 to 256 (HAProxy's `weight`). Default 1; 0 takes no new clients but
    /// keeps the pinned ones.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Most requests in flight to this node at once; more wait in its queue for `queue_timeout_ms`
    /// (HAProxy's server `maxconn`). Absent: no limit.
    pub maxconn: Option<u32>,
}

/// `[[route]]`.
#[derive(Debug, Deserialize)]
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
#[serde(default)]
pub struct RawAuth {
    /// Default `"/am"`.
    pub context_path: String,
    /// Shared secret for `authId` signing; when absent, `run` generates one per process.
    pub signing_secret_file: Option<String>,
    /// `"memory"` (default) or `"client"`.
    pub auth_sessions: String,
    /// Default 180.
    pub auth_session_timeout_s: u64,
    /// `"shared"` (default), `"local"` or `"redis"`.
    pub sessions: String,
    /// `"server"` (default) or `"client"`.
    pub session_location: String,
    /// `[auth.store]`, needed by `sessions = "redis"`.
    pub store: Option<RawStore>,
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
    /// The `successUrl` of every login; default `"{context_path}/XUI/"`.
    pub success_url: Option<String>,
    /// `[auth.quota]`.
    pub quota: RawQuota,
    /// `[auth.lockout]`; absent = no lockout.
    pub lockout: Option<RawLockout>,
    /// Default true: a TOTP code completes one login of its user (RFC 6238 §5.2).
    pub totp_single_use: bool,
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
            session_location: "server".into(),
            store: None,
            max_session_time_min: 120,
            max_idle_time_min: 30,
            session_cookie: "iPlanetDirectoryPro".into(),
            lb_cookie: "amlbcookie".into(),
            default_chain: "ldapService".into(),
            success_url: None,
            quota: RawQuota::default(),
            lockout: None,
            totp_single_use: true,
            chain: Vec::new(),
            user: Vec::new(),
        }
    }
}

/// `[auth.store]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawStore {
    /// `redis://…` or `rediss://…`, one Redis; this or `cluster` is required.
    pub url: String,
    /// Seed nodes of a Redis Cluster (`redis://…` or `rediss://…`); this or `url` is required.
    pub cluster: Vec<String>,
    /// Default `"tether"`.
    pub key_prefix: String,
    /// Default 1000.
    pub timeout_ms: u64,
}

impl Default for RawStore {
    fn default() -> Self {
        Self { url: String::new(), cluster: Vec::new(), key_prefix: "tether".into(), timeout_ms: 1000 }
    }
}

/// `[auth.quota]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
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

/// `[auth.lockout]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawLockout {
    /// Default 5.
    pub failures: u32,
    /// Default 300.
    pub within_s: u64,
    /// Default 600.
    pub duration_s: u64,
}

impl Default for RawLockout {
    fn default() -> Self {
        Self { failures: 5, within_s: 300, duration_s: 600 }
    }
}

/// `[[auth.chain]]`.
#[derive(Debug, Deserialize)]
pub struct RawChain {
    /// Name used by `authIndexType=service`.
    pub name: String,
    /// Modules in order: `"DataStore"`, `"TOTP"`.
    pub modules: Vec<String>,
}

/// `[[auth.user]]`.
#[derive(Debug, Deserialize)]
pub struct RawUser {
    /// Login name.
    pub username: String,
    /// PHC string (`$argon2id$…`); plain text is refused.
    pub password: String,
    /// Base32 secret for the TOTP module.
    pub totp_secret: Option<String>,
    /// Per-user override of `auth.quota.limit`.
    pub session_quota: Option<u32>,
    /// May end other users' sessions with `sessions?_action=logoutByHandle` (AM's amadmin rights).
    #[serde(default)]
    pub admin: bool,
}

fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}
fn default_request_id_header() -> String {
    "X-ForgeRock-TransactionId".to_owned()
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
fn default_request_body_timeout_ms() -> u64 {
    20_000
}
fn default_request_body_min_rate() -> u64 {
    500
}
fn default_client_send_timeout_ms() -> u64 {
    30_000
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
fn default_queue_timeout_ms() -> u64 {
    5000
}

fn default_weight() -> u32 {
    1
}

fn default_role() -> String {
    "active".into()
}

fn default_admin_state() -> String {
    "ready".into()
}

/// The keys the table at `path` may hold, for naming them next to an unknown one. `path` holds the keys
/// leading to the table, array indices left out (`["pool", "backend"]` for any `[[pool.backend]]`).
pub(super) fn keys_of(path: &[&str]) -> &'static [&'static str] {
    match path {
        [] => fields::<RawConfig>(),
        ["proxy"] => fields::<RawProxy>(),
        ["proxy", "tls"] => fields::<RawTls>(),
        ["proxy", "h2"] => fields::<RawH2>(),
        ["pool"] => fields::<RawPool>(),
        ["pool", "affinity"] => fields::<RawAffinity>(),
        ["pool", "health"] => fields::<RawHealth>(),
        ["pool", "tls"] => fields::<RawPoolTls>(),
        ["pool", "backend"] => fields::<RawBackend>(),
        ["route"] => fields::<RawRoute>(),
        ["auth"] => fields::<RawAuth>(),
        ["auth", "quota"] => fields::<RawQuota>(),
        ["auth", "lockout"] => fields::<RawLockout>(),
        ["auth", "store"] => fields::<RawStore>(),
        ["auth", "chain"] => fields::<RawChain>(),
        ["auth", "user"] => fields::<RawUser>(),
        _ => &[],
    }
}

/// The field names serde's derive hands to `deserialize_struct`, caught by a deserializer that reads
/// nothing: the one list of a struct's keys, so messages can never disagree with the struct.
fn fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only structs are probed"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("probed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _probed = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_names_its_keys() {
        assert!(keys_of(&[]).contains(&"proxy"));
        assert!(keys_of(&["proxy"]).contains(&"admin_listen"));
        assert!(keys_of(&["proxy", "tls"]).contains(&"handshake_timeout_ms"));
        assert!(keys_of(&["pool"]).contains(&"balance"));
        assert!(keys_of(&["pool", "affinity"]).contains(&"same_site"));
        assert!(keys_of(&["pool", "health"]).contains(&"interval_ms"));
        assert!(keys_of(&["pool", "backend"]).contains(&"embedded"));
        assert!(keys_of(&["route"]).contains(&"path_prefix"));
        assert!(keys_of(&["auth"]).contains(&"default_chain"));
        assert!(keys_of(&["auth", "quota"]).contains(&"exhaustion_action"));
        assert!(keys_of(&["auth", "chain"]).contains(&"modules"));
        assert!(keys_of(&["auth", "user"]).contains(&"totp_secret"));
        assert!(keys_of(&["nope"]).is_empty());
    }
}
