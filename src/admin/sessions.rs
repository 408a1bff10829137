//! Session administration on the admin listener (what AM's amadmin does):
//! * `GET /sessions?user=NAME`: the user's live sessions (handle, node, realm, times; never a token);
//! * `POST /sessions/logout?user=NAME` or `?handle=HANDLE`: ends them; answers how many ended;
//! * the live sessions per embedded node, for the status page.
//!
//! Both reach every node of the store: each distinct store of this process's embedded nodes once (one
//! for `sessions = "shared"` or `"redis"`, one per node for `"local"`), else the Redis store a process
//! without embedded nodes opens for its admin when its `[auth]` says `sessions = "redis"`, which is how
//! an operator administers standalone `tether node` processes: from the admin of any process whose
//! config names the same store.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::am::crest;
use crate::am::request::query_param;
use crate::am::time::Clock;
use crate::auth::session::SessionStore;
use crate::auth::session::admin::SessionListing;
use crate::body::Body;

use super::Admin;
use super::metrics::{sessions_by_node, store_key};

/// What the caller names: a user's sessions, or one session by handle.
enum Target {
    User(String),
    Handle(String),
}

impl Admin {
    /// Gives the admin `store` for session administration when no embedded node holds one (a process
    /// that only proxies to standalone nodes on Redis).
    #[must_use]
    pub fn with_session_store(mut self, store: Option<Arc<dyn SessionStore>>) -> Self {
        self.session_store = store;
        self
    }

    /// Every distinct store the process's nodes use, each once, that can be administered.
    fn session_stores(&self) -> Vec<Arc<dyn SessionStore>> {
        let mut stores: Vec<Arc<dyn SessionStore>> = Vec::new();
        for store in self.nodes.iter().map(|n| n.store()).chain(self.session_store.as_ref()) {
            if store.admin().is_some() && !stores.iter().any(|s| store_key(s) == store_key(store)) {
                stores.push(Arc::clone(store));
            }
        }
        stores
    }

    /// `GET /sessions?user=NAME`.
    pub(super) async fn list_sessions(&self, query: Option<&str>) -> Response<Body> {
        let Some(Target::User(user)) = target(query).filter(|t| matches!(t, Target::User(_))) else {
            return crest::error(StatusCode::BAD_REQUEST, "Name the user: GET /sessions?user=NAME");
        };
        let stores = self.session_stores();
        if stores.is_empty() {
            return no_store();
        }
        let (now, clock) = (Instant::now(), Clock::new());
        let mut sessions = Vec::new();
        for store in &stores {
            let Some(admin) = store.admin() else { continue };
            match admin.list(&user, now).await {
                Ok(listed) => sessions.extend(listed.iter().map(|l| listing_json(l, &clock))),
                Err(e) => return crest::error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            }
        }
        crest::json(StatusCode::OK, &json!({"user": user, "sessions": sessions}))
    }

    /// `POST /sessions/logout?user=NAME` or `?handle=HANDLE`: `{"ended": N}`.
    pub(super) async fn logout_sessions(&self, query: Option<&str>) -> Response<Body> {
        let Some(target) = target(query) else {
            return crest::error(
                StatusCode::BAD_REQUEST,
                "Name the sessions to end: POST /sessions/logout?user=NAME or ?handle=HANDLE (one of them)",
            );
        };
        let stores = self.session_stores();
        if stores.is_empty() {
            return no_store();
        }
        let now = Instant::now();
        let mut ended = 0;
        for store in &stores {
            let Some(admin) = store.admin() else { continue };
            let done = match &target {
                Target::User(user) => admin.end_user(user, now).await,
                Target::Handle(handle) => admin.end_handle(handle, now).await.map(usize::from),
            };
            match done {
                Ok(n) => ended += n,
                Err(e) => return crest::error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            }
        }
        crest::json(StatusCode::OK, &json!({"ended": ended}))
    }

    /// Live sessions per embedded node (by the node that created them), `null` for a node whose store
    /// this process cannot count without a round trip per user (Redis).
    pub(super) fn sessions_per_node(&self) -> Vec<(String, Option<usize>)> {
        self.nodes.iter().map(|n| n.id().to_string()).zip(sessions_by_node(&self.nodes)).collect()
    }
}

/// The one target the query names; `None` for neither, both, or an empty value.
fn target(query: Option<&str>) -> Option<Target> {
    let query = query.unwrap_or_default();
    let get = |name| query_param(query, name).map(|v| v.into_owned()).filter(|v| !v.is_empty());
    match (get("user"), get("handle")) {
        (Some(user), None) => Some(Target::User(user)),
        (None, Some(handle)) => Some(Target::Handle(handle)),
        _ => None,
    }
}

fn no_store() -> Response<Body> {
    crest::error(
        StatusCode::NOT_FOUND,
        "This process holds no session store: use the admin of a process with embedded auth nodes, or \
         one whose [auth] names the nodes' store (sessions = \"redis\" with [auth.store])",
    )
}

fn listing_json(l: &SessionListing, clock: &Clock) -> Value {
    json!({
        "handle": l.handle,
        "user": l.username,
        "realm": l.realm,
        "node": l.node,
        "created": clock.iso_at(l.created),
        "last_access": clock.iso_at(l.last_access),
        "idle_expiry": clock.iso_at(l.idle_expiry),
        "max_expiry": clock.iso_at(l.max_expiry),
    })
}

/// The store rows of the status page: one per embedded node.
pub(super) fn sessions_json(rows: &[(String, Option<usize>)]) -> Value {
    rows.iter().map(|(id, live)| json!({"id": id, "live_sessions": live})).collect()
}
