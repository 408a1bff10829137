//! Shutdown in phases, so nothing in front of tether sends to a listener that is closing:
//! 1. the shutdown token fires (SIGTERM/SIGINT): `/readyz` answers 503 and `tether_shutting_down` is 1;
//! 2. the public listener keeps serving for `shutdown_delay_s`, long enough for load balancers and
//!    Kubernetes probing readiness to take the process out (the preStop pattern);
//! 3. the public listener stops accepting and its in-flight requests get `shutdown_grace_s`;
//! 4. the embedded auth nodes and the health checks stop (their in-flight requests get the same grace);
//! 5. the admin listener (`/healthz`, `/readyz`, `/status`, `/metrics`) closes last, so every phase
//!    before it can be watched.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proxy::Proxy;

/// The token of each phase after the first, cancelled in turn by [`run`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Phases {
    /// Stops the public listener.
    pub public: CancellationToken,
    /// Stops the embedded nodes and the health checks.
    pub nodes: CancellationToken,
    /// Stops the admin listener.
    pub admin: CancellationToken,
}

/// Waits for `shutdown`, then closes the listeners in turn; `public` is the public listener's task,
/// `nodes` the tracker of the embedded nodes' tasks.
pub(crate) async fn run(
    shutdown: CancellationToken,
    phases: Phases,
    proxy: Arc<Proxy>,
    public: JoinHandle<()>,
    nodes: TaskTracker,
) {
    shutdown.cancelled().await;
    proxy.metrics().shutting_down().set(1);
    // Read now, not at start, so a reload's value applies.
    let delay = proxy.snapshot().config.proxy.shutdown_delay;
    if !delay.is_zero() {
        tracing::info!(
            shutdown_delay_s = delay.as_secs(),
            "shutting down: /readyz answers 503, the public listener closes after shutdown_delay_s"
        );
        tokio::time::sleep(delay).await;
    }
    tracing::info!("the public listener stops accepting; in-flight requests get shutdown_grace_s");
    phases.public.cancel();
    let _ = public.await;
    phases.nodes.cancel();
    nodes.close();
    nodes.wait().await;
    tracing::info!("the admin listener closes");
    phases.admin.cancel();
}
