//! Who calls the admin listener: the address and how it proved the `admin_token` (`Authorization:
//! Bearer`, HTTP basic auth with the token as the password, or a form's token field), for the token
//! check and for the logs that say who did what.

use http::{Response, StatusCode};
use subtle::ConstantTimeEq;

use crate::am::crest;
use crate::body::Body;

/// The log target of admin requests and changes.
pub(super) const ADMIN_LOG: &str = "tether::admin";

/// Who made an admin request.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    /// The client address.
    pub(super) addr: String,
    /// How it proved the `admin_token`; `None`: it did not.
    pub(super) how: Option<How>,
}

/// How a caller proved the `admin_token`, as the logs and the status page name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// No `admin_token` is set: anyone on the admin listener may act.
    Open,
    /// `Authorization: Bearer`, or the token field of a form.
    Token,
    /// HTTP basic auth with the token as the password.
    Basic,
}

impl How {
    /// The word the logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Token => "token",
            Self::Basic => "basic",
        }
    }
}

/// Constant time in the token's content, so response timing does not leak how many leading bytes of a
/// guess were right.
pub(super) fn same_token(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// How the request's `Authorization` proves `expected`: `Bearer <token>`, or `Basic` (RFC 7617) with
/// any user name and the token as the password.
pub(super) fn proven(headers: &http::HeaderMap, expected: &str) -> Option<How> {
    if bearer(headers).is_some_and(|t| same_token(t, expected)) {
        return Some(How::Token);
    }
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, creds) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(creds.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_user, password) = text.split_once(':')?;
    same_token(password, expected).then_some(How::Basic)
}

/// The 401 that makes a browser ask for the token once (RFC 7617 section 2).
pub(super) fn basic_challenge() -> Response<Body> {
    let mut resp = super::html(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tether admin</title></head>\
         <body><p>The admin token is needed: enter it as the password (any user name).</p>\
         <p><a href=\"/status\">Back to the status page</a></p></body></html>\n"
            .to_owned(),
    );
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Basic realm=\"tether admin\", charset=\"UTF-8\""),
    );
    resp
}

/// The 401 for a request without the `admin_token` (when one is set).
pub(super) fn unauthorized() -> Response<Body> {
    crest::error(
        StatusCode::UNAUTHORIZED,
        "This admin endpoint needs `Authorization: Bearer <admin_token>` (or basic auth with the token as \
         the password: open /login in a browser)",
    )
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
