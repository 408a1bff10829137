//! [`Deployment`]: three real `tether node` processes sharing one session store on Redis (one server or
//! a Redis Cluster) or none (`sessions = "local"`), and [`login_race`], many concurrent logins of one user while a sampler reads the
//! store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::redis::{RedisCluster, RedisServer};
use super::{Journey, TetherProcess, Toml, cheap_hash};

/// What `[auth.store]` says to reach a Redis: `url = …` or `cluster = […]`.
pub trait StoreAt {
    /// The TOML line naming the servers.
    fn store_at(&self) -> String;
}

impl StoreAt for RedisServer {
    fn store_at(&self) -> String {
        format!("url = {:?}", self.url())
    }
}

impl StoreAt for RedisCluster {
    fn store_at(&self) -> String {
        format!("cluster = {:?}", self.seeds())
    }
}

/// Three `tether node` processes (and optionally the proxy) on one Redis or Redis Cluster, from the
/// standalone example with `sessions = "redis"`.
pub struct Deployment {
    /// The config file every process reads.
    pub config: std::path::PathBuf,
    /// The nodes' listen ports.
    pub ports: [u16; 3],
    /// The node processes (`None` while one is being restarted).
    pub nodes: Vec<Option<TetherProcess>>,
    /// A plain client.
    pub http: reqwest::Client,
}

impl Deployment {
    /// Starts the nodes with `[auth.store]` naming `store` (see [`StoreAt`]), `[auth.quota]` set to
    /// `quota` (TOML lines) and the store's `timeout_ms`.
    pub async fn start(store: &impl StoreAt, quota: &str, timeout_ms: u64) -> Self {
        Self::start_with(store, timeout_ms, |toml| toml.merge("auth", &format!("[quota]\n{quota}\n"))).await
    }

    /// Nodes with the example's config on `store`, changed by `edit`.
    pub async fn start_with(store: &impl StoreAt, timeout_ms: u64, edit: impl FnOnce(Toml) -> Toml) -> Self {
        let store = format!("[store]\n{}\ntimeout_ms = {timeout_ms}\n", store.store_at());
        Self::launch(|toml| edit(toml.set("auth.sessions", "redis").merge("auth", &store))).await
    }

    /// Nodes with the example's config and `sessions = "local"` (no store anywhere: each process keeps its
    /// own), changed by `edit`.
    pub async fn local_with(edit: impl FnOnce(Toml) -> Toml) -> Self {
        Self::launch(|toml| edit(toml.set("auth.sessions", "local"))).await
    }

    /// The three nodes from the example's config (one shared secret, cheap password hashes) after `edit`.
    async fn launch(edit: impl FnOnce(Toml) -> Toml) -> Self {
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
            // Tests log `demo` in several times within one TOTP step; tests/lockout.rs sets it back.
            .set("auth.totp_single_use", false)
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
        let mut d = Self { config, ports, nodes: Vec::new(), http: super::client() };
        for id in ["01", "02", "03"] {
            let node = d.spawn(id).await;
            d.nodes.push(Some(node));
        }
        d
    }

    /// Starts one node process with `--id id`.
    pub async fn spawn(&self, id: &str) -> TetherProcess {
        TetherProcess::spawn(&["node", "--id", id, "-c", self.config.to_str().unwrap()]).await
    }

    /// A client's login that starts on `node` (no cookies; [`Journey::retarget`] moves it).
    pub fn journey(&self, node: usize) -> Journey {
        Journey::new(self.base(node), false)
    }

    /// `http://127.0.0.1:PORT` of `node`.
    pub fn base(&self, node: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[node])
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

    /// `/json/health/ready` of `node`: its status.
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

/// The password of the example's user `demo`.
pub const DEMO_PASSWORD: &str = "demo-Passw0rd";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What [`login_race`] saw: the tokens of the admitted logins, the most sessions the sampler read, and
/// how many samples it took.
pub struct Race {
    pub admitted: Vec<String>,
    pub most: i64,
    pub samples: usize,
}

impl Race {
    /// The verdict of a race of `logins` under `limit = 2` with `action`: the sampler never saw more than
    /// 2 sessions, `DENY_ACCESS` admitted exactly 2 and the other actions every login, and exactly 2 of
    /// the admitted tokens still validate (asked round the three nodes).
    pub async fn assert_at_most_two_live(&self, d: &Deployment, action: &str, logins: usize) {
        assert!(self.samples > 0, "{action}: the sampler took no sample");
        assert!(self.most <= 2, "{action}: the sampler saw {} sessions in the store", self.most);
        let expected = if action == "DENY_ACCESS" { 2 } else { logins };
        assert_eq!(self.admitted.len(), expected, "{action}: admitted");
        let mut live = 0;
        for (i, token) in self.admitted.iter().enumerate() {
            let (status, v) = d.session(i % 3, "validate", token).await;
            assert_eq!(status, 200, "{v}");
            live += usize::from(v["valid"] == true);
        }
        assert_eq!(live, 2, "{action}: live sessions");
    }
}

/// `logins` concurrent zero-page logins of `demo`, spread over the three nodes and released together by
/// a barrier, while `sample` (on its own thread) reads the store without pause. Each login gets 200 or
/// AM's 401 `Maximum Sessions Limit Reached.`; anything else fails the test. Bounded: `logins` requests,
/// each under the client's 30 s timeout.
pub async fn login_race(
    d: &Arc<Deployment>,
    logins: usize,
    what: &str,
    mut sample: impl FnMut() -> i64 + Send + 'static,
) -> Race {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut most, mut samples) = (0, 0);
            while !done.load(Ordering::Acquire) {
                most = most.max(sample());
                samples += 1;
            }
            (most, samples)
        })
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(logins));
    let tasks: Vec<_> = (0..logins)
        .map(|i| {
            let (d, barrier) = (d.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let (status, body, _, _) = d.login(i % 3).await;
                (status, body)
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => admitted.push(body["tokenId"].as_str().unwrap().to_string()),
            401 => assert_eq!(body["message"], "Maximum Sessions Limit Reached.", "{what}: {body}"),
            other => panic!("{what}: {other} {body}"),
        }
    }
    done.store(true, Ordering::Release);
    let (most, samples) = sampler.join().unwrap();
    Race { admitted, most, samples }
}
