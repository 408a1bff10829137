//! AM's session timer actions of `sessions?_action=`: `isActive`, `getTimeLeft`, `getMaxSessionTime`,
//! `getMaxIdle`, `getIdle`, with AM's field names and units (OpenAM's REST guide, "Session Information"):
//!
//! | action | answer | unit |
//! |---|---|---|
//! | `isActive` | `{"active":true}`; `&refresh=true` resets the idle timer | |
//! | `getTimeLeft` | `{"maxtime":7022}` | seconds until the session's maximum lifetime ends |
//! | `getMaxSessionTime` | `{"maxsessiontime":120}` | minutes |
//! | `getMaxIdle` | `{"maxidletime":30}` | minutes |
//! | `getIdle` | `{"idletime":355}` | seconds since the last access |
//!
//! A token that names no live session is `{"active":false}`, and `-1` for the numbers, as OpenAM's
//! session resource answers for an expired session: a caller polling a timer sees the session end
//! without an error. No token at all is 401 `Access Denied`, decided by the caller.

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::auth::AuthNode;
use crate::auth::error::AuthError;
use crate::auth::session::Session;

/// The actions this file answers.
pub(super) const ACTIONS: [&str; 5] =
    ["isActive", "getTimeLeft", "getMaxSessionTime", "getMaxIdle", "getIdle"];

impl AuthNode {
    /// Answers timer `action` for `token`; `refresh` (only `isActive&refresh=true`) resets the idle timer,
    /// which for a client-side session is a reissued token (the second value) for the caller to set.
    pub(super) async fn timer(
        &self,
        action: &str,
        token: &str,
        refresh: bool,
        now: Instant,
    ) -> Result<(Value, Option<String>), AuthError> {
        let found = self.find_session(token, refresh, now).await?;
        let body = answer(action, found.as_ref().map(|f| &f.session), now);
        Ok((body, found.and_then(|f| f.reissued)))
    }
}

/// The body of timer `action` for the session `s` (`None`: no live session) at `now`.
fn answer(action: &str, s: Option<&Session>, now: Instant) -> Value {
    let seconds = |d: std::time::Duration| d.as_secs() as i64;
    match action {
        "isActive" => json!({"active": s.is_some()}),
        "getTimeLeft" => {
            json!({"maxtime": s.map_or(-1, |s| seconds(s.max_expiry().saturating_duration_since(now)))})
        }
        "getMaxSessionTime" => json!({"maxsessiontime": s.map_or(-1, |s| seconds(s.max_time) / 60)}),
        "getMaxIdle" => json!({"maxidletime": s.map_or(-1, |s| seconds(s.max_idle) / 60)}),
        _ => json!({"idletime": s.map_or(-1, |s| seconds(now.saturating_duration_since(s.last_access)))}),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_use_ams_names_and_units() {
        let t0 = Instant::now();
        let s = Session::new(
            "t",
            "h",
            "demo",
            "/",
            t0,
            Duration::from_secs(30 * 60),
            Duration::from_secs(120 * 60),
        );
        let later = t0 + Duration::from_secs(355);
        assert_eq!(answer("isActive", Some(&s), later), json!({"active": true}));
        assert_eq!(answer("getTimeLeft", Some(&s), later), json!({"maxtime": 7200 - 355}));
        assert_eq!(answer("getMaxSessionTime", Some(&s), later), json!({"maxsessiontime": 120}));
        assert_eq!(answer("getMaxIdle", Some(&s), later), json!({"maxidletime": 30}));
        assert_eq!(answer("getIdle", Some(&s), later), json!({"idletime": 355}));
        assert_eq!(answer("isActive", None, later), json!({"active": false}));
        for (action, field) in
            [("getTimeLeft", "maxtime"), ("getMaxIdle", "maxidletime"), ("getIdle", "idletime")]
        {
            assert_eq!(answer(action, None, later)[field], -1, "{action}");
        }
    }
}
