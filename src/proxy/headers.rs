//! Header policy, in one place: hop-by-hop stripping both ways and the `X-Forwarded-*` headers.
//!
//! RFC 9110 §7.6.1: `Connection` and the fields it lists describe one hop only and must not be forwarded;
//! the classic hop-by-hop names (RFC 2616 §13.5.1, plus `Proxy-Connection`) are removed whatever it lists.
//! Forwarding headers let AM build redirect URLs and read the client address
//! (`com.sun.identity.authentication.client.ipAddressHeader=X-Forwarded-For`).

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{
    CONNECTION, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The fixed hop-by-hop names.
static HOP_BY_HOP: [&HeaderName; 9] = [
    &CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &TE,
    &TRAILER,
    &TRANSFER_ENCODING,
    &UPGRADE,
    &PROXY_AUTHENTICATE,
    &PROXY_AUTHORIZATION,
];

/// Whether `name` (any case) is one of the fixed hop-by-hop names; the HTTP/1.1 fast path's test on raw
/// field names, against the same list.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|n| n.as_str().as_bytes().eq_ignore_ascii_case(name))
}

/// Removes hop-by-hop headers, first the names `Connection` lists, then the fixed set.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present (usually none is hop-by-hop) instead of nine hashed removals.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(&name)) {
        return;
    }
    if headers.contains_key(&CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(&CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(&name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The client address as an `X-Forwarded-For` value (rendered once per connection).
pub fn forwarded_for_value(client: IpAddr) -> HeaderValue {
    // An IP address is always a valid header value.
    HeaderValue::from_str(&client.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Appends the client address (from [`forwarded_for_value`]) to `X-Forwarded-For`, folding any earlier
/// values into one field, and sets `X-Forwarded-Proto` and `X-Forwarded-Host` (the host without port).
pub fn add_forwarded(headers: &mut HeaderMap, client: &HeaderValue, tls: bool, host: Option<HeaderValue>) {
    let xff = {
        let mut earlier = headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).peekable();
        if earlier.peek().is_none() {
            Some(client.clone())
        } else {
            let mut joined: String = earlier.collect::<Vec<_>>().join(", ");
            joined.push_str(", ");
            joined.push_str(client.to_str().unwrap_or_default());
            HeaderValue::from_str(&joined).ok()
        }
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    let proto = if tls { HeaderValue::from_static("https") } else { HeaderValue::from_static("http") };
    headers.insert(X_FORWARDED_PROTO.clone(), proto);
    if let Some(v) = host {
        headers.insert(X_FORWARDED_HOST.clone(), v);
    }
}

/// Whether a response already sets the cookie `name` (the proxy then adds no second one, SPEC 4.3).
pub fn sets_cookie(headers: &HeaderMap, name: &str) -> bool {
    headers.get_all(http::header::SET_COOKIE).iter().any(|v| sets_cookie_named(v.as_bytes(), name.as_bytes()))
}

/// Whether one `Set-Cookie` value sets the cookie `name`.
pub fn sets_cookie_named(value: &[u8], name: &[u8]) -> bool {
    let v = value.trim_ascii_start();
    v.strip_prefix(name).is_some_and(|rest| rest.trim_ascii_start().starts_with(b"="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_listed_and_fixed_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret , close"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.1"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.2"));
        let client = forwarded_for_value("127.0.0.1".parse().unwrap());
        add_forwarded(&mut h, &client, true, Some(HeaderValue::from_static("login.example")));
        assert_eq!(h[&X_FORWARDED_FOR], "203.0.113.1, 198.51.100.2, 127.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "login.example");
    }

    #[test]
    fn set_cookie_detection_matches_the_exact_name() {
        let mut h = HeaderMap::new();
        h.append(http::header::SET_COOKIE, HeaderValue::from_static("amlbcookie2=1"));
        assert!(!sets_cookie(&h, "amlbcookie"));
        h.append(http::header::SET_COOKIE, HeaderValue::from_static("amlbcookie=01; Path=/"));
        assert!(sets_cookie(&h, "amlbcookie"));
    }
}
