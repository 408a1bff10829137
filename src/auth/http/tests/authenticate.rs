//! Logins through `/json/authenticate`: chains, zero-page logins, failures, replays, quotas.

use super::*;

// ------------------------------------------------------------------------------------------------
// Logins
// ------------------------------------------------------------------------------------------------

async fn full_mfa_login(mode: &str) {
    let c = cluster(mode);
    let first = send(&c.a, post(MFA, "")).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.json["stage"], "DataStore1");
    assert_eq!(first.json["header"], "Sign in");
    assert_eq!(first.json["template"], "");
    assert_eq!(first.json["callbacks"][0]["type"], "NameCallback");
    assert_eq!(first.json["callbacks"][1]["input"][0]["name"], "IDToken2");
    assert_eq!(first.cookies(), ["amlbcookie=01; Path=/"]);
    let claims = auth_id_claims(&first);
    assert_eq!(claims["authIndexType"], "service");
    assert_eq!(claims["authIndexValue"], "mfa");
    assert_eq!(claims["realm"], "/");
    assert!(claims["exp"].as_u64().unwrap() > c.a.clock.unix_now().as_secs());
    let auth_id = first.json["authId"].as_str().unwrap();
    assert_eq!(token::auth_id_node_hint(auth_id).as_deref(), Some("01"));

    let second = send(&c.a, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.json["stage"], "TOTP1");
    assert_eq!(second.json["callbacks"][0]["output"][0]["value"], "Enter verification code");
    assert_ne!(second.json["authId"], first.json["authId"]);
    assert_ne!(auth_id_claims(&second)["otk"], claims["otk"], "each step gets a fresh otk");
    assert_eq!(auth_id_claims(&second)["sessionId"], claims["sessionId"]);
    assert!(second.cookies().is_empty(), "amlbcookie is set when a login starts");

    let done = send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await;
    assert_eq!(done.status, 200, "{done:?}");
    let token = done.json["tokenId"].as_str().unwrap();
    assert_eq!(done.json["successUrl"], "/am/XUI/", "the default success URL is the login page");
    assert_eq!(done.json["realm"], "/");
    let [set] = done.cookies()[..] else { panic!("one Set-Cookie: {done:?}") };
    let set = cookie::Cookie::parse(set).unwrap();
    assert_eq!(
        (set.name(), set.value(), set.path(), set.http_only()),
        ("iPlanetDirectoryPro", token, Some("/"), Some(true))
    );
    assert_eq!((set.domain(), set.expires(), set.max_age(), set.secure()), (None, None, None, None), "{set}");
    assert_eq!(token::node_hint(token).as_deref(), Some("01"));
    assert_eq!(c.store.len(), 1);
    assert_eq!(c.a.live_sessions(), 1);
    assert_eq!(c.a.pending_logins(), 0);
    let stats = c.a.stats();
    assert_eq!(stats.logins_started.load(Ordering::Relaxed), 1);
    assert_eq!(stats.logins_succeeded.load(Ordering::Relaxed), 1);
    assert_eq!(stats.logins_failed.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn full_mfa_login_in_memory_mode_gives_a_token_naming_the_node() {
    full_mfa_login("memory").await;
}

#[tokio::test(start_paused = true)]
async fn full_mfa_login_in_client_mode_gives_a_token_naming_the_node() {
    full_mfa_login("client").await;
}

#[tokio::test(start_paused = true)]
async fn full_mfa_login_in_store_mode_gives_a_token_naming_the_node() {
    full_mfa_login("store").await;
}

#[tokio::test(start_paused = true)]
async fn client_mode_keeps_the_journey_sealed_inside_the_auth_id() {
    let c = cluster("client");
    let first = send(&c.a, post(MFA, "")).await;
    let second = send(&c.a, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
    let claims = auth_id_claims(&second);
    assert!(claims["state"].is_string());
    assert!(!second.json["authId"].as_str().unwrap().contains("demo"));
    assert!(
        !String::from_utf8_lossy(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(second.json["authId"].as_str().unwrap().split('.').nth(1).unwrap())
                .unwrap()
        )
        .contains("demo"),
        "the username is sealed, not merely signed"
    );
    assert_eq!(c.a.pending_logins(), 0);
}

#[tokio::test(start_paused = true)]
async fn zero_page_login_answers_the_data_store_step_from_headers() {
    let c = cluster("memory");
    let req = |user: &str, password: &str, uri: &str| {
        Request::post(uri)
            .header("X-OpenAM-Username", user)
            .header("X-OpenAM-Password", password)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let done = send(&c.a, req("demo", PASSWORD, AUTH)).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(token::node_hint(done.json["tokenId"].as_str().unwrap()).is_some());
    assert!(done.cookies().contains(&"amlbcookie=01; Path=/"));
    assert!(done.cookies().iter().any(|c| c.starts_with("iPlanetDirectoryPro=")));

    // More modules remain: their callbacks, with a new authId.
    let next = send(&c.a, req("demo", PASSWORD, MFA)).await;
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(next.json["stage"], "TOTP1");
    let done = send(&c.a, post(MFA, fill(&next, &[&code(&c.a)]))).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(c.store.len(), 2);

    let wrong = send(&c.a, req("demo", "nope", AUTH)).await;
    wrong.assert_error(401, "Authentication Failed");
    assert_eq!(c.store.len(), 2, "a failed login leaves no session");
    assert_eq!(c.a.pending_logins(), 0);
}

#[tokio::test(start_paused = true)]
async fn zero_page_headers_accept_rfc2047_encoded_values() {
    let c = cluster("memory");
    let encoded = format!("=?UTF-8?B?{}?=", STANDARD.encode(PASSWORD));
    let req = Request::post(AUTH)
        .header("X-OpenAM-Username", "=?UTF-8?B?ZGVtbw==?=")
        .header("X-OpenAM-Password", encoded)
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&c.a, req).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn a_memory_login_continued_on_another_node_has_timed_out() {
    let c = cluster("memory");
    let first = send(&c.a, post(MFA, "")).await;
    let elsewhere = send(&c.b, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
    elsewhere.assert_timed_out();
    assert_eq!(c.b.stats().timed_out.load(Ordering::Relaxed), 1);
    assert_eq!(c.store.len(), 0);
    // The node that holds it still can.
    let back = send(&c.a, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
    assert_eq!(back.status, 200, "{back:?}");
}

#[tokio::test(start_paused = true)]
async fn a_client_login_continues_on_any_node_of_the_cluster() {
    let c = cluster("client");
    let first = send(&c.a, post(MFA, "")).await;
    let second = send(&c.b, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(auth_id_claims(&second)["sessionId"], auth_id_claims(&first)["sessionId"]);
    let done = send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await;
    assert_eq!(done.status, 200, "{done:?}");
    // The session token names the node that created the session.
    assert_eq!(token::node_hint(done.json["tokenId"].as_str().unwrap()).as_deref(), Some("01"));
}

/// `auth_sessions = "store"` with `sessions = "shared"`: the nodes of one process keep journeys in the
/// store they share, so each continues the other's, and an answered step is spent on both.
#[tokio::test(start_paused = true)]
async fn a_store_login_continues_on_any_node_of_the_process() {
    let c = cluster("store");
    let first = send(&c.a, post(MFA, "")).await;
    assert_eq!(c.b.pending_logins(), 1, "the journey waits in the store both nodes share");
    let second = send(&c.b, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
    assert_eq!(second.status, 200, "{second:?}");
    assert!(auth_id_claims(&second)["state"].is_null(), "the journey is in the store, not the authId");
    let typed = code(&c.a);
    let done = send(&c.a, post(MFA, fill(&second, &[&typed]))).await;
    assert_eq!(done.status, 200, "{done:?}");
    for node in [&c.a, &c.b] {
        send(node, post(MFA, fill(&first, &["demo", PASSWORD]))).await.assert_timed_out();
        send(node, post(MFA, fill(&second, &[&typed]))).await.assert_timed_out();
    }
    assert_eq!(c.store.len(), 1);
    assert_eq!((c.a.pending_logins(), c.b.pending_logins()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_wrong_password_fails_and_ends_the_chain() {
    for mode in ["memory", "client"] {
        let c = cluster(mode);
        let first = send(&c.a, post(AUTH, "")).await;
        let wrong = send(&c.a, post(AUTH, fill(&first, &["demo", "wrong"]))).await;
        wrong.assert_error(401, "Authentication Failed");
        assert_eq!(wrong.json["reason"], "Unauthorized");
        // AM ends a chain on failure: the same step cannot be retried.
        let retry = send(&c.a, post(AUTH, fill(&first, &["demo", PASSWORD]))).await;
        retry.assert_timed_out();
        assert_eq!(c.store.len(), 0, "{mode}");
        assert_eq!(c.a.pending_logins(), 0, "{mode}");
        assert_eq!(c.a.stats().logins_failed.load(Ordering::Relaxed), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn an_unknown_user_fails_like_a_wrong_password() {
    let c = cluster("memory");
    let first = send(&c.a, post(AUTH, "")).await;
    let wrong = send(&c.a, post(AUTH, fill(&first, &["nobody", PASSWORD]))).await;
    wrong.assert_error(401, "Authentication Failed");
    let first = send(&c.a, post(AUTH, "")).await;
    let empty = send(&c.a, post(AUTH, fill(&first, &[]))).await;
    empty.assert_error(401, "Authentication Failed");
    assert_eq!(c.store.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_wrong_totp_code_fails() {
    for mode in ["memory", "client"] {
        let c = cluster(mode);
        let first = send(&c.a, post(MFA, "")).await;
        let second = send(&c.a, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
        let wrong = send(&c.a, post(MFA, fill(&second, &[&wrong_code(&c.a)]))).await;
        wrong.assert_error(401, "Authentication Failed");
        let retry = send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await;
        retry.assert_timed_out();
        assert_eq!(c.store.len(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_user_without_a_totp_secret_fails_the_totp_step() {
    let c = cluster("memory");
    let first = send(&c.a, post(MFA, "")).await;
    let second = send(&c.a, post(MFA, fill(&first, &["nototp", PASSWORD]))).await;
    assert_eq!(second.status, 200);
    let done = send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await;
    done.assert_error(401, "Authentication Failed");
    assert_eq!(c.store.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_totp_code_is_accepted_one_step_late() {
    let c = cluster("memory");
    let first = send(&c.a, post(MFA, "")).await;
    let second = send(&c.a, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
    let typed = code(&c.a);
    advance(Duration::from_secs(30)).await;
    let done = send(&c.a, post(MFA, fill(&second, &[&typed]))).await;
    assert_eq!(done.status, 200, "{done:?}");
}

async fn replay_is_refused(mode: &str) {
    let c = cluster(mode);
    let first = send(&c.a, post(MFA, "")).await;
    let answer = fill(&first, &["demo", PASSWORD]);
    let second = send(&c.a, post(MFA, answer.clone())).await;
    assert_eq!(second.status, 200);
    // The same step again, on either node: its otk is stale.
    send(&c.a, post(MFA, answer.clone())).await.assert_timed_out();
    send(&c.b, post(MFA, answer)).await.assert_timed_out();
    // The current step still works: replaying an old step does not break the login.
    let done = send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await;
    assert_eq!(done.status, 200, "{done:?}");
    // And the final step cannot be replayed into a second session.
    send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await.assert_timed_out();
    assert_eq!(c.store.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_replayed_auth_id_has_timed_out_in_memory_mode() {
    replay_is_refused("memory").await;
}

#[tokio::test(start_paused = true)]
async fn a_replayed_auth_id_has_timed_out_in_client_mode() {
    replay_is_refused("client").await;
}

#[tokio::test(start_paused = true)]
async fn a_replayed_auth_id_has_timed_out_in_store_mode() {
    replay_is_refused("store").await;
}

#[tokio::test(start_paused = true)]
async fn an_expired_auth_session_has_timed_out() {
    for mode in ["memory", "client", "store"] {
        let c = cluster(mode);
        let first = send(&c.a, post(AUTH, "")).await;
        advance(Duration::from_secs(181)).await;
        send(&c.a, post(AUTH, fill(&first, &["demo", PASSWORD]))).await.assert_timed_out();
        assert_eq!(c.store.len(), 0);
    }
    // Just before the timeout it still works.
    let c = cluster("memory");
    let first = send(&c.a, post(AUTH, "")).await;
    advance(Duration::from_secs(179)).await;
    let done = send(&c.a, post(AUTH, fill(&first, &["demo", PASSWORD]))).await;
    assert_eq!(done.status, 200, "{done:?}");
}

#[tokio::test(start_paused = true)]
async fn sweep_drops_expired_logins_in_progress() {
    let c = cluster("memory");
    send(&c.a, post(AUTH, "")).await;
    assert_eq!(c.a.pending_logins(), 1);
    advance(Duration::from_secs(180)).await;
    c.a.sweep().await;
    assert_eq!(c.a.pending_logins(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_tampered_auth_id_is_refused_as_badly_signed() {
    let c = cluster("memory");
    let first = send(&c.a, post(AUTH, "")).await;
    let mut claims = auth_id_claims(&first);
    claims["exp"] = json!(u64::MAX);
    let auth_id = first.json["authId"].as_str().unwrap();
    let parts: Vec<&str> = auth_id.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    let mut body = first.json.clone();
    body["authId"] = json!(forged);
    let resp = send(&c.a, post(AUTH, body.to_string())).await;
    resp.assert_error(400, "AuthId JWT Signature not valid");

    // Signed with another cluster's secret.
    let other = AuthNode::new(
        BackendId::new("01").unwrap(),
        config("memory", "enabled = false"),
        Keys::derive(b"another cluster's secret, just as long as ours"),
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryJourneys::new()),
    );
    let theirs = send(&other, post(AUTH, "")).await;
    let resp = send(&c.a, post(AUTH, fill(&theirs, &["demo", PASSWORD]))).await;
    resp.assert_error(400, "AuthId JWT Signature not valid");
    assert_eq!(c.store.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_garbage_auth_id_cannot_be_parsed() {
    let c = cluster("memory");
    for auth_id in ["garbage", "a.b.c", "....", "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.!!.x"] {
        let body = json!({"authId": auth_id, "callbacks": []}).to_string();
        send(&c.a, post(AUTH, body)).await.assert_error(400, "Failed to parse JWT");
    }
    send(&c.a, post(AUTH, r#"{"authId": 7}"#)).await.assert_error(400, "Failed to parse JWT");
    assert_eq!(c.store.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_json_body_is_a_bad_request() {
    let c = cluster("memory");
    for body in ["{", "not json", "[1,2]", "\"authId\""] {
        send(&c.a, post(AUTH, body)).await.assert_error(400, "Invalid JSON");
    }
    assert_eq!(c.a.stats().logins_started.load(Ordering::Relaxed), 0);
    assert_eq!(c.a.pending_logins(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_index_type_is_a_bad_request() {
    let c = cluster("memory");
    let resp = send(&c.a, post(&format!("{AUTH}?authIndexType=level&authIndexValue=1"), "")).await;
    resp.assert_error(400, "Unknown Authentication Index Type");
    assert_eq!(c.a.pending_logins(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_chain_or_module_is_a_bad_request_naming_it() {
    let c = cluster("memory");
    let resp = send(&c.a, post(&format!("{AUTH}?authIndexType=service&authIndexValue=nope"), "")).await;
    resp.assert_error(400, "No authentication chain named 'nope'");
    let resp = send(&c.a, post(&format!("{AUTH}?authIndexType=module&authIndexValue=LDAP"), "")).await;
    resp.assert_error(400, "No authentication module named 'LDAP'");
    let resp = send(&c.a, post(&format!("{AUTH}?authIndexType=service"), "")).await;
    resp.assert_error(400, "authIndexValue is required");
    assert_eq!(c.a.pending_logins(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_single_module_runs_as_a_one_module_chain() {
    let c = cluster("memory");
    let uri = format!("{AUTH}?authIndexType=module&authIndexValue=DataStore");
    let first = send(&c.a, post(&uri, "")).await;
    assert_eq!(auth_id_claims(&first)["authIndexType"], "module");
    let done = send(&c.a, post(&uri, fill(&first, &["demo", PASSWORD]))).await;
    assert_eq!(done.status, 200, "{done:?}");
    // TOTP alone has nobody to check a code for: it can only fail.
    let uri = format!("{AUTH}?authIndexType=module&authIndexValue=TOTP");
    let first = send(&c.a, post(&uri, "")).await;
    send(&c.a, post(&uri, fill(&first, &[&code(&c.a)]))).await.assert_error(401, "Authentication Failed");
}

#[tokio::test(start_paused = true)]
async fn js_sdk_continuations_with_extra_fields_are_accepted() {
    let c = cluster("memory");
    let first = send(&c.a, post(MFA, "")).await;
    let mut body: Value = serde_json::from_str(&fill(&first, &["demo", PASSWORD])).unwrap();
    body["status"] = json!(200);
    body["ok"] = json!(true);
    body["infoText"] = json!("");
    body["callbacks"][0].as_object_mut().unwrap().remove("output");
    let second = send(&c.a, post(MFA, body.to_string())).await;
    assert_eq!(second.status, 200, "{second:?}");
    let done = send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await;
    assert_eq!(done.status, 200, "{done:?}");
}

#[tokio::test(start_paused = true)]
async fn legacy_and_sub_realm_paths_authenticate() {
    let c = cluster("memory");
    let legacy = "/am/json/authenticate";
    let first = send(&c.a, post(legacy, "")).await;
    let done = send(&c.a, post(legacy, fill(&first, &["demo", PASSWORD]))).await;
    assert_eq!(done.json["realm"], "/");

    let sub = "/am/json/realms/root/realms/alpha/realms/beta/authenticate";
    let first = send(&c.a, post(sub, "")).await;
    assert_eq!(auth_id_claims(&first)["realm"], "/alpha/beta");
    // A login belongs to its realm.
    send(&c.a, post(AUTH, fill(&first, &["demo", PASSWORD]))).await.assert_timed_out();
    let first = send(&c.a, post(sub, "")).await;
    let done = send(&c.a, post(sub, fill(&first, &["demo", PASSWORD]))).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.json["realm"], "/alpha/beta");
    let token = done.json["tokenId"].as_str().unwrap();
    let info = send(&c.a, post(&format!("{}&tokenId={token}", with_token("getSessionInfo")), "")).await;
    assert_eq!(info.json["realm"], "/alpha/beta");
    assert_eq!(
        info.json["universalId"],
        "id=demo,ou=user,o=beta,o=alpha,ou=services,dc=openam,dc=forgerock,dc=org"
    );
}

// ------------------------------------------------------------------------------------------------
// Quotas
// ------------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn quota_deny_access_refuses_the_login_and_leaves_no_extra_session() {
    let c = cluster_with("memory", "enabled = true\n  limit = 1\n  exhaustion_action = \"DENY_ACCESS\"");
    login(&c.a).await;
    let first = send(&c.b, post(AUTH, "")).await;
    let refused = send(&c.b, post(AUTH, fill(&first, &["demo", PASSWORD]))).await;
    refused.assert_error(401, "Maximum Sessions Limit Reached.");
    assert_eq!(c.store.len(), 1);
    assert_eq!(c.b.stats().quota_refusals.load(Ordering::Relaxed), 1);
    assert_eq!(c.b.stats().logins_failed.load(Ordering::Relaxed), 1);
    assert_eq!(c.b.pending_logins(), 0);
}

#[tokio::test(start_paused = true)]
async fn quota_destroy_actions_end_older_sessions_and_count_them() {
    let c = cluster_with(
        "memory",
        "enabled = true\n  limit = 2\n  exhaustion_action = \"DESTROY_OLDEST_SESSION\"",
    );
    let oldest = login(&c.a).await;
    login(&c.a).await;
    login(&c.a).await;
    assert_eq!(c.store.len(), 2);
    assert_eq!(c.a.stats().quota_evictions.load(Ordering::Relaxed), 1);
    let validate = send(&c.a, post(&format!("{}&tokenId={oldest}", with_token("validate")), "")).await;
    assert_eq!(validate.json, json!({"valid": false}));
}
