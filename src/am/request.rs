//! Where AM's clients put things in a request: query parameters, cookies, and the session token.
//!
//! The proxy's hints and the auth node read requests through these functions only, so a request that
//! carries a session token in two places is routed by the same token the node then answers for.
//!
//! Everything here works on bytes and is total: no client input makes it fail or panic.

use std::borrow::Cow;

use http::header::COOKIE;
use http::{HeaderMap, HeaderName};

/// Request headers as the readers here see them: hyper's `HeaderMap` on the general path, the raw
/// `httparse` headers on the HTTP/1.1 fast path, which never builds a map.
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
/// value.
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

/// The first value of query parameter `name`, `application/x-www-form-urlencoded`-decoded (`+` is a
/// space, `%XX` a byte; invalid UTF-8 becomes U+FFFD).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    form_urlencoded::parse(query.as_bytes()).find(|(n, _)| n == name).map(|(_, v)| v)
}

/// The decoded query parameters of a request, in order; the first of repeated names wins.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Decodes a request's query string (none is an empty query).
    pub fn parse(query: Option<&str>) -> Self {
        Query(form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Where a request's session token is looked for: AM's names for it.
#[derive(Debug, Clone)]
pub struct TokenPlaces {
    /// The session cookie, `iPlanetDirectoryPro` unless the site renamed it.
    pub cookie: String,
    /// The header of the same name (AM reads both).
    pub header: HeaderName,
}

impl TokenPlaces {
    /// The places for a session cookie called `name` (and the header of the same name). `None` when the
    /// name cannot be a header name; configuration validates it first.
    pub fn named(name: &str) -> Option<Self> {
        let header = HeaderName::from_bytes(name.as_bytes()).ok()?;
        Some(Self { cookie: name.to_owned(), header })
    }

    /// The places for a configured session cookie. Configuration validates cookie names as RFC 9110
    /// tokens, which are valid header names, so the fallback to AM's default name is never taken.
    pub fn configured(name: &str) -> Self {
        Self::named(name).unwrap_or_else(|| Self {
            cookie: "iPlanetDirectoryPro".to_owned(),
            header: HeaderName::from_static("iplanetdirectorypro"),
        })
    }
}

/// A request's session token, in AM's one order: the `tokenId` query parameter, then the session header,
/// then the session cookie. Empty values count as absent. The proxy's `session_token` hint and the node's
/// session actions both read it here, so a request with two tokens is routed by the one it is answered for.
pub fn session_token<'a, H: RequestHeaders + ?Sized>(
    places: &'a TokenPlaces,
    headers: &'a H,
    query: Option<&'a str>,
) -> Option<Cow<'a, [u8]>> {
    let from_query = query
        .and_then(|q| query_param(q, "tokenId"))
        .map(|v| match v {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        })
        .filter(|v| !v.is_empty());
    from_query.or_else(|| headers.values(&places.header).find(|v| !v.is_empty()).map(Cow::Borrowed)).or_else(
        || cookie_values(headers, places.cookie.as_bytes()).find(|v| !v.is_empty()).map(Cow::Borrowed),
    )
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
        assert_eq!(query_param("tokenId=%ff", "tokenId").as_deref(), Some("\u{fffd}"));
        assert_eq!(query_param("a+b=c+d", "a b").as_deref(), Some("c d"));
    }

    #[test]
    fn query_parses_in_order_and_the_first_repeat_wins() {
        let q = Query::parse(Some("_action=validate&tokenId=a%20b&_action=logout"));
        assert_eq!(q.get("_action"), Some("validate"));
        assert_eq!(q.get("tokenId"), Some("a b"));
        assert_eq!(Query::parse(None).get("x"), None);
        let q = Query::parse(Some("a=1&b=x%2Ay+z&b=second&c&d=%zz%4&e=%E2%82%AC%ff"));
        assert_eq!(q.get("b"), Some("x*y z"));
        assert_eq!(q.get("c"), Some(""), "a name without `=` has an empty value");
        assert_eq!(q.get("d"), Some("%zz%4"), "a malformed escape is kept as it is");
        assert_eq!(q.get("e"), Some("€\u{fffd}"), "invalid UTF-8 becomes U+FFFD");
    }

    #[test]
    fn the_session_token_is_read_query_then_header_then_cookie() {
        let places = TokenPlaces::named("iPlanetDirectoryPro").unwrap();
        let mut h = headers(&[b"iPlanetDirectoryPro=from-cookie"]);
        let read = |h: &HeaderMap, q| {
            session_token(&places, h, q).map(|t| String::from_utf8(t.into_owned()).unwrap())
        };
        assert_eq!(read(&h, None).as_deref(), Some("from-cookie"));
        h.insert("iplanetdirectorypro", HeaderValue::from_static("from-header"));
        assert_eq!(read(&h, None).as_deref(), Some("from-header"));
        assert_eq!(read(&h, Some("tokenId=from-query")).as_deref(), Some("from-query"));
        assert_eq!(read(&h, Some("tokenId=")).as_deref(), Some("from-header"), "an empty value is absent");
        assert_eq!(read(&HeaderMap::new(), Some("a=b")), None);
    }
}
