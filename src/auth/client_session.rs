//! Client-side sessions (`session_location = "client"`): the tokenId carries the whole session.
//!
//! As in AM's client-side sessions, a login hands out a token in AM's client-side layout
//! ([`crate::am::token::mint_client_token`]: `ext` with `SI`, `S1` = the issuing node and `type=JWT`,
//! the session JWT as tail) and keeps nothing. The JWT holds what AM's does (subject, realm, handle,
//! creation and latest access time, idle and maximum times), signed with HS256 and encrypted with
//! AES-256-GCM under keys derived from the shared secret ([`Keys::seal_session`]), so any node of any
//! process that shares the secret answers `validate`, `getSessionInfo`, `refresh` and `isActive` with
//! no store. An idle reset reissues the token with a new latest access time (`Set-Cookie`), since the
//! old one cannot change. Logout puts the session's handle on the node's [`Denylist`] until the session
//! would have ended anyway; with `sessions = "redis"` that list is shared by every node on the store.
//!
//! A token that is not a client-side one goes to the session store as before, so the session actions
//! call [`AuthNode::find_session`] and [`AuthNode::end_session`] whatever the mode.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::am::time::Clock;
use crate::am::token::{self, Keys};
use crate::auth::AuthNode;
use crate::auth::error::AuthError;
use crate::auth::session::Session;
use crate::config::SessionLocation;

/// The session JWT's claims, named like AM's client-side session JSON where AM has a name. Times are
/// Unix seconds (nodes in other processes share no monotonic clock), durations seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    /// The user (JWT `sub`, RFC 7519 §4.1.2).
    sub: String,
    /// The realm the user authenticated in.
    realm: String,
    /// The session handle: names the session in the denylist, the same in every reissued token.
    #[serde(rename = "sessionHandle")]
    handle: String,
    /// When the session was created (AM's `creationTimeInSeconds`).
    #[serde(rename = "creationTimeInSeconds")]
    created: u64,
    /// Last idle reset (AM's `latestAccessTimeInSeconds`).
    #[serde(rename = "latestAccessTimeInSeconds")]
    last_access: u64,
    /// Idle timeout in seconds.
    #[serde(rename = "maxIdleSeconds")]
    max_idle: u64,
    /// Maximum lifetime in seconds.
    #[serde(rename = "maxSessionSeconds")]
    max_time: u64,
    /// When this token's session ends if unused (RFC 7519 §4.1.4), for JOSE tools; opening recomputes
    /// it from the other claims.
    exp: u64,
}

/// What a session action found for a token: the session, and the token to hand back when an idle reset
/// had to reissue it (client-side sessions only).
#[derive(Debug)]
pub(super) struct Found {
    pub session: Session,
    pub reissued: Option<String>,
}

/// A client-side token for `session`, issued by node `node`, its times read through `clock`.
///
/// # Errors
/// [`AuthError::Internal`] only if the claims cannot be serialized, which plain strings and integers
/// never fail.
pub(crate) fn issue(
    keys: &Keys,
    rng: &dyn SecureRandom,
    node: &str,
    session: &Session,
    clock: &Clock,
) -> Result<String, AuthError> {
    let secs = |at: Instant| clock.unix_at(at).as_secs();
    let claims = Claims {
        sub: session.username.clone(),
        realm: session.realm.clone(),
        handle: session.handle.clone(),
        created: secs(session.created),
        last_access: secs(session.last_access),
        max_idle: session.max_idle.as_secs(),
        max_time: session.max_time.as_secs(),
        exp: secs(session.expires_at()),
    };
    let jwt = keys
        .seal_session(rng, &claims)
        .map_err(|e| AuthError::Internal(format!("cannot serialize a client-side session: {e}")))?;
    Ok(token::mint_client_token(rng, node, &jwt))
}

/// The session inside a client-side `token` that is live at `now`; `None` for a token that is tampered
/// with, sealed under another secret, malformed or expired (the caller answers `{"valid":false}`).
fn open(keys: &Keys, token: &str, jwt: &str, clock: &Clock, now: Instant) -> Option<Session> {
    let claims: Claims = keys.open_session(jwt).ok()?;
    let at = |secs: u64| clock.instant_at(Duration::from_secs(secs), now);
    let session = Session {
        token: token.to_owned(),
        handle: claims.handle,
        username: claims.sub,
        realm: claims.realm,
        created: at(claims.created),
        last_access: at(claims.last_access),
        max_idle: Duration::from_secs(claims.max_idle),
        max_time: Duration::from_secs(claims.max_time),
    };
    session.is_live(now).then_some(session)
}

impl AuthNode {
    /// The session `token` names at `now`, its idle timer reset first when `reset`.
    ///
    /// Server-side tokens are looked up in the store; client-side ones (with `session_location =
    /// "client"`) are opened here and checked against the denylist, and a reset reissues them.
    ///
    /// # Errors
    /// [`AuthError::StoreUnavailable`] when the store (or the denylist) cannot answer: a session that
    /// may be live is never reported gone, nor a denied one live.
    pub(super) async fn find_session(
        &self,
        token: &str,
        reset: bool,
        now: Instant,
    ) -> Result<Option<Found>, AuthError> {
        let Some(jwt) = self.client_jwt(token) else {
            let found =
                if reset { self.store.touch(token, now).await } else { self.store.get(token, now).await };
            return Ok(found?.map(|session| Found { session, reissued: None }));
        };
        let Some(mut session) = open(self.login.keys(), token, &jwt, &self.clock, now) else {
            return Ok(None);
        };
        if self.denylist.is_denied(&session.handle, now).await? {
            return Ok(None);
        }
        if !reset {
            return Ok(Some(Found { session, reissued: None }));
        }
        session.last_access = now;
        session.token =
            issue(self.login.keys(), &SystemRandom::new(), self.id.as_str(), &session, &self.clock)?;
        Ok(Some(Found { reissued: Some(session.token.clone()), session }))
    }

    /// Ends the session `token` names. True iff a live session ended (the first logout of it).
    ///
    /// A client-side session goes on the denylist until its maximum expiry: every token reissued from it
    /// expires by then, so the entry outlives all of them and no longer.
    ///
    /// # Errors
    /// [`AuthError::StoreUnavailable`] when the store (or the denylist) cannot answer.
    pub(super) async fn end_session(&self, token: &str, now: Instant) -> Result<bool, AuthError> {
        let Some(jwt) = self.client_jwt(token) else {
            return Ok(self.store.remove(token, now).await?);
        };
        let Some(session) = open(self.login.keys(), token, &jwt, &self.clock, now) else {
            return Ok(false);
        };
        let ttl = session.max_expiry().saturating_duration_since(now);
        Ok(self.denylist.deny(&session.handle, ttl, now).await?)
    }

    /// The session JWT of a client-side token, if this node issues client-side sessions. A node with
    /// `session_location = "server"` trusts its store only.
    fn client_jwt(&self, token: &str) -> Option<String> {
        (self.auth.session_location == SessionLocation::Client).then(|| token::client_session_jwt(token))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a cluster secret of at least 128 bits, for tests only";

    fn session(now: Instant) -> Session {
        let (idle, max) = (Duration::from_secs(30 * 60), Duration::from_secs(120 * 60));
        Session::new("unused", "shandle:abc", "demo", "/", now, idle, max)
    }

    fn jwt_of(token: &str) -> String {
        token::client_session_jwt(token).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn issued_token_opens_to_the_same_session_on_any_node_with_the_secret() {
        let now = Instant::now();
        let clock = Clock::new();
        let token = issue(&Keys::derive(SECRET), &SystemRandom::new(), "01", &session(now), &clock).unwrap();
        assert_eq!(token::node_hint(&token).as_deref(), Some("01"));
        // Another process: same secret, its own clock.
        let other = Clock::new();
        let opened = open(&Keys::derive(SECRET), &token, &jwt_of(&token), &other, now).unwrap();
        assert_eq!((opened.username.as_str(), opened.realm.as_str()), ("demo", "/"));
        assert_eq!(opened.handle, "shandle:abc");
        assert_eq!(opened.max_idle, Duration::from_secs(1800));
        assert_eq!(other.unix_at(opened.created).as_secs(), clock.unix_at(now).as_secs());
        let foreign = Keys::derive(b"another secret of at least 128 bits, for tests");
        assert!(open(&foreign, &token, &jwt_of(&token), &clock, now).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_tampered_token_opens_to_nothing() {
        let now = Instant::now();
        let clock = Clock::new();
        let keys = Keys::derive(SECRET);
        let token = issue(&keys, &SystemRandom::new(), "01", &session(now), &clock).unwrap();
        let jwt = jwt_of(&token);
        for i in (jwt.len() - 40..jwt.len()).step_by(7) {
            let mut bytes = jwt.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(open(&keys, &token, &tampered, &clock, now).is_none(), "byte {i}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_session_ends_at_its_idle_and_maximum_expiry() {
        let start = Instant::now();
        let clock = Clock::new();
        let keys = Keys::derive(SECRET);
        let rng = SystemRandom::new();
        let token = issue(&keys, &rng, "01", &session(start), &clock).unwrap();
        tokio::time::advance(Duration::from_secs(29 * 60)).await;
        let now = Instant::now();
        let mut live = open(&keys, &token, &jwt_of(&token), &clock, now).expect("idle 29 of 30 minutes");
        tokio::time::advance(Duration::from_secs(2 * 60)).await;
        assert!(open(&keys, &token, &jwt_of(&token), &clock, Instant::now()).is_none(), "idle 31 minutes");
        // An idle reset at minute 29 is a new token that lives on, up to the maximum time.
        live.last_access = now;
        let reissued = issue(&keys, &rng, "01", &live, &clock).unwrap();
        assert!(open(&keys, &reissued, &jwt_of(&reissued), &clock, Instant::now()).is_some());
        let mut last = reissued;
        for _ in 0..4 {
            tokio::time::advance(Duration::from_secs(25 * 60)).await;
            let now = Instant::now();
            let Some(mut s) = open(&keys, &last, &jwt_of(&last), &clock, now) else { break };
            s.last_access = now;
            last = issue(&keys, &rng, "01", &s, &clock).unwrap();
        }
        let end = start + Duration::from_secs(120 * 60);
        assert!(Instant::now() >= end, "the loop ran past the maximum time");
        assert!(open(&keys, &last, &jwt_of(&last), &clock, Instant::now()).is_none(), "past 120 minutes");
    }
}
