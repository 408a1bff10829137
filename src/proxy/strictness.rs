//! HTTP requests whose meaning a proxy and a node could disagree on, refused with 400 and a closed
//! connection before anything is forwarded (request smuggling and routing-confusion defences). The
//! proxy is the edge of an identity system, so it is the strictest parser in the path: where RFC 9112
//! lets a recipient choose between rejecting and repairing, it rejects.
//!
//! - a `Host` field missing from an HTTP/1.1 request, repeated, or not `host[:port]` (RFC 9112 §3.2: a
//!   server MUST answer 400); repeated `Host` is refused over HTTP/2 too, where it would reach the node
//!   as two fields;
//! - a `Host` that names another authority than the absolute-form target (RFC 9112 §3.2.2) or HTTP/2's
//!   `:authority` (RFC 9113 §8.3.1): the proxy would route by one and the node read the other;
//! - `Content-Length` together with `Transfer-Encoding` (RFC 9112 §6.1 allows rejecting it; Envoy and
//!   nginx do);
//! - `Transfer-Encoding` in an HTTP/1.0 request (RFC 9112 §6.1: faulty framing), or any coding list
//!   other than one `chunked` (no other coding can be forwarded as sent: `chunked, identity`,
//!   `xchunked`, `gzip, chunked`, `chunked` twice);
//! - a field named like a framing field but for `-` and `_` (`Content_Length`, `Transfer---Encoding`),
//!   which some nodes read as the real one;
//! - content on a `GET` or `HEAD` (RFC 9110 §9.3.1: engines differ on reading it; `Content-Length: 0`
//!   passes);
//! - a repeated `Content-Length`, even with equal values, or one that is not a plain decimal number of
//!   at most 19 digits (RFC 9112 §6.3: an invalid length is unrecoverable).
//!
//! Both paths ask the same [`Framing`]: the fast path feeds it the fields as bytes, hyper's path the
//! `HeaderMap` hyper built ([`refused`]). hyper parses a connection it was handed before tether sees
//! each request, and repairs two shapes on its own: it drops a `Content-Length` that comes with
//! `Transfer-Encoding` (framing by `Transfer-Encoding` alone and closing the connection after the
//! answer, as RFC 9112 §6.1 requires) and folds equal repeated lengths into one. The fast path screens
//! every head it parses before it hands a connection over, so those repairs only apply to requests that
//! follow one hyper was given (`Expect`, `Upgrade`, HTTP/1.0, absolute-form, heads past the fast path's
//! limits); the node then gets one unambiguous framing either way.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{Method, Request, Version};

/// The framing and authority fields of one request, counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Framing<'a> {
    hosts: u32,
    host: Option<&'a [u8]>,
    /// The authority of an absolute-form target or of `:authority`, and the scheme's default port.
    authority: Option<(&'a [u8], u16)>,
    lengths: u32,
    bad_length: bool,
    long_length: bool,
    transfer_encoding: bool,
    /// `chunked` codings seen, and whether any other coding (or an empty element) was.
    chunked: u32,
    other_coding: bool,
    /// A field named like a framing field with `_` or more `-` in it.
    lookalike: bool,
    /// A `Content-Length` other than `0`.
    nonzero_length: bool,
    /// `GET` or `HEAD`.
    bodiless: bool,
    version: Version,
}

impl<'a> Framing<'a> {
    /// An HTTP/1.x request (`minor` 0 or 1) or an HTTP/2 one.
    pub fn new(version: Version) -> Self {
        Self { version, ..Self::default() }
    }

    /// A `Host` field.
    pub fn host(&mut self, value: &'a [u8]) {
        self.hosts += 1;
        self.host = Some(value);
    }

    /// The authority the request line (absolute form) or `:authority` names, with the default port of
    /// its scheme.
    pub fn authority(&mut self, authority: &'a [u8], default_port: u16) {
        self.authority = Some((authority, default_port));
    }

    /// A `Content-Length` field; whether its value is `0`.
    pub fn content_length(&mut self, value: &[u8]) -> bool {
        self.lengths += 1;
        let value = value.trim_ascii();
        self.nonzero_length |= value != b"0";
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            self.bad_length = true;
        } else if value.len() > 19 {
            self.long_length = true;
        }
        value == b"0"
    }

    /// A `Transfer-Encoding` field; whether the request is framed `chunked` so far.
    pub fn transfer_encoding(&mut self, value: &[u8]) -> bool {
        self.transfer_encoding = true;
        for coding in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked += 1;
            } else {
                self.other_coding = true;
            }
        }
        self.chunked == 1 && !self.other_coding
    }

    /// Any field name: notes a name that reads as `Content-Length` or `Transfer-Encoding` once `-` and
    /// `_` are ignored (`Content_Length`, `Transfer---Encoding`), which a node that maps or squashes
    /// separators (CGI-style gateways do) would read as framing the proxy did not.
    pub fn name(&mut self, name: &[u8]) {
        if !(13..=24).contains(&name.len()) || !matches!(name[0] | 0x20, b'c' | b't') {
            return;
        }
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding") {
            return;
        }
        let squashed = name.iter().filter(|b| !matches!(b, b'-' | b'_')).map(u8::to_ascii_lowercase);
        self.lookalike |= squashed.clone().eq(b"contentlength".iter().copied())
            || squashed.eq(b"transferencoding".iter().copied());
    }

    /// The request's method: `GET` and `HEAD` carry no content (RFC 9110 §9.3.1, §9.3.2), and engines
    /// differ on whether they read a body framed on one, so such a body is a smuggling shape.
    pub fn method(&mut self, method: &Method) {
        self.bodiless = method == Method::GET || method == Method::HEAD;
    }

    /// Why the request is refused, if it is: the message of the 400 answer.
    pub fn refused(&self) -> Option<&'static str> {
        let http1 = matches!(self.version, Version::HTTP_10 | Version::HTTP_11 | Version::HTTP_09);
        if self.hosts > 1 {
            Some("More than one Host field (RFC 9112 §3.2)")
        } else if self.hosts == 0 && self.version == Version::HTTP_11 {
            Some("No Host field in an HTTP/1.1 request (RFC 9112 §3.2)")
        } else if self.host.is_some_and(|h| !valid_host(h)) {
            Some("Host is not a valid host[:port] (RFC 9112 §3.2)")
        } else if let (Some(host), Some((authority, port))) = (self.host, self.authority)
            && !same_authority(host, authority, port)
        {
            Some("Host names another authority than the request (RFC 9112 §3.2.2, RFC 9113 §8.3.1)")
        } else if !http1 {
            // HTTP/2 frames its own bodies (RFC 9113 §8.1); the h2 codec checks lengths against them.
            None
        } else if self.lookalike {
            Some("A field named like Content-Length or Transfer-Encoding (RFC 9112 §6)")
        } else if self.lengths > 0 && self.transfer_encoding {
            Some("Content-Length together with Transfer-Encoding (RFC 9112 §6.1)")
        } else if self.transfer_encoding && self.version != Version::HTTP_11 {
            Some("Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)")
        } else if self.transfer_encoding && (self.chunked != 1 || self.other_coding) {
            Some("Transfer-Encoding other than one chunked coding (RFC 9112 §6.1, §7)")
        } else if self.lengths > 1 {
            Some("More than one Content-Length field (RFC 9112 §6.3)")
        } else if self.bad_length {
            Some("Content-Length is not a number (RFC 9112 §6.3)")
        } else if self.long_length {
            Some("Content-Length is too large (RFC 9112 §6.3)")
        } else if self.bodiless && (self.transfer_encoding || self.nonzero_length) {
            Some("A GET or HEAD request with content (RFC 9110 §9.3.1, §9.3.2)")
        } else {
            None
        }
    }
}

/// `uri-host [":" port]` (RFC 3986 §3.2.2, RFC 9110 §7.2): reg-name or IP-literal characters only, no
/// userinfo, no path, no whitespace. Empty is allowed (RFC 9112 §3.2: an authority-less target).
fn valid_host(value: &[u8]) -> bool {
    value.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')')
            || matches!(b, b'*' | b'+' | b',' | b';' | b'=' | b':' | b'[' | b']')
    })
}

/// Whether `Host` and the request's authority name the same host and port (hosts compared without
/// case, a missing port being the scheme's default).
fn same_authority(host: &[u8], authority: &[u8], default_port: u16) -> bool {
    let split = |a: &[u8]| -> Option<(Vec<u8>, u16)> {
        let text = std::str::from_utf8(a.trim_ascii()).ok()?;
        let parsed = text.parse::<http::uri::Authority>().ok()?;
        if text.contains('@') {
            return None;
        }
        Some((parsed.host().to_ascii_lowercase().into_bytes(), parsed.port_u16().unwrap_or(default_port)))
    };
    match (split(host), split(authority)) {
        (Some(h), Some(a)) => h == a,
        _ => false,
    }
}

/// Why a request hyper parsed is refused, if it is.
pub fn refused<B>(req: &Request<B>) -> Option<&'static str> {
    let headers = req.headers();
    let mut framing = Framing::new(req.version());
    framing.method(req.method());
    for name in headers.keys() {
        framing.name(name.as_str().as_bytes());
    }
    for value in headers.get_all(HOST) {
        framing.host(value.as_bytes());
    }
    if let Some(authority) = req.uri().authority() {
        let port = if req.uri().scheme() == Some(&http::uri::Scheme::HTTPS) { 443 } else { 80 };
        framing.authority(authority.as_str().as_bytes(), port);
    }
    for value in headers.get_all(CONTENT_LENGTH) {
        framing.content_length(value.as_bytes());
    }
    for value in headers.get_all(TRANSFER_ENCODING) {
        framing.transfer_encoding(value.as_bytes());
    }
    framing.refused()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, uri: &str, fields: &[(&'static str, &'static str)]) -> Request<()> {
        let mut req = Request::builder().method("POST").version(version).uri(uri).body(()).unwrap();
        for (n, v) in fields {
            req.headers_mut().append(*n, http::HeaderValue::from_static(v));
        }
        req
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let h1 = |fields: &[(&'static str, &'static str)]| request(Version::HTTP_11, "/am", fields);
        for ok in [
            h1(&[("host", "a"), ("content-length", "5")]),
            h1(&[("host", "a:8080"), ("transfer-encoding", "Chunked")]),
            h1(&[("host", "")]),
            h1(&[("host", "[::1]:80")]),
            request(Version::HTTP_10, "/am", &[]),
            request(Version::HTTP_11, "http://a/am", &[("host", "A:80")]),
            request(Version::HTTP_2, "https://a/am", &[("host", "a:443")]),
            request(Version::HTTP_2, "https://a/am", &[]),
        ] {
            assert_eq!(refused(&ok), None, "{ok:?}");
        }
        for bad in [
            h1(&[("host", "a"), ("host", "b")]),
            h1(&[("host", "a"), ("host", "a")]),
            h1(&[]),
            h1(&[("host", "a b")]),
            h1(&[("host", "user@a")]),
            h1(&[("host", "a/b")]),
            h1(&[("host", "a"), ("content-length", "5"), ("transfer-encoding", "chunked")]),
            h1(&[("host", "a"), ("content-length", "5"), ("content-length", "5")]),
            h1(&[("host", "a"), ("content-length", "5, 5")]),
            h1(&[("host", "a"), ("content-length", "-1")]),
            h1(&[("host", "a"), ("content-length", "")]),
            h1(&[("host", "a"), ("content-length", "123456789012345678901")]),
            h1(&[("host", "a"), ("transfer-encoding", "chunked, identity")]),
            h1(&[("host", "a"), ("transfer-encoding", "xchunked")]),
            h1(&[("host", "a"), ("transfer-encoding", "gzip, chunked")]),
            h1(&[("host", "a"), ("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")]),
            h1(&[("host", "a"), ("transfer-encoding", "chunked,")]),
            h1(&[("host", "a"), ("content_length", "5")]),
            h1(&[("host", "a"), ("transfer_encoding", "chunked")]),
            h1(&[("host", "a"), ("transfer---encoding", "chunked")]),
            request(Version::HTTP_10, "/am", &[("transfer-encoding", "chunked")]),
            request(Version::HTTP_11, "http://a/am", &[("host", "b")]),
            request(Version::HTTP_11, "http://a:81/am", &[("host", "a")]),
            request(Version::HTTP_2, "https://a/am", &[("host", "b")]),
            request(Version::HTTP_2, "https://a/am", &[("host", "a"), ("host", "a")]),
        ] {
            assert!(refused(&bad).is_some(), "{bad:?}");
        }
        let mut get = h1(&[("host", "a"), ("content-length", "5")]);
        *get.method_mut() = Method::GET;
        assert!(refused(&get).is_some(), "a GET with content");
        get.headers_mut().insert("content-length", http::HeaderValue::from_static("0"));
        assert_eq!(refused(&get), None, "a GET with Content-Length: 0");
    }
}
