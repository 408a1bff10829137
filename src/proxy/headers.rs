//! Header policy, in one place, rendered two ways: onto a `HeaderMap` (hyper's path) and onto bytes (the
//! HTTP/1.1 fast path, which never builds a map). Both renderers ask the same decision functions
//! ([`is_hop_field`], [`request_field`], [`fold_forwarded_for`], [`forwarded_proto`]), and a test feeds one
//! request to both.
//!
//! RFC 9110 §7.6.1: `Connection` and the fields it lists describe one hop only and must not be forwarded;
//! the classic hop-by-hop names (RFC 2616 §13.5.1, plus `Proxy-Connection`) are removed whatever it lists.
//! Forwarding headers let AM build redirect URLs and read the client address
//! (`com.sun.identity.authentication.client.ipAddressHeader=X-Forwarded-For`): `X-Forwarded-For` gets the
//! client appended to any earlier values, `X-Forwarded-Proto` and `X-Forwarded-Host` are replaced.

use std::io::Write as _;
use std::net::IpAddr;

use http::HeaderMap;
use http::header::{
    CONNECTION, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

pub use crate::server::forwarded_for_value;

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

/// Whether `name` (any case) is one of the fixed hop-by-hop names.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|n| n.as_str().as_bytes().eq_ignore_ascii_case(name))
}

/// The tokens of a message's `Connection` fields: `close`, and the field names listed as hop-by-hop
/// (RFC 9110 §7.6.1). `keep-alive` is neither: it is the HTTP/1.1 default and a fixed hop-by-hop name.
#[derive(Debug, Default)]
pub struct Connection<'a> {
    /// The sender closes the connection after this message.
    pub close: bool,
    listed: Vec<&'a [u8]>,
}

impl<'a> Connection<'a> {
    /// Reads the tokens of one `Connection` value.
    pub fn add(&mut self, value: &'a [u8]) {
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                self.listed.push(token);
            }
        }
    }

    /// Whether `name` (any case) is listed, so belongs to this hop only.
    pub fn lists(&self, name: &[u8]) -> bool {
        self.listed.iter().any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// What becomes of one request field on its way to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestField {
    /// Forwarded as it came.
    Keep,
    /// Hop-by-hop: not forwarded.
    Drop,
    /// An earlier `X-Forwarded-For`: folded, in order, into the one the proxy sends.
    ForwardedFor,
    /// Replaced by the proxy's own value (`X-Forwarded-Proto`; `X-Forwarded-Host` when it sets one).
    Replaced,
}

/// Whether the field `name` belongs to this hop only: a fixed hop-by-hop name or one `Connection` lists.
pub fn is_hop_field(name: &[u8], connection: &Connection<'_>) -> bool {
    is_hop_by_hop(name) || connection.lists(name)
}

/// The request policy for the field `name`. `sets_host`: the proxy sends its own `X-Forwarded-Host`
/// (it does whenever the request names its host).
pub fn request_field(name: &[u8], connection: &Connection<'_>, sets_host: bool) -> RequestField {
    if is_hop_field(name, connection) {
        RequestField::Drop
    } else if name.eq_ignore_ascii_case(X_FORWARDED_FOR.as_str().as_bytes()) {
        RequestField::ForwardedFor
    } else if name.eq_ignore_ascii_case(X_FORWARDED_PROTO.as_str().as_bytes())
        || (sets_host && name.eq_ignore_ascii_case(X_FORWARDED_HOST.as_str().as_bytes()))
    {
        RequestField::Replaced
    } else {
        RequestField::Keep
    }
}

/// Whether a response field is relayed as bytes by the fast path, which relays the body with the framing
/// it came with: hop-by-hop and `Connection`-listed fields are not, except `Transfer-Encoding` (the framing
/// of the body that follows); a `Content-Length` beside a `Transfer-Encoding` is dropped, as the latter
/// frames the body (RFC 9112 §6.3).
pub fn relays_response_field(name: &[u8], connection: &Connection<'_>, transfer_encoded: bool) -> bool {
    let framing = name.eq_ignore_ascii_case(TRANSFER_ENCODING.as_str().as_bytes());
    !((is_hop_by_hop(name) && !framing)
        || connection.lists(name)
        || (transfer_encoded && name.eq_ignore_ascii_case(b"content-length")))
}

/// The `X-Forwarded-For` value before the client: every earlier value in order, each followed by `, `.
pub fn fold_forwarded_for<'a>(out: &mut Vec<u8>, earlier: impl IntoIterator<Item = &'a [u8]>) {
    for value in earlier {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
}

/// The `X-Forwarded-Proto` value.
pub fn forwarded_proto(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

// ---- onto a HeaderMap (hyper's path) ----

/// Removes hop-by-hop headers: the fixed names and those `Connection` lists.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present (usually none is hop-by-hop; `Connection` is one itself, so a
    // message that lists names has one) instead of a removal per name.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(&name)) {
        return;
    }
    let mut connection = Connection::default();
    for value in headers.get_all(&CONNECTION) {
        connection.add(value.as_bytes());
    }
    let hop: Vec<HeaderName> =
        headers.keys().filter(|name| is_hop_field(name.as_str().as_bytes(), &connection)).cloned().collect();
    for name in hop {
        headers.remove(&name);
    }
}

/// Appends the client address (from [`forwarded_for_value`]) to `X-Forwarded-For`, folding any earlier
/// values into one field, and sets `X-Forwarded-Proto` and `X-Forwarded-Host` (the host without port).
pub fn add_forwarded(headers: &mut HeaderMap, client: &HeaderValue, tls: bool, host: Option<HeaderValue>) {
    let xff = if headers.contains_key(&X_FORWARDED_FOR) {
        let mut joined = Vec::with_capacity(64);
        fold_forwarded_for(&mut joined, headers.get_all(&X_FORWARDED_FOR).iter().map(HeaderValue::as_bytes));
        joined.extend_from_slice(client.as_bytes());
        HeaderValue::from_bytes(&joined).ok()
    } else {
        Some(client.clone())
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(forwarded_proto(tls)));
    if let Some(v) = host {
        headers.insert(X_FORWARDED_HOST.clone(), v);
    }
}

// ---- onto bytes (the HTTP/1.1 fast path) ----

/// Writes the request's fields as the node gets them, with the forwarding fields at the end: the same
/// policy as [`strip_hop_by_hop`] and [`add_forwarded`] on a map. `host` is the request's host without
/// port; the fast path serves plain text only, so the protocol is `http`.
pub fn push_forwarded_fields(
    out: &mut Vec<u8>,
    fields: &[httparse::Header<'_>],
    connection: &Connection<'_>,
    client: IpAddr,
    host: &str,
) {
    let mut earlier_xff = false;
    for f in fields {
        match request_field(f.name.as_bytes(), connection, true) {
            RequestField::Keep => push_field(out, f.name.as_bytes(), f.value),
            RequestField::ForwardedFor => earlier_xff = true,
            RequestField::Drop | RequestField::Replaced => {}
        }
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if earlier_xff {
        let earlier = fields
            .iter()
            .filter(|f| request_field(f.name.as_bytes(), connection, true) == RequestField::ForwardedFor);
        fold_forwarded_for(out, earlier.map(|f| f.value));
    }
    push_ip(out, client);
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(forwarded_proto(false).as_bytes());
    out.extend_from_slice(b"\r\n");
    push_field(out, X_FORWARDED_HOST.as_str().as_bytes(), host.as_bytes());
}

/// Writes one `name: value` field line.
pub fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `ip` as text, as [`forwarded_for_value`] renders it: IPv4 by hand, digits only, as this runs
/// per request (a fast-path connection keeps the 17-byte address rather than its text).
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
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
    fn client_addresses_render_as_std_does() {
        for ip in ["0.0.0.0", "9.10.99.100", "255.255.255.255", "127.0.0.1", "::1", "2001:db8::8a2e:370:7334"]
        {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
            assert_eq!(forwarded_for_value(ip).to_str().unwrap(), ip.to_string());
        }
    }

    /// `(lower-case name, value)` pairs, sorted, so the two renderings compare whatever their order.
    fn sorted(mut pairs: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
        pairs.sort();
        pairs
    }

    #[test]
    fn both_renderers_forward_the_same_fields() {
        let raw = b"GET /am/json/realms/root/sessions?_action=validate HTTP/1.1\r\n\
            Host: login.example:8443\r\n\
            Connection: keep-alive, X-Secret, close\r\n\
            X-Secret: 1\r\n\
            Keep-Alive: timeout=5\r\n\
            Proxy-Connection: keep-alive\r\n\
            TE: trailers\r\n\
            Proxy-Authorization: Basic eA==\r\n\
            X-Forwarded-For: 203.0.113.1\r\n\
            Accept: application/json\r\n\
            x-forwarded-for: 198.51.100.2, 192.0.2.7\r\n\
            X-Forwarded-Proto: https\r\n\
            X-Forwarded-Host: evil.example\r\n\
            Cookie: amlbcookie=01\r\n\
            Accept-API-Version: resource=2.0\r\n\r\n";
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut fields);
        assert!(req.parse(raw).unwrap().is_complete());
        let fields = req.headers;
        let client: IpAddr = "10.1.2.3".parse().unwrap();

        // Onto bytes, as the fast path does.
        let mut connection = Connection::default();
        for f in fields.iter().filter(|f| f.name.eq_ignore_ascii_case("connection")) {
            connection.add(f.value);
        }
        assert!(connection.close);
        let mut out = Vec::new();
        push_forwarded_fields(&mut out, fields, &connection, client, "login.example");
        out.extend_from_slice(b"\r\n");
        let mut parsed = [httparse::EMPTY_HEADER; 32];
        let Ok(httparse::Status::Complete((_, parsed))) = httparse::parse_headers(&out, &mut parsed) else {
            panic!("the rendered fields parse: {}", String::from_utf8_lossy(&out));
        };
        let bytes = sorted(parsed.iter().map(|f| (f.name.to_ascii_lowercase(), f.value.to_vec())).collect());

        // Onto a map, as hyper's path does.
        let mut map = HeaderMap::new();
        for f in fields.iter() {
            map.append(
                HeaderName::from_bytes(f.name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(f.value).unwrap(),
            );
        }
        strip_hop_by_hop(&mut map);
        add_forwarded(
            &mut map,
            &forwarded_for_value(client),
            false,
            Some(HeaderValue::from_static("login.example")),
        );
        let mapped = sorted(
            map.iter().map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec())).collect(),
        );

        assert_eq!(bytes, mapped);
        let expected: Vec<(String, Vec<u8>)> = [
            ("accept", "application/json"),
            ("accept-api-version", "resource=2.0"),
            ("cookie", "amlbcookie=01"),
            ("host", "login.example:8443"),
            ("x-forwarded-for", "203.0.113.1, 198.51.100.2, 192.0.2.7, 10.1.2.3"),
            ("x-forwarded-host", "login.example"),
            ("x-forwarded-proto", "http"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn response_fields_keep_their_framing() {
        let mut connection = Connection::default();
        connection.add(b"X-Node-Only");
        assert!(relays_response_field(b"Transfer-Encoding", &connection, true));
        assert!(!relays_response_field(b"content-length", &connection, true));
        assert!(relays_response_field(b"Content-Length", &connection, false));
        assert!(!relays_response_field(b"x-node-only", &connection, false));
        assert!(!relays_response_field(b"Keep-Alive", &connection, false));
        assert!(!relays_response_field(b"connection", &connection, false));
        assert!(relays_response_field(b"Set-Cookie", &connection, false));
    }
}
