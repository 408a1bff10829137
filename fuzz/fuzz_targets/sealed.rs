//! Sealed journey state (ChaCha20-Poly1305 in base64url) and client-side session JWTs (JWE `dir` +
//! A256GCM around an HS256 JWS), both opened from what a client sends back. Checks: never a panic on
//! any input; what is sealed opens to itself; a change to any one character is refused.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ring::rand::SystemRandom;
use serde_json::{Value, json};
use tether::am::token::Keys;

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::derive(b"the fuzz targets' shared secret, 128 bits+"));
static RNG: LazyLock<SystemRandom> = LazyLock::new(SystemRandom::new);

/// `text` with the character at a position picked by `at` changed.
fn tamper(text: &str, at: u8) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let i = usize::from(at) * 7919 % bytes.len();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

fuzz_target!(|data: &[u8]| {
    let keys = &*KEYS;
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = keys.open(text);
        let _ = keys.open_session::<Value>(text);
    }
    let at = data.first().copied().unwrap_or(0);

    let sealed = keys.seal(&*RNG, data);
    assert_eq!(keys.open(&sealed).as_deref(), Ok(data));
    assert!(keys.open(&tamper(&sealed, at)).is_err());

    let claims = json!({"sub": String::from_utf8_lossy(data), "exp": 1_796_000_000u64});
    let jwt = keys.seal_session(&*RNG, &claims).expect("JSON claims serialize");
    if jwt.len() <= tether::am::token::MAX_SESSION_JWT_LEN {
        assert_eq!(keys.open_session::<Value>(&jwt).as_ref(), Ok(&claims));
        assert!(keys.open_session::<Value>(&tamper(&jwt, at)).is_err());
    }
});
