//! The session store on a real Redis (`sessions = "redis"`): shared by separate `tether node` processes,
//! quotas atomic across them, and failing closed (503) while Redis is unreachable.
//!
//! Each test starts its own `redis-server` ([`support::RedisServer`]); without one it is skipped with a
//! message, except under CI, where it fails.

mod support;

use support::RedisServer;

#[tokio::test]
async fn the_fixture_starts_stops_and_restarts_redis() {
    let Some(mut redis) = RedisServer::start().await else { return };
    assert_ne!(redis.port, 6379);
    assert_eq!(redis.command(&["SET", "k", "v"]).trim(), "+OK");
    redis.restart().await;
    assert_eq!(redis.integer(&["EXISTS", "k"]), 0, "no persistence: a restart loses every key");
}
