//! [`Deployment`]: three `tether node` processes on one Redis (`sessions = "redis"`), from the standalone
//! example, and the calls store tests make of them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{Journey, RedisServer, TetherProcess, Toml, cheap_hash, client};

/// The password of the example's user `demo` in a [`Deployment`].
pub const DEMO_PASSWORD: &str = "demo-Passw0rd";

/// Three `tether node` processes (and optionally the proxy) on one Redis, from the standalone example
/// with `sessions = "redis"`.
pub struct Deployment {
    /// The config file every process reads.
    pub config: std::path::PathBuf,
    ports: [u16; 3],
    /// Nodes 01, 02, 03; `None` only while one restarts.
    pub nodes: Vec<Option<TetherProcess>>,
    /// A plain client.
    pub http: reqwest::Client,
}

impl Deployment {
    /// Nodes whose `[auth.quota]` is `quota` and whose store operations time out after `timeout_ms`.
    pub async fn start(redis: &RedisServer, quota: &str, timeout_ms: u64) -> Self {
        Self::start_with(redis, timeout_ms, |toml| toml.merge("auth", &format!("[quota]\n{quota}\n"))).await
    }

    /// Nodes with the example's config on `redis`, changed by `edit`.
    pub async fn start_with(redis: &RedisServer, timeout_ms: u64, edit: impl FnOnce(Toml) -> Toml) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let ports = [free_port(), free_port(), free_port()];
        let mut toml = Toml::parse(include_str!("../../examples/standalone/proxy.toml"))
            .set("proxy.listen", "127.0.0.1:0")
            .set("proxy.admin_listen", "127.0.0.1:0")
            .set("pool.0.health.interval_ms", 100)
            .set("pool.0.health.rise", 1)
            .set(
                "auth.signing_secret_file",
                concat!(env!("CARGO_MANIFEST_DIR"), "/examples/standalone/secret.txt"),
            )
            .set("auth.sessions", "redis")
            .merge("auth", &format!("[store]\nurl = {:?}\ntimeout_ms = {timeout_ms}\n", redis.url()))
            .set("auth.user.0.password", cheap_hash(DEMO_PASSWORD));
        toml = edit(toml);
        for (i, port) in ports.iter().enumerate() {
            toml = toml.set(&format!("pool.0.backend.{i}.url"), format!("http://127.0.0.1:{port}"));
        }
        let config = std::env::temp_dir().join(format!(
            "tether-redis-store-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&config, toml.to_string()).unwrap();
        let mut d = Self { config, ports, nodes: Vec::new(), http: client() };
        for id in ["01", "02", "03"] {
            let node = d.spawn(id).await;
            d.nodes.push(Some(node));
        }
        d
    }

    async fn spawn(&self, id: &str) -> TetherProcess {
        TetherProcess::spawn(&["node", "--id", id, "-c", self.config.to_str().unwrap()]).await
    }

    /// `http://127.0.0.1:PORT` of node `node` (0 = `01`).
    pub fn base(&self, node: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[node])
    }

    /// A client's login that starts on `node` (no cookies; [`Journey::retarget`] moves it).
    pub fn journey(&self, node: usize) -> Journey {
        Journey::new(self.base(node), false)
    }

    /// A zero-page login of `demo` on `node`: (status, answer, elapsed, retry-after).
    pub async fn login(&self, node: usize) -> (u16, Value, Duration, Option<String>) {
        let start = Instant::now();
        let resp = self
            .http
            .post(format!("{}/am/json/realms/root/authenticate", self.base(node)))
            .header("X-OpenAM-Username", "demo")
            .header("X-OpenAM-Password", DEMO_PASSWORD)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body, start.elapsed(), retry)
    }

    /// A `_action` of `/json/sessions` for `token` on `node`: (status, answer).
    pub async fn session(&self, node: usize, action: &str, token: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!(
                "{}/am/json/realms/root/sessions?_action={action}&tokenId={token}",
                self.base(node)
            ))
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    /// What `/json/health/ready` of `node` answers.
    pub async fn ready(&self, node: usize) -> u16 {
        let url = format!("{}/am/json/health/ready", self.base(node));
        self.http.get(url).send().await.unwrap().status().as_u16()
    }

    /// Kills node `i` (SIGKILL) and starts it again on the same port.
    pub async fn restart(&mut self, i: usize) {
        let mut old = self.nodes[i].take().unwrap();
        old.child.kill().unwrap();
        old.child.wait().unwrap();
        self.nodes[i] = Some(self.spawn(["01", "02", "03"][i]).await);
    }

    /// Panics if any node process has exited.
    pub fn assert_running(&mut self) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let node = node.as_mut().unwrap();
            assert!(node.child.try_wait().unwrap().is_none(), "node {} exited", i + 1);
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
