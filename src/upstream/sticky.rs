//! Reading node hints out of a request (SPEC 4.1, 4.2). Pure functions, no I/O.
//!
//! AM names the node holding a login's state in three places: the `amlbcookie` it sets when a login
//! starts, the `sessionId` claim inside every `authId` it returns, and the `S1`/`SI` extension of every
//! session token. Browsers return the cookie; REST clients that keep no cookie jar still echo the
//! `authId` and send the token, so reading all three keeps every step of a journey on its node.
//!
//! A hint is routing advice only: it may name an unknown node or be garbage, and then it is ignored
//! (counted as `invalid`), never an error.

use std::borrow::Cow;

use http::header::COOKIE;
use http::{HeaderMap, HeaderName};

use super::Pool;
use crate::config::HintSource;

/// What the hints of one request say.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    /// The node named by the first usable hint in the pool's order, and which hint that was.
    pub pinned: Option<(usize, HintSource)>,
    /// The node the affinity cookie names, for the `Set-Cookie` rules of SPEC 4.3.
    pub cookie: Option<usize>,
    /// Some hint was present but named no configured node.
    pub invalid: bool,
}

/// Reads the pool's hints from a request. `json_body` is the peeked body of a JSON request of bounded
/// size, when there is one.
pub fn read<H: RequestHeaders + ?Sized>(
    pool: &Pool,
    headers: &H,
    query: Option<&str>,
    json_body: Option<&[u8]>,
) -> Hints {
    let mut hints = Hints::default();
    for &source in &pool.affinity.hints {
        let found = match source {
            HintSource::Cookie => {
                let (found, present) = cookie_hint(pool, headers);
                hints.cookie = found;
                hints.invalid |= present && found.is_none();
                found
            }
            HintSource::SessionToken => token_hint(pool, headers, query, &mut hints.invalid),
            HintSource::AuthId => auth_id_hint(pool, json_body, &mut hints.invalid),
        };
        if hints.pinned.is_none()
            && let Some(index) = found
        {
            hints.pinned = Some((index, source));
        }
    }
    hints
}

/// The first affinity cookie naming a configured node (HAProxy also takes the first of duplicates, but
/// skipping unknown values keeps a client whose stale cookie sits beside a good one on its node), and
/// whether the cookie was present at all.
fn cookie_hint<H: RequestHeaders + ?Sized>(pool: &Pool, headers: &H) -> (Option<usize>, bool) {
    let mut present = false;
    for value in cookie_values(headers, pool.affinity.cookie.as_bytes()) {
        present = true;
        if let Some(index) = pool.index_of(value) {
            return (Some(index), true);
        }
    }
    (None, present)
}

fn token_hint<H: RequestHeaders + ?Sized>(
    pool: &Pool,
    headers: &H,
    query: Option<&str>,
    invalid: &mut bool,
) -> Option<usize> {
    let name = pool.session_cookie.as_bytes();
    let from_cookie = cookie_values(headers, name).next().map(Cow::Borrowed);
    let from_header = || headers.values(&pool.session_header).next().map(Cow::Borrowed);
    let from_query = || query_param(query?, "tokenId").map(|v| Cow::Owned(v.into_owned().into_bytes()));
    let token = from_cookie.or_else(from_header).or_else(from_query)?;
    let index = std::str::from_utf8(&token)
        .ok()
        .and_then(crate::token::node_hint)
        .and_then(|id| pool.index_of(id.as_bytes()));
    *invalid |= index.is_none();
    index
}

fn auth_id_hint(pool: &Pool, body: Option<&[u8]>, invalid: &mut bool) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Continuation<'a> {
        #[serde(rename = "authId", borrow)]
        auth_id: Option<Cow<'a, str>>,
    }
    let body = body.filter(|b| !b.is_empty())?;
    let auth_id = serde_json::from_slice::<Continuation<'_>>(body).ok()?.auth_id?;
    let index = crate::token::auth_id_node_hint(&auth_id).and_then(|id| pool.index_of(id.as_bytes()));
    *invalid |= index.is_none();
    index
}

/// Request headers as the hint readers see them: hyper's `HeaderMap` on the general path, the raw
/// `httparse` headers on the HTTP/1.1 fast path ([`crate::proxy::h1`]), which never builds a map.
pub trait RequestHeaders {
    /// Every value of the field `name`, in order.
    fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a;
}

impl RequestHeaders for HeaderMap {
    fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).iter().map(http::HeaderValue::as_bytes)
    }
}

impl RequestHeaders for [httparse::Header<'_>] {
    fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        // `HeaderName`s are lowercase; field names on the wire are compared without case (RFC 9110 §5.1).
        self.iter().filter(move |h| h.name.eq_ignore_ascii_case(name.as_str())).map(|h| h.value)
    }
}

/// Values of every cookie called `name` across all `Cookie` headers (HTTP/2 may split them), per the
/// RFC 6265 §5.4 grammar: `name=value` pairs separated by `;`, optional spaces, an optionally quoted
/// value. Works on bytes, so non-ASCII input cannot fail.
pub fn cookie_values<'a, H: RequestHeaders + ?Sized>(
    headers: &'a H,
    name: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers.values(&COOKIE).flat_map(move |h| {
        h.split(|&b| b == b';').filter_map(move |pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (n, v) = (pair.get(..eq)?.trim_ascii(), pair.get(eq + 1..)?.trim_ascii());
            (n == name).then(|| v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v))
        })
    })
}

/// The first value of query parameter `name`, percent-decoded.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    let raw = query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    if !raw.contains(['%', '+']) {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(cookies: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_bytes(c).unwrap());
        }
        h
    }

    #[test]
    fn cookie_values_follow_rfc6265_pairs() {
        let h = headers(&[b"a=1; amlbcookie=02;b=3", b"amlbcookie=\"03\""]);
        let v: Vec<&[u8]> = cookie_values(&h, b"amlbcookie").collect();
        assert_eq!(v, [&b"02"[..], b"03"]);
    }

    #[test]
    fn malformed_cookie_headers_yield_nothing_and_never_panic() {
        for raw in [&b";;;="[..], b"=", b"amlbcookie", b"amlbcookie=", b"\xff\xfe=\x80", b" ; amlbcookie ; "]
        {
            let h = headers(&[raw]);
            for v in cookie_values(&h, b"amlbcookie") {
                assert!(v.is_empty());
            }
        }
    }

    #[test]
    fn query_params_are_found_and_decoded() {
        assert_eq!(query_param("a=1&tokenId=AQIC*x*", "tokenId").as_deref(), Some("AQIC*x*"));
        assert_eq!(query_param("tokenId=a%2Ab%2", "tokenId").as_deref(), Some("a*b%2"));
        assert_eq!(query_param("tokenIdx=1", "tokenId"), None);
        assert_eq!(query_param("tokenId=%ff", "tokenId"), None);
    }
}
