//! Node health: a pure rise/fall state machine, and the active checker that feeds it.
//!
//! As in HAProxy (`check inter rise fall`) a node starts up, goes down after `fall` failed checks in a
//! row and comes back after `rise` passes in a row; a single result against the streak resets it, so a
//! flapping node does not bounce in and out. Failures seen on real traffic (connect refused or timed out)
//! count as failed checks at once (HAProxy's `observe layer4`), so a dead node leaves the serving tier
//! before the next probe is due.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::{Request, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ring::rand::{SecureRandom, SystemRandom};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Backend, BackendState, Upstreams};
use crate::config::{BackendId, HealthConfig};

/// A change of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Down → up after `rise` passes.
    Up,
    /// Up → down after `fall` failures.
    Down,
}

/// The rise/fall counter of one node. Pure: no clock, no I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthMachine {
    up: bool,
    /// Results in a row that disagree with the current state.
    streak: u32,
}

impl Default for HealthMachine {
    /// Nodes start up, so a fresh proxy serves at once; failing checks take them out after `fall`.
    fn default() -> Self {
        Self { up: true, streak: 0 }
    }
}

impl HealthMachine {
    /// Whether the node counts as up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Results in a row against the current state.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Feeds one result; returns the transition it caused, if any.
    pub fn observe(&mut self, pass: bool, rise: u32, fall: u32) -> Option<Transition> {
        if pass == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let threshold = if self.up { fall } else { rise };
        if self.streak < threshold.max(1) {
            return None;
        }
        self.up = pass;
        self.streak = 0;
        Some(if pass { Transition::Up } else { Transition::Down })
    }
}

/// The outcome of the last active check, for the status page.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// When it finished.
    pub at: SystemTime,
    /// Whether it passed.
    pub pass: bool,
    /// `200`, `503`, `timeout`, `connect: …`.
    pub detail: String,
}

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
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
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

/// Logs a transition with its reason.
pub(super) fn log_transition(state: &BackendState, t: Transition, reason: &str) {
    match t {
        Transition::Down => tracing::warn!(backend = %state.id, reason, "backend is down"),
        Transition::Up => tracing::info!(backend = %state.id, reason, "backend is up"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &mut HealthMachine, results: &[bool], rise: u32, fall: u32) -> Vec<Option<Transition>> {
        results.iter().map(|&r| m.observe(r, rise, fall)).collect()
    }

    #[test]
    fn goes_down_after_fall_failures_in_a_row() {
        let mut m = HealthMachine::default();
        assert_eq!(run(&mut m, &[false, false], 2, 2), [None, Some(Transition::Down)]);
        assert!(!m.is_up());
    }

    #[test]
    fn comes_back_after_rise_passes_in_a_row() {
        let mut m = HealthMachine::default();
        run(&mut m, &[false, false], 3, 2);
        assert_eq!(run(&mut m, &[true, true, true], 3, 2), [None, None, Some(Transition::Up)]);
        assert!(m.is_up());
    }

    #[test]
    fn a_flapping_node_does_not_bounce() {
        let mut m = HealthMachine::default();
        let flaps = [false, true, false, true, false, true, false, true];
        assert!(
            run(&mut m, &flaps, 2, 2).iter().all(Option::is_none),
            "alternating results never reach fall"
        );
        assert!(m.is_up());
        run(&mut m, &[false, false], 2, 2);
        assert!(!m.is_up());
        let flaps = [true, false, true, false, true, false];
        assert!(run(&mut m, &flaps, 2, 2).iter().all(Option::is_none), "nor rise");
        assert!(!m.is_up());
    }

    #[test]
    fn results_agreeing_with_the_state_reset_the_streak() {
        let mut m = HealthMachine::default();
        assert_eq!(run(&mut m, &[false, false, true, false, false], 3, 3), [None, None, None, None, None]);
        assert_eq!(m.streak(), 2);
        assert_eq!(m.observe(false, 3, 3), Some(Transition::Down));
    }

    #[test]
    fn thresholds_of_one_act_at_once() {
        let mut m = HealthMachine::default();
        assert_eq!(m.observe(false, 1, 1), Some(Transition::Down));
        assert_eq!(m.observe(true, 1, 1), Some(Transition::Up));
        assert_eq!(HealthMachine::default().observe(false, 1, 0), Some(Transition::Down), "zero acts as one");
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        let rng = SystemRandom::new();
        for _ in 0..100 {
            assert!(jitter(&rng, Duration::from_secs(1)) <= Duration::from_millis(100));
        }
    }
}
