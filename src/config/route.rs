//! `[[route]]`: which requests go to which pool, or get an answer straight from the proxy.

use http::{Method, StatusCode};

use super::pool::PoolConfig;
use super::problem::{Checker, KeyPath};
use super::raw::RawRoute;

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
    /// Forward to the pool at this index of [`Config::pools`](super::Config::pools).
    Pool(usize),
    /// Answer with this status directly.
    Status(StatusCode),
}

/// The method names a route may match, as written on the wire (upper case).
const KNOWN_METHODS: [&str; 9] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// Every `[[route]]`, in file order; `pools` are the converted pools a route may name.
pub(super) fn convert(c: &mut Checker, raw: Vec<RawRoute>, pools: &[PoolConfig]) -> Vec<RouteConfig> {
    let root = KeyPath::root().key("route");
    if raw.is_empty() {
        c.report(&root, "no [[route]] is defined: every request would be 404; add e.g. `[[route]] path_prefix = \"/\"` with `pool = \"...\"`");
    }
    let mut routes = Vec::with_capacity(raw.len());
    for (i, rr) in raw.into_iter().enumerate() {
        let p = root.at(i);
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
            c.report(&p.key("path_prefix"), format!("{prefix:?} must start with '/'"));
        }
        let methods = rr.methods.map(|ms| {
            ms.iter()
                .enumerate()
                .filter_map(|(j, m)| {
                    // The methods of RFC 9110 §9 and PATCH (RFC 5789): an extension name here is a typo.
                    let parsed = KNOWN_METHODS
                        .contains(&m.as_str())
                        .then(|| Method::from_bytes(m.as_bytes()).ok())
                        .flatten();
                    c.take(
                        &p.key("methods").at(j),
                        parsed.ok_or_else(|| {
                            format!("{m:?} is not an HTTP method: use one of {}", KNOWN_METHODS.join(", "))
                        }),
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
                        &p.key("pool"),
                        format!("no pool is named {name:?} (pools: {})", known.join(", ")),
                    );
                    None
                }
            },
            (None, Some(status)) => {
                let code = u16::try_from(status).ok().filter(|s| (200..=599).contains(s));
                c.take(
                    &p.key("status"),
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
