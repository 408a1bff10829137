//! Errors of the proxy layer and their one mapping to an HTTP answer.
//!
//! Every synthetic answer has AM's CREST error shape, `{"code":N,"reason":"...","message":"..."}` with
//! `Content-Type: application/json`, so AM clients (which parse every error body) see what AM would send.
//! Failover ([`super::failover`]) asks an error whether a retry is allowed ([`ProxyError::retryable`])
//! and whether it blames the node ([`ProxyError::blames_backend`]) instead of matching strings. Both
//! request paths render it through [`crate::am::crest`] only: hyper's as a response
//! ([`ProxyError::to_response`]), the fast path as bytes from the same status and message.

use http::header::{HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::am::crest;
use crate::body::Body;
use crate::config::BackendId;
use crate::upstream::select::Unavailable;

/// What can go wrong while proxying one request.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No `[[route]]` matched.
    #[error("no route matches this request")]
    NoRoute,
    /// The selector found no node for the request (none serving, or the pinned one down with
    /// `on_down = "strict"`).
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The connection to the node failed before any byte of the request was sent.
    #[error("cannot connect to backend {backend}: {reason}")]
    Connect { backend: BackendId, reason: String },
    /// The node failed after the request (or part of it) was sent.
    #[error("backend {backend} failed: {reason}")]
    Upstream { backend: BackendId, reason: String },
    /// The node sent no response headers in time.
    #[error("backend {backend} sent no response within {timeout_ms} ms")]
    Timeout { backend: BackendId, timeout_ms: u128 },
    /// The node is at its `maxconn` and no slot came free within the pool's `queue_timeout_ms`
    /// (HAProxy answers 503 on `timeout queue` too).
    #[error(
        "backend {backend} is at its maxconn of {maxconn} and no slot came free within queue_timeout_ms = {timeout_ms}"
    )]
    QueueTimeout { backend: BackendId, maxconn: u32, timeout_ms: u128 },
    /// The request cannot be forwarded as it is.
    #[error("{0}")]
    BadRequest(String),
    /// The client did not send its (small, peeked) body in time.
    #[error("the request body did not arrive in time")]
    ClientTimeout,
    /// The client hung up while its request waited for a `maxconn` slot: nothing was sent to a node.
    #[error("the client closed the connection while its request was queued for backend {backend}")]
    ClientGone { backend: BackendId },
}

/// The status logged and counted for a request whose client hung up before it was answered (nginx's
/// 499; no answer is sent, so no client sees it).
pub const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => unreachable!(),
};

impl ProxyError {
    /// The status of the synthetic answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::Unavailable(_) | Self::QueueTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect { .. } | Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::ClientGone { .. } => CLIENT_CLOSED,
        }
    }

    /// Whether the request may be sent again to another node: always when nothing reached the
    /// first one; after bytes were sent only for idempotent methods, and only when the node failed before
    /// answering (a slow node that timed out is not given the same work twice). The caller still checks
    /// that the body can be replayed.
    pub fn retryable(&self, idempotent: bool) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Upstream { .. } => idempotent,
            _ => false,
        }
    }

    /// The `Retry-After` of the answer, in seconds (RFC 9110 §10.2.3): a full queue drains within
    /// moments, so a client may try again after one second. A pool without a serving node says nothing:
    /// when it comes back depends on the node, not on tether.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Self::QueueTimeout { .. } => Some(1),
            _ => None,
        }
    }

    /// Whether the failure says something about the node's health (passive checks).
    pub fn blames_backend(&self) -> Option<&BackendId> {
        match self {
            Self::Connect { backend, .. } | Self::Timeout { backend, .. } => Some(backend),
            _ => None,
        }
    }

    /// The AM-shaped answer.
    pub fn to_response(&self) -> Response<Body> {
        let mut resp = crest::error(self.status(), &self.to_string());
        if let Some(seconds) = self.retry_after() {
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CONTENT_TYPE;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_have_am_shape_and_json_type() {
        let resp = ProxyError::from(Unavailable::NoBackend { pool: "am".into() }).to_response();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json;charset=UTF-8");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], 503);
        assert_eq!(v["reason"], "Service Unavailable");
        assert!(v["message"].as_str().unwrap().contains("am"));
    }

    #[test]
    fn connect_failures_and_idempotent_upstream_failures_are_retryable() {
        let id = BackendId::new("01").unwrap();
        let connect = ProxyError::Connect { backend: id.clone(), reason: "refused".into() };
        let upstream = ProxyError::Upstream { backend: id.clone(), reason: "reset".into() };
        let timeout = ProxyError::Timeout { backend: id, timeout_ms: 1 };
        assert!(connect.retryable(false) && connect.retryable(true));
        assert!(upstream.retryable(true) && !upstream.retryable(false));
        assert!(!timeout.retryable(true));
        let gone = ProxyError::ClientGone { backend: BackendId::new("01").unwrap() };
        assert_eq!(gone.status().as_u16(), 499);
        assert!(
            !gone.retryable(true) && gone.blames_backend().is_none(),
            "nobody to retry for, not the node's fault"
        );
    }

    #[test]
    fn a_queue_timeout_says_when_to_try_again_and_no_other_answer_does() {
        let id = BackendId::new("01").unwrap();
        let queued = ProxyError::QueueTimeout { backend: id.clone(), maxconn: 1, timeout_ms: 200 };
        assert_eq!(queued.to_response().headers()[RETRY_AFTER], "1");
        let down = ProxyError::from(Unavailable::NoBackend { pool: "am".into() });
        assert!(down.to_response().headers().get(RETRY_AFTER).is_none());
    }
}
