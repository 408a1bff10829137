//! The sessions endpoint and session lifetimes: token from query, header and
//! cookie; idle and maximum expiry on paused time.

mod support;

use std::time::Duration;

use support::{Cluster, LocalNodes, call, login};

const SESSIONS: &str = "/am/json/realms/root/sessions";

/// One node whose sessions idle out after `idle` minutes and end after `max` minutes.
fn sessions_of(idle: i64, max: i64) -> LocalNodes {
    Cluster::new()
        .active(["01"])
        .shared_sessions()
        .auth("max_idle_time_min", idle)
        .auth("max_session_time_min", max)
        .in_process()
}

#[tokio::test]
async fn every_action_takes_the_token_from_query_header_or_cookie() {
    let c = LocalNodes::one();
    let node = &c.nodes[0];
    let token = login(node).await;
    let cookie = format!("iPlanetDirectoryPro={token}");
    let ways: [(String, Vec<(&str, &str)>); 3] = [
        (format!("&tokenId={token}"), vec![]),
        (String::new(), vec![("iPlanetDirectoryPro", token.as_str())]),
        (String::new(), vec![("cookie", cookie.as_str())]),
    ];
    for (query, headers) in &ways {
        let (s, v, _) = call(node, &format!("{SESSIONS}?_action=validate{query}"), headers, None).await;
        assert_eq!(
            (s, &v["valid"], &v["uid"]),
            (200, &serde_json::json!(true), &serde_json::json!("demo")),
            "{v}"
        );
        let (s, v, _) = call(node, &format!("{SESSIONS}?_action=getSessionInfo{query}"), headers, None).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["username"], "demo");
        assert!(v["maxIdleExpirationTime"].as_str().unwrap().ends_with('Z'), "{v}");
        let (s, v, _) = call(node, &format!("{SESSIONS}?_action=refresh{query}"), headers, None).await;
        assert_eq!((s, &v["uid"]), (200, &serde_json::json!("demo")), "{v}");
    }
    let (s, v, _) =
        call(node, &format!("{SESSIONS}/?_action=logout"), &[("iPlanetDirectoryPro", &token)], None).await;
    assert_eq!((s, v["result"].as_str()), (200, Some("Successfully logged out")));
    let (s, v, _) = call(node, &format!("{SESSIONS}?_action=logout&tokenId={token}"), &[], None).await;
    assert_eq!((s, v["result"].as_str()), (200, Some("Token has expired")));
    let (s, v, _) = call(node, &format!("{SESSIONS}?_action=validate&tokenId={token}"), &[], None).await;
    assert_eq!((s, v), (200, serde_json::json!({"valid": false})));
}

#[tokio::test(start_paused = true)]
async fn sessions_die_after_the_idle_time_unless_used() {
    let c = sessions_of(30, 120);
    let node = &c.nodes[0];
    let token = login(node).await;
    let validate = format!("{SESSIONS}?_action=validate&tokenId={token}");
    let reset = format!("{SESSIONS}?_action=getSessionInfoAndResetIdleTime&tokenId={token}");
    tokio::time::advance(Duration::from_secs(29 * 60)).await;
    assert_eq!(call(node, &reset, &[], None).await.0, 200, "used within the idle time");
    tokio::time::advance(Duration::from_secs(29 * 60)).await;
    assert_eq!(call(node, &validate, &[], None).await.1["valid"], true, "the reset moved the idle deadline");
    tokio::time::advance(Duration::from_secs(2 * 60)).await;
    assert_eq!(call(node, &validate, &[], None).await.1, serde_json::json!({"valid": false}));
}

#[tokio::test(start_paused = true)]
async fn sessions_die_at_the_maximum_time_however_busy() {
    let c = sessions_of(30, 60);
    let node = &c.nodes[0];
    let token = login(node).await;
    let refresh = format!("{SESSIONS}?_action=refresh&tokenId={token}");
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(11 * 60)).await;
        assert_eq!(call(node, &refresh, &[], None).await.0, 200);
    }
    tokio::time::advance(Duration::from_secs(6 * 60)).await;
    let (s, v, _) = call(node, &format!("{SESSIONS}?_action=validate&tokenId={token}"), &[], None).await;
    assert_eq!((s, v), (200, serde_json::json!({"valid": false})));
    assert_eq!(call(node, &refresh, &[], None).await.0, 401);
}
