//! `/json/sessions` actions on the sessions logins created.

use super::*;

// ------------------------------------------------------------------------------------------------
// Sessions
// ------------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn validate_finds_the_token_in_query_header_cookie_and_body() {
    let c = cluster("memory");
    let token = login(&c.a).await;
    let by_query = post(&format!("{}&tokenId={token}", with_token("validate")), "");
    let by_header = Request::post(with_token("validate"))
        .header("iPlanetDirectoryPro", &token)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let by_cookie = Request::post(with_token("validate"))
        .header(COOKIE, format!("amlbcookie=01; iPlanetDirectoryPro={token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let by_body = post(&with_token("validate"), json!({"tokenId": token}).to_string());
    for req in [by_query, by_header, by_cookie, by_body] {
        let resp = send(&c.b, req).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json["valid"], true, "{resp:?}");
        assert_eq!(resp.json["uid"], "demo");
        assert_eq!(resp.json["realm"], "/");
        assert!(resp.json["sessionUid"].as_str().unwrap().starts_with("shandle:"));
    }
    // The query wins over the header.
    let req = Request::post(format!("{}&tokenId=dead", with_token("validate")))
        .header("iPlanetDirectoryPro", &token)
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&c.a, req).await.json, json!({"valid": false}));
}

#[tokio::test(start_paused = true)]
async fn validate_of_a_dead_or_missing_token_is_not_an_error() {
    let c = cluster("memory");
    for uri in
        [format!("{}&tokenId=AQICnothing*AAJTSQACMDE.*", with_token("validate")), with_token("validate")]
    {
        let resp = send(&c.a, post(&uri, "")).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json, json!({"valid": false}));
    }
}

#[tokio::test(start_paused = true)]
async fn session_info_reports_iso_times_and_only_the_reset_variant_touches() {
    let c = cluster("memory");
    let token = login(&c.a).await;
    let created = c.a.clock.unix_now().as_secs();
    advance(Duration::from_secs(600)).await;
    let info = send(&c.a, post(&format!("{}&tokenId={token}", with_token("getSessionInfo")), "")).await;
    assert_eq!(info.status, 200, "{info:?}");
    assert_eq!(info.json["username"], "demo");
    assert_eq!(info.json["universalId"], "id=demo,ou=user,dc=openam,dc=forgerock,dc=org");
    assert_eq!(info.json["latestAccessTime"], iso_utc(created));
    assert_eq!(info.json["maxIdleExpirationTime"], iso_utc(created + 1800));
    assert_eq!(info.json["maxSessionExpirationTime"], iso_utc(created + 7200));
    assert!(info.json["properties"]["AMCtxId"].as_str().unwrap().starts_with("shandle:"));

    let uri = format!("{}&tokenId={token}", with_token("getSessionInfoAndResetIdleTime"));
    let reset = send(&c.a, post(&uri, "")).await;
    assert_eq!(reset.json["latestAccessTime"], iso_utc(created + 600));
    assert_eq!(reset.json["maxIdleExpirationTime"], iso_utc(created + 2400));

    // No token at all is AM 7's `Access Denied`; a dead one is an invalid session.
    send(&c.a, post(&with_token("getSessionInfo"), "")).await.assert_error(401, "Access Denied");
    let dead = format!("{}&tokenId=nope", with_token("getSessionInfo"));
    send(&c.a, post(&dead, "")).await.assert_error(401, "Invalid");
}

#[tokio::test(start_paused = true)]
async fn refresh_resets_the_idle_timer_and_reports_minutes() {
    let c = cluster("memory");
    let token = login(&c.a).await;
    advance(Duration::from_secs(20 * 60)).await;
    let uri = format!("{}&tokenId={token}", with_token("refresh"));
    let resp = send(&c.a, post(&uri, "")).await;
    assert_eq!(
        resp.json,
        json!({"uid": "demo", "realm": "/", "idletime": 0, "maxidletime": 30,
               "maxsessiontime": 120, "maxtime": 100 * 60})
    );
    advance(Duration::from_secs(20 * 60)).await; // 40 min in all, 20 since the refresh
    let validate = send(&c.a, post(&format!("{}&tokenId={token}", with_token("validate")), "")).await;
    assert_eq!(validate.json["valid"], true);
    advance(Duration::from_secs(10 * 60)).await;
    send(&c.a, post(&uri, "")).await.assert_error(401, "Invalid");
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_after_max_idle_time_without_use() {
    let c = cluster("memory");
    let token = login(&c.a).await;
    let validate = format!("{}&tokenId={token}", with_token("validate"));
    advance(Duration::from_secs(29 * 60)).await;
    assert_eq!(send(&c.a, post(&validate, "")).await.json["valid"], true);
    advance(Duration::from_secs(60)).await;
    assert_eq!(send(&c.a, post(&validate, "")).await.json["valid"], false);
    assert_eq!(c.store.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_at_max_session_time_however_active() {
    let c = cluster("memory");
    let token = login(&c.a).await;
    let refresh = format!("{}&tokenId={token}", with_token("refresh"));
    for _ in 0..11 {
        advance(Duration::from_secs(10 * 60)).await;
        assert_eq!(send(&c.a, post(&refresh, "")).await.status, 200);
    }
    advance(Duration::from_secs(10 * 60)).await;
    let validate = format!("{}&tokenId={token}", with_token("validate"));
    assert_eq!(send(&c.a, post(&validate, "")).await.json, json!({"valid": false}));
}

#[tokio::test(start_paused = true)]
async fn logout_twice_reports_the_token_as_expired() {
    let c = cluster("memory");
    let token = login(&c.a).await;
    // The JS SDK: trailing slash, token in a cookie.
    let logout = || {
        Request::post("/am/json/realms/root/sessions/?_action=logout")
            .header(COOKIE, format!("iPlanetDirectoryPro={token}"))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let first = send(&c.b, logout()).await;
    assert_eq!(first.json, json!({"result": "Successfully logged out"}));
    let second = send(&c.b, logout()).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.json, json!({"result": "Token has expired"}));
    let missing = send(&c.a, post("/am/json/sessions?_action=logout", "")).await;
    missing.assert_error(401, "Access Denied");
    assert_eq!(c.store.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn unknown_or_missing_session_actions_are_refused() {
    let c = cluster("memory");
    let resp = send(&c.a, post(&with_token("frobnicate"), "")).await;
    resp.assert_error(501, "Action 'frobnicate' not implemented for this resource");
    send(&c.a, post(SESSIONS, "")).await.assert_error(400, "The _action");
}
