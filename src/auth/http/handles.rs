//! `sessions?_action=logoutByHandle`: AM's administrative logout of sessions named by their handles,
//! allowed only to a caller whose own session belongs to an `admin = true` user (AM's amadmin).

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::auth::AuthNode;
use crate::auth::error::AuthError;

/// AM's refusal of a body without the handle list (`LogoutByHandleActionHandler`).
const NO_HANDLES: &str =
    "The \"sessionHandles\" field is not defined in the request or it's not a JSON array";

impl AuthNode {
    /// Ends each session named in the body's `sessionHandles` in the node's store:
    /// `{"result":{"shandle:…":true|false}}`, `false` for one that was not live. The caller's own
    /// session comes from the usual token places; without one of an admin user the answer is 401.
    pub(super) async fn logout_by_handle(
        &self,
        caller: Option<&str>,
        body: &[u8],
        now: Instant,
    ) -> Result<Value, AuthError> {
        // The body first: AM's handler checks it before the caller's rights.
        let request: Value = serde_json::from_slice(body.trim_ascii()).unwrap_or(Value::Null);
        let Some(handles) = request.get("sessionHandles").and_then(Value::as_array) else {
            return Err(AuthError::BadRequest(NO_HANDLES.into()));
        };
        let caller = match caller {
            Some(token) => self.store.get(token, now).await?,
            None => None,
        };
        let is_admin =
            caller.is_some_and(|s| self.auth.users.iter().any(|u| u.admin && u.username == s.username));
        if !is_admin {
            return Err(AuthError::AccessDenied);
        }
        let admin = self.store.admin().ok_or(AuthError::AccessDenied)?;
        let mut result = Map::new();
        for handle in handles.iter().filter_map(Value::as_str) {
            let ended = admin.end_handle(handle, now).await?;
            result.insert(handle.to_owned(), Value::Bool(ended));
        }
        Ok(json!({"result": result}))
    }
}
