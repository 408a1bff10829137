//! `[[pool]]`: groups of backends, how a pool spreads clients over them (balance, affinity, the
//! active/passive tiers) and how their health is checked.

use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use rustls_pki_types::ServerName;

use super::pool_tls::{self, PoolTls};
use super::problem::{Checker, KeyPath};
use super::raw::{RawAffinity, RawHealth, RawPool};

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
    /// `slowstart_s`: the ramp of a node that comes back; `None` = at once.
    pub slowstart: Option<Duration>,
    /// `queue_timeout_ms`: how long a request waits for a slot of a node at its `maxconn`.
    pub queue_timeout: Duration,
    /// `[pool.affinity]`.
    pub affinity: Affinity,
    /// `[pool.health]`.
    pub health: HealthConfig,
    /// `[pool.tls]`, present when the pool has an `https://` backend (or the section).
    pub tls: Option<PoolTls>,
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

impl Balance {
    /// The name the file uses (`balance = "round-robin"`), for logs and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::LeastConn => "least-conn",
        }
    }
}

/// `[pool.affinity]`.
#[derive(Debug, Clone)]
pub struct Affinity {
    /// Cookie name (`amlbcookie`).
    pub cookie: String,
    /// Observe the node's cookie, or insert one.
    pub mode: AffinityMode,
    /// The nodes' session cookie and header (AM's `com.iplanet.am.cookie.name`), read by the
    /// `session_token` hint; `None`: `[auth]`'s, else `iPlanetDirectoryPro` ([`Affinity::session_cookie_or`]).
    pub session_cookie: Option<String>,
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

impl Affinity {
    /// AM's default session cookie name (`com.iplanet.am.cookie.name`).
    pub const DEFAULT_SESSION_COOKIE: &'static str = "iPlanetDirectoryPro";

    /// The session cookie name this pool's nodes use: its own `session_cookie`, else `auth_cookie` (the
    /// embedded nodes' `[auth] session_cookie`), else AM's default. A proxy in front of real AM has no
    /// `[auth]`, and real sites rename the cookie (`AMSession`, Identity Cloud's random hex names).
    pub fn session_cookie_or<'a>(&'a self, auth_cookie: Option<&'a str>) -> &'a str {
        self.session_cookie.as_deref().or(auth_cookie).unwrap_or(Self::DEFAULT_SESSION_COOKIE)
    }
}

/// `observe` or `insert`, as HAProxy's passive cookie and `cookie … insert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffinityMode {
    /// The node sets the cookie (AM does, on the first `/authenticate`); the proxy honours it.
    Observe,
    /// The proxy sets the cookie when missing or naming another node.
    Insert,
}

/// Where a node ID may be found in a request, in the places AM itself writes it.
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
    /// What a passing answer looks like (`expect_status`, `expect_body`).
    pub expect: super::pool_health::Expect,
    /// `Host` header of the check; `None`: the backend's authority.
    pub host: Option<http::HeaderValue>,
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

/// Operator-set state of a node (HAProxy's `set server state`): configured as `admin_state`, changed
/// at run time on the admin API, saved in `proxy.state_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminState {
    /// In service.
    #[default]
    Ready,
    /// Keeps clients pinned to it, takes no new ones.
    Drain,
    /// Out of service entirely.
    Maint,
}

impl AdminState {
    /// Every state with its name, as the file, the admin API and the status page write it.
    pub const NAMES: [(&'static str, AdminState); 3] =
        [("ready", Self::Ready), ("drain", Self::Drain), ("maint", Self::Maint)];

    /// Name used by the file, the admin API and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Drain => "drain",
            Self::Maint => "maint",
        }
    }
}

/// `[[pool.backend]]`.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Server ID.
    pub id: BackendId,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port` to connect to.
    pub authority: Authority,
    /// For `https`: the name sent as SNI and verified (`pool.tls.server_name`, else the URL's host).
    pub server_name: Option<ServerName<'static>>,
    /// Active or passive.
    pub role: Role,
    /// `tether run` starts an auth node for it.
    pub embedded: bool,
    /// State when the node first appears (at start, or added by a reload), unless the state file says
    /// otherwise.
    pub admin_state: AdminState,
    /// Share of new clients relative to the other nodes of its tier, 0 to [`MAX_WEIGHT`].
    pub weight: u32,
    /// `maxconn`: most requests in flight to the node at once; `None` = no limit.
    pub maxconn: Option<NonZeroU32>,
}

/// The largest `weight`, as HAProxy's: enough resolution for any split, small enough that weight sums
/// and `in_flight × weight` products never overflow.
pub const MAX_WEIGHT: u32 = 256;

impl BackendConfig {
    /// The backend's base URL, e.g. `http://127.0.0.1:8081`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

/// Every `[[pool]]`: names unique, backend IDs unique across pools, an active backend in each.
pub(super) fn convert(c: &mut Checker, raw: Vec<RawPool>) -> Vec<PoolConfig> {
    let root = KeyPath::root().key("pool");
    if raw.is_empty() {
        c.report(&root, "no [[pool]] is defined: add one with at least one [[pool.backend]]");
    }
    let mut names = HashSet::new();
    let mut ids: Vec<(BackendId, KeyPath)> = Vec::new();
    // Two entries for one node would split its clients' affinity and double its health checks.
    let mut urls: Vec<(String, String, KeyPath)> = Vec::new();
    let mut pools = Vec::with_capacity(raw.len());
    for (i, rp) in raw.into_iter().enumerate() {
        let p = root.at(i);
        if rp.name.is_empty() {
            c.report(&p.key("name"), "must not be empty");
        } else if !names.insert(rp.name.clone()) {
            c.report(&p.key("name"), format!("duplicate pool name {:?}", rp.name));
        }
        let balance = c.choice(
            &p.key("balance"),
            &rp.balance,
            &[("round-robin", Balance::RoundRobin), ("least-conn", Balance::LeastConn)],
            Balance::RoundRobin,
        );
        let affinity = convert_affinity(c, &p.key("affinity"), rp.affinity);
        let health = convert_health(c, &p.key("health"), rp.health);
        let wants_tls = rp.tls.is_some() || rp.backend.iter().any(|b| b.url.starts_with("https:"));
        let tls =
            if wants_tls { pool_tls::convert(c, &p.key("tls"), rp.tls.unwrap_or_default()) } else { None };
        // Judged on the raw roles, so a backend with a bad URL does not also make the pool "empty".
        let has_active = rp.backend.iter().any(|b| b.role == "active");
        let mut backends = Vec::with_capacity(rp.backend.len());
        for (j, rb) in rp.backend.into_iter().enumerate() {
            let b = p.key("backend").at(j);
            let id = c.take(&b.key("id"), BackendId::new(&rb.id));
            let url = c.take(&b.key("url"), backend_url(&rb.url));
            let role =
                c.pick(&b.key("role"), &rb.role, &[("active", Role::Active), ("passive", Role::Passive)]);
            let admin_state = c.pick(&b.key("admin_state"), &rb.admin_state, &AdminState::NAMES);
            if rb.weight > MAX_WEIGHT {
                let message =
                    format!("must be 0 to {MAX_WEIGHT} (0 takes no new clients), not {}", rb.weight);
                c.report(&b.key("weight"), message);
            }
            let weight = rb.weight.min(MAX_WEIGHT);
            // 0 would refuse every request after a wait: say how to mean "no limit" instead.
            let maxconn = rb.maxconn.and_then(NonZeroU32::new);
            if rb.maxconn == Some(0) {
                c.report(&b.key("maxconn"), "must be 1 or more, not 0: leave maxconn out for no limit");
            }
            if let Some(id) = &id {
                if let Some((_, first)) = ids.iter().find(|(seen, _)| seen == id) {
                    let message = format!("duplicate backend ID {:?} (also {first})", id.0);
                    c.report(&b.key("id"), message);
                } else {
                    ids.push((id.clone(), b.key("id")));
                }
            }
            // Port 0 is a placeholder the node's own listener replaces (tests, embedded nodes).
            if let Some((scheme, authority)) = url.as_ref().filter(|(_, a)| a.port_u16() != Some(0)) {
                let key = format!("{scheme}://{}", authority.as_str().to_ascii_lowercase());
                if let Some((_, other, at)) = urls.iter().find(|(seen, _, _)| *seen == key) {
                    c.report(
                        &b.key("url"),
                        format!(
                            "duplicate backend URL {key:?}: backend {other:?} ({at}) has it too; remove one"
                        ),
                    );
                } else {
                    urls.push((key, rb.id.clone(), b.key("url")));
                }
            }
            let server_name = match (&url, &tls) {
                (Some((scheme, authority)), Some(tls)) if *scheme == Scheme::HTTPS => {
                    c.take(&b.key("url"), tls.server_name_for(authority.host()))
                }
                _ => None,
            };
            if let (Some(id), Some((scheme, authority)), Some(role), Some(admin_state)) =
                (id, url, role, admin_state)
            {
                if rb.embedded && scheme == Scheme::HTTPS {
                    c.report(
                        &b.key("embedded"),
                        "embedded auth nodes serve plain http://: use an http:// url",
                    );
                }
                let embedded = rb.embedded;
                backends.push(BackendConfig {
                    id,
                    scheme,
                    authority,
                    server_name,
                    role,
                    embedded,
                    admin_state,
                    weight,
                    maxconn,
                });
            }
        }
        if !has_active {
            c.report(&p.key("backend"), format!("pool {:?} has no active backend", rp.name));
        }
        let slowstart = (rp.slowstart_s > 0).then(|| Duration::from_secs(rp.slowstart_s));
        let queue_timeout =
            c.duration(&p.key("queue_timeout_ms"), rp.queue_timeout_ms, Duration::from_millis);
        pools.push(PoolConfig {
            name: rp.name,
            balance,
            slowstart,
            queue_timeout,
            affinity,
            health,
            tls,
            backends,
        });
    }
    pools
}

fn convert_affinity(c: &mut Checker, p: &KeyPath, raw: RawAffinity) -> Affinity {
    let cookie = c.cookie_name(&p.key("cookie"), &raw.cookie);
    let session_cookie = raw.session_cookie.map(|name| c.cookie_name(&p.key("session_cookie"), &name));
    let mode = c.choice(
        &p.key("mode"),
        &raw.mode,
        &[("observe", AffinityMode::Observe), ("insert", AffinityMode::Insert)],
        AffinityMode::Observe,
    );
    let mut hints = Vec::new();
    for (i, h) in raw.hints.iter().enumerate() {
        let choices = [
            ("cookie", HintSource::Cookie),
            ("auth_id", HintSource::AuthId),
            ("session_token", HintSource::SessionToken),
        ];
        let at = p.key("hints").at(i);
        if let Some(h) = c.pick(&at, h, &choices) {
            if hints.contains(&h) {
                c.report(&at, format!("{:?} is listed twice", h.as_str()));
            }
            hints.push(h);
        }
    }
    let on_down = c.choice(
        &p.key("on_down"),
        &raw.on_down,
        &[("redispatch", OnDown::Redispatch), ("strict", OnDown::Strict)],
        OnDown::Redispatch,
    );
    let failback = c.choice(
        &p.key("failback"),
        &raw.failback,
        &[("sticky", Failback::Sticky), ("primary", Failback::Primary)],
        Failback::Sticky,
    );
    let same_site = c.choice(
        &p.key("same_site"),
        &raw.same_site,
        &[("Lax", SameSite::Lax), ("Strict", SameSite::Strict), ("None", SameSite::None)],
        SameSite::Lax,
    );
    let attr_ok = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b';');
    if !raw.path.starts_with('/') || !attr_ok(&raw.path) {
        c.report(&p.key("path"), format!("{:?} must start with '/' and hold no ';' or spaces", raw.path));
    }
    if let Some(d) = &raw.domain
        && !attr_ok(d)
    {
        c.report(&p.key("domain"), format!("{d:?} is not a valid cookie domain"));
    }
    Affinity {
        cookie,
        mode,
        session_cookie,
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

/// Cross-check with `[auth]`: a pool of embedded nodes reads the session cookie those nodes set, so a
/// different `affinity.session_cookie` there would make every session token hint miss.
pub(super) fn check_session_cookies(c: &mut Checker, pools: &[PoolConfig], auth_cookie: Option<&str>) {
    // An invalid name was reported where it stands (and is empty here).
    let Some(auth_cookie) = auth_cookie.filter(|name| !name.is_empty()) else { return };
    for (i, pool) in pools.iter().enumerate() {
        if let Some(own) = pool.affinity.session_cookie.as_deref().filter(|name| !name.is_empty())
            && own != auth_cookie
            && pool.backends.iter().any(|b| b.embedded)
        {
            let at = KeyPath::root().key("pool").at(i).key("affinity").key("session_cookie");
            let message = format!(
                "{own:?} differs from [auth] session_cookie {auth_cookie:?}, which this pool's embedded \
                 nodes set: remove it or use the same name"
            );
            c.report(&at, message);
        }
    }
}

fn convert_health(c: &mut Checker, p: &KeyPath, raw: RawHealth) -> HealthConfig {
    if !raw.path.starts_with('/') {
        c.report(&p.key("path"), format!("{:?} must start with '/'", raw.path));
    }
    let interval = c.duration(&p.key("interval_ms"), raw.interval_ms, Duration::from_millis);
    let timeout = c.duration(&p.key("timeout_ms"), raw.timeout_ms, Duration::from_millis);
    if raw.rise == 0 {
        c.report(&p.key("rise"), "must be at least 1");
    }
    if raw.fall == 0 {
        c.report(&p.key("fall"), "must be at least 1");
    }
    let expect = super::pool_health::expect(c, p, &raw.expect_status, raw.expect_body);
    let host = raw.host.and_then(|h| match http::HeaderValue::from_str(&h) {
        Ok(v) if !h.is_empty() => Some(v),
        _ => {
            c.report(
                &p.key("host"),
                format!("{h:?} is not a Host header value: write e.g. \"am.example.com\""),
            );
            None
        }
    });
    let (rise, fall) = (raw.rise.max(1), raw.fall.max(1));
    HealthConfig { path: raw.path, interval, timeout, rise, fall, expect, host }
}

/// `http://host[:port]` or `https://host[:port]`, nothing else: HTTP/1.1 to the node, in plain text or
/// re-encrypted (HAProxy's `server … ssl verify required`, as AM sites on Tomcat's 8443 require).
fn backend_url(value: &str) -> Result<(Scheme, Authority), String> {
    let uri: http::Uri =
        value.parse().map_err(|_| format!("{value:?} is not a URL like \"http://127.0.0.1:8081\""))?;
    let (scheme, default_port) = match uri.scheme_str() {
        Some("http") => (Scheme::HTTP, 80),
        Some("https") => (Scheme::HTTPS, 443),
        Some(other) => return Err(format!("scheme {other:?} is not supported: use http:// or https://")),
        None => return Err(format!("{value:?} has no scheme: write \"http://{value}\"")),
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{value:?} must be scheme://host:port with no path"));
    }
    let authority = uri.authority().cloned().ok_or_else(|| format!("{value:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{value:?} must not carry user information"));
    }
    // `http` drops a port that does not fit in 16 bits (`port()` is `None`): read it from the text.
    if let Some((_, port)) = authority.as_str().rsplit_once(':')
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_err()
    {
        return Err(format!("{value:?}: port {port} is out of range (1 to 65535)"));
    }
    let authority = if authority.port().is_none() {
        format!("{}:{default_port}", authority.host())
            .parse()
            .map_err(|_| format!("{value:?} has an invalid host"))?
    } else {
        authority
    };
    Ok((scheme, authority))
}
