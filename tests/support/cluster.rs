//! A cluster under test: a builder over the fixtures ([`Cluster`]) that starts tether in-process and
//! returns a [`ProxyHandle`] with the proxy's and admin's addresses, the embedded nodes and a shutdown.
//!
//! ```text
//! Cluster::new().active(["01", "02"]).passive("03").start().await   // embedded auth nodes
//! Cluster::of(&[&a, &b]).fast_checks().start().await              // test backends
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use toml::Value;

use super::backend::BackendHandle;
use super::client;
use super::config::{CLUSTER, FAST_CHECKS, ONE_POOL, PASSIVE_CHECKS, QUOTA, Toml};
use super::journey::cheap_hash;
use super::local::LocalNodes;

/// What tether is started with: a fixture and the test's changes to it. Every method names the
/// difference from the fixture; paths of [`Cluster::set`] are dotted TOML keys.
#[derive(Clone, Debug)]
pub struct Cluster {
    toml: Toml,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Cluster {
    /// Embedded auth nodes behind the proxy (`tests/fixtures/cluster.toml`); add them with
    /// [`Cluster::active`] and [`Cluster::passive`].
    pub fn new() -> Self {
        Self::fixture(CLUSTER)
    }

    /// The test backends `backends`, all active, behind the proxy (`tests/fixtures/one_pool.toml`).
    pub fn of(backends: &[&BackendHandle]) -> Self {
        backends.iter().fold(Self::fixture(ONE_POOL), |c, b| c.backend(b))
    }

    /// Any fixture; add backends with [`Cluster::backend_at`].
    pub fn fixture(text: &str) -> Self {
        Self { toml: Toml::parse(text) }
    }

    /// Embedded active nodes with these IDs.
    pub fn active<'a>(self, ids: impl IntoIterator<Item = &'a str>) -> Self {
        ids.into_iter().fold(self, |c, id| c.embedded(id, "active"))
    }

    /// An embedded passive node.
    pub fn passive(self, id: &str) -> Self {
        self.embedded(id, "passive")
    }

    fn embedded(self, id: &str, role: &str) -> Self {
        let entries = [
            ("id", Value::from(id)),
            ("url", Value::from("http://127.0.0.1:0")),
            ("role", Value::from(role)),
            ("embedded", Value::from(true)),
        ];
        self.edit(|t| t.push("pool.0.backend", &entries))
    }

    /// Another active test backend in the first pool.
    pub fn backend(self, b: &BackendHandle) -> Self {
        self.backend_at(0, &b.id, &b.url(), "active")
    }

    /// A passive test backend in the first pool.
    pub fn passive_backend(self, b: &BackendHandle) -> Self {
        self.backend_at(0, &b.id, &b.url(), "passive")
    }

    /// A backend `id` at `url` in pool number `pool`.
    pub fn backend_at(self, pool: usize, id: &str, url: &str, role: &str) -> Self {
        let entries = [("id", Value::from(id)), ("url", Value::from(url)), ("role", Value::from(role))];
        self.edit(|t| t.push(&format!("pool.{pool}.backend"), &entries))
    }

    /// Sets any key (`proxy.response_timeout_ms`, `pool.0.balance`, …).
    pub fn set(self, path: &str, value: impl Into<Value>) -> Self {
        self.edit(|t| t.set(path, value))
    }

    /// Sets a key of `[proxy]`.
    pub fn proxy(self, key: &str, value: impl Into<Value>) -> Self {
        self.set(&format!("proxy.{key}"), value)
    }

    /// Sets a key of the first pool's `[pool.affinity]`.
    pub fn affinity(self, key: &str, value: impl Into<Value>) -> Self {
        self.set(&format!("pool.0.affinity.{key}"), value)
    }

    /// Sets a key of the first pool's `[pool.health]`.
    pub fn health(self, key: &str, value: impl Into<Value>) -> Self {
        self.set(&format!("pool.0.health.{key}"), value)
    }

    /// Health checks 50 ms apart, rise and fall 2 (`tests/fixtures/fast_checks.toml`).
    pub fn fast_checks(self) -> Self {
        self.edit(|t| t.merge("pool.0.health", FAST_CHECKS))
    }

    /// No active checks to speak of; the first refused connection takes a node out
    /// (`tests/fixtures/passive_checks.toml`).
    pub fn passive_checks(self) -> Self {
        self.edit(|t| t.merge("pool.0.health", PASSIVE_CHECKS))
    }

    /// Only this route: everything under `prefix` goes to `pool`.
    pub fn only_route(self, prefix: &str, pool: &str) -> Self {
        self.set("route", Value::Array(Vec::new())).route(prefix, pool)
    }

    /// Another route, after the fixture's: `prefix` → `pool`.
    pub fn route(self, prefix: &str, pool: &str) -> Self {
        let entries = [("path_prefix", Value::from(prefix)), ("pool", Value::from(pool))];
        self.edit(|t| t.push("route", &entries))
    }

    /// Another route, after the fixture's: `prefix` is answered with `status`.
    pub fn status_route(self, prefix: &str, status: i64) -> Self {
        let entries = [("path_prefix", Value::from(prefix)), ("status", Value::from(status))];
        self.edit(|t| t.push("route", &entries))
    }

    /// TLS on the public listener.
    pub fn tls(self, cert: &std::path::Path, key: &std::path::Path) -> Self {
        let (cert, key) = (cert.to_str().expect("UTF-8 path"), key.to_str().expect("UTF-8 path"));
        self.proxy("tls.cert", cert).proxy("tls.key", key)
    }

    /// Sets a key of `[auth]`.
    pub fn auth(self, key: &str, value: impl Into<Value>) -> Self {
        self.set(&format!("auth.{key}"), value)
    }

    /// One session store for every node (`auth.sessions = "shared"`).
    pub fn shared_sessions(self) -> Self {
        self.auth("sessions", "shared")
    }

    /// A session quota of `limit` per user with this exhaustion action (`tests/fixtures/quota.toml`).
    pub fn quota(self, limit: i64, action: &str) -> Self {
        self.edit(|t| t.merge("auth.quota", QUOTA))
            .auth("quota.limit", limit)
            .auth("quota.exhaustion_action", action)
    }

    /// Another user, password `secret`, with `extra` keys (`session_quota`, …).
    pub fn user(self, username: &str, extra: &[(&str, Value)]) -> Self {
        let mut entries =
            vec![("username", Value::from(username)), ("password", cheap_hash("secret").into())];
        entries.extend(extra.iter().cloned());
        self.edit(|t| t.push("auth.user", &entries))
    }

    fn edit(mut self, f: impl FnOnce(Toml) -> Toml) -> Self {
        self.toml = f(self.toml);
        self
    }

    /// The config as TOML text (to write to a file for the `tether` binary).
    pub fn toml(&self) -> String {
        self.toml.to_string()
    }

    /// The parsed config; panics with the config's own message when it is invalid.
    pub fn config(&self) -> tether::config::Config {
        tether::config::parse(&self.toml()).unwrap_or_else(|e| panic!("test config invalid: {e}"))
    }

    /// Starts tether in-process: embedded nodes, then the proxy and admin listeners.
    pub async fn start(self) -> ProxyHandle {
        ProxyHandle::start(self.config()).await
    }

    /// The embedded nodes of this config, in-process and called directly, without sockets.
    pub fn in_process(self) -> LocalNodes {
        let shared = self.toml.get_str("auth.sessions") == Some("shared");
        LocalNodes::from_config(&self.config(), shared)
    }
}

/// A tether proxy running in-process.
pub struct ProxyHandle {
    /// Public listener.
    pub addr: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// The library's handle.
    pub proxy: Arc<tether::Proxy>,
    /// Embedded auth nodes.
    pub nodes: Vec<tether::NodeHandle>,
    shutdown: CancellationToken,
    running: Option<tether::Running>,
}

impl ProxyHandle {
    /// Starts tether with `config` (listen addresses should be `127.0.0.1:0`).
    pub async fn start(config: tether::config::Config) -> Self {
        let shutdown = CancellationToken::new();
        let mut running = tether::start(config, shutdown.clone()).await.expect("tether starts");
        let nodes = std::mem::take(&mut running.nodes);
        Self {
            addr: running.listen,
            admin: running.admin,
            proxy: running.proxy.clone(),
            nodes,
            shutdown,
            running: Some(running),
        }
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `http://admin{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// The embedded node `id`.
    pub fn node(&self, id: &str) -> Arc<tether::AuthNode> {
        self.embedded(id).node.clone()
    }

    /// The address embedded node `id` listens on (to reach it without the proxy).
    pub fn node_addr(&self, id: &str) -> SocketAddr {
        self.embedded(id).addr
    }

    /// `http://` and the address of embedded node `id`.
    pub fn node_url(&self, id: &str) -> String {
        format!("http://{}", self.node_addr(id))
    }

    fn embedded(&self, id: &str) -> &tether::NodeHandle {
        self.nodes.iter().find(|n| n.node.id().as_str() == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Drains and stops.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.wait().await;
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// One backend's entry of the admin `/status.json` (first pool).
pub async fn backend_status(proxy: &ProxyHandle, id: &str) -> serde_json::Value {
    let v: serde_json::Value =
        client().get(proxy.admin_url("/status.json")).send().await.unwrap().json().await.unwrap();
    v["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .cloned()
        .expect("backend in status")
}
