//! The fast path's request head parser (`h1::request`): `httparse`, then the fast path's own screen
//! (refusals, hand-offs, body framing), routing, hints and the forwarded head. Checks:
//! - never a panic;
//! - it agrees with `httparse` on whether the head is whole (it must not take a head `httparse` calls
//!   partial or invalid, nor wait on one `httparse` calls whole);
//! - it refuses exactly what hyper's path refuses (the shared RFC 9112 rules) for the same fields;
//! - the head it forwards is one `httparse` reads back whole, with the same method and target, one
//!   `Host`, no hop-by-hop field, and the same body framing: read by a second fast path (as the node
//!   would read it) it ends where the first said and frames the rest of the body the same way, so
//!   the node and tether never disagree on where a request ends (no request smuggling).
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tether::fuzzing::{BodyFraming, Decision, hyper_refusal, request_head};
use tether::hot_path::Chunked;
use tether_fuzz::SNAPSHOT;

/// The fast path's own field limit: a head with more is screened (with hyper's limit) and handed off.
const MAX_FIELDS: usize = 64;
/// hyper's limit on request fields, which the fast path screens a larger head with.
const HYPER_FIELDS: usize = 100;

/// The fields as hyper's `HeaderMap`, or `None` when one would not convert (hyper answers 400 then).
fn header_map(fields: &[httparse::Header<'_>]) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    for f in fields {
        map.append(HeaderName::from_bytes(f.name.as_bytes()).ok()?, HeaderValue::from_bytes(f.value).ok()?);
    }
    Some(map)
}

fn is_hop_by_hop(name: &str) -> bool {
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authorization"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

fuzz_target!(|data: &[u8]| {
    let snap = &*SNAPSHOT;
    let decision = request_head(snap, data);

    let mut fields = [httparse::EMPTY_HEADER; HYPER_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let parsed = req.parse(data);
    let head_len = match (&decision, parsed) {
        (Decision::Partial, Ok(httparse::Status::Partial)) => return,
        (Decision::Partial, other) => panic!("the fast path waits on a head httparse calls {other:?}"),
        (Decision::Handoff, _) => return,
        (_, Ok(httparse::Status::Complete(n))) => n,
        (_, other) => panic!("the fast path took a head httparse calls {other:?}: {decision:?}"),
    };
    // The request as hyper would hand it over (when its line is one hyper reads the same way).
    let refusal = header_map(req.headers).and_then(|map| {
        let version = if req.version == Some(0) { http::Version::HTTP_10 } else { http::Version::HTTP_11 };
        let mut built =
            http::Request::builder().method(req.method?).uri(req.path?).version(version).body(()).ok()?;
        *built.headers_mut() = map;
        Some(hyper_refusal(&built))
    });
    let (taken, forward, body) = match decision {
        Decision::Partial | Decision::Handoff => unreachable!(),
        Decision::Peeking => return,
        Decision::Refused(reason) => {
            if let Some(hyper) = refusal {
                assert_eq!(hyper, Some(reason), "hyper's path judges these fields otherwise");
            }
            return;
        }
        Decision::Forward { taken, forward, body } => (taken, forward, body),
    };
    if let Some(hyper) = refusal {
        assert_eq!(hyper, None, "hyper's path refuses what the fast path forwards");
    }
    assert!(head_len <= taken && taken <= data.len(), "took {taken} of {} bytes", data.len());
    let peeked = &data[head_len..taken];

    // The forwarded head, as the node's parser reads it.
    let mut node_fields = [httparse::EMPTY_HEADER; HYPER_FIELDS + 8];
    let mut node = httparse::Request::new(&mut node_fields);
    let Ok(httparse::Status::Complete(node_head)) = node.parse(&forward) else {
        panic!("the forwarded head does not parse: {:?}", String::from_utf8_lossy(&forward));
    };
    assert_eq!(&forward[node_head..], peeked, "the small body follows the forwarded head");
    assert_eq!((node.method, node.path, node.version), (req.method, req.path, Some(1)));
    let hosts = node.headers.iter().filter(|f| f.name.eq_ignore_ascii_case("host")).count();
    assert_eq!(hosts, 1, "the node gets one Host");
    for f in node.headers.iter() {
        assert!(!is_hop_by_hop(f.name), "hop-by-hop {} forwarded", f.name);
        if f.name.eq_ignore_ascii_case("transfer-encoding") {
            assert_eq!(f.value, b"chunked", "only tether's own chunked is forwarded");
        }
    }

    // The node frames the body from the forwarded fields as tether relays it.
    let named = |f: &&httparse::Header<'_>, name: &str| f.name.eq_ignore_ascii_case(name);
    let lengths: Vec<&[u8]> =
        node.headers.iter().filter(|f| named(f, "content-length")).map(|f| f.value).collect();
    let chunked = node.headers.iter().filter(|f| named(f, "transfer-encoding")).count() == 1;
    assert!(lengths.len() <= 1 && (!chunked || lengths.is_empty()), "ambiguous framing forwarded");
    let length =
        lengths.first().map(|v| std::str::from_utf8(v).ok().and_then(|v| v.trim().parse::<u64>().ok()));
    let agrees = match (&body, chunked, length) {
        (BodyFraming::Chunked(c), true, None) => *c == Chunked::default(),
        (BodyFraming::Length(n), false, Some(Some(m))) => peeked.is_empty() && *n == m,
        (BodyFraming::Empty, false, None) => peeked.is_empty(),
        (BodyFraming::Empty, false, Some(Some(m))) => peeked.len() as u64 == m,
        _ => false,
    };
    assert!(agrees, "tether relays {body:?} after {} bytes, the node reads {lengths:?}", peeked.len());

    // A second fast path reading the forwarded head (as a tether in front of the node would) takes it
    // whole and frames the body the same way; unless the fields tether added take it past the fast
    // path's own field limit (the node's is higher: hyper's and Tomcat's are 100).
    match request_head(snap, &forward) {
        Decision::Forward { taken: again, body: framing, .. } => {
            assert_eq!(again, forward.len(), "the node's request ends elsewhere");
            let same = match (&body, &framing) {
                (BodyFraming::Empty, BodyFraming::Empty) => true,
                (BodyFraming::Length(a), BodyFraming::Length(b)) => a == b,
                (BodyFraming::Chunked(a), BodyFraming::Chunked(b)) => a == b,
                _ => false,
            };
            assert!(same, "tether relays the body as {body:?}, the node reads it as {framing:?}");
        }
        Decision::Handoff if node.headers.len() > MAX_FIELDS => {}
        other => {
            panic!("the forwarded head is {other:?} to the node: {:?}", String::from_utf8_lossy(&forward))
        }
    }
});
