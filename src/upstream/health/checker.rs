//! The active checker: one task per node probing its check path every `interval` (plus jitter) and
//! feeding the results to the node's [`super::NodeHealth`]. All the I/O of health lives here; the
//! thresholds live in the pure machine next door.

use std::collections::HashMap;
use std::time::Duration;

use http::{Request, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use parking_lot::Mutex;
use ring::rand::{SecureRandom, SystemRandom};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{BackendId, HealthConfig};
use crate::upstream::{Backend, Upstreams};

type CheckClient = Client<HttpConnector, Empty<bytes::Bytes>>;

/// A client that opens a fresh connection per check, so a check proves the node still accepts them
/// (a pooled keep-alive connection can outlive a dead listener).
fn check_client(timeout: Duration) -> CheckClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// Runs one active check of `backend`.
async fn probe(client: &CheckClient, backend: &Backend, path: &str, timeout: Duration) -> (bool, String) {
    let uri = Uri::builder()
        .scheme(backend.scheme.clone())
        .authority(backend.authority.clone())
        .path_and_query(path)
        .build();
    let Ok(uri) = uri else {
        return (false, format!("invalid check path {path:?}"));
    };
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = uri;
    req.headers_mut().insert(http::header::USER_AGENT, http::HeaderValue::from_static("tether-health-check"));
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(resp)) => (resp.status().is_success(), resp.status().as_u16().to_string()),
        Ok(Err(e)) if e.is_connect() => (false, "connect failed".to_string()),
        Ok(Err(e)) => (false, format!("error: {e}")),
        Err(_) => (false, format!("timeout after {} ms", timeout.as_millis())),
    }
}

/// Up to a tenth of `interval`, so the checks of many proxies (and many nodes) do not align.
fn jitter(rng: &SystemRandom, interval: Duration) -> Duration {
    let mut b = [0u8; 4];
    let r = rng.fill(&mut b).map_or(0, |()| u32::from_le_bytes(b));
    interval.mul_f64(f64::from(r) / f64::from(u32::MAX) / 10.0)
}

/// Checks one node every `interval` (plus jitter) until `stop` fires.
pub async fn check_loop(backend: Backend, health: HealthConfig, stop: CancellationToken) {
    let client = check_client(health.timeout);
    let rng = SystemRandom::new();
    let mut wait = jitter(&rng, health.interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let (pass, detail) = probe(&client, &backend, &health.path, health.timeout).await;
        backend.state.record_check(pass, detail, health.rise, health.fall);
        wait = health.interval + jitter(&rng, health.interval);
    }
}

/// The running checkers, one per server ID; [`Checkers::sync`] brings them in line with a snapshot.
pub struct Checkers {
    running: Mutex<HashMap<BackendId, (String, CancellationToken)>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Checkers {
    /// Checkers that stop with `shutdown` and are tracked by `tasks`.
    pub fn new(shutdown: CancellationToken, tasks: TaskTracker) -> Self {
        Self { running: Mutex::default(), shutdown, tasks }
    }

    /// Starts checks of new nodes, restarts those whose address or check settings changed, stops those
    /// no longer configured. Health state itself lives in the node's shared state and is untouched.
    pub fn sync(&self, upstreams: &Upstreams) {
        let mut running = self.running.lock();
        let mut wanted = HashMap::new();
        for pool in &upstreams.pools {
            for b in &pool.backends {
                let fingerprint = format!("{}|{:?}", b.authority, pool.health);
                wanted.insert(b.id.clone(), (fingerprint, b.clone(), pool.health.clone()));
            }
        }
        running.retain(|id, (fingerprint, stop)| {
            let keep = wanted.get(id).is_some_and(|(f, _, _)| f == fingerprint);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for (id, (fingerprint, backend, health)) in wanted {
            if running.contains_key(&id) {
                continue;
            }
            let stop = self.shutdown.child_token();
            self.tasks.spawn(check_loop(backend, health, stop.clone()));
            running.insert(id, (fingerprint, stop));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_tenth() {
        let rng = SystemRandom::new();
        for _ in 0..100 {
            assert!(jitter(&rng, Duration::from_secs(1)) <= Duration::from_millis(100));
        }
    }
}
