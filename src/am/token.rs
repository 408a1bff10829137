//! AM-compatible token formats: session token layout, the `authId` JWS, and sealed state.
//!
//! Three jobs share this module because they share one threat model: everything here parses bytes that
//! arrive from the network, so every function is pure, bounded in input size and total (it never panics).
//!
//! * **Session token layout** (AM's `SessionID` and `LegacySessionIDExtensions`). AM writes a token
//!   as `<id>@<ext>#<tail>`, optionally "c66"-encoded for cookies (`+`→`-`, `/`→`_`, `=`→`.`, `@` and
//!   `#`→`*`), optionally URL-encoded on top, as a session handle with a `shandle:` prefix, and for
//!   client-side sessions with the session JWT as tail. `ext` is standard base64 of `DataOutput.writeUTF`
//!   key/value pairs naming the server that holds the session (`S1`, else `SI`), in no fixed order. The
//!   proxy reads that name as a *routing hint* the way AM's own parser does ([`node_hint`]) and
//!   the embedded auth node writes it into the tokens it mints ([`mint_token`]), so the proxy can send a
//!   token back to the node that issued it without any shared state. Hints are advice only: nothing here
//!   authenticates a token.
//! * **`authId` JWS** (RFC 7515 compact serialization, HS256 per RFC 7518 §3.2). AM signs the `authId` of a
//!   login in progress with the realm's signing secret; tether signs it with a key derived from the cluster's
//!   shared secret ([`sign_hs256`], [`verify_hs256`]). The proxy also peeks at its unverified `sessionId`
//!   claim ([`auth_id_node_hint`]) because cookie-less clients (the ForgeRock JS SDK under Node) carry no
//!   other stickiness signal.
//! * **Sealed state** ([`Keys::seal`], [`Keys::open`]): ChaCha20-Poly1305 for "client" auth sessions whose
//!   whole journey state travels inside the `authId`, like AM's client-side tree auth sessions.

use std::borrow::Cow;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE_NO_PAD};
use percent_encoding::percent_decode;
use ring::rand::SecureRandom;
use ring::{aead, hkdf, hmac};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

/// Longest session token value [`node_hint`] reads, as it arrives (before percent-decoding). Server-side
/// AM tokens are ~100 bytes, but a client-side session token carries the whole signed (and maybe
/// encrypted) session JWT as its tail and reaches several KiB: AM asks for 16 KiB header buffers for
/// them. Longer values give no hint, which keeps the work of a hint linear in a bounded input.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Longest `ext` (base64 text) read. AM's holds three short pairs (`SI`, `S1`, `SK`: ~60 characters),
/// client-side tokens one more; the bound lets `ext` be decoded in stack buffers.
const MAX_EXT_LEN: usize = 1024;

/// AM's session handle prefix (`SessionID.SHANDLE_SCHEME_PREFIX`).
const SHANDLE_PREFIX: &[u8] = b"shandle:";

/// Longest `authId` [`auth_id_node_hint`] looks at. Real AM authIds run from 1.8 to 8.6 KB (the claims of
/// a tree with callbacks and its signed `sessionId`); the bound is about twice the largest, while the proxy
/// only peeks at bodies of at most 64 KiB anyway.
pub const MAX_AUTH_ID_HINT_LEN: usize = 16 * 1024;

/// Longest JWS [`verify_hs256`] accepts. Large enough for an `authId` that carries sealed client-side
/// state of [`MAX_SEALED_LEN`] (base64 inside base64 grows it by ~4/3), small enough to bound the work of
/// an unauthenticated request.
pub const MAX_JWS_LEN: usize = 128 * 1024;

/// Longest sealed string [`Keys::open`] accepts (the base64url text, not the plaintext).
pub const MAX_SEALED_LEN: usize = 64 * 1024;

/// Longest node ID a hint may name. AM server IDs are two digits (`01`, `02`, …); anything much longer is
/// not a node ID but noise, and the hint ends up in logs and metric labels.
pub const MAX_NODE_ID_LEN: usize = 64;

/// Prefix of AM session IDs. AM's encrypted ID part starts with `AQIC` (its fixed encryption header), and
/// tools and people recognise tokens by it, so minted tokens keep it.
const TOKEN_PREFIX: &str = "AQIC";

/// The `type` value AM's `ext` carries for a client-side session (`SessionID.JWT`).
const CLIENT_TOKEN_TYPE: &str = "JWT";

/// `base64url({"typ":"JWT","alg":"HS256"})`: the header AM puts on `authId`s, fixed so that every signed
/// token has the same, canonical first segment.
const JWS_HEADER_B64: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";

/// HKDF salt for [`Keys::derive`] (RFC 5869 §3.1: a fixed, non-secret salt still strengthens extraction
/// when the input keying material is a configured secret of unknown quality).
const HKDF_SALT: &[u8] = b"tether shared-secret salt v1";
/// HKDF `info` of the `authId` signing key; distinct labels make the two derived keys independent.
const INFO_SIGNING: &[u8] = b"tether authId signing v1";
/// HKDF `info` of the sealing key.
const INFO_SEALING: &[u8] = b"tether authId sealing v1";
/// Associated data of every sealed blob: binds ciphertexts to this format version.
const SEAL_AAD: &[u8] = b"tether sealed v1";
/// HKDF `info` of the client-side session JWT's HS256 key.
const INFO_SESSION_SIGNING: &[u8] = b"tether client session signing v1";
/// HKDF `info` of the client-side session JWT's AES-256-GCM key.
const INFO_SESSION_ENCRYPTION: &[u8] = b"tether client session encryption v1";
/// `base64url({"alg":"dir","enc":"A256GCM","cty":"JWT"})`: the protected header of every session JWE
/// (RFC 7516 §7.1; `dir` = a shared symmetric key, RFC 7518 §4.5; `cty":"JWT"` = a nested, signed JWT
/// inside, RFC 7519 §5.2). Fixed, so opening compares bytes instead of parsing a header.
const SESSION_JWE_HEADER_B64: &str = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIiwiY3R5IjoiSldUIn0";
/// Longest session JWT [`Keys::open_session`] reads. A session's claims are a few hundred bytes and the
/// JWT about 700; the bound keeps client-side tokens far below the 16 KiB AM asks header buffers for.
pub const MAX_SESSION_JWT_LEN: usize = 8 * 1024;
/// ChaCha20-Poly1305 nonce length (RFC 8439).
const NONCE_LEN: usize = 12;
/// ChaCha20-Poly1305 tag length (RFC 8439).
const TAG_LEN: usize = 16;

// ---------------------------------------------------------------------------------------------------------
// Session token layout
// ---------------------------------------------------------------------------------------------------------

/// Mints a new session token for the node `server_id`, in AM's URL-safe layout.
///
/// The result is `AQIC<43 base64url chars of 32 random bytes>*<ext>*`: AM's `<id>@<ext>#<tail>` after
/// c66 encoding, with an empty tail as in modern AM server-side sessions. `ext` holds `SI` and `S1`, both
/// `server_id`, in that order like AM's own tokens, so [`node_hint`] (and a real AM's parser) route it back
/// to this node. 256 random bits make the token unguessable; it is also the lookup key of the session.
///
/// `server_id` should satisfy [`is_valid_node_id`] for the token to round-trip; configuration validates IDs.
///
/// # Panics
/// Only if `rng` fails. ring's `SystemRandom` fails only when the OS cannot supply randomness, and a
/// session token must never be predictable, so failing loudly beats any fallback.
pub fn mint_token(rng: &dyn SecureRandom, server_id: &str) -> String {
    let mut ext = Vec::with_capacity(8 + 2 * server_id.len());
    for (key, value) in [("SI", server_id), ("S1", server_id)] {
        write_utf(&mut ext, key);
        write_utf(&mut ext, value);
    }
    // AM encodes ext with padded standard base64; c66 then turns `=` into `.`.
    let ext = c66_encode(&STANDARD.encode(&ext));
    format!("{TOKEN_PREFIX}{}*{ext}*", random_b64(rng, 32))
}

/// Mints a client-side session token for the node `server_id`: AM's client-side layout, the tokenId
/// carrying the whole session as its tail.
///
/// The result is `AQIC<43 base64url chars of 32 random bytes>*<ext>*<jwt>`: like [`mint_token`], but
/// `ext` holds `SI`, `S1` (both `server_id`) and `type=JWT`, AM's marker of a client-side `SessionID`
/// (`SessionID.JWT`), and the tail is the session JWT (see [`Keys::seal_session`]). [`node_hint`] reads it
/// like any other token, so the proxy still routes it to the issuing node; any node with the shared
/// secret can also answer it, since nothing about the session is kept server-side.
///
/// `jwt` must be base64url and `.` only (what [`Keys::seal_session`] makes): it then needs no c66 step.
///
/// # Panics
/// Only if `rng` fails, for the reason given in [`mint_token`].
pub fn mint_client_token(rng: &dyn SecureRandom, server_id: &str, jwt: &str) -> String {
    let mut ext = Vec::with_capacity(20 + 2 * server_id.len());
    for (key, value) in [("SI", server_id), ("S1", server_id), ("type", CLIENT_TOKEN_TYPE)] {
        write_utf(&mut ext, key);
        write_utf(&mut ext, value);
    }
    let ext = c66_encode(&STANDARD.encode(&ext));
    format!("{TOKEN_PREFIX}{}*{ext}*{jwt}", random_b64(rng, 32))
}

/// The session JWT of a client-side session token ([`mint_client_token`]), or `None` for any other value.
///
/// The value is unwrapped as [`node_hint`] describes (spaces, quotes, up to two rounds of
/// percent-encoding); it is a client-side token when its `ext` holds `type=JWT` (AM's
/// `SessionID.isClientSideSession`), and the JWT is everything after the separator that closes `ext`.
/// Nothing is verified here: [`Keys::open_session`] does that.
pub fn client_session_jwt(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let is_client = decode_ext(token)?.iter().any(|(k, v)| k == "type" && v == CLIENT_TOKEN_TYPE);
    if !is_client {
        return None;
    }
    let mut value = Cow::from(unquote(token.as_bytes()));
    for _ in 0..2 {
        if value.contains(&b'%') {
            value = Cow::Owned(percent_decode(&value).collect::<Vec<u8>>());
            value = Cow::Owned(unquote(&value).to_vec());
        }
    }
    let value = value.strip_prefix(SHANDLE_PREFIX).unwrap_or(&value);
    let (_, end) = ext_bounds(value)?;
    let tail = std::str::from_utf8(value.get(end + 1..)?).ok()?;
    (!tail.is_empty()).then(|| tail.to_owned())
}

/// The node a session token (or auth session ID, or session handle) names: `S1` (home server), else `SI`
/// (site, or the server itself outside a site).
///
/// Reads a token the way AM's `SessionID.parseSessionString` does, after undoing what transports do to
/// it:
/// 1. the value as it arrives (cookie, header or `tokenId` query, at most [`MAX_TOKEN_LEN`] bytes) is
///    trimmed of spaces and one pair of surrounding double quotes (RFC 6265 §4.1.1 allows quoted cookie
///    values; people paste quoted header values);
/// 2. percent-decoded when it holds a `%`: AM URL-encodes its cookie when `com.iplanet.am.cookie.encode`
///    is on (`%40`, `%23`, `%3D`, and `%2A` from encoders that escape `*`), and a client may encode that
///    once more for a query. Neither base64 nor c66 uses `%`, so every `%` is transport encoding; two
///    rounds cover both layers. No `+`-to-space step: that is form decoding, which the query reader did;
/// 3. a `shandle:` prefix is dropped: AM makes a session handle with `makeRelatedSessionID`, so it
///    carries the same `ext` as its session;
/// 4. the `ext` segment is found per [`decode_ext`] and its `writeUTF` pairs are read in any order
///    (AM keeps them in a `HashMap`, so its own order varies); a later duplicate wins, as in the map.
///
/// An empty `S1` (AM writes `S1=""` for a server outside a site) falls back to `SI`, as does an `S1` that
/// is not a plausible node ID (see [`is_valid_node_id`]). Client-side session tokens (`<id>*<ext>*<JWT>`,
/// `ext` holding `type=JWT` or `JWT_AUTH` next to `SI`/`S1`) are read like any other: the JWT is the
/// tail. `None` when the value is too long, has no extension, or its extension does not decode. Only
/// the `S1` and `SI` values must be UTF-8; other values are skipped unread, since AM's modified UTF-8
/// differs from UTF-8 for some characters and they do not matter here. Routing advice only: nothing here
/// authenticates a token.
pub fn node_hint(token: &str) -> Option<String> {
    node_hint_bytes(token.as_bytes())
}

/// [`node_hint`] of a value as the request carries it (header and cookie values are bytes).
pub fn node_hint_bytes(token: &[u8]) -> Option<String> {
    with_ext(token, |ext| {
        let (mut s1, mut si) = (None, None);
        for_each_pair(ext, |key, value| match key {
            b"S1" => s1 = Some(value),
            b"SI" => si = Some(value),
            _ => {}
        })?;
        [s1, si]
            .into_iter()
            .flatten()
            .filter_map(|id| std::str::from_utf8(id).ok())
            .find(|id| is_valid_node_id(id))
            .map(str::to_owned)
    })
}

/// All `ext` key/value pairs of a token, in order, or `None` if the token has no well-formed `ext` (or a
/// key or value that is not UTF-8).
///
/// The value is unwrapped as [`node_hint`] describes, then split as AM splits it. AM's c66 form writes
/// both separators of `<encId>@<ext>#<tail>` as `*`, which is ambiguous on its own; AM's
/// `c66DecodeCookieString` resolves it by position: when the value holds any `*`, the **first** `*` is
/// `@` and **every later** `*` is `#` (the tail, e.g. a client-side session's JWT, may be empty and may
/// hold more `*`s; the encrypted ID is base64 and holds none). Then `lastIndexOf("@")` starts `ext`, and
/// the first `#` after it ends it. One rule covers the native form (`@`/`#`), the c66 form and a mix:
/// `ext` starts after the later of the last `@` and the first `*`, and ends at the next `#` or `*`. A
/// token without that closing separator has no extensions (AM reads none either), so no hint.
///
/// `-`, `_`, `.` in `ext` are read as `+`, `/`, `=` (c66), and a space as `+` (a native token put into a
/// query unencoded and form-decoded); padding is optional and trailing bits are not checked, so a hint
/// reads everything AM writes and a little more. Pairs are Java `writeUTF` strings (u16 big-endian length, then the bytes). As
/// `DataInputStream.readUTF` ends AM's loop with an `EOFException`, a key cut short ends the list; a
/// value cut short makes the whole ID invalid. Values may be empty (AM writes `S1=""`).
pub fn decode_ext(token: &str) -> Option<Vec<(String, String)>> {
    with_ext(token.as_bytes(), |ext| {
        let mut pairs = Vec::new();
        let mut utf8 = true;
        for_each_pair(ext, |key, value| match (std::str::from_utf8(key), std::str::from_utf8(value)) {
            (Ok(k), Ok(v)) => pairs.push((k.to_owned(), v.to_owned())),
            _ => utf8 = false,
        })?;
        utf8.then_some(pairs)
    })
}

/// Whether `id` can be a node ID: 1 to [`MAX_NODE_ID_LEN`] bytes without control characters.
///
/// Hints flow into logs and metric labels before they are matched against the configured IDs, so
/// implausible ones are dropped early. Configuration should hold node IDs to the same rule so that
/// [`mint_token`] output always round-trips through [`node_hint`].
pub fn is_valid_node_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_NODE_ID_LEN && !id.chars().any(char::is_control)
}

/// Base64 as AM's decoder reads `ext`: the standard alphabet, padding optional, trailing bits unchecked.
const EXT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Runs `f` on the decoded `ext` bytes of a transported token value (steps 1–4 of [`node_hint`]).
/// Decoding happens in stack buffers, and the value is copied only when it is percent-encoded, so a
/// hint costs no allocation in the common case.
fn with_ext<R>(raw: &[u8], f: impl FnOnce(&[u8]) -> Option<R>) -> Option<R> {
    if raw.len() > MAX_TOKEN_LEN {
        return None;
    }
    let once = unquote(raw);
    if !once.contains(&b'%') {
        return decoded_ext(once, f);
    }
    let decoded = Cow::from(percent_decode(once));
    let twice = unquote(&decoded);
    if !twice.contains(&b'%') {
        return decoded_ext(twice, f);
    }
    let decoded = Cow::from(percent_decode(twice));
    decoded_ext(unquote(&decoded), f)
}

/// Spaces around, then one pair of double quotes, then spaces inside them.
fn unquote(value: &[u8]) -> &[u8] {
    let value = value.trim_ascii();
    value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).map_or(value, <[u8]>::trim_ascii)
}

/// Finds `ext` in an unwrapped token and base64-decodes it on the stack for `f`.
fn decoded_ext<R>(token: &[u8], f: impl FnOnce(&[u8]) -> Option<R>) -> Option<R> {
    let token = token.strip_prefix(SHANDLE_PREFIX).unwrap_or(token);
    let ext = ext_segment(token)?;
    let mut text = [0u8; MAX_EXT_LEN];
    let text = text.get_mut(..ext.len())?;
    for (to, &from) in text.iter_mut().zip(ext) {
        *to = match from {
            b'-' | b' ' => b'+',
            b'_' => b'/',
            b'.' => b'=',
            other => other,
        };
    }
    let mut bytes = [0u8; MAX_EXT_LEN / 4 * 3 + 3];
    let n = EXT_BASE64.decode_slice(&*text, &mut bytes).ok()?;
    f(bytes.get(..n)?)
}

/// The `ext` part of an unwrapped token (still base64 or c66 text), per the rule of [`decode_ext`].
fn ext_segment(token: &[u8]) -> Option<&[u8]> {
    let (start, end) = ext_bounds(token)?;
    token.get(start..end)
}

/// Where `ext` starts and ends in an unwrapped token; the tail starts one byte after the end.
fn ext_bounds(token: &[u8]) -> Option<(usize, usize)> {
    let first_star = token.iter().position(|&b| b == b'*');
    let last_at = token.iter().rposition(|&b| b == b'@');
    let open = match (last_at, first_star) {
        (Some(at), Some(star)) => at.max(star),
        (at, star) => at.or(star)?,
    };
    let rest = token.get(open + 1..)?;
    let close = rest.iter().position(|&b| b == b'#' || b == b'*')?;
    Some((open + 1, open + 1 + close))
}

/// Calls `f` with each `writeUTF` key/value pair of decoded `ext` bytes, ending as AM's loop ends (see
/// [`decode_ext`]): `None` when a value is cut short.
fn for_each_pair<'a>(mut ext: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
    while let Some(key) = read_utf(&mut ext) {
        let value = read_utf(&mut ext)?;
        f(key, value);
    }
    Some(())
}

/// AM's c66 encoding of the base64 characters (the separators are written as `*` by the caller).
fn c66_encode(b64: &str) -> String {
    b64.chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            '=' => '.',
            other => other,
        })
        .collect()
}

/// Java `DataOutput.writeUTF`: u16 big-endian byte length, then the bytes. Java refuses strings over
/// 65535 bytes; this cuts them at the last character boundary that fits instead, because minting must not
/// fail or panic (and node IDs are a few bytes, see [`is_valid_node_id`]).
fn write_utf(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    let bytes = s.as_bytes().get(..end).unwrap_or_default();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Java `DataInput.readUTF` counterpart of [`write_utf`], unchecked bytes: `None` when cut short.
fn read_utf<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = input.split_first_chunk::<2>()?;
    let (bytes, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
    *input = rest;
    Some(bytes)
}

/// `n_bytes` random bytes as base64url without padding, e.g. for the `otk` nonce of an `authId` (AM uses
/// a 130-bit random value there; 16 bytes or more is equivalent).
///
/// # Panics
/// Only if `rng` fails, for the reason given in [`mint_token`].
pub fn random_b64(rng: &dyn SecureRandom, n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    fill_random(rng, &mut bytes);
    URL_SAFE_NO_PAD.encode(&bytes)
}

/// Fills `buf` from `rng`; panics on RNG failure because every caller needs unpredictable bytes (tokens,
/// nonces) and has no safe fallback.
fn fill_random(rng: &dyn SecureRandom, buf: &mut [u8]) {
    rng.fill(buf).expect("the system random number generator failed");
}

// ---------------------------------------------------------------------------------------------------------
// authId JWS (HS256)
// ---------------------------------------------------------------------------------------------------------

/// Why an `authId` JWS was refused. Display texts mirror AM's REST messages (`AuthIdHelper`,
/// `RestAuthenticationHandler`) so clients see the same 400 bodies as from AM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not a compact JWS, bad base64url or JSON, too large, or claims of the wrong shape. The payload says
    /// which, for logs.
    #[error("Failed to parse JWT")]
    Malformed(&'static str),
    /// The header names an algorithm other than HS256 (notably `none`, RFC 8725 §2.1) or carries `crit`
    /// extensions this code does not understand (RFC 7515 §4.1.11). AM's HS256 signing handler fails
    /// verification in that case, hence the same message as a bad signature.
    #[error("AuthId JWT Signature not valid")]
    UnsupportedAlgorithm,
    /// The HMAC does not match: forged, tampered, or signed with another secret.
    #[error("AuthId JWT Signature not valid")]
    BadSignature,
}

/// The protected header fields verification looks at. Unknown members are ignored, a duplicated `alg` is
/// a parse error (serde refuses duplicate fields), which closes off parser-differential tricks.
#[derive(serde::Deserialize)]
struct JwsHeader {
    alg: String,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// Signs `claims` as an HS256 JWS in compact serialization (RFC 7515 §7.1), header
/// `{"typ":"JWT","alg":"HS256"}` like AM's `authId`.
///
/// # Errors
/// Only if `claims` cannot be serialized to JSON (e.g. a map with non-string keys); plain derived claim
/// structs never fail. Returning the error instead of panicking keeps this total.
pub fn sign_hs256<T: Serialize>(key: &hmac::Key, claims: &T) -> Result<String, serde_json::Error> {
    let payload = serde_json::to_vec(claims)?;
    let mut jws = format!("{JWS_HEADER_B64}.{}", URL_SAFE_NO_PAD.encode(payload));
    let tag = hmac::sign(key, jws.as_bytes());
    jws.push('.');
    jws.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    Ok(jws)
}

/// Verifies an HS256 compact JWS and returns its claims.
///
/// The header must say `"alg":"HS256"` (algorithm confusion and `alg:none` are refused, RFC 8725 §3.1);
/// the MAC is checked in constant time by `ring::hmac::verify` *before* the payload is parsed, so forged
/// payloads never reach serde. Base64url must be unpadded and canonical (RFC 7515 §2). Time-based claims
/// such as `exp` are the caller's to check: this function knows no clock.
///
/// # Errors
/// [`JwsError::Malformed`] for anything unparsable (including inputs over [`MAX_JWS_LEN`] and claims that
/// do not fit `T`), [`JwsError::UnsupportedAlgorithm`], [`JwsError::BadSignature`].
pub fn verify_hs256<T: DeserializeOwned>(key: &hmac::Key, jws: &str) -> Result<T, JwsError> {
    if jws.len() > MAX_JWS_LEN {
        return Err(JwsError::Malformed("too large"));
    }
    let (header_b64, payload_b64, sig_b64) =
        split_jws(jws).ok_or(JwsError::Malformed("not a compact JWS"))?;
    let header = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| JwsError::Malformed("header encoding"))?;
    let header: JwsHeader = serde_json::from_slice(&header).map_err(|_| JwsError::Malformed("header"))?;
    if header.alg != "HS256" || header.crit.is_some() {
        return Err(JwsError::UnsupportedAlgorithm);
    }
    let sig = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| JwsError::Malformed("signature encoding"))?;
    // The signing input is the ASCII of `header.payload` exactly as received (RFC 7515 §5.2 step 8).
    let signing_input = jws.get(..header_b64.len() + 1 + payload_b64.len()).unwrap_or_default();
    hmac::verify(key, signing_input.as_bytes(), &sig).map_err(|_| JwsError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| JwsError::Malformed("payload encoding"))?;
    serde_json::from_slice(&payload).map_err(|_| JwsError::Malformed("claims"))
}

/// The node hint inside an `authId`: the [`node_hint`] of its `sessionId` claim, read **without**
/// verifying the signature.
///
/// AM's `authId` names the in-progress auth session in `sessionId`, a token whose `S1`/`SI` is the node
/// that holds it in memory. The proxy has no business holding signing keys and only needs routing advice: a
/// forged hint merely sends the request to a node that will refuse it ("Session has timed out"). Inputs
/// over [`MAX_AUTH_ID_HINT_LEN`], anything but three dot-separated segments, bad base64url or JSON, or a
/// missing or non-string `sessionId` give `None`.
pub fn auth_id_node_hint(auth_id: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(rename = "sessionId")]
        session_id: Option<String>,
    }
    if auth_id.len() > MAX_AUTH_ID_HINT_LEN {
        return None;
    }
    let (_header, payload, _sig) = split_jws(auth_id.trim_ascii())?;
    let payload = PEEK_BASE64URL.decode(payload).ok()?;
    let peek: Peek = serde_json::from_slice(&payload).ok()?;
    node_hint(&peek.session_id?)
}

/// Base64url as the `authId` peek reads it: padding optional, trailing bits unchecked. Verification
/// ([`verify_hs256`]) stays strict; a hint only needs to read what AM's JWT library would.
const PEEK_BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Splits a compact JWS into exactly three segments.
fn split_jws(jws: &str) -> Option<(&str, &str, &str)> {
    let mut parts = jws.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(sig), None) => Some((header, payload, sig)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Keys from the shared secret, sealed state
// ---------------------------------------------------------------------------------------------------------

/// Why [`Keys::open`] refused a sealed string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Longer than [`MAX_SEALED_LEN`].
    #[error("sealed state is too large")]
    TooLarge,
    /// Not base64url, or too short to hold a nonce and a tag.
    #[error("sealed state is malformed")]
    Malformed,
    /// The AEAD tag does not verify: tampered, truncated, or sealed under another secret.
    #[error("sealed state failed authentication")]
    Unauthentic,
}

/// The keys every node derives from the cluster's shared secret.
///
/// Nodes must agree on them without exchanging anything, so they are derived deterministically with
/// HKDF-SHA256 (RFC 5869). Separate `info` labels give independent keys for the two uses, so a signing key
/// is never also an encryption key, and bumping a label's version rotates one without the other.
#[derive(Clone)]
pub struct Keys {
    signing: hmac::Key,
    sealing: aead::LessSafeKey,
    session_signing: hmac::Key,
    session_encryption: aead::LessSafeKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even by accident in a config dump.
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    /// Derives the HMAC-SHA256 `authId` signing key and the ChaCha20-Poly1305 sealing key from `secret`.
    ///
    /// HKDF is not a password hash: `secret` should be high-entropy (AM requires at least 128 bits for its
    /// signing secret); configuration is where short secrets are refused.
    pub fn derive(secret: &[u8]) -> Keys {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
        // `expand` fails only when asked for more than 255 hash lengths; both keys are one hash length.
        let signing = hmac::Key::from(
            prk.expand(&[INFO_SIGNING], hmac::HMAC_SHA256).expect("HKDF output length is 32 bytes"),
        );
        let sealing = aead::LessSafeKey::new(aead::UnboundKey::from(
            prk.expand(&[INFO_SEALING], &aead::CHACHA20_POLY1305).expect("HKDF output length is 32 bytes"),
        ));
        let session_signing = hmac::Key::from(
            prk.expand(&[INFO_SESSION_SIGNING], hmac::HMAC_SHA256).expect("HKDF output length is 32 bytes"),
        );
        let session_encryption = aead::LessSafeKey::new(aead::UnboundKey::from(
            prk.expand(&[INFO_SESSION_ENCRYPTION], &aead::AES_256_GCM)
                .expect("HKDF output length is 32 bytes"),
        ));
        Keys { signing, sealing, session_signing, session_encryption }
    }

    /// A client-side session JWT of `claims`: signed, then encrypted (RFC 7519 §11.2, AM's "signed and
    /// encrypted" client-side sessions).
    ///
    /// The claims are an HS256 JWS ([`sign_hs256`]) under their own HKDF-derived key, and that JWS is the
    /// plaintext of a compact JWE (RFC 7516 §7.1) with `alg: dir` and `enc: A256GCM` (RFC 7518 §5.3:
    /// AES-256-GCM, 96-bit random IV, the protected header as associated data, empty encrypted key).
    /// AES-256-GCM rather than the ChaCha20-Poly1305 of [`Keys::seal`] because it is the registered JWE
    /// `enc` a JOSE library can open with the derived key; the inner HS256 makes the plaintext a signed
    /// JWT like AM's, so a key that only decrypts cannot forge sessions. Random IVs are safe for far more
    /// sessions than a cluster issues between secret rotations (NIST SP 800-38D bounds them at 2^32).
    ///
    /// # Errors
    /// Only if `claims` cannot be serialized (see [`sign_hs256`]).
    ///
    /// # Panics
    /// Only if `rng` fails, for the reason given in [`mint_token`].
    pub fn seal_session<T: Serialize>(
        &self,
        rng: &dyn SecureRandom,
        claims: &T,
    ) -> Result<String, serde_json::Error> {
        let mut in_out = sign_hs256(&self.session_signing, claims)?.into_bytes();
        let mut iv = [0u8; NONCE_LEN];
        fill_random(rng, &mut iv);
        // As in `seal`: only plaintexts beyond GCM's per-nonce limit fail, and an empty JWT fails to open.
        let Ok(tag) = self.session_encryption.seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(iv),
            aead::Aad::from(SESSION_JWE_HEADER_B64.as_bytes()),
            &mut in_out,
        ) else {
            return Ok(String::new());
        };
        Ok(format!(
            "{SESSION_JWE_HEADER_B64}..{}.{}.{}",
            URL_SAFE_NO_PAD.encode(iv),
            URL_SAFE_NO_PAD.encode(&in_out),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        ))
    }

    /// The claims of a session JWT made by [`Keys::seal_session`] under the same secret.
    ///
    /// The header must be exactly the fixed one (no algorithm choice is read from the token, RFC 8725
    /// §3.1), the encrypted key empty, the tag valid, and the inner JWS's HS256 signature valid; only
    /// then are the claims parsed. Expiry is the caller's: this knows no clock.
    ///
    /// # Errors
    /// [`SealError::TooLarge`] over [`MAX_SESSION_JWT_LEN`]; [`SealError::Malformed`] for anything not
    /// shaped like such a JWE or claims that do not fit `T`; [`SealError::Unauthentic`] when the tag or the
    /// signature does not verify (tampered, or another secret's).
    pub fn open_session<T: DeserializeOwned>(&self, jwt: &str) -> Result<T, SealError> {
        if jwt.len() > MAX_SESSION_JWT_LEN {
            return Err(SealError::TooLarge);
        }
        let mut parts = jwt.split('.');
        let (Some(SESSION_JWE_HEADER_B64), Some(""), Some(iv), Some(ciphertext), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Malformed);
        };
        let iv: [u8; NONCE_LEN] = decode_b64url(iv)?.try_into().map_err(|_| SealError::Malformed)?;
        let mut in_out = decode_b64url(ciphertext)?;
        let tag = decode_b64url(tag)?;
        if tag.len() != TAG_LEN {
            return Err(SealError::Malformed);
        }
        in_out.extend_from_slice(&tag);
        let plaintext = self
            .session_encryption
            .open_in_place(
                aead::Nonce::assume_unique_for_key(iv),
                aead::Aad::from(SESSION_JWE_HEADER_B64.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| SealError::Unauthentic)?;
        let jws = std::str::from_utf8(plaintext).map_err(|_| SealError::Malformed)?;
        verify_hs256(&self.session_signing, jws).map_err(|e| match e {
            JwsError::Malformed(_) => SealError::Malformed,
            JwsError::UnsupportedAlgorithm | JwsError::BadSignature => SealError::Unauthentic,
        })
    }

    /// The `authId` HS256 key, for [`sign_hs256`] and [`verify_hs256`].
    pub fn signing(&self) -> &hmac::Key {
        &self.signing
    }

    /// Encrypts and authenticates `plaintext` (ChaCha20-Poly1305, RFC 8439) for a trip through the client.
    ///
    /// Output: base64url (no padding) of a fresh random 12-byte nonce, the ciphertext and the 16-byte tag.
    /// Random nonces are safe here: at 96 bits, collisions stay negligible for far more messages than a
    /// cluster seals between secret rotations. Keep `plaintext` small: [`Keys::open`] refuses outputs over
    /// [`MAX_SEALED_LEN`], i.e. plaintexts over about 48 KiB.
    ///
    /// # Panics
    /// Only if `rng` fails (a repeated nonce would break confidentiality and integrity, so there is no
    /// fallback).
    pub fn seal(&self, rng: &dyn SecureRandom, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(rng, &mut nonce);
        let mut buf = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        buf.extend_from_slice(&nonce);
        let mut in_out = plaintext.to_vec();
        // Sealing fails only for plaintexts beyond ChaCha20's 256 GiB per-nonce limit, far above any state
        // that fits in memory alongside its base64; an empty result then fails `open`, it does not panic.
        if self
            .sealing
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(SEAL_AAD),
                &mut in_out,
            )
            .is_err()
        {
            return String::new();
        }
        buf.extend_from_slice(&in_out);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Decrypts what [`Keys::seal`] produced, refusing anything tampered with.
    ///
    /// # Errors
    /// [`SealError::TooLarge`] over [`MAX_SEALED_LEN`], [`SealError::Malformed`] for bad base64url or a
    /// short input, [`SealError::Unauthentic`] when the tag does not verify.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SealError> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(SealError::TooLarge);
        }
        let bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_first_chunk::<NONCE_LEN>().ok_or(SealError::Malformed)?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .sealing
            .open_in_place(aead::Nonce::assume_unique_for_key(*nonce), aead::Aad::from(SEAL_AAD), &mut in_out)
            .map_err(|_| SealError::Unauthentic)?;
        Ok(plaintext.to_vec())
    }
}

/// Strict base64url (unpadded, canonical), as JOSE writes it (RFC 7515 §2).
fn decode_b64url(text: &str) -> Result<Vec<u8>, SealError> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| SealError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use serde::Deserialize;

    /// The ext of a real AM token (SI=02, SK=-6466190869487384488, S1=01), as AM documents it.
    const AM_EXT: &str = "AAJTSQACMDIAAlNLABQtNjQ2NjE5MDg2OTQ4NzM4NDQ4OAACUzEAAjAx";

    fn ext_b64(pairs: &[(&str, &str)]) -> String {
        let mut ext = Vec::new();
        for (k, v) in pairs {
            write_utf(&mut ext, k);
            write_utf(&mut ext, v);
        }
        STANDARD.encode(ext)
    }

    fn url_safe_token(pairs: &[(&str, &str)]) -> String {
        format!("AQIC5wM2LY4SfcxPEcjVKCEI7QdmYvlOZvKZpdEErxVPvx8.*{}*", c66_encode(&ext_b64(pairs)))
    }

    fn plain_token(pairs: &[(&str, &str)]) -> String {
        format!("AQIC5wM2LY4SfcxPEcjVKCEI7QdmYvlOZvKZpdEErxVPvx8=@{}#", ext_b64(pairs))
    }

    fn keys() -> Keys {
        Keys::derive(b"a shared secret of at least 128 bits, for tests")
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Claims {
        otk: String,
        realm: String,
        #[serde(rename = "sessionId")]
        session_id: String,
        exp: u64,
    }

    fn claims(session_id: String) -> Claims {
        Claims { otk: "nonce".into(), realm: "/".into(), session_id, exp: 1_700_000_000 }
    }

    #[test]
    fn minted_token_routes_back_to_its_node() {
        let rng = SystemRandom::new();
        for id in ["01", "02", "node-a", "ü-node"] {
            let token = mint_token(&rng, id);
            assert_eq!(node_hint(&token).as_deref(), Some(id), "{token}");
        }
    }

    #[test]
    fn minted_token_has_am_shape_and_is_url_safe() {
        let rng = SystemRandom::new();
        let token = mint_token(&rng, "01");
        assert!(token.starts_with("AQIC") && token.ends_with('*'), "{token}");
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.*".contains(&b)), "{token}");
        assert_eq!(token.matches('*').count(), 2);
        assert_eq!(decode_ext(&token), Some(vec![("SI".into(), "01".into()), ("S1".into(), "01".into())]));
        assert_ne!(token, mint_token(&rng, "01"), "tokens must be random");
    }

    #[test]
    fn hint_prefers_s1_over_site_id() {
        let pairs = [("SI", "02"), ("SK", "-6466190869487384488"), ("S1", "01")];
        assert_eq!(node_hint(&url_safe_token(&pairs)).as_deref(), Some("01"));
        assert_eq!(node_hint(&plain_token(&pairs)).as_deref(), Some("01"));
    }

    #[test]
    fn hint_falls_back_to_site_id_without_s1() {
        let pairs = [("SI", "03"), ("SK", "1822248024")];
        assert_eq!(node_hint(&url_safe_token(&pairs)).as_deref(), Some("03"));
        assert_eq!(node_hint(&plain_token(&pairs)).as_deref(), Some("03"));
    }

    #[test]
    fn empty_s1_as_am_writes_outside_a_site_falls_back_to_site_id() {
        let pairs = [("S1", ""), ("SI", "01"), ("SK", "42")];
        assert_eq!(node_hint(&url_safe_token(&pairs)).as_deref(), Some("01"));
    }

    #[test]
    fn no_hint_when_no_id_is_present_or_plausible() {
        assert_eq!(node_hint(&url_safe_token(&[("SK", "42")])), None);
        assert_eq!(node_hint(&url_safe_token(&[("S1", ""), ("SI", "")])), None);
        assert_eq!(node_hint(&url_safe_token(&[("SI", "0\n1")])), None);
        assert_eq!(node_hint(&url_safe_token(&[("SI", &"x".repeat(65))])), None);
        assert_eq!(node_hint(&url_safe_token(&[])), None);
    }

    #[test]
    fn real_am_token_example_decodes() {
        let token = format!("AQIC5wM2LY4Sfcz...*{AM_EXT}*");
        assert_eq!(
            decode_ext(&token),
            Some(vec![
                ("SI".into(), "02".into()),
                ("SK".into(), "-6466190869487384488".into()),
                ("S1".into(), "01".into()),
            ])
        );
        assert_eq!(node_hint(&token).as_deref(), Some("01"));
    }

    #[test]
    fn am_source_sample_in_plain_form_decodes() {
        // The sample in the comment of AM's SessionID.c66EncodeSidString, and its c66 form.
        let plain = "AQIC5wM2LY4SfcxPEcjVKCEI7QdmYvlOZvKZpdEErxVPvx8=@AAJTSQACMDE=#";
        let c66 = "AQIC5wM2LY4SfcxPEcjVKCEI7QdmYvlOZvKZpdEErxVPvx8.*AAJTSQACMDE.*";
        assert_eq!(node_hint(plain).as_deref(), Some("01"));
        assert_eq!(node_hint(c66).as_deref(), Some("01"));
    }

    #[test]
    fn client_side_session_token_with_jwt_tail_still_hints() {
        let token = format!("{}eyJhbGciOiJIUzI1NiJ9.e30.c2ln", url_safe_token(&[("SI", "02")]));
        assert_eq!(node_hint(&token).as_deref(), Some("02"));
    }

    #[test]
    fn token_without_separator_after_ext_has_no_extensions_like_am() {
        assert_eq!(node_hint(&format!("AQIC5wM2*{AM_EXT}")), None);
        assert_eq!(node_hint("AQIC5wM2@AAJTSQACMDE="), None);
    }

    #[test]
    fn garbage_truncated_empty_oversized_and_non_ascii_give_no_hint() {
        let truncated_pair = STANDARD.encode([0u8, 2, b'S', b'I', 0, 5, b'0']);
        let key_only = STANDARD.encode([0u8, 2, b'S', b'I']);
        let bad_utf8 = STANDARD.encode([0u8, 2, b'S', b'I', 0, 2, 0xC3, 0x28]);
        let oversized = format!("{}{}", url_safe_token(&[("SI", "01")]), "A".repeat(1 << 20));
        let inputs = [
            String::new(),
            "*".into(),
            "**".into(),
            "@#".into(),
            "not a token".into(),
            "AQIC*!!!!*".into(),
            "AQIC*AAJTSQ*".into(),
            format!("AQIC*{truncated_pair}*"),
            format!("AQIC*{key_only}*"),
            format!("AQIC*{bad_utf8}*"),
            format!("AQIC*{AM_EXT}é*"),
            format!("AQIC*{}*", "A".repeat(MAX_EXT_LEN + 4)),
            oversized,
        ];
        for input in &inputs {
            assert_eq!(node_hint(input), None, "{input:.80}");
        }
    }

    /// `pairs` as the ext of a c66 token with a random-looking ID and `tail`.
    fn c66_token(pairs: &[(&str, &str)], tail: &str) -> String {
        format!("AQIC5wM2LY4SfczjdeBGEePxYOpOFq26BqFlT-9um_EvlcQ.*{}*{tail}", c66_encode(&ext_b64(pairs)))
    }

    /// Percent-encodes every byte outside base64url, as an encoder that also escapes `*` does.
    fn percent_all(s: &str) -> String {
        s.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
            .collect()
    }

    const SITE: [(&str, &str); 3] = [("SI", "03"), ("SK", "1822248024"), ("S1", "02")];

    #[test]
    fn percent_encoded_tokens_hint_in_both_forms_and_twice_encoded() {
        let native = plain_token(&SITE);
        let c66 = c66_token(&SITE, "");
        // AM's cookie encoding (java.net.URLEncoder: `*` stays), and an encoder that escapes `*` too.
        let am_encoded = native.replace('@', "%40").replace('#', "%23").replace('=', "%3D");
        for token in [am_encoded.clone(), percent_all(&native), percent_all(&c66), c66.replace('*', "%2a")] {
            assert_eq!(node_hint(&token).as_deref(), Some("02"), "{token}");
        }
        let twice = am_encoded.replace('%', "%25");
        assert_eq!(node_hint(&twice).as_deref(), Some("02"), "{twice}");
    }

    #[test]
    fn quotes_spaces_and_session_handles_are_unwrapped() {
        let c66 = c66_token(&SITE, "");
        for token in [
            format!("\"{c66}\""),
            format!("  \" {c66} \"  "),
            format!(" {c66}\t"),
            format!("shandle:{c66}"),
            format!("\"shandle:{}\"", plain_token(&SITE)),
            percent_all(&format!("\"shandle:{c66}\"")),
        ] {
            assert_eq!(node_hint(&token).as_deref(), Some("02"), "{token:?}");
        }
    }

    #[test]
    fn extension_keys_in_any_order_and_later_duplicates_win() {
        let orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        for order in orders {
            let pairs: Vec<_> = order.iter().map(|&i| SITE[i]).collect();
            assert_eq!(node_hint(&c66_token(&pairs, "")).as_deref(), Some("02"), "{pairs:?}");
            assert_eq!(node_hint(&plain_token(&pairs)).as_deref(), Some("02"), "{pairs:?}");
        }
        assert_eq!(node_hint(&c66_token(&[("S1", "01"), ("S1", "02")], "")).as_deref(), Some("02"));
    }

    #[test]
    fn client_side_tokens_carry_the_jwt_as_tail() {
        let jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.c2lnbmF0dXJl-_";
        for kind in ["JWT", "JWT_AUTH"] {
            let pairs = [("type", kind), ("SI", "01"), ("S1", "02")];
            assert_eq!(node_hint(&c66_token(&pairs, jwt)).as_deref(), Some("02"));
            let no_id = format!("*{}*{jwt}", c66_encode(&ext_b64(&pairs)));
            assert_eq!(node_hint(&no_id).as_deref(), Some("02"), "{no_id}");
        }
    }

    #[test]
    fn c66_ambiguity_is_resolved_as_ams_decoder_does() {
        // First `*` is `@`, every later one `#`: stars in the tail do not move `ext`.
        assert_eq!(node_hint(&c66_token(&SITE, "a*b*")).as_deref(), Some("02"));
        // A native `@` after the first `*` is the last `@`, so `ext` follows it.
        let other = ext_b64(&[("SI", "01")]);
        let mixed = format!("AQIC*{other}*x@{}#", ext_b64(&SITE));
        assert_eq!(node_hint(&mixed).as_deref(), Some("02"), "{mixed}");
        // A native `@` before the first `*`: the star is AM's `@`.
        let mixed = format!("AQIC@x*{}*", c66_encode(&ext_b64(&SITE)));
        assert_eq!(node_hint(&mixed).as_deref(), Some("02"), "{mixed}");
        // An empty tail, an empty ID, an empty ext.
        assert_eq!(node_hint(&format!("*{}*", c66_encode(&ext_b64(&SITE)))).as_deref(), Some("02"));
        assert_eq!(node_hint("AQIC**"), None);
    }

    #[test]
    fn a_form_decoded_plus_is_read_back() {
        let pairs = [("SI", "01"), ("SK", "~~~~"), ("S1", "02")];
        let native = plain_token(&pairs);
        assert!(native.contains('+'), "the ext holds a +: {native}");
        assert_eq!(node_hint(&native.replace('+', " ")).as_deref(), Some("02"));
    }

    #[test]
    fn tokens_up_to_sixteen_kib_hint() {
        let short = c66_token(&SITE, "");
        let tail = "x".repeat(MAX_TOKEN_LEN - short.len());
        let longest = c66_token(&SITE, &tail);
        assert_eq!(longest.len(), MAX_TOKEN_LEN);
        assert_eq!(node_hint(&longest).as_deref(), Some("02"));
        assert_eq!(node_hint(&format!("{longest}x")), None);
    }

    #[test]
    fn a_cut_key_ends_the_list_and_a_cut_value_invalidates_it_like_readutf() {
        let odd_byte = STANDARD.encode([0u8, 2, b'S', b'I', 0, 2, b'0', b'1', 0]);
        assert_eq!(node_hint(&format!("AQIC*{odd_byte}*")).as_deref(), Some("01"));
        let cut_value = STANDARD.encode([0u8, 2, b'S', b'I', 0, 2, b'0', b'1', 0, 2, b'S', b'1', 0, 9, b'0']);
        assert_eq!(node_hint(&format!("AQIC*{cut_value}*")), None);
        // Values other than S1/SI need not be UTF-8 (AM writes modified UTF-8).
        let modified =
            STANDARD.encode([0u8, 2, b'S', b'K', 0, 2, 0xC0, 0x80, 0, 2, b'S', b'I', 0, 2, b'0', b'1']);
        assert_eq!(node_hint(&format!("AQIC*{modified}*")).as_deref(), Some("01"));
        assert_eq!(decode_ext(&format!("AQIC*{modified}*")), None, "decode_ext wants UTF-8 throughout");
    }

    #[test]
    fn the_identity_cloud_sample_with_empty_s1_decodes() {
        let token = "AQIC5wM2LY4SfczjdeBGEePxYOpOFq26BqFlT-9um_EvlcQ.*AAJTSQACMDEAAlNLABQtMTAyMjMyNDM0NTU5ODQ4Mjg0MgACUzEAAA..*";
        assert_eq!(node_hint(token).as_deref(), Some("01"));
    }

    #[test]
    fn jws_round_trips() {
        let k = keys();
        let c = claims("AQIC*x*".into());
        let jws = sign_hs256(k.signing(), &c).unwrap();
        assert!(jws.starts_with("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9."));
        assert_eq!(verify_hs256::<Claims>(k.signing(), &jws), Ok(c));
    }

    #[test]
    fn jws_header_constant_is_ams_header() {
        let header = URL_SAFE_NO_PAD.decode(JWS_HEADER_B64).unwrap();
        assert_eq!(header, br#"{"typ":"JWT","alg":"HS256"}"#);
    }

    #[test]
    fn tampered_jws_payload_is_a_bad_signature() {
        let k = keys();
        let jws = sign_hs256(k.signing(), &claims("a".into())).unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("b".into())).unwrap());
        let mut parts: Vec<&str> = jws.split('.').collect();
        parts[1] = &forged_payload;
        assert_eq!(verify_hs256::<Claims>(k.signing(), &parts.join(".")), Err(JwsError::BadSignature));
    }

    #[test]
    fn jws_signed_with_another_secret_is_a_bad_signature() {
        let jws = sign_hs256(Keys::derive(b"other secret").signing(), &claims("a".into())).unwrap();
        assert_eq!(verify_hs256::<Claims>(keys().signing(), &jws), Err(JwsError::BadSignature));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let k = keys();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("a".into())).unwrap());
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#));
        assert_eq!(verify_hs256::<Claims>(k.signing(), &none), Err(JwsError::UnsupportedAlgorithm));
        // A correct HS256 MAC under a header claiming HS512 is still refused.
        for header in [r#"{"alg":"HS512"}"#, r#"{"alg":"HS256","crit":["exp"]}"#] {
            let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header));
            let sig = URL_SAFE_NO_PAD.encode(hmac::sign(k.signing(), input.as_bytes()));
            let jws = format!("{input}.{sig}");
            assert_eq!(verify_hs256::<Claims>(k.signing(), &jws), Err(JwsError::UnsupportedAlgorithm));
        }
        let dup = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","alg":"none"}"#));
        assert!(matches!(verify_hs256::<Claims>(k.signing(), &dup), Err(JwsError::Malformed(_))));
    }

    #[test]
    fn garbage_jws_is_malformed_with_ams_message() {
        let k = keys();
        for garbage in ["", "a", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.e30", "eyJ0eXAiOiJKV1QiLCJhbGc"] {
            let err = verify_hs256::<Claims>(k.signing(), garbage).unwrap_err();
            assert!(matches!(err, JwsError::Malformed(_)), "{garbage}: {err:?}");
            assert_eq!(err.to_string(), "Failed to parse JWT");
        }
        assert_eq!(JwsError::BadSignature.to_string(), "AuthId JWT Signature not valid");
        let huge = "a".repeat(MAX_JWS_LEN + 1);
        assert_eq!(verify_hs256::<Claims>(k.signing(), &huge), Err(JwsError::Malformed("too large")));
    }

    #[test]
    fn validly_signed_claims_of_the_wrong_shape_are_malformed() {
        let k = keys();
        let jws = sign_hs256(k.signing(), &serde_json::json!({"otk": 1})).unwrap();
        assert_eq!(verify_hs256::<Claims>(k.signing(), &jws), Err(JwsError::Malformed("claims")));
    }

    #[test]
    fn auth_id_hint_reads_the_session_id_of_a_signed_auth_id() {
        let rng = SystemRandom::new();
        let auth_id = sign_hs256(keys().signing(), &claims(mint_token(&rng, "02"))).unwrap();
        assert_eq!(auth_id_node_hint(&auth_id).as_deref(), Some("02"));
    }

    #[test]
    fn auth_id_hint_does_not_need_the_key_but_refuses_nonsense() {
        let payload = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
        let token = url_safe_token(&[("SI", "03")]);
        let unsigned = format!("x.{}.x", payload(serde_json::json!({"sessionId": token})));
        assert_eq!(auth_id_node_hint(&unsigned).as_deref(), Some("03"));
        let wrong_type = format!("x.{}.x", payload(serde_json::json!({"sessionId": 3})));
        let missing = format!("x.{}.x", payload(serde_json::json!({"realm": "/"})));
        let oversized =
            format!("x.{}.{}", payload(serde_json::json!({"sessionId": token})), "x".repeat(16384));
        for bad in [wrong_type, missing, oversized, String::new(), "x.y".into(), "a.!!.c".into()] {
            assert_eq!(auth_id_node_hint(&bad), None, "{bad:.80}");
        }
    }

    #[test]
    fn sealed_state_round_trips() {
        let rng = SystemRandom::new();
        let k = keys();
        for plaintext in [&b""[..], b"x", br#"{"step":2,"user":"demo"}"#] {
            let sealed = k.seal(&rng, plaintext);
            assert!(sealed.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(k.open(&sealed).as_deref(), Ok(plaintext));
        }
        assert_ne!(k.seal(&rng, b"x"), k.seal(&rng, b"x"), "nonces must be fresh");
    }

    #[test]
    fn tampered_or_foreign_sealed_state_is_refused() {
        let rng = SystemRandom::new();
        let k = keys();
        let sealed = URL_SAFE_NO_PAD.decode(k.seal(&rng, b"journey state")).unwrap();
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert_eq!(k.open(&URL_SAFE_NO_PAD.encode(&t)), Err(SealError::Unauthentic), "byte {i}");
        }
        let truncated = URL_SAFE_NO_PAD.encode(&sealed[..sealed.len() - 1]);
        assert_eq!(k.open(&truncated), Err(SealError::Unauthentic));
        let foreign = Keys::derive(b"other secret").seal(&rng, b"journey state");
        assert_eq!(k.open(&foreign), Err(SealError::Unauthentic));
        assert_eq!(k.open(""), Err(SealError::Malformed));
        assert_eq!(k.open("!!!!"), Err(SealError::Malformed));
        assert_eq!(k.open(&"A".repeat(MAX_SEALED_LEN + 1)), Err(SealError::TooLarge));
    }

    #[test]
    fn derived_keys_are_deterministic_and_independent() {
        let a = Keys::derive(b"secret");
        let b = Keys::derive(b"secret");
        let jws = sign_hs256(a.signing(), &claims("s".into())).unwrap();
        assert!(verify_hs256::<Claims>(b.signing(), &jws).is_ok());
        let sealed = a.seal(&SystemRandom::new(), b"state");
        assert_eq!(b.open(&sealed).as_deref(), Ok(&b"state"[..]));
        assert_eq!(format!("{a:?}"), "Keys { .. }");
    }

    #[test]
    fn random_b64_has_the_requested_entropy() {
        let rng = SystemRandom::new();
        let otk = random_b64(&rng, 17);
        assert_eq!(URL_SAFE_NO_PAD.decode(&otk).map(|b| b.len()), Ok(17));
        assert_eq!(random_b64(&rng, 0), "");
    }

    /// Deterministic xorshift64 so the pseudo-fuzz test is reproducible.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
        }
    }

    /// Mutates `seed` a few times: replace, insert or delete bytes, biased towards separator characters.
    fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
        const INTERESTING: &[u8] = b"*@#.=-_+/\0\xff\xc3A";
        let mut s = seed.to_vec();
        for _ in 0..=rng.below(4) {
            let byte = if rng.below(2) == 0 {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                u8::try_from(rng.next() & 0xff).unwrap()
            };
            let at = rng.below(s.len() + 1);
            match rng.below(4) {
                0 if at < s.len() => s[at] = byte,
                1 => s.insert(at, byte),
                2 if at < s.len() => {
                    s.remove(at);
                }
                _ => s.truncate(at),
            }
        }
        s
    }

    #[test]
    fn pseudo_fuzz_parsers_never_panic() {
        let sys = SystemRandom::new();
        let k = keys();
        let seeds: Vec<Vec<u8>> = vec![
            mint_token(&sys, "01").into_bytes(),
            format!("AQIC5wM2LY4Sfcz...*{AM_EXT}*").into_bytes(),
            plain_token(&[("SI", "02"), ("S1", "01")]).into_bytes(),
            sign_hs256(k.signing(), &claims(mint_token(&sys, "02"))).unwrap().into_bytes(),
            k.seal(&sys, b"journey state").into_bytes(),
            Vec::new(),
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for case in 0..4000 {
            let bytes = if case % 5 == 0 {
                (0..rng.below(200)).map(|_| u8::try_from(rng.next() & 0xff).unwrap()).collect()
            } else {
                {
                    let seed = rng.below(seeds.len());
                    mutate(&mut rng, &seeds[seed])
                }
            };
            let input = String::from_utf8_lossy(&bytes);
            let _ = node_hint(&input);
            let _ = decode_ext(&input);
            let _ = auth_id_node_hint(&input);
            let _ = verify_hs256::<serde_json::Value>(k.signing(), &input);
            let _ = verify_hs256::<Claims>(k.signing(), &input);
            let _ = k.open(&input);
        }
    }

    #[test]
    fn client_token_has_am_client_side_layout_byte_for_byte() {
        let rng = SystemRandom::new();
        let jwt = keys().seal_session(&rng, &claims("x".into())).unwrap();
        let token = mint_client_token(&rng, "01", &jwt);
        let (id, rest) = token.split_once('*').unwrap();
        let (ext, tail) = rest.split_once('*').unwrap();
        assert!(id.starts_with("AQIC") && id.len() == 4 + 43, "{id}");
        // writeUTF pairs: SI=01, S1=01, type=JWT, as AM's SessionID writes a client-side session's ext.
        let bytes = STANDARD.decode(ext.replace('-', "+").replace('_', "/").replace('.', "=")).unwrap();
        assert_eq!(bytes, b"\0\x02SI\0\x0201\0\x02S1\0\x0201\0\x04type\0\x03JWT");
        assert_eq!(tail, jwt);
        assert_eq!(node_hint(&token).as_deref(), Some("01"));
        assert_eq!(
            decode_ext(&token),
            Some(vec![("SI".into(), "01".into()), ("S1".into(), "01".into()), ("type".into(), "JWT".into())])
        );
        assert_eq!(client_session_jwt(&token).as_deref(), Some(jwt.as_str()));
        let encoded = token.replace('*', "%2A");
        assert_eq!(client_session_jwt(&format!("\"{encoded}\"")).as_deref(), Some(jwt.as_str()));
        assert!(token.len() < 1024, "{} bytes", token.len());
    }

    #[test]
    fn server_side_tokens_are_not_client_side() {
        let rng = SystemRandom::new();
        assert_eq!(client_session_jwt(&mint_token(&rng, "01")), None);
        assert_eq!(client_session_jwt(&format!("{}eyJ.e30.c2ln", url_safe_token(&[("SI", "02")]))), None);
        assert_eq!(client_session_jwt(&url_safe_token(&[("SI", "02"), ("type", "JWT")])), None, "no tail");
        assert_eq!(client_session_jwt("garbage"), None);
    }

    #[test]
    fn session_jwt_round_trips_and_refuses_tampering_and_other_secrets() {
        let rng = SystemRandom::new();
        let jwt = keys().seal_session(&rng, &claims("s".into())).unwrap();
        assert_eq!(jwt.split('.').count(), 5, "compact JWE: {jwt}");
        assert_eq!(keys().open_session::<Claims>(&jwt), Ok(claims("s".into())));
        let other = Keys::derive(b"another secret of at least 128 bits, for tests");
        assert_eq!(other.open_session::<Claims>(&jwt), Err(SealError::Unauthentic));
        // Flip one character of each of IV, ciphertext and tag.
        let segments: Vec<&str> = jwt.split('.').collect();
        for i in 2..5 {
            let mut s = segments.clone();
            let flipped: String = s[i]
                .char_indices()
                .map(|(n, c)| if n == 1 { if c == 'A' { 'B' } else { 'A' } } else { c })
                .collect();
            s[i] = &flipped;
            assert!(keys().open_session::<Claims>(&s.join(".")).is_err(), "segment {i}");
        }
        let other_header = jwt.replacen("eyJhbGciOiJkaXIi", "eyJhbGciOiJub25l", 1);
        assert_eq!(keys().open_session::<Claims>(&other_header), Err(SealError::Malformed));
        assert_eq!(
            keys().open_session::<Claims>(&"A".repeat(MAX_SESSION_JWT_LEN + 1)),
            Err(SealError::TooLarge)
        );
        for bad in ["", "....", "a.b.c", &format!("{jwt}.x")] {
            assert!(keys().open_session::<Claims>(bad).is_err(), "{bad}");
        }
        // Keys derived for authIds do not open sessions: the labels are distinct.
        let authid = sign_hs256(keys().signing(), &claims("s".into())).unwrap();
        assert!(keys().open_session::<Claims>(&authid).is_err());
    }
}
