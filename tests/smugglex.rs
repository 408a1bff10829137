//! smugglex (a request-smuggling scanner: CL.TE, TE.CL, TE.TE, h2c, h2, CL edge cases, CL.0, 0.CL,
//! parser discrepancies, h2 downgrade) against tether in front of an embedded auth node, over plain
//! HTTP/1.1 with h2c and over TLS with h2: every check must come back clean (exit 0, nothing marked
//! vulnerable). About a second per listener.
//!
//! The embedded node answers smugglex's baseline request with 405, so the scans run a second time in
//! front of an echo node that answers 200 to anything: a desync there would show as a changed answer.
//!
//! Skipped with a message when `smugglex` is neither on PATH nor at `$SMUGGLEX` (install it with
//! `cargo install --locked smugglex --root DIR`); under `CI` (where `.ci/run` installs it) a missing
//! smugglex is a failure.

mod support;

use std::path::PathBuf;

use support::{Cluster, TestBackend, localhost_cert};

/// The checks run on each listener (`--exploit*` options are never used).
const CHECKS: &str = "cl-te,te-cl,te-te,h2c,h2,cl-edge,cl-0,0-cl,parser-discrepancy";

fn smugglex() -> Option<PathBuf> {
    let found = std::env::var_os("SMUGGLEX").map(PathBuf::from).filter(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("smugglex")).find(|p| p.is_file()))
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the smugglex scan: install it with `cargo install --locked smugglex --root DIR` and set SMUGGLEX=DIR/bin/smugglex"
        );
        println!("skipping the smugglex scan: `smugglex` is not on PATH and SMUGGLEX is not set");
    }
    found
}

/// Runs smugglex on `url` with `checks` (and `-k` for TLS); panics with its report on any finding.
async fn scan(bin: &PathBuf, url: String, checks: &str, tls: bool) -> usize {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg(&url).args(["-t", "3", "--json", "-c", checks]);
    if tls {
        cmd.arg("-k");
    }
    let out =
        tokio::task::spawn_blocking(move || cmd.output()).await.expect("joined").expect("smugglex runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("smugglex JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let checks: Vec<&serde_json::Value> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .flat_map(|r| r["checks"].as_array().expect("checks"))
        .collect();
    let found: Vec<&&serde_json::Value> = checks.iter().filter(|c| c["vulnerable"] == true).collect();
    for c in &checks {
        println!("{url} {} vulnerable={} normal={}", c["check_type"], c["vulnerable"], c["normal_status"]);
    }
    assert!(found.is_empty() && out.status.success(), "smugglex findings on {url}: {found:#?}");
    checks.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smugglex_finds_nothing_over_h1_h2c_and_h2() {
    let Some(bin) = smugglex() else { return };
    let plain = Cluster::new().active(["01"]).start().await;
    let n = scan(&bin, plain.url("/am/json/authenticate"), CHECKS, false).await;
    let (cert, key, _) = localhost_cert("smugglex");
    let tls = Cluster::new().active(["01"]).tls(&cert, &key).start().await;
    let url = format!("https://127.0.0.1:{}/am/json/authenticate", tls.addr.port());
    let m = scan(&bin, url.clone(), CHECKS, true).await;
    let d = scan(&bin, url, "h2-downgrade", true).await;
    let echo = TestBackend::start("e1").await;
    let echoing = Cluster::of(&[&echo]).start().await;
    let e = scan(&bin, echoing.url("/anything"), CHECKS, false).await;
    println!("{} checks, no finding", n + m + d + e);
    assert!(n + m + d + e >= 28, "every check ran");
}
