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

mod caller;
pub mod metrics;
mod process;
mod sessions;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::am::crest;
use crate::am::request::query_param;
use crate::auth::AuthNode;
use crate::auth::session::SessionStore;
use crate::body::Body;
use crate::proxy::Proxy;
use crate::reload::Reloader;
use crate::server::{Handler, Peer};
use crate::upstream::{AdminState, Health, StateFile};
pub use caller::How;
use caller::{ADMIN_LOG, Caller, basic_challenge, proven, same_token, unauthorized};

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
        let text = metrics::render(
            self.proxy.metrics(),
            &self.proxy.snapshot().upstreams,
            &self.nodes,
            self.reloader.stats(),
        );
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
    async fn set_state(
        &self,
        id: &str,
        action: &str,
        deadline: Option<&str>,
        caller: &Caller,
    ) -> Response<Body> {
        let resp = self.set_state_of(id, action, deadline).await;
        // Who changed which node to what, and whether it took: the audit line of a drain.
        tracing::info!(
            target: ADMIN_LOG, backend = id, action,
            deadline_s = deadline.and_then(|d| d.parse::<u64>().ok()), client = %caller.addr,
            auth = caller.how.map_or("none", How::as_str), status = resp.status().as_u16(),
            result = if resp.status().is_success() { "ok" } else { "refused" },
            "admin change: backend state"
        );
        resp
    }

    async fn set_state_of(&self, id: &str, action: &str, deadline: Option<&str>) -> Response<Body> {
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
        let deadline = match deadline {
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
        self.saved(id, answer).await
    }

    /// Saves every node's operator state to the state file, if there is one, and answers with the
    /// node's `answer`: 200, or 500 naming the file when the save failed (the change applies anyway).
    async fn saved(&self, id: &str, answer: serde_json::Value) -> Response<Body> {
        let Some(file) = &self.state_file else { return crest::json(StatusCode::OK, &answer) };
        let (file, proxy) = (Arc::clone(file), Arc::clone(&self.proxy));
        // Blocking file work, off the async workers; the writer's lock lives inside it. The states
        // are read after that lock is taken, so the last write to land holds the newest state.
        let saved = tokio::task::spawn_blocking(move || {
            let snap = proxy.snapshot();
            file.save(&snap.config, &snap.upstreams)
        })
        .await;
        let error = match saved {
            Ok(Ok(())) => return crest::json(StatusCode::OK, &answer),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the state file writer failed; the new state applies but was not saved".into(),
        };
        tracing::error!(backend = id, %error, "admin state not saved");
        crest::error_with(StatusCode::INTERNAL_SERVER_ERROR, &error, Some(answer))
    }
}

impl Admin {
    /// `POST /backends/{id}/health/disable|enable`: HAProxy's `disable health` / `enable health`. While
    /// disabled no check runs and the node counts as up. Saved in the state file like an admin state
    /// (a restart must not bring back the checks an operator turned off for a broken check endpoint).
    async fn set_health_checks(&self, id: &str, enabled: bool) -> Response<Body> {
        let snap = self.proxy.snapshot();
        let Some(backend) = snap.upstreams.backend(id) else {
            return crest::error(StatusCode::NOT_FOUND, &format!("No backend has id '{id}'"));
        };
        backend.state.set_health_checks(enabled);
        let answer = status::backend_json(backend);
        drop(snap);
        self.saved(id, answer).await
    }

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
    async fn call(&self, req: Request<Incoming>, peer: Peer) -> Response<Body> {
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let caller = self.caller(req.headers(), &peer);
        let resp = self.route(req, &caller).await;
        // Every admin request, so an operator can tell who looked and who tried to act.
        tracing::info!(
            target: ADMIN_LOG, method = %method, path = %path, status = resp.status().as_u16(),
            client = %caller.addr, auth = caller.how.map_or("none", How::as_str), "admin request"
        );
        resp
    }
}

impl Admin {
    /// Who sends a request: its address (the client a trusted proxy names, as the access line does)
    /// and how it proved the `admin_token`, if it did.
    fn caller(&self, headers: &http::HeaderMap, peer: &Peer) -> Caller {
        let snap = self.proxy.snapshot();
        let xff = headers.get_all("x-forwarded-for");
        let forwarded = crate::proxy::headers::forwarded_client(
            &snap.config.proxy.trusted_proxies,
            peer.addr.ip(),
            xff.iter().map(|v| v.as_bytes()),
        );
        let addr = forwarded.map_or_else(|| peer.addr.to_string(), |ip| ip.to_string());
        let how = match snap.config.proxy.admin_token.as_deref() {
            None => Some(How::Open),
            Some(expected) => proven(headers, expected),
        };
        Caller { addr, how }
    }

    async fn route(&self, req: Request<Incoming>, caller: &Caller) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        if parts.method == Method::POST {
            if let Some(refused) = refuse_cross_site(&parts) {
                return refused;
            }
            // The status page's buttons are plain HTML forms: they may carry the token as a field
            // (older pages), a drain deadline, and want to land back on the page, not on JSON.
            let form = is_form(&parts.headers);
            let fields = if form { read_form(body).await } else { String::new() };
            let caller = match self.with_token(caller, &fields) {
                Some(caller) => caller,
                None => {
                    tracing::warn!(
                        target: ADMIN_LOG, method = "POST", path, client = %caller.addr,
                        "admin change refused: no valid admin token"
                    );
                    return unauthorized();
                }
            };
            let resp = match path.strip_prefix("/backends/") {
                Some(rest) => match rest.split_once('/') {
                    Some((id, "health/disable")) => self.set_health_checks(id, false).await,
                    Some((id, "health/enable")) => self.set_health_checks(id, true).await,
                    Some((id, action)) => {
                        let deadline = parts.uri.query().and_then(|q| query_param(q, "deadline_s"));
                        // A form's empty deadline field, or one sent with ready/maint, means none.
                        let field = query_param(&fields, "deadline_s").filter(|v| !v.trim().is_empty());
                        let field = field.filter(|_| action == "drain");
                        let deadline = deadline.or(field).map(|v| v.trim().to_owned());
                        self.set_state(id, action, deadline.as_deref(), &caller).await
                    }
                    None => crest::error(StatusCode::NOT_FOUND, "Use /backends/{id}/drain, /ready or /maint"),
                },
                None if path == "/reload" => self.reload().await,
                None if path == "/sessions/logout" => self.logout_sessions(parts.uri.query()).await,
                None if path == "/sessions/unlock" => self.unlock(parts.uri.query()).await,
                None => crest::error(StatusCode::NOT_FOUND, "No admin endpoint at this path"),
            };
            // Backend state changes log their own line (with the deadline); the rest, health checks
            // switched on or off among them, log this one.
            let logged_by_set_state = path.starts_with("/backends/") && !path.contains("/health/");
            if !logged_by_set_state && resp.status() != StatusCode::NOT_FOUND {
                tracing::info!(
                    target: ADMIN_LOG, action = path, query = parts.uri.query().unwrap_or(""),
                    client = %caller.addr, auth = caller.how.map_or("none", How::as_str),
                    status = resp.status().as_u16(),
                    result = if resp.status().is_success() { "ok" } else { "refused" },
                    "admin change"
                );
            }
            return if form && resp.status().is_success() { see_other("/status") } else { resp };
        }
        let read = parts.method == Method::GET || parts.method == Method::HEAD;
        match path {
            _ if !read => {
                crest::error(StatusCode::METHOD_NOT_ALLOWED, "Admin endpoints take GET, or POST for changes")
            }
            "/healthz" => crest::json(StatusCode::OK, &json!({"status": "ok"})),
            "/readyz" => self.readyz(),
            "/status.json" => crest::json(StatusCode::OK, &self.status_model()),
            "/status" => {
                let snap = self.proxy.snapshot();
                let view = status::View {
                    token_required: snap.config.proxy.admin_token.is_some(),
                    how: caller.how,
                    refresh: parts.uri.query().and_then(|q| query_param(q, "refresh")).as_deref()
                        != Some("off"),
                };
                drop(snap);
                html(status::render(&self.status_model(), &view))
            }
            // HTTP basic auth (RFC 7617) for browsers: the challenge makes the browser ask once, then
            // it sends the credentials with every request to this listener.
            "/login" => match caller.how {
                Some(_) => see_other("/status"),
                None => basic_challenge(),
            },
            // It lists users' sessions: as guarded as a change.
            "/sessions" => match self.with_token(caller, "") {
                None => unauthorized(),
                Some(_) => self.list_sessions(parts.uri.query()).await,
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

    /// What `/status.json` answers and the status page shows: one model, so a key added to the JSON
    /// shows on the page too.
    fn status_model(&self) -> serde_json::Value {
        let snap = self.proxy.snapshot();
        let mut answer = status::json(&snap);
        let figures = process::read();
        let stopping = self.shutting_down.is_cancelled();
        answer["process"] = status::process_json(&snap, &figures, self.reloader.stats(), stopping);
        answer["auth_nodes"] = sessions::sessions_json(&self.sessions_per_node());
        answer
    }
}

impl Admin {
    /// The caller, if it proved the `admin_token` (or none is set): by `Authorization: Bearer` or basic
    /// auth, or the `token` field of a status page form in `fields`. `None` is answered [`unauthorized`].
    fn with_token(&self, caller: &Caller, fields: &str) -> Option<Caller> {
        if caller.how.is_some() {
            return Some(caller.clone());
        }
        let expected = self.proxy.snapshot().config.proxy.admin_token.clone().unwrap_or_default();
        let field = query_param(fields, "token").map(|t| t.into_owned());
        field
            .is_some_and(|g| same_token(&g, &expected))
            .then(|| Caller { addr: caller.addr.clone(), how: Some(How::Token) })
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
