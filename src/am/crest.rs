//! AM's CREST JSON answers.
//!
//! AM's clients (the ForgeRock SDKs, agents, scripts) parse every error body, so every synthetic answer
//! tether gives, from the proxy or the auth node, has AM's shape: `{"code":N,"reason":"...",
//! "message":"..."}`, optionally with a `detail` object, and `Content-Type: application/json`.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use serde_json::Value;

use crate::body::{Body, full};

/// An AM CREST error answer: `{"code":N,"reason":"...","message":"..."}`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    error_with(status, message, None)
}

/// An AM CREST error answer with a `detail` object (AM's `errorCode` 110 travels there).
pub fn error_with(status: StatusCode, message: &str, detail: Option<Value>) -> Response<Body> {
    let mut body = error_json(status, message);
    if let Some(detail) = detail {
        body["detail"] = detail;
    }
    json(status, &body)
}

/// The body of a CREST error, for writers that frame their answers themselves (the HTTP/1.1 fast path),
/// with the headers of [`json`].
pub fn error_body(status: StatusCode, message: &str) -> String {
    error_json(status, message).to_string()
}

fn error_json(status: StatusCode, message: &str) -> Value {
    serde_json::json!({
        "code": status.as_u16(),
        "reason": reason(status),
        "message": message,
    })
}

/// A JSON answer with `Content-Type: application/json` and `Cache-Control: no-store` (AM's REST answers
/// carry session data and are never cached).
pub fn json(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// AM's `reason` strings are the standard reason phrases.
fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_have_am_shape_json_type_and_optional_detail() {
        let resp = error_with(
            StatusCode::UNAUTHORIZED,
            "Session has timed out",
            Some(serde_json::json!({"errorCode": "110"})),
        );
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": 401, "reason": "Unauthorized", "message": "Session has timed out", "detail": {"errorCode": "110"}})
        );
    }

    #[test]
    fn the_framed_body_is_the_same_json() {
        let v: Value = serde_json::from_str(&error_body(StatusCode::BAD_GATEWAY, "x")).unwrap();
        assert_eq!(v, serde_json::json!({"code": 502, "reason": "Bad Gateway", "message": "x"}));
    }
}
