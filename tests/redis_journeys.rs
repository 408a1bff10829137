//! Journeys on a real Redis: with `auth_sessions = "store"` any `tether node` process continues any
//! login, and every step's `authId` is answered once across all of them; with `auth_sessions = "client"`
//! the answered steps are spent in Redis, so a replay to another process is refused too (AM's
//! authentication session allowlisting). A store that cannot be reached is a 503, never a step let
//! through.
//!
//! Each test starts its own `redis-server` ([`support::RedisServer`]); without one it is skipped with a
//! message, except under CI, where it fails.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{DEMO_PASSWORD, Deployment, RedisServer, eventually, totp_now};

/// `authId`s held in Redis under the example's `key_prefix`.
fn journeys_in_redis(redis: &RedisServer) -> String {
    redis.command(&["KEYS", "tether:journey:*"])
}

/// AM's answer for a step that cannot be continued: 401 `Session has timed out`, error code 110.
fn assert_timed_out(status: u16, answer: &Value, what: &str) {
    assert_eq!(
        (status, &answer["code"], &answer["message"], &answer["detail"]["errorCode"]),
        (401, &json!(401), &json!("Session has timed out"), &json!("110")),
        "{what}: {answer}"
    );
}

/// Acceptance 3a: the three requests of an `mfa` login go to nodes 01, 02 and 03 and it succeeds; each
/// step answered is then refused on every node, and the session is there for all of them.
#[tokio::test]
async fn a_store_journey_continues_on_any_process_and_each_step_is_single_use() {
    let Some(redis) = RedisServer::start().await else { return };
    let d = Deployment::start_with(&redis, 1000, |t| t.set("auth.auth_sessions", "store")).await;
    let mut login = d.journey(0);
    let (status, first) = login.start("mfa").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["stage"], "DataStore1");
    assert!(journeys_in_redis(&redis).starts_with("*1\r\n"), "the journey waits in Redis");

    login.retarget(d.base(1));
    let (status, second) = login.answer("mfa", first.clone(), &["demo", DEMO_PASSWORD]).await;
    assert_eq!(status, 200, "node 02 continues what 01 started: {second}");
    assert_eq!(second["stage"], "TOTP1");

    login.retarget(d.base(2));
    let (status, v) = login.answer("mfa", first.clone(), &["demo", DEMO_PASSWORD]).await;
    assert_timed_out(status, &v, "the first step again, while the login is at its second");
    let code = totp_now();
    let (status, done) = login.answer("mfa", second.clone(), &[&code]).await;
    assert_eq!(status, 200, "node 03 finishes it, the stale replay left it alone: {done}");
    let token = done["tokenId"].as_str().unwrap().to_string();
    assert_eq!(journeys_in_redis(&redis), "*0\r\n", "a finished login leaves no journey behind");

    for node in 0..3 {
        login.retarget(d.base(node));
        let (status, v) = login.answer("mfa", first.clone(), &["demo", DEMO_PASSWORD]).await;
        assert_timed_out(status, &v, &format!("the password step replayed on node {node}"));
        let (status, v) = login.answer("mfa", second.clone(), &[&code]).await;
        assert_timed_out(status, &v, &format!("the code step replayed on node {node}"));
        let (status, v) = d.session(node, "validate", &token).await;
        assert_eq!((status, &v["valid"]), (200, &json!(true)), "node {node}: {v}");
    }
}

/// Acceptance 3b: with `auth_sessions = "client"` on Redis, a step answered on 01 is refused on 02 and
/// 03 (the journey itself travels in the `authId`; only the spent `otk`s are in Redis).
#[tokio::test]
async fn a_client_step_answered_on_one_process_is_refused_on_the_others() {
    let Some(redis) = RedisServer::start().await else { return };
    let d = Deployment::start_with(&redis, 1000, |t| t.set("auth.auth_sessions", "client")).await;
    let mut login = d.journey(0);
    let (status, first) = login.start("mfa").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(journeys_in_redis(&redis), "*0\r\n", "client mode keeps no journey in Redis");
    let (status, second) = login.answer("mfa", first.clone(), &["demo", DEMO_PASSWORD]).await;
    assert_eq!(status, 200, "{second}");
    for node in [1, 2, 0] {
        login.retarget(d.base(node));
        let (status, v) = login.answer("mfa", first.clone(), &["demo", DEMO_PASSWORD]).await;
        assert_timed_out(status, &v, &format!("the step answered on 01, replayed on node {node}"));
    }
    // The step not yet answered still goes on, on any node.
    login.retarget(d.base(1));
    let (status, done) = login.answer("mfa", second, &[&totp_now()]).await;
    assert_eq!(status, 200, "{done}");
}

/// Acceptance 3c: Redis goes away in the middle of a store-mode login: the next step, and new logins, get
/// AM's 503 with `Retry-After` on every node (never a step let through, never a 500). Once Redis is back
/// logins work again without a restart; the login that was cut off answers 110 (Redis lost it).
#[tokio::test]
async fn an_unreachable_store_is_503_in_the_middle_of_a_store_login() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let d = Deployment::start_with(&redis, 300, |t| t.set("auth.auth_sessions", "store")).await;
    let mut login = d.journey(0);
    let (status, first) = login.start("mfa").await;
    assert_eq!(status, 200, "{first}");

    redis.stop();
    for node in 0..3 {
        login.retarget(d.base(node));
        let (status, v) = login.answer("mfa", first.clone(), &["demo", DEMO_PASSWORD]).await;
        assert_eq!(
            (status, &v["code"], &v["reason"]),
            (503, &json!(503), &json!("Service Unavailable")),
            "{v}"
        );
        assert!(v["message"].as_str().unwrap().contains("store"), "{v}");
        let (status, v) = d.journey(node).start("mfa").await;
        assert_eq!((status, &v["code"]), (503, &json!(503)), "a new login on node {node}: {v}");
    }
    let resp = d
        .http
        .post(format!("{}/am/json/realms/root/authenticate", d.base(1)))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");

    redis.restart().await;
    for node in 0..3 {
        // Each node reconnects on its own (with backoff); readiness shows when it has.
        eventually("ready again", Duration::from_secs(5), async || d.ready(node).await == 200).await;
    }
    login.retarget(d.base(0));
    let (status, v) = login.answer("mfa", first, &["demo", DEMO_PASSWORD]).await;
    assert_timed_out(status, &v, "the login Redis lost");
    let mut fresh = d.journey(1);
    assert!(!fresh.mfa_login(DEMO_PASSWORD).await.is_empty());
}

/// A journey this version cannot read (another version wrote it, mid rolling upgrade) is a login that
/// cannot continue, 110 as AM answers it, and not a store failure: the node stays ready.
#[tokio::test]
async fn an_unreadable_journey_in_the_store_has_timed_out() {
    let Some(redis) = RedisServer::start().await else { return };
    let d = Deployment::start_with(&redis, 1000, |t| t.set("auth.auth_sessions", "store")).await;
    let mut login = d.journey(0);
    let (status, first) = login.start("mfa").await;
    assert_eq!(status, 200, "{first}");
    let keys = journeys_in_redis(&redis);
    let key = keys.lines().nth(2).expect("one journey key");
    let reply = redis.command(&["GET", key]);
    let mut kept: Value = serde_json::from_str(reply.lines().nth(1).unwrap()).unwrap();
    kept["j"] = json!({"from": "another version"});
    assert_eq!(redis.command(&["SET", key, &kept.to_string(), "PX", "60000"]).trim(), "+OK");

    login.retarget(d.base(1));
    let (status, v) = login.answer("mfa", first, &["demo", DEMO_PASSWORD]).await;
    assert_timed_out(status, &v, "a journey written by another version");
    assert_eq!(d.ready(1).await, 200, "an unreadable record is no store failure");
    assert_eq!(journeys_in_redis(&redis), "*0\r\n", "taken, so it cannot be tried again");
}
