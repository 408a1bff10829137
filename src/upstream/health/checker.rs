//! The active checker: one task per node probing its check path every `interval` (plus jitter) and
//! feeding the results to the node's [`super::NodeHealth`]. All the I/O of health lives here; the
//! thresholds live in the pure machine next door.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Uri};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use ring::rand::{SecureRandom, SystemRandom};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{BackendId, HEALTH_BODY_LIMIT as BODY_LIMIT, HealthConfig};
use crate::upstream::stream;
use crate::upstream::{Backend, Upstreams};

/// Runs one active check of `backend` on a fresh connection (so a check proves the node still accepts
/// them: a pooled keep-alive connection can outlive a dead listener), over the node's scheme with the
/// same TLS verification as requests: a certificate that does not verify fails the check with rustls'
/// reason.
async fn probe(backend: &Backend, health: &HealthConfig) -> (bool, String) {
    let (path, timeout) = (health.path.as_str(), health.timeout);
    let check = async {
        let target: Uri = path.parse().map_err(|_| format!("invalid check path {path:?}"))?;
        // Checks are not traffic: their bytes are not the node's (HAProxy's `bin`/`bout` leave them out).
        let uncounted = std::sync::Arc::default();
        let conn = stream::connect(&backend.authority, backend.conns.tls(), timeout, uncounted).await?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(conn)).await.map_err(|e| with_causes(&e))?;
        let conn = tokio::spawn(conn);
        let mut req = Request::new(Empty::<bytes::Bytes>::new());
        *req.uri_mut() = target;
        // An authority is always a valid header value.
        let host =
            health.host.clone().or_else(|| http::HeaderValue::from_str(backend.authority.as_str()).ok());
        if let Some(host) = host {
            req.headers_mut().insert(http::header::HOST, host);
        }
        req.headers_mut()
            .insert(http::header::USER_AGENT, http::HeaderValue::from_static("tether-health-check"));
        let resp = sender.send_request(req).await.map_err(|e| {
            let mut detail = with_causes(&e);
            // TLS 1.3 finishes the client's handshake before the node judges its certificate: the
            // refusal comes as an alert on the first read.
            if detail.contains("CertificateRequired") {
                detail.push_str(
                    " (the node requires a client certificate: set pool.tls.client_cert and client_key)",
                );
            }
            detail
        });
        let resp = resp?;
        let status = resp.status().as_u16();
        let result = if !health.expect.status_passes(status) {
            (false, status.to_string())
        } else if health.expect.body.is_some() {
            let body = read_prefix(resp.into_body(), BODY_LIMIT).await;
            let found = health.expect.body_passes(&body);
            (
                found,
                if found { status.to_string() } else { format!("{status}, expected body text not found") },
            )
        } else {
            (true, status.to_string())
        };
        conn.abort();
        Ok::<_, String>(result)
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(result)) => result,
        Ok(Err(detail)) => (false, detail),
        Err(_) => (false, format!("timeout after {} ms", timeout.as_millis())),
    }
}

/// Up to `limit` bytes of `body` (a read error ends it: the text was then not found).
async fn read_prefix(mut body: hyper::body::Incoming, limit: usize) -> Vec<u8> {
    use http_body_util::BodyExt;
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let take = data.len().min(limit - out.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
            _ => break,
        }
    }
    out
}

/// A hyper error with its causes, so the detail names the real problem (a TLS alert from a node that
/// refused the proxy's client certificate is the cause of a read error).
fn with_causes(e: &hyper::Error) -> String {
    let mut text = format!("error: {e}");
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// Up to a tenth of `interval`, so the checks of many proxies (and many nodes) do not align.
fn jitter(rng: &SystemRandom, interval: Duration) -> Duration {
    let mut b = [0u8; 4];
    let r = rng.fill(&mut b).map_or(0, |()| u32::from_le_bytes(b));
    interval.mul_f64(f64::from(r) / f64::from(u32::MAX) / 10.0)
}

/// Checks one node every `interval` (plus jitter) until `stop` fires.
pub async fn check_loop(backend: Backend, health: HealthConfig, stop: CancellationToken) {
    let rng = SystemRandom::new();
    let mut wait = jitter(&rng, health.interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        if backend.state.health_checks_enabled() {
            let (pass, detail) = probe(&backend, &health).await;
            backend.state.record_check(pass, detail, health.rise, health.fall);
        }
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
                // The connections' identity changes with the address and the TLS settings, so a reload
                // that changes either restarts the check with them.
                let fingerprint = format!("{}|{:p}|{:?}", b.authority, Arc::as_ptr(&b.conns), pool.health);
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
