//! Fixtures for scenario tests: real listeners on `127.0.0.1:0`, real HTTP clients. Each fixture is a
//! builder or a start function returning a handle with its address and a way to stop it, so tests read
//! like the scenario they check.
//!
//! - `exposition`: a reader of the `/metrics` text, for asserting values.
//! - `config`: the named TOML files of `tests/fixtures/` and the editor tests change keys with.
//! - `cluster`: [`Cluster`], the builder that starts tether in-process, and its [`ProxyHandle`].
//! - `backend`: [`TestBackend`], an echo server that counts, holds and streams.
//! - `journey`: [`Journey`], a client's AM login over HTTP; the users' credentials.
//! - `local`: [`LocalNodes`], auth nodes called in-process (paused-time tests), and calls on them.
//! - `tls`: a self-signed `localhost` certificate and a client trusting it.
//! - `browser`: [`Tools`], `node` and Chromium for the tool-driven checks, or a skip (a failure under CI).
//! - `process`: [`TetherProcess`], the real binary as a child process.
//! - `redis`: [`RedisServer`], a real `redis-server` on a free loopback port, stopped and restarted by PID;
//!   [`RedisCluster`], three of them joined into a Redis Cluster.
//! - `deployment`: [`Deployment`], three `tether node` processes on one Redis (or cluster), and
//!   [`login_race`], concurrent logins of one user against a store sampler.
// Each test binary uses a part of the support: the rest is dead code there.
#![allow(dead_code)]

pub mod am_token;
mod backend;
mod browser;
mod cluster;
mod config;
mod deployment;
pub mod exposition;
mod journey;
mod local;
mod process;
mod redis;
mod tls;

use std::sync::Once;
use std::time::Duration;

// Re-exports a test binary does not use are not a fault of that binary.
#[allow(unused_imports)]
pub use backend::{BackendHandle, BackendOptions, TestBackend, Zeros, served_by};
#[allow(unused_imports)]
pub use browser::Tools;
#[allow(unused_imports)]
pub use cluster::{Cluster, ProxyHandle, backend_status};
#[allow(unused_imports)]
pub use config::{CHECK_ERRORS, METRICS, TWO_POOLS, Toml};
#[allow(unused_imports)]
pub use deployment::{DEMO_PASSWORD, Deployment, Race, StoreAt, login_race};
#[allow(unused_imports)]
pub use journey::{Journey, TOTP_SECRET, cheap_hash, totp_now};
#[allow(unused_imports)]
pub use local::{LocalNodes, authenticate, call, fill, is_valid, login, try_login};
#[allow(unused_imports)]
pub use process::TetherProcess;
#[allow(unused_imports)]
pub use redis::{RedisCluster, RedisServer, command as redis_command};
#[allow(unused_imports)]
pub use tls::{cert_valid_for, https_client, localhost_cert};

/// Installs the ring provider for rustls once (reqwest is built without a provider of its own).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A plain HTTP client: no proxy from the environment, no cookie jar, no redirects.
pub fn client() -> reqwest::Client {
    init();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// An HTTP/2 prior-knowledge (h2c) client.
pub fn h2c_client() -> reqwest::Client {
    init();
    reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().expect("h2c client")
}

/// Polls `check` until it holds or `deadline` passes.
pub async fn eventually(what: &str, deadline: Duration, mut check: impl AsyncFnMut() -> bool) {
    let end = tokio::time::Instant::now() + deadline;
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    loop {
        poll.tick().await;
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "timed out waiting for: {what}");
    }
}

/// An empty directory under the target directory, unique per test binary run: `{prefix}-{pid}-{name}`.
pub fn scratch_dir(prefix: &str, name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process killed (and reaped) when the test ends, whichever way it ends.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
