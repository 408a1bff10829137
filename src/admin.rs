//! The admin listener: liveness and readiness for orchestrators (SPEC 4.8).
//!
//! Kept apart from the public listener (HAProxy's `monitor-uri` shares it; Envoy's admin does not) so
//! health probes and operator calls never compete with, or get routed like, client traffic.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::body::Body;
use crate::error::{am_error, json_response};
use crate::proxy::{Peer, Proxy};
use crate::server::Handler;
use crate::upstream::{AdminState, Health};

/// The admin service.
pub struct Admin {
    proxy: Arc<Proxy>,
}

impl Admin {
    /// Admin endpoints over `proxy`'s state.
    pub fn new(proxy: Arc<Proxy>) -> Self {
        Self { proxy }
    }

    fn readyz(&self) -> Response<Body> {
        let snap = self.proxy.snapshot();
        let mut down = Vec::new();
        let mut unready_pools = Vec::new();
        for pool in &snap.upstreams.pools {
            let mut serving = false;
            for b in &pool.backends {
                let (health, admin) = (b.state.health(), b.state.admin());
                if health == Health::Up && admin != AdminState::Maint {
                    serving = true;
                } else {
                    down.push(json!({
                        "pool": pool.name,
                        "backend": b.id.as_str(),
                        "role": b.role.as_str(),
                        "health": if health == Health::Up { "up" } else { "down" },
                        "admin": admin.as_str(),
                    }));
                }
            }
            if !serving {
                unready_pools.push(pool.name.as_str());
            }
        }
        if unready_pools.is_empty() {
            json_response(StatusCode::OK, &json!({"status": "ready", "down": down}))
        } else {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "not ready", "pools_without_node": unready_pools, "down": down}),
            )
        }
    }
}

impl Handler for Admin {
    async fn call(&self, req: Request<Incoming>, _peer: Peer) -> Response<Body> {
        match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/healthz") => {
                json_response(StatusCode::OK, &json!({"status": "ok"}))
            }
            (&Method::GET | &Method::HEAD, "/readyz") => self.readyz(),
            _ => am_error(StatusCode::NOT_FOUND, "No admin endpoint at this path"),
        }
    }
}
