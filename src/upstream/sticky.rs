//! Reading node hints out of a request (SPEC 4.1, 4.2). Pure functions, no I/O.
//!
//! AM names the node holding a login's state in three places: the `amlbcookie` it sets when a login
//! starts, the `sessionId` claim inside every `authId` it returns, and the `S1`/`SI` extension of every
//! session token. Browsers return the cookie; REST clients that keep no cookie jar still echo the
//! `authId` and send the token, so reading all three keeps every step of a journey on its node.
//!
//! A hint is routing advice only: it may name an unknown node or be garbage, and then it is ignored
//! (counted as `invalid`), never an error.

use std::borrow::Cow;

use super::Pool;
use crate::am::request::{RequestHeaders, cookie_values, session_token};
use crate::config::HintSource;

/// What the hints of one request say.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    /// The node named by the first usable hint in the pool's order, and which hint that was.
    pub pinned: Option<(usize, HintSource)>,
    /// The node the affinity cookie names, for the `Set-Cookie` rules of SPEC 4.3.
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
    let index = std::str::from_utf8(&token)
        .ok()
        .and_then(crate::am::token::node_hint)
        .and_then(|id| pool.index_of(id.as_bytes()));
    *invalid |= index.is_none();
    index
}

fn auth_id_hint(pool: &Pool, body: Option<&[u8]>, invalid: &mut bool) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Continuation<'a> {
        #[serde(rename = "authId", borrow)]
        auth_id: Option<Cow<'a, str>>,
    }
    let body = body.filter(|b| !b.is_empty())?;
    let auth_id = serde_json::from_slice::<Continuation<'_>>(body).ok()?.auth_id?;
    let index = crate::am::token::auth_id_node_hint(&auth_id).and_then(|id| pool.index_of(id.as_bytes()));
    *invalid |= index.is_none();
    index
}
