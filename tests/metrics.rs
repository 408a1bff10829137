//! The operator's figures beyond traffic, after a scripted scenario, read back by parsing `/metrics`:
//! build info, reloads, accepted connections and bytes, TLS handshake failures, the certificate's
//! expiry, each node's last request and last transition, and the process figures; and the same figures
//! in `/status.json`.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::exposition::{Sample, matching, parse, sum};
use support::{
    Cluster, ProxyHandle, TestBackend, cert_valid_for, client, eventually, https_client, scratch_dir,
};
use tokio::io::AsyncWriteExt as _;

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

async fn scrape(proxy: &ProxyHandle) -> Vec<Sample> {
    parse(&client().get(proxy.admin_url("/metrics")).send().await.unwrap().text().await.unwrap())
}

/// The value of the one series of `name` with `labels`.
/// The commit checked out here, as `build.rs` reads it (12 hex digits); `None` outside git.
fn git_head() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn one(m: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = matching(m, name, labels).collect();
    assert_eq!(found.len(), 1, "one series {name}{labels:?}: {found:?}");
    found[0].2
}

#[tokio::test]
async fn a_scripted_scenario_shows_in_the_new_metrics() {
    // Whole seconds: the certificate's dates are, and the window must hold them.
    let window_start = unix_now().floor();
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let (cert, key, pem, not_after) = cert_valid_for("metrics", 10);
    let dir = scratch_dir("metrics", "scenario");
    let file = dir.join("tether.toml");
    // The client certificate the pool would show https:// nodes is watched too.
    let (client_cert, client_key, _, client_not_after) = cert_valid_for("metrics-client", 20);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let toml = Cluster::of(&[&a, &b])
        .tls(&cert, &key)
        .set("pool.0.tls.ca_file", path(&cert))
        .set("pool.0.tls.client_cert", path(&client_cert))
        .set("pool.0.tls.client_key", path(&client_key))
        .toml();
    std::fs::write(&file, &toml).unwrap();
    let proxy = ProxyHandle::start(tether::config::load(&file).expect("config")).await;

    // Three uploads of known sizes over one TLS connection.
    let https = https_client(&pem, proxy.addr, true);
    let sizes = [1000usize, 2000, 3000];
    for n in sizes {
        let url = format!("https://localhost:{}/upload", proxy.addr.port());
        let resp = https.post(url).body(vec![b'x'; n]).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let uploaded: usize = sizes.iter().sum();

    // One reload that applies, one of a broken file.
    let admin = client();
    assert_eq!(admin.post(proxy.admin_url("/reload")).send().await.unwrap().status(), 200);
    std::fs::write(&file, "[proxy\nlisten = ").unwrap();
    assert_eq!(admin.post(proxy.admin_url("/reload")).send().await.unwrap().status(), 400);

    // A plain-text request where a TLS ClientHello belongs.
    let mut garbage = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut m = Vec::new();
    eventually("the garbage handshake is counted", Duration::from_secs(10), async || {
        m = scrape(&proxy).await;
        sum(&m, "tether_tls_handshake_failures_total", &[]) >= 1.0
    })
    .await;
    let window_end = unix_now().ceil();

    let revision = git_head().unwrap_or_else(|| "unknown".to_owned());
    let build =
        one(&m, "tether_build_info", &[("version", env!("CARGO_PKG_VERSION")), ("revision", &revision)]);
    assert_eq!(build, 1.0);
    assert_eq!(one(&m, "tether_config_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(one(&m, "tether_config_reloads_total", &[("result", "error")]), 1.0);
    assert_eq!(one(&m, "tether_config_last_reload_successful", &[]), 0.0);
    let reloaded = one(&m, "tether_config_last_reload_timestamp_seconds", &[]);
    assert!((window_start..=window_end).contains(&reloaded), "last reload at {reloaded}");
    assert_eq!(one(&m, "tether_tls_handshake_failures_total", &[]), 1.0);
    let accepted = one(&m, "tether_connections_accepted_total", &[("listener", "public")]);
    assert!(accepted >= 2.0, "the HTTPS connection and the garbage one: {accepted}");
    assert!(one(&m, "tether_connections_accepted_total", &[("listener", "admin")]) >= 1.0);
    // The client bytes are process-wide: other tests of this binary may add theirs, never take away.
    assert!(one(&m, "tether_client_received_bytes_total", &[]) >= uploaded as f64);
    assert!(one(&m, "tether_client_sent_bytes_total", &[]) > 0.0);
    let to_nodes = sum(&m, "tether_backend_sent_bytes_total", &[("pool", "am")]);
    let from_nodes = sum(&m, "tether_backend_received_bytes_total", &[("pool", "am")]);
    assert!(to_nodes >= uploaded as f64, "bytes to the nodes: {to_nodes}");
    assert!(from_nodes > 0.0, "bytes from the nodes: {from_nodes}");
    let served: Vec<_> =
        matching(&m, "tether_backend_last_request_timestamp_seconds", &[("pool", "am")]).collect();
    assert!(!served.is_empty(), "a node that took a request has its last request");
    for (_, labels, at) in &served {
        assert!((window_start..=window_end).contains(at), "{labels:?} last request at {at}");
    }
    for id in ["01", "02"] {
        let since = one(&m, "tether_backend_last_transition_timestamp_seconds", &[("backend", id)]);
        assert!((window_start..=window_end).contains(&since), "{id} in its state since {since}");
    }
    let expiry =
        one(&m, "tether_tls_certificate_expiry_timestamp_seconds", &[("file", cert.to_str().unwrap())]);
    assert_eq!(expiry, not_after as f64, "the test certificate's not-after");
    let file_label = [("file", client_cert.to_str().unwrap())];
    let client_expiry = one(&m, "tether_tls_certificate_expiry_timestamp_seconds", &file_label);
    assert_eq!(client_expiry, client_not_after as f64, "the pool's client certificate");
    let start = one(&m, "process_start_time_seconds", &[]);
    assert!(start > 1.6e9 && start <= window_end, "process start {start}");
    for name in
        ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_max_fds"]
    {
        assert!(one(&m, name, &[]) > 0.0, "{name}");
    }

    // The same figures in /status.json.
    let status: serde_json::Value =
        admin.get(proxy.admin_url("/status.json")).send().await.unwrap().json().await.unwrap();
    let p = &status["process"];
    assert_eq!(p["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(p["revision"].as_str(), Some(revision.as_str()), "the commit built");
    assert_eq!(p["config_file"], file.to_str().unwrap());
    assert_eq!((p["reloads"].as_u64(), p["last_reload"]["ok"].as_bool()), (Some(2), Some(false)));
    assert!(p["last_reload"]["error"].as_str().is_some_and(|e| e.contains("tether.toml")), "{p}");
    assert!(p["rss_bytes"].as_u64().is_some_and(|b| b > 0) && p["open_fds"].as_u64().is_some_and(|n| n > 0));
    assert!(p["uptime_s"].as_f64().is_some_and(|s| s >= 0.0), "{p}");
    let backends = status["pools"][0]["backends"].as_array().unwrap();
    let to: u64 = backends.iter().map(|b| b["bytes_to_node"].as_u64().unwrap()).sum();
    assert!(to >= uploaded as u64, "{backends:?}");
    assert!(backends.iter().any(|b| b["last_request_age_s"].as_f64().is_some_and(|s| s < 60.0)));
    for b in backends {
        assert!(b["time_in_state_s"].as_f64().is_some() && b["state_since"].as_str().is_some(), "{b}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_node_never_asked_has_no_last_request() {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let proxy = Cluster::of(&[&a, &b]).start().await;
    let m = scrape(&proxy).await;
    assert_eq!(matching(&m, "tether_backend_last_request_timestamp_seconds", &[]).count(), 0);
    assert_eq!(one(&m, "tether_config_last_reload_successful", &[]), 1.0, "the start's load applied");
    assert_eq!(sum(&m, "tether_config_reloads_total", &[]), 0.0);
    assert_eq!(matching(&m, "tether_tls_certificate_expiry_timestamp_seconds", &[]).count(), 0);
    let status = support::backend_status(&proxy, "01").await;
    assert_eq!(status["last_request_age_s"], serde_json::Value::Null);
    proxy.shutdown().await;
}
