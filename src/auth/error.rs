//! Every way the auth node refuses a request, and the one place they become AM's JSON answers.
//!
//! AM's clients branch on these answers (the ForgeRock JS SDK restarts a journey on `Session has timed
//! out`, agents retry on 5xx), so the texts are AM's own where AM has one: `Authentication Failed` (401),
//! `Session has timed out` with `errorCode` 110 (401; what AM answers when another node gets a chain's
//! step), `Maximum Sessions Limit Reached.` (401), `Failed to parse JWT` and `AuthId JWT Signature not
//! valid` (400). [`AuthError::to_response`] is the only function that turns them into responses.

use http::header::{ALLOW, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use serde_json::json;

use crate::am::crest;
use crate::am::token::JwsError;
use crate::auth::http::MAX_BODY;
use crate::auth::journey::ResolveError;
use crate::auth::session::StoreError;

/// Seconds a client should wait before retrying while the session store is unreachable (RFC 9110
/// §10.2.3): a reconnect to Redis takes well under a second once it is back.
const STORE_RETRY_AFTER: &str = "1";
use crate::body::Body;

/// Why the auth node refused a request. Displays as the `message` of the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A module refused the step's answers (wrong password, wrong code, unknown user): AM ends the chain.
    #[error("Authentication Failed")]
    Failed,
    /// The login cannot be continued here: expired, replayed, held by another node, or from another realm.
    /// `why` is for logs only; clients get AM's text and error code 110.
    #[error("Session has timed out")]
    TimedOut {
        /// What made the step unanswerable.
        why: &'static str,
    },
    /// The `authId` is not a compact JWS with the claims of one; `why` says which part failed.
    #[error("Failed to parse JWT, {0}")]
    MalformedAuthId(&'static str),
    /// The body's `authId` is JSON but not a string.
    #[error("Failed to parse JWT: authId is not a string")]
    AuthIdNotString,
    /// The `authId` was forged, tampered with, or signed with another cluster's secret.
    #[error("AuthId JWT Signature not valid")]
    BadAuthIdSignature,
    /// A `DENY_ACCESS` session quota refused the login.
    #[error("Maximum Sessions Limit Reached.")]
    QuotaExceeded,
    /// The requested `authIndexType`/`authIndexValue` names nothing this node runs.
    #[error(transparent)]
    Index(#[from] ResolveError),
    /// A request this node cannot make sense of; the text says what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// A session action that needs a session, sent with no token at all, or an administrative action
    /// by a caller without an admin session (AM 7's text, capital D).
    #[error("Access Denied")]
    AccessDenied,
    /// A session action on a token that names no live session.
    #[error("Invalid or expired session")]
    InvalidSession,
    /// No endpoint at this path.
    #[error("Resource '{0}' not found")]
    NotFound(String),
    /// The endpoint exists but not for this method; `allow` lists the methods that work.
    #[error("Method not allowed")]
    MethodNotAllowed {
        /// The `Allow` header value (RFC 9110 §15.5.6).
        allow: &'static str,
    },
    /// The body exceeds [`MAX_BODY`].
    #[error("Request body larger than {MAX_BODY} bytes")]
    PayloadTooLarge,
    /// A `_action` of `/json/sessions` that AM has but this node does not implement.
    #[error("Action '{0}' not implemented for this resource")]
    NotImplemented(String),
    /// A bounded table (logins in progress, answered steps) is full of live entries.
    #[error("Service unavailable: {0}; try again later")]
    Overloaded(&'static str),
    /// The session store could not be reached within its deadline; `0` is for logs only. A retry may
    /// succeed once the store is back, so the answer carries `Retry-After`.
    #[error("Service unavailable: session store unavailable; try again later")]
    StoreUnavailable(String),
    /// Something that cannot fail did; `0` is for logs only.
    #[error("Internal Server Error")]
    Internal(String),
}

impl From<JwsError> for AuthError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::Malformed(why) => Self::MalformedAuthId(why),
            JwsError::UnsupportedAlgorithm | JwsError::BadSignature => Self::BadAuthIdSignature,
        }
    }
}

impl AuthError {
    /// The HTTP status AM answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Failed
            | Self::TimedOut { .. }
            | Self::QuotaExceeded
            | Self::InvalidSession
            | Self::AccessDenied => StatusCode::UNAUTHORIZED,
            Self::MalformedAuthId(_)
            | Self::AuthIdNotString
            | Self::BadAuthIdSignature
            | Self::Index(_)
            | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Overloaded(_) | Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the same request may succeed later: only when the node was overloaded or failed inside.
    /// Every other refusal is about the request itself (or a login that has ended), which no retry fixes.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Overloaded(_) | Self::StoreUnavailable(_) | Self::Internal(_))
    }

    /// What the operator's log gets beyond the client's message: the cause of an internal failure.
    pub fn log_detail(&self) -> &str {
        match self {
            Self::Internal(why) | Self::StoreUnavailable(why) => why,
            _ => "",
        }
    }

    /// AM's CREST JSON answer for this error.
    pub fn to_response(&self) -> Response<Body> {
        let status = self.status();
        let message = self.to_string();
        match self {
            Self::TimedOut { .. } => crest::error_with(status, &message, Some(json!({"errorCode": "110"}))),
            Self::MethodNotAllowed { allow } => {
                let mut resp = crest::error(status, &message);
                resp.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
                resp
            }
            Self::StoreUnavailable(_) => {
                let mut resp = crest::error(status, &message);
                resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static(STORE_RETRY_AFTER));
                resp
            }
            _ => crest::error(status, &message),
        }
    }
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        Self::StoreUnavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_overload_store_and_internal_failures_are_retryable() {
        assert!(AuthError::Overloaded("full").retryable());
        assert!(AuthError::from(StoreError::Timeout(std::time::Duration::from_secs(1))).retryable());
        assert!(AuthError::Internal("x".into()).retryable());
        for e in [AuthError::Failed, AuthError::TimedOut { why: "x" }, AuthError::QuotaExceeded] {
            assert!(!e.retryable(), "{e:?}");
        }
    }

    #[test]
    fn texts_are_ams() {
        assert_eq!(AuthError::MalformedAuthId("claims").to_string(), "Failed to parse JWT, claims");
        assert_eq!(AuthError::from(JwsError::BadSignature).to_string(), "AuthId JWT Signature not valid");
        assert_eq!(AuthError::Overloaded("full").to_string(), "Service unavailable: full; try again later");
        assert_eq!(AuthError::PayloadTooLarge.to_string(), "Request body larger than 65536 bytes");
    }

    #[test]
    fn an_unreachable_store_is_503_with_retry_after() {
        let resp = AuthError::from(StoreError::Unavailable("refused".into())).to_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[RETRY_AFTER], "1");
    }
}
