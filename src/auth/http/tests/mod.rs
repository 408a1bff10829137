//! The auth node over HTTP, as AM's clients call it, on two nodes sharing one store: the fixtures and
//! the HTTP surface here, logins in [`authenticate`], session actions in [`sessions`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, COOKIE, HeaderMap, SET_COOKIE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::time::advance;

use super::MAX_BODY;
use crate::am::time::iso_utc;
use crate::am::token::{self, Keys};
use crate::auth::session::{MemoryStore, SessionStore};
use crate::auth::{AuthNode, MemoryJourneys, totp};
use crate::body::Body;
use crate::config::{AuthConfig, BackendId};

const SECRET: &[u8] = b"a cluster secret of at least 128 bits, for tests only";
pub(in crate::auth) const PASSWORD: &str = "Ch4nge-it!";
pub(in crate::auth) const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const AUTH: &str = "/am/json/realms/root/authenticate";
const MFA: &str = "/am/json/realms/root/authenticate?authIndexType=service&authIndexValue=mfa";
const SESSIONS: &str = "/am/json/realms/root/sessions";

/// An argon2id PHC of [`PASSWORD`] with cheap parameters (8 KiB, 1 pass), computed once.
pub(in crate::auth) fn cheap_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8, 1, 1, None).unwrap())
            .hash_password_with_salt(PASSWORD.as_bytes(), b"tether-test-salt")
            .unwrap()
            .to_string()
    })
}

/// A complete `proxy.toml` with two backends and `[auth]`; `quota` is the body of `[auth.quota]`.
pub(in crate::auth) fn config(mode: &str, quota: &str) -> Arc<AuthConfig> {
    let text = format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[pool]]
name = "am"
  [[pool.backend]]
  id = "01"
  url = "http://127.0.0.1:8081"
  [[pool.backend]]
  id = "02"
  url = "http://127.0.0.1:8082"

[[route]]
path_prefix = "/am/"
pool = "am"

[auth]
context_path = "/am"
auth_sessions = "{mode}"
auth_session_timeout_s = 180
max_idle_time_min = 30
max_session_time_min = 120
default_chain = "ldapService"

  [auth.quota]
  {quota}

  [[auth.chain]]
  name = "ldapService"
  modules = ["DataStore"]
  [[auth.chain]]
  name = "mfa"
  modules = ["DataStore", "TOTP"]

  [[auth.user]]
  username = "demo"
  password = "{hash}"
  totp_secret = "{TOTP_SECRET}"

  [[auth.user]]
  username = "nototp"
  password = "{hash}"
"#,
        hash = cheap_hash()
    );
    let config = crate::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    Arc::new(config.auth.unwrap())
}

/// Two nodes `01` and `02` sharing keys, a session store and a spent-otk cache, like `tether run`
/// with `sessions = "shared"`.
struct Cluster {
    a: AuthNode,
    b: AuthNode,
    store: Arc<MemoryStore>,
}

fn cluster(mode: &str) -> Cluster {
    cluster_with(mode, "enabled = false")
}

fn cluster_with(mode: &str, quota: &str) -> Cluster {
    let auth = config(mode, quota);
    let store = Arc::new(MemoryStore::new());
    let journeys = Arc::new(MemoryJourneys::new());
    let node = |id: &str| {
        AuthNode::new(
            BackendId::new(id).unwrap(),
            Arc::clone(&auth),
            Keys::derive(SECRET),
            Arc::clone(&store) as Arc<dyn SessionStore>,
            Arc::clone(&journeys) as Arc<dyn crate::auth::JourneyStore>,
        )
    };
    Cluster { a: node("01"), b: node("02"), store }
}

/// What came back, with the body parsed as JSON where it is JSON.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl Answer {
    fn cookies(&self) -> Vec<&str> {
        self.headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect()
    }

    fn assert_error(&self, status: u16, message: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.json["code"], status, "{self:?}");
        assert!(self.json["message"].as_str().unwrap().starts_with(message), "{self:?}");
    }

    fn assert_timed_out(&self) {
        self.assert_error(401, "Session has timed out");
        assert_eq!(self.json["detail"]["errorCode"], "110", "{self:?}");
    }
}

async fn send(node: &AuthNode, req: Request<Full<Bytes>>) -> Answer {
    let resp = node.handle(req).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    if json.is_object() {
        assert_eq!(headers[CONTENT_TYPE], "application/json;charset=UTF-8", "{text}");
    }
    Answer { status, headers, text, json }
}

/// A POST as the JS SDK sends it: JSON content type and an `Accept-API-Version`, even with no body.
fn post(uri: &str, body: impl Into<String>) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header(CONTENT_TYPE, "application/json")
        .header("Accept-API-Version", "protocol=1.0,resource=2.1")
        .body(Full::new(Bytes::from(body.into())))
        .unwrap()
}

fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::new(Bytes::new())).unwrap()
}

/// The previous answer with `values` filled into its callbacks in order, every other field kept,
/// exactly what the JS SDK posts back.
fn fill(step: &Answer, values: &[&str]) -> String {
    let mut body = step.json.clone();
    let callbacks = body["callbacks"].as_array_mut().expect("a step with callbacks");
    for (cb, value) in callbacks.iter_mut().zip(values) {
        cb["input"][0]["value"] = json!(value);
    }
    body.to_string()
}

fn code(node: &AuthNode) -> String {
    let key = crate::config::totp_key(TOTP_SECRET).unwrap();
    format!("{:06}", totp::totp(&key, node.clock.unix_now().as_secs(), 30, 6))
}

/// A wrong code: the right one for a step far away from now.
fn wrong_code(node: &AuthNode) -> String {
    let key = crate::config::totp_key(TOTP_SECRET).unwrap();
    format!("{:06}", totp::totp(&key, node.clock.unix_now().as_secs() + 3600, 30, 6))
}

fn auth_id_claims(step: &Answer) -> Value {
    let auth_id = step.json["authId"].as_str().unwrap();
    let payload = auth_id.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A full `ldapService` login on `node`; returns the tokenId.
async fn login(node: &AuthNode) -> String {
    let step = send(node, post(AUTH, "")).await;
    let done = send(node, post(AUTH, fill(&step, &["demo", PASSWORD]))).await;
    assert_eq!(done.status, 200, "{done:?}");
    done.json["tokenId"].as_str().unwrap().to_owned()
}

fn with_token(action: &str) -> String {
    format!("{SESSIONS}?_action={action}")
}

mod authenticate;
mod client_sessions;
mod details;
mod sessions;

// ------------------------------------------------------------------------------------------------
// HTTP surface
// ------------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn health_endpoints_follow_readiness() {
    let c = cluster("memory");
    let alive = send(&c.a, get("/am/isAlive.jsp")).await;
    assert_eq!(alive.status, 200);
    assert_eq!(alive.text, "Server is ALIVE");
    assert_eq!(alive.headers[CONTENT_TYPE], "text/plain");
    assert_eq!(send(&c.a, get("/am/json/health/live")).await.status, 200);
    let ready = send(&c.a, get("/am/json/health/ready")).await;
    assert_eq!((ready.status, ready.text.as_str()), (StatusCode::OK, ""));
    c.a.set_ready(false);
    assert_eq!(send(&c.a, get("/am/json/health/ready")).await.status, 503);
    assert_eq!(send(&c.a, get("/am/json/health/live")).await.status, 200);
    c.a.set_ready(true);
    assert_eq!(send(&c.a, get("/am/json/health/ready")).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn unknown_paths_and_methods_get_am_json_errors() {
    let c = cluster("memory");
    for path in [
        "/",
        "/amx/json/authenticate",
        "/am/json/realms/other/authenticate",
        "/am/json/realms/root/realms/authenticate",
        "/am/json/realms/root/realms/../authenticate",
        "/am/json/users",
        "/other/isAlive.jsp",
    ] {
        send(&c.a, post(path, "")).await.assert_error(404, "Resource");
    }
    let resp = send(&c.a, get(AUTH)).await;
    resp.assert_error(405, "Method not allowed");
    assert_eq!(resp.headers[ALLOW], "POST");
    send(&c.a, get(SESSIONS)).await.assert_error(405, "Method");
    send(&c.a, post("/am/json/health/ready", "")).await.assert_error(405, "Method");
    send(&c.a, post("/am/XUI/", "")).await.assert_error(405, "Method");
}

#[tokio::test(start_paused = true)]
async fn bodies_over_64_kib_are_refused() {
    let c = cluster("memory");
    let big = format!(r#"{{"authId":"{}"}}"#, "a".repeat(MAX_BODY));
    send(&c.a, post(AUTH, big)).await.assert_error(413, "Request body larger");
    send(&c.a, post(&with_token("validate"), "x".repeat(MAX_BODY + 1)))
        .await
        .assert_error(413, "Request body larger");
}

#[tokio::test(start_paused = true)]
async fn the_handle_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let c = cluster("memory");
    let fut = c.a.handle(get("/am/isAlive.jsp"));
    assert_send(&fut);
    fut.await;
}

/// Compiles only if a hyper server can hand its `Incoming` bodies to the node from spawned tasks.
#[allow(dead_code)]
fn handle_takes_hyper_incoming_in_a_send_future(
    node: &AuthNode,
    req: Request<hyper::body::Incoming>,
) -> impl Future<Output = Response<Body>> + Send + '_ {
    node.handle(req)
}
