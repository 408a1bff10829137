//! Operator state that survives restarts: `admin_state` per backend sets where a node starts, and
//! `proxy.state_file` keeps maint and drain (with its deadline) across a restart of the proxy; a file
//! that cannot be read stops the start, naming itself.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{Cluster, ProxyHandle, TestBackend, backend_status, client, eventually, served_by};
use toml::Value;

/// An empty directory under the target directory, unique per test.
fn scratch(name: &str) -> PathBuf {
    support::scratch_dir("admin-state", name)
}

/// Writes `cluster` as `proxy.toml` in `dir` and loads it from there, as `tether run -c` does (relative
/// paths resolve against the file's directory; `POST /reload` re-reads it).
fn config_in(dir: &Path, cluster: &Cluster) -> tether::config::Config {
    let file = dir.join("proxy.toml");
    std::fs::write(&file, cluster.toml()).unwrap();
    tether::config::load(&file).unwrap_or_else(|e| panic!("test config invalid: {e}"))
}

/// Sets `key` of backend number `index` of the first pool.
fn backend_key(cluster: Cluster, index: usize, key: &str, value: &str) -> Cluster {
    cluster.set(&format!("pool.0.backend.{index}.{key}"), Value::from(value))
}

/// Who serves `n` requests without a cookie (new clients), in order.
async fn new_clients(proxy: &ProxyHandle, n: usize) -> Vec<String> {
    let http = client();
    let mut served = Vec::with_capacity(n);
    for _ in 0..n {
        served.push(served_by(http.get(proxy.url("/am/x")).send().await.unwrap()).await);
    }
    served
}

/// Who serves a client pinned to `id` by its affinity cookie.
async fn pinned(proxy: &ProxyHandle, id: &str) -> String {
    let resp =
        client().get(proxy.url("/am/x")).header("cookie", format!("amlbcookie={id}")).send().await.unwrap();
    served_by(resp).await
}

async fn post(proxy: &ProxyHandle, path: &str) -> reqwest::Response {
    client().post(proxy.admin_url(path)).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_in_maint_is_still_in_maint_after_a_restart() {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let dir = scratch("maint");
    let cluster = Cluster::of(&[&a, &b]).proxy("state_file", "tether.state");

    let proxy = ProxyHandle::start(config_in(&dir, &cluster)).await;
    assert_eq!(post(&proxy, "/backends/02/maint").await.status(), 200);
    let saved =
        std::fs::read_to_string(dir.join("tether.state")).expect("the change was saved beside the config");
    assert!(saved.contains("\"maint\""), "{saved}");
    proxy.shutdown().await;

    let proxy = ProxyHandle::start(config_in(&dir, &cluster)).await;
    assert_eq!(backend_status(&proxy, "02").await["admin"], "maint");
    assert_eq!(backend_status(&proxy, "01").await["admin"], "ready");
    assert!(new_clients(&proxy, 6).await.iter().all(|s| s == "01"), "a node in maint takes no new client");
    assert_eq!(pinned(&proxy, "02").await, "01", "nor a pinned one");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_with_a_deadline_survives_with_its_deadline() {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let dir = scratch("drain");
    let cluster = Cluster::of(&[&a, &b]).proxy("state_file", "tether.state");

    let proxy = ProxyHandle::start(config_in(&dir, &cluster)).await;
    assert_eq!(post(&proxy, "/backends/02/drain?deadline_s=600").await.status(), 200);
    proxy.shutdown().await;

    let proxy = ProxyHandle::start(config_in(&dir, &cluster)).await;
    let row = backend_status(&proxy, "02").await;
    assert_eq!(row["admin"], "drain");
    let left = row["drain_left_s"].as_u64().expect("the deadline survived");
    assert!((580..=600).contains(&left), "the deadline is the saved one, not a new one: {left} s left");
    assert!(new_clients(&proxy, 6).await.iter().all(|s| s == "01"), "a draining node takes no new client");
    assert_eq!(pinned(&proxy, "02").await, "02", "a pinned client is served until the deadline");
    proxy.shutdown().await;
}

/// HAProxy's `disable health` is an operator's word that the node is fine while its check endpoint is
/// not: a restart must not bring the checks back and take the node out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_health_checks_stay_disabled_after_a_restart_until_enabled() {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let dir = scratch("checks");
    let cluster = Cluster::of(&[&a, &b]).fast_checks().proxy("state_file", "tether.state");
    let saved = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("tether.state")).unwrap()).unwrap()
    };

    let proxy = ProxyHandle::start(config_in(&dir, &cluster)).await;
    assert_eq!(post(&proxy, "/backends/02/health/disable").await.status(), 200);
    assert_eq!(saved()["backends"], serde_json::json!({"02": {"health_checks": "disabled"}}));
    proxy.shutdown().await;

    // 02's checks would now fail, and would take it out if they ran.
    b.shutdown();
    let proxy = ProxyHandle::start(config_in(&dir, &cluster)).await;
    eventually("01 checked a few times", Duration::from_secs(10), async || {
        backend_status(&proxy, "01").await["checks"].as_u64().unwrap() >= 3
    })
    .await;
    let row = backend_status(&proxy, "02").await;
    assert_eq!(row["health_checks"], "disabled", "{row}");
    assert_eq!((row["health"].as_str(), row["checks"].as_u64()), (Some("up"), Some(0)), "{row}");
    assert_eq!(backend_status(&proxy, "02").await["admin"], "ready");

    assert_eq!(post(&proxy, "/backends/02/health/enable").await.status(), 200);
    assert!(saved()["backends"].get("02").is_none(), "enabled checks drop the entry: {}", saved());
    eventually("02's checks find it down", Duration::from_secs(10), async || {
        backend_status(&proxy, "02").await["health"] == "down"
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_configured_to_drain_starts_draining() {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let proxy = backend_key(Cluster::of(&[&a, &b]), 1, "admin_state", "drain").start().await;
    let row = backend_status(&proxy, "02").await;
    assert_eq!(row["admin"], "drain");
    assert!(row["drain_left_s"].is_null(), "a drain from the config has no deadline: {row}");
    assert!(new_clients(&proxy, 6).await.iter().all(|s| s == "01"), "no new client goes to 02");
    assert_eq!(pinned(&proxy, "02").await, "02", "a client pinned to 02 is still served there");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_file_wins_over_admin_state_and_a_reload_reapplies_neither() {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let dir = scratch("wins");
    let cluster =
        backend_key(Cluster::of(&[&a, &b]), 1, "admin_state", "maint").proxy("state_file", "tether.state");

    let proxy = ProxyHandle::start(config_in(&dir, &cluster)).await;
    assert_eq!(backend_status(&proxy, "02").await["admin"], "maint", "admin_state applies without a file");
    assert_eq!(post(&proxy, "/backends/02/ready").await.status(), 200);
    assert_eq!(post(&proxy, "/reload").await.status(), 200);
    assert_eq!(backend_status(&proxy, "02").await["admin"], "ready", "a reload keeps the operator's state");
    proxy.shutdown().await;

    let proxy = ProxyHandle::start(config_in(&dir, &cluster)).await;
    assert_eq!(backend_status(&proxy, "02").await["admin"], "ready", "the saved state wins over admin_state");
    assert!(new_clients(&proxy, 6).await.iter().any(|s| s == "02"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_state_file_is_fine_and_written_on_the_first_change() {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let dir = scratch("missing");
    let cluster = Cluster::of(&[&a, &b]).proxy("state_file", "tether.state");
    let proxy = ProxyHandle::start(config_in(&dir, &cluster)).await;
    assert_eq!(backend_status(&proxy, "02").await["admin"], "ready");
    assert!(!dir.join("tether.state").exists(), "nothing is written before a change");
    assert_eq!(post(&proxy, "/backends/01/drain").await.status(), 200);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tether.state")).unwrap()).unwrap();
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["backends"]["01"]["state"], "drain");
    assert!(saved["backends"].get("02").is_none(), "a node in its configured state is not listed: {saved}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_unreadable_state_file_is_a_start_error_naming_it() {
    let a = TestBackend::start("01").await;
    let dir = scratch("corrupt");
    let cluster = Cluster::of(&[&a]).proxy("state_file", "tether.state");
    let file = dir.join("tether.state");

    std::fs::write(&file, "{\"version\": 1,\n \"backends\": {\n  \"01\": {\"state\": \"maintenance\"}}}\n")
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let err =
        tether::start(config_in(&dir, &cluster), shutdown.clone()).await.err().expect("refused").to_string();
    assert!(err.contains(file.to_str().unwrap()), "names the file: {err}");
    assert!(err.contains("line 3") && err.contains("maintenance"), "says what is wrong and where: {err}");
    assert!(err.contains("fix line 3, or delete the file"), "says the fix: {err}");

    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let err = tether::start(config_in(&dir, &cluster), shutdown).await.err().expect("refused").to_string();
    assert!(err.contains("cannot read the state file") && err.contains(file.to_str().unwrap()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_cannot_be_saved_still_applies_and_is_answered_500() {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let dir = scratch("unwritable");
    // The directory the file would go in does not exist: reading finds no file, writing fails.
    let cluster = Cluster::of(&[&a, &b]).proxy("state_file", "gone/tether.state");
    let proxy = ProxyHandle::start(config_in(&dir, &cluster)).await;
    let resp = post(&proxy, "/backends/02/maint").await;
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = resp.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("cannot write the state file") && message.contains("gone"), "{body}");
    assert!(message.contains("will not survive a restart"), "{body}");
    assert_eq!(body["detail"]["admin"], "maint", "the answer shows the state that applies: {body}");
    assert_eq!(backend_status(&proxy, "02").await["admin"], "maint", "the change applies anyway");
    proxy.shutdown().await;
}

#[test]
fn check_names_an_unknown_admin_state_with_its_key() {
    let cluster = Cluster::of(&[]).backend_at(0, "01", "http://127.0.0.1:1", "active");
    let text = backend_key(cluster, 0, "admin_state", "paused").toml();
    let err = tether::config::parse(&text).expect_err("refused").to_string();
    assert!(err.contains("admin_state") && err.contains("\"paused\" is not one of"), "{err}");
}

#[tokio::test]
async fn tether_run_refuses_a_corrupt_state_file_naming_it() {
    let a = TestBackend::start("01").await;
    let dir = scratch("binary");
    let file = dir.join("proxy.toml");
    std::fs::write(&file, Cluster::of(&[&a]).proxy("state_file", "tether.state").toml()).unwrap();
    std::fs::write(
        dir.join("tether.state"),
        "{\"version\": 1, \"backends\": {\"01\": {\"state\": \"maint\",}}}",
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["run", "-c", file.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a tether that started anyway is killed (also when the wait below fails the test).
    let mut child = support::KillOnDrop(Some(child));
    let mut exited = None;
    eventually("tether exits", std::time::Duration::from_secs(30), async || {
        exited = child.0.as_mut().unwrap().try_wait().unwrap();
        exited.is_some()
    })
    .await;
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    assert_eq!(exited.and_then(|s| s.code()), Some(1), "tether must not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tether.state is corrupt at line 1") && err.contains("delete the file"), "{err}");
}
