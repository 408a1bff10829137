//! Stickiness without cookies: the `authId` of each step and the session token name the node, so a
//! client that keeps no cookie jar (the JS SDK under Node) stays on its node; and a request carrying two
//! session tokens is routed by the one its node then answers for (`tokenId` query, then the session
//! header, then the session cookie, as AM reads them).

mod support;

use support::{Cluster, Journey, ProxyHandle, backend_status, client};

#[tokio::test]
async fn a_client_without_cookies_completes_thirty_mfa_logins_and_validates_by_query() {
    let proxy = Cluster::new().active(["01", "02"]).passive("03").start().await;
    for _ in 0..30 {
        let mut journey = Journey::new(proxy.url(""), false);
        let token = journey.mfa_login("secret").await;
        assert!(journey.cookies.is_empty());
        let v = journey.validate(&token).await;
        assert_eq!(v["valid"], true, "the session_token hint routed the validate to the issuing node: {v}");
    }
}

#[tokio::test]
async fn without_hints_the_same_client_loses_its_journey() {
    // The control: with the cookie as the only hint, steps of a cookie-less client are balanced over two
    // nodes and in-memory journeys break, which is the failure the auth_id hint prevents.
    let proxy = Cluster::new().active(["01", "02"]).affinity("hints", vec!["cookie"]).start().await;
    let mut timed_out = 0;
    for _ in 0..10 {
        let mut journey = Journey::new(proxy.url(""), false);
        let (_, step) = journey.start("ldapService").await;
        let (status, v) = journey.answer("ldapService", step, &["demo", "secret"]).await;
        if status == 401 && v["detail"]["errorCode"] == "110" {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 10, "round-robin sends every second step to the other node");
}

/// A login of `user` straight on node `id` (no proxy): its token (minted with `S1` = `id`) and its
/// session handle, as the node itself reports them.
async fn login_on(proxy: &ProxyHandle, id: &str, user: &str) -> (String, String) {
    let mut journey = Journey::new(proxy.node_url(id), false);
    let (_, step) = journey.start("ldapService").await;
    let (status, done) = journey.answer("ldapService", step, &[user, "secret"]).await;
    assert_eq!(status, 200, "{done}");
    let token = done["tokenId"].as_str().expect("tokenId").to_string();
    assert_eq!(tether::am::token::node_hint(&token).as_deref(), Some(id), "minted by {id}: {token}");
    let v = journey.validate(&token).await;
    assert_eq!((&v["valid"], &v["uid"]), (&serde_json::json!(true), &serde_json::json!(user)), "{v}");
    (token, v["sessionUid"].as_str().expect("sessionUid").to_string())
}

/// Two active nodes with node-local sessions (a token is only known to the node that minted it) and
/// the default hints; `demo` logs in on 01, `alice` on 02.
async fn two_nodes_two_sessions() -> (ProxyHandle, (String, String), (String, String)) {
    let proxy = Cluster::new().active(["01", "02"]).user("alice", &[]).start().await;
    let on_01 = login_on(&proxy, "01", "demo").await;
    let on_02 = login_on(&proxy, "02", "alice").await;
    (proxy, on_01, on_02)
}

/// `getSessionInfo` through the proxy, no `amlbcookie`: the answer and which node got the request, by
/// the per-backend request counters of `/status.json`.
async fn session_info_via_proxy(
    proxy: &ProxyHandle,
    query: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value, &'static str) {
    let before = [requests(proxy, "01").await, requests(proxy, "02").await];
    let mut req = client()
        .post(proxy.url(&format!("/am/json/realms/root/sessions?_action=getSessionInfo{query}")))
        .header("content-type", "application/json")
        .body("{}");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let v: serde_json::Value = resp.json().await.unwrap();
    let after = [requests(proxy, "01").await, requests(proxy, "02").await];
    let routed = match (after[0] - before[0], after[1] - before[1]) {
        (1, 0) => "01",
        (0, 1) => "02",
        other => panic!("one request, counted {other:?} on 01 and 02"),
    };
    (status, v, routed)
}

async fn requests(proxy: &ProxyHandle, id: &str) -> u64 {
    backend_status(proxy, id).await["requests"].as_u64().expect("requests counter")
}

#[tokio::test]
async fn a_token_id_query_for_02_beats_a_session_cookie_for_01_in_routing_and_in_the_answer() {
    let (proxy, (token_01, _), (token_02, handle_02)) = two_nodes_two_sessions().await;
    let cookie = format!("iPlanetDirectoryPro={token_01}");
    let (status, v, routed) =
        session_info_via_proxy(&proxy, &format!("&tokenId={token_02}"), &[("cookie", &cookie)]).await;
    assert_eq!(routed, "02", "the tokenId query names the node: {v}");
    assert_eq!(status, 200, "02 knows the session of its own token: {v}");
    assert_eq!(v["username"], "alice", "the session of the query's token, not the cookie's: {v}");
    assert_eq!(v["properties"]["AMCtxId"], handle_02.as_str(), "{v}");
}

#[tokio::test]
async fn a_session_header_for_02_beats_a_session_cookie_for_01_in_routing_and_in_the_answer() {
    let (proxy, (token_01, _), (token_02, handle_02)) = two_nodes_two_sessions().await;
    let cookie = format!("iPlanetDirectoryPro={token_01}");
    let (status, v, routed) =
        session_info_via_proxy(&proxy, "", &[("iPlanetDirectoryPro", &token_02), ("cookie", &cookie)]).await;
    assert_eq!(routed, "02", "the session header names the node: {v}");
    assert_eq!(status, 200, "02 knows the session of its own token: {v}");
    assert_eq!(v["username"], "alice", "the session of the header's token, not the cookie's: {v}");
    assert_eq!(v["properties"]["AMCtxId"], handle_02.as_str(), "{v}");
}
