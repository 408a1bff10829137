//! The admin listener: liveness, readiness, node status and run-time node states (SPEC 4.8).
//!
//! Kept apart from the public listener (HAProxy's `monitor-uri` shares it; Envoy's admin does not) so
//! health probes and operator calls never compete with, or get routed like, client traffic.

pub mod status;

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::body::Body;
use crate::error::{am_error, json_response};
use crate::proxy::{Peer, Proxy};
use crate::reload::Reloader;
use crate::server::Handler;
use crate::upstream::{AdminState, Backend, Health};
use std::time::Duration;

/// The admin service.
pub struct Admin {
    proxy: Arc<Proxy>,
    reloader: Arc<Reloader>,
}

impl Admin {
    /// Admin endpoints over `proxy`'s state.
    pub fn new(proxy: Arc<Proxy>, reloader: Arc<Reloader>) -> Self {
        Self { proxy, reloader }
    }

    /// `POST /reload`: 200 with the new summary, or 400 naming every problem (nothing changed).
    async fn reload(&self) -> Response<Body> {
        let reloader = Arc::clone(&self.reloader);
        // Reading and validating the file is blocking work; keep it off the async workers.
        match tokio::task::spawn_blocking(move || reloader.reload()).await {
            Ok(Ok(summary)) => {
                json_response(StatusCode::OK, &json!({"status": "reloaded", "summary": summary}))
            }
            Ok(Err(e)) => am_error(StatusCode::BAD_REQUEST, &e.to_string()),
            Err(_) => am_error(StatusCode::INTERNAL_SERVER_ERROR, "the reload task failed"),
        }
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

impl Admin {
    /// `/status.json`: every pool and backend with role, health, admin state, traffic and the last check.
    fn status_json(&self) -> Response<Body> {
        let snap = self.proxy.snapshot();
        let pools: Vec<serde_json::Value> = snap
            .upstreams
            .pools
            .iter()
            .map(|pool| {
                let backends: Vec<serde_json::Value> = pool.backends.iter().map(backend_json).collect();
                json!({"name": pool.name, "balance": format!("{:?}", pool.balance), "backends": backends})
            })
            .collect();
        json_response(StatusCode::OK, &json!({"pools": pools}))
    }

    /// `POST /backends/{id}/{drain|ready|maint}[?deadline_s=N]`.
    fn set_state(&self, id: &str, action: &str, query: Option<&str>) -> Response<Body> {
        let state = match action {
            "drain" => AdminState::Drain,
            "ready" => AdminState::Ready,
            "maint" => AdminState::Maint,
            _ => {
                return am_error(
                    StatusCode::NOT_FOUND,
                    &format!("Unknown backend action '{action}': use drain, ready or maint"),
                );
            }
        };
        let deadline = match query.and_then(|q| crate::upstream::sticky::query_param(q, "deadline_s")) {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(s) if state == AdminState::Drain => Some(Duration::from_secs(s)),
                Ok(_) => return am_error(StatusCode::BAD_REQUEST, "deadline_s applies to drain only"),
                Err(_) => {
                    return am_error(
                        StatusCode::BAD_REQUEST,
                        &format!("deadline_s must be whole seconds, not {v:?}"),
                    );
                }
            },
        };
        let snap = self.proxy.snapshot();
        let Some(backend) = snap.upstreams.backend(id) else {
            return am_error(StatusCode::NOT_FOUND, &format!("No backend has id '{id}'"));
        };
        backend.state.set_admin(state, deadline);
        json_response(StatusCode::OK, &backend_json(backend))
    }
}

fn backend_json(b: &Backend) -> serde_json::Value {
    let info = b.state.health_info();
    let since_epoch =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    json!({
        "id": b.id.as_str(),
        "url": format!("{}://{}", b.scheme, b.authority),
        "role": b.role.as_str(),
        "health": if b.state.health() == Health::Up { "up" } else { "down" },
        "admin": b.state.admin().as_str(),
        "drain_left_s": b.state.drain_left().map(|d| d.as_secs()),
        "in_flight": b.state.in_flight(),
                "requests": b.state.requests(),
        "sticky_hits": b.state.sticky_hits(),
        "passive_failures": b.state.failures(),
                "transitions": info.transitions,
        "checks": info.checks,
        "last_transition": info.last_reason,
        "last_check": info.last_check.map(|c| json!({"pass": c.pass, "detail": c.detail, "at_unix": since_epoch(c.at)})),
    })
}

impl Handler for Admin {
    async fn call(&self, req: Request<Incoming>, _peer: Peer) -> Response<Body> {
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix("/backends/") {
            if req.method() != Method::POST {
                return am_error(StatusCode::METHOD_NOT_ALLOWED, "Backend state changes are POST requests");
            }
            return match rest.split_once('/') {
                Some((id, action)) => self.set_state(id, action, req.uri().query()),
                None => am_error(StatusCode::NOT_FOUND, "Use /backends/{id}/drain, /ready or /maint"),
            };
        }
        match (req.method(), path) {
            (&Method::GET | &Method::HEAD, "/status.json") => self.status_json(),
            (&Method::GET | &Method::HEAD, "/status") => html(status::render(&self.proxy.snapshot(), false)),
            (&Method::POST, "/reload") => self.reload().await,
            (&Method::GET | &Method::HEAD, "/healthz") => {
                json_response(StatusCode::OK, &json!({"status": "ok"}))
            }
            (&Method::GET | &Method::HEAD, "/readyz") => self.readyz(),
            _ => am_error(StatusCode::NOT_FOUND, "No admin endpoint at this path"),
        }
    }
}

fn html(page: String) -> Response<Body> {
    let mut resp = Response::new(crate::body::full(page));
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/html; charset=utf-8"));
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    resp
}
