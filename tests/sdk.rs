//! The official ForgeRock JavaScript SDK (`@forgerock/javascript-sdk`, pinned in
//! `tests/sdk/package.json`) completes a login through tether unmodified, from Node and in a browser.
//!
//! Each test starts three embedded nodes (01 and 02 active, 03 passive) with in-memory journeys and
//! node-local sessions behind one round-robin proxy: a step that reached another node than the one holding
//! its login would fail with 110, so a login only succeeds if the proxy keeps every step on one node. The
//! Node run keeps no cookies (the `auth_id` hint does it); the browser keeps tether's `amlbcookie`. Each
//! script prints the session token and holds; the test validates the token through the proxy, lets the
//! script log out with the SDK's `SessionManager.logout()`, and checks the token is then dead.
//!
//! Both need `node` and `tests/sdk/node_modules` (`npm ci` in `tests/sdk`, as `.ci/run` does); the browser
//! run also needs Chromium (`$CHROMIUM` or `/usr/bin/chromium`). Without them a test is skipped with a
//! message, except under CI (`CI` set), where it fails: CI must run it.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::{Instant, timeout_at};

use support::{Cluster, Journey, TOTP_SECRET, Tools};

/// Time a script gets to print its token, and then to finish.
const DEADLINE: Duration = Duration::from_secs(60);

/// Which of the two runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    Node,
    Browser,
}

impl Run {
    fn label(self) -> &'static str {
        match self {
            Run::Node => "node",
            Run::Browser => "browser",
        }
    }

    fn script(self) -> &'static str {
        match self {
            Run::Node => "tests/sdk/node_login.mjs",
            Run::Browser => "tests/sdk/browser_login.mjs",
        }
    }
}

/// A running script: its output arrives line by line (`out: …`, `err: …`) until both streams end. The
/// process is killed if the test ends first.
struct Script {
    run: Run,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: UnboundedReceiver<String>,
    transcript: Vec<String>,
}

impl Script {
    fn spawn(node: &Path, root: &Path, run: Run, base: &str, chromium: &Path) -> Self {
        let mut child = Command::new(node)
            .arg(root.join(run.script()))
            .args([base, TOTP_SECRET, "--hold"])
            .env("CHROMIUM", chromium)
            .current_dir(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node starts");
        let (tx, lines) = unbounded_channel();
        let pipes: [(&str, Box<dyn Read + Send>); 2] = [
            ("out", Box::new(child.stdout.take().expect("stdout"))),
            ("err", Box::new(child.stderr.take().expect("stderr"))),
        ];
        for (name, pipe) in pipes {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(format!("{name}: {line}")).is_err() {
                        break;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Self { run, child, stdin, lines, transcript: Vec::new() }
    }

    /// The next line, or `None` once both streams ended; panics at `deadline`.
    async fn line(&mut self, deadline: Instant, waiting_for: &str) -> Option<String> {
        match timeout_at(deadline, self.lines.recv()).await {
            Ok(line) => {
                if let Some(line) = &line {
                    println!("[{}] {line}", self.run.label());
                    self.transcript.push(line.clone());
                }
                line
            }
            Err(_) => panic!("no {waiting_for} within {DEADLINE:?}; output so far:\n{}", self.output()),
        }
    }

    /// The token of the script's `token <tokenId>` line.
    async fn token(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.line(deadline, "token line").await {
                Some(line) => {
                    if let Some(token) = line.strip_prefix("out: token ") {
                        return token.to_string();
                    }
                }
                None => panic!(
                    "the script ended without a token ({:?}):\n{}",
                    self.child.try_wait(),
                    self.output()
                ),
            }
        }
    }

    /// Lets a `--hold`ing script go on (to its logout), then waits for it to end; its exit status.
    async fn finish(&mut self) -> std::process::ExitStatus {
        if let Some(mut stdin) = self.stdin.take() {
            stdin.write_all(b"go on\n").expect("write to the script's stdin");
        }
        let deadline = Instant::now() + DEADLINE;
        while self.line(deadline, "end of the script's output").await.is_some() {}
        // Both pipes are closed: the process is exiting. Poll for its status.
        let mut poll = tokio::time::interval(Duration::from_millis(10));
        loop {
            poll.tick().await;
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the script closed its output but did not exit");
        }
    }

    fn output(&self) -> String {
        self.transcript.join("\n")
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `run`'s script against a fresh cluster and checks the login, the token and the logout.
async fn sdk_login(run: Run) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let browser = run == Run::Browser;
    let packages: &[&str] = if browser {
        &["@forgerock/javascript-sdk", "playwright-core"]
    } else {
        &["@forgerock/javascript-sdk"]
    };
    let Some(Tools { node, chromium }) = Tools::find("SDK check", "tests/sdk", packages, browser) else {
        return;
    };
    let proxy = Cluster::new().active(["01", "02"]).passive("03").start().await;
    let base = proxy.url("");
    println!("[{}] {} against {base}", run.label(), run.script());
    let mut script = Script::spawn(&node, &root, run, &base, &chromium);

    let token = script.token().await;
    let mut client = Journey::new(base, false);
    let live = client.validate(&token).await;
    assert_eq!(live["valid"], true, "the SDK's token validates through the proxy: {live}");
    assert_eq!(live["uid"], "demo", "{live}");
    assert_eq!(live["realm"], "/", "{live}");

    let status = script.finish().await;
    assert!(status.success(), "the SDK check failed ({status}):\n{}", script.output());
    assert!(
        script.transcript.iter().any(|l| l == r#"out: logout: {"result":"Successfully logged out"}"#),
        "the SDK logged out:\n{}",
        script.output()
    );
    let dead = client.validate(&token).await;
    assert_eq!(dead, serde_json::json!({"valid": false}), "the SDK's logout ended the session");

    // No step reached a node that did not hold its login, and exactly one login succeeded (the Node run
    // also fails one on purpose, with a wrong password).
    let count =
        |f: fn(&tether::AuthStats) -> u64| -> u64 { proxy.nodes.iter().map(|n| f(n.node.stats())).sum() };
    assert_eq!(count(|s| s.timed_out.load(Ordering::Relaxed)), 0, "a step reached the wrong node (110)");
    assert_eq!(count(|s| s.logins_succeeded.load(Ordering::Relaxed)), 1);
    let failed = if run == Run::Node { 1 } else { 0 };
    assert_eq!(count(|s| s.logins_failed.load(Ordering::Relaxed)), failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_sdk_logs_in_from_node_without_cookies() {
    sdk_login(Run::Node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_sdk_logs_in_from_a_browser() {
    sdk_login(Run::Browser).await;
}
