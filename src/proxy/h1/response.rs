//! The response head on the fast path, pure: parse the node's head (skipping interim ones), decide the
//! body's framing and whether both connections stay open, strip hop-by-hop fields, add the affinity
//! cookie, and render the head the client gets as bytes. Also the fast path's own answers (AM's CREST
//! error body).

use std::io;
use std::mem::MaybeUninit;

use http::{HeaderValue, StatusCode};

use super::framing::{Chunked, Framing, FramingError};
use crate::am::crest;
use crate::proxy::headers::{self, Connection, push_field};
use crate::upstream::affinity;

/// Most response fields accepted from a node (hyper's client limit too).
const MAX_RESPONSE_FIELDS: usize = 100;
/// Largest response head accepted from a node.
pub(super) const MAX_RESPONSE_HEAD: usize = 256 * 1024;

/// Why a node's answer could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum AnswerError {
    #[error("connection closed before any answer")]
    Closed,
    #[error("connection closed in the middle of the response head")]
    Truncated,
    #[error("reading the answer: {0}")]
    Io(io::Error),
    #[error("malformed response head: {0}")]
    Malformed(String),
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes")]
    TooLarge,
    #[error(transparent)]
    Framing(#[from] FramingError),
}

/// What the response head needs from the request side.
pub(super) struct AnswerArgs<'a> {
    /// The affinity cookie's name, to see whether the node sets it itself.
    pub(super) cookie_name: &'a [u8],
    /// The `Set-Cookie` value to add unless the node sets the cookie itself.
    pub(super) cookie: Option<&'a HeaderValue>,
    /// The client connection closes after this exchange.
    pub(super) close: bool,
    /// The request was `HEAD`: the answer has no body whatever its fields say.
    pub(super) head_only: bool,
}

/// One head at the start of a node's bytes.
enum ParsedResponse {
    Head(ResponseHead),
    /// An interim (1xx) head of this many bytes.
    Informational(usize),
    Partial,
}

/// A node's response head, decided.
#[derive(Debug)]
pub(super) struct ResponseHead {
    head_len: usize,
    pub(super) status: StatusCode,
    pub(super) framing: Framing,
    /// The node's connection may take another request once the body is read.
    pub(super) reusable: bool,
    /// The client's connection must close after this response.
    pub(super) close_client: bool,
    /// The head to write to the client, then the body bytes that came with it.
    pub(super) head: Vec<u8>,
    /// How many body bytes `head` carries.
    pub(super) first_body: u64,
    /// The node sent more than the body it framed: its connection cannot be reused.
    pub(super) overrun: bool,
}

impl ResponseHead {
    fn parse(buf: &[u8], args: &AnswerArgs<'_>) -> Result<ParsedResponse, AnswerError> {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_FIELDS];
        let mut resp = httparse::Response::new(&mut []);
        let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(ParsedResponse::Partial),
            Err(e) => return Err(AnswerError::Malformed(e.to_string())),
        };
        let code = resp.code.unwrap_or(0);
        if code == 101 {
            return Err(AnswerError::Malformed("101 Switching Protocols without an upgrade asked".into()));
        }
        if (100..200).contains(&code) {
            return Ok(ParsedResponse::Informational(head_len));
        }
        let status = StatusCode::from_u16(code).map_err(|e| AnswerError::Malformed(e.to_string()))?;
        let fields: &[httparse::Header<'_>] = resp.headers;
        // RFC 9112 §6.3: Transfer-Encoding first, then Content-Length, else the body runs to the close.
        let mut chunked = None;
        let mut length: Option<u64> = None;
        let mut connection = Connection::default();
        let mut sets_cookie = false;
        for f in fields {
            let name = f.name.as_bytes();
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                let last = f.value.rsplit(|&b| b == b',').next().unwrap_or_default().trim_ascii();
                chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case(b"content-length") {
                let n = std::str::from_utf8(f.value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| AnswerError::Malformed("invalid Content-Length".into()))?;
                if length.replace(n).is_some_and(|m| m != n) {
                    return Err(AnswerError::Malformed("conflicting Content-Length fields".into()));
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                connection.add(f.value);
            } else if args.cookie.is_some() && name.eq_ignore_ascii_case(b"set-cookie") {
                sets_cookie |= affinity::sets_cookie_named(f.value, args.cookie_name);
            }
        }
        let framing = if args.head_only || code == 204 || code == 304 {
            Framing::Empty
        } else {
            match (chunked, length) {
                (Some(true), _) => Framing::Chunked(Chunked::default()),
                (Some(false), _) | (None, None) => Framing::UntilClose,
                (None, Some(0)) => Framing::Empty,
                (None, Some(n)) => Framing::Length(n),
            }
        };
        // Both framings at once is a smuggling shape: relay by Transfer-Encoding, then close (§6.1).
        let reusable = resp.version == Some(1)
            && !connection.close
            && !(chunked.is_some() && length.is_some())
            && framing != Framing::UntilClose;
        let close_client = args.close || framing == Framing::UntilClose;
        let mut head = Vec::with_capacity(head_len + 128);
        status_line(&mut head, code, resp.reason.unwrap_or(""));
        for f in fields {
            // The framing fields are relayed as they came (the body is, with its framing).
            if headers::relays_response_field(f.name.as_bytes(), &connection, chunked.is_some()) {
                push_field(&mut head, f.name.as_bytes(), f.value);
            }
        }
        if let Some(cookie) = args.cookie.filter(|_| !sets_cookie) {
            push_field(&mut head, b"set-cookie", cookie.as_bytes());
        }
        if close_client {
            head.extend_from_slice(b"connection: close\r\n");
        }
        head.extend_from_slice(b"\r\n");
        Ok(ParsedResponse::Head(ResponseHead {
            head_len,
            status,
            framing,
            reusable,
            close_client,
            head,
            first_body: 0,
            overrun: false,
        }))
    }
}

/// Parses the heads at the start of `data`, skipping interim ones, and adds the body bytes that follow
/// the final head to the head for the client (they go out in one write). `(n, None)`: no final head
/// yet, and the first `n` bytes (interim heads) are done with.
pub(super) fn take_head(
    data: &[u8],
    args: &AnswerArgs<'_>,
) -> Result<(usize, Option<ResponseHead>), AnswerError> {
    let mut at = 0;
    loop {
        match ResponseHead::parse(&data[at..], args)? {
            // `100 Continue`, `103 Early Hints`: not forwarded, as hyper's client does not.
            ParsedResponse::Informational(len) => at += len,
            ParsedResponse::Partial => return Ok((at, None)),
            ParsedResponse::Head(mut head) => {
                let rest = &data[at + head.head_len..];
                let n = head.framing.take(rest)?;
                head.head.extend_from_slice(&rest[..n]);
                head.first_body = n as u64;
                head.overrun = n < rest.len();
                return Ok((data.len(), Some(head)));
            }
        }
    }
}

/// The fast path's own answer, AM-shaped (the fields of [`crest::error`]), and its body's length.
/// `retry_after`: seconds for `Retry-After`, when the error has one. `head_only`: the request was `HEAD`,
/// so the body is left out.
pub(super) fn synthetic(
    status: StatusCode,
    message: &str,
    retry_after: Option<u32>,
    (close, head_only): (bool, bool),
) -> (Vec<u8>, usize) {
    let body = crest::error_body(status, message);
    let mut out = Vec::with_capacity(body.len() + 160);
    status_line(&mut out, status.as_u16(), status.canonical_reason().unwrap_or(""));
    out.extend_from_slice(b"content-type: application/json;charset=UTF-8\r\ncache-control: no-store\r\n");
    out.extend_from_slice(
        b"x-content-type-options: nosniff\r\nx-frame-options: SAMEORIGIN\r\ncontent-length: ",
    );
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(seconds) = retry_after {
        out.extend_from_slice(b"retry-after: ");
        out.extend_from_slice(seconds.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    (out, body.len())
}

fn status_line(out: &mut Vec<u8>, code: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    // Status codes are three digits (httparse and `StatusCode` both guarantee it).
    out.extend_from_slice(&[
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    static COOKIE: HeaderValue = HeaderValue::from_static("amlbcookie=01; Path=/; HttpOnly; SameSite=Lax");

    fn args(cookie: Option<&HeaderValue>) -> AnswerArgs<'_> {
        AnswerArgs { cookie_name: b"amlbcookie", cookie, close: false, head_only: false }
    }

    /// The head the client gets for the node's `answer`, as text.
    fn client_head(answer: &[u8], args: &AnswerArgs<'_>) -> (String, ResponseHead) {
        let (used, head) = take_head(answer, args).unwrap();
        assert_eq!(used, answer.len());
        let head = head.expect("a whole head");
        (String::from_utf8(head.head.clone()).unwrap(), head)
    }

    #[test]
    fn hop_by_hop_and_connection_listed_fields_are_stripped() {
        let answer =
            b"HTTP/1.1 200 OK\r\nConnection: X-Node, keep-alive\r\nX-Node: 1\r\nKeep-Alive: timeout=5\r\n\
            Proxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTrailer: X-T\r\nContent-Type: application/json\r\n\
            Content-Length: 2\r\n\r\n{}";
        let (head, parsed) = client_head(answer, &args(None));
        assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
        assert_eq!(parsed.status, StatusCode::OK);
        assert!(parsed.reusable && !parsed.close_client && !parsed.overrun);
        assert_eq!(parsed.first_body, 2);
        assert!(parsed.framing.done());
    }

    #[test]
    fn a_chunked_body_keeps_its_framing_and_loses_a_content_length_beside_it() {
        let answer =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        let (head, parsed) = client_head(answer, &args(None));
        assert_eq!(head, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
        assert!(!parsed.reusable, "both framings at once: the node's connection closes");
        assert!(parsed.framing.done());
    }

    #[test]
    fn the_affinity_cookie_is_added_unless_the_node_sets_it() {
        let wanted = args(Some(&COOKIE));
        let (head, _) = client_head(b"HTTP/1.1 204 No Content\r\nSet-Cookie: a=1\r\n\r\n", &wanted);
        assert_eq!(
            head,
            "HTTP/1.1 204 No Content\r\nSet-Cookie: a=1\r\nset-cookie: amlbcookie=01; Path=/; HttpOnly; SameSite=Lax\r\n\r\n"
        );
        let (head, _) = client_head(b"HTTP/1.1 204 No Content\r\n\r\n", &args(None));
        assert_eq!(head, "HTTP/1.1 204 No Content\r\n\r\n", "not wanted: not added");
        let own = b"HTTP/1.1 204 No Content\r\nSet-Cookie: amlbcookie=03; Path=/\r\n\r\n";
        let (head, _) = client_head(own, &wanted);
        assert_eq!(head, "HTTP/1.1 204 No Content\r\nSet-Cookie: amlbcookie=03; Path=/\r\n\r\n");
        let other = b"HTTP/1.1 204 No Content\r\nSet-Cookie: amlbcookie2=03\r\n\r\n";
        let (head, _) = client_head(other, &wanted);
        assert!(
            head.ends_with("set-cookie: amlbcookie=01; Path=/; HttpOnly; SameSite=Lax\r\n\r\n"),
            "{head}"
        );
    }

    #[test]
    fn interim_heads_are_skipped_and_a_body_to_the_close_closes_the_client() {
        let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
            HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello";
        let (head, parsed) = client_head(answer, &AnswerArgs { close: false, ..args(None) });
        assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nconnection: close\r\n\r\nhello");
        assert!(parsed.close_client && !parsed.reusable);
        assert_eq!(parsed.framing, Framing::UntilClose);
        let (used, none) = take_head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", &args(None)).unwrap();
        assert_eq!(used, b"HTTP/1.1 100 Continue\r\n\r\n".len());
        assert!(none.is_none());
    }

    #[test]
    fn a_head_answer_has_no_body_and_extra_bytes_are_an_overrun() {
        let head_only = AnswerArgs { head_only: true, ..args(None) };
        let (_, parsed) = client_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", &head_only);
        assert_eq!(parsed.framing, Framing::Empty);
        let (head, parsed) =
            client_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1", &args(None));
        assert!(head.ends_with("\r\n\r\nok"));
        assert!(parsed.overrun);
    }

    #[test]
    fn malformed_heads_are_errors() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTX/1.1 200 OK\r\n\r\n",
        ] {
            assert!(take_head(bad, &args(None)).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let same = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok";
        assert!(take_head(same, &args(None)).is_ok(), "repeated equal lengths are one length");
    }

    #[test]
    fn synthetic_answers_are_am_shaped() {
        let (out, len) = synthetic(StatusCode::SERVICE_UNAVAILABLE, "no node", None, (true, false));
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            head,
            format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json;charset=UTF-8\r\n\
                 cache-control: no-store\r\nx-content-type-options: nosniff\r\nx-frame-options: SAMEORIGIN\r\n\
                 content-length: {len}\r\nconnection: close"
            )
        );
        assert_eq!(body, crest::error_body(StatusCode::SERVICE_UNAVAILABLE, "no node"));
        let (out, _) = synthetic(StatusCode::NOT_FOUND, "x", None, (false, true));
        assert!(out.ends_with(b"\r\n\r\n"), "HEAD: no body");
        let (out, _) = synthetic(StatusCode::SERVICE_UNAVAILABLE, "queued", Some(1), (false, false));
        let text = String::from_utf8(out).unwrap();
        let head = text.split_once("\r\n\r\n").unwrap().0;
        assert!(head.ends_with("\r\nretry-after: 1"), "{head}");
    }
}
