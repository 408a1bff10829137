//! The request head on the fast path, pure: parse it, decide whether the fast path serves it or hyper
//! does, read what routing and affinity need, and render the head the node gets as bytes.
//!
//! The fast path serves plain keep-alive HTTP/1.1 requests without a body. Anything else goes to hyper
//! with the bytes already read: a request with a body (a `Content-Length` other than `0`, any
//! `Transfer-Encoding`, so also both at once: RFC 9112 §6.1's smuggling shape is hyper's to judge),
//! `Expect`, `Upgrade`, HTTP/1.0, the h2c preface, an absolute or `*` target, a missing or repeated
//! `Host`, more than [`MAX_FIELDS`] fields, a head larger than [`MAX_HEAD`], or anything `httparse`
//! refuses. So the fast path never answers a protocol error itself.

use std::mem::MaybeUninit;
use std::net::IpAddr;

use http::Method;

use crate::config::RouteAction;
use crate::proxy::headers::{self, Connection};
use crate::proxy::{Snapshot, route};
use crate::upstream::affinity::{self, Hints};

/// Largest request head the fast path reads; a larger one goes to hyper, which has its own limits.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most request fields parsed here (hyper takes requests with more).
pub const MAX_FIELDS: usize = 64;

/// What the fast path made of one request head.
pub(super) enum Parse {
    /// A whole head the fast path serves.
    Ready(Request),
    /// Not a whole head yet.
    Partial,
    /// hyper's request.
    Handoff,
}

/// A request head, decided: everything later steps need, owned, so the read buffer is free again.
pub(super) struct Request {
    /// Bytes of the head in the read buffer.
    pub(super) head_len: usize,
    pub(super) method: Method,
    /// The route's action; `None` when no route matched.
    pub(super) action: Option<RouteAction>,
    /// The pool's hints, when a pool serves it.
    pub(super) hints: Hints,
    /// The head to send to the node.
    pub(super) forward: Vec<u8>,
    /// The client asked to close after this exchange.
    pub(super) close: bool,
    /// For the access line, when it is wanted.
    pub(super) path: Option<String>,
}

impl Request {
    /// Parses the head at the start of `buf` against the snapshot's routes and pools. `log`: keep the
    /// path for the access line.
    pub(super) fn parse(snap: &Snapshot, buf: &[u8], ip: IpAddr, log: bool) -> Parse {
        if buf.is_empty() {
            return Parse::Partial;
        }
        // Uninitialised: the parser writes the fields it finds (no 2 KiB of zeroes per request).
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut []);
        let head_len = match req.parse_with_uninit_headers(buf, &mut fields) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parse::Partial,
            Err(_) => return Parse::Handoff,
        };
        let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
            return Parse::Handoff;
        };
        let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Parse::Handoff };
        if !target.starts_with('/') {
            return Parse::Handoff;
        }
        let fields: &[httparse::Header<'_>] = req.headers;
        let Some(Screened { host, connection }) = screen(fields) else { return Parse::Handoff };
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let action = route::find_by(&snap.config.routes, &method, path, Some(host)).cloned();
        let hints = match action {
            Some(RouteAction::Pool(i)) => affinity::read(&snap.upstreams.pools[i], fields, query, None),
            _ => Hints::default(),
        };
        let forward = forwarded_head(&method, target, fields, &connection, ip, host);
        Parse::Ready(Request {
            head_len,
            method,
            action,
            hints,
            forward,
            close: connection.close,
            path: log.then(|| path.to_owned()),
        })
    }
}

/// What the fast path needs from the fields of a request it serves.
#[derive(Debug)]
pub(super) struct Screened<'a> {
    /// The `Host` without its port.
    pub(super) host: &'a str,
    /// The `Connection` tokens.
    pub(super) connection: Connection<'a>,
}

/// The fast path's decision on a request's fields: `None` hands the request to hyper (a body, `Expect`,
/// `Upgrade`, no `Host` or two).
pub(super) fn screen<'a>(fields: &[httparse::Header<'a>]) -> Option<Screened<'a>> {
    let mut host = None;
    let mut connection = Connection::default();
    for f in fields {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            if host.replace(f.value).is_some() {
                return None;
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if f.value.trim_ascii() != b"0" {
                return None;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return None;
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection.add(f.value);
        }
    }
    let host = route::strip_port(std::str::from_utf8(host?).ok()?);
    Some(Screened { host, connection })
}

/// The request head as the node gets it: the request line in origin form, then the fields under the
/// one header policy ([`headers::push_forwarded_fields`]).
pub(super) fn forwarded_head(
    method: &Method,
    target: &str,
    fields: &[httparse::Header<'_>],
    connection: &Connection<'_>,
    ip: IpAddr,
    host: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    headers::push_forwarded_fields(&mut out, fields, connection, ip, host);
    out.extend_from_slice(b"\r\n");
    out
}

/// The request side of the fast path alone, for the `hot_path` benchmark: parses `head`, routes it,
/// reads the pool's hints and renders the head the node would get. `None` when the fast path would
/// hand the request to hyper (or needs more bytes).
pub fn forwarded_request(snap: &Snapshot, head: &[u8], client: IpAddr) -> Option<Vec<u8>> {
    match Request::parse(snap, head, client, false) {
        Parse::Ready(req) => Some(req.forward),
        Parse::Partial | Parse::Handoff => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn snapshot() -> Snapshot {
        let config = crate::config::parse(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[[pool]]\nname = \"a\"\n\
             [[pool.backend]]\nid = \"01\"\nurl = \"http://127.0.0.1:1\"\n\
             [[pool.backend]]\nid = \"02\"\nurl = \"http://127.0.0.1:2\"\n[[route]]\npool = \"a\"\n",
        )
        .unwrap();
        Snapshot::build(Arc::new(config), &Default::default(), &Default::default())
    }

    fn parse(head: &[u8]) -> Parse {
        Request::parse(&snapshot(), head, "192.0.2.10".parse().unwrap(), true)
    }

    /// The fields of `head` as the fast path screens them (`None`: hyper's request).
    fn screened(head: &[u8]) -> Option<(String, bool)> {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut fields);
        assert!(req.parse(head).unwrap().is_complete());
        screen(req.headers).map(|s| (s.host.to_owned(), s.connection.close))
    }

    #[test]
    fn a_plain_request_is_served_and_forwarded_under_the_header_policy() {
        let head = b"GET /am/json/sessions?_action=validate HTTP/1.1\r\nHost: login.example:8080\r\n\
            Connection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
            Cookie: amlbcookie=02\r\nX-Forwarded-For: 203.0.113.1\r\nX-Forwarded-Proto: https\r\n\
            X-Forwarded-Host: evil.example\r\n\r\nGET /next";
        let Parse::Ready(req) = parse(head) else { panic!("served by the fast path") };
        assert_eq!(req.head_len, head.len() - b"GET /next".len());
        assert_eq!(req.method, Method::GET);
        assert_eq!(req.action, Some(RouteAction::Pool(0)));
        assert_eq!(req.hints.cookie, Some(1), "the cookie names 02");
        assert!(req.close);
        assert_eq!(req.path.as_deref(), Some("/am/json/sessions"));
        assert_eq!(
            String::from_utf8(req.forward).unwrap(),
            "GET /am/json/sessions?_action=validate HTTP/1.1\r\nHost: login.example:8080\r\n\
             Cookie: amlbcookie=02\r\nx-forwarded-for: 203.0.113.1, 192.0.2.10\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: login.example\r\n\r\n"
        );
    }

    #[test]
    fn bodies_and_protocol_switches_go_to_hyper() {
        let both = b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(screened(both).is_none(), "Content-Length with Transfer-Encoding");
        let both_empty =
            b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(screened(both_empty).is_none(), "Transfer-Encoding beside an empty Content-Length");
        let twice = b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
        assert!(screened(twice).is_none(), "duplicate Content-Length");
        let differ = b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 7\r\n\r\n";
        assert!(screened(differ).is_none(), "conflicting Content-Length");
        for head in [
            &b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n"[..],
            b"GET /am HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            b"GET /am HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET /am HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /am HTTP/1.1\r\nAccept: */*\r\n\r\n",
        ] {
            assert!(screened(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
        let empty = b"POST /am HTTP/1.1\r\nHost: a:1\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(screened(empty), Some(("a".to_owned(), false)));
    }

    #[test]
    fn request_lines_the_fast_path_does_not_serve_go_to_hyper() {
        for head in [
            &b"GET /am HTTP/1.0\r\nHost: a\r\n\r\n"[..],
            b"GET http://a/am HTTP/1.1\r\nHost: a\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /am HTTP/1.1\r\nBad Field: 1\r\n\r\n",
        ] {
            assert!(matches!(parse(head), Parse::Handoff), "{}", String::from_utf8_lossy(head));
        }
        assert!(matches!(parse(b"GET /am HTTP/1.1\r\nHost: a\r\n"), Parse::Partial));
        assert!(matches!(parse(b""), Parse::Partial));
    }
}
