//! The details of AM's answers that its own clients see besides the body: headers, logout's cookies, the
//! answers without a token, the timer actions and the login page. Each is what AM 7 was captured sending.

use super::*;

/// `sessions?_action=<action>&tokenId=<token>`.
fn action(action: &str, token: &str) -> String {
    format!("{}&tokenId={token}", with_token(action))
}

#[tokio::test(start_paused = true)]
async fn json_answers_carry_ams_headers_and_api_version_per_endpoint() {
    let c = cluster("memory");
    let step = send(&c.a, post(AUTH, "")).await;
    let done = send(&c.a, post(AUTH, fill(&step, &["demo", PASSWORD]))).await;
    let failed = send(&c.a, post(AUTH, fill(&send(&c.a, post(AUTH, "")).await, &["demo", "wrong"]))).await;
    assert_eq!(failed.status, 401);
    let token = done.json["tokenId"].as_str().unwrap().to_owned();
    let info = send(&c.a, post(&action("getSessionInfo", &token), "")).await;
    let validate = send(&c.a, post(&action("validate", &token), "")).await;
    let logout = send(&c.a, post(&action("logout", &token), "")).await;
    for (answer, version) in [
        (&step, "resource=2.1"),
        (&done, "resource=2.1"),
        (&failed, "resource=2.1"),
        (&info, "resource=1.0"),
        (&validate, "resource=3.1"),
        (&logout, "resource=3.1"),
    ] {
        let h = &answer.headers;
        assert_eq!(h["content-api-version"], version, "{answer:?}");
        assert_eq!(h[CONTENT_TYPE], "application/json;charset=UTF-8", "{answer:?}");
        assert_eq!(h["x-frame-options"], "SAMEORIGIN", "{answer:?}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{answer:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn logout_expires_the_session_and_lb_cookies_as_am_7_does() {
    let c = cluster("memory");
    let token = login(&c.a).await;
    let logout = send(&c.a, post(&action("logout", &token), "")).await;
    assert_eq!(logout.json, json!({"result": "Successfully logged out"}));
    assert_eq!(
        logout.cookies(),
        [
            "iPlanetDirectoryPro=\"\"; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/",
            "amlbcookie=LOGOUT; Expires=Thu, 01 Jan 1970 00:00:10 GMT; Path=/",
        ]
    );
    assert_eq!(logout.headers["expires"], "0");
    for set in logout.cookies() {
        let cookie = cookie::Cookie::parse(set).unwrap();
        assert_eq!(cookie.expires_datetime().map(|t| t.year()), Some(1970), "{set}");
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_token_only_validate_answers_and_the_rest_is_access_denied() {
    let c = cluster("memory");
    assert_eq!(send(&c.a, post(&with_token("validate"), "")).await.json, json!({"valid": false}));
    for name in [
        "getSessionInfo",
        "getSessionInfoAndResetIdleTime",
        "refresh",
        "logout",
        "isActive",
        "getTimeLeft",
        "getMaxSessionTime",
        "getMaxIdle",
        "getIdle",
    ] {
        let answer = send(&c.a, post(&with_token(name), "")).await;
        assert_eq!(
            answer.json,
            json!({"code": 401, "reason": "Unauthorized", "message": "Access Denied"}),
            "{name}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn timer_actions_answer_in_ams_units_and_is_active_refresh_resets_idle() {
    let c = cluster("memory");
    let token = login(&c.a).await;
    advance(Duration::from_secs(355)).await;
    let ask = async |name: &str| send(&c.b, post(&action(name, &token), "")).await.json;
    assert_eq!(ask("getIdle").await, json!({"idletime": 355}));
    assert_eq!(ask("getTimeLeft").await, json!({"maxtime": 7200 - 355}));
    assert_eq!(ask("getMaxSessionTime").await, json!({"maxsessiontime": 120}));
    assert_eq!(ask("getMaxIdle").await, json!({"maxidletime": 30}));
    assert_eq!(ask("isActive").await, json!({"active": true}));
    assert_eq!(ask("getIdle").await, json!({"idletime": 355}), "none of them resets the idle timer");
    let refresh = format!("{}&refresh=true", action("isActive", &token));
    assert_eq!(send(&c.b, post(&refresh, "")).await.json, json!({"active": true}));
    assert_eq!(ask("getIdle").await, json!({"idletime": 0}), "isActive&refresh=true does");

    assert_eq!(send(&c.a, post(&action("logout", &token), "")).await.status, 200);
    assert_eq!(ask("isActive").await, json!({"active": false}));
    assert_eq!(ask("getTimeLeft").await, json!({"maxtime": -1}));
    assert_eq!(ask("getIdle").await, json!({"idletime": -1}));
}

#[tokio::test(start_paused = true)]
async fn session_properties_are_not_implemented_in_ams_shape() {
    let c = cluster("memory");
    let token = login(&c.a).await;
    for name in ["getPropertyNames", "setProperty", "getProperty"] {
        let answer = send(&c.a, post(&action(name, &token), r#"{"properties":["LoginLocation"]}"#)).await;
        answer.assert_error(501, &format!("Action '{name}' not implemented"));
    }
}

#[tokio::test(start_paused = true)]
async fn the_login_page_is_served_and_the_context_path_redirects_to_it() {
    let c = cluster("memory");
    let page = send(&c.a, get("/am/XUI/")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert!(page.headers["content-security-policy"].to_str().unwrap().contains("script-src 'sha256-"));
    assert!(page.text.contains("<form id=\"step\""), "{}", page.text);
    for path in ["/am", "/am/", "/am/XUI"] {
        let to = send(&c.a, get(path)).await;
        assert_eq!(to.status, StatusCode::FOUND, "{path}");
        assert_eq!(to.headers["location"], "/am/XUI/", "{path}");
    }
    let with_chain = send(&c.a, get("/am/?authIndexValue=mfa")).await;
    assert_eq!(with_chain.headers["location"], "/am/XUI/?authIndexValue=mfa");
    let head = send(&c.a, Request::head("/am/XUI/").body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!((head.status, head.text.as_str()), (StatusCode::OK, ""));
}
