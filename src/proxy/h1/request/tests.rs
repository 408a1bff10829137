//! Byte-level tests of the request head: served, refused, handed to hyper, forwarded.

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
    let method = Method::from_bytes(req.method.unwrap().as_bytes()).unwrap();
    match screen(req.headers, &method, req.version.unwrap(), req.path.unwrap()) {
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
        b"POST /am HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST /am HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"GET /am HTTP/1.1\r\nAccept: */*\r\n\r\n",
        b"POST /am HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST http://a/am HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET http://a/am HTTP/1.1\r\nHost: b\r\n\r\n",
    ] {
        assert!(matches!(screened(head), Err(Some(_))), "{}", String::from_utf8_lossy(head));
        let Parse::Ready(req) = parse(head) else { panic!("answered by the fast path") };
        assert!(req.refused.is_some() && req.close && req.forward.is_empty());
    }
}

#[test]
fn protocol_switches_and_other_forms_go_to_hyper() {
    for head in [
        &b"GET /am HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"[..],
        b"GET /am HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"GET http://a/am HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /am HTTP/1.0\r\n\r\n",
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
    let form = b"POST /am HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    let chunked = b"POST /am HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\nTrailer: X\r\n\r\n5\r\n";
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
