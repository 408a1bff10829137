//! The status page (`GET /status`): one HTML table per pool, one row per node, readable at a glance;
//! and the same facts as JSON (`GET /status.json`, also the answer of a state change).
//!
//! Modelled on HAProxy's stats page, but with what matters for a sticky auth cluster: which nodes take new
//! clients (health and admin state), how much traffic arrived pinned (sticky hits and share), and why a node
//! last changed health.
//!
//! The page has no JavaScript and loads nothing else: the CSS is inline, it refreshes itself with
//! `<meta http-equiv="refresh">`, and the drain/ready/maint buttons are plain HTML forms posting to
//! `/backends/{id}/…`. So it works in any browser, on locked-down operator consoles whose policy blocks
//! scripts, and in text browsers (`lynx`, `w3m`) over an SSH tunnel. Every dynamic string is escaped with
//! [`escape`]; IDs are validated at load time, but check details and transition reasons carry text from
//! the network (error messages, status lines).
//!
//! Stable hooks for tests and scrapers: each node row is `<tr data-backend="ID" data-health="up|down"
//! data-admin="ready|drain|maint">`, each button `<button name="action" value="drain|ready|maint">`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::am::time::iso_utc_of;
use crate::proxy::Snapshot;
use crate::upstream::{AdminState, Backend, Health, Pool};

/// Seconds between refreshes of the page.
const REFRESH_S: u32 = 2;

/// Placeholder for a value that does not exist yet (no requests, no check).
const NONE: &str = "–";

const CSS: &str = "\
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.2em;color:#1d232a;background:#fafafa}\
h1{font-size:1.3em;margin:0}h2{font-size:1.1em;margin:1.4em 0 .4em}h2 small{font-weight:normal;color:#5c6670}\
header p{margin:.2em 0;color:#5c6670}.scroll{overflow-x:auto}\
table{border-collapse:collapse;background:#fff;box-shadow:0 0 0 1px #d5dae0}\
th,td{padding:.3em .6em;border-bottom:1px solid #e3e7eb;text-align:left;vertical-align:top;white-space:nowrap}\
th{background:#eef1f4;font-weight:600;font-size:.85em;white-space:normal;vertical-align:bottom}\
th.n,td.n{text-align:right;font-variant-numeric:tabular-nums}\
td.why{white-space:normal;min-width:12em;max-width:24em;color:#3d4650;font-size:.9em}\
tr[data-health=down] td{background:#fdeeee}tr[data-admin=maint] td{background:#f1f1f1;color:#6b7178}\
.b{display:inline-block;padding:0 .5em;border-radius:.8em;font-weight:600;font-size:.9em}\
.up{background:#d7f5de;color:#136c2e}.down{background:#fbd5d5;color:#a11616}\
.ready{background:#e3ecfb;color:#1f4f9c}.drain{background:#fdebc8;color:#8a5300}.maint{background:#e2e2e2;color:#444}\
.pass{color:#136c2e;font-weight:600}.fail{color:#a11616;font-weight:600}\
form{display:inline;margin:0}.tok form{display:block;margin-bottom:.2em}\
button{font:inherit;font-size:.85em;padding:.1em .6em;margin-right:.2em;cursor:pointer;min-width:4.5em}\
input{font:inherit;font-size:.85em;width:8em;margin-right:.2em}\
code{font-size:.95em}";

/// Column headings, and whether the column is numeric (right-aligned).
const COLUMNS: [(&str, bool); 15] = [
    ("ID", false),
    ("URL", false),
    ("role", false),
    ("health", false),
    ("admin", false),
    ("in flight", true),
    ("requests", true),
    ("sticky hits", true),
    ("sticky share", true),
    ("passive failures", true),
    ("last check", false),
    ("check age", true),
    ("transitions", true),
    ("last transition", false),
    ("set state", false),
];

/// Renders the status page. With `token_required`, each form carries a password field named `token`.
pub fn render(snap: &Snapshot, token_required: bool) -> String {
    render_at(snap, token_required, SystemTime::now())
}

fn render_at(snap: &Snapshot, token_required: bool, now: SystemTime) -> String {
    let rendered = iso_utc_of(now);
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>tether status</title><style>{CSS}</style></head>\n<body>\n<header><h1>tether status</h1>\
         <p>Rendered <time datetime=\"{rendered}\">{rendered}</time> (UTC), refreshed every {REFRESH_S} s. \
         Machine-readable: <a href=\"/status.json\">/status.json</a>, <a href=\"/metrics\">/metrics</a>.</p>\
         </header>\n"
    );
    for pool in &snap.upstreams.pools {
        pool_table(&mut out, pool, token_required, now);
    }
    if snap.upstreams.pools.is_empty() {
        out.push_str("<p>No pools are configured.</p>\n");
    }
    out.push_str("</body></html>\n");
    out
}

fn pool_table(out: &mut String, pool: &Pool, token_required: bool, now: SystemTime) {
    let total = pool.backends.len();
    let up = pool.backends.iter().filter(|b| b.state.health() == Health::Up).count();
    let taking = pool.backends.iter().filter(|b| b.state.takes_new()).count();
    let balance = pool.balance.as_str();
    let _ = write!(
        out,
        "<section data-pool=\"{name}\"><h2>Pool {name} <small>{balance}, cookie <code>{cookie}</code>: \
         {up} of {total} up, {taking} taking new clients</small></h2>\n<div class=\"scroll\">\
         <table{class}>\n<thead><tr>",
        class = if token_required { " class=\"tok\"" } else { "" },
        name = escape(&pool.name),
        cookie = escape(&pool.affinity.cookie),
    );
    for (name, numeric) in COLUMNS {
        let _ = write!(out, "<th{}>{name}</th>", if numeric { " class=\"n\"" } else { "" });
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for b in &pool.backends {
        backend_row(out, b, token_required, now);
    }
    out.push_str("</tbody></table></div></section>\n");
}

fn backend_row(out: &mut String, b: &Backend, token_required: bool, now: SystemTime) {
    let s = &b.state;
    let id = escape(b.id.as_str());
    let health = if s.health() == Health::Up { "up" } else { "down" };
    let admin = s.admin().as_str();
    let admin_text = match (s.admin(), s.drain_left()) {
        (AdminState::Drain, Some(left)) => format!("drain, {} s left", left.as_secs()),
        (state, _) => state.as_str().to_string(),
    };
    let (requests, hits) = (s.requests(), s.sticky_hits());
    let share = if requests == 0 {
        NONE.to_string()
    } else {
        format!("{:.1}%", hits as f64 * 100.0 / requests as f64)
    };
    let info = s.health_info();
    let (check, age) = match &info.last_check {
        Some(c) => {
            let (class, word) = if c.pass { ("pass", "pass") } else { ("fail", "fail") };
            let age = now.duration_since(c.at).map(|d| d.as_secs()).unwrap_or(0);
            (format!("<span class=\"{class}\">{word}</span> {}", escape(&c.detail)), format!("{age} s"))
        }
        None => (NONE.to_string(), NONE.to_string()),
    };
    let reason = info.last_reason.as_deref().map_or_else(|| NONE.to_string(), escape);
    let _ = write!(
        out,
        "<tr data-backend=\"{id}\" data-health=\"{health}\" data-admin=\"{admin}\">\
         <td><b>{id}</b></td><td><code>{url}</code></td><td>{role}</td>\
         <td><span class=\"b {health}\">{health}</span></td><td><span class=\"b {admin}\">{admin_text}</span></td>\
         <td class=\"n\">{in_flight}</td><td class=\"n\">{requests}</td><td class=\"n\">{hits}</td>\
         <td class=\"n\">{share}</td><td class=\"n\">{failures}</td><td class=\"why\">{check}</td><td class=\"n\">{age}</td>\
         <td class=\"n\">{transitions}</td><td class=\"why\">{reason}</td><td>",
        url = escape(&format!("{}://{}", b.scheme, b.authority)),
        role = b.role.as_str(),
        in_flight = s.in_flight(),
        failures = s.failures(),
        transitions = info.transitions,
    );
    for action in [AdminState::Drain, AdminState::Ready, AdminState::Maint] {
        let action = action.as_str();
        let _ = write!(out, "<form method=\"post\" action=\"/backends/{id}/{action}\">");
        if token_required {
            out.push_str("<input type=\"password\" name=\"token\" placeholder=\"admin token\" required>");
        }
        let _ = write!(out, "<button name=\"action\" value=\"{action}\">{action}</button></form>");
    }
    out.push_str("</td></tr>\n");
}

/// `/status.json`: every pool and backend with role, health, admin state, traffic and the last check.
pub fn json(snap: &Snapshot) -> Value {
    let pools: Vec<Value> = snap
        .upstreams
        .pools
        .iter()
        .map(|pool| {
            let backends: Vec<Value> = pool.backends.iter().map(backend_json).collect();
            json!({"name": pool.name, "balance": pool.balance.as_str(), "backends": backends})
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
        // No `maxconn` yet: every node is unlimited and nothing queues.
        "maxconn": null,
        "queued": 0,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::upstream::StateRegistry;

    fn snapshot() -> Snapshot {
        let toml = "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
            [[pool]]\nname = \"am\"\n\
            [[pool.backend]]\nid = \"01\"\nurl = \"http://127.0.0.1:8081\"\n\
            [[pool.backend]]\nid = \"02\"\nurl = \"http://127.0.0.1:8082\"\n\
            [[pool.backend]]\nid = \"03\"\nurl = \"http://127.0.0.1:8083\"\nrole = \"passive\"\n\n\
            [[route]]\npath_prefix = \"/\"\npool = \"am\"\n";
        let config = crate::config::parse(toml).expect("test config");
        Snapshot::build(Arc::new(config), &StateRegistry::default(), &crate::metrics::Metrics::default())
    }

    fn row<'a>(page: &'a str, id: &str) -> &'a str {
        let start = page.find(&format!("<tr data-backend=\"{id}\"")).unwrap_or_else(|| panic!("no row {id}"));
        let len = page[start..].find("</tr>").expect("row ends");
        &page[start..start + len]
    }

    #[test]
    fn escape_covers_the_five_html_specials() {
        assert_eq!(escape(r#"<a href="x">Tom & 'Jerry'</a>"#), {
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        });
        assert_eq!(escape("plain 01 – ok"), "plain 01 – ok");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn the_page_has_a_row_and_three_forms_per_backend_and_refreshes_without_script() {
        let snap = snapshot();
        let page = render(&snap, false);
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"2\">"));
        assert!(!page.to_ascii_lowercase().contains("<script"), "no JavaScript at all");
        assert!(!page.contains("src="), "no external assets");
        assert!(!page.contains("<link"), "no external stylesheet");
        for (id, role) in [("01", "active"), ("02", "active"), ("03", "passive")] {
            let r = row(&page, id);
            assert!(
                r.starts_with(&format!("<tr data-backend=\"{id}\" data-health=\"up\" data-admin=\"ready\">"))
            );
            assert!(r.contains(&format!("<code>http://127.0.0.1:808{}</code>", &id[1..])), "{r}");
            assert!(r.contains(&format!("<td>{role}</td>")), "{r}");
            for action in ["drain", "ready", "maint"] {
                assert!(
                    r.contains(&format!("<form method=\"post\" action=\"/backends/{id}/{action}\">")),
                    "{r}"
                );
                assert!(r.contains(&format!("<button name=\"action\" value=\"{action}\">")), "{r}");
            }
            assert!(r.contains("<td class=\"n\">–</td>"), "no requests yet, so no sticky share: {r}");
            assert_eq!(r.matches("<td").count(), COLUMNS.len(), "one cell per column: {r}");
        }
        assert!(!page.contains("name=\"token\""), "no token field unless one is required");
        assert!(page.contains("Pool am"));
    }

    #[test]
    fn a_required_token_adds_a_password_field_to_every_form() {
        let page = render(&snapshot(), true);
        let field = "<input type=\"password\" name=\"token\" placeholder=\"admin token\" required>";
        assert_eq!(page.matches(field).count(), 9, "three forms for each of three backends");
        assert_eq!(page.matches("<form ").count(), 9);
    }

    #[test]
    fn live_state_shows_up_escaped() {
        let snap = snapshot();
        let pool = &snap.upstreams.pools[0];
        let (a, b) = (&pool.backends[0].state, &pool.backends[1].state);
        for _ in 0..4 {
            drop(a.begin());
        }
        a.count_sticky_hit();
        let _in_flight = a.begin();
        a.record_check(true, "200".into(), 2, 2);
        b.record_check(false, "<script>alert('x')</script> & co".into(), 2, 1);
        b.set_admin(AdminState::Drain, Some(Duration::from_secs(30)));
        pool.backends[2].state.set_admin(AdminState::Maint, None);

        let page = render(&snap, false);
        assert!(!page.contains("<script"), "check details are escaped");
        let r01 = row(&page, "01");
        assert!(
            r01.contains(
                "<td class=\"n\">1</td><td class=\"n\">5</td><td class=\"n\">1</td><td class=\"n\">20.0%</td>"
            ),
            "in flight, requests, hits, share: {r01}"
        );
        assert!(r01.contains("<span class=\"pass\">pass</span> 200</td><td class=\"n\">0 s</td>"), "{r01}");
        let r02 = row(&page, "02");
        assert!(
            r02.starts_with("<tr data-backend=\"02\" data-health=\"down\" data-admin=\"drain\">"),
            "{r02}"
        );
        let left = ["29", "30"].map(|n| format!("<span class=\"b drain\">drain, {n} s left</span>"));
        assert!(left.iter().any(|l| r02.contains(l)), "{r02}");
        assert!(r02.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"), "{r02}");
        assert!(r02.contains("1 check(s) failed in a row (last: &lt;script&gt;"), "{r02}");
        assert!(r02.contains("<td class=\"n\">1</td><td class=\"why\">"), "one transition: {r02}");
        assert!(row(&page, "03").contains("data-admin=\"maint\""));
        assert!(page.contains("2 of 3 up, 1 taking new clients"), "02 is down, 03 in maint");
    }

    #[test]
    fn the_header_shows_the_render_time_in_utc() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_442_592);
        let page = render_at(&snapshot(), false, at);
        assert!(page.contains("<time datetime=\"2026-11-23T14:03:12Z\">2026-11-23T14:03:12Z</time>"));
    }
}
