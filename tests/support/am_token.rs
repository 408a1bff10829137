//! The tests' own encoder of AM's session token layout, written from AM's classes rather than taken
//! from tether, so a test that routes by a token checks tether's parser against an independent writer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Java `DataOutputStream.writeUTF`: u16 big-endian length, then the bytes (ASCII here).
pub fn write_utf(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// `ext`: standard, padded base64 of the pairs in the order given (AM's `Base64.encode`).
pub fn ext<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut bytes = Vec::new();
    for (k, v) in pairs {
        write_utf(&mut bytes, k.as_ref());
        write_utf(&mut bytes, v.as_ref());
    }
    STANDARD.encode(bytes)
}

/// AM's `c66EncodeSidString`: URL-safe base64 characters, and both separators written as `*`.
pub fn c66(native: &str) -> String {
    native
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            '=' => '.',
            '@' | '#' => '*',
            other => other,
        })
        .collect()
}
