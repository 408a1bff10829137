//! `/json[/realms/...]/sessions?_action=...`: AM's session actions, translated to and from the
//! [`SessionStore`](crate::auth::session::SessionStore).
//!
//! The token comes from the `tokenId` query parameter, else the header named like the session cookie,
//! else that cookie (AM's order, [`crate::am::request::session_token`]), else a body `{"tokenId"}`.

use cookie::Cookie;
use http::header::HeaderMap;
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::authenticate::add_cookie;
use super::{logout, timers};
use crate::am::crest;
use crate::am::request::{self, Query};
use crate::auth::AuthNode;
use crate::auth::client_session::Found;
use crate::auth::error::AuthError;
use crate::auth::session::Session;
use crate::body::Body;

/// The actions of this file that need a session (besides [`timers::ACTIONS`]).
const KNOWN: [&str; 4] = ["getSessionInfo", "getSessionInfoAndResetIdleTime", "refresh", "logout"];

impl AuthNode {
    /// Runs the `_action` of one `sessions` request whose `body` was read already.
    ///
    /// A store that cannot be reached is [`AuthError::StoreUnavailable`] (503) for every action, `validate`
    /// included: `{"valid":false}` would make agents log out a user whose session may be live.
    pub(super) async fn sessions(&self, parts: &Parts, body: &[u8]) -> Result<Response<Body>, AuthError> {
        let query = Query::parse(parts.uri.query());
        let action = query.get("_action").ok_or_else(|| {
            AuthError::BadRequest(
                "The _action query parameter is required \
                 (validate, getSessionInfo, getSessionInfoAndResetIdleTime, refresh, logout, isActive, \
                 getTimeLeft, getMaxSessionTime, getMaxIdle, getIdle)"
                    .into(),
            )
        })?;
        let token = self.request_token(parts.uri.query(), &parts.headers, body);
        let token = token.as_deref();
        // AM answers `validate` without a token with `{"valid":false}`, every other action with 401.
        if token.is_none()
            && action != "validate"
            && KNOWN.iter().chain(&timers::ACTIONS).any(|a| *a == action)
        {
            return Err(AuthError::AccessDenied);
        }
        let now = Instant::now();
        // Client-side sessions are opened from the token itself (see `AuthNode::find_session`); an idle
        // reset then hands out a reissued token.
        let get = async |reset: bool| -> Result<Option<Found>, AuthError> {
            let Some(token) = token else { return Ok(None) };
            self.find_session(token, reset, now).await
        };
        let mut reissued = None;
        let body = match action {
            // No idle reset: validating a session (agents do it on every request) is not using it.
            "validate" => match get(false).await? {
                Some(Found { session: s, .. }) => {
                    json!({"valid": true, "sessionUid": s.handle, "uid": s.username, "realm": s.realm})
                }
                None => json!({"valid": false}),
            },
            "getSessionInfo" | "getSessionInfoAndResetIdleTime" => {
                let found = get(action == "getSessionInfoAndResetIdleTime")
                    .await?
                    .ok_or(AuthError::InvalidSession)?;
                reissued = found.reissued;
                self.session_info(&found.session)
            }
            "refresh" => {
                let found = get(true).await?.ok_or(AuthError::InvalidSession)?;
                let s = found.session;
                reissued = found.reissued;
                json!({
                    "uid": s.username,
                    "realm": s.realm,
                    "idletime": 0,
                    "maxidletime": s.max_idle.as_secs() / 60,
                    "maxsessiontime": s.max_time.as_secs() / 60,
                    "maxtime": s.max_expiry().saturating_duration_since(now).as_secs(),
                })
            }
            "logout" => {
                let ended = match token {
                    Some(t) => self.end_session(t, now).await?,
                    None => false,
                };
                let result = if ended { "Successfully logged out" } else { "Token has expired" };
                let mut resp = crest::json(StatusCode::OK, &json!({"result": result}));
                logout::expire_cookies(&self.auth, &mut resp);
                return Ok(resp);
            }
            timer if timers::ACTIONS.contains(&timer) => {
                // AM's `isActive&refresh=true` resets the idle timer as well.
                let refresh = timer == "isActive" && query.get("refresh") == Some("true");
                let (body, new_token) = self.timer(timer, token.unwrap_or_default(), refresh, now).await?;
                reissued = new_token;
                body
            }
            "logoutByHandle" => self.logout_by_handle(token, body, now).await?,
            other => return Err(AuthError::NotImplemented(other.to_owned())),
        };
        let mut resp = crest::json(StatusCode::OK, &body);
        if let Some(token) = reissued {
            // A client-side session's idle reset is a new token: the old one still says the old time.
            let cookie = Cookie::build((self.auth.session_cookie.as_str(), token.as_str()))
                .path("/")
                .http_only(true)
                .build();
            add_cookie(&mut resp, &cookie.to_string());
        }
        Ok(resp)
    }

    fn request_token(&self, query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Option<String> {
        let from_body = || {
            let value: Value = serde_json::from_slice(body.trim_ascii()).ok()?;
            value.get("tokenId")?.as_str().map(str::to_owned)
        };
        request::session_token(&self.token_places, headers, query)
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .or_else(from_body)
            .filter(|t| !t.is_empty())
    }

    /// AM's `getSessionInfo` answer, times in ISO-8601 from the node's clock.
    fn session_info(&self, s: &Session) -> Value {
        json!({
            "username": s.username,
            "universalId": universal_id(&s.username, &s.realm),
            "realm": s.realm,
            "latestAccessTime": self.clock.iso_at(s.last_access),
            "maxIdleExpirationTime": self.clock.iso_at(s.idle_expiry()),
            "maxSessionExpirationTime": self.clock.iso_at(s.max_expiry()),
            "properties": {"AMCtxId": s.handle},
        })
    }
}

/// AM's universal ID of a user: `id=<user>,ou=user,<realm DN>`, the realm DN being
/// `dc=openam,dc=forgerock,dc=org` for the root and `o=<name>,...,ou=services,<root DN>` below it.
fn universal_id(username: &str, realm: &str) -> String {
    const ROOT_DN: &str = "dc=openam,dc=forgerock,dc=org";
    let subs: Vec<&str> = realm.split('/').filter(|s| !s.is_empty()).rev().collect();
    if subs.is_empty() {
        format!("id={username},ou=user,{ROOT_DN}")
    } else {
        let orgs: Vec<String> = subs.iter().map(|s| format!("o={s}")).collect();
        format!("id={username},ou=user,{},ou=services,{ROOT_DN}", orgs.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn universal_ids_follow_am_realm_dns() {
        assert_eq!(universal_id("demo", "/"), "id=demo,ou=user,dc=openam,dc=forgerock,dc=org");
        assert_eq!(
            universal_id("demo", "/a"),
            "id=demo,ou=user,o=a,ou=services,dc=openam,dc=forgerock,dc=org"
        );
    }
}
