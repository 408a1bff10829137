//! `[auth]`: settings shared by every embedded or standalone auth node: journeys, sessions and their
//! quota, chains of modules, and users (PHC password hashes and base32 TOTP secrets, both checked here so a
//! bad user is refused at load time, not at its first login).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use argon2::PasswordHash;
use data_encoding::Specification;
use serde::Deserialize;

use super::lockout::{self, LockoutConfig};
use super::problem::{Checker, KeyPath};
use super::raw::{RawAuth, RawStore};

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
    /// Whether nodes of one process share the session store, or all nodes share one on Redis.
    pub sessions: SessionStoreMode,
    /// Whether authenticated sessions live in the store, or inside the tokenId (`session_location`).
    pub session_location: SessionLocation,
    /// `[auth.store]`: where `sessions = "redis"` keeps them (always `Some` then).
    pub store: Option<StoreConfig>,
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
    /// The `successUrl` every login answers with: a path on this site or an absolute `http(s)://` URL, as
    /// AM's "Default Success Login URL". The default is the login page, which shows who is signed in.
    pub success_url: String,
    /// `[auth.quota]`.
    pub quota: QuotaConfig,
    /// `[auth.lockout]`: `None` = no lockout.
    pub lockout: Option<LockoutConfig>,
    /// Whether a TOTP code that passed once is refused for the rest of its window (RFC 6238 §5.2).
    pub totp_single_use: bool,
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
    /// In the session store (AM's server-side authentication sessions in the CTS): any node that shares
    /// it continues any journey, each `authId` answered once on all of them. Needs `sessions = "shared"`
    /// (in one process) or `"redis"` (across processes).
    Store,
}

/// Whether the nodes of one process share one session store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStoreMode {
    /// One store for every node in the process (like AM's CTS).
    Shared,
    /// One store per node.
    Local,
    /// One store on Redis (`[auth.store]`), shared by every node of every process that names it.
    Redis,
}

/// Where an authenticated session lives (AM's "server-side" and "client-side" sessions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLocation {
    /// In the session store (`sessions`): quotas, session lists and immediate logout.
    Server,
    /// Inside the tokenId, as a signed and encrypted JWT: any node with the secret validates it without
    /// a store; only a logout's denylist entry is stored. AM allows no session quotas then.
    Client,
}

/// `[auth.store]`: the Redis that `sessions = "redis"` keeps sessions in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// One Redis, or the seed nodes of a Redis Cluster.
    pub servers: StoreServers,
    /// First part of every key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Deadline of one store operation; past it the request gets 503.
    pub timeout: Duration,
}

/// Where `[auth.store]` finds Redis: `url` or `cluster`, exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreServers {
    /// `url`: `redis://host:port/db` or `rediss://…` (TLS through rustls), one server (or a proxy).
    Single(String),
    /// `cluster`: a few nodes of a Redis Cluster, all `redis://` or all `rediss://`. The client learns
    /// the other nodes and the slot map from them (`CLUSTER SLOTS`), so any reachable seed is enough.
    Cluster(Vec<String>),
}

impl fmt::Display for StoreServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single(url) => write!(f, "auth.store.url {url:?}"),
            Self::Cluster(seeds) => write!(f, "auth.store.cluster {seeds:?}"),
        }
    }
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
    /// Whether the user's session may end other users' sessions (`logoutByHandle`), as AM's amadmin.
    pub admin: bool,
}

/// What to do when a user who already holds `limit` live sessions logs in again.
///
/// The names are AM's own values of `iplanet-am-session-constraint-handler`, so a setting copied from an
/// AM configuration means the same thing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExhaustionAction {
    /// Refuse the new login (401 `Maximum Sessions Limit Reached.`) and leave the existing sessions alone.
    DenyAccess,
    /// End the session with the least time left: the one closest to its idle or maximum expiry, so the
    /// user loses the session they were least likely to keep anyway. AM's default, and so ours.
    #[default]
    DestroyNextExpiring,
    /// End the session created first. AM's own class for this value orders by remaining time after a
    /// refresh; tether keeps to creation order, which is what the name says.
    DestroyOldestSession,
    /// End every existing session of the user: the new login becomes the only one.
    DestroyOldSessions,
}

impl ExhaustionAction {
    /// Every action, in the order the docs list them.
    pub const ALL: [ExhaustionAction; 4] = [
        ExhaustionAction::DenyAccess,
        ExhaustionAction::DestroyNextExpiring,
        ExhaustionAction::DestroyOldestSession,
        ExhaustionAction::DestroyOldSessions,
    ];

    /// AM's configuration value for this action, e.g. `"DESTROY_NEXT_EXPIRING"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExhaustionAction::DenyAccess => "DENY_ACCESS",
            ExhaustionAction::DestroyNextExpiring => "DESTROY_NEXT_EXPIRING",
            ExhaustionAction::DestroyOldestSession => "DESTROY_OLDEST_SESSION",
            ExhaustionAction::DestroyOldSessions => "DESTROY_OLD_SESSIONS",
        }
    }
}

impl fmt::Display for ExhaustionAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A quota exhaustion action name that AM does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown quota exhaustion action `{0}`: expected DENY_ACCESS, DESTROY_NEXT_EXPIRING, \
     DESTROY_OLDEST_SESSION or DESTROY_OLD_SESSIONS"
)]
pub struct UnknownExhaustionAction(pub String);

impl FromStr for ExhaustionAction {
    type Err = UnknownExhaustionAction;

    /// Parses AM's exact names; anything else (including AM's undocumented `DESTROY_LAST` and other
    /// spellings) is refused rather than guessed, so a typo in the config cannot silently pick a default.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExhaustionAction::ALL
            .into_iter()
            .find(|action| action.as_str() == s)
            .ok_or_else(|| UnknownExhaustionAction(s.to_owned()))
    }
}

/// `[auth.store]`, which `sessions = "redis"` needs and nothing else uses.
fn store(
    c: &mut Checker,
    p: &KeyPath,
    sessions: SessionStoreMode,
    raw: Option<RawStore>,
) -> Option<StoreConfig> {
    let Some(raw) = raw else {
        if sessions == SessionStoreMode::Redis {
            c.report(
                &p.key("sessions"),
                "\"redis\" needs an [auth.store] table with url = \"redis://HOST:PORT\" (or rediss:// for TLS), \
                 or cluster = [\"redis://HOST:PORT\", …] for Redis Cluster",
            );
        }
        return None;
    };
    let s = p.key("store");
    let servers = servers(c, &s, raw.url, raw.cluster);
    if raw.key_prefix.is_empty() || raw.key_prefix.contains(['{', '}']) {
        c.report(&s.key("key_prefix"), format!("{:?} must be non-empty and without braces", raw.key_prefix));
    }
    if raw.timeout_ms == 0 {
        c.report(&s.key("timeout_ms"), "must be at least 1");
    }
    if sessions != SessionStoreMode::Redis {
        c.report(&s, "[auth.store] is only used with sessions = \"redis\"; set that, or remove the table");
    }
    Some(StoreConfig { servers, key_prefix: raw.key_prefix, timeout: Duration::from_millis(raw.timeout_ms) })
}

/// `url` or `cluster` of `[auth.store]`: exactly one, every URL a Redis one. A cluster has only
/// database 0 (Redis Cluster refuses `SELECT`), and the client speaks TLS to all nodes or to none.
fn servers(c: &mut Checker, s: &KeyPath, url: String, cluster: Vec<String>) -> StoreServers {
    let scheme = |u: &str| ["redis://", "rediss://"].into_iter().find(|p| u.starts_with(p));
    match (url.is_empty(), cluster.is_empty()) {
        (false, false) => c.report(
            &s.key("cluster"),
            "set either url (one Redis) or cluster (the seed nodes of a Redis Cluster), not both",
        ),
        (true, true) => c.report(
            &s.key("url"),
            "[auth.store] needs url = \"redis://HOST:PORT\" (one Redis) or \
             cluster = [\"redis://HOST:PORT\", …] (seed nodes of a Redis Cluster); rediss:// for TLS",
        ),
        _ => {}
    }
    if cluster.is_empty() {
        if !url.is_empty() && scheme(&url).is_none() {
            c.report(
                &s.key("url"),
                format!("{url:?} must be a redis:// or rediss:// URL, e.g. \"redis://127.0.0.1:6379/0\""),
            );
        }
        return StoreServers::Single(url);
    }
    let first = scheme(&cluster[0]);
    for (i, seed) in cluster.iter().enumerate() {
        let at = s.key("cluster").at(i);
        let Some(this) = scheme(seed) else {
            c.report(
                &at,
                format!("{seed:?} must be a redis:// or rediss:// URL, e.g. \"redis://10.0.0.1:7000\""),
            );
            continue;
        };
        if first.is_some_and(|f| f != this) {
            c.report(
                &at,
                format!("{seed:?}: every seed must use {}, like the first one", first.unwrap_or("")),
            );
        }
        let path = seed[this.len()..].split_once('/').map_or("", |(_, path)| path);
        if !matches!(path, "" | "0") {
            c.report(&at, format!("{seed:?}: Redis Cluster has only database 0; drop the /{path}"));
        }
    }
    StoreServers::Cluster(cluster)
}

/// `[auth]` from its raw form: every enum spelled out, chains and users unique, hashes and secrets usable.
pub(super) fn convert(c: &mut Checker, raw: RawAuth) -> AuthConfig {
    let p = KeyPath::root().key("auth");
    let cp = raw.context_path.trim_end_matches('/').to_string();
    if !cp.is_empty() && (!cp.starts_with('/') || cp.contains(['?', '#', ' '])) {
        c.report(&p.key("context_path"), format!("{:?} must be a path like \"/am\"", raw.context_path));
    }
    let auth_sessions = c.choice(
        &p.key("auth_sessions"),
        &raw.auth_sessions,
        &[
            ("memory", AuthSessionMode::Memory),
            ("client", AuthSessionMode::Client),
            ("store", AuthSessionMode::Store),
        ],
        AuthSessionMode::Memory,
    );
    let sessions = c.choice(
        &p.key("sessions"),
        &raw.sessions,
        &[
            ("shared", SessionStoreMode::Shared),
            ("local", SessionStoreMode::Local),
            ("redis", SessionStoreMode::Redis),
        ],
        SessionStoreMode::Shared,
    );
    let store = store(c, &p, sessions, raw.store);
    let session_location = c.choice(
        &p.key("session_location"),
        &raw.session_location,
        &[("server", SessionLocation::Server), ("client", SessionLocation::Client)],
        SessionLocation::Server,
    );
    if session_location == SessionLocation::Client && raw.quota.enabled {
        c.report(
            &p.key("session_location"),
            "\"client\" keeps each session inside its token, so no node can count a user's sessions, and AM \
             allows no session quotas with client-side sessions: set [auth.quota] enabled = false, or \
             session_location = \"server\"",
        );
    }
    if auth_sessions == AuthSessionMode::Store && sessions == SessionStoreMode::Local {
        c.report(
            &p.key("auth_sessions"),
            "\"store\" keeps journeys in the session store, but sessions = \"local\" gives each node its own, \
             so only the node that started a journey could continue it: that is auth_sessions = \"memory\"; \
             set that, or sessions = \"shared\" (one process) or \"redis\" (across processes)",
        );
    }
    let auth_session_timeout =
        c.duration(&p.key("auth_session_timeout_s"), raw.auth_session_timeout_s, Duration::from_secs);
    let minutes = |m: u64| Duration::from_secs(m.saturating_mul(60));
    let max_session_time = c.duration(&p.key("max_session_time_min"), raw.max_session_time_min, minutes);
    let max_idle_time = c.duration(&p.key("max_idle_time_min"), raw.max_idle_time_min, minutes);
    let session_cookie = c.cookie_name(&p.key("session_cookie"), &raw.session_cookie);
    let lb_cookie = c.cookie_name(&p.key("lb_cookie"), &raw.lb_cookie);
    let q = p.key("quota");
    if raw.quota.limit == 0 {
        c.report(&q.key("limit"), "must be at least 1 (set `enabled = false` for no limit)");
    }
    let exhaustion_action = c
        .take(
            &q.key("exhaustion_action"),
            raw.quota.exhaustion_action.parse::<ExhaustionAction>().map_err(|e| e.to_string()),
        )
        .unwrap_or_default();
    let quota = QuotaConfig { enabled: raw.quota.enabled, limit: raw.quota.limit.max(1), exhaustion_action };
    let lockout = raw.lockout.map(|l| lockout::convert(c, &p.key("lockout"), &l));

    let mut chains: Vec<ChainConfig> = Vec::new();
    for (i, rc) in raw.chain.into_iter().enumerate() {
        let at = p.key("chain").at(i);
        if rc.name.is_empty() {
            c.report(&at.key("name"), "must not be empty");
        } else if chains.iter().any(|ch| ch.name == rc.name) {
            c.report(&at.key("name"), format!("duplicate chain {:?}", rc.name));
        }
        if rc.modules.is_empty() {
            c.report(&at.key("modules"), "a chain needs at least one module");
        }
        let modules = rc
            .modules
            .iter()
            .enumerate()
            .filter_map(|(j, m)| {
                c.take(
                    &at.key("modules").at(j),
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
            &p.key("default_chain"),
            format!("no [[auth.chain]] is named {:?} (chains: {})", raw.default_chain, known.join(", ")),
        );
    }
    let needs_totp = chains.iter().any(|ch| ch.modules.contains(&ModuleKind::Totp));

    let mut users: Vec<UserConfig> = Vec::new();
    for (i, ru) in raw.user.into_iter().enumerate() {
        let u = p.key("user").at(i);
        if ru.username.is_empty() {
            c.report(&u.key("username"), "must not be empty");
        } else if users.iter().any(|x| x.username == ru.username) {
            c.report(&u.key("username"), format!("duplicate user {:?}", ru.username));
        }
        let password_hash = c.take(&u.key("password"), phc_hash(&ru.password));
        let totp_key = ru.totp_secret.as_deref().and_then(|s| {
            c.take(
                &u.key("totp_secret"),
                totp_key(s)
                    .filter(|k| k.len() >= 10)
                    .ok_or_else(|| "must be base32 (RFC 4648) of at least 80 bits".to_string()),
            )
        });
        if needs_totp && totp_key.is_none() && ru.totp_secret.is_none() {
            tracing::debug!(user = %ru.username, "user has no totp_secret: TOTP chains will refuse them");
        }
        if ru.session_quota == Some(0) {
            c.report(&u.key("session_quota"), "must be at least 1");
        }
        users.push(UserConfig {
            username: ru.username,
            password_hash: password_hash.unwrap_or_default(),
            totp_key,
            session_quota: ru.session_quota,
            admin: ru.admin,
        });
    }
    let success_url = success_url(c, &p, raw.success_url, &cp);
    AuthConfig {
        context_path: cp,
        signing_secret_file: raw.signing_secret_file.map(|f| c.file(&f)),
        auth_sessions,
        auth_session_timeout,
        sessions,
        session_location,
        store,
        max_session_time,
        max_idle_time,
        session_cookie,
        lb_cookie,
        default_chain: raw.default_chain,
        success_url,
        quota,
        lockout,
        totp_single_use: raw.totp_single_use,
        chains,
        users,
    }
}

/// `success_url`, defaulting to the login page. Only a path (`/…`) or an `http(s)://` URL: the value goes
/// to every client, which may navigate to it, so `javascript:` and the like are refused.
fn success_url(c: &mut Checker, p: &KeyPath, raw: Option<String>, context_path: &str) -> String {
    let Some(url) = raw else { return format!("{context_path}/XUI/") };
    let lower = url.to_ascii_lowercase();
    let shape = (url.starts_with('/') && !url.starts_with("//"))
        || lower.starts_with("https://")
        || lower.starts_with("http://");
    if !shape || url.chars().any(|ch| ch.is_control() || ch == ' ') {
        c.report(
            &p.key("success_url"),
            format!("{url:?} must be a path like \"/am/XUI/\" or an http(s):// URL"),
        );
    }
    url
}

/// Checks that `value` is an argon2 PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), with a message
/// that says what to do otherwise: plain text in `proxy.toml` would leak with the file.
fn phc_hash(value: &str) -> Result<String, String> {
    let hint = "run `tether hash-password` and paste its output";
    if !value.starts_with('$') {
        return Err(format!("plain-text passwords are refused: {hint}"));
    }
    let hash = PasswordHash::new(value).map_err(|e| format!("not a PHC hash ({e}): {hint}"))?;
    if !hash.algorithm.as_str().starts_with("argon2") {
        return Err(format!("algorithm {:?} is not supported, only argon2: {hint}", hash.algorithm.as_str()));
    }
    Ok(value.to_string())
}

/// Decodes a TOTP secret written as RFC 4648 §6 base32, the way authenticator apps and `otpauth://` URIs
/// show it.
///
/// Lenient where people are (letters in any case, spaces between groups, `=` padding or none) and strict
/// elsewhere: any other character, text after padding, or a length no encoder produces (1, 3 or 6 symbols
/// in the last group, i.e. a truncated secret) gives `None`. Leftover bits of the last symbol are dropped,
/// as common decoders do.
pub fn totp_key(secret: &str) -> Option<Vec<u8>> {
    let (symbols, padding) = secret.split_once('=').unwrap_or((secret, ""));
    if !padding.bytes().all(|b| b == b'=' || b == b' ') {
        return None;
    }
    let mut spec = Specification::new();
    spec.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    spec.translate.from.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.translate.to.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.ignore.push(' ');
    spec.check_trailing_bits = false;
    spec.encoding().ok()?.decode(symbols.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems of a config with this `[auth]` (and others: no pools, no chains).
    fn auth_problems(auth: &str) -> String {
        let text =
            format!("[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[auth]\n{auth}\n");
        crate::config::parse(&text).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn client_side_sessions_refuse_quotas_and_name_the_fix() {
        let both = auth_problems("session_location = \"client\"\n[auth.quota]\nenabled = true");
        assert!(both.contains("`auth.session_location`: \"client\""), "{both}");
        assert!(both.contains("line 5"), "names the line: {both}");
        assert!(both.contains("enabled = false"), "names the fix: {both}");
        for fine in
            ["session_location = \"client\"", "session_location = \"server\"\n[auth.quota]\nenabled = true"]
        {
            let problems = auth_problems(fine);
            assert!(!problems.contains("auth.session_location"), "{fine}: {problems}");
        }
        assert!(auth_problems("session_location = \"jwt\"").contains("client"), "lists the values");
    }

    #[test]
    fn journeys_in_the_store_need_a_store_the_nodes_share() {
        let local = auth_problems("auth_sessions = \"store\"\nsessions = \"local\"");
        assert!(
            local.contains("`auth.auth_sessions`: \"store\" keeps journeys in the session store"),
            "{local}"
        );
        assert!(local.contains("auth_sessions = \"memory\""), "names the fix: {local}");
        for fine in ["shared", "redis"] {
            let problems = auth_problems(&format!("auth_sessions = \"store\"\nsessions = \"{fine}\""));
            assert!(!problems.contains("auth.auth_sessions"), "{fine}: {problems}");
        }
        let unknown = auth_problems("auth_sessions = \"cts\"");
        assert!(unknown.contains("store"), "the accepted values include store: {unknown}");
    }

    #[test]
    fn success_urls_are_paths_or_http_urls() {
        for bad in ["javascript:alert(1)", "//evil.example/", "console", "/a b"] {
            let problems = auth_problems(&format!("success_url = {bad:?}"));
            assert!(problems.contains("`auth.success_url`"), "{bad}: {problems}");
        }
        for fine in ["/am/console", "https://app.example/home"] {
            let problems = auth_problems(&format!("success_url = {fine:?}"));
            assert!(!problems.contains("success_url"), "{fine}: {problems}");
        }
    }

    #[test]
    fn phc_hashes_are_checked_and_plain_text_is_refused() {
        assert!(phc_hash("secret").unwrap_err().contains("plain-text"));
        assert!(phc_hash("$argon2id$garbage").unwrap_err().contains("not a PHC hash"));
        let scrypt =
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E";
        assert!(phc_hash(scrypt).unwrap_err().contains("only argon2"));
        let cheap = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8, 1, 1, None).unwrap(),
        );
        let h =
            argon2::password_hash::PasswordHasher::hash_password_with_salt(&cheap, b"pw", b"saltsaltsalt")
                .unwrap()
                .to_string();
        assert_eq!(phc_hash(&h), Ok(h));
    }

    #[test]
    fn totp_secrets_decode_the_common_example_in_any_case_and_grouping() {
        assert_eq!(totp_key("JBSWY3DPEHPK3PXP").as_deref(), Some(&b"Hello!\xDE\xAD\xBE\xEF"[..]));
        assert_eq!(totp_key("jbsw y3dp ehpk 3pxp").as_deref(), Some(&b"Hello!\xDE\xAD\xBE\xEF"[..]));
        assert_eq!(
            totp_key("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").as_deref(),
            Some(&b"12345678901234567890"[..])
        );
    }

    #[test]
    fn totp_secrets_follow_rfc4648_test_vectors_with_or_without_padding() {
        let vectors = [
            ("", ""),
            ("MY======", "f"),
            ("MZXQ====", "fo"),
            ("MZXW6===", "foo"),
            ("MZXW6YQ=", "foob"),
            ("MZXW6YTB", "fooba"),
            ("MZXW6YTBOI======", "foobar"),
        ];
        for (encoded, plain) in vectors {
            assert_eq!(totp_key(encoded).as_deref(), Some(plain.as_bytes()), "{encoded}");
            let bare = encoded.trim_end_matches('=');
            assert_eq!(totp_key(bare).as_deref(), Some(plain.as_bytes()), "{bare}");
        }
        // Leftover bits of the last symbol are dropped, short or spaced padding is fine.
        assert_eq!(totp_key("MZ").as_deref(), Some(&b"f"[..]));
        assert_eq!(totp_key("MY= = ").as_deref(), Some(&b"f"[..]));
    }

    #[test]
    fn totp_secrets_refuse_foreign_characters_and_impossible_lengths() {
        for bad in ["MZXW6YT1", "MZXW-6YTB", "MZXW0", "M", "MZX", "MZXW6Y", "MY==MY==", "MZXW6YTB\n", "ÄÖ"]
        {
            assert_eq!(totp_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_default_action_is_ams_default_destroy_next_expiring() {
        assert_eq!(ExhaustionAction::default(), ExhaustionAction::DestroyNextExpiring);
    }

    #[test]
    fn names_round_trip_through_from_str_and_display() {
        for action in ExhaustionAction::ALL {
            assert_eq!(action.as_str().parse::<ExhaustionAction>(), Ok(action));
            assert_eq!(action.to_string(), action.as_str());
        }
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_accepted_values() {
        let err = "destroy_next_expiring".parse::<ExhaustionAction>().unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`destroy_next_expiring`"), "{message}");
        for action in ExhaustionAction::ALL {
            assert!(message.contains(action.as_str()), "{message}");
        }
    }

    #[test]
    fn config_values_deserialize_from_ams_names() {
        #[derive(Deserialize)]
        struct Cfg {
            exhaustion_action: ExhaustionAction,
        }
        for action in ExhaustionAction::ALL {
            let json = format!(r#"{{"exhaustion_action":"{}"}}"#, action.as_str());
            let cfg: Cfg = serde_json::from_str(&json).unwrap();
            assert_eq!(cfg.exhaustion_action, action);
        }
        assert!(serde_json::from_str::<Cfg>(r#"{"exhaustion_action":"DESTROY_LAST"}"#).is_err());
    }
}
