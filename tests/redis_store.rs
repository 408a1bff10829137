//! The session store on a real Redis (`sessions = "redis"`): shared by separate `tether node` processes,
//! quotas atomic across them, and failing closed (503) while Redis is unreachable.
//!
//! Each test starts its own `redis-server` ([`support::RedisServer`]); without one it is skipped with a
//! message, except under CI, where it fails.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Deployment, RedisServer, TetherProcess, eventually, login_race};
use tether::config::ExhaustionAction;
use tether::{RedisStore, SessionStore};
use tokio::time::Instant;

const IDLE: Duration = Duration::from_secs(30 * 60);
const MAX: Duration = Duration::from_secs(120 * 60);

#[tokio::test]
async fn the_fixture_starts_stops_and_restarts_redis() {
    let Some(mut redis) = RedisServer::start().await else { return };
    assert_ne!(redis.port, 6379);
    assert_eq!(redis.command(&["SET", "k", "v"]).trim(), "+OK");
    redis.restart().await;
    assert_eq!(redis.integer(&["EXISTS", "k"]), 0, "no persistence: a restart loses every key");
}

fn store_config(redis: &RedisServer, timeout_ms: u64) -> tether::config::StoreConfig {
    tether::config::StoreConfig {
        servers: tether::config::StoreServers::Single(redis.url()),
        key_prefix: "tether".into(),
        timeout: Duration::from_millis(timeout_ms),
    }
}

fn session(token: &str) -> tether::Session {
    let now = Instant::now();
    tether::Session::new(token, format!("shandle:{token}"), "demo", "/", now, IDLE, MAX)
}

/// Two stores on one Redis, as two processes would have: what one writes the other reads.
#[tokio::test]
async fn two_stores_on_one_redis_share_sessions() {
    let Some(redis) = RedisServer::start().await else { return };
    let a = RedisStore::connect(&store_config(&redis, 1000)).unwrap();
    let b = RedisStore::connect(&store_config(&redis, 1000)).unwrap();
    let now = Instant::now();
    a.create(session("tok-1"), None, now).await.unwrap().unwrap();
    let s = b.get("tok-1", now).await.unwrap().expect("the other store sees the session");
    assert_eq!((s.username.as_str(), s.handle.as_str(), s.realm.as_str()), ("demo", "shandle:tok-1", "/"));
    assert_eq!((s.max_idle, s.max_time), (IDLE, MAX));
    assert!(b.touch("tok-1", now).await.unwrap().is_some());
    assert_eq!(a.live_sessions("demo", now).await.unwrap(), 1);
    assert!(b.remove("tok-1", now).await.unwrap(), "a live session is ended");
    assert!(!a.remove("tok-1", now).await.unwrap(), "the second logout: Token has expired");
    assert!(a.get("tok-1", now).await.unwrap().is_none());
    assert_eq!(redis.integer(&["EXISTS", "{tether:demo}:exp"]), 0, "a user with no session keeps no keys");
    assert!(b.get("never-created", now).await.unwrap().is_none());
}

/// The four actions on three sessions created in order, the second touched last: the same victims as
/// the in-process planner.
#[tokio::test]
async fn quota_actions_pick_the_planners_victims() {
    let Some(redis) = RedisServer::start().await else { return };
    let store = RedisStore::connect(&store_config(&redis, 1000)).unwrap();
    for (action, evicted) in [
        (ExhaustionAction::DenyAccess, None),
        (ExhaustionAction::DestroyOldestSession, Some(vec!["a"])),
        (ExhaustionAction::DestroyOldSessions, Some(vec!["a", "b", "c"])),
    ] {
        redis.command(&["FLUSHALL"]);
        let q = Some(tether::Quota { limit: 3, action });
        for t in ["a", "b", "c"] {
            store.create(session(t), q, Instant::now()).await.unwrap().unwrap();
        }
        let created = store.create(session("d"), q, Instant::now()).await.unwrap();
        match evicted {
            None => assert!(created.is_err(), "{action}: denied"),
            Some(victims) => {
                let got = created.unwrap().evicted;
                assert_eq!(got.len(), victims.len(), "{action}");
                for v in victims {
                    assert!(store.get(v, Instant::now()).await.unwrap().is_none(), "{action}: {v} ended");
                }
            }
        }
        let live = store.live_sessions("demo", Instant::now()).await.unwrap();
        assert!(live <= 3, "{action}: {live}");
    }
}

/// Acceptance 1: a session made on node 01 validates, refreshes and logs out on 02 and 03 directly (and
/// through the proxy), and still validates after node 01 was killed and restarted.
#[tokio::test]
async fn separate_node_processes_share_sessions_through_redis() {
    let Some(redis) = RedisServer::start().await else { return };
    let mut d = Deployment::start(&redis, "enabled = false", 1000).await;
    let (status, done, _, _) = d.login(0).await;
    assert_eq!(status, 200, "{done}");
    let token = done["tokenId"].as_str().unwrap().to_string();
    for node in [1, 2] {
        let (status, v) = d.session(node, "validate", &token).await;
        assert_eq!((status, &v["valid"], &v["uid"]), (200, &json!(true), &json!("demo")), "node {node}: {v}");
        let (status, v) = d.session(node, "refresh", &token).await;
        assert_eq!((status, &v["uid"], &v["idletime"]), (200, &json!("demo"), &json!(0)), "node {node}: {v}");
        let (status, v) = d.session(node, "getSessionInfo", &token).await;
        assert_eq!((status, &v["username"]), (200, &json!("demo")), "node {node}: {v}");
    }

    // Through the proxy: its session-token hint sends validate to 01, and any node would agree.
    let mut proxy = TetherProcess::spawn(&["run", "-c", d.config.to_str().unwrap()]).await;
    let via =
        format!("http://{}/am/json/realms/root/sessions?_action=validate&tokenId={token}", proxy.listen());
    let mut valid = Value::Null;
    eventually("the proxy sees the nodes up and answers", Duration::from_secs(10), async || {
        let Ok(resp) = d.http.post(&via).header("content-type", "application/json").send().await else {
            return false;
        };
        valid = resp.json().await.unwrap_or(Value::Null);
        valid["valid"] == true
    })
    .await;

    d.restart(0).await;
    let (status, v) = d.session(0, "validate", &token).await;
    assert_eq!((status, &v["valid"]), (200, &json!(true)), "node 01 after its restart: {v}");

    let (status, v) = d.session(2, "logout", &token).await;
    assert_eq!((status, &v["result"]), (200, &json!("Successfully logged out")), "{v}");
    for node in [0, 1, 2] {
        let (status, v) = d.session(node, "validate", &token).await;
        assert_eq!((status, &v["valid"]), (200, &json!(false)), "node {node} after the logout: {v}");
    }
    let (_, v) = d.session(1, "logout", &token).await;
    assert_eq!(v["result"], "Token has expired", "{v}");
    d.assert_running();
    assert!(proxy.child.try_wait().unwrap().is_none(), "the proxy runs");
}

/// Acceptance 2: 200 concurrent logins of one user, limit 2, spread over the three node processes, for
/// each exhaustion action, while a sampler reads the user's sessions in Redis without pause: never more
/// than 2. `DENY_ACCESS` admits exactly 2; the others admit every login and leave exactly 2 live.
#[tokio::test]
async fn the_quota_holds_across_processes_for_every_action() {
    const LOGINS: usize = 200;
    let Some(redis) = RedisServer::start().await else { return };
    for action in ["DENY_ACCESS", "DESTROY_NEXT_EXPIRING", "DESTROY_OLDEST_SESSION", "DESTROY_OLD_SESSIONS"] {
        redis.command(&["FLUSHALL"]);
        let quota = format!("enabled = true\nlimit = 2\nexhaustion_action = {action:?}");
        let d = std::sync::Arc::new(Deployment::start(&redis, &quota, 2000).await);
        let port = redis.port;
        let race = login_race(&d, LOGINS, action, move || {
            let reply = support::redis_command(port, &["ZCARD", "{tether:demo}:exp"]);
            reply.trim().trim_start_matches(':').parse().unwrap()
        })
        .await;
        race.assert_at_most_two_live(&d, action, LOGINS).await;
        assert_eq!(redis.integer(&["ZCARD", "{tether:demo}:exp"]), 2, "{action}");
    }
}

/// Acceptance 4: Redis stops in the middle of a login loop. Requests that need the store get AM's 503
/// with `Retry-After` within `timeout_ms` plus a small bound (validate too: never `{"valid":false}` for a
/// session that may be live), `/json/health/ready` is 503, no node panics or hangs; once Redis is back,
/// logins succeed again without restarting anything, and the quota still holds.
#[tokio::test]
async fn an_unreachable_redis_is_503_and_the_nodes_recover_by_themselves() {
    const TIMEOUT_MS: u64 = 300;
    let bound = Duration::from_millis(TIMEOUT_MS + 700);
    let Some(mut redis) = RedisServer::start().await else { return };
    let quota = "enabled = true\nlimit = 2\nexhaustion_action = \"DESTROY_OLDEST_SESSION\"";
    let mut d = Deployment::start(&redis, quota, TIMEOUT_MS).await;
    let (status, done, _, _) = d.login(0).await;
    assert_eq!(status, 200, "{done}");
    let token = done["tokenId"].as_str().unwrap().to_string();

    // A bounded login loop on every node; Redis is stopped after the first round.
    let mut outcomes = Vec::new();
    for round in 0..6 {
        if round == 2 {
            redis.stop();
        }
        for node in 0..3 {
            let (status, body, took, retry) = d.login(node).await;
            outcomes.push((round, status));
            match status {
                200 => assert!(round < 2, "round {round}: a login succeeded with Redis down: {body}"),
                503 => {
                    assert!(took <= bound, "a 503 took {took:?} (timeout_ms {TIMEOUT_MS})");
                    assert_eq!(body["code"], 503, "{body}");
                    assert_eq!(body["reason"], "Service Unavailable", "{body}");
                    assert!(body["message"].as_str().unwrap().contains("session store"), "{body}");
                    assert_eq!(retry.as_deref(), Some("1"), "Retry-After");
                }
                other => panic!("round {round} node {node}: {other} {body}"),
            }
        }
    }
    assert!(outcomes.iter().filter(|(r, _)| *r >= 2).all(|(_, s)| *s == 503), "{outcomes:?}");
    for node in 0..3 {
        let (status, v) = d.session(node, "validate", &token).await;
        assert_eq!((status, &v["code"]), (503, &json!(503)), "validate with Redis down: {v}");
        let (status, _) = d.session(node, "logout", &token).await;
        assert_eq!(status, 503);
    }
    for node in 0..3 {
        eventually("readiness follows the store", Duration::from_secs(5), async || {
            d.ready(node).await == 503
        })
        .await;
    }
    d.assert_running();

    redis.restart().await;
    for node in 0..3 {
        let mut last = 0;
        eventually("logins succeed again", Duration::from_secs(5), async || {
            last = d.login(node).await.0;
            last == 200
        })
        .await;
        eventually("ready again", Duration::from_secs(5), async || d.ready(node).await == 200).await;
    }
    // Redis kept nothing (no persistence): the old session is gone, the quota counts only new ones.
    let (status, v) = d.session(1, "validate", &token).await;
    assert_eq!((status, &v["valid"]), (200, &json!(false)), "{v}");
    for node in 0..3 {
        assert_eq!(d.login(node).await.0, 200);
    }
    assert_eq!(redis.integer(&["ZCARD", "{tether:demo}:exp"]), 2, "no session counted twice");
    d.assert_running();
    for node in d.nodes.iter_mut() {
        let node = node.as_mut().unwrap();
        node.signal("TERM");
    }
    for node in d.nodes.iter_mut() {
        let mut node = node.take().unwrap();
        let code = tokio::task::spawn_blocking(move || node.child.wait().unwrap().code()).await.unwrap();
        assert_eq!(code, Some(0), "a node exits cleanly: no panic");
    }
}
