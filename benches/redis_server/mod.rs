//! The `redis-server` the Redis benchmarks run against: a child process on a free loopback port (never
//! 6379), without persistence (`--save '' --appendonly no`), with `noeviction` as production needs, in its
//! own scratch directory, killed and cleaned up on drop.
//!
//! The binary is `TETHER_REDIS_SERVER` or `redis-server` on `PATH`; without one [`RedisServer::start`]
//! says so and returns `None`, and the Redis cases are skipped (benchmarks are not part of CI).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// One `redis-server` process.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl RedisServer {
    /// Starts a server and polls `PING` until it answers; `None` (after a message) without a binary.
    pub fn start(bench: &str) -> Option<Self> {
        let Some(binary) = binary() else {
            eprintln!(
                "{bench}: skipped: no redis-server on PATH (install Debian's redis-server, or set TETHER_REDIS_SERVER)"
            );
            return None;
        };
        let dir = std::env::temp_dir().join(format!("tether-bench-redis-{}-{bench}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis scratch dir");
        // A port freed by the probe can be taken before redis binds it: a few attempts.
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new(&binary)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--maxmemory-policy", "noeviction", "--daemonize", "no", "--loglevel", "warning"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let mut server = Self { port, dir: dir.clone(), child };
            if server.answers_within(Duration::from_secs(5)) {
                return Some(server);
            }
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Polls `PING` until `+PONG`, the deadline, or the child's exit (it lost the port race).
    fn answers_within(&mut self, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TETHER_REDIS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("redis-server")).find(|p| p.is_file())
}

/// A loopback port that was free a moment ago (an ephemeral one, so never 6379).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
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
