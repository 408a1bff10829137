//! The readers of where AM clients put things (`Cookie` pairs, the query string, the session token's
//! three places) and the pools' hints built on them, which also read the `authId` of a JSON body.
//! Input: `cookie \n query \n session header \n body`. Checks: never a panic; a cookie value is a piece
//! of its header without `;`; the query reader's two forms agree; the session token is taken in AM's
//! order; a pinned node is a configured one, named by the hint that pinned it.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use tether::am::request::{Query, TokenPlaces, cookie_values, query_param, session_token};
use tether::am::token;
use tether_fuzz::{SNAPSHOT, split_once};

fuzz_target!(|data: &[u8]| {
    let (cookie, rest) = split_once(data, b'\n');
    let (query, rest) = split_once(rest, b'\n');
    let (header, body) = split_once(rest, b'\n');
    let query = String::from_utf8_lossy(query);
    let fields = [
        httparse::Header { name: "Cookie", value: cookie },
        httparse::Header { name: "iPlanetDirectoryPro", value: header },
    ];
    let fields = &fields[..];

    let range = cookie.as_ptr_range();
    for name in [&b"amlbcookie"[..], b"iPlanetDirectoryPro", b""] {
        for value in cookie_values(fields, name) {
            let inside = range.start <= value.as_ptr_range().start && value.as_ptr_range().end <= range.end;
            assert!(inside, "a cookie value from outside the Cookie field: {value:?}");
            assert!(!value.contains(&b';'), "{value:?}");
            let _ = token::node_hint_bytes(value);
        }
    }

    let parsed = Query::parse(Some(&query));
    for name in ["tokenId", "_action", ""] {
        assert_eq!(query_param(&query, name).as_deref(), parsed.get(name), "{name}");
    }

    let places = TokenPlaces::configured("iPlanetDirectoryPro");
    let found = session_token(&places, fields, Some(&query));
    let expected = parsed
        .get("tokenId")
        .filter(|t| !t.is_empty())
        .map(|t| Cow::Owned(t.as_bytes().to_vec()))
        .or_else(|| (!header.is_empty()).then_some(Cow::Borrowed(header)))
        .or_else(|| cookie_values(fields, b"iPlanetDirectoryPro").find(|v| !v.is_empty()).map(Cow::Borrowed));
    assert_eq!(found, expected);

    for pool in &SNAPSHOT.upstreams.pools {
        let hints = tether::hot_path::read_hints(pool, fields, Some(&query), Some(body));
        if let Some((index, _)) = hints.pinned {
            assert!(index < pool.backends.len());
        }
        if let Some(index) = hints.cookie {
            assert!(index < pool.backends.len());
        }
    }
});
