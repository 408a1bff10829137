//! The admin listener: liveness, readiness, metrics, node status and run-time node states (SPEC 4.8).
//!
//! Bound to loopback by default; with `admin_token` set, every POST needs `Authorization: Bearer`
//! (or the token field of the status page's forms), so a reachable admin port cannot drain the cluster.
//!
//! Kept apart from the public listener (HAProxy's `monitor-uri` shares it; Envoy's admin does not) so
//! health probes and operator calls never compete with, or get routed like, client traffic.

pub mod metrics;
pub mod status;

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::am::crest;
use crate::auth::AuthNode;
use crate::body::Body;
use crate::proxy::{Peer, Proxy};
use crate::reload::Reloader;
use crate::server::Handler;
use crate::upstream::{AdminState, Backend, Health};
use std::time::Duration;

/// The admin service.
pub struct Admin {
    proxy: Arc<Proxy>,
    reloader: Arc<Reloader>,
    nodes: Vec<Arc<AuthNode>>,
}

impl Admin {
    /// Admin endpoints over `proxy`'s state.
    pub fn new(proxy: Arc<Proxy>, reloader: Arc<Reloader>, nodes: Vec<Arc<AuthNode>>) -> Self {
        Self { proxy, reloader, nodes }
    }

    /// `GET /metrics`: Prometheus text exposition.
    fn metrics(&self) -> Response<Body> {
        let text = metrics::render(self.proxy.metrics(), &self.proxy.snapshot().upstreams, &self.nodes);
        let mut resp = Response::new(crate::body::full(text));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        resp
    }

    /// `POST /reload`: 200 with the new summary, or 400 naming every problem (nothing changed).
    async fn reload(&self) -> Response<Body> {
        let reloader = Arc::clone(&self.reloader);
        // Reading and validating the file is blocking work; keep it off the async workers.
        match tokio::task::spawn_blocking(move || reloader.reload()).await {
            Ok(Ok(summary)) => {
                crest::json(StatusCode::OK, &json!({"status": "reloaded", "summary": summary}))
            }
            Ok(Err(e)) => crest::error(StatusCode::BAD_REQUEST, &e.to_string()),
            Err(_) => crest::error(StatusCode::INTERNAL_SERVER_ERROR, "the reload task failed"),
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
            crest::json(StatusCode::OK, &json!({"status": "ready", "down": down}))
        } else {
            crest::json(
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
        crest::json(StatusCode::OK, &json!({"pools": pools}))
    }

    /// `POST /backends/{id}/{drain|ready|maint}[?deadline_s=N]`.
    fn set_state(&self, id: &str, action: &str, query: Option<&str>) -> Response<Body> {
        let state = match action {
            "drain" => AdminState::Drain,
            "ready" => AdminState::Ready,
            "maint" => AdminState::Maint,
            _ => {
                return crest::error(
                    StatusCode::NOT_FOUND,
                    &format!("Unknown backend action '{action}': use drain, ready or maint"),
                );
            }
        };
        let deadline = match query.and_then(|q| crate::am::request::query_param(q, "deadline_s")) {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(s) if state == AdminState::Drain => Some(Duration::from_secs(s)),
                Ok(_) => return crest::error(StatusCode::BAD_REQUEST, "deadline_s applies to drain only"),
                Err(_) => {
                    return crest::error(
                        StatusCode::BAD_REQUEST,
                        &format!("deadline_s must be whole seconds, not {v:?}"),
                    );
                }
            },
        };
        let snap = self.proxy.snapshot();
        let Some(backend) = snap.upstreams.backend(id) else {
            return crest::error(StatusCode::NOT_FOUND, &format!("No backend has id '{id}'"));
        };
        backend.state.set_admin(state, deadline);
        crest::json(StatusCode::OK, &backend_json(backend))
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
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        if parts.method == Method::POST {
            // The status page's buttons are plain HTML forms: they carry the token as a field and want
            // to land back on the page, not on a JSON answer.
            let form = is_form(&parts.headers);
            let fields = if form { read_form(body).await } else { String::new() };
            let expected = self.proxy.snapshot().config.proxy.admin_token.clone();
            if let Some(expected) = expected {
                let given = bearer(&parts.headers)
                    .map(str::to_owned)
                    .or_else(|| crate::am::request::query_param(&fields, "token").map(|t| t.into_owned()));
                if !given.is_some_and(|g| same_secret(g.as_bytes(), expected.as_bytes())) {
                    return crest::error(
                        StatusCode::UNAUTHORIZED,
                        "This admin endpoint needs `Authorization: Bearer <admin_token>`",
                    );
                }
            }
            let resp = match path.strip_prefix("/backends/") {
                Some(rest) => match rest.split_once('/') {
                    Some((id, action)) => self.set_state(id, action, parts.uri.query()),
                    None => crest::error(StatusCode::NOT_FOUND, "Use /backends/{id}/drain, /ready or /maint"),
                },
                None if path == "/reload" => self.reload().await,
                None => crest::error(StatusCode::NOT_FOUND, "No admin endpoint at this path"),
            };
            return if form && resp.status().is_success() { see_other("/status") } else { resp };
        }
        let read = parts.method == Method::GET || parts.method == Method::HEAD;
        match path {
            _ if !read => {
                crest::error(StatusCode::METHOD_NOT_ALLOWED, "Admin endpoints take GET, or POST for changes")
            }
            "/healthz" => crest::json(StatusCode::OK, &json!({"status": "ok"})),
            "/readyz" => self.readyz(),
            "/status.json" => self.status_json(),
            "/status" => {
                let snap = self.proxy.snapshot();
                html(status::render(&snap, snap.config.proxy.admin_token.is_some()))
            }
            "/metrics" => self.metrics(),
            p if p.starts_with("/backends/") || p == "/reload" => {
                crest::error(StatusCode::METHOD_NOT_ALLOWED, "Changes are POST requests")
            }
            _ => crest::error(StatusCode::NOT_FOUND, "No admin endpoint at this path"),
        }
    }
}

fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// A form body, bounded: the admin forms carry one short field.
async fn read_form(body: Incoming) -> String {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, 8 * 1024).collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => String::new(),
    }
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares secrets in time independent of where they differ (HMAC of both under a fresh key).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use ring::hmac;
    let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new());
    match key {
        Ok(key) => hmac::verify(&key, a, hmac::sign(&key, b).as_ref()).is_ok(),
        Err(_) => false,
    }
}

fn see_other(location: &'static str) -> Response<Body> {
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    resp.headers_mut().insert(http::header::LOCATION, http::HeaderValue::from_static(location));
    resp
}

fn html(page: String) -> Response<Body> {
    let mut resp = Response::new(crate::body::full(page));
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/html; charset=utf-8"));
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    resp
}
