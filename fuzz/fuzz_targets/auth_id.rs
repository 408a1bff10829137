//! The `authId` JWS (RFC 7515 compact, HS256): verified by the auth node, peeked at unverified by the
//! proxy for its `sessionId` hint. Checks: never a panic on any input; a JWS signed over claims taken
//! from the input verifies to those claims, and its peeked hint is the hint of its `sessionId`; a
//! change to any one character of it is refused.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tether::am::token::{self, Keys};

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::derive(b"the fuzz targets' shared secret, 128 bits+"));

fuzz_target!(|data: &[u8]| {
    let key = KEYS.signing();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = token::verify_hs256::<Value>(key, text);
    let _ = token::auth_id_node_hint(text);

    let (session_id, otk) = text.split_once('\n').unwrap_or((text, ""));
    let claims = json!({"otk": otk, "realm": "/", "sessionId": session_id, "exp": 1_796_000_000u64});
    let jws = token::sign_hs256(key, &claims).expect("JSON claims serialize");
    assert_eq!(token::verify_hs256::<Value>(key, &jws).as_ref(), Ok(&claims));
    if jws.len() <= token::MAX_AUTH_ID_HINT_LEN {
        assert_eq!(token::auth_id_node_hint(&jws), token::node_hint(session_id));
    }
    if let Some(&at) = data.first() {
        let mut tampered = jws.into_bytes();
        let i = usize::from(at) * 7919 % tampered.len();
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ASCII");
        assert!(token::verify_hs256::<Value>(key, &tampered).is_err(), "{tampered} verified");
    }
});
