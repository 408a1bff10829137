//! `/status.json` and the status page, both from one model: [`json`] builds it, [`page::render`]
//! renders it, so every key the JSON gains (the process block, per-node figures) shows on the page.

mod page;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::process::Figures;
use crate::am::time::iso_utc;
use crate::proxy::Snapshot;
use crate::reload::ReloadStats;
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

/// The `process` block of `/status.json`: what an operator checks first (which version, since when,
/// from which file, whether the last reload applied) and the process figures of `/metrics`.
pub fn process_json(snap: &Snapshot, figures: &Figures, reloads: &ReloadStats, shutting_down: bool) -> Value {
    let now = SystemTime::now();
    let now_s = now.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let at = |unix_ms: u64| iso_utc(unix_ms / 1000);
    let (ok, error) = reloads.counts();
    let last =
        reloads.last().map(|l| json!({"at": at(l.at_unix_ms), "ok": l.error.is_none(), "error": l.error}));
    let started = figures.start_time_s.unwrap_or(reloads.last_load().1 as f64 / 1000.0);
    json!({
        "version": crate::metrics::VERSION,
        "revision": crate::metrics::REVISION,
        "started_at": at((started * 1000.0) as u64),
        "uptime_s": (now_s - started).max(0.0),
        "config_file": snap.config.source.as_ref().map(|p| p.display().to_string()),
        "reloads": ok + error,
        "reloads_failed": error,
        "last_reload": last,
        "shutting_down": shutting_down,
        "rss_bytes": figures.resident_bytes,
        "open_fds": figures.open_fds,
        "max_fds": figures.max_fds,
        "cpu_s": figures.cpu_seconds,
    })
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
        "last_request_age_s": b.state.last_request_age().map(|d| d.as_secs_f64()),
        "state_since": iso_utc(b.state.state_since_unix_ms() / 1000),
        "time_in_state_s": b.state.time_in_state().as_secs_f64(),
        "bytes_to_node": b.state.traffic().sent(),
        "bytes_from_node": b.state.traffic().received(),
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
