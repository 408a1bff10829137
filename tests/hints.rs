//! Stickiness without cookies: the `authId` of each step and the session token name the node, so a
//! client that keeps no cookie jar (the JS SDK under Node) stays on its node.

mod support;

use support::{Cluster, Journey};

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
