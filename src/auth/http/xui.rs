//! The login page: `{context_path}/XUI/`, named after AM's own login UI, so links and bookmarks that work
//! against AM work here. `{context_path}/` and `{context_path}/XUI` redirect to it.
//!
//! One HTML document (`xui.html`) with its own inline script and style and nothing else: it runs any chain
//! through the same REST API every other client uses (`…/authenticate`, then `…/sessions`), so through the
//! proxy it sticks to the node that holds the login exactly as the SDKs do. Its
//! `Content-Security-Policy` allows only that script and style, by hash (CSP Level 3 §8.3 hash-source):
//! injected markup could run nothing, and the page cannot talk to any other origin.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{Response, StatusCode};

use crate::body::{self, Body};

/// The page, as served.
pub(super) const PAGE: &str = include_str!("xui.html");

/// The page's `Content-Security-Policy`, computed once from the page itself so it cannot drift from it.
static POLICY: LazyLock<String> = LazyLock::new(|| policy(PAGE));

/// The policy for `page`: nothing by default; its one inline script and one inline style by SHA-256; fetches
/// to this origin only; no framing, no `<base>`, no form posts anywhere.
fn policy(page: &str) -> String {
    let hash = |tag: &str| {
        let text = inline(page, tag).unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        format!("'sha256-{}'", STANDARD.encode(digest.as_ref()))
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
        hash("script"),
        hash("style")
    )
}

/// The text between `<tag>` and `</tag>`: what a browser hashes for a CSP hash-source.
fn inline<'a>(page: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = page.find(&open)? + open.len();
    let len = page[start..].find(&format!("</{tag}>"))?;
    Some(&page[start..start + len])
}

/// `GET {context_path}/XUI/`: the page with its policy; never cached, never framed.
pub(super) fn page(head_only: bool) -> Response<Body> {
    let mut resp = Response::new(if head_only { body::empty() } else { body::full(PAGE) });
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(policy) = HeaderValue::from_str(&POLICY) {
        headers.insert(CONTENT_SECURITY_POLICY, policy);
    }
    resp
}

/// 302 to the login page, keeping the query (`?authIndexValue=mfa`, `?realm=/sub`).
pub(super) fn redirect(context_path: &str, query: Option<&str>) -> Response<Body> {
    let target = match query {
        Some(q) if !q.is_empty() => format!("{context_path}/XUI/?{q}"),
        _ => format!("{context_path}/XUI/"),
    };
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::FOUND;
    // The path comes from validated configuration and the query from a URI hyper parsed, so the value is
    // valid header text; if it were not, the plain page path still is.
    let location = HeaderValue::from_str(&target)
        .or_else(|_| HeaderValue::from_str(&format!("{context_path}/XUI/")))
        .unwrap_or_else(|_| HeaderValue::from_static("/"));
    resp.headers_mut().insert(LOCATION, location);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_pages_own_script_and_style() {
        let script = inline(PAGE, "script").expect("the page has an inline script");
        assert!(script.contains("authenticate"), "the script drives the login");
        let digest = ring::digest::digest(&ring::digest::SHA256, script.as_bytes());
        let script_hash = format!("script-src 'sha256-{}';", STANDARD.encode(digest.as_ref()));
        assert!(POLICY.contains(&script_hash), "{}", *POLICY);
        assert!(POLICY.starts_with("default-src 'none';"), "{}", *POLICY);
        assert!(!POLICY.contains("unsafe-inline"), "{}", *POLICY);
        // One script and one style only: a second one would be blocked by the policy.
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        assert!(!PAGE.contains(" style="), "inline style attributes would be blocked");
        assert!(!PAGE.contains("src=\"http") && !PAGE.contains("href=\"http"), "no external assets");
    }

    #[test]
    fn the_redirect_keeps_the_query() {
        let resp = redirect("/am", Some("authIndexValue=mfa"));
        assert_eq!(resp.status(), StatusCode::FOUND);
        assert_eq!(resp.headers()[LOCATION], "/am/XUI/?authIndexValue=mfa");
        assert_eq!(redirect("/am", None).headers()[LOCATION], "/am/XUI/");
    }
}
