//! `/json[/realms/...]/authenticate`: AM's callback protocol over HTTP, translated to and from
//! [`crate::auth::login`].
//!
//! A body with an `authId` answers a step; anything else (no body, `{}`, the JS SDK's empty first POST
//! with a JSON content type) starts a login, as in AM. Only `authId` and `callbacks` are read: the JS SDK
//! echoes the whole previous answer (`status`, `ok`, `template`, `stage`, `header`, …) back with the
//! filled callbacks, and the rest is ignored.

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cookie::Cookie;
use http::header::{HeaderMap, HeaderValue, SET_COOKIE};
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::am::crest;
use crate::am::request::Query;
use crate::auth::AuthNode;
use crate::auth::error::AuthError;
use crate::auth::journey::{callbacks, stage};
use crate::auth::login::{Credentials, LOG, Step};
use crate::body::Body;
use crate::config::TrustedProxies;

impl AuthNode {
    /// Answers one `authenticate` request whose `body` was read already; `realm` comes from the path.
    pub(super) async fn authenticate(
        &self,
        parts: &Parts,
        body: &[u8],
        realm: String,
    ) -> Result<Response<Body>, AuthError> {
        let now = Instant::now();
        let step = step_body(body)?;
        // Every log line of the login names the client (from `X-Forwarded-For`, which the proxy in front
        // writes) and the connection's peer.
        let peer = parts.extensions.get::<SocketAddr>().map_or_else(|| "-".to_owned(), SocketAddr::to_string);
        let span = tracing::info_span!("login", client = %client(parts, &self.trusted_proxies), %peer);
        self.authenticate_step(parts, &step, realm, now).instrument(span).await
    }

    async fn authenticate_step(
        &self,
        parts: &Parts,
        step: &serde_json::Map<String, Value>,
        realm: String,
        now: Instant,
    ) -> Result<Response<Body>, AuthError> {
        match step.get("authId") {
            Some(Value::String(auth_id)) if !auth_id.trim().is_empty() => {
                let sent = step.get("callbacks").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
                let step = self.login.answer(auth_id, sent, &realm, now).await?;
                Ok(self.step_response(step))
            }
            None | Some(Value::Null | Value::String(_)) => self.start(parts, &realm, now).await,
            Some(_) => Err(AuthError::AuthIdNotString),
        }
    }

    /// Starts a login; `X-OpenAM-Username`/`X-OpenAM-Password` make it a zero-page login.
    async fn start(&self, parts: &Parts, realm: &str, now: Instant) -> Result<Response<Body>, AuthError> {
        let query = Query::parse(parts.uri.query());
        let index_type = query.get("authIndexType").filter(|t| !t.is_empty());
        let journey = self.login.journey(realm, index_type, query.get("authIndexValue"))?;
        let started = self.login.start(journey, zero_page(&parts.headers), now).await;
        let mut resp = started.map_or_else(|e| e.to_response(), |step| self.step_response(step));
        // AM sets its lb cookie to the answering server's ID when a login process starts: that is how a
        // cookie-keeping client sticks to the node holding the login.
        if !resp.status().is_server_error() {
            let lb = Cookie::build((self.auth.lb_cookie.as_str(), self.id.as_str())).path("/").build();
            add_cookie(&mut resp, &lb.to_string());
        }
        Ok(resp)
    }

    /// A step's answer: the callbacks to fill in, or the session with its cookie.
    fn step_response(&self, step: Step) -> Response<Body> {
        match step {
            Step::Callbacks { auth_id, module } => crest::json(
                StatusCode::OK,
                &json!({
                    "authId": auth_id,
                    "template": "",
                    "stage": stage(module),
                    "header": "Sign in",
                    "callbacks": callbacks(module),
                }),
            ),
            Step::Success { token, realm } => {
                // AM's session cookie: host-only, whole site, never readable by page scripts.
                let cookie = Cookie::build((self.auth.session_cookie.as_str(), token.as_str()))
                    .path("/")
                    .http_only(true)
                    .build();
                let mut resp = crest::json(
                    StatusCode::OK,
                    &json!({
                        "tokenId": token,
                        "successUrl": self.auth.success_url,
                        "realm": realm,
                    }),
                );
                add_cookie(&mut resp, &cookie.to_string());
                resp
            }
        }
    }
}

/// The client a login comes from, for logs: the right-most `X-Forwarded-For` address that is not one of
/// `[proxy] trusted_proxies` (the proxy in front always writes the field, so its right-most entry is the
/// peer the proxy saw; entries left of a trusted proxy's are the client's own words, which a brute-force
/// detector must not believe), else the peer, else `-`.
fn client(parts: &Parts, trusted: &TrustedProxies) -> String {
    let forwarded = parts.headers.get_all("x-forwarded-for");
    match trusted.rightmost_untrusted(forwarded.iter().map(|v| v.as_bytes())) {
        Some(ip) => ip.to_string(),
        None => parts.extensions.get::<SocketAddr>().map_or_else(|| "-".to_owned(), |p| p.ip().to_string()),
    }
}

/// The JSON object of a step, empty for an empty body.
fn step_body(body: &[u8]) -> Result<serde_json::Map<String, Value>, AuthError> {
    let text = body.trim_ascii();
    if text.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(AuthError::BadRequest("Invalid JSON in the request body: expected an object".into())),
        Err(e) => Err(AuthError::BadRequest(format!("Invalid JSON in the request body: {e}"))),
    }
}

/// The credentials of a zero-page login, if the request carries `X-OpenAM-Username`.
fn zero_page(headers: &HeaderMap) -> Option<Credentials> {
    let name = headers.get("x-openam-username")?;
    Some(Credentials {
        username: header_text(name),
        password: headers.get("x-openam-password").and_then(header_text),
    })
}

/// A zero-page login header as text. AM accepts RFC 2047 `=?UTF-8?B?<base64>?=` for non-ASCII names and
/// passwords, since header values are ASCII.
fn header_text(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let encoded = text
        .get(..10)
        .filter(|prefix| prefix.eq_ignore_ascii_case("=?UTF-8?B?"))
        .and_then(|_| text.get(10..)?.strip_suffix("?="));
    match encoded {
        Some(b64) => String::from_utf8(STANDARD.decode(b64).ok()?).ok(),
        None => Some(text.to_owned()),
    }
}

/// Appends a `Set-Cookie`. Names come from validated configuration and values are token or ID characters,
/// so the header is always valid; if it were not, the cookie is left out rather than the request failed.
pub(super) fn add_cookie(resp: &mut Response<Body>, cookie: &str) {
    match HeaderValue::from_str(cookie) {
        Ok(value) => {
            resp.headers_mut().append(SET_COOKIE, value);
        }
        Err(_) => tracing::warn!(target: LOG, "cannot write a Set-Cookie header; left out"),
    }
}
