//! Auth nodes in-process, called directly as `AuthNode::handle`, and the calls tests make of them:
//! logins, session checks. For paused-time tests, where real sockets would let the paused clock run
//! ahead.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};

use super::cluster::Cluster;

/// Auth nodes in-process, called directly (for paused-time tests, where real sockets would let the
/// paused clock run ahead). Built by [`Cluster::in_process`]; they share one session store and one
/// journey store when the config's `auth.sessions` is `shared`.
pub struct LocalNodes {
    /// The nodes, `01`, `02`, … in order.
    pub nodes: Vec<Arc<tether::AuthNode>>,
    /// The store every node uses when sessions are shared (unused otherwise).
    pub store: Arc<tether::MemoryStore>,
}

impl LocalNodes {
    /// One node, `01`, with the shared store: the fixture's `[auth]` otherwise.
    pub fn one() -> Self {
        Cluster::new().active(["01"]).shared_sessions().in_process()
    }

    /// The embedded nodes of `config`, over one store when `shared`, one each otherwise.
    pub fn from_config(config: &tether::config::Config, shared: bool) -> Self {
        let ids: Vec<&tether::config::BackendId> =
            config.pools.iter().flat_map(|p| &p.backends).filter(|b| b.embedded).map(|b| &b.id).collect();
        let auth = Arc::new(config.auth.clone().expect("an [auth] section"));
        let keys = tether::am::token::Keys::derive(b"test secret shared by every node");
        let shared_store = Arc::new(tether::MemoryStore::new());
        let shared_journeys = Arc::new(tether::MemoryJourneys::new());
        let shared_guard: Arc<dyn tether::LoginGuard> = Arc::new(tether::MemoryGuard::new());
        let nodes = ids
            .into_iter()
            .map(|id| {
                let (store, journeys): (Arc<dyn tether::SessionStore>, Arc<dyn tether::JourneyStore>) =
                    if shared {
                        (shared_store.clone(), shared_journeys.clone())
                    } else {
                        (Arc::new(tether::MemoryStore::new()), Arc::new(tether::MemoryJourneys::new()))
                    };
                let node = tether::AuthNode::new(id.clone(), auth.clone(), keys.clone(), store, journeys);
                // Lockout counts and spent codes are shared exactly as far as the sessions are.
                Arc::new(if shared { node.with_guard(shared_guard.clone()) } else { node })
            })
            .collect();
        Self { nodes, store: shared_store }
    }
}

/// One in-process request: `(status, json, headers)`.
pub async fn call(
    node: &tether::AuthNode,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value, http::HeaderMap) {
    let mut req = Request::builder().method("POST").uri(uri).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let resp = node.handle(req.body(Full::new(Bytes::from(body))).unwrap()).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null), headers)
}

/// Fills a step's callbacks in order.
pub fn fill(mut step: serde_json::Value, answers: &[&str]) -> serde_json::Value {
    for (cb, answer) in step["callbacks"].as_array_mut().expect("callbacks").iter_mut().zip(answers) {
        cb["input"][0]["value"] = serde_json::Value::String(answer.to_string());
    }
    step
}

/// The authenticate URI of `chain`.
pub fn authenticate(chain: &str) -> String {
    format!("/am/json/realms/root/authenticate?authIndexType=service&authIndexValue={chain}")
}

/// A complete `ldapService` login of `demo` on `node`; returns the tokenId.
pub async fn login(node: &tether::AuthNode) -> String {
    let (status, done) = try_login(node, "demo", "secret").await;
    assert_eq!(status, 200, "{done}");
    done["tokenId"].as_str().unwrap().to_string()
}

/// An `ldapService` login of `user`; returns the final status and answer.
pub async fn try_login(node: &tether::AuthNode, user: &str, password: &str) -> (u16, serde_json::Value) {
    let (_, step, _) = call(node, &authenticate("ldapService"), &[], None).await;
    let (status, done, _) =
        call(node, &authenticate("ldapService"), &[], Some(fill(step, &[user, password]))).await;
    (status, done)
}

/// Whether `token` is a live session according to `node`.
pub async fn is_valid(node: &tether::AuthNode, token: &str) -> bool {
    let uri = format!("/am/json/realms/root/sessions?_action=validate&tokenId={token}");
    call(node, &uri, &[], None).await.1["valid"] == true
}
