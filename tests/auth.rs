//! The embedded auth node behind the proxy: AM's callback protocol, node-local journeys, sessions.

mod support;

use support::{Cluster, Journey, ProxyHandle};

/// 01 and 02 active, 03 passive, journeys kept per `auth_sessions`, sessions per `sessions`.
async fn cluster(auth_sessions: &str, sessions: &str) -> ProxyHandle {
    Cluster::new()
        .active(["01", "02"])
        .passive("03")
        .auth("auth_sessions", auth_sessions)
        .auth("sessions", sessions)
        .start()
        .await
}

#[tokio::test]
async fn fifty_mfa_logins_through_the_proxy_all_succeed_and_validate() {
    let proxy = cluster("memory", "local").await;
    let mut nodes_used = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let mut journey = Journey::new(proxy.url(""), true);
        let token = journey.mfa_login("secret").await;
        let v = journey.validate(&token).await;
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["uid"], "demo");
        nodes_used.insert(journey.cookies["amlbcookie"].clone());
    }
    assert_eq!(
        nodes_used.into_iter().collect::<Vec<_>>(),
        ["01", "02"],
        "logins spread over the active nodes"
    );
}

#[tokio::test]
async fn a_journey_continued_on_another_node_times_out_with_code_110() {
    let proxy = cluster("memory", "local").await;
    let mut journey = Journey::new(proxy.node_url("01"), false);
    let (status, step) = journey.start("mfa").await;
    assert_eq!(status, 200);
    journey.retarget(proxy.node_url("02"));
    let (status, err) = journey.answer("mfa", step, &["demo", "secret"]).await;
    assert_eq!(status, 401, "{err}");
    assert_eq!(err["message"], "Session has timed out");
    assert_eq!(err["detail"]["errorCode"], "110");
}

#[tokio::test]
async fn client_side_journeys_continue_on_any_node() {
    let proxy = cluster("client", "shared").await;
    let mut journey = Journey::new(proxy.node_url("01"), false);
    let (_, step) = journey.start("mfa").await;
    journey.retarget(proxy.node_url("02"));
    let (status, step) = journey.answer("mfa", step, &["demo", "secret"]).await;
    assert_eq!(status, 200, "{step}");
    journey.retarget(proxy.node_url("03"));
    let (status, done) = journey.answer("mfa", step, &[&support::totp_now()]).await;
    assert_eq!(status, 200, "{done}");
    let token = done["tokenId"].as_str().unwrap().to_string();
    assert_eq!(journey.validate(&token).await["valid"], true);
}

#[tokio::test]
async fn issued_tokens_name_the_issuing_node_in_s1() {
    let proxy = cluster("memory", "shared").await;
    let mut journey = Journey::new(proxy.node_url("02"), false);
    let (_, step) = journey.start("ldapService").await;
    let (status, done) = journey.answer("ldapService", step, &["demo", "secret"]).await;
    assert_eq!(status, 200, "{done}");
    let token = done["tokenId"].as_str().unwrap();
    let ext = tether::am::token::decode_ext(token).expect("AM token layout");
    assert!(ext.contains(&("S1".to_string(), "02".to_string())), "{ext:?}");
    assert_eq!(tether::am::token::node_hint(token).as_deref(), Some("02"));
}
