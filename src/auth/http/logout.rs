//! What AM 7 sends with a `sessions?_action=logout` answer besides its body: the session cookie and the
//! lb cookie expired, and `Expires: 0`.
//!
//! A browser that logged out then holds neither a dead token nor a pin to the node that issued it, so its
//! next login is balanced afresh. AM 7 writes `iPlanetDirectoryPro=""` and `amlbcookie=LOGOUT`, both with
//! an `Expires` in 1970 (RFC 6265 §3.1: an expiry in the past removes the cookie); tether does the same
//! with the configured cookie names and the `Path=/` it set them with. The proxy ignores `LOGOUT` as a
//! hint, since it names no node.

use http::Response;
use http::header::{EXPIRES, HeaderValue, SET_COOKIE};

use crate::body::Body;
use crate::config::AuthConfig;

/// Adds AM 7's logout headers to `resp`.
pub(super) fn expire_cookies(auth: &AuthConfig, resp: &mut Response<Body>) {
    let cookies = [
        format!("{}=\"\"; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/", auth.session_cookie),
        format!("{}=LOGOUT; Expires=Thu, 01 Jan 1970 00:00:10 GMT; Path=/", auth.lb_cookie),
    ];
    let headers = resp.headers_mut();
    for cookie in cookies {
        // Cookie names are validated tokens (RFC 6265 §4.1.1), so the value is always valid header text.
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(SET_COOKIE, value);
        }
    }
    headers.insert(EXPIRES, HeaderValue::from_static("0"));
}
