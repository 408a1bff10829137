//! Affinity, in one place: reading node hints out of a request, and every rule of the affinity cookie
//! (how it is rendered, when an answer gets it, and whether the node's answer already sets it). Pure
//! functions, no I/O; both request paths (hyper's and the HTTP/1.1 fast path) use them.
//!
//! AM names the node holding a login's state in three places: the `amlbcookie` it sets when a login
//! starts, the `sessionId` claim inside every `authId` it returns, and the `S1`/`SI` extension of every
//! session token. Browsers return the cookie; REST clients that keep no cookie jar still echo the
//! `authId` and send the token, so reading all three keeps every step of a journey on its node.
//!
//! A hint is routing advice only: it may name an unknown node or be garbage, and then it is ignored
//! (counted as `invalid`), never an error.

use std::borrow::Cow;

use cookie::Cookie;
use http::{HeaderMap, HeaderValue};

use super::Pool;
use crate::am::request::{RequestHeaders, cookie_values, session_token};
use crate::config::{Affinity, AffinityMode, BackendId, HintSource};

/// What the hints of one request say.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    /// The node named by the first usable hint in the pool's order, and which hint that was.
    pub pinned: Option<(usize, HintSource)>,
    /// The node the affinity cookie names, for the `Set-Cookie` rules (`cookie_to_set`).
    pub cookie: Option<usize>,
    /// Some hint was present but named no configured node.
    pub invalid: bool,
}

/// Reads the pool's hints from a request. `json_body` is the peeked body of a JSON request of bounded
/// size, when there is one.
pub fn read<H: RequestHeaders + ?Sized>(
    pool: &Pool,
    headers: &H,
    query: Option<&str>,
    json_body: Option<&[u8]>,
) -> Hints {
    let mut hints = Hints::default();
    for &source in &pool.affinity.hints {
        // Once a hint pins the node the later ones change nothing (`invalid` only matters when none
        // does), so the costly ones are not read: a login step whose `amlbcookie` pins it never has its
        // authId decoded (the bulk of the proxy's work per request when it was). The cookie is still
        // read wherever it is listed: its value decides the `Set-Cookie` rules.
        if hints.pinned.is_some() && source != HintSource::Cookie {
            continue;
        }
        let found = match source {
            HintSource::Cookie => {
                let (found, present) = cookie_hint(pool, headers);
                hints.cookie = found;
                hints.invalid |= present && found.is_none();
                found
            }
            HintSource::SessionToken => token_hint(pool, headers, query, &mut hints.invalid),
            HintSource::AuthId => auth_id_hint(pool, json_body, &mut hints.invalid),
        };
        if hints.pinned.is_none()
            && let Some(index) = found
        {
            hints.pinned = Some((index, source));
        }
    }
    hints
}

/// The first affinity cookie naming a configured node (HAProxy also takes the first of duplicates, but
/// skipping unknown values keeps a client whose stale cookie sits beside a good one on its node), and
/// whether the cookie was present at all.
fn cookie_hint<H: RequestHeaders + ?Sized>(pool: &Pool, headers: &H) -> (Option<usize>, bool) {
    let mut present = false;
    for value in cookie_values(headers, pool.affinity.cookie.as_bytes()) {
        present = true;
        if let Some(index) = pool.index_of(value) {
            return (Some(index), true);
        }
    }
    (None, present)
}

fn token_hint<H: RequestHeaders + ?Sized>(
    pool: &Pool,
    headers: &H,
    query: Option<&str>,
    invalid: &mut bool,
) -> Option<usize> {
    let token = session_token(&pool.session_token, headers, query)?;
    let index = crate::am::token::node_hint_bytes(&token).and_then(|id| pool.index_of(id.as_bytes()));
    *invalid |= index.is_none();
    index
}

fn auth_id_hint(pool: &Pool, body: Option<&[u8]>, invalid: &mut bool) -> Option<usize> {
    let auth_id = first_auth_id(body.filter(|b| !b.is_empty())?)?;
    let index = crate::am::token::auth_id_node_hint(&auth_id).and_then(|id| pool.index_of(id.as_bytes()));
    *invalid |= index.is_none();
    index
}

/// The `authId` member of a JSON object, read up to it and no further: AM's clients send it first, so
/// the callbacks after it (most of the body) are never scanned. Advisory like every hint: with two
/// `authId` members the first names the node, and the node still verifies the one it uses.
fn first_auth_id(body: &[u8]) -> Option<Cow<'_, str>> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};

    #[derive(serde::Deserialize)]
    enum Key {
        #[serde(rename = "authId")]
        AuthId,
        #[serde(other)]
        Other,
    }
    #[derive(serde::Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

    struct UpToAuthId<'s, 'de>(&'s mut Option<Cow<'de, str>>);
    impl<'de> Visitor<'de> for UpToAuthId<'_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::AuthId => {
                        *self.0 = Some(map.next_value::<Text<'de>>()?.0);
                        return Ok(());
                    }
                    Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }
    let mut found = None;
    // Stopping inside the object makes the parser report an unfinished object afterwards: expected.
    let _ = serde_json::Deserializer::from_slice(body).deserialize_map(UpToAuthId(&mut found));
    found
}

/// `amlbcookie=01; Path=/; HttpOnly; SameSite=Lax` with the pool's attributes, rendered once per snapshot
/// and node. No `Expires`: AM's own `amlbcookie` is a session cookie too.
pub fn render_cookie(a: &Affinity, id: &BackendId, tls: bool) -> HeaderValue {
    let mut c = Cookie::build((a.cookie.as_str(), id.as_str()))
        .path(a.path.as_str())
        .http_only(a.http_only)
        .secure(a.secure || tls)
        .same_site(match a.same_site {
            crate::config::SameSite::Lax => cookie::SameSite::Lax,
            crate::config::SameSite::Strict => cookie::SameSite::Strict,
            crate::config::SameSite::None => cookie::SameSite::None,
        });
    if let Some(d) = &a.domain {
        c = c.domain(d.as_str());
    }
    // Names, IDs and attributes were validated as header-safe when the config loaded.
    HeaderValue::from_str(&c.build().to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The pre-rendered `Set-Cookie` the answer of node `served` gets (`insert`: unless the request's cookie
/// already named it, as HAProxy's `cookie ... insert`; both modes: a cookie that named another node is
/// rewritten), before checking that the node does not set the cookie itself ([`sets_cookie`]).
/// `tls` picks the value with `Secure`.
pub fn cookie_to_set<'a>(pool: &'a Pool, served: usize, hints: &Hints, tls: bool) -> Option<&'a HeaderValue> {
    let wants = match pool.affinity.mode {
        AffinityMode::Insert => hints.cookie != Some(served),
        AffinityMode::Observe => hints.cookie.is_some_and(|named| named != served),
    };
    let backend = &pool.backends[served];
    wants.then_some(if tls { &backend.set_cookie_secure } else { &backend.set_cookie })
}

/// Whether a response already sets the cookie `name`: the node's own `amlbcookie` wins and the proxy
/// adds no second one (AM sets it itself when it knows its server ID).
pub fn sets_cookie(headers: &HeaderMap, name: &str) -> bool {
    headers.get_all(http::header::SET_COOKIE).iter().any(|v| sets_cookie_named(v.as_bytes(), name.as_bytes()))
}

/// Whether one `Set-Cookie` value sets the cookie `name` (exactly that name: `amlbcookie2` is another
/// cookie).
pub fn sets_cookie_named(value: &[u8], name: &[u8]) -> bool {
    let v = value.trim_ascii_start();
    v.strip_prefix(name).is_some_and(|rest| rest.trim_ascii_start().starts_with(b"="))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{StateRegistry, Upstreams};

    fn pool_with_hints(hints: &str) -> Upstreams {
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[[pool]]\nname = \"am\"\n\
             [pool.affinity]\nhints = {hints}\n\
             [[pool.backend]]\nid = \"01\"\nurl = \"http://127.0.0.1:1\"\n\
             [[pool.backend]]\nid = \"02\"\nurl = \"http://127.0.0.1:2\"\n[[route]]\npool = \"am\"\n"
        );
        let config = crate::config::parse(&text).unwrap();
        Upstreams::build(&config, &StateRegistry::default(), &crate::metrics::Metrics::default())
    }

    #[test]
    fn the_auth_id_is_read_up_to_where_it_ends() {
        assert_eq!(first_auth_id(br#"{"authId":"a.b.c","callbacks":[{"x":1}]}"#).as_deref(), Some("a.b.c"));
        assert_eq!(first_auth_id(br#"{"stage":"x","authId":"a\u002eb","extra":"#).as_deref(), Some("a.b"));
        assert_eq!(first_auth_id(br#"{"authId":"first","authId":"second"}"#).as_deref(), Some("first"));
        for none in [&br#"{"callbacks":[]}"#[..], br#"{"authId":7}"#, b"[1,2]", b"not json", br#"{"a":"#] {
            assert_eq!(first_auth_id(none), None, "{}", String::from_utf8_lossy(none));
        }
    }

    #[test]
    fn hints_after_the_one_that_pinned_are_not_read_but_the_cookie_always_is() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, HeaderValue::from_static("amlbcookie=01"));
        // An authId naming no node: it would count as invalid if it were read.
        let garbage = br#"{"authId":"x.eyJzZXNzaW9uSWQiOiJub3BlIn0.x"}"#;
        let up = pool_with_hints(r#"["cookie", "auth_id"]"#);
        let hints = read(&up.pools[0], &headers, None, Some(garbage));
        assert_eq!(hints, Hints { pinned: Some((0, HintSource::Cookie)), cookie: Some(0), invalid: false });
        // Read alone, the same authId is invalid.
        let up = pool_with_hints(r#"["auth_id", "cookie"]"#);
        let hints = read(&up.pools[0], &HeaderMap::new(), None, Some(garbage));
        assert_eq!(hints, Hints { pinned: None, cookie: None, invalid: true });
        // The session token pins first; the cookie after it is still read for the `Set-Cookie` rules.
        let up = pool_with_hints(r#"["session_token", "cookie"]"#);
        let token = crate::am::token::mint_token(&ring::rand::SystemRandom::new(), "02");
        headers.insert("iplanetdirectorypro", HeaderValue::from_str(&token).unwrap());
        let hints = read(&up.pools[0], &headers, None, None);
        assert_eq!(
            hints,
            Hints { pinned: Some((1, HintSource::SessionToken)), cookie: Some(0), invalid: false }
        );
    }

    #[test]
    fn set_cookie_detection_matches_the_exact_name() {
        let mut h = HeaderMap::new();
        h.append(http::header::SET_COOKIE, HeaderValue::from_static("amlbcookie2=1"));
        assert!(!sets_cookie(&h, "amlbcookie"));
        h.append(http::header::SET_COOKIE, HeaderValue::from_static("amlbcookie=01; Path=/"));
        assert!(sets_cookie(&h, "amlbcookie"));
        assert!(sets_cookie_named(b" amlbcookie =01", b"amlbcookie"));
        assert!(!sets_cookie_named(b"xamlbcookie=01", b"amlbcookie"));
    }
}
