//! HTTP/1 requests whose meaning a proxy and a node could disagree on, refused with 400 and a closed
//! connection before anything is forwarded (request smuggling defences):
//!
//! - two `Host` fields (RFC 9112 §3.2: a server MUST answer 400);
//! - `Content-Length` together with `Transfer-Encoding` (RFC 9112 §6.1: a server MAY reject it and MUST
//!   close the connection after it);
//! - a repeated `Content-Length`, even with equal values, or one that is not a plain decimal number
//!   (RFC 9112 §6.3: an invalid length is unrecoverable).
//!
//! Both paths ask the same [`Framing`]: the fast path feeds it the fields as bytes, hyper's path the
//! `HeaderMap` hyper built. hyper itself refuses differing or malformed lengths (with its own bare
//! 400) and, before any handler sees the request, drops a `Content-Length` that comes with
//! `Transfer-Encoding`: such a request is framed by `Transfer-Encoding` alone and its connection
//! closed, which RFC 9112 §6.1 allows. HTTP/2 has its own framing (RFC 9113 §8.2.2).

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, Version};

/// The framing fields of one request, counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Framing {
    hosts: u32,
    lengths: u32,
    bad_length: bool,
    transfer_encoding: bool,
}

impl Framing {
    /// A `Host` field.
    pub fn host(&mut self) {
        self.hosts += 1;
    }

    /// A `Content-Length` field; whether its value is `0`.
    pub fn content_length(&mut self, value: &[u8]) -> bool {
        self.lengths += 1;
        let value = value.trim_ascii();
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            self.bad_length = true;
        }
        value == b"0"
    }

    /// A `Transfer-Encoding` field.
    pub fn transfer_encoding(&mut self) {
        self.transfer_encoding = true;
    }

    /// Why the request is refused, if it is: the message of the 400 answer.
    pub fn refused(&self) -> Option<&'static str> {
        if self.hosts > 1 {
            Some("More than one Host field (RFC 9112 §3.2)")
        } else if self.lengths > 0 && self.transfer_encoding {
            Some("Content-Length together with Transfer-Encoding (RFC 9112 §6.1)")
        } else if self.lengths > 1 {
            Some("More than one Content-Length field (RFC 9112 §6.3)")
        } else if self.bad_length {
            Some("Content-Length is not a number (RFC 9112 §6.3)")
        } else {
            None
        }
    }
}

/// Why a request hyper parsed is refused, if it is (HTTP/1 only).
pub fn refused(version: Version, headers: &HeaderMap) -> Option<&'static str> {
    if !matches!(version, Version::HTTP_10 | Version::HTTP_11 | Version::HTTP_09) {
        return None;
    }
    let mut framing = Framing::default();
    for _ in headers.get_all(HOST) {
        framing.host();
    }
    for value in headers.get_all(CONTENT_LENGTH) {
        framing.content_length(value.as_bytes());
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        framing.transfer_encoding();
    }
    framing.refused()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smuggling_shapes_are_refused() {
        let map = |fields: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in fields {
                h.append(*n, http::HeaderValue::from_static(v));
            }
            h
        };
        let ok = map(&[("host", "a"), ("content-length", "5")]);
        assert_eq!(refused(Version::HTTP_11, &ok), None);
        for bad in [
            map(&[("host", "a"), ("host", "b")]),
            map(&[("host", "a"), ("host", "a")]),
            map(&[("host", "a"), ("content-length", "5"), ("transfer-encoding", "chunked")]),
            map(&[("host", "a"), ("content-length", "5"), ("content-length", "5")]),
            map(&[("host", "a"), ("content-length", "5, 5")]),
            map(&[("host", "a"), ("content-length", "-1")]),
            map(&[("host", "a"), ("content-length", "")]),
        ] {
            assert!(refused(Version::HTTP_11, &bad).is_some(), "{bad:?}");
        }
        assert_eq!(refused(Version::HTTP_2, &map(&[("host", "a"), ("host", "b")])), None);
    }
}
