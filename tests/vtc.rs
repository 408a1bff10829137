//! RFC 9112 message rules checked byte by byte with varnishtest: every `tests/vtc/*.vtc` script has a
//! scripted raw client (`client c1 -connect ${tether_sock}`) and a scripted node (`server s1 -listen
//! "127.0.0.1 ${node_port}"`) that checks exactly what tether forwarded, or that it saw nothing.
//!
//! For each script this driver starts tether in-process with one node at `127.0.0.1:${node_port}`
//! (a port the kernel picked free a moment before) and runs `varnishtest` on it. Active health checks
//! are an hour apart (`tests/fixtures/passive_checks.toml`), so the scripted node only ever sees the
//! requests the script sends. A node's connections are pooled, so a request that follows an earlier
//! one on the same client connection reaches the node on the connection the first one used: that is
//! where a desync would show.
//!
//! Skipped with a message when `varnishtest` (Debian's `varnish` package) is not on PATH, except under
//! CI (`CI` set), where that fails. `VTC=name` runs only the scripts whose file name contains `name`;
//! `VTC_LOG=1` prints the log of passing scripts too.

mod support;

use std::path::{Path, PathBuf};

use support::Cluster;

/// `varnishtest` on PATH, or `None` after saying why the scripts are skipped (a failure under CI).
fn varnishtest() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("varnishtest")).find(|p| p.is_file()));
    if found.is_none() {
        let what = "`varnishtest` is not on PATH (apt-get install varnish)";
        assert!(std::env::var_os("CI").is_none(), "CI must run the varnishtest scripts, but {what}");
        println!("skipping the varnishtest scripts: {what}");
    }
    found
}

/// The scripts under `tests/vtc/`, sorted, filtered by `VTC`.
fn scripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vtc");
    let only = std::env::var("VTC").unwrap_or_default();
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/vtc")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "vtc"))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(&only)))
        .collect();
    found.sort();
    found
}

/// A loopback port free at the time of asking: the scripted node listens on it, and tether's config
/// names it before the script starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// How one script went.
struct Run {
    name: String,
    passed: bool,
    seconds: f64,
    log: String,
}

/// Starts tether in front of a node at `127.0.0.1:port` and runs `script` against it.
async fn run(varnishtest: &Path, script: &Path) -> Run {
    let port = free_port();
    let proxy = Cluster::of(&[])
        .backend_at(0, "01", &format!("http://127.0.0.1:{port}"), "active")
        .passive_checks()
        // A script whose node never answers fails within the script's own timeout, not tether's.
        .proxy("response_timeout_ms", 5000)
        .proxy("request_header_timeout_ms", 3000)
        .start()
        .await;
    let started = tokio::time::Instant::now();
    let mut cmd = std::process::Command::new(varnishtest);
    // varnishtest's own timeout (`-t`) bounds the run.
    cmd.arg("-t")
        .arg("30")
        .arg(format!("-Dtether_sock=127.0.0.1 {}", proxy.addr.port()))
        .arg(format!("-Dnode_port={port}"))
        .arg("-v")
        .arg(script);
    let out =
        tokio::task::spawn_blocking(move || cmd.output()).await.expect("joined").expect("varnishtest runs");
    proxy.shutdown().await;
    Run {
        name: script.file_name().unwrap_or_default().to_string_lossy().into_owned(),
        passed: out.status.success(),
        seconds: started.elapsed().as_secs_f64(),
        log: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vtc_script_passes_against_tether() {
    let Some(varnishtest) = varnishtest() else { return };
    let scripts = scripts();
    assert!(!scripts.is_empty(), "no script under tests/vtc matches VTC");
    let mut runs = Vec::new();
    for script in &scripts {
        runs.push(run(&varnishtest, script).await);
    }
    println!("{:<44} {:>6} {:>8}", "script", "result", "seconds");
    for r in &runs {
        println!("{:<44} {:>6} {:>8.2}", r.name, if r.passed { "pass" } else { "FAIL" }, r.seconds);
    }
    // `VTC_LOG=1` prints every script's log, passes too.
    let all = std::env::var_os("VTC_LOG").is_some();
    let failed: Vec<&Run> = runs.iter().filter(|r| !r.passed || all).collect();
    for r in &failed {
        println!("---- {} ----\n{}", r.name, r.log);
    }
    let failures = runs.iter().filter(|r| !r.passed).count();
    assert!(failures == 0, "{failures} of {} scripts failed", runs.len());
}
