//! The request head on the fast path, pure: parse it, decide whether the fast path serves it or hyper
//! does, read what routing and affinity need, and render the head the node gets as bytes.
//!
//! The fast path serves keep-alive HTTP/1.1 requests, with or without a body. It refuses itself, with
//! 400 and a closed connection, what [`strictness`](crate::proxy::strictness) refuses (two `Host`
//! fields, `Content-Length` with `Transfer-Encoding`, a repeated or malformed `Content-Length`), whatever
//! else the request has. Bodies come in two kinds ([`Upload`]):
//!
//! - a JSON body of known size at most [`PEEK_LIMIT`] (every step of an AM login) is read with the head
//!   and parsed in place for the `authId` hint; its bytes follow the forwarded head in the one buffer
//!   written to the node, so it costs one copy and can be sent again on failover, as on hyper's path;
//! - any other body (larger, not JSON, or `Transfer-Encoding: chunked`) is relayed after the head with
//!   the framing it came with ([`super::framing`]), and is never sent twice.
//!
//! Anything else goes to hyper with the bytes already read: another `Transfer-Encoding` than a lone
//! `chunked`, `Expect`, `Upgrade`, HTTP/1.0, the h2c preface, an absolute or `*` target, no `Host`, more
//! than [`MAX_FIELDS`] fields, a head larger than [`MAX_HEAD`], or anything `httparse` refuses.

use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};

use http::Method;

use super::framing::{Chunked, Framing as BodyFraming};
use crate::config::RouteAction;
use crate::proxy::access::{self, Proto, Seen};
use crate::proxy::headers::{self, Connection, Hop};
pub use crate::proxy::hyper_path::PEEK_LIMIT;
use crate::proxy::strictness::Framing;
use crate::proxy::{Snapshot, route};
use crate::server::Addresses;
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
    /// A whole head, but not yet the whole of the small JSON body read with it.
    Peeking,
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
    /// The head to send to the node, followed by the body when it was read with the head.
    pub(super) forward: Vec<u8>,
    /// The body still to relay from the client after `forward`.
    pub(super) upload: Upload,
    /// The client asked to close after this exchange.
    pub(super) close: bool,
    /// Refused (RFC 9112): answered 400 and closed, never forwarded; the answer's message.
    pub(super) refused: Option<&'static str>,
    /// For the access line, when it is wanted (boxed: the parse outcome stays small).
    pub(super) seen: Option<Box<Seen>>,
}

/// The part of a request body relayed from the client after the forwarded head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upload {
    /// None: no body, or a small one read with the head (then inside [`Request::forward`]).
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// A `chunked` body, relayed chunk by chunk up to the end of its trailer section.
    Chunked,
}

impl Upload {
    /// How the relay finds the end of the body.
    pub(super) fn framing(self) -> BodyFraming {
        match self {
            Self::None => BodyFraming::Empty,
            Self::Length(n) => BodyFraming::Length(n),
            Self::Chunked => BodyFraming::Chunked(Chunked::default()),
        }
    }
}

impl Request {
    /// Parses the head at the start of `buf` against the snapshot's routes and pools. `log`: keep what
    /// the access line says.
    pub(super) fn parse(
        snap: &Snapshot,
        buf: &[u8],
        addrs: Addresses,
        tls: Option<&'static str>,
        log: bool,
    ) -> Parse {
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
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let proxy = &snap.config.proxy;
        let peer = addrs.ip;
        let seen = |host: Option<&[u8]>, request_id: String| {
            log.then(|| {
                let proto = Proto { http: "HTTP/1.1", tls };
                Box::new(seen(fields, path, addrs.peer(), host, &proxy.trusted_proxies, request_id, proto))
            })
        };
        let Screened { host, host_field, connection, body } = match screen(fields) {
            Screen::Serve(s) => s,
            Screen::Handoff => return Parse::Handoff,
            Screen::Refuse(reason) => {
                let request_id = log.then(|| headers::RequestId::Made(headers::new_request_id()).to_text());
                return Parse::Ready(Request {
                    head_len,
                    method,
                    action: None,
                    hints: Hints::default(),
                    forward: Vec::new(),
                    upload: Upload::None,
                    close: true,
                    refused: Some(reason),
                    seen: seen(None, request_id.unwrap_or_default()),
                });
            }
        };
        let action = route::find_by(&snap.config.routes, &method, path, Some(host)).cloned();
        // A small JSON body is read with the head, so its `authId` can name the node.
        let (peeked, upload) = match body {
            Body::Peek(n) => {
                let end = head_len.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
                let Some(peeked) = buf.get(head_len..end) else { return Parse::Peeking };
                (Some(peeked), Upload::None)
            }
            Body::Stream(upload) => (None, upload),
        };
        let hints = match action {
            Some(RouteAction::Pool(i)) => affinity::read(&snap.upstreams.pools[i], fields, query, peeked),
            _ => Hints::default(),
        };
        let hop = Hop {
            peer,
            trusted: proxy.trusted_proxies.contains(peer),
            tls: tls.is_some(),
            port: addrs.local_port,
            request_id: &proxy.request_id_header,
        };
        let chunked = upload == Upload::Chunked;
        let (mut forward, request_id) =
            forwarded_head(&method, target, fields, &connection, &hop, host_field, chunked);
        if let Some(body) = peeked {
            forward.extend_from_slice(body);
        }
        Parse::Ready(Request {
            head_len: head_len + peeked.map_or(0, <[u8]>::len),
            method,
            action,
            hints,
            forward,
            upload,
            close: connection.close,
            refused: None,
            seen: seen(Some(host_field), if log { request_id.to_text() } else { String::new() }),
        })
    }
}

/// What the access line says about a request the fast path parsed.
fn seen(
    fields: &[httparse::Header<'_>],
    path: &str,
    peer: SocketAddr,
    host: Option<&[u8]>,
    trusted: &crate::config::TrustedProxies,
    request_id: String,
    proto: Proto,
) -> Seen {
    let field = |name: &str| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)).map(|f| f.value);
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let xff = fields.iter().filter(|f| f.name.eq_ignore_ascii_case("x-forwarded-for")).map(|f| f.value);
    let forwarded = headers::forwarded_client(trusted, peer.ip(), xff);
    Seen {
        path: path.to_owned(),
        client: access::Client::of(peer, forwarded),
        host: host.or_else(|| field("host")).map(text),
        user_agent: field("user-agent").map(text),
        proto,
        request_id,
    }
}

/// What the fast path needs from the fields of a request it serves.
#[derive(Debug)]
pub(super) struct Screened<'a> {
    /// The `Host` without its port.
    pub(super) host: &'a str,
    /// The `Host` as sent (`X-Forwarded-Host`).
    pub(super) host_field: &'a [u8],
    /// The `Connection` tokens.
    pub(super) connection: Connection<'a>,
    /// How the body is forwarded.
    pub(super) body: Body,
}

/// How the fast path forwards a request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// A JSON body of this many bytes (at most [`PEEK_LIMIT`]), read with the head.
    Peek(u64),
    /// Relayed after the head (or nothing to relay).
    Stream(Upload),
}

/// The fast path's decision on a request's fields.
#[derive(Debug)]
pub(super) enum Screen<'a> {
    /// The fast path serves it.
    Serve(Screened<'a>),
    /// hyper's request (`Expect`, `Upgrade`, a coding other than `chunked`, no `Host`).
    Handoff,
    /// Refused with 400 ([`Framing::refused`]), whatever else it has.
    Refuse(&'static str),
}

/// Screens a request's fields: refused, handed to hyper, or served here.
pub(super) fn screen<'a>(fields: &[httparse::Header<'a>]) -> Screen<'a> {
    let mut host = None;
    let mut framing = Framing::default();
    let mut handoff = false;
    let mut connection = Connection::default();
    let (mut length, mut codings, mut chunked, mut json) = (None, 0, false, false);
    for f in fields {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            framing.host();
            host = Some(f.value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            framing.content_length(f.value);
            // Digits only (anything else is refused below); a length past u64 is hyper's to refuse.
            length = std::str::from_utf8(f.value.trim_ascii()).ok().and_then(|v| v.parse::<u64>().ok());
            handoff |= length.is_none();
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            framing.transfer_encoding();
            // A lone `chunked` is relayed here; any other coding list is hyper's (RFC 9112 §6.1).
            codings += 1;
            chunked = f.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"content-type") {
            json = headers::is_json_type(f.value);
        } else if name.eq_ignore_ascii_case(b"expect") || name.eq_ignore_ascii_case(b"upgrade") {
            handoff = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection.add(f.value);
        }
    }
    handoff |= codings > 1 || (codings == 1 && !chunked);
    if let Some(reason) = framing.refused() {
        return Screen::Refuse(reason);
    }
    let Some(host_field) = host.filter(|_| !handoff) else { return Screen::Handoff };
    let Ok(text) = std::str::from_utf8(host_field) else { return Screen::Handoff };
    let body = match length {
        _ if chunked => Body::Stream(Upload::Chunked),
        None | Some(0) => Body::Stream(Upload::None),
        Some(n) if json && n <= PEEK_LIMIT => Body::Peek(n),
        Some(n) => Body::Stream(Upload::Length(n)),
    };
    Screen::Serve(Screened { host: route::strip_port(text), host_field, connection, body })
}

/// The request head as the node gets it: the request line in origin form, then the fields under the
/// one header policy ([`headers::push_forwarded_fields`]), and `Transfer-Encoding: chunked` again for a
/// chunked body (relayed with its framing; the policy drops the client's field as hop-by-hop); and the
/// request ID it carries.
pub(super) fn forwarded_head<'a>(
    method: &Method,
    target: &str,
    fields: &[httparse::Header<'a>],
    connection: &Connection<'_>,
    hop: &Hop<'_>,
    host: &[u8],
    chunked: bool,
) -> (Vec<u8>, headers::RequestId<'a>) {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let id = headers::push_forwarded_fields(&mut out, fields, connection, hop, host);
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (out, id)
}

/// The request side of the fast path alone, for the `hot_path` benchmark: parses `head`, routes it,
/// reads the pool's hints and renders the head the node would get. `None` when the fast path would
/// hand the request to hyper (or needs more bytes).
pub fn forwarded_request(snap: &Snapshot, head: &[u8], client: IpAddr) -> Option<Vec<u8>> {
    let addrs = Addresses { ip: client, port: 40000, local_port: 80 };
    match Request::parse(snap, head, addrs, None, false) {
        Parse::Ready(req) => Some(req.forward),
        Parse::Partial | Parse::Peeking | Parse::Handoff => None,
    }
}

/// What the fast path decides on a request head, for the fuzz targets (`fuzz/`): everything a
/// differential check needs to compare it with `httparse`, hyper's refusals and the node's view.
#[derive(Debug)]
pub enum Decision {
    /// Not a whole head yet.
    Partial,
    /// A whole head, but not yet the whole small JSON body read with it.
    Peeking,
    /// hyper's request.
    Handoff,
    /// Refused with 400 (RFC 9112); the answer's message.
    Refused(&'static str),
    /// Forwarded to a node.
    Forward {
        /// Bytes of the client's request taken (head, and a small JSON body read with it).
        taken: usize,
        /// The head the node gets, followed by that small body.
        forward: Vec<u8>,
        /// How the rest of the body is relayed from the client.
        body: BodyFraming,
    },
}

/// [`Request::parse`] of `head` from a fixed client, reduced to a [`Decision`]; with the access line's
/// fields read too, so the fuzz targets reach that code.
pub fn decide(snap: &Snapshot, head: &[u8]) -> Decision {
    let addrs = Addresses { ip: IpAddr::from([192, 0, 2, 10]), port: 40000, local_port: 80 };
    match Request::parse(snap, head, addrs, None, true) {
        Parse::Ready(Request { refused: Some(reason), .. }) => Decision::Refused(reason),
        Parse::Ready(req) => {
            Decision::Forward { taken: req.head_len, forward: req.forward, body: req.upload.framing() }
        }
        Parse::Partial => Decision::Partial,
        Parse::Peeking => Decision::Peeking,
        Parse::Handoff => Decision::Handoff,
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
        let addrs = Addresses::new("192.0.2.10:40000".parse().unwrap(), 8080);
        Request::parse(&snapshot(), head, addrs, None, true)
    }

    /// The fields of `head` as the fast path screens them (`Err(None)`: hyper's request, `Err(Some)`:
    /// refused).
    fn screened(head: &[u8]) -> Result<(String, bool), Option<&'static str>> {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut fields);
        assert!(req.parse(head).unwrap().is_complete());
        match screen(req.headers) {
            Screen::Serve(s) => Ok((s.host.to_owned(), s.connection.close)),
            Screen::Handoff => Err(None),
            Screen::Refuse(reason) => Err(Some(reason)),
        }
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
        let seen = req.seen.as_ref().unwrap();
        assert_eq!(seen.path, "/am/json/sessions");
        assert_eq!(seen.client.to_string(), "192.0.2.10:40000");
        assert_eq!(seen.host.as_deref(), Some("login.example:8080"));
        assert_eq!(seen.proto.to_string(), "HTTP/1.1");
        let id = seen.request_id.clone();
        assert_eq!(id.len(), 32, "a new request ID: {id}");
        assert_eq!(
            String::from_utf8(req.forward).unwrap(),
            format!(
                "GET /am/json/sessions?_action=validate HTTP/1.1\r\nHost: login.example:8080\r\n\
             Cookie: amlbcookie=02\r\nx-forwarded-for: 192.0.2.10\r\nx-forwarded-proto: http\r\n\
             x-forwarded-port: 8080\r\nx-forwarded-host: login.example:8080\r\n\
             x-forgerock-transactionid: {id}\r\n\r\n"
            )
        );
    }

    #[test]
    fn smuggling_shapes_are_refused_here() {
        for head in [
            &b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST /am HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 7\r\n\r\n",
            b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
            b"GET /am HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /am HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nHost: a\r\n\r\n",
        ] {
            assert!(matches!(screened(head), Err(Some(_))), "{}", String::from_utf8_lossy(head));
            let Parse::Ready(req) = parse(head) else { panic!("answered by the fast path") };
            assert!(req.refused.is_some() && req.close && req.forward.is_empty());
        }
    }

    #[test]
    fn protocol_switches_and_other_codings_go_to_hyper() {
        for head in [
            &b"GET /am HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"[..],
            b"GET /am HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"POST /am HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST /am HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"GET /am HTTP/1.1\r\nAccept: */*\r\n\r\n",
        ] {
            assert_eq!(screened(head), Err(None), "{}", String::from_utf8_lossy(head));
        }
        let empty = b"POST /am HTTP/1.1\r\nHost: a:1\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(screened(empty), Ok(("a".to_owned(), false)));
    }

    /// An AM continuation step: `{"authId": "<JWS>", ...}` whose JWS payload names node 02.
    fn continuation() -> (Vec<u8>, Vec<u8>) {
        use base64::Engine as _;
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = crate::am::token::mint_token(&ring::rand::SystemRandom::new(), "02");
        let payload = b64(serde_json::json!({ "sessionId": token }).to_string().as_bytes());
        let body = format!(r#"{{"authId":"{}.{payload}.c2ln","callbacks":[]}}"#, b64(b"{}"));
        let head = format!(
            "POST /am/json/authenticate HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        (head.into_bytes(), body.into_bytes())
    }

    #[test]
    fn a_small_json_body_is_read_with_the_head_and_names_the_node() {
        let (head, body) = continuation();
        let mut whole = [&head[..], &body[..], b"GET /next"].concat();
        let Parse::Ready(req) = parse(&whole) else { panic!("served by the fast path") };
        assert_eq!(req.head_len, head.len() + body.len(), "the body is consumed with the head");
        assert_eq!(req.upload, Upload::None);
        assert_eq!(req.hints.pinned.map(|(i, _)| i), Some(1), "the authId names 02");
        assert!(req.forward.ends_with(&body), "the body follows the forwarded head");
        assert!(req.forward.starts_with(b"POST /am/json/authenticate HTTP/1.1\r\n"));
        // Not all of the body yet: the fast path reads on.
        whole.truncate(head.len() + body.len() - 1);
        assert!(matches!(parse(&whole), Parse::Peeking));
        assert!(matches!(parse(&head), Parse::Peeking));
    }

    #[test]
    fn other_bodies_are_relayed_after_the_head_with_their_framing() {
        let big = format!(
            "POST /am HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            PEEK_LIMIT + 1
        );
        let form =
            b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
        let chunked =
            b"POST /am HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\nTrailer: X\r\n\r\n5\r\n";
        for (head, upload) in [
            (big.as_bytes(), Upload::Length(PEEK_LIMIT + 1)),
            (&form[..], Upload::Length(5)),
            (&chunked[..], Upload::Chunked),
        ] {
            let Parse::Ready(req) = parse(head) else { panic!("{}", String::from_utf8_lossy(head)) };
            assert_eq!(req.upload, upload);
            assert!(req.forward.ends_with(b"\r\n\r\n"), "the head alone is forwarded first");
            assert!(head.len() > req.head_len || head.ends_with(b"\r\n\r\n"));
        }
        let Parse::Ready(req) = parse(chunked) else { unreachable!() };
        let forward = String::from_utf8(req.forward).unwrap();
        assert!(forward.ends_with("transfer-encoding: chunked\r\n\r\n"), "{forward}");
        assert!(!forward.contains("Chunked") && !forward.contains("Trailer"), "{forward}");
    }

    /// Found by the `request_head` fuzz target: `Connection: content-length` made the fast path drop
    /// the field from the forwarded head while it still relayed the body it framed, so the node read
    /// that body as the next request (smuggling). `Connection: host` left the node without a `Host`.
    #[test]
    fn connection_cannot_strip_the_fields_that_frame_and_route_a_request() {
        let head = b"POST /am HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, host, x-hop\r\n\
            X-Hop: 1\r\nContent-Length: 5\r\n\r\nhello";
        let Parse::Ready(req) = parse(head) else { panic!("served by the fast path") };
        assert_eq!(req.upload, Upload::Length(5));
        let forward = String::from_utf8(req.forward).unwrap();
        assert!(forward.contains("\r\nContent-Length: 5\r\n"), "{forward}");
        assert!(forward.contains("\r\nHost: a\r\n"), "{forward}");
        assert!(!forward.contains("X-Hop"), "{forward}");
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
