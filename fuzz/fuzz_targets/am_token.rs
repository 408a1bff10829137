//! AM's session token layout (`<id>@<ext>#<tail>`, c66, percent-encoded, quoted, `shandle:`), read
//! from every cookie, header and `tokenId` query. Checks: never a panic; the node hint is the one the
//! decoded `ext` pairs name (`S1`, else `SI`, a later duplicate winning); and, with a node ID taken from
//! the input, minted tokens (server- and client-side) name that node in every transport wrapping and
//! give back their `ext` pairs and JWT tail.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ring::rand::SystemRandom;
use tether::am::token;

static RNG: LazyLock<SystemRandom> = LazyLock::new(SystemRandom::new);

/// The hint `pairs` name by the documented rule.
fn expected_hint(pairs: &[(String, String)]) -> Option<String> {
    let last = |key: &str| pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    [last("S1"), last("SI")].into_iter().flatten().find(|id| token::is_valid_node_id(id))
}

/// Every byte but alphanumerics as `%XX`, as a strict URL encoder writes it.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let hint = token::node_hint_bytes(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    assert_eq!(token::node_hint(text), hint);
    if let Some(pairs) = token::decode_ext(text) {
        assert_eq!(hint, expected_hint(&pairs), "pairs {pairs:?}");
    }
    let _ = token::client_session_jwt(text);
    let _ = token::auth_id_node_hint(text);

    // The input as a node ID (up to its first newline), and what follows as a JWT tail.
    let (id, rest) = text.split_once('\n').unwrap_or((text, ""));
    if !token::is_valid_node_id(id) {
        return;
    }
    let minted = token::mint_token(&*RNG, id);
    let named = Some(id.to_owned());
    for form in [
        minted.clone(),
        format!("shandle:{minted}"),
        format!("\" {minted}\""),
        percent_encode(&minted),
        percent_encode(&percent_encode(&minted)),
        minted.replacen('*', "@", 1).replacen('*', "#", 1),
    ] {
        assert_eq!(token::node_hint(&form), named, "{form}");
    }
    let pairs = vec![("SI".to_owned(), id.to_owned()), ("S1".to_owned(), id.to_owned())];
    assert_eq!(token::decode_ext(&minted), Some(pairs));
    assert_eq!(token::client_session_jwt(&minted), None, "a server-side token has no session JWT");

    let jwt: String =
        rest.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
    if !jwt.is_empty() {
        let client = token::mint_client_token(&*RNG, id, &jwt);
        assert_eq!(token::node_hint(&client), named, "{client}");
        assert_eq!(token::client_session_jwt(&client), Some(jwt.clone()), "{client}");
        assert_eq!(token::client_session_jwt(&percent_encode(&client)), Some(jwt), "{client}");
    }
});
