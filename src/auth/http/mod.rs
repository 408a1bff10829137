//! The auth node's HTTP surface: AM's routes below `context_path`, their methods and body limit, and the
//! health endpoints. Handlers only translate between HTTP and the layer below:
//! * [`authenticate`]: `/json[/realms/...]/authenticate` ⇄ [`crate::auth::login`];
//! * [`sessions`]: `/json[/realms/...]/sessions?_action=...` ⇄ [`crate::auth::session`];
//! * [`xui`]: the login page `/XUI/`, a browser client of the two above.
//!
//! Every refusal is an [`AuthError`] turned into AM's JSON by [`AuthError::to_response`].

mod authenticate;
mod handles;
mod logout;
mod sessions;
mod timers;
mod xui;

use std::fmt::Display;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::am::crest;
use crate::am::request::Query;
use crate::auth::AuthNode;
use crate::auth::error::AuthError;
use crate::body::{self, Body};

/// Largest request body the node reads (the proxy's `authId` peek uses the same bound). AM requests are a
/// few KiB at most; the bound keeps an unauthenticated client from making the node buffer arbitrary
/// amounts.
pub const MAX_BODY: usize = 64 * 1024;

/// Where the routes below `context_path` lead.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    IsAlive,
    Live,
    Ready,
    /// With the realm of the path, `/` or `/a/b`.
    Authenticate(String),
    Sessions,
    /// The login page.
    LoginPage,
    /// `{context_path}`, `{context_path}/` and `{context_path}/XUI`: redirects to the login page.
    ToLoginPage,
}

impl AuthNode {
    /// Answers one request. Paths outside `context_path` and unknown endpoints get AM's 404 JSON.
    ///
    /// Generic over the body so it takes hyper's `Incoming` as well as `Full<Bytes>` in tests. Bodies are
    /// read only for the endpoints that use one, bounded by `MAX_BODY` (413 beyond).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        let version = api_version(&self.auth.context_path, req.uri());
        let mut resp = self.dispatch(req).await.unwrap_or_else(|e| {
            // Refusals of the request itself are the client's business; a failure a retry may get past
            // is the operator's.
            if e.retryable() {
                tracing::warn!(
                    target: "tether::auth",
                    node = %self.id(),
                    error = %e,
                    detail = e.log_detail(),
                    "request failed; a retry may succeed"
                );
            }
            e.to_response()
        });
        if let Some(version) = version {
            crest::set_api_version(&mut resp, version);
        }
        resp
    }

    /// The answer for `req`, or the refusal [`handle`](Self::handle) turns into AM's JSON.
    async fn dispatch<B>(&self, req: Request<B>) -> Result<Response<Body>, AuthError>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        let (parts, body) = req.into_parts();
        let route = route(&self.auth.context_path, parts.uri.path())
            .ok_or_else(|| AuthError::NotFound(parts.uri.path().to_owned()))?;
        match route {
            Route::IsAlive | Route::Live | Route::Ready => {
                if parts.method != Method::GET && parts.method != Method::HEAD {
                    return Err(AuthError::MethodNotAllowed { allow: "GET, HEAD" });
                }
                Ok(self.health(&route))
            }
            Route::Authenticate(realm) => {
                if parts.method != Method::POST {
                    return Err(AuthError::MethodNotAllowed { allow: "POST" });
                }
                let body = read_body(body).await?;
                self.authenticate(&parts, &body, realm).await
            }
            Route::Sessions => {
                if parts.method != Method::POST {
                    return Err(AuthError::MethodNotAllowed { allow: "POST" });
                }
                let body = read_body(body).await?;
                self.sessions(&parts, &body).await
            }
            Route::LoginPage | Route::ToLoginPage => {
                if parts.method != Method::GET && parts.method != Method::HEAD {
                    return Err(AuthError::MethodNotAllowed { allow: "GET, HEAD" });
                }
                Ok(if route == Route::LoginPage {
                    xui::page(parts.method == Method::HEAD)
                } else {
                    xui::redirect(&self.auth.context_path, parts.uri.query())
                })
            }
        }
    }

    /// AM's health endpoints: `isAlive.jsp` (text), `health/live` and `health/ready` (empty bodies).
    fn health(&self, route: &Route) -> Response<Body> {
        let mut resp = Response::new(body::empty());
        match route {
            Route::IsAlive => {
                *resp.body_mut() = body::full("Server is ALIVE");
                resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }
            Route::Ready if !self.is_ready() => *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE,
            _ => {}
        }
        resp
    }
}

/// Maps a path to a route: `<context_path>/isAlive.jsp`, `/json/health/{live,ready}`, and
/// `/json[/realms/root[/realms/NAME]*]/{authenticate,sessions}[/]`.
fn route(context_path: &str, path: &str) -> Option<Route> {
    let rest = path.strip_prefix(context_path)?;
    match rest {
        "" | "/" | "/XUI" => return Some(Route::ToLoginPage),
        "/XUI/" | "/XUI/index.html" => return Some(Route::LoginPage),
        "/isAlive.jsp" => return Some(Route::IsAlive),
        "/json/health/live" => return Some(Route::Live),
        "/json/health/ready" => return Some(Route::Ready),
        _ => {}
    }
    let rest = rest.strip_prefix("/json/")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut segments: Vec<&str> = rest.split('/').collect();
    let endpoint = segments.pop()?;
    let realm = realm_of(&segments)?;
    match endpoint {
        "authenticate" => Some(Route::Authenticate(realm)),
        "sessions" => Some(Route::Sessions),
        _ => None,
    }
}

/// AM's `Content-API-Version` for a request, errors included: the version of the resource that answers.
/// Captured from AM 7: `resource=2.1` on `authenticate`, `resource=3.1` on `sessions?_action=logout`,
/// `resource=1.0` on `getSessionInfo`. The other session actions have no capture; they answer `3.1`, the
/// sessions resource of that same AM 7 capture.
fn api_version(context_path: &str, uri: &http::Uri) -> Option<&'static str> {
    match route(context_path, uri.path())? {
        Route::Authenticate(_) => Some("resource=2.1"),
        Route::Sessions => match Query::parse(uri.query()).get("_action") {
            Some("getSessionInfo" | "getSessionInfoAndResetIdleTime") => Some("resource=1.0"),
            _ => Some("resource=3.1"),
        },
        _ => None,
    }
}

/// Reads a request body of at most [`MAX_BODY`] bytes.
async fn read_body<B>(body: B) -> Result<Bytes, AuthError>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Display,
{
    let limited = Limited::new(body.map_err(|e| e.to_string()), MAX_BODY);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(AuthError::PayloadTooLarge),
        Err(e) => Err(AuthError::BadRequest(format!("Failed to read the request body: {e}"))),
    }
}

/// The realm named by the path segments between `/json` and the endpoint: none (legacy `/json/...`) or
/// `realms/root` is `/`; each further `realms/NAME` pair adds `/NAME`.
fn realm_of(segments: &[&str]) -> Option<String> {
    match segments {
        [] => Some("/".to_owned()),
        ["realms", "root"] => Some("/".to_owned()),
        ["realms", "root", sub @ ..] => {
            let mut realm = String::new();
            for pair in sub.chunks(2) {
                match pair {
                    ["realms", name] if valid_realm_name(name) => {
                        realm.push('/');
                        realm.push_str(name);
                    }
                    _ => return None,
                }
            }
            Some(realm)
        }
        _ => None,
    }
}

/// Realm names as AM allows them in practice; anything else is not a realm path at all (404).
fn valid_realm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
pub(in crate::auth) mod tests;
