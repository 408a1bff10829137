//! `proxy.toml`, in two stages.
//!
//! ```text
//! text ──toml──► spanned tree ──serde──► raw::RawConfig ──TryFrom──► Config
//!                     ▲                                        │
//!                     └────── key path → line (errors) ◄───────┘
//! ```
//!
//! [`raw`] holds the file as serde reads it, with unknown keys denied and every default documented.
//! `TryFrom<RawConfig> for Config` turns strings into typed values (`SocketAddr`, `Duration`, enums, IDs)
//! and cross-checks the file (unique backend IDs, routes naming pools that exist, an active backend in every
//! pool). It never stops at the first problem: [`ConfigError`] lists them all, each naming its key, and
//! [`load`] adds the line of that key in the file, so `tether check` can report everything in one run.

mod load;
pub mod raw;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Method, StatusCode};

pub use load::{ConfigError, Problem, load, parse};
use raw::RawConfig;

use crate::auth::quota::ExhaustionAction;

/// A validated configuration. Cheap to share: the runtime keeps it behind an `Arc` snapshot.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[proxy]`.
    pub proxy: ProxySettings,
    /// `[[pool]]`, in file order.
    pub pools: Vec<PoolConfig>,
    /// `[[route]]`, in file order (first match wins).
    pub routes: Vec<RouteConfig>,
    /// `[auth]`, when the file runs auth nodes.
    pub auth: Option<AuthConfig>,
    /// The file this was read from, for reloads (`None` for inline text).
    pub source: Option<PathBuf>,
}

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

/// A node's server ID: the value of the affinity cookie, `S1` in its tokens.
///
/// Restricted to cookie-safe characters (RFC 6265 `cookie-octet` minus a few) so it can be written into a
/// `Set-Cookie` without quoting, exactly as AM writes `amlbcookie=01`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(Arc<str>);

impl BackendId {
    /// Accepts 1–64 characters of `[A-Za-z0-9._-]`.
    pub fn new(id: &str) -> Result<Self, String> {
        if id.is_empty() || id.len() > 64 {
            return Err(format!("server ID {id:?} must be 1 to 64 characters"));
        }
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err(format!("server ID {id:?} may only hold letters, digits, '.', '_' and '-'"));
        }
        Ok(Self(id.into()))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[[pool]]`.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Name routes refer to.
    pub name: String,
    /// How new clients are spread over the serving tier.
    pub balance: Balance,
    /// `[pool.affinity]`.
    pub affinity: Affinity,
    /// `[pool.health]`.
    pub health: HealthConfig,
    /// `[[pool.backend]]`.
    pub backends: Vec<BackendConfig>,
}

/// How a pool chooses among its serving tier when no hint decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Each backend in turn.
    RoundRobin,
    /// The backend with the fewest requests in flight; ties in turn.
    LeastConn,
}

/// `[pool.affinity]`.
#[derive(Debug, Clone)]
pub struct Affinity {
    /// Cookie name (`amlbcookie`).
    pub cookie: String,
    /// Observe the node's cookie, or insert one.
    pub mode: AffinityMode,
    /// Where node IDs are looked for, in order.
    pub hints: Vec<HintSource>,
    /// What happens to a client pinned to a node that is down.
    pub on_down: OnDown,
    /// Whether clients pinned to a passive node move back when an active one is up.
    pub failback: Failback,
    /// `Path` attribute of cookies the proxy sets.
    pub path: String,
    /// `Domain` attribute, if any.
    pub domain: Option<String>,
    /// `HttpOnly` attribute.
    pub http_only: bool,
    /// `Secure` attribute (always on for TLS listeners).
    pub secure: bool,
    /// `SameSite` attribute.
    pub same_site: SameSite,
}

/// `observe` or `insert`, as HAProxy's passive cookie and `cookie … insert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffinityMode {
    /// The node sets the cookie (AM does, on the first `/authenticate`); the proxy honours it.
    Observe,
    /// The proxy sets the cookie when missing or naming another node.
    Insert,
}

/// Where a node ID may be found in a request (SPEC 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HintSource {
    /// The affinity cookie.
    Cookie,
    /// `S1`/`SI` of the `sessionId` inside the `authId` of a JSON body.
    AuthId,
    /// `S1`/`SI` of the session token (cookie, header or `tokenId` query).
    SessionToken,
}

impl HintSource {
    /// The name used in the file and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cookie => "cookie",
            Self::AuthId => "auth_id",
            Self::SessionToken => "session_token",
        }
    }
}

/// What to do with a client pinned to a node that is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDown {
    /// Serve it elsewhere and rewrite its cookie (HAProxy `option redispatch`).
    Redispatch,
    /// Answer 503 (Envoy's `strict`).
    Strict,
}

/// Whether clients pinned to a passive node move back to an active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failback {
    /// They stay while the passive node is up, so their in-memory journeys survive.
    Sticky,
    /// They are re-pinned to an active node as soon as one is up.
    Primary,
}

/// Cookie `SameSite` attribute (RFC 6265bis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=None` (browsers require `Secure` with it).
    None,
}

impl SameSite {
    /// Attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lax => "Lax",
            Self::Strict => "Strict",
            Self::None => "None",
        }
    }
}

/// `[pool.health]`.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Path of the active check.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// Bound on one check.
    pub timeout: Duration,
    /// Passes in a row to mark a node up.
    pub rise: u32,
    /// Failures in a row to mark it down.
    pub fall: u32,
}

/// Active nodes serve; passive ones only when no active node is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serving tier while any is healthy.
    Active,
    /// Serving tier when no active node is healthy.
    Passive,
}

impl Role {
    /// Name used in the file and on the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Passive => "passive",
        }
    }
}

/// `[[pool.backend]]`.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Server ID.
    pub id: BackendId,
    /// `http`.
    pub scheme: Scheme,
    /// `host:port` to connect to.
    pub authority: Authority,
    /// Active or passive.
    pub role: Role,
    /// `tether run` starts an auth node for it.
    pub embedded: bool,
}

impl BackendConfig {
    /// The backend's base URL, e.g. `http://127.0.0.1:8081`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

/// `[[route]]`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Host matcher, lower case, without port.
    pub host: Option<HostMatch>,
    /// Path prefix matcher.
    pub path_prefix: Option<String>,
    /// Method matcher.
    pub methods: Option<Vec<Method>>,
    /// What a match does.
    pub action: RouteAction,
}

/// A host matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `login.example.com`.
    Exact(String),
    /// `*.example.com`: any subdomain (stored as `.example.com`).
    Suffix(String),
}

/// What a matching route does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Forward to the pool at this index of [`Config::pools`].
    Pool(usize),
    /// Answer with this status directly.
    Status(StatusCode),
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `/am`.
    pub context_path: String,
    /// Shared signing secret file; `None` = generated per process.
    pub signing_secret_file: Option<PathBuf>,
    /// Where in-progress journeys live.
    pub auth_sessions: AuthSessionMode,
    /// Lifetime of an in-progress journey.
    pub auth_session_timeout: Duration,
    /// Whether nodes of one process share the session store.
    pub sessions: SessionStoreMode,
    /// Maximum session lifetime.
    pub max_session_time: Duration,
    /// Maximum idle time of a session.
    pub max_idle_time: Duration,
    /// `iPlanetDirectoryPro`.
    pub session_cookie: String,
    /// `amlbcookie`.
    pub lb_cookie: String,
    /// Chain used when the request names none.
    pub default_chain: String,
    /// `[auth.quota]`.
    pub quota: QuotaConfig,
    /// `[[auth.chain]]`.
    pub chains: Vec<ChainConfig>,
    /// `[[auth.user]]`.
    pub users: Vec<UserConfig>,
}

/// Where in-progress authentication state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSessionMode {
    /// In the memory of the node that started the journey, as AM chains: needs stickiness.
    Memory,
    /// Inside the signed, encrypted `authId`: any node with the secret can continue.
    Client,
}

/// Whether the nodes of one process share one session store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStoreMode {
    /// One store for every node in the process (like AM's CTS).
    Shared,
    /// One store per node.
    Local,
}

/// `[auth.quota]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Quotas apply at all.
    pub enabled: bool,
    /// Live sessions per user.
    pub limit: u32,
    /// What happens to the login that would exceed it.
    pub exhaustion_action: ExhaustionAction,
}

/// An authentication module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// Username and password (`NameCallback` + `PasswordCallback`).
    DataStore,
    /// RFC 6238 one-time code (`PasswordCallback`).
    Totp,
}

impl ModuleKind {
    /// AM's module name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DataStore => "DataStore",
            Self::Totp => "TOTP",
        }
    }

    /// Parses AM's module name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "DataStore" => Some(Self::DataStore),
            "TOTP" => Some(Self::Totp),
            _ => None,
        }
    }
}

/// `[[auth.chain]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    /// Chain name.
    pub name: String,
    /// Modules run in order; all must pass (AM's REQUIRED flag).
    pub modules: Vec<ModuleKind>,
}

/// `[[auth.user]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    /// Login name.
    pub username: String,
    /// PHC hash, checked to parse at load time.
    pub password_hash: String,
    /// Decoded TOTP key.
    pub totp_key: Option<Vec<u8>>,
    /// Per-user quota override.
    pub session_quota: Option<u32>,
}

impl Config {
    /// Every backend of every pool, with its pool.
    pub fn backends(&self) -> impl Iterator<Item = (&PoolConfig, &BackendConfig)> {
        self.pools.iter().flat_map(|p| p.backends.iter().map(move |b| (p, b)))
    }

    /// The backend with this ID, in any pool.
    pub fn backend(&self, id: &str) -> Option<&BackendConfig> {
        self.backends().map(|(_, b)| b).find(|b| b.id.as_str() == id)
    }

    /// A one-line summary for `tether check`.
    pub fn summary(&self) -> String {
        let backends = self.backends().count();
        let embedded = self.backends().filter(|(_, b)| b.embedded).count();
        format!(
            "{} pool(s), {} backend(s) ({} embedded), {} route(s), listen {}, admin {}{}",
            self.pools.len(),
            backends,
            embedded,
            self.routes.len(),
            self.proxy.listen,
            self.proxy.admin_listen,
            if self.auth.is_some() { ", auth nodes configured" } else { "" }
        )
    }
}

/// A step of a key path, for error messages: `pool[0].backend[1].id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(&'static str),
    /// An array index.
    Index(usize),
}

/// Collects problems while converting, so one run reports all of them.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
    base_dir: PathBuf,
}

impl Checker {
    fn report(&mut self, path: &[Seg], message: impl Into<String>) {
        self.problems.push(Problem::new(path.to_vec(), message.into()));
    }

    /// Runs a conversion; on error records it under `path` and yields `None`.
    fn take<T>(&mut self, path: &[Seg], result: Result<T, String>) -> Option<T> {
        result.map_err(|e| self.report(path, e)).ok()
    }

    fn duration(&mut self, path: &[Seg], value: u64, unit: fn(u64) -> Duration) -> Duration {
        if value == 0 {
            self.report(path, "must be greater than 0");
        }
        unit(value)
    }

    fn file(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() { p.to_path_buf() } else { self.base_dir.join(p) }
    }
}

fn key(k: &'static str) -> Seg {
    Seg::Key(k)
}

fn join(path: &[Seg], more: &[Seg]) -> Vec<Seg> {
    path.iter().chain(more).cloned().collect()
}

fn one_of<T: Copy>(value: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices.iter().find(|(name, _)| *name == value).map(|(_, v)| *v).ok_or_else(|| {
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
        format!("{value:?} is not one of {}", names.join(", "))
    })
}

fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| format!("{value:?} is not an address like \"127.0.0.1:8080\""))
}

/// Cookie names are RFC 9110 tokens.
fn cookie_name(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok { Ok(value.to_string()) } else { Err(format!("{value:?} is not a valid cookie name")) }
}

fn backend_url(value: &str) -> Result<(Scheme, Authority), String> {
    let uri: http::Uri =
        value.parse().map_err(|_| format!("{value:?} is not a URL like \"http://127.0.0.1:8081\""))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("scheme {other:?} is not supported: use http://")),
        None => return Err(format!("{value:?} has no scheme: write \"http://{value}\"")),
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{value:?} must be scheme://host:port with no path"));
    }
    let authority = uri.authority().cloned().ok_or_else(|| format!("{value:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{value:?} must not carry user information"));
    }
    let authority = if authority.port().is_none() {
        format!("{}:80", authority.host()).parse().map_err(|_| format!("{value:?} has an invalid host"))?
    } else {
        authority
    };
    Ok((Scheme::HTTP, authority))
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        convert(raw, Path::new("."))
    }
}

/// Converts and cross-checks; relative file names resolve against `base_dir`.
pub(crate) fn convert(raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut c = Checker { base_dir: base_dir.to_path_buf(), ..Checker::default() };
    let proxy = convert_proxy(&mut c, raw.proxy);
    let pools = convert_pools(&mut c, raw.pool);
    let routes = convert_routes(&mut c, raw.route, &pools);
    let auth = raw.auth.map(|a| convert_auth(&mut c, a));
    match (proxy, c.problems.is_empty()) {
        (Some(proxy), true) => Ok(Config { proxy, pools, routes, auth, source: None }),
        _ => Err(ConfigError::new(c.problems)),
    }
}

fn convert_proxy(c: &mut Checker, raw: raw::RawProxy) -> Option<ProxySettings> {
    let p = [key("proxy")];
    let listen = c.take(&join(&p, &[key("listen")]), socket_addr(&raw.listen));
    let admin_listen = c.take(&join(&p, &[key("admin_listen")]), socket_addr(&raw.admin_listen));
    if let (Some(l), Some(a)) = (listen, admin_listen)
        && l == a
        && l.port() != 0
    {
        c.report(&join(&p, &[key("admin_listen")]), format!("{a} is also `proxy.listen`"));
    }
    let tls = raw.tls.map(|t| TlsFiles {
        cert: c.file(&t.cert),
        key: c.file(&t.key),
        handshake_timeout: c.duration(
            &join(&p, &[key("tls"), key("handshake_timeout_ms")]),
            t.handshake_timeout_ms,
            Duration::from_millis,
        ),
    });
    let connect_timeout =
        c.duration(&join(&p, &[key("connect_timeout_ms")]), raw.connect_timeout_ms, Duration::from_millis);
    let response_timeout =
        c.duration(&join(&p, &[key("response_timeout_ms")]), raw.response_timeout_ms, Duration::from_millis);
    let request_header_timeout = c.duration(
        &join(&p, &[key("request_header_timeout_ms")]),
        raw.request_header_timeout_ms,
        Duration::from_millis,
    );
    let admin_token = raw.admin_token.filter(|t| {
        let ok = t.len() >= 16 && t.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            c.report(
                &join(&p, &[key("admin_token")]),
                "must be at least 16 printable characters without spaces",
            );
        }
        ok
    });
    if raw.workers == Some(0) {
        c.report(&join(&p, &[key("workers")]), "must be at least 1 (leave it out for one per core)");
    }
    let pool_idle_timeout =
        c.duration(&join(&p, &[key("pool_idle_timeout_s")]), raw.pool_idle_timeout_s, Duration::from_secs);
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
    })
}

fn convert_pools(c: &mut Checker, raw: Vec<raw::RawPool>) -> Vec<PoolConfig> {
    if raw.is_empty() {
        c.report(&[key("pool")], "no [[pool]] is defined: add one with at least one [[pool.backend]]");
    }
    let mut names = HashSet::new();
    let mut ids: Vec<(BackendId, Vec<Seg>)> = Vec::new();
    let mut pools = Vec::with_capacity(raw.len());
    for (i, rp) in raw.into_iter().enumerate() {
        let p = [key("pool"), Seg::Index(i)];
        if rp.name.is_empty() {
            c.report(&join(&p, &[key("name")]), "must not be empty");
        } else if !names.insert(rp.name.clone()) {
            c.report(&join(&p, &[key("name")]), format!("duplicate pool name {:?}", rp.name));
        }
        let balance = c
            .take(
                &join(&p, &[key("balance")]),
                one_of(
                    &rp.balance,
                    &[("round-robin", Balance::RoundRobin), ("least-conn", Balance::LeastConn)],
                ),
            )
            .unwrap_or(Balance::RoundRobin);
        let affinity = convert_affinity(c, &join(&p, &[key("affinity")]), rp.affinity);
        let health = convert_health(c, &join(&p, &[key("health")]), rp.health);
        // Judged on the raw roles, so a backend with a bad URL does not also make the pool "empty".
        let has_active = rp.backend.iter().any(|b| b.role == "active");
        let mut backends = Vec::with_capacity(rp.backend.len());
        for (j, rb) in rp.backend.into_iter().enumerate() {
            let b = join(&p, &[key("backend"), Seg::Index(j)]);
            let id = c.take(&join(&b, &[key("id")]), BackendId::new(&rb.id));
            let url = c.take(&join(&b, &[key("url")]), backend_url(&rb.url));
            let role = c.take(
                &join(&b, &[key("role")]),
                one_of(&rb.role, &[("active", Role::Active), ("passive", Role::Passive)]),
            );
            if let Some(id) = &id {
                if let Some((_, first)) = ids.iter().find(|(seen, _)| seen == id) {
                    let first = Problem::path_string(first);
                    c.report(
                        &join(&b, &[key("id")]),
                        format!("duplicate backend ID {:?} (also {first})", id.0),
                    );
                } else {
                    ids.push((id.clone(), join(&b, &[key("id")])));
                }
            }
            if let (Some(id), Some((scheme, authority)), Some(role)) = (id, url, role) {
                backends.push(BackendConfig { id, scheme, authority, role, embedded: rb.embedded });
            }
        }
        if !has_active {
            c.report(&join(&p, &[key("backend")]), format!("pool {:?} has no active backend", rp.name));
        }
        pools.push(PoolConfig { name: rp.name, balance, affinity, health, backends });
    }
    pools
}

fn convert_affinity(c: &mut Checker, p: &[Seg], raw: raw::RawAffinity) -> Affinity {
    let cookie = c.take(&join(p, &[key("cookie")]), cookie_name(&raw.cookie)).unwrap_or_default();
    let mode = c
        .take(
            &join(p, &[key("mode")]),
            one_of(&raw.mode, &[("observe", AffinityMode::Observe), ("insert", AffinityMode::Insert)]),
        )
        .unwrap_or(AffinityMode::Observe);
    let mut hints = Vec::new();
    for (i, h) in raw.hints.iter().enumerate() {
        let choices = [
            ("cookie", HintSource::Cookie),
            ("auth_id", HintSource::AuthId),
            ("session_token", HintSource::SessionToken),
        ];
        if let Some(h) = c.take(&join(p, &[key("hints"), Seg::Index(i)]), one_of(h, &choices)) {
            if hints.contains(&h) {
                c.report(
                    &join(p, &[key("hints"), Seg::Index(i)]),
                    format!("{:?} is listed twice", h.as_str()),
                );
            }
            hints.push(h);
        }
    }
    let on_down = c
        .take(
            &join(p, &[key("on_down")]),
            one_of(&raw.on_down, &[("redispatch", OnDown::Redispatch), ("strict", OnDown::Strict)]),
        )
        .unwrap_or(OnDown::Redispatch);
    let failback = c
        .take(
            &join(p, &[key("failback")]),
            one_of(&raw.failback, &[("sticky", Failback::Sticky), ("primary", Failback::Primary)]),
        )
        .unwrap_or(Failback::Sticky);
    let same_site = c
        .take(
            &join(p, &[key("same_site")]),
            one_of(
                &raw.same_site,
                &[("Lax", SameSite::Lax), ("Strict", SameSite::Strict), ("None", SameSite::None)],
            ),
        )
        .unwrap_or(SameSite::Lax);
    let attr_ok = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b';');
    if !raw.path.starts_with('/') || !attr_ok(&raw.path) {
        c.report(
            &join(p, &[key("path")]),
            format!("{:?} must start with '/' and hold no ';' or spaces", raw.path),
        );
    }
    if let Some(d) = &raw.domain
        && !attr_ok(d)
    {
        c.report(&join(p, &[key("domain")]), format!("{d:?} is not a valid cookie domain"));
    }
    Affinity {
        cookie,
        mode,
        hints,
        on_down,
        failback,
        path: raw.path,
        domain: raw.domain,
        http_only: raw.http_only,
        secure: raw.secure,
        same_site,
    }
}

fn convert_health(c: &mut Checker, p: &[Seg], raw: raw::RawHealth) -> HealthConfig {
    if !raw.path.starts_with('/') {
        c.report(&join(p, &[key("path")]), format!("{:?} must start with '/'", raw.path));
    }
    let interval = c.duration(&join(p, &[key("interval_ms")]), raw.interval_ms, Duration::from_millis);
    let timeout = c.duration(&join(p, &[key("timeout_ms")]), raw.timeout_ms, Duration::from_millis);
    if raw.rise == 0 {
        c.report(&join(p, &[key("rise")]), "must be at least 1");
    }
    if raw.fall == 0 {
        c.report(&join(p, &[key("fall")]), "must be at least 1");
    }
    HealthConfig { path: raw.path, interval, timeout, rise: raw.rise.max(1), fall: raw.fall.max(1) }
}

fn convert_routes(c: &mut Checker, raw: Vec<raw::RawRoute>, pools: &[PoolConfig]) -> Vec<RouteConfig> {
    if raw.is_empty() {
        c.report(&[key("route")], "no [[route]] is defined: every request would be 404; add e.g. `[[route]] path_prefix = \"/\"` with `pool = \"...\"`");
    }
    let mut routes = Vec::with_capacity(raw.len());
    for (i, rr) in raw.into_iter().enumerate() {
        let p = [key("route"), Seg::Index(i)];
        let host = rr.host.as_deref().map(|h| {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix("*.") {
                Some(rest) => HostMatch::Suffix(format!(".{rest}")),
                None => HostMatch::Exact(h),
            }
        });
        if let Some(prefix) = &rr.path_prefix
            && !prefix.starts_with('/')
        {
            c.report(&join(&p, &[key("path_prefix")]), format!("{prefix:?} must start with '/'"));
        }
        let methods = rr.methods.map(|ms| {
            ms.iter()
                .enumerate()
                .filter_map(|(j, m)| {
                    let parsed = Method::from_bytes(m.as_bytes())
                        .ok()
                        .filter(|_| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()));
                    c.take(
                        &join(&p, &[key("methods"), Seg::Index(j)]),
                        parsed.ok_or_else(|| format!("{m:?} is not an upper-case HTTP method")),
                    )
                })
                .collect()
        });
        let action = match (rr.pool, rr.status) {
            (Some(name), None) => match pools.iter().position(|pool| pool.name == name) {
                Some(idx) => Some(RouteAction::Pool(idx)),
                None => {
                    let known: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
                    c.report(
                        &join(&p, &[key("pool")]),
                        format!("no pool is named {name:?} (pools: {})", known.join(", ")),
                    );
                    None
                }
            },
            (None, Some(status)) => {
                let code = u16::try_from(status).ok().filter(|s| (200..=599).contains(s));
                c.take(
                    &join(&p, &[key("status")]),
                    code.and_then(|s| StatusCode::from_u16(s).ok())
                        .map(RouteAction::Status)
                        .ok_or_else(|| format!("{status} is not an HTTP status from 200 to 599")),
                )
            }
            (Some(_), Some(_)) => {
                c.report(&p, "a route takes either `pool` or `status`, not both");
                None
            }
            (None, None) => {
                c.report(&p, "a route needs `pool = \"...\"` or `status = N`");
                None
            }
        };
        if let Some(action) = action {
            routes.push(RouteConfig { host, path_prefix: rr.path_prefix, methods, action });
        }
    }
    routes
}

fn convert_auth(c: &mut Checker, raw: raw::RawAuth) -> AuthConfig {
    let p = [key("auth")];
    let at = |k: &'static str| join(&p, &[key(k)]);
    let cp = raw.context_path.trim_end_matches('/').to_string();
    if !cp.is_empty() && (!cp.starts_with('/') || cp.contains(['?', '#', ' '])) {
        c.report(&at("context_path"), format!("{:?} must be a path like \"/am\"", raw.context_path));
    }
    let auth_sessions = c
        .take(
            &at("auth_sessions"),
            one_of(
                &raw.auth_sessions,
                &[("memory", AuthSessionMode::Memory), ("client", AuthSessionMode::Client)],
            ),
        )
        .unwrap_or(AuthSessionMode::Memory);
    let sessions = c
        .take(
            &at("sessions"),
            one_of(
                &raw.sessions,
                &[("shared", SessionStoreMode::Shared), ("local", SessionStoreMode::Local)],
            ),
        )
        .unwrap_or(SessionStoreMode::Shared);
    let auth_session_timeout =
        c.duration(&at("auth_session_timeout_s"), raw.auth_session_timeout_s, Duration::from_secs);
    let minutes = |m: u64| Duration::from_secs(m.saturating_mul(60));
    let max_session_time = c.duration(&at("max_session_time_min"), raw.max_session_time_min, minutes);
    let max_idle_time = c.duration(&at("max_idle_time_min"), raw.max_idle_time_min, minutes);
    let session_cookie = c.take(&at("session_cookie"), cookie_name(&raw.session_cookie)).unwrap_or_default();
    let lb_cookie = c.take(&at("lb_cookie"), cookie_name(&raw.lb_cookie)).unwrap_or_default();
    let q = join(&p, &[key("quota")]);
    if raw.quota.limit == 0 {
        c.report(&join(&q, &[key("limit")]), "must be at least 1 (set `enabled = false` for no limit)");
    }
    let exhaustion_action = c
        .take(
            &join(&q, &[key("exhaustion_action")]),
            raw.quota.exhaustion_action.parse::<ExhaustionAction>().map_err(|e| e.to_string()),
        )
        .unwrap_or_default();
    let quota = QuotaConfig { enabled: raw.quota.enabled, limit: raw.quota.limit.max(1), exhaustion_action };

    let mut chains: Vec<ChainConfig> = Vec::new();
    for (i, rc) in raw.chain.into_iter().enumerate() {
        let cpath = join(&p, &[key("chain"), Seg::Index(i)]);
        if rc.name.is_empty() {
            c.report(&join(&cpath, &[key("name")]), "must not be empty");
        } else if chains.iter().any(|ch| ch.name == rc.name) {
            c.report(&join(&cpath, &[key("name")]), format!("duplicate chain {:?}", rc.name));
        }
        if rc.modules.is_empty() {
            c.report(&join(&cpath, &[key("modules")]), "a chain needs at least one module");
        }
        let modules = rc
            .modules
            .iter()
            .enumerate()
            .filter_map(|(j, m)| {
                c.take(
                    &join(&cpath, &[key("modules"), Seg::Index(j)]),
                    ModuleKind::parse(m)
                        .ok_or_else(|| format!("unknown module {m:?} (modules: \"DataStore\", \"TOTP\")")),
                )
            })
            .collect();
        chains.push(ChainConfig { name: rc.name, modules });
    }
    if !chains.iter().any(|ch| ch.name == raw.default_chain) {
        let known: Vec<&str> = chains.iter().map(|ch| ch.name.as_str()).collect();
        c.report(
            &at("default_chain"),
            format!("no [[auth.chain]] is named {:?} (chains: {})", raw.default_chain, known.join(", ")),
        );
    }
    let needs_totp = chains.iter().any(|ch| ch.modules.contains(&ModuleKind::Totp));

    let mut users: Vec<UserConfig> = Vec::new();
    for (i, ru) in raw.user.into_iter().enumerate() {
        let u = join(&p, &[key("user"), Seg::Index(i)]);
        if ru.username.is_empty() {
            c.report(&join(&u, &[key("username")]), "must not be empty");
        } else if users.iter().any(|x| x.username == ru.username) {
            c.report(&join(&u, &[key("username")]), format!("duplicate user {:?}", ru.username));
        }
        let password_hash = c.take(&join(&u, &[key("password")]), crate::auth::user::check_phc(&ru.password));
        let totp_key = ru.totp_secret.as_deref().and_then(|s| {
            c.take(
                &join(&u, &[key("totp_secret")]),
                crate::auth::totp::secret_from_base32(s)
                    .filter(|k| k.len() >= 10)
                    .ok_or_else(|| "must be base32 (RFC 4648) of at least 80 bits".to_string()),
            )
        });
        if needs_totp && totp_key.is_none() && ru.totp_secret.is_none() {
            tracing::debug!(user = %ru.username, "user has no totp_secret: TOTP chains will refuse them");
        }
        if ru.session_quota == Some(0) {
            c.report(&join(&u, &[key("session_quota")]), "must be at least 1");
        }
        users.push(UserConfig {
            username: ru.username,
            password_hash: password_hash.unwrap_or_default(),
            totp_key,
            session_quota: ru.session_quota,
        });
    }
    AuthConfig {
        context_path: cp,
        signing_secret_file: raw.signing_secret_file.map(|f| c.file(&f)),
        auth_sessions,
        auth_session_timeout,
        sessions,
        max_session_time,
        max_idle_time,
        session_cookie,
        lb_cookie,
        default_chain: raw.default_chain,
        quota,
        chains,
        users,
    }
}
