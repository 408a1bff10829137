//! Shutdown in phases (issue 18): on SIGTERM `/readyz` turns 503 at once, the public listener keeps
//! serving for `shutdown_delay_s`, then stops accepting and drains, and the admin listener answers
//! through all of it and closes last.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::{Cluster, TestBackend, TetherProcess, client, eventually};

/// A file under the target directory, unique per test.
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("shutdown-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn status(url: &str) -> u16 {
    client().get(url).send().await.map_or(0, |r| r.status().as_u16())
}

#[tokio::test]
async fn sigterm_turns_readyz_503_serves_through_the_delay_then_drains_and_exits_0() {
    let node = TestBackend::start("01").await;
    let config = Cluster::of(&[&node]).proxy("shutdown_delay_s", 2).toml();
    let path = scratch("phases", &config);
    let tether = TetherProcess::spawn(&["run", "-c", path.to_str().unwrap()]).await;
    let (listen, admin) = (tether.listen(), tether.admin());
    let readyz = format!("http://{admin}/readyz");
    eventually("/readyz answers 200 before SIGTERM", Duration::from_secs(10), async || {
        status(&readyz).await == 200
    })
    .await;

    let slow = tokio::spawn({
        let url = format!("http://{listen}/slow");
        async move {
            let resp = client().get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    });
    eventually("the slow request reached the node", Duration::from_secs(10), async || {
        node.slow_started() == 1
    })
    .await;

    tether.signal("TERM");
    eventually("/readyz answers 503 within 100 ms of SIGTERM", Duration::from_millis(100), async || {
        status(&readyz).await == 503
    })
    .await;
    let answer: serde_json::Value = client().get(&readyz).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["status"], "shutting down", "{answer}");

    // During the delay: the admin listener answers and the public one still takes new connections.
    for path in ["/healthz", "/status"] {
        assert_eq!(status(&format!("http://{admin}{path}")).await, 200, "{path} during the delay");
    }
    let metrics = client().get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "tether_shutting_down 1"), "{metrics}");
    let fresh = client().get(format!("http://{listen}/hello")).send().await.unwrap();
    assert_eq!(fresh.status(), 200, "a new request during the delay");

    eventually(
        "the public listener refuses connections after the delay",
        Duration::from_secs(10),
        async || tokio::net::TcpStream::connect(&listen).await.is_err(),
    )
    .await;
    assert_eq!(status(&format!("http://{admin}/healthz")).await, 200, "/healthz while draining");
    assert_eq!(status(&readyz).await, 503, "/readyz while draining");

    node.release();
    let (code, body) = slow.await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"backend\":\"01\""), "{body}");
    assert_eq!(tether.exit_code().await, Some(0));
}
