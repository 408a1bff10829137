//! The login page: `GET /am/XUI/` through the proxy, in a real headless Chromium, logs `demo` in with
//! name, password and one-time code (`mfa`), shows AM's message for a wrong password, starts over on
//! `Session has timed out` (a step replayed with an answered `authId`, which the node refuses with 110),
//! shows the user name, and logs out.
//!
//! The cluster is the SDK tests' strictest: 01 and 02 active, 03 passive, in-memory journeys and
//! node-local sessions behind one round-robin proxy, so a step that reached another node than the one
//! holding the login would fail with 110: the page only gets through if the cookies it is given keep it
//! on one node. The token is then checked from outside the browser, through the proxy.
//!
//! The browser half needs `node`, Chromium (`$CHROMIUM` or `/usr/bin/chromium`) and
//! `tests/browser/node_modules/playwright-core` (`npm ci` in `tests/browser`). Without them it is skipped
//! with a message, except under CI (`CI` set), where it fails.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc::unbounded_channel;
use tokio::time::{Instant, timeout_at};

use support::{Cluster, Journey, Tools, client, totp_now};

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_and_out_through_the_proxy_with_the_login_page() {
    let proxy = Cluster::new().active(["01", "02"]).passive("03").start().await;
    let http = client();

    // (a) As served: the context path redirects to the page, which carries its own policy.
    let root = http.get(proxy.url("/am/")).send().await.unwrap();
    assert_eq!(root.status(), 302);
    assert_eq!(root.headers()["location"], "/am/XUI/");
    let resp = client().get(proxy.url("/am/XUI/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let page = resp.text().await.unwrap();
    assert!(page.contains("/authenticate"), "the page runs the REST login");

    // (b) A real browser.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let Some(Tools { node, chromium }) =
        Tools::find("login page check", "tests/browser", &["playwright-core"], true)
    else {
        return;
    };
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from);
    std::fs::create_dir_all(&target).unwrap();
    let shot = target.join("login-page.png");
    let _ = std::fs::remove_file(&shot);
    let mut child = Command::new(node)
        .arg(dir.join("tests/browser/login.mjs"))
        .arg(proxy.url(""))
        .arg(&shot)
        .env("CHROMIUM", chromium)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let (tx, mut lines) = unbounded_channel();
    let pipes: [(&str, Box<dyn Read + Send>); 2] =
        [("out", Box::new(child.stdout.take().unwrap())), ("err", Box::new(child.stderr.take().unwrap()))];
    for (name, pipe) in pipes {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(format!("{name}: {line}")).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut stdin = child.stdin.take().unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut transcript = Vec::new();
    let mut next = async |what: &str| -> Option<String> {
        let line = timeout_at(deadline, lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}: {transcript:?}"));
        if let Some(l) = &line {
            println!("[browser] {l}");
            transcript.push(l.clone());
        }
        line
    };

    let mut journey = Journey::new(proxy.url(""), false);
    let mut token = None;
    while let Some(line) = next("token").await {
        if line == "out: NEED_CODE" {
            writeln!(stdin, "{}", totp_now()).unwrap();
        } else if let Some(t) = line.strip_prefix("out: TOKEN ") {
            token = Some(t.to_owned());
            break;
        }
    }
    let token = token.expect("the page signed in and printed the session cookie");
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "no screenshot at {}", shot.display());
    println!("screenshot: {} ({size} bytes)", shot.display());
    let valid = journey.validate(&token).await;
    assert_eq!(valid["valid"], true, "the cookie the page got is a live session: {valid}");
    assert_eq!(valid["uid"], "demo");

    writeln!(stdin, "logout").unwrap();
    let mut done = false;
    while let Some(line) = next("the logout").await {
        done |= line == "out: DONE";
    }
    assert!(done, "the page logged out");
    let status = child.wait().expect("node exits");
    assert!(status.success(), "the browser check failed ({status})");
    assert_eq!(journey.validate(&token).await["valid"], false, "logout ended the session");
}
