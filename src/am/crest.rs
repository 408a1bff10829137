//! AM's CREST JSON answers.
//!
//! AM's clients (the ForgeRock SDKs, agents, scripts) parse every error body, so every synthetic answer
//! tether gives, from the proxy or the auth node, has AM's shape: `{"code":N,"reason":"...",
//! "message":"..."}`, optionally with a `detail` object, and the headers AM's REST answers carry
//! (`Content-Type: application/json;charset=UTF-8`, `X-Content-Type-Options: nosniff`, `X-Frame-Options:
//! SAMEORIGIN`, as captured from AM 7).

use http::header::{
    CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
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

/// AM's JSON media type, with the charset its answers name.
pub const JSON_TYPE: &str = "application/json;charset=UTF-8";

/// `Content-API-Version`: the version of the CREST resource that answered. AM's clients log it and some
/// branch on it; AM sends it on errors too.
pub const CONTENT_API_VERSION: HeaderName = HeaderName::from_static("content-api-version");

/// A JSON answer with AM's headers and `Cache-Control: no-store` (AM's REST answers carry session data and
/// are never cached). `nosniff` keeps a browser from reading the JSON as anything else, `SAMEORIGIN` keeps
/// other sites from framing it.
pub fn json(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_TYPE));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    resp
}

/// Sets `Content-API-Version` (e.g. `resource=2.1`) on an answer.
pub fn set_api_version(resp: &mut Response<Body>, version: &'static str) {
    resp.headers_mut().insert(CONTENT_API_VERSION, HeaderValue::from_static(version));
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
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json;charset=UTF-8");
        assert_eq!(resp.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(resp.headers()[X_FRAME_OPTIONS], "SAMEORIGIN");
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
