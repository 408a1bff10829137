//! Property tests (proptest, in place of a nightly-only cargo-fuzz target) for everything that decodes
//! client input on the request path: AM tokens, `authId` JWS payloads, sealed journey state, cookies and
//! query strings; and the chunked-body scanner of the HTTP/1.1 fast path, which reads node output. Any
//! input yields an answer or "no hint", never a panic; well-formed tokens round-trip.
//! Each property runs a few hundred generated cases per `cargo test`, a bounded fuzz run.

mod support;

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

/// How the `ext` names the node: a server in a site (`S1` the node, `SI` the site), a server outside a
/// site as AM writes it (`S1` empty, `SI` the node), or `SI` alone.
#[derive(Debug, Clone, Copy)]
enum Naming {
    InSite,
    EmptyS1,
    SiOnly,
}

/// How a token is written and carried, applied in order to AM's native layout.
#[derive(Debug, Clone, Copy)]
enum Wrap {
    /// `SessionID.c66EncodeSidString`.
    C66,
    /// A `shandle:` session handle.
    Handle,
    /// `java.net.URLEncoder`, as `com.iplanet.am.cookie.encode` applies it (`*` stays).
    JavaUrlEncode,
    /// Everything but alphanumerics as `%XX` (`*` too: `%2A`).
    EncodeAll,
    /// Double quotes around.
    Quote,
    /// Spaces around.
    Spaces,
}

/// Java `writeUTF` pairs, standard padded base64: the test's own encoder, not tether's.
fn ext_of(pairs: &[(String, String)]) -> String {
    support::am_token::ext(pairs)
}

fn wrap(token: String, how: Wrap) -> String {
    let encode = |keep: &dyn Fn(u8) -> bool| {
        token.bytes().map(|b| if keep(b) { char::from(b).to_string() } else { format!("%{b:02X}") }).collect()
    };
    match how {
        Wrap::C66 => support::am_token::c66(&token),
        Wrap::Handle => format!("shandle:{token}"),
        Wrap::JavaUrlEncode => encode(&|b| b.is_ascii_alphanumeric() || b".-*_".contains(&b)),
        Wrap::EncodeAll => encode(&|b| b.is_ascii_alphanumeric()),
        Wrap::Quote => format!("\"{token}\""),
        Wrap::Spaces => format!("  {token} "),
    }
}

/// A transport wrapping as clients produce them: c66 or native, maybe a handle, maybe percent-encoded
/// (once or twice), maybe quoted or padded, in an order that keeps the token a token (a handle prefix
/// before encoding, quotes outside or inside the encoding).
fn wraps() -> impl Strategy<Value = Vec<Wrap>> {
    let c66 = prop_oneof![Just(None), Just(Some(Wrap::C66))];
    let handle = prop_oneof![Just(None), Just(Some(Wrap::Handle))];
    let inner = prop_oneof![Just(None), Just(Some(Wrap::Quote)), Just(Some(Wrap::Spaces))];
    let encode =
        proptest::collection::vec(prop_oneof![Just(Wrap::JavaUrlEncode), Just(Wrap::EncodeAll)], 0..=2);
    let outer = prop_oneof![Just(None), Just(Some(Wrap::Quote)), Just(Some(Wrap::Spaces))];
    (c66, handle, inner, encode, outer).prop_map(|(c66, handle, inner, encode, outer)| {
        // Quotes inside an encoding and outside it at once are not a form anyone sends.
        let inner = if encode.is_empty() { None } else { inner };
        c66.into_iter().chain(handle).chain(inner).chain(encode).chain(outer).collect()
    })
}

/// The pairs of an `ext` naming `node`, with other keys (`SK`, `type`, random ones), in random order.
fn pairs_naming(node: String) -> impl Strategy<Value = (Naming, Vec<(String, String)>)> {
    let naming = prop_oneof![Just(Naming::InSite), Just(Naming::EmptyS1), Just(Naming::SiOnly)];
    let sk = proptest::option::of("-?[0-9]{1,19}");
    let kind = proptest::option::of(prop_oneof![Just("JWT"), Just("JWT_AUTH")]);
    let others = proptest::collection::vec(("[a-z][A-Za-z0-9_]{0,7}", "[ -~]{0,20}"), 0..3);
    (naming, sk, kind, others, "[0-9]{2}").prop_flat_map(move |(naming, sk, kind, others, site)| {
        let mut pairs = match naming {
            Naming::InSite => vec![("S1".to_owned(), node.clone()), ("SI".to_owned(), site)],
            Naming::EmptyS1 => vec![("S1".to_owned(), String::new()), ("SI".to_owned(), node.clone())],
            Naming::SiOnly => vec![("SI".to_owned(), node.clone())],
        };
        pairs.extend(sk.map(|v| ("SK".to_owned(), v)));
        pairs.extend(kind.map(|v| ("type".to_owned(), v.to_owned())));
        pairs.extend(others);
        (Just(naming), Just(pairs).prop_shuffle())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_form_of_one_ext_names_the_same_node(
        (node, (naming, pairs)) in node_id().prop_flat_map(|n| (Just(n.clone()), pairs_naming(n))),
        enc_id in "(AQIC[A-Za-z0-9+/]{0,60}={0,2})?",
        tail in "[A-Za-z0-9+/=._#-]{0,60}",
        wraps in wraps(),
    ) {
        let native = format!("{enc_id}@{}#{tail}", ext_of(&pairs));
        let token = wraps.iter().fold(native, |t, &w| wrap(t, w));
        prop_assert_eq!(token::node_hint(&token), Some(node), "{:?} {:?} {}", naming, wraps, token);
    }

    #[test]
    fn wrapped_garbage_never_panics(
        s in "[A-Za-z0-9+/=_.*@#%\" :-]{0,300}",
        raw in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        if let Some(id) = token::node_hint(&s) {
            prop_assert!(token::is_valid_node_id(&id), "a hint is always a usable ID: {id:?}");
        }
        let _ = token::node_hint_bytes(&raw);
        let _ = token::decode_ext(&s);
    }

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
