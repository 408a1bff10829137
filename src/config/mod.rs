//! `proxy.toml`, in two stages.
//!
//! ```text
//! text ──toml──► spanned tree ──serde──► raw::RawConfig ──TryFrom──► Config
//!                     ▲                                        │
//!                     └────── key path → line (errors) ◄───────┘
//! ```
//!
//! - [`raw`]: the file as serde reads it, every default documented: the reference of what it may hold.
//! - `load`: text to [`Config`]: TOML syntax, serde (every unknown key collected in the same pass), then
//!   `TryFrom<RawConfig>`, which hands each section to its module below; every problem gets the line of
//!   its key.
//! - `problem`: [`Problem`] (key path, line, message with the fix) and [`ConfigError`], which lists them
//!   all, so `tether check` reports everything in one run.
//! - `proxy`: `[proxy]`, listeners, TLS files and timeouts ([`ProxySettings`], [`TlsFiles`]).
//! - `cert_expiry`: the not-after date of the TLS certificates, for `tether check` and `/metrics`.
//! - `h2`: `[proxy.h2]`, the HTTP/2 limits of the listeners ([`H2Settings`]).
//! - `pool`: `[[pool]]`, backends and their IDs, balance, affinity and health ([`PoolConfig`],
//!   [`BackendId`]).
//! - `pool_tls`: `[pool.tls]`, the roots and client certificate of `https://` backends, read at load
//!   ([`PoolTls`]).
//! - `route`: `[[route]]`, request matching ([`RouteConfig`]).
//! - `auth`: `[auth]`, the auth nodes' journeys, sessions, quota ([`ExhaustionAction`]), chains and users
//!   (PHC hashes and base32 TOTP secrets are checked here).
//!
//! Each domain converts its raw part into typed values (`SocketAddr`, `Duration`, enums, IDs) and
//! cross-checks it (unique backend IDs, routes naming pools that exist, an active backend in every pool);
//! none stops at the first problem. This module depends on no other part of tether.

mod auth;
mod cert_expiry;
mod h2;
mod load;
mod lockout;
mod pool;
mod pool_health;
mod pool_tls;
mod problem;
mod proxy;
pub mod raw;
mod route;
mod type_error;

/// The smallest whole config around a `[proxy]` section under test: `{BASE}keys\n{TAIL}`.
#[cfg(test)]
mod minimal {
    pub const BASE: &str = "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
    pub const TAIL: &str = "[[pool]]\nname = \"a\"\n[[pool.backend]]\nid = \"01\"\nurl = \"http://127.0.0.1:1\"\n\
                            [[route]]\npool = \"a\"\n";
}

use std::path::PathBuf;

pub use auth::{
    AuthConfig, AuthSessionMode, ChainConfig, ExhaustionAction, ModuleKind, QuotaConfig, SessionLocation,
    SessionStoreMode, StoreConfig, StoreServers, UnknownExhaustionAction, UserConfig, totp_key,
};
pub use cert_expiry::{CertExpiryError, EXPIRY_WARNING, Expiring, not_after};
pub use h2::H2Settings;
pub use load::{load, parse};
pub use lockout::LockoutConfig;
pub use pool::{
    AdminState, Affinity, AffinityMode, BackendConfig, BackendId, Balance, Failback, HealthConfig,
    HintSource, OnDown, PoolConfig, Role, SameSite,
};
pub use pool_health::{BODY_LIMIT as HEALTH_BODY_LIMIT, Expect};
pub use pool_tls::PoolTls;
pub use problem::{ConfigError, Problem};
pub use proxy::{BodyDeadline, ProxySettings, TlsFiles, TrustedProxies};
pub use route::{HostMatch, RouteAction, RouteConfig};

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
