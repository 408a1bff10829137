//! Header policy, in one place, rendered two ways: onto a `HeaderMap` (hyper's path) and onto bytes (the
//! HTTP/1.1 fast path, which never builds a map). Both renderers ask the same decision functions
//! ([`is_hop_field`], [`request_field`], [`fold_forwarded_for`], [`forwarded_proto`], [`request_id`]), and
//! a test feeds one request to both.
//!
//! RFC 9110 §7.6.1: `Connection` and the fields it lists describe one hop only and must not be forwarded;
//! the classic hop-by-hop names (RFC 2616 §13.5.1, plus `Proxy-Connection`) are removed whatever it lists.
//! Forwarding headers let AM build redirect URLs and read the client address
//! (`com.sun.identity.authentication.client.ipAddressHeader=X-Forwarded-For`): from a peer in
//! `trusted_proxies` `X-Forwarded-For` gets the peer appended to the earlier values; from any other peer
//! the earlier values are dropped (a client could otherwise choose the address AM's adaptive risk and IP
//! conditions see). `X-Forwarded-Proto`, `X-Forwarded-Host` (the `Host` as sent, port included) and
//! `X-Forwarded-Port` (the port the client connected to) are replaced. The request ID field
//! (`X-ForgeRock-TransactionId`, which AM writes into its audit logs) is forwarded when the client sent
//! one valid value, else replaced by a new one ([`request_id`]).

use std::cell::Cell;
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
/// `X-Forwarded-Port`.
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
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

/// `Connection` tokens that are not field names to drop (see [`Connection`]).
const NEVER_LISTED: [&[u8]; 3] = [b"keep-alive", b"content-length", b"host"];

/// Whether `name` (any case) is one of the fixed hop-by-hop names.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|n| n.as_str().as_bytes().eq_ignore_ascii_case(name))
}

/// The tokens of a message's `Connection` fields: `close`, and the field names listed as hop-by-hop
/// (RFC 9110 §7.6.1). `keep-alive` is neither: it is the HTTP/1.1 default and a fixed hop-by-hop name.
/// `Content-Length` and `Host` are never taken as listed: they frame and route the message for every
/// recipient (RFC 9110 §7.6.1 forbids such options), and dropping them on a sender's word would let
/// the next hop read a relayed body as the next request (smuggling) or get a request without `Host`.
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
            } else if !token.is_empty() && !NEVER_LISTED.iter().any(|n| token.eq_ignore_ascii_case(n)) {
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
    /// An earlier `X-Forwarded-For` from a trusted peer: folded, in order, into the one the proxy sends.
    ForwardedFor,
    /// Replaced by the proxy's own value (`X-Forwarded-Proto`, `-Port`, `-Host` when it sets one, and
    /// `X-Forwarded-For` from a peer that is not trusted).
    Replaced,
    /// The request ID field: the proxy writes the one ID it chose ([`request_id`]).
    RequestId,
}

/// What the proxy knows about the hop a request came over, for the forwarding fields.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The peer, appended to `X-Forwarded-For`.
    pub peer: IpAddr,
    /// The peer is in `trusted_proxies`: its `X-Forwarded-For` is kept.
    pub trusted: bool,
    /// Arrived over TLS (`X-Forwarded-Proto`).
    pub tls: bool,
    /// The port the client connected to (`X-Forwarded-Port`).
    pub port: u16,
    /// The request ID field's name.
    pub request_id: &'a HeaderName,
}

/// Whether the field `name` belongs to this hop only: a fixed hop-by-hop name or one `Connection` lists.
pub fn is_hop_field(name: &[u8], connection: &Connection<'_>) -> bool {
    is_hop_by_hop(name) || connection.lists(name)
}

/// The request policy for the field `name`. `sets_host`: the proxy sends its own `X-Forwarded-Host`
/// (it does whenever the request names its host).
pub fn request_field(
    name: &[u8],
    connection: &Connection<'_>,
    hop: &Hop<'_>,
    sets_host: bool,
) -> RequestField {
    if is_hop_field(name, connection) {
        RequestField::Drop
    } else if name.eq_ignore_ascii_case(X_FORWARDED_FOR.as_str().as_bytes()) {
        if hop.trusted { RequestField::ForwardedFor } else { RequestField::Replaced }
    } else if name.eq_ignore_ascii_case(X_FORWARDED_PROTO.as_str().as_bytes())
        || name.eq_ignore_ascii_case(X_FORWARDED_PORT.as_str().as_bytes())
        || (sets_host && name.eq_ignore_ascii_case(X_FORWARDED_HOST.as_str().as_bytes()))
    {
        RequestField::Replaced
    } else if name.eq_ignore_ascii_case(hop.request_id.as_str().as_bytes()) {
        RequestField::RequestId
    } else {
        RequestField::Keep
    }
}

/// The longest request ID kept: AM's transaction IDs are UUIDs with a sub-transaction suffix.
pub const MAX_REQUEST_ID: usize = 128;

/// Whether a client's request ID is forwarded: 1 to [`MAX_REQUEST_ID`] characters out of letters,
/// digits and `-._:/+=@`, so it cannot break a log line or smuggle anything into AM's audit log.
pub fn valid_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&value.len())
        && value.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._:/+=@".contains(&b))
}

/// The request ID a request is forwarded with.
#[derive(Debug, Clone, Copy)]
pub enum RequestId<'a> {
    /// The client's own, valid.
    Kept(&'a [u8]),
    /// A new one: 32 hex digits.
    Made([u8; 32]),
}

impl RequestId<'_> {
    /// The ID as sent.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Kept(v) => v,
            Self::Made(v) => v,
        }
    }

    /// The ID as text, for the access line.
    pub fn to_text(self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

/// The request ID: the client's when it sent exactly one and it is valid ([`valid_request_id`]),
/// else a new one.
pub fn request_id<'a>(mut incoming: impl Iterator<Item = &'a [u8]>) -> RequestId<'a> {
    match (incoming.next(), incoming.next()) {
        (Some(v), None) if valid_request_id(v) => RequestId::Kept(v),
        _ => RequestId::Made(new_request_id()),
    }
}

thread_local! {
    /// A random prefix per thread and a counter: IDs unique across threads, processes and restarts
    /// (64 random bits), made without a system call per request. They identify, they are not secrets.
    static NEXT_ID: Cell<(u64, u64)> = Cell::new((thread_prefix(), 0));
}

fn thread_prefix() -> u64 {
    let mut bytes = [0u8; 8];
    // The OS's generator failing is not a reason to refuse requests: the counter still tells IDs apart.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    u64::from_le_bytes(bytes)
}

/// A new request ID: 32 lower-case hex digits, on the stack.
pub fn new_request_id() -> [u8; 32] {
    let (prefix, n) = NEXT_ID.with(|c| {
        let (prefix, n) = c.get();
        c.set((prefix, n.wrapping_add(1)));
        (prefix, n)
    });
    let mut out = [0u8; 32];
    let digits = b"0123456789abcdef";
    for (i, byte) in prefix.to_be_bytes().into_iter().chain(n.to_be_bytes()).enumerate() {
        out[2 * i] = digits[usize::from(byte >> 4)];
        out[2 * i + 1] = digits[usize::from(byte & 0x0f)];
    }
    out
}

/// The client as the access line names it: the peer, unless the peer is a trusted proxy that sent
/// `X-Forwarded-For`; then the right-most address in it that is not itself trusted (the first hop no
/// trusted proxy vouches for, as HAProxy's `src` after `tcp-request connection set-src`), or the
/// left-most when all are. `None`: the peer it is.
pub fn forwarded_client<'a>(
    trusted: &crate::config::TrustedProxies,
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
) -> Option<IpAddr> {
    if !trusted.contains(peer) {
        return None;
    }
    trusted.rightmost_untrusted(forwarded_for)
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

/// Whether a `Content-Type` value names JSON (`application/json`, or any `+json` type, parameters
/// ignored): the bodies whose `authId` may name the node, peeked before forwarding.
pub fn is_json_type(value: &[u8]) -> bool {
    let essence = value.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    let suffix = essence.len().checked_sub(5).and_then(|i| essence.get(i..));
    essence.eq_ignore_ascii_case(b"application/json")
        || suffix.is_some_and(|s| s.eq_ignore_ascii_case(b"+json"))
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

/// Sets the forwarding fields: `X-Forwarded-For` (the peer, after the earlier values when the peer is
/// trusted, folded into one field), `X-Forwarded-Proto`, `X-Forwarded-Port` and `X-Forwarded-Host` (the
/// `Host` as sent). `peer` is the peer rendered by [`forwarded_for_value`].
pub fn add_forwarded(headers: &mut HeaderMap, peer: &HeaderValue, hop: &Hop<'_>, host: Option<HeaderValue>) {
    let xff = if hop.trusted && headers.contains_key(&X_FORWARDED_FOR) {
        let mut joined = Vec::with_capacity(64);
        fold_forwarded_for(&mut joined, headers.get_all(&X_FORWARDED_FOR).iter().map(HeaderValue::as_bytes));
        joined.extend_from_slice(peer.as_bytes());
        HeaderValue::from_bytes(&joined).ok()
    } else {
        Some(peer.clone())
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(forwarded_proto(hop.tls)));
    headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(hop.port));
    if let Some(v) = host {
        headers.insert(X_FORWARDED_HOST.clone(), v);
    }
}

/// Sets the request ID field ([`request_id`]) and gives the ID, for the access line.
pub fn set_request_id(headers: &mut HeaderMap, name: &HeaderName) -> HeaderValue {
    let id = request_id(headers.get_all(name).iter().map(HeaderValue::as_bytes));
    match id {
        RequestId::Kept(_) => headers.get(name).cloned().unwrap_or_else(|| HeaderValue::from_static("")),
        RequestId::Made(made) => {
            // Hex digits are always a valid value.
            let value = HeaderValue::from_bytes(&made).unwrap_or_else(|_| HeaderValue::from_static(""));
            headers.insert(name.clone(), value.clone());
            value
        }
    }
}

// ---- onto bytes (the HTTP/1.1 fast path) ----

/// Writes the request's fields as the node gets them, with the forwarding fields and the request ID at
/// the end: the same policy as [`strip_hop_by_hop`], [`add_forwarded`] and [`set_request_id`] on a map.
/// `host` is the request's `Host` as sent. Gives the request ID it wrote.
pub fn push_forwarded_fields<'a>(
    out: &mut Vec<u8>,
    fields: &[httparse::Header<'a>],
    connection: &Connection<'_>,
    hop: &Hop<'_>,
    host: &[u8],
) -> RequestId<'a> {
    let mut earlier_xff = false;
    let mut ids = 0;
    for f in fields {
        match request_field(f.name.as_bytes(), connection, hop, true) {
            RequestField::Keep => push_field(out, f.name.as_bytes(), f.value),
            RequestField::ForwardedFor => earlier_xff = true,
            RequestField::RequestId => ids += 1,
            RequestField::Drop | RequestField::Replaced => {}
        }
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if earlier_xff {
        let earlier = fields.iter().filter(|f| {
            request_field(f.name.as_bytes(), connection, hop, true) == RequestField::ForwardedFor
        });
        fold_forwarded_for(out, earlier.map(|f| f.value));
    }
    push_ip(out, hop.peer);
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(forwarded_proto(hop.tls).as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-port: ");
    out.extend_from_slice(itoa_u16(hop.port).as_bytes());
    out.extend_from_slice(b"\r\n");
    push_field(out, X_FORWARDED_HOST.as_str().as_bytes(), host);
    let id = if ids == 0 {
        RequestId::Made(new_request_id())
    } else {
        let name = hop.request_id.as_str().as_bytes();
        request_id(fields.iter().filter(|f| f.name.as_bytes().eq_ignore_ascii_case(name)).map(|f| f.value))
    };
    push_field(out, hop.request_id.as_str().as_bytes(), id.as_bytes());
    id
}

/// A port as decimal digits, on the stack.
struct Digits {
    buf: [u8; 5],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_u16(mut n: u16) -> Digits {
    let mut buf = [0u8; 5];
    let mut start = 5;
    loop {
        start -= 1;
        buf[start] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 {
            return Digits { buf, start };
        }
    }
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

    /// A `Connection` option naming `Content-Length` or `Host` is ignored on hyper's path too (and on
    /// responses): those fields frame and route the message for the next hop.
    #[test]
    fn connection_options_never_name_framing_or_routing_fields() {
        let mut c = Connection::default();
        c.add(b"Content-Length, HOST ,x-hop");
        assert!(!c.lists(b"content-length") && !c.lists(b"host"));
        assert!(c.lists(b"X-Hop"));
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("content-length, host"));
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert(http::header::HOST, HeaderValue::from_static("a"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
    }

    static RID: HeaderName = HeaderName::from_static("x-forgerock-transactionid");

    fn hop(peer: &str, trusted: bool) -> Hop<'static> {
        Hop { peer: peer.parse().unwrap(), trusted, tls: false, port: 8443, request_id: &RID }
    }

    #[test]
    fn forwarded_for_is_appended_for_a_trusted_peer_and_replaced_for_others() {
        for (trusted, want) in [(true, "203.0.113.1, 198.51.100.2, 127.0.0.1"), (false, "127.0.0.1")] {
            let mut h = HeaderMap::new();
            h.append(&X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.1"));
            h.append(&X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.2"));
            h.append(&X_FORWARDED_PORT, HeaderValue::from_static("1"));
            let client = forwarded_for_value("127.0.0.1".parse().unwrap());
            let hop = Hop { tls: true, ..hop("127.0.0.1", trusted) };
            add_forwarded(&mut h, &client, &hop, Some(HeaderValue::from_static("login.example:8443")));
            assert_eq!(h[&X_FORWARDED_FOR], want);
            assert_eq!(h[&X_FORWARDED_PROTO], "https");
            assert_eq!(h[&X_FORWARDED_HOST], "login.example:8443");
            assert_eq!(h[&X_FORWARDED_PORT], "8443");
            assert_eq!(h.get_all(&X_FORWARDED_PORT).iter().count(), 1);
        }
    }

    #[test]
    fn request_ids_are_kept_when_valid_and_made_otherwise() {
        let kept = b"8c9a2b4e-1f3d-4530-9a1e-0b5c7d9e1f2a-4530/0";
        assert!(matches!(request_id([&kept[..]].into_iter()), RequestId::Kept(v) if v == kept));
        let long = [b'a'; MAX_REQUEST_ID + 1];
        for bad in [&b""[..], b"a b", b"a\"b", b"<script>", b"id;drop", &long] {
            assert!(matches!(request_id([bad].into_iter()), RequestId::Made(_)), "{bad:?}");
        }
        assert!(matches!(request_id([&b"a"[..], b"b"].into_iter()), RequestId::Made(_)), "two IDs");
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert!(valid_request_id(&a) && a.iter().all(u8::is_ascii_hexdigit));

        let mut h = HeaderMap::new();
        h.insert(&RID, HeaderValue::from_static("bad id"));
        let made = set_request_id(&mut h, &RID);
        assert_eq!(h[&RID], made);
        assert_eq!(made.len(), 32);
        h.insert(&RID, HeaderValue::from_static("good-id"));
        assert_eq!(set_request_id(&mut h, &RID), "good-id");
        assert_eq!(h[&RID], "good-id");
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop() {
        let trusted = crate::config::TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let xff: [&[u8]; 2] = [b"6.6.6.6, 192.0.2.1", b"10.1.1.1"];
        assert_eq!(forwarded_client(&trusted, ip("127.0.0.1"), xff.into_iter()), Some(ip("192.0.2.1")));
        assert_eq!(forwarded_client(&trusted, ip("192.0.2.9"), xff.into_iter()), None, "untrusted peer");
        let inner: [&[u8]; 1] = [b"10.2.2.2, 10.1.1.1"];
        assert_eq!(
            forwarded_client(&trusted, ip("::ffff:127.0.0.1"), inner.into_iter()),
            Some(ip("10.2.2.2"))
        );
        let junk: [&[u8]; 1] = [b"unknown"];
        assert_eq!(forwarded_client(&trusted, ip("127.0.0.1"), junk.into_iter()), None);
        assert_eq!(forwarded_client(&trusted, ip("127.0.0.1"), std::iter::empty()), None);
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
            X-Forwarded-Port: 1\r\n\
            X-ForgeRock-TransactionId: txn-1\r\n\
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
        let hop = Hop { port: 8443, ..hop("10.1.2.3", true) };
        let id = push_forwarded_fields(&mut out, fields, &connection, &hop, b"login.example:8443");
        assert!(matches!(id, RequestId::Kept(b"txn-1")));
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
            &hop,
            Some(HeaderValue::from_static("login.example:8443")),
        );
        assert_eq!(set_request_id(&mut map, &RID), "txn-1");
        let mapped = sorted(
            map.iter().map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec())).collect(),
        );

        assert_eq!(bytes, mapped);
        let expected: Vec<(String, Vec<u8>)> = [
            ("accept", "application/json"),
            ("accept-api-version", "resource=2.0"),
            ("cookie", "amlbcookie=01"),
            ("host", "login.example:8443"),
            ("x-forgerock-transactionid", "txn-1"),
            ("x-forwarded-for", "203.0.113.1, 198.51.100.2, 192.0.2.7, 10.1.2.3"),
            ("x-forwarded-host", "login.example:8443"),
            ("x-forwarded-port", "8443"),
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
