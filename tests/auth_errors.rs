//! What the auth node refuses, and that no refusal leaves a session behind.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Cluster, LocalNodes, authenticate, call, fill, login};

async fn assert_error(got: (u16, serde_json::Value, http::HeaderMap), status: u16, message: &str) {
    let (s, v, h) = got;
    assert_eq!(s, status, "{v}");
    assert_eq!(h["content-type"], "application/json;charset=UTF-8");
    assert_eq!(v["code"], status, "{v}");
    assert!(v["message"].as_str().unwrap_or("").starts_with(message), "{v}");
}

#[tokio::test]
async fn wrong_credentials_and_codes_are_401_and_leave_nothing() {
    let c = LocalNodes::one();
    let node = &c.nodes[0];
    let (_, step, _) = call(node, &authenticate("ldapService"), &[], None).await;
    assert_error(
        call(node, &authenticate("ldapService"), &[], Some(fill(step, &["demo", "wrong"]))).await,
        401,
        "Authentication Failed",
    )
    .await;
    let (_, step, _) = call(node, &authenticate("ldapService"), &[], None).await;
    assert_error(
        call(node, &authenticate("ldapService"), &[], Some(fill(step, &["nobody", "secret"]))).await,
        401,
        "Authentication Failed",
    )
    .await;

    let (_, step, _) = call(node, &authenticate("mfa"), &[], None).await;
    let (status, step, _) =
        call(node, &authenticate("mfa"), &[], Some(fill(step, &["demo", "secret"]))).await;
    assert_eq!(status, 200);
    let wrong = if support::totp_now() == "000000" { "111111" } else { "000000" };
    assert_error(
        call(node, &authenticate("mfa"), &[], Some(fill(step, &[wrong]))).await,
        401,
        "Authentication Failed",
    )
    .await;
    assert_eq!(c.store.len(), 0);
    assert_eq!(node.pending_logins(), 0, "a failed chain ends, as in AM");
}

#[tokio::test]
async fn a_replayed_auth_id_times_out_with_110_in_both_modes() {
    for mode in ["memory", "client"] {
        let c = Cluster::new().active(["01"]).shared_sessions().auth("auth_sessions", mode).in_process();
        let node = &c.nodes[0];
        let (_, step, _) = call(node, &authenticate("mfa"), &[], None).await;
        let answered = fill(step, &["demo", "secret"]);
        let (status, _, _) = call(node, &authenticate("mfa"), &[], Some(answered.clone())).await;
        assert_eq!(status, 200);
        let (status, v, _) = call(node, &authenticate("mfa"), &[], Some(answered)).await;
        assert_eq!(
            (status, v["message"].as_str(), v["detail"]["errorCode"].as_str()),
            (401, Some("Session has timed out"), Some("110")),
            "{mode}: {v}"
        );
        assert_eq!(c.store.len(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn an_expired_auth_session_times_out_with_110() {
    for mode in ["memory", "client"] {
        let c = Cluster::new()
            .active(["01"])
            .shared_sessions()
            .auth("auth_sessions", mode)
            .auth("auth_session_timeout_s", 60)
            .in_process();
        let node = &c.nodes[0];
        let (_, step, _) = call(node, &authenticate("ldapService"), &[], None).await;
        tokio::time::advance(Duration::from_secs(61)).await;
        let (status, v, _) =
            call(node, &authenticate("ldapService"), &[], Some(fill(step, &["demo", "secret"]))).await;
        assert_eq!((status, v["detail"]["errorCode"].as_str()), (401, Some("110")), "{mode}: {v}");
        assert_eq!(c.store.len(), 0);
    }
}

#[tokio::test]
async fn bad_auth_ids_bodies_and_indexes_are_400() {
    let c = LocalNodes::one();
    let node = &c.nodes[0];
    let (_, step, _) = call(node, &authenticate("ldapService"), &[], None).await;
    let auth_id = step["authId"].as_str().unwrap().to_string();
    // Flip one character of the payload: the signature no longer matches.
    let mut parts: Vec<String> = auth_id.split('.').map(str::to_string).collect();
    let flipped = if parts[1].ends_with('A') { 'B' } else { 'A' };
    parts[1].pop();
    parts[1].push(flipped);
    let mut tampered = fill(step.clone(), &["demo", "secret"]);
    tampered["authId"] = json!(parts.join("."));
    assert_error(call(node, &authenticate("ldapService"), &[], Some(tampered)).await, 400, "").await;
    let mut garbage = fill(step, &["demo", "secret"]);
    garbage["authId"] = json!("not a jwt");
    assert_error(
        call(node, &authenticate("ldapService"), &[], Some(garbage)).await,
        400,
        "Failed to parse JWT",
    )
    .await;

    let resp = node
        .handle(
            http::Request::post(authenticate("ldapService"))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from("{not json")))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_error(
        call(node, "/am/json/realms/root/authenticate?authIndexType=level&authIndexValue=1", &[], None).await,
        400,
        "Unknown Authentication Index Type",
    )
    .await;
    let (status, v, _) = call(node, &authenticate("noSuchChain"), &[], None).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("noSuchChain"), "{v}");
    assert_eq!(c.store.len(), 0);
}

#[tokio::test]
async fn zero_page_login_and_sdk_style_continuations_work() {
    let c = LocalNodes::one();
    let node = &c.nodes[0];
    let (status, done, headers) = call(
        node,
        &authenticate("ldapService"),
        &[("X-OpenAM-Username", "demo"), ("X-OpenAM-Password", "secret")],
        None,
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("iPlanetDirectoryPro=") && cookie.contains("HttpOnly"), "{cookie}");
    // The JS SDK echoes the whole previous answer with fields of its own; they are ignored.
    let (_, mut step, headers) = call(
        node,
        &authenticate("ldapService"),
        &[("Accept-API-Version", "protocol=1.0,resource=2.1")],
        None,
    )
    .await;
    assert_eq!(headers["set-cookie"], "amlbcookie=01; Path=/");
    step["status"] = json!(200);
    step["ok"] = json!(true);
    let (status, done, _) =
        call(node, &authenticate("ldapService"), &[], Some(fill(step, &["demo", "secret"]))).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["realm"], "/");
    let _ = login(node).await;
}
