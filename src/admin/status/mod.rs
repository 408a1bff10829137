//! `/status.json` and the status page, both from one model: [`json`] builds it, [`page::render`]
//! renders it, so every key the JSON gains (the process block, per-node figures) shows on the page.

mod page;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::proxy::Snapshot;
use crate::upstream::{Backend, Health};

pub use page::{View, render};

/// `/status.json`: every pool and backend with role, health, admin state, traffic and the last check.
pub fn json(snap: &Snapshot) -> Value {
    let pools: Vec<Value> = snap
        .upstreams
        .pools
        .iter()
        .map(|pool| {
            let backends: Vec<Value> = pool.backends.iter().map(backend_json).collect();
            json!({
                "name": pool.name,
                "balance": pool.balance.as_str(),
                "cookie": pool.affinity.cookie,
                "backends": backends,
            })
        })
        .collect();
    json!({"pools": pools})
}

/// One backend as `/status.json` shows it; `at_unix` of the last check is in whole seconds.
pub fn backend_json(b: &Backend) -> Value {
    let info = b.state.health_info();
    let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    json!({
        "id": b.id.as_str(),
        "url": format!("{}://{}", b.scheme, b.authority),
        "role": b.role.as_str(),
        "health": if b.state.health() == Health::Up { "up" } else { "down" },
        "admin": b.state.admin().as_str(),
        "drain_left_s": b.state.drain_left().map(|d| d.as_secs()),
        "in_flight": b.state.in_flight(),
        "weight": b.weight,
        "maxconn": b.maxconn.map(std::num::NonZeroU32::get),
        "queued": b.state.slots.queued(),
        "slowstart_left_s": b.slowstart_left().map(|d| d.as_secs_f64()),
        "health_checks": if b.state.health_checks_enabled() { "enabled" } else { "disabled" },
        "requests": b.state.requests(),
        "sticky_hits": b.state.sticky_hits(),
        "passive_failures": b.state.failures(),
        "transitions": info.transitions,
        "checks": info.checks,
        "last_transition": info.last_reason,
        "last_check": info.last_check.map(|c| json!({"pass": c.pass, "detail": c.detail, "at_unix": unix(c.at)})),
    })
}

/// Escapes `& < > " '` for HTML text and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
