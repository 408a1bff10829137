//! The admin status page: `GET /status` serves one row per node with its action form first, and a real
//! headless Chromium at 1280x900 logs in once (basic auth), finds every node's actions in view, keeps
//! what is typed across a refresh, and drains a node with a deadline through its form. And the logs say
//! who did what: a failed login names the user and the client, an admin drain its caller.
//!
//! The browser half needs `node`, Chromium (`$CHROMIUM` or `/usr/bin/chromium`) and
//! `tests/browser/node_modules/playwright-core` (`npm ci` in `tests/browser`, as `.ci/run` does). Without
//! them it is skipped with a message, except under CI (`CI` set), where it fails: CI must run it.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::{Cluster, TestBackend, TetherProcess, Tools, backend_status, client, eventually, served_by};

/// The `<tr data-backend="ID" …>…</tr>` of a node.
fn row<'a>(page: &'a str, id: &str) -> &'a str {
    let start =
        page.find(&format!("<tr data-backend=\"{id}\"")).unwrap_or_else(|| panic!("no row {id}: {page}"));
    let len = page[start..].find("</tr>").expect("row ends");
    &page[start..start + len]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_acts_from_1280x900_after_one_login_and_keeps_what_is_typed() {
    let a = TestBackend::start("01").await;
    let b = TestBackend::start("02").await;
    let c = TestBackend::start("03").await;
    let proxy = Cluster::of(&[&a, &b, &c]).fast_checks().proxy("admin_token", TOKEN).start().await;
    eventually("every node has been checked", Duration::from_secs(10), async || {
        let (s1, s2) = (backend_status(&proxy, "01").await, backend_status(&proxy, "02").await);
        let s3 = backend_status(&proxy, "03").await;
        s1["last_check"]["pass"] == true
            && s2["last_check"]["pass"] == true
            && s3["last_check"]["pass"] == true
    })
    .await;
    let http = client();
    for _ in 0..4 {
        assert_eq!(http.get(proxy.url("/x")).send().await.unwrap().status(), 200);
    }
    for _ in 0..3 {
        let pinned = http.get(proxy.url("/x")).header("cookie", "amlbcookie=01").send().await.unwrap();
        assert_eq!(served_by(pinned).await, "01");
    }

    // (a) The page as served: always checked.
    let resp = http.get(proxy.admin_url("/status")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = resp.text().await.unwrap();
    // Without JavaScript the page still reloads itself, and can be paused.
    assert!(page.contains("<noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>"), "{page}");
    assert!(page.contains("href=\"/status?refresh=off\""), "{page}");
    assert!(page.contains("<a href=\"/login\">log in</a>"), "not logged in yet: {page}");
    for id in ["01", "02", "03"] {
        let r = row(&page, id);
        assert!(r.contains("data-health=\"up\" data-admin=\"ready\""), "{r}");
        assert!(r.contains("<span class=\"pass\">pass</span>"), "the last check passed: {r}");
        assert!(r.contains(&format!("<form method=\"post\" action=\"/backends/{id}/drain\">")), "{r}");
        for action in ["drain", "ready", "maint"] {
            assert!(r.contains(&format!("<button name=\"action\" value=\"{action}\"")), "{r}");
        }
        assert!(!r.contains("name=\"token\""), "the token is entered once, not per form: {r}");
    }
    // /login challenges for basic auth until the token comes as the password; then back to the page.
    let login = http.get(proxy.admin_url("/login")).send().await.unwrap();
    assert_eq!(login.status(), 401);
    assert!(login.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic realm="));
    let wrong = http.get(proxy.admin_url("/login")).basic_auth("op", Some("nope")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let basic = client_no_redirect().get(proxy.admin_url("/login")).basic_auth("op", Some(TOKEN));
    let basic = basic.send().await.unwrap();
    assert_eq!(basic.status(), 303);
    assert_eq!(basic.headers()["location"], "/status");
    // A script keeps using the Bearer token.
    let drained = http.post(proxy.admin_url("/backends/03/drain?deadline_s=5")).bearer_auth(TOKEN);
    assert_eq!(drained.send().await.unwrap().status(), 200);
    let ready = http.post(proxy.admin_url("/backends/03/ready")).basic_auth("x", Some(TOKEN));
    assert_eq!(ready.send().await.unwrap().status(), 200);
    // 01 took the 3 pinned requests (sticky hits) and some of the unpinned ones.
    let s01 = backend_status(&proxy, "01").await;
    let (hits, requests) = (s01["sticky_hits"].as_u64().unwrap(), s01["requests"].as_u64().unwrap());
    assert_eq!(hits, 3, "{s01}");
    let share = format!("{:.1}%", hits as f64 * 100.0 / requests as f64);
    let cells = format!(
        "<td class=\"n\" data-live=\"01-requests\">{requests}</td><td class=\"n\" data-live=\"01-hits\">3</td>\
         <td class=\"n\" data-live=\"01-share\">{share}</td>"
    );
    assert!(row(&page, "01").contains(&cells), "requests, sticky hits and share of 01 ({cells}): {page}");

    // (b) A real browser: render, screenshot, click drain on 02.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let Some(Tools { node, chromium }) =
        Tools::find("browser check", "tests/browser", &["playwright-core"], true)
    else {
        return;
    };
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    std::fs::create_dir_all(&target).unwrap();
    let shot = target.join("status-1280x900.png");
    let _ = std::fs::remove_file(&shot);
    let admin = format!("http://{}", proxy.admin);
    let (script, shot_arg) = (root.join("tests/browser/status.mjs"), shot.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(node)
            .arg(script)
            .arg(admin)
            .arg(shot_arg)
            .arg(TOKEN)
            .env("CHROMIUM", chromium)
            .current_dir(root)
            .output()
    })
    .await
    .unwrap()
    .expect("node runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("browser check stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(out.status.success(), "the browser check failed ({}): {stderr}", out.status);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "no screenshot at {}", shot.display());
    println!("screenshot: {} ({size} bytes)", shot.display());
    let s02 = backend_status(&proxy, "02").await;
    assert_eq!(s02["admin"], "drain", "the drain form drained 02: {s02}");
    let left = s02["drain_left_s"].as_u64().unwrap_or(0);
    assert!((1..=600).contains(&left), "with the deadline typed: {s02}");
    assert_eq!(backend_status(&proxy, "03").await["admin"], "maint", "the form works without JavaScript");
    assert_eq!(backend_status(&proxy, "01").await["admin"], "ready", "and nothing else");
}

const TOKEN: &str = "page-token-0123456789abcdef";

fn client_no_redirect() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A failed login's line names the user and the client (the address the proxy trusts: here the right-most
/// one a trusted proxy's `X-Forwarded-For` names, not the spoofable left-most), and so does the lockout's; an admin drain's line names its
/// caller, how it authenticated and the result, and every admin request has an access line.
#[tokio::test]
async fn failed_logins_lockouts_and_admin_changes_are_logged_with_who() {
    let cluster = Cluster::new()
        .active(["01"])
        .set("auth.lockout.failures", 2)
        .set("auth.lockout.within_s", 60)
        .set("auth.lockout.duration_s", 60)
        .proxy("admin_token", TOKEN)
        .proxy("trusted_proxies", toml::Value::Array(vec!["127.0.0.1/32".into()]));
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("status-page-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    std::fs::write(&file, cluster.toml()).unwrap();
    let mut tether = TetherProcess::spawn(&["run", "-c", file.to_str().unwrap()]).await;
    let http = client();
    for _ in 0..2 {
        let resp = http
            .post(format!("http://{}/am/json/realms/root/authenticate", tether.listen()))
            .header("X-OpenAM-Username", "demo")
            .header("X-OpenAM-Password", "wrong-password")
            // What a trusted load balancer sends for a client that wrote its own `X-Forwarded-For`:
            // the client's words on the left, the address the balancer saw on the right.
            .header("X-Forwarded-For", "198.51.100.66, 203.0.113.9")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let failed = tether.wait_log("authentication failed").await;
    assert_eq!(failed["user"], "demo", "{failed}");
    assert_eq!(failed["span"]["client"], "203.0.113.9", "{failed}");
    let locked = tether.wait_log("account locked: too many failed logins").await;
    assert_eq!(locked["user"], "demo", "{locked}");
    assert_eq!(locked["span"]["client"], "203.0.113.9", "{locked}");

    let admin = tether.admin();
    let resp = http.post(format!("http://{admin}/backends/01/drain?deadline_s=30")).bearer_auth(TOKEN);
    assert_eq!(resp.send().await.unwrap().status(), 200);
    let change = tether.wait_log("admin change: backend state").await;
    assert_eq!(change["backend"], "01", "{change}");
    assert_eq!(change["action"], "drain", "{change}");
    assert_eq!(change["deadline_s"], 30, "{change}");
    assert_eq!(change["auth"], "token", "{change}");
    assert_eq!(change["result"], "ok", "{change}");
    assert!(change["client"].as_str().unwrap_or_default().starts_with("127.0.0.1:"), "{change}");
    let line = tether.wait_log("admin request").await;
    assert_eq!(
        (&line["method"], &line["path"], &line["status"]),
        (&"POST".into(), &"/backends/01/drain".into(), &200.into()),
        "{line}"
    );
    assert!(line["client"].as_str().unwrap_or_default().starts_with("127.0.0.1:"), "{line}");

    // A refused change is logged too, without an authentication.
    let refused = http.post(format!("http://{admin}/backends/01/maint")).bearer_auth("wrong");
    assert_eq!(refused.send().await.unwrap().status(), 401);
    let line = tether.wait_log("admin change refused: no valid admin token").await;
    assert_eq!(line["path"], "/backends/01/maint", "{line}");
}
