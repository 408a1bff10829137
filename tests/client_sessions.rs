//! Client-side sessions (`session_location = "client"`) across real `tether node` processes: the tokenId
//! is the session, so nodes that share only the secret accept each other's tokens; logout needs a shared
//! denylist, and `check` refuses quotas with them, as AM does.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::{Deployment, RedisServer, Toml};
use tether::am::token;

/// `[auth]` edits of every deployment here: client-side sessions, and the example's quota off (AM allows
/// none with them).
fn client_side(toml: Toml) -> Toml {
    toml.set("auth.session_location", "client").set("auth.quota.enabled", false)
}

/// A login of `demo` on `node` that must succeed: its tokenId.
async fn login(d: &Deployment, node: usize) -> String {
    let (status, body, _, _) = d.login(node).await;
    assert_eq!(status, 200, "{body}");
    body["tokenId"].as_str().unwrap().to_owned()
}

/// `validate` of `token` on `node`: its answer, which must be a 200.
async fn validate(d: &Deployment, node: usize, token: &str) -> Value {
    let (status, body) = d.session(node, "validate", token).await;
    assert_eq!(status, 200, "validate on node {}: {body}", node + 1);
    body
}

/// `token` with one character of its session JWT changed.
fn tampered(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let i = bytes.len() - 12;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn a_token_issued_on_one_node_validates_on_every_node_without_any_store() {
    let d = Deployment::local_with(client_side).await;
    let token = login(&d, 0).await;

    // AM's client-side layout: `<id>*<ext>*<JWT>`, ext naming the issuing node and type=JWT.
    assert_eq!(
        token::decode_ext(&token),
        Some(vec![("SI".into(), "01".into()), ("S1".into(), "01".into()), ("type".into(), "JWT".into())])
    );
    assert_eq!(token::node_hint(&token).as_deref(), Some("01"));
    let jwt = token::client_session_jwt(&token).expect("the tail is the session JWT");
    assert_eq!(jwt.split('.').count(), 5, "a compact JWE: {jwt}");
    assert!(token.len() < 2048, "{} bytes", token.len());

    for node in 0..3 {
        let answer = validate(&d, node, &token).await;
        assert_eq!(
            (&answer["valid"], &answer["uid"], &answer["realm"]),
            (&json!(true), &json!("demo"), &json!("/"))
        );
    }
    let (status, info) = d.session(2, "getSessionInfo", &token).await;
    assert_eq!((status, &info["username"]), (200, &json!("demo")), "{info}");
    let (status, active) = d.session(1, "isActive", &token).await;
    assert_eq!((status, &active["active"]), (200, &json!(true)), "{active}");

    // Tampered and foreign tokens are simply not sessions: valid false, never an error.
    let foreign = token::mint_client_token(&ring::rand::SystemRandom::new(), "01", "eyJ.e30.sig.x.y");
    for bad in [tampered(&token), foreign, token::mint_token(&ring::rand::SystemRandom::new(), "02")] {
        for node in 0..3 {
            assert_eq!(validate(&d, node, &bad).await, json!({"valid": false}), "{bad}");
        }
    }
}

#[tokio::test]
async fn an_idle_reset_reissues_the_token_in_the_session_cookie() {
    let d = Deployment::local_with(client_side).await;
    let token = login(&d, 0).await;
    let resp = d
        .http
        .post(format!("{}/am/json/realms/root/sessions?_action=refresh&tokenId={token}", d.base(1)))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers().get("set-cookie").expect("refresh sets the reissued token").to_str().unwrap();
    let reissued = cookie.strip_prefix("iPlanetDirectoryPro=").unwrap().split(';').next().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert_ne!(reissued, token);
    assert_eq!(token::node_hint(&reissued).as_deref(), Some("02"), "the refreshing node issued it");
    assert_eq!(validate(&d, 2, &reissued).await["valid"], true);
    // A plain validate is no idle reset: nothing to reissue.
    let resp = d
        .http
        .post(format!("{}/am/json/realms/root/sessions?_action=validate&tokenId={token}", d.base(1)))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn logout_on_one_node_denies_the_token_on_every_node_of_the_store() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let d = Deployment::start_with(&redis, 1000, client_side).await;
    let token = login(&d, 0).await;
    let other = login(&d, 2).await;
    assert_eq!(validate(&d, 1, &token).await["valid"], true);

    let (status, answer) = d.session(1, "logout", &token).await;
    assert_eq!((status, answer), (200, json!({"result": "Successfully logged out"})));
    for node in [0, 2] {
        assert_eq!(validate(&d, node, &token).await, json!({"valid": false}), "node {}", node + 1);
    }
    let (_, again) = d.session(2, "logout", &token).await;
    assert_eq!(again, json!({"result": "Token has expired"}), "the first logout was the one");
    assert_eq!(validate(&d, 0, &other).await["valid"], true, "other sessions live on");

    // One key per logged-out session, gone when the session would have ended (120 minutes at most).
    let keys = redis.command(&["KEYS", "tether:deny:*"]);
    assert!(keys.starts_with("*1\r\n"), "{keys}");
    let key = keys.lines().nth(2).unwrap().to_owned();
    let ttl = redis.integer(&["PTTL", &key]);
    assert!(ttl > 0 && ttl <= 120 * 60 * 1000, "{ttl}");

    // The store is gone: neither the denied token nor the live one gets an answer that may be wrong.
    redis.stop();
    for t in [&token, &other] {
        let (status, body) = d.session(0, "validate", t).await;
        assert_eq!(status, 503, "{body}");
    }
}

#[test]
fn check_refuses_client_side_sessions_with_a_quota_and_names_the_fix() {
    let secret = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/standalone/secret.txt");
    let example = Toml::parse(include_str!("../examples/standalone/proxy.toml"))
        .set("auth.signing_secret_file", secret)
        .set("auth.session_location", "client");
    let check = |toml: &Toml, name: &str| {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join(format!("client-sessions-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, toml.to_string()).unwrap();
        let out =
            Command::new(env!("CARGO_BIN_EXE_tether")).args(["check", "-c"]).arg(&path).output().unwrap();
        let _ = std::fs::remove_file(&path);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = check(&example, "quota");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("`auth.session_location`: \"client\""), "names the key: {err}");
    assert!(err.contains("line "), "names the line: {err}");
    assert!(err.contains("[auth.quota] enabled = false"), "names the fix: {err}");
    let (code, err) = check(&example.set("auth.quota.enabled", false), "no-quota");
    assert_eq!(code, Some(0), "{err}");
}
