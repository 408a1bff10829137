//! The admin status page: `GET /status` serves one row per node with its forms, and a real
//! headless Chromium renders it, screenshots it, and drains a node through its plain HTML form.
//!
//! The browser half needs `node`, Chromium (`$CHROMIUM` or `/usr/bin/chromium`) and
//! `tests/browser/node_modules/playwright-core` (`npm ci` in `tests/browser`, as `.ci/run` does). Without
//! them it is skipped with a message, except under CI (`CI` set), where it fails: CI must run it.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::{Cluster, TestBackend, Tools, backend_status, client, eventually, served_by};

/// The `<tr data-backend="ID" …>…</tr>` of a node.
fn row<'a>(page: &'a str, id: &str) -> &'a str {
    let start =
        page.find(&format!("<tr data-backend=\"{id}\"")).unwrap_or_else(|| panic!("no row {id}: {page}"));
    let len = page[start..].find("</tr>").expect("row ends");
    &page[start..start + len]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_lists_every_node_and_its_drain_form_works_in_a_browser() {
    let a = TestBackend::start("01").await;
    let b = TestBackend::start("02").await;
    let proxy = Cluster::of(&[&a, &b]).fast_checks().start().await;
    eventually("both nodes have been checked", Duration::from_secs(10), async || {
        let (s1, s2) = (backend_status(&proxy, "01").await, backend_status(&proxy, "02").await);
        s1["last_check"]["pass"] == true && s2["last_check"]["pass"] == true
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
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"2\">"), "{page}");
    assert!(!page.to_ascii_lowercase().contains("<script"), "the page has no JavaScript: {page}");
    for id in ["01", "02"] {
        let r = row(&page, id);
        assert!(r.contains("data-health=\"up\" data-admin=\"ready\""), "{r}");
        assert!(r.contains("<span class=\"pass\">pass</span>"), "the last check passed: {r}");
        for action in ["drain", "ready", "maint"] {
            assert!(r.contains(&format!("<form method=\"post\" action=\"/backends/{id}/{action}\">")), "{r}");
            assert!(r.contains(&format!("<button name=\"action\" value=\"{action}\">")), "{r}");
        }
        assert!(!r.contains("name=\"token\""), "no admin token is configured: {r}");
    }
    // 01 took the 3 pinned requests (sticky hits) and some of the unpinned ones.
    let s01 = backend_status(&proxy, "01").await;
    let (hits, requests) = (s01["sticky_hits"].as_u64().unwrap(), s01["requests"].as_u64().unwrap());
    assert_eq!(hits, 3, "{s01}");
    let share = format!("{:.1}%", hits as f64 * 100.0 / requests as f64);
    let cells = format!("<td class=\"n\">{requests}</td><td class=\"n\">3</td><td class=\"n\">{share}</td>");
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
    let shot = target.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let admin = format!("http://{}", proxy.admin);
    let (script, shot_arg) = (root.join("tests/browser/status.mjs"), shot.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(node)
            .arg(script)
            .arg(admin)
            .arg(shot_arg)
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
    assert_eq!(backend_status(&proxy, "02").await["admin"], "drain", "the drain form drained 02");
    assert_eq!(backend_status(&proxy, "01").await["admin"], "ready", "and nothing else");
}
