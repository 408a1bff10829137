//! The request head on the fast path, pure: parse it, decide whether the fast path serves it or hyper
//! does, read what routing and affinity need, and render the head the node gets as bytes.
//!
//! The fast path serves keep-alive HTTP/1.1 requests, with or without a body. It refuses itself, with
//! 400 and a closed connection, what [`strictness`](crate::proxy::strictness) refuses (a missing,
//! repeated or malformed `Host`, `Content-Length` with `Transfer-Encoding`, codings other than one
//! `chunked`, a repeated or malformed `Content-Length`), whatever else the request has, before it
//! decides whether hyper gets it. Bodies come in two kinds ([`Upload`]):
//!
//! - a JSON body of known size at most [`PEEK_LIMIT`] (every step of an AM login) is read with the head
//!   and parsed in place for the `authId` hint; its bytes follow the forwarded head in the one buffer
//!   written to the node, so it costs one copy and can be sent again on failover, as on hyper's path;
//! - any other body (larger, not JSON, or `Transfer-Encoding: chunked`) is relayed after the head with
//!   the framing it came with ([`super::framing`]), and is never sent twice.
//!
//! Anything else goes to hyper with the bytes already read, once its fields passed the same screen:
//! `Expect`, `Upgrade`, HTTP/1.0, an absolute or `*` target, more than [`MAX_FIELDS`] fields (screened
//! with hyper's own limit first); and, unscreened, the h2c preface, a head larger than [`MAX_HEAD`], or
//! anything `httparse` refuses (hyper's `httparse` refuses it too: obs-fold, NUL or a bare CR in a
//! field, a space before the colon).

use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};

use http::{Method, Version};

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
/// hyper's own limit on request fields: a head with more is screened with this many before hyper
/// gets it.
const HYPER_MAX_FIELDS: usize = 100;

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
    /// A request refused with 400 ([`Framing::refused`]): answered and closed, never forwarded.
    fn refused(head_len: usize, method: Method, reason: &'static str) -> Self {
        Self {
            head_len,
            method,
            action: None,
            hints: Hints::default(),
            forward: Vec::new(),
            upload: Upload::None,
            close: true,
            refused: Some(reason),
            seen: None,
        }
    }

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
            Err(httparse::Error::TooManyHeaders) => return many_fields(buf),
            Err(_) => return Parse::Handoff,
        };
        let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
            return Parse::Handoff;
        };
        let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Parse::Handoff };
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
        let Screened { host, host_field, connection, body } = match screen(fields, &method, minor, target) {
            Screen::Serve(s) => s,
            Screen::Handoff => return Parse::Handoff,
            Screen::Refuse(reason) => {
                let request_id = log.then(|| headers::RequestId::Made(headers::new_request_id()).to_text());
                let seen = seen(None, request_id.unwrap_or_default());
                return Parse::Ready(Request { seen, ..Request::refused(head_len, method, reason) });
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

/// A head with more fields than the fast path parses: screened with hyper's own field limit before
/// hyper gets it, so a refused shape is refused here whatever the field count.
#[cold]
fn many_fields(buf: &[u8]) -> Parse {
    let mut fields = vec![httparse::EMPTY_HEADER; HYPER_MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let (Ok(httparse::Status::Complete(head_len)), Some(minor), Some(target)) =
        (req.parse(buf), req.version, req.path)
    else {
        return Parse::Handoff;
    };
    let Ok(method) = Method::from_bytes(req.method.unwrap_or_default().as_bytes()) else {
        return Parse::Handoff;
    };
    match screen(req.headers, &method, minor, target) {
        Screen::Refuse(reason) => Parse::Ready(Request::refused(head_len, method, reason)),
        Screen::Serve(_) | Screen::Handoff => Parse::Handoff,
    }
}

/// The version of an HTTP/1.x request line, as [`Framing`] takes it.
fn version(minor: u8) -> Version {
    if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 }
}

/// Screens a request's fields: refused, handed to hyper, or served here. `minor`: the request line's
/// HTTP/1 minor version; `target`: its request target. Refusals come first, so nothing refused is
/// handed to hyper either.
pub(super) fn screen<'a>(
    fields: &[httparse::Header<'a>],
    method: &Method,
    minor: u8,
    target: &'a str,
) -> Screen<'a> {
    let mut host = None;
    let mut framing = Framing::new(version(minor));
    framing.method(method);
    // The fast path serves HTTP/1.1 in origin form; hyper the rest, once the fields passed.
    let mut handoff = minor != 1 || !target.starts_with('/');
    if !target.starts_with('/')
        && let Ok(uri) = target.parse::<http::Uri>()
        && let Some(authority) = uri.authority()
    {
        let port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) { 443 } else { 80 };
        // The authority's text, borrowed from the target itself.
        let start = target.find(authority.as_str()).unwrap_or(0);
        framing.authority(&target.as_bytes()[start..start + authority.as_str().len()], port);
    }
    let mut connection = Connection::default();
    let (mut length, mut chunked, mut json) = (None, false, false);
    for f in fields {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            framing.host(f.value);
            host = Some(f.value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            framing.content_length(f.value);
            // Digits only (anything else is refused below); a length past u64 is hyper's to refuse.
            length = std::str::from_utf8(f.value.trim_ascii()).ok().and_then(|v| v.parse::<u64>().ok());
            handoff |= length.is_none();
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // One `chunked` is relayed here; any other coding list is refused (RFC 9112 §6.1).
            chunked = framing.transfer_encoding(f.value);
        } else if name.eq_ignore_ascii_case(b"content-type") {
            json = headers::is_json_type(f.value);
        } else if name.eq_ignore_ascii_case(b"expect") || name.eq_ignore_ascii_case(b"upgrade") {
            handoff = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection.add(f.value);
        } else {
            framing.name(name);
        }
    }
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
mod tests;
