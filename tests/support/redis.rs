//! A real `redis-server` child process for store tests: on a free loopback port (never 6379), with no
//! persistence and its own scratch directory, stopped and restarted by PID, killed on drop.
//!
//! The binary is `TETHER_REDIS_SERVER` or `redis-server` on `PATH`. Without it [`RedisServer::start`]
//! returns `None` after printing why, so the test skips; under CI (`CI` set) it panics instead: CI must
//! run the store tests (`.ci/run` installs Debian's `redis-server`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One `redis-server` process.
pub struct RedisServer {
    binary: PathBuf,
    /// The loopback port it listens on.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Started with `--cluster-enabled yes` (by [`RedisCluster`]).
    cluster: bool,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`; `None` (after a message) when there is no
    /// `redis-server` and the run is not under CI.
    pub async fn start() -> Option<Self> {
        let Some(binary) = binary() else {
            let what = "no redis-server on PATH (install Debian's redis-server, or set TETHER_REDIS_SERVER)";
            assert!(std::env::var_os("CI").is_none(), "CI must run the Redis store tests, but: {what}");
            println!("skipped: {what}");
            return None;
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tether-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("redis scratch dir");
        // A freed ephemeral port can be taken by someone else before redis binds it: retry a few times.
        for _ in 0..5 {
            let port = free_port();
            let mut server =
                Self { binary: binary.clone(), port, dir: dir.clone(), child: None, cluster: false };
            server.spawn();
            if server.wait_ping(Duration::from_secs(5)).await {
                return Some(server);
            }
            server.stop();
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit; every key is lost (no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`stop`](Self::stop), or killing it first), and
    /// waits until it answers `PING`.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn();
        assert!(
            self.wait_ping(Duration::from_secs(5)).await,
            "redis-server did not come back on {}",
            self.port
        );
    }

    /// One command in RESP (`["ZCARD", "key"]`), its raw reply. Blocking; for small test reads.
    pub fn command(&self, args: &[&str]) -> String {
        command(self.port, args)
    }

    /// A command whose reply is an integer (`:N`).
    pub fn integer(&self, args: &[&str]) -> i64 {
        let reply = self.command(args);
        reply
            .trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{args:?}: {reply:?}"))
    }

    fn spawn(&mut self) {
        let mut command = Command::new(&self.binary);
        if self.cluster {
            command
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(self.dir.join("nodes.conf"));
        }
        let child = command
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--daemonize", "no", "--loglevel", "warning", "--maxmemory-policy", "noeviction"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
    }

    /// Polls `PING` until `+PONG` or the deadline (or the child exited: it lost the port race).
    async fn wait_ping(&mut self, deadline: Duration) -> bool {
        let end = tokio::time::Instant::now() + deadline;
        let mut poll = tokio::time::interval(Duration::from_millis(10));
        while tokio::time::Instant::now() < end {
            poll.tick().await;
            if self.child.as_mut().is_none_or(|c| c.try_wait().ok().flatten().is_some()) {
                return false;
            }
            if ping(self.port) {
                return true;
            }
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command in RESP to the Redis on `port`, its raw reply (from a thread that has no server handle).
pub fn command(port: u16, args: &[&str]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 64 * 1024];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TETHER_REDIS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("redis-server")).find(|p| p.is_file())
}

/// A loopback port that was free a moment ago (never 6379: the kernel hands out ephemeral ports).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A Redis Cluster of three primaries (no replicas), each a `redis-server --cluster-enabled yes` child
/// on a free loopback port whose cluster bus port (`port + 10000`) is free too, with its own scratch
/// directory and `nodes.conf`, and no persistence. Stopped by PID on drop.
///
/// Needs `redis-cli` too (`TETHER_REDIS_CLI`, or on `PATH`; Debian's `redis-tools`) for
/// `redis-cli --cluster create`. Without either binary [`RedisCluster::start`] returns `None` after a
/// message, or panics under CI.
pub struct RedisCluster {
    /// The three primaries, in port order of `--cluster create` (slots 0–5460, 5461–10922, 10923–16383).
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes, joins them into one cluster and waits until every node reports
    /// `cluster_state:ok`.
    pub async fn start() -> Option<Self> {
        let (Some(server), Some(cli)) = (binary(), cli_binary()) else {
            let what = "no redis-server or redis-cli on PATH (install Debian's redis-server and redis-tools, \
                        or set TETHER_REDIS_SERVER and TETHER_REDIS_CLI)";
            assert!(std::env::var_os("CI").is_none(), "CI must run the Redis Cluster tests, but: {what}");
            println!("skipped: {what}");
            return None;
        };
        let mut nodes = Vec::new();
        let mut tries = 0;
        while nodes.len() < 3 {
            tries += 1;
            assert!(tries <= 20, "no 3 cluster nodes started in 20 tries");
            let port = cluster_port(nodes.iter().map(|n: &RedisServer| n.port).collect());
            let mut node =
                RedisServer { binary: server.clone(), port, dir: scratch_dir(), child: None, cluster: true };
            node.spawn();
            if node.wait_ping(Duration::from_secs(5)).await {
                nodes.push(node);
            } else {
                node.stop();
            }
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_ok(Duration::from_secs(20)).await;
        Some(cluster)
    }

    /// The seed URLs, `redis://127.0.0.1:PORT` of every node.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The port of the primary that holds `key`'s slot: the one node that answers for it without
    /// `-MOVED`.
    pub fn owner(&self, key: &str) -> u16 {
        self.nodes
            .iter()
            .map(|n| n.port)
            .find(|&port| !command(port, &["TYPE", key]).starts_with("-MOVED"))
            .unwrap_or_else(|| panic!("no node serves {key}"))
    }

    /// How many keys each node holds, in node order.
    pub fn keys_per_node(&self) -> Vec<i64> {
        self.nodes.iter().map(|n| n.integer(&["DBSIZE"])).collect()
    }

    /// Kills every node (SIGKILL): the cluster is down and every key is lost.
    pub fn stop(&mut self) {
        self.nodes.iter_mut().for_each(RedisServer::stop);
    }

    /// Starts every node again on its port with its `nodes.conf`, so the same cluster (same slots) comes
    /// back, empty; waits for `cluster_state:ok`.
    pub async fn restart(&mut self) {
        for node in &mut self.nodes {
            node.restart().await;
        }
        self.wait_ok(Duration::from_secs(20)).await;
    }

    /// Removes every key on every primary.
    pub fn flush(&self) {
        for node in &self.nodes {
            node.command(&["FLUSHALL"]);
        }
    }

    /// Polls `CLUSTER INFO` on every node until each says `cluster_state:ok`.
    async fn wait_ok(&self, deadline: Duration) {
        let end = tokio::time::Instant::now() + deadline;
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        loop {
            poll.tick().await;
            if self.nodes.iter().all(|n| n.command(&["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
                return;
            }
            assert!(tokio::time::Instant::now() < end, "the cluster did not reach cluster_state:ok");
        }
    }
}

fn cli_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TETHER_REDIS_CLI") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("redis-cli")).find(|p| p.is_file())
}

fn scratch_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tether-redis-{}-c{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("redis scratch dir");
    dir
}

/// A free loopback port `p` whose cluster bus port `p + 10000` is free as well, and not one of `taken`
/// (or their bus ports). Both lie below the kernel's ephemeral range (32768 and up on Linux): a cluster
/// node is restarted on the same ports (its `nodes.conf` names them), and while it is down an outgoing
/// connection of the tether nodes reconnecting to it could otherwise be given one of them.
fn cluster_port(taken: Vec<u16>) -> u16 {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let mut n = seed ^ std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..1000 {
        n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        // 12000..22767: the bus port stays below 32768, and 6379 / 16379 are never used.
        let port = 12_000 + u16::try_from((n >> 8) % 10_767).unwrap();
        let clash = taken.iter().any(|&t| [t, t + 10000].contains(&port) || port + 10000 == t);
        if clash {
            continue;
        }
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
    panic!("no free port pair (p, p + 10000) below 32768 on 127.0.0.1");
}
