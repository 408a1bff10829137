//! Property tests (proptest, in place of a nightly-only cargo-fuzz target) for everything that decodes
//! client input on the request path: AM tokens, `authId` JWS payloads, sealed journey state, cookies and
//! query strings; and the chunked-body scanner of the HTTP/1.1 fast path, which reads node output. Any
//! input yields an answer or "no hint", never a panic; well-formed tokens round-trip.
//! Each property runs a few hundred generated cases per `cargo test`, a bounded fuzz run.

use proptest::prelude::*;
use tether::am::token;
use tether::hot_path::Chunked;

/// Node IDs the config accepts.
fn node_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,16}"
}

/// Strings shaped like AM tokens: separators and base64 characters, where decoders branch most.
fn token_like() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+/=_.*@#-]{0,200}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn token_decoding_never_panics(s in any::<String>()) {
        let _ = token::node_hint(&s);
        let _ = token::decode_ext(&s);
        let _ = token::auth_id_node_hint(&s);
    }

    #[test]
    fn token_shaped_garbage_never_panics(s in token_like()) {
        if let Some(id) = token::node_hint(&s) {
            prop_assert!(token::is_valid_node_id(&id), "a hint is always a usable ID: {id:?}");
        }
        let _ = token::auth_id_node_hint(&s);
    }

    #[test]
    fn minted_tokens_name_their_node_in_both_forms(id in node_id()) {
        let rng = ring::rand::SystemRandom::new();
        let t = token::mint_token(&rng, &id);
        prop_assert_eq!(token::node_hint(&t), Some(id.clone()));
        // The plain (not URL-safe) form AM also accepts.
        let mut plain = t.replace('-', "+").replace('_', "/").replace('.', "=");
        if let Some(first) = plain.find('*') {
            plain.replace_range(first..=first, "@");
        }
        if let Some(last) = plain.rfind('*') {
            plain.replace_range(last..=last, "#");
        }
        prop_assert_eq!(token::node_hint(&plain), Some(id));
    }

    #[test]
    fn truncated_tokens_give_no_hint_or_the_right_one(id in node_id(), cut in 0usize..200) {
        let rng = ring::rand::SystemRandom::new();
        let t = token::mint_token(&rng, &id);
        let cut = cut.min(t.len());
        if let Some(hint) = token::node_hint(&t[..cut]) {
            prop_assert_eq!(hint, id);
        }
    }

    #[test]
    fn jws_verification_never_panics_and_rejects_tampering(payload in any::<String>(), flip in any::<usize>()) {
        let keys = token::Keys::derive(b"property test secret");
        let claims = serde_json::json!({"sessionId": payload});
        let jws = token::sign_hs256(keys.signing(), &claims).unwrap();
        let ok: serde_json::Value = token::verify_hs256(keys.signing(), &jws).unwrap();
        prop_assert_eq!(&ok, &claims);
        let mut bytes = jws.into_bytes();
        let i = flip % bytes.len();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        // A flip in the unused low bits of a base64 character decodes to the same bytes; anything else
        // must be refused.
        if let Ok(v) = token::verify_hs256::<serde_json::Value>(keys.signing(), &tampered) {
            prop_assert_eq!(v, claims, "a tampered authId verified with other claims");
        }
    }

    #[test]
    fn sealed_state_never_panics_on_garbage(s in token_like()) {
        let keys = token::Keys::derive(b"property test secret");
        prop_assert!(keys.open(&s).is_err());
    }

    #[test]
    fn cookie_and_query_parsing_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..300), q in any::<String>()) {
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_bytes(&raw) {
            headers.append(http::header::COOKIE, v);
        }
        let _: Vec<&[u8]> = tether::am::request::cookie_values(&headers, b"amlbcookie").collect();
        let _ = tether::am::request::query_param(&q, "tokenId");
    }

    #[test]
    fn the_chunk_scanner_never_panics_on_garbage(raw in proptest::collection::vec(any::<u8>(), 0..400), step in 1usize..64) {
        let mut scan = Chunked::default();
        for piece in raw.chunks(step) {
            match scan.feed(piece) {
                Ok(n) => prop_assert!(n <= piece.len()),
                Err(_) => break,
            }
        }
    }

    #[test]
    fn the_chunk_scanner_ends_exactly_at_the_end_of_any_chunked_body(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..8),
        trailers in proptest::collection::vec("[a-z]{1,8}: [ -~]{0,20}", 0..3),
        upper in any::<bool>(),
        step in 1usize..97,
    ) {
        let mut body = Vec::new();
        for c in &chunks {
            let size = if upper { format!("{:X}", c.len()) } else { format!("{:x}", c.len()) };
            body.extend_from_slice(size.as_bytes());
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(c);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        for t in &trailers {
            body.extend_from_slice(t.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        let end = body.len();
        body.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let mut scan = Chunked::default();
        let mut taken = 0;
        for piece in body.chunks(step) {
            let n = scan.feed(piece).expect("a well-formed body");
            taken += n;
            if scan.done() {
                break;
            }
            prop_assert_eq!(n, piece.len(), "an unfinished body takes everything it is given");
        }
        prop_assert!(scan.done());
        prop_assert_eq!(taken, end);
    }
}
