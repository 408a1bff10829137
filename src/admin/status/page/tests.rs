use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::admin::status::json as model_of;
use crate::proxy::Snapshot;
use crate::upstream::{AdminState, StateRegistry};

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

const OPEN: View = View { token_required: false, how: Some(How::Open), refresh: true };

fn row<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page.find(&format!("<tr data-backend=\"{id}\"")).unwrap_or_else(|| panic!("no row {id}"));
    let len = page[start..].find("</tr>").expect("row ends");
    &page[start..start + len]
}

#[test]
fn each_node_has_one_action_form_first_with_a_deadline_field() {
    let page = render(&model_of(&snapshot()), &OPEN);
    assert!(page.starts_with("<!doctype html>"));
    assert_eq!(page.matches("<form ").count(), 3, "one form per node");
    for (id, role) in [("01", "active"), ("02", "active"), ("03", "passive")] {
        let r = row(&page, id);
        assert!(
            r.starts_with(&format!("<tr data-backend=\"{id}\" data-health=\"up\" data-admin=\"ready\">"))
        );
        assert!(
            r.contains(&format!("<td class=\"act\"><form method=\"post\" action=\"/backends/{id}/drain\">")),
            "the actions come first: {r}"
        );
        assert!(r.contains("name=\"deadline_s\""), "{r}");
        for action in ["ready", "maint"] {
            assert!(r.contains(&format!("formaction=\"/backends/{id}/{action}\"")), "{r}");
        }
        for action in ["drain", "ready", "maint"] {
            assert!(r.contains(&format!("<button name=\"action\" value=\"{action}\"")), "{r}");
        }
        assert!(r.contains(&format!("<td>{role}</td>")), "{r}");
        assert_eq!(r.matches("<td").count(), COLUMNS.len() + 1, "one cell per column: {r}");
    }
    assert!(!page.contains("name=\"token\""), "the token is entered once, at /login, not per form");
    assert!(page.contains("Pool am"));
    assert!(page.contains("round-robin"), "the config's own word");
}

#[test]
fn the_refresh_is_a_script_that_keeps_the_forms_or_a_noscript_reload_that_can_be_paused() {
    let page = render(&model_of(&snapshot()), &OPEN);
    assert!(page.contains("<noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>"));
    assert!(page.contains("<script>") && page.contains("setInterval(tick,2000)"));
    assert!(page.contains("href=\"/status?refresh=off\""), "a pause without JavaScript");
    assert!(!row(&page, "01").contains("<td class=\"act\" data-live"), "the forms are never swapped");
    let paused = render(&model_of(&snapshot()), &View { refresh: false, ..OPEN });
    assert!(!paused.contains("http-equiv=\"refresh\"") && !paused.contains("<script>"));
    assert!(paused.contains("resume refresh"));
}

#[test]
fn the_login_note_follows_the_token_and_the_caller() {
    let model = model_of(&snapshot());
    let page = |how| render(&model, &View { token_required: true, how, refresh: true });
    assert!(page(None).contains("<a href=\"/login\">log in</a>"));
    assert!(page(Some(How::Basic)).contains("Logged in (basic auth)"));
}

#[test]
fn live_state_and_keys_added_to_the_model_show_up_escaped() {
    let snap = snapshot();
    let pool = &snap.upstreams.pools[0];
    let (a, b) = (&pool.backends[0].state, &pool.backends[1].state);
    for _ in 0..4 {
        drop(a.begin());
    }
    a.count_sticky_hit();
    a.record_check(true, "200".into(), 2, 2);
    b.record_check(false, "<script>alert('x')</script> & co".into(), 2, 1);
    b.set_admin(AdminState::Drain, Some(Duration::from_secs(30)));
    let mut model = model_of(&snap);
    model["process"] = json!({"version": "9.9.9", "revision": "0123456789ab", "started_at": "2026-12-02T18:00:00Z", "uptime_s": 61.5,
        "config_file": "/etc/tether/tether.toml", "reloads": 1, "shutting_down": false,
        "rss_bytes": 12_582_912, "open_fds": 17, "max_fds": 1024,
        "last_reload": {"at": "2026-12-02T18:01:00Z", "ok": false, "error": "bad <key>"}});
    let backend = &mut model["pools"][0]["backends"][0];
    backend["last_request_age_s"] = json!(3.7);
    backend["time_in_state_s"] = json!(120);
    backend["bytes_to_node"] = json!(100);
    backend["bytes_from_node"] = json!(2000);
    backend["weight"] = json!(3);
    backend["maxconn"] = json!(null);
    backend["queued"] = json!(0);
    let page = render(&model, &OPEN);
    let r01 = row(&page, "01");
    assert!(r01.contains(">4</td>") && r01.contains(">25.0%</td>"), "requests, share: {r01}");
    assert!(r01.contains(">3 s ago</td>") && r01.contains(">120 s</td>"), "{r01}");
    assert!(r01.contains(">100 / 2000</td>") && r01.contains(">3 / – / 0</td>"), "{r01}");
    assert!(
        page.contains("<dd>9.9.9 (0123456789ab)</dd>") && page.contains("<dd>61 s</dd>"),
        "process block"
    );
    assert!(page.contains("<dd>12.0 MiB</dd>") && page.contains("<dd>17 of 1024</dd>"), "process figures");
    assert!(page.contains("failed</span> at 2026-12-02T18:01:00Z: bad &lt;key&gt;"), "last reload");
    let r02 = row(&page, "02");
    assert!(r02.starts_with("<tr data-backend=\"02\" data-health=\"down\" data-admin=\"drain\">"));
    assert!(r02.contains("drain, 30 s left") || r02.contains("drain, 29 s left"), "{r02}");
    assert!(r02.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"), "{r02}");
    assert!(!r02.contains("<script>alert"), "check details are escaped");
    assert!(page.contains("2 of 3 up, 2 taking new clients"), "02 is down");
}

#[test]
fn the_header_shows_the_render_time_in_utc() {
    let at = UNIX_EPOCH + Duration::from_secs(1_795_442_592);
    let page = render_at(&model_of(&snapshot()), &OPEN, at);
    assert!(page.contains("datetime=\"2026-11-23T14:03:12Z\">2026-11-23T14:03:12Z</time>"));
}
