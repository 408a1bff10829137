//! `/json[/realms/...]/sessions?_action=...`: AM's session actions, translated to and from the
//! [`SessionStore`](crate::auth::session::SessionStore).
//!
//! The token comes from the `tokenId` query parameter, else the header named like the session cookie,
//! else that cookie (AM's order, [`crate::am::request::session_token`]), else a body `{"tokenId"}`.

use http::header::HeaderMap;
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::am::crest;
use crate::am::request::{self, Query};
use crate::auth::AuthNode;
use crate::auth::error::AuthError;
use crate::auth::session::Session;
use crate::body::Body;

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
                 (validate, getSessionInfo, getSessionInfoAndResetIdleTime, refresh, logout)"
                    .into(),
            )
        })?;
        let token = self.request_token(parts.uri.query(), &parts.headers, body);
        let token = token.as_deref();
        let now = Instant::now();
        let get = async |reset: bool| -> Result<Option<Session>, AuthError> {
            let Some(token) = token else { return Ok(None) };
            let found =
                if reset { self.store.touch(token, now).await } else { self.store.get(token, now).await };
            Ok(found?)
        };
        let body = match action {
            // No idle reset: validating a session (agents do it on every request) is not using it.
            "validate" => match get(false).await? {
                Some(s) => {
                    json!({"valid": true, "sessionUid": s.handle, "uid": s.username, "realm": s.realm})
                }
                None => json!({"valid": false}),
            },
            "getSessionInfo" | "getSessionInfoAndResetIdleTime" => {
                let s = get(action == "getSessionInfoAndResetIdleTime")
                    .await?
                    .ok_or(AuthError::InvalidSession)?;
                self.session_info(&s)
            }
            "refresh" => {
                let s = get(true).await?.ok_or(AuthError::InvalidSession)?;
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
                    Some(t) => self.store.remove(t, now).await?,
                    None => false,
                };
                let result = if ended { "Successfully logged out" } else { "Token has expired" };
                json!({"result": result})
            }
            "logoutByHandle" => self.logout_by_handle(token, body, now).await?,
            other => return Err(AuthError::NotImplemented(other.to_owned())),
        };
        Ok(crest::json(StatusCode::OK, &body))
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
