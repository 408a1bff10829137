//! The session store on a real Redis (`sessions = "redis"`): shared by separate `tether node` processes,
//! quotas atomic across them, and failing closed (503) while Redis is unreachable.
//!
//! Each test starts its own `redis-server` ([`support::RedisServer`]); without one it is skipped with a
//! message, except under CI, where it fails.

mod support;

use std::time::Duration;

use support::RedisServer;
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
        url: redis.url(),
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
