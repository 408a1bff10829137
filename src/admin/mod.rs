//! The admin listener: liveness, readiness, metrics, node status and run-time node states.
//!
//! This module holds the route table, the token check and the small JSON endpoints; [`status`] renders
//! the status page and `/status.json`, [`metrics`] the Prometheus exposition.
//!
//! Bound to loopback by default; with `admin_token` set, every POST needs `Authorization: Bearer`
//! (or the token field of the status page's forms), so a reachable admin port cannot drain the cluster.
//!
//! Kept apart from the public listener (HAProxy's `monitor-uri` shares it; Envoy's admin does not) so
//! health probes and operator calls never compete with, or get routed like, client traffic.

pub mod metrics;
mod sessions;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::am::crest;
use crate::auth::AuthNode;
use crate::auth::session::SessionStore;
use crate::body::Body;
use crate::proxy::Proxy;
use crate::reload::Reloader;
use crate::server::{Handler, Peer};
use crate::upstream::{AdminState, Health, StateFile};

/// The admin service. It reads the proxy's current snapshot on every request, so a reload shows at once.
pub struct Admin {
    proxy: Arc<Proxy>,
    reloader: Arc<Reloader>,
    nodes: Vec<Arc<AuthNode>>,
    /// Where every change of a node's operator state is saved, when `proxy.state_file` is set.
    state_file: Option<Arc<StateFile>>,
    /// The store to administer sessions in when no embedded node holds one ([`sessions`]).
    session_store: Option<Arc<dyn SessionStore>>,
    /// Cancelled at SIGTERM/SIGINT: from then on `/readyz` answers 503 while the listeners close in turn.
    shutting_down: CancellationToken,
}

impl Admin {
    /// Admin endpoints over `proxy`'s state.
    pub fn new(
        proxy: Arc<Proxy>,
        reloader: Arc<Reloader>,
        nodes: Vec<Arc<AuthNode>>,
        state_file: Option<Arc<StateFile>>,
    ) -> Self {
        Self {
            proxy,
            reloader,
            nodes,
            state_file,
            session_store: None,
            shutting_down: CancellationToken::new(),
        }
    }

    /// `/readyz` answers 503 once `shutdown` is cancelled (the start of the phased shutdown).
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutting_down = shutdown;
        self
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
        if self.shutting_down.is_cancelled() {
            // Kubernetes and load balancers probing readiness take the process out while the public
            // listener still serves for `shutdown_delay_s` (the preStop pattern).
            crest::json(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "shutting down", "down": down}))
        } else if unready_pools.is_empty() {
            crest::json(StatusCode::OK, &json!({"status": "ready", "down": down}))
        } else {
            crest::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "not ready", "pools_without_node": unready_pools, "down": down}),
            )
        }
    }

    /// `POST /backends/{id}/{drain|ready|maint}[?deadline_s=N]`.
    ///
    /// The new state applies at once, then is saved to the state file. A failed save does not undo it:
    /// taking a node out must not depend on a disk (HAProxy's runtime state is likewise independent of
    /// its state file). It is answered 500 naming the file, so a script sees that the state will not
    /// survive a restart, and retrying the same change is safe.
    async fn set_state(&self, id: &str, action: &str, query: Option<&str>) -> Response<Body> {
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
        let answer = status::backend_json(backend);
        drop(snap);
        if let Some(file) = &self.state_file {
            let (file, proxy) = (Arc::clone(file), Arc::clone(&self.proxy));
            // Blocking file work, off the async workers; the writer's lock lives inside it. The states
            // are read after that lock is taken, so the last write to land holds the newest state.
            let saved = tokio::task::spawn_blocking(move || {
                let snap = proxy.snapshot();
                file.save(&snap.config, &snap.upstreams)
            })
            .await;
            let error = match saved {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => {
                    Some("the state file writer failed; the new state applies but was not saved".into())
                }
            };
            if let Some(error) = error {
                tracing::error!(backend = id, state = state.as_str(), %error, "admin state not saved");
                return crest::error_with(StatusCode::INTERNAL_SERVER_ERROR, &error, Some(answer));
            }
        }
        crest::json(StatusCode::OK, &answer)
    }
}

impl Admin {
    /// `POST /sessions/unlock?user=NAME`: ends the user's lockout in every guard this process's nodes
    /// use, which is the store they share (Redis: every process on it).
    async fn unlock(&self, query: Option<&str>) -> Response<Body> {
        let user = query.and_then(|q| crate::am::request::query_param(q, "user")).filter(|u| !u.is_empty());
        let Some(user) = user else {
            return crest::error(StatusCode::BAD_REQUEST, "Name the user: POST /sessions/unlock?user=NAME");
        };
        if self.nodes.is_empty() {
            return crest::error(
                StatusCode::NOT_FOUND,
                "This process runs no auth node: unlock on the admin listener of a `tether run` whose \
                 embedded nodes share the store",
            );
        }
        // One call per distinct guard: nodes sharing a store share one (the same `Arc`).
        let mut distinct: Vec<&Arc<AuthNode>> = Vec::new();
        for node in &self.nodes {
            if !distinct.iter().any(|d| Arc::ptr_eq(d.guard(), node.guard())) {
                distinct.push(node);
            }
        }
        let mut unlocked = false;
        for node in distinct {
            match node.unlock(&user).await {
                Ok(was) => unlocked |= was,
                Err(e) => return crest::error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            }
        }
        crest::json(StatusCode::OK, &json!({"user": user, "unlocked": unlocked}))
    }
}

impl Handler for Admin {
    async fn call(&self, req: Request<Incoming>, _peer: Peer) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        if parts.method == Method::POST {
            if let Some(refused) = refuse_cross_site(&parts) {
                return refused;
            }
            // The status page's buttons are plain HTML forms: they carry the token as a field and want
            // to land back on the page, not on a JSON answer.
            let form = is_form(&parts.headers);
            let fields = if form { read_form(body).await } else { String::new() };
            if let Some(refused) = self.refuse_without_token(&parts.headers, &fields) {
                return refused;
            }
            let resp = match path.strip_prefix("/backends/") {
                Some(rest) => match rest.split_once('/') {
                    Some((id, action)) => self.set_state(id, action, parts.uri.query()).await,
                    None => crest::error(StatusCode::NOT_FOUND, "Use /backends/{id}/drain, /ready or /maint"),
                },
                None if path == "/reload" => self.reload().await,
                None if path == "/sessions/logout" => self.logout_sessions(parts.uri.query()).await,
                None if path == "/sessions/unlock" => self.unlock(parts.uri.query()).await,
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
            "/status.json" => {
                let mut answer = status::json(&self.proxy.snapshot());
                answer["auth_nodes"] = sessions::sessions_json(&self.sessions_per_node());
                crest::json(StatusCode::OK, &answer)
            }
            "/status" => {
                let snap = self.proxy.snapshot();
                let page = status::render(&snap, snap.config.proxy.admin_token.is_some());
                html(sessions::with_sessions_table(page, &self.sessions_per_node()))
            }
            // It lists users' sessions: as guarded as a change.
            "/sessions" => match self.refuse_without_token(&parts.headers, "") {
                Some(refused) => refused,
                None => self.list_sessions(parts.uri.query()).await,
            },
            "/metrics" => self.metrics(),
            p if p.starts_with("/backends/")
                || p == "/reload"
                || p == "/sessions/logout"
                || p == "/sessions/unlock" =>
            {
                crest::error(StatusCode::METHOD_NOT_ALLOWED, "Changes are POST requests")
            }
            _ => crest::error(StatusCode::NOT_FOUND, "No admin endpoint at this path"),
        }
    }
}

impl Admin {
    /// The 401 for a request without the `admin_token` (when one is set), by `Authorization: Bearer`
    /// or the `token` field of a status page form in `fields`.
    fn refuse_without_token(&self, headers: &http::HeaderMap, fields: &str) -> Option<Response<Body>> {
        let expected = self.proxy.snapshot().config.proxy.admin_token.clone()?;
        let given = bearer(headers)
            .map(str::to_owned)
            .or_else(|| crate::am::request::query_param(fields, "token").map(|t| t.into_owned()));
        // Constant time in the token's content, so response timing does not leak how many leading
        // bytes of a guess were right.
        if given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes()))) {
            return None;
        }
        Some(crest::error(
            StatusCode::UNAUTHORIZED,
            "This admin endpoint needs `Authorization: Bearer <admin_token>`",
        ))
    }
}

/// The 403 for a change sent by another site's page (CSRF): a browser names the page that sent a
/// form in `Origin` (RFC 6454 section 7) or, failing that, `Referer`, and marks a cross-site request
/// with `Sec-Fetch-Site`. Without a token a page the operator visits could otherwise put a node in
/// maint. Tools (curl, scripts) send none of these and are not affected.
fn refuse_cross_site(parts: &http::request::Parts) -> Option<Response<Body>> {
    let text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    // HTTP/1.1 names this listener in `Host`, HTTP/2 in `:authority` (the URI's).
    let this = parts.uri.authority().map(|a| a.as_str()).or_else(|| text("host"));
    let same_host = |url: &str| {
        let that = url.parse::<http::Uri>().ok().and_then(|u| u.authority().cloned());
        that.is_some_and(|that| this.is_some_and(|this| that.as_str().eq_ignore_ascii_case(this)))
    };
    let foreign = text("origin").or_else(|| text("referer")).is_some_and(|page| !same_host(page))
        || text("sec-fetch-site").is_some_and(|s| s.eq_ignore_ascii_case("cross-site"));
    foreign.then(|| {
        crest::error(
            StatusCode::FORBIDDEN,
            "Admin changes are refused from another site's page (its Origin or Referer is not this \
             listener); use the status page on this address, or a client that sends no Origin",
        )
    })
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
