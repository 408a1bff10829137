//! Acceptance of lockout and one-time codes (SPEC 6.2 item 4): `failures` wrong passwords lock a user
//! out, the right password included, for `duration_s`, on every node sharing the store (three `tether
//! node` processes on one Redis); the admin's `POST /sessions/unlock` ends a lock for all of them; and a
//! TOTP code that completed a login cannot complete another, on any process.
//!
//! The Redis tests start their own `redis-server` ([`support::RedisServer`]); without one they are
//! skipped with a message, except under CI, where they fail.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{
    Cluster, DEMO_PASSWORD, Deployment, ProxyHandle, RedisCluster, RedisServer, client, eventually, totp_now,
};

/// A zero-page login of `demo` with `password` at `base`, from a client the `X-Forwarded-For` names
/// (the address the lockout lines log): status, answer, and whether a session cookie came back.
async fn login(base: &str, password: &str) -> (u16, Value, bool) {
    let resp = client()
        .post(format!("{base}/am/json/realms/root/authenticate"))
        .header("X-OpenAM-Username", "demo")
        .header("X-OpenAM-Password", password)
        .header("X-Forwarded-For", "203.0.113.7")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("iPlanetDirectoryPro="));
    (status, resp.json().await.unwrap_or(Value::Null), cookie)
}

fn assert_refused(answer: &(u16, Value, bool), what: &str) {
    let (status, body, cookie) = answer;
    assert_eq!(
        (*status, body),
        (401, &json!({"code": 401, "reason": "Unauthorized", "message": "Authentication Failed"})),
        "{what}"
    );
    assert!(!cookie, "{what}: no session cookie");
}

/// Two embedded nodes sharing one in-process store, `failures = 3` within a minute, locked `duration_s`.
async fn locking_cluster(duration_s: i64) -> ProxyHandle {
    Cluster::new()
        .active(["01", "02"])
        .shared_sessions()
        .set("auth.lockout.failures", 3)
        .set("auth.lockout.within_s", 60)
        .set("auth.lockout.duration_s", duration_s)
        .proxy("admin_token", "let-the-admin-in-now")
        .start()
        .await
}

#[tokio::test]
async fn three_wrong_passwords_lock_the_user_out_on_every_node_until_the_duration_ends() {
    let proxy = locking_cluster(2).await;
    let (one, two) = (proxy.node_url("01"), proxy.node_url("02"));
    for base in [&one, &two] {
        assert_refused(&login(base, "wrong").await, "a wrong password");
    }
    let before_lock = tokio::time::Instant::now();
    assert_refused(&login(&one, "wrong").await, "the third wrong password");
    for base in [&one, &two] {
        assert_refused(&login(base, "secret").await, "the right password, locked");
    }
    assert_refused(&login(&proxy.url(""), "secret").await, "the right password through the proxy");
    assert_eq!(proxy.node("01").live_sessions(), 0, "a refused login leaves no session");

    eventually("the lock ends after duration_s", Duration::from_secs(10), async || {
        login(&two, "secret").await.0 == 200
    })
    .await;
    let open = before_lock.elapsed();
    assert!(open >= Duration::from_secs(2), "open only after the 2 s lock: {open:?}");
    assert_eq!(proxy.node("01").live_sessions(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_completed_login_resets_the_count() {
    let proxy = locking_cluster(600).await;
    let one = proxy.node_url("01");
    for _ in 0..2 {
        assert_refused(&login(&one, "wrong").await, "a wrong password");
    }
    assert_eq!(login(&one, "secret").await.0, 200);
    for _ in 0..2 {
        assert_refused(&login(&one, "wrong").await, "a wrong password after the reset");
    }
    assert_eq!(login(&one, "secret").await.0, 200, "two, a login, two: never three in a row");
    proxy.shutdown().await;
}

async fn unlock(proxy: &ProxyHandle, user: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client().post(proxy.admin_url(&format!("/sessions/unlock?user={user}")));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_unlock_ends_a_lock_and_needs_the_admin_token() {
    let proxy = locking_cluster(600).await;
    let one = proxy.node_url("01");
    for _ in 0..3 {
        login(&one, "wrong").await;
    }
    assert_refused(&login(&one, "secret").await, "locked");
    let (status, _) = unlock(&proxy, "demo", None).await;
    assert_eq!(status, 401, "POSTs on the admin listener need admin_token");
    assert_refused(&login(&one, "secret").await, "still locked");
    assert_eq!(
        unlock(&proxy, "demo", Some("let-the-admin-in-now")).await,
        (200, json!({"user": "demo", "unlocked": true}))
    );
    assert_eq!(login(&proxy.node_url("02"), "secret").await.0, 200, "unlocked on every node");
    assert_eq!(
        unlock(&proxy, "demo", Some("let-the-admin-in-now")).await.1["unlocked"],
        false,
        "nothing left to unlock"
    );
    let (status, v) = unlock(&proxy, "", Some("let-the-admin-in-now")).await;
    assert_eq!(
        (status, v["message"].as_str()),
        (400, Some("Name the user: POST /sessions/unlock?user=NAME"))
    );
    proxy.shutdown().await;
}

fn lockout(toml: support::Toml) -> support::Toml {
    toml.set("auth.lockout.failures", 3).set("auth.lockout.within_s", 60).set("auth.lockout.duration_s", 600)
}

#[tokio::test]
async fn on_redis_failures_spread_over_three_processes_lock_all_of_them_and_one_admin_unlocks() {
    let Some(redis) = RedisServer::start().await else { return };
    let mut d = Deployment::start_with(&redis, 1000, lockout).await;
    for node in 0..3 {
        assert_refused(&login(&d.base(node), "wrong").await, &format!("a wrong password on node {node}"));
    }
    let third = d.nodes[2].as_mut().unwrap();
    let line = third.wait_log("account locked: too many failed logins").await;
    assert_eq!((&line["user"], &line["span"]["client"]), (&json!("demo"), &json!("203.0.113.7")), "{line}");
    assert!(redis.integer(&["PTTL", "{tether:demo}:lock"]) > 590_000, "the lock is in Redis, with its TTL");
    for node in 0..3 {
        assert_refused(&login(&d.base(node), DEMO_PASSWORD).await, &format!("locked on node {node}"));
    }
    assert_eq!(redis.integer(&["EXISTS", "{tether:demo}:exp"]), 0, "no session was made");

    // The admin of a `tether run` whose embedded node names the same Redis reaches the same lock.
    let admin = Cluster::new()
        .active(["09"])
        .set("auth.sessions", "redis")
        .set("auth.store.url", redis.url())
        .start()
        .await;
    assert_eq!(unlock(&admin, "demo", None).await, (200, json!({"user": "demo", "unlocked": true})));
    assert_eq!(login(&d.base(1), DEMO_PASSWORD).await.0, 200, "node 02 lets demo in again");
    admin.shutdown().await;
}

#[tokio::test]
async fn on_redis_a_totp_code_that_completed_a_login_is_refused_on_another_process() {
    let Some(redis) = RedisServer::start().await else { return };
    let d = Deployment::start_with(&redis, 1000, |t| t.set("auth.totp_single_use", true)).await;
    let code = totp_now();
    let mfa = async |node: usize| {
        let mut login = d.journey(node);
        let (_, first) = login.start("mfa").await;
        let (status, second) = login.answer("mfa", first, &["demo", DEMO_PASSWORD]).await;
        assert_eq!(status, 200, "{second}");
        login.answer("mfa", second, &[&code]).await
    };
    let (status, done) = mfa(0).await;
    assert_eq!(status, 200, "the code completes a login on 01: {done}");
    for node in [1, 2, 0] {
        let (status, v) = mfa(node).await;
        assert_eq!(
            (status, &v),
            (401, &json!({"code": 401, "reason": "Unauthorized", "message": "Authentication Failed"})),
            "the same code again on node {node}"
        );
    }
    assert_eq!(redis.integer(&["ZCARD", "{tether:demo}:exp"]), 1, "one session, from the first login");
}

#[tokio::test]
async fn on_a_redis_cluster_the_count_and_the_lock_keep_to_the_users_slot() {
    let Some(cluster) = RedisCluster::start().await else { return };
    let d = Deployment::start_with(&cluster, 1000, lockout).await;
    for node in 0..3 {
        assert_refused(&login(&d.base(node), "wrong").await, &format!("a wrong password on node {node}"));
    }
    assert_refused(&login(&d.base(0), DEMO_PASSWORD).await, "locked, across the cluster's nodes");
    let owner = cluster.owner("{tether:demo}:lock");
    assert_eq!(owner, cluster.owner("{tether:demo}:exp"), "the user's keys share one slot");
    let ttl = support::redis_command(owner, &["PTTL", "{tether:demo}:lock"]);
    assert!(
        ttl.trim().trim_start_matches(':').parse::<i64>().is_ok_and(|ms| ms > 590_000),
        "the lock with its TTL: {ttl:?}"
    );
}

#[tokio::test]
async fn a_failure_that_cannot_be_counted_is_a_503_not_a_401() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let d = Deployment::start_with(&redis, 300, lockout).await;
    assert_refused(&login(&d.base(0), "wrong").await, "counted");
    redis.stop();
    let (status, v, cookie) = login(&d.base(1), "wrong").await;
    assert_eq!((status, cookie), (503, false), "an uncounted failure would be a free guess: {v}");
}
