//! The status page, rendered from the `/status.json` model.
//!
//! Usable at 1280 px: each node's one action form (drain, with an optional deadline in seconds; ready;
//! maint) is the first column, so it is never off-screen. The figures refresh without touching what is
//! typed: with JavaScript a small inline script fetches the page every [`REFRESH_S`] and swaps only the
//! cells marked `data-live`; without it a `<noscript>` meta refresh reloads the page, and the "pause"
//! link (`?refresh=off`) stops that while a deadline is typed (HAProxy's stats page has the same
//! refresh toggle). Keys another part of tether adds to the model (`process`, per-node
//! `last_request_age_s`, `time_in_state_s`, bytes, `weight`, `maxconn`, `queued`, `health_checks`) show
//! when present and as `–` otherwise.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::escape;
use crate::admin::How;
use crate::am::time::iso_utc_of;

/// Seconds between refreshes of the figures.
const REFRESH_S: u32 = 2;

/// Placeholder for a value that does not exist (yet).
const NONE: &str = "–";

const CSS: &str = "\
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1em;color:#1d232a;background:#fafafa}\
h1{font-size:1.3em;margin:0}h2{font-size:1.1em;margin:1.2em 0 .4em}h2 small{font-weight:normal;color:#5c6670}\
header p{margin:.2em 0;color:#5c6670}.scroll{overflow-x:auto}dl{display:flex;flex-wrap:wrap;gap:.2em 1.4em;margin:.4em 0}\
dt{color:#5c6670}dd{margin:0 0 0 .3em;font-weight:600}dl div{display:flex}\
table{border-collapse:collapse;background:#fff;box-shadow:0 0 0 1px #d5dae0}\
th,td{padding:.3em .5em;border-bottom:1px solid #e3e7eb;text-align:left;vertical-align:top;white-space:nowrap}\
th{background:#eef1f4;font-weight:600;font-size:.85em;white-space:normal;vertical-align:bottom}\
th.n,td.n{text-align:right;font-variant-numeric:tabular-nums}\
td.why{white-space:normal;min-width:10em;max-width:20em;color:#3d4650;font-size:.9em}\
td.act{position:sticky;left:0;background:#fff;z-index:1}\
tr[data-health=down] td{background:#fdeeee}tr[data-admin=maint] td{background:#f1f1f1;color:#6b7178}\
.b{display:inline-block;padding:0 .5em;border-radius:.8em;font-weight:600;font-size:.9em}\
.up{background:#d7f5de;color:#136c2e}.down{background:#fbd5d5;color:#a11616}\
.ready{background:#e3ecfb;color:#1f4f9c}.drain{background:#fdebc8;color:#8a5300}.maint{background:#e2e2e2;color:#444}\
.pass{color:#136c2e;font-weight:600}.fail{color:#a11616;font-weight:600}\
form{display:inline;margin:0}\
button{font:inherit;font-size:.85em;padding:.1em .5em;margin-right:.2em;cursor:pointer}\
input{font:inherit;font-size:.85em;width:5.5em;margin-right:.2em}\
code{font-size:.95em}";

/// Swaps the `data-live` cells for those of a fresh copy of the page, keeping the forms (and what is
/// typed in them) as they are; the pause link toggles it.
const SCRIPT: &str = "(function(){\
var paused=false,link=document.getElementById('pause');\
link.addEventListener('click',function(e){e.preventDefault();paused=!paused;\
link.textContent=paused?'resume refresh':'pause refresh';});\
function tick(){if(paused)return;fetch(location.pathname,{credentials:'same-origin',cache:'no-store'})\
.then(function(r){return r.ok?r.text():null}).then(function(t){if(!t)return;\
var d=new DOMParser().parseFromString(t,'text/html'),fresh={};\
d.querySelectorAll('[data-live]').forEach(function(e){fresh[e.getAttribute('data-live')]=e});\
document.querySelectorAll('[data-live]').forEach(function(e){var n=fresh[e.getAttribute('data-live')];\
if(!n)return;e.innerHTML=n.innerHTML;['data-health','data-admin','datetime'].forEach(function(a){\
if(n.hasAttribute(a))e.setAttribute(a,n.getAttribute(a))})});\
var rows={};d.querySelectorAll('tr[data-backend]').forEach(function(r){rows[r.getAttribute('data-backend')]=r});\
document.querySelectorAll('tr[data-backend]').forEach(function(r){var n=rows[r.getAttribute('data-backend')];\
if(n){r.setAttribute('data-health',n.getAttribute('data-health'));r.setAttribute('data-admin',n.getAttribute('data-admin'))}});}).catch(function(){});}\
setInterval(tick,REFRESH_MS);})();";

/// What the page shows besides the model: whether changes need the token, and how this caller proved it.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// `admin_token` is set.
    pub token_required: bool,
    /// How the caller proved the token (`None`: not yet).
    pub how: Option<How>,
    /// The page refreshes itself (`?refresh=off` turns it off).
    pub refresh: bool,
}

/// Renders the status page from the `/status.json` `model`.
pub fn render(model: &Value, view: &View) -> String {
    render_at(model, view, SystemTime::now())
}

fn render_at(model: &Value, view: &View, now: SystemTime) -> String {
    let rendered = iso_utc_of(now);
    let mut out = String::with_capacity(8192);
    let refresh = if view.refresh {
        format!("<noscript><meta http-equiv=\"refresh\" content=\"{REFRESH_S}\"></noscript>")
    } else {
        String::new()
    };
    let pause = if view.refresh {
        "<a id=\"pause\" href=\"/status?refresh=off\">pause refresh</a>"
    } else {
        "<a id=\"pause\" href=\"/status\">resume refresh</a> (paused)"
    };
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>tether status</title><style>{CSS}</style></head>\n<body>\n<header><h1>tether status</h1>\
         <p>Rendered <time data-live=\"rendered\" datetime=\"{rendered}\">{rendered}</time> (UTC), \
         refreshed every {REFRESH_S} s: {pause}. {login} \
         Machine-readable: <a href=\"/status.json\">/status.json</a>, <a href=\"/metrics\">/metrics</a>.</p>\
         </header>\n",
        login = login_note(view),
    );
    process_block(&mut out, model.get("process"));
    let pools = model["pools"].as_array().map_or(&[][..], Vec::as_slice);
    for pool in pools {
        pool_table(&mut out, pool, now);
    }
    if pools.is_empty() {
        out.push_str("<p>No pools are configured.</p>\n");
    }
    sessions_table(&mut out, &model["auth_nodes"]);
    if view.refresh {
        let _ = writeln!(
            out,
            "<script>{}</script>",
            SCRIPT.replace("REFRESH_MS", &(REFRESH_S * 1000).to_string())
        );
    }
    out.push_str("</body></html>\n");
    out
}

fn login_note(view: &View) -> &'static str {
    match (view.token_required, view.how) {
        (false, _) => "Changes need no token (no <code>admin_token</code> is set).",
        (true, None) => "Changes need the admin token: <a href=\"/login\">log in</a> once.",
        (true, Some(How::Basic)) => "Logged in (basic auth).",
        (true, Some(_)) => "Logged in (token).",
    }
}

/// Version, uptime, config file and the last reload, when the model has a `process` block.
fn process_block(out: &mut String, process: Option<&Value>) {
    let Some(p) = process.filter(|p| p.is_object()) else { return };
    let reload = match p.get("last_reload") {
        Some(r) if r.is_object() => {
            let ok = r["ok"].as_bool() == Some(true);
            let error = r["error"].as_str().map(|e| format!(": {}", escape(e))).unwrap_or_default();
            format!(
                "{} at {}{error}",
                if ok { "<span class=\"pass\">ok</span>" } else { "<span class=\"fail\">failed</span>" },
                text(&r["at"])
            )
        }
        _ => "none since start".to_owned(),
    };
    let _ = writeln!(
        out,
        "<section data-live=\"process\"><dl>\
         <div><dt>version</dt><dd>{} ({})</dd></div><div><dt>started</dt><dd>{}</dd></div>\
         <div><dt>uptime</dt><dd>{}</dd></div><div><dt>config</dt><dd><code>{}</code></dd></div>\
         <div><dt>reloads</dt><dd>{}</dd></div><div><dt>last reload</dt><dd>{reload}</dd></div>\
         <div><dt>memory (RSS)</dt><dd>{}</dd></div><div><dt>open fds</dt><dd>{}</dd></div>{}</dl></section>",
        text(&p["version"]),
        text(&p["revision"]),
        text(&p["started_at"]),
        seconds(&p["uptime_s"]),
        text(&p["config_file"]),
        text(&p["reloads"]),
        p["rss_bytes"]
            .as_u64()
            .map_or_else(|| NONE.to_owned(), |b| format!("{:.1} MiB", b as f64 / 1_048_576.0)),
        match (p["open_fds"].as_u64(), p["max_fds"].as_u64()) {
            (Some(open), Some(max)) => format!("{open} of {max}"),
            (Some(open), None) => open.to_string(),
            _ => NONE.to_owned(),
        },
        if p["shutting_down"] == true {
            "<div><dt>state</dt><dd class=\"fail\">shutting down</dd></div>"
        } else {
            ""
        },
    );
}

/// A JSON value as escaped text, `–` for null or missing.
fn text(v: &Value) -> String {
    match v {
        Value::Null => NONE.to_owned(),
        Value::String(s) => escape(s),
        v => escape(&v.to_string()),
    }
}

/// Whole seconds as `N s`, `–` for null or missing.
fn seconds(v: &Value) -> String {
    v.as_f64().map_or_else(|| NONE.to_owned(), |s| format!("{} s", s.floor()))
}

/// Bytes to and from the node, `–` when the model does not count them.
fn bytes(b: &Value) -> String {
    match (b["bytes_to_node"].as_u64(), b["bytes_from_node"].as_u64()) {
        (Some(to), Some(from)) => format!("{to} / {from}"),
        _ => NONE.to_owned(),
    }
}

/// Column headings after the actions, and whether the column is numeric (right-aligned).
const COLUMNS: [(&str, bool); 18] = [
    ("ID", false),
    ("health", false),
    ("admin", false),
    ("in flight", true),
    ("requests", true),
    ("sticky hits", true),
    ("sticky share", true),
    ("errors (passive)", true),
    ("last request", true),
    ("in state", true),
    ("bytes to / from node", true),
    ("weight / maxconn / queued", true),
    ("last check", false),
    ("check age", true),
    ("transitions", true),
    ("last transition", false),
    ("URL", false),
    ("role", false),
];

fn pool_table(out: &mut String, pool: &Value, now: SystemTime) {
    let backends = pool["backends"].as_array().map_or(&[][..], Vec::as_slice);
    let up = backends.iter().filter(|b| b["health"] == "up").count();
    let taking = backends.iter().filter(|b| b["health"] == "up" && b["admin"] == "ready").count();
    let name = text(&pool["name"]);
    let _ = write!(
        out,
        "<section data-pool=\"{name}\"><h2>Pool {name} <small data-live=\"pool-{name}\">{balance}, cookie \
         <code>{cookie}</code>: {up} of {total} up, {taking} taking new clients</small></h2>\n\
         <div class=\"scroll\"><table>\n<thead><tr><th>actions</th>",
        balance = text(&pool["balance"]),
        cookie = text(&pool["cookie"]),
        total = backends.len(),
    );
    for (name, numeric) in COLUMNS {
        let _ = write!(out, "<th{}>{name}</th>", if numeric { " class=\"n\"" } else { "" });
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for b in backends {
        backend_row(out, b, now);
    }
    out.push_str("</tbody></table></div></section>\n");
}

fn backend_row(out: &mut String, b: &Value, now: SystemTime) {
    let id = text(&b["id"]);
    let health = if b["health"] == "up" { "up" } else { "down" };
    let admin = b["admin"].as_str().map_or_else(|| NONE.to_owned(), escape);
    let admin_text = match b["drain_left_s"].as_u64() {
        Some(left) if admin == "drain" => format!("drain, {left} s left"),
        _ => admin.clone(),
    };
    let requests = b["requests"].as_u64().unwrap_or(0);
    let hits = b["sticky_hits"].as_u64().unwrap_or(0);
    let share = if requests == 0 {
        NONE.to_owned()
    } else {
        format!("{:.1}%", hits as f64 * 100.0 / requests as f64)
    };
    let (check, age) = match b.get("last_check").filter(|c| c.is_object()) {
        Some(c) => {
            let word = if c["pass"] == true { "pass" } else { "fail" };
            let unix = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let age = unix.saturating_sub(c["at_unix"].as_u64().unwrap_or(unix));
            (format!("<span class=\"{word}\">{word}</span> {}", text(&c["detail"])), format!("{age} s"))
        }
        None => (NONE.to_owned(), NONE.to_owned()),
    };
    let weight = match (b.get("weight"), b.get("maxconn"), b.get("queued")) {
        (None, None, None) => NONE.to_owned(),
        (w, m, q) => {
            let show = |v: Option<&Value>| v.map_or_else(|| NONE.to_owned(), text);
            format!("{} / {} / {}", show(w), show(m), show(q))
        }
    };
    let health_checks = match b["health_checks"].as_str() {
        Some("disabled") => " <small>(checks disabled)</small>",
        _ => "",
    };
    let _ = writeln!(
        out,
        "<tr data-backend=\"{id}\" data-health=\"{health}\" data-admin=\"{admin}\">\
         <td class=\"act\">{actions}</td>\
         <td data-live=\"{id}-id\"><b>{id}</b></td>\
         <td data-live=\"{id}-health\"><span class=\"b {health}\">{health}</span>{health_checks}</td>\
         <td data-live=\"{id}-admin\"><span class=\"b {admin}\">{admin_text}</span></td>\
         <td class=\"n\" data-live=\"{id}-in-flight\">{in_flight}</td>\
         <td class=\"n\" data-live=\"{id}-requests\">{requests}</td>\
         <td class=\"n\" data-live=\"{id}-hits\">{hits}</td>\
         <td class=\"n\" data-live=\"{id}-share\">{share}</td>\
         <td class=\"n\" data-live=\"{id}-failures\">{failures}</td>\
         <td class=\"n\" data-live=\"{id}-last-request\">{last_request}</td>\
         <td class=\"n\" data-live=\"{id}-in-state\">{in_state}</td>\
         <td class=\"n\" data-live=\"{id}-bytes\">{bytes}</td>\
         <td class=\"n\" data-live=\"{id}-weight\">{weight}</td>\
         <td class=\"why\" data-live=\"{id}-check\">{check}</td>\
         <td class=\"n\" data-live=\"{id}-check-age\">{age}</td>\
         <td class=\"n\" data-live=\"{id}-transitions\">{transitions}</td>\
         <td class=\"why\" data-live=\"{id}-reason\">{reason}</td>\
         <td><code>{url}</code></td><td>{role}</td></tr>",
        actions = actions(&id),
        in_flight = text(&b["in_flight"]),
        failures = text(&b["passive_failures"]),
        last_request = b["last_request_age_s"]
            .as_f64()
            .map_or_else(|| NONE.to_owned(), |s| format!("{} s ago", s.floor())),
        in_state = seconds(&b["time_in_state_s"]),
        bytes = bytes(b),
        transitions = text(&b["transitions"]),
        reason = text(&b["last_transition"]),
        url = text(&b["url"]),
        role = text(&b["role"]),
    );
}

/// The node's one action menu: a form whose buttons post to `/backends/{id}/{action}`; the deadline
/// field applies to drain (Enter in it drains).
fn actions(id: &str) -> String {
    // Run-time health check disable/enable buttons belong in this form too.
    format!(
        "<form method=\"post\" action=\"/backends/{id}/drain\">\
         <input type=\"number\" name=\"deadline_s\" min=\"0\" step=\"1\" inputmode=\"numeric\" \
         placeholder=\"deadline s\" aria-label=\"drain deadline of {id} in seconds\">\
         <button name=\"action\" value=\"drain\">drain</button>\
         <button name=\"action\" value=\"ready\" formaction=\"/backends/{id}/ready\">ready</button>\
         <button name=\"action\" value=\"maint\" formaction=\"/backends/{id}/maint\">maint</button></form>"
    )
}

/// Live sessions per embedded node (the model's `auth_nodes`).
fn sessions_table(out: &mut String, nodes: &Value) {
    let Some(rows) = nodes.as_array().filter(|r| !r.is_empty()) else { return };
    out.push_str(
        "<h2>Sessions <small>live, by the node that created them</small></h2>\n\
         <div class=\"scroll\"><table data-live=\"sessions\"><tr><th>node</th><th class=\"n\">live sessions</th></tr>\n",
    );
    for row in rows {
        let live = row["live_sessions"].as_u64().map_or_else(|| "in the store".to_owned(), |n| n.to_string());
        let _ = writeln!(
            out,
            "<tr data-sessions-node=\"{id}\"><td>{id}</td><td class=\"n\">{live}</td></tr>",
            id = text(&row["id"])
        );
    }
    out.push_str("</table></div>\n");
}

#[cfg(test)]
mod tests;
