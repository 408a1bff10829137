//! `examples/redis/`: three `tether node` processes and one proxy on one Redis, as on several hosts.
//! The example's file runs as it is, with only its addresses moved to free loopback ports and its Redis
//! to a test `redis-server`; a login through the proxy is then a session every node knows, which outlives
//! the node that made it.
//!
//! Skipped with a message without `redis-server`, except under CI, where it fails.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Journey, RedisServer, TetherProcess, Toml, client, eventually};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/redis/proxy.toml");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The example with its hosts moved to loopback: the proxy on ephemeral ports, each node on a free one,
/// Redis at `redis`, the secret file by absolute path; health checks quicker. Nothing else changes.
fn example_on_loopback(redis: &RedisServer, nodes: [u16; 3]) -> PathBuf {
    let mut toml = Toml::parse(&std::fs::read_to_string(EXAMPLE).unwrap())
        .set("proxy.listen", "127.0.0.1:0")
        .set("proxy.admin_listen", "127.0.0.1:0")
        .set("pool.0.health.interval_ms", 100)
        .set("pool.0.health.rise", 1)
        .set("pool.0.health.fall", 1)
        .set("auth.signing_secret_file", concat!(env!("CARGO_MANIFEST_DIR"), "/examples/redis/secret.txt"))
        .set("auth.store.url", redis.url());
    for (i, port) in nodes.iter().enumerate() {
        toml = toml.set(&format!("pool.0.backend.{i}.url"), format!("http://127.0.0.1:{port}"));
    }
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("several-hosts-{}.toml", std::process::id()));
    std::fs::write(&path, toml.to_string()).unwrap();
    path
}

async fn session_call(base: &str, action: &str, token: &str) -> Value {
    let url = format!("{base}/am/json/realms/root/sessions?_action={action}&tokenId={token}");
    let resp = client().post(url).header("content-type", "application/json").send().await.unwrap();
    assert_eq!(resp.status(), 200, "{action} on {base}");
    resp.json().await.unwrap()
}

#[tokio::test]
async fn the_redis_example_logs_in_through_the_proxy_and_the_session_outlives_its_node() {
    let Some(redis) = RedisServer::start().await else { return };
    let ports = [free_port(), free_port(), free_port()];
    let config = example_on_loopback(&redis, ports);
    let config = config.to_str().unwrap();
    let mut nodes = Vec::new();
    for id in ["01", "02", "03"] {
        nodes.push(Some(TetherProcess::spawn(&["node", "--id", id, "-c", config]).await));
    }
    let proxy = TetherProcess::spawn(&["run", "-c", config]).await;
    let via_proxy = format!("http://{}", proxy.listen());
    let node_base = |i: usize| format!("http://127.0.0.1:{}", ports[i]);
    eventually("the proxy sees every node ready", Duration::from_secs(10), async || {
        let Ok(resp) = client().get(format!("http://{}/readyz", proxy.admin())).send().await else {
            return false;
        };
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        v["status"] == "ready" && v["down"] == json!([])
    })
    .await;

    // A browser's mfa login through the proxy: amlbcookie keeps its three steps on one node.
    let mut browser = Journey::new(&via_proxy, true);
    let token = browser.mfa_login("demo-Passw0rd").await;
    let home = browser.cookies["amlbcookie"].clone();
    let home_index = ["01", "02", "03"].iter().position(|id| *id == home).expect("a node ID");
    assert_eq!(redis.integer(&["ZCARD", "{tether:demo}:exp"]), 1, "the session is in Redis");

    // Every node knows it, not only the one that made it.
    for i in 0..3 {
        let v = session_call(&node_base(i), "validate", &token).await;
        assert_eq!((&v["valid"], &v["uid"]), (&json!(true), &json!("demo")), "node {}: {v}", i + 1);
    }

    // The node that made it dies: through the proxy the session is still valid (another node answers).
    let mut dead = nodes[home_index].take().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let mut last = Value::Null;
    eventually(
        "the session validates through the proxy without its node",
        Duration::from_secs(10),
        async || {
            last = session_call(&via_proxy, "validate", &token).await;
            last["valid"] == true
        },
    )
    .await;

    // Logging out through the proxy ends it everywhere.
    let v = session_call(&via_proxy, "logout", &token).await;
    assert_eq!(v["result"], "Successfully logged out", "{v}");
    for i in (0..3).filter(|i| *i != home_index) {
        let v = session_call(&node_base(i), "validate", &token).await;
        assert_eq!(v["valid"], false, "node {} after the logout: {v}", i + 1);
    }
    assert_eq!(redis.integer(&["ZCARD", "{tether:demo}:exp"]), 0);
    for node in nodes.iter_mut().flatten() {
        assert!(node.child.try_wait().unwrap().is_none(), "a node exited");
    }
}
