//! The session store on a real three-primary Redis Cluster (`[auth.store] cluster = [...]`): sessions
//! shared by stores and by separate `tether node` processes whatever primary holds a user's keys, the
//! quota atomic across processes, and failing closed while the cluster is down.
//!
//! Each test starts its own cluster ([`support::RedisCluster`]); without `redis-server` and
//! `redis-cli` it is skipped with a message, except under CI, where it fails.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use support::{Deployment, RedisCluster, eventually, login_race};
use tether::config::{StoreConfig, StoreServers};
use tether::{RedisStore, Session, SessionStore};
use tokio::time::Instant;

const IDLE: Duration = Duration::from_secs(30 * 60);
const MAX: Duration = Duration::from_secs(120 * 60);

fn store_config(cluster: &RedisCluster, timeout_ms: u64) -> StoreConfig {
    StoreConfig {
        servers: StoreServers::Cluster(cluster.seeds()),
        key_prefix: "tether".into(),
        timeout: Duration::from_millis(timeout_ms),
    }
}

fn session(token: &str, user: &str) -> Session {
    Session::new(token, format!("shandle:{token}"), user, "/", Instant::now(), IDLE, MAX)
}

#[tokio::test]
async fn the_fixture_builds_a_three_primary_cluster() {
    let Some(cluster) = RedisCluster::start().await else { return };
    for node in &cluster.nodes {
        assert_ne!(node.port, 6379);
        let info = node.command(&["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_state:ok") && info.contains("cluster_size:3"), "{info}");
    }
    let owners: BTreeSet<u16> = ["a", "b", "c", "d", "e", "f"].iter().map(|k| cluster.owner(k)).collect();
    assert!(owners.len() >= 2, "keys spread over the primaries: {owners:?}");
}

/// Sessions made through one store validate, refresh and log out through another, for users whose keys
/// live on different primaries (and token keys on others again): every command reaches its slot's node.
#[tokio::test]
async fn two_stores_on_one_cluster_share_sessions_across_primaries() {
    let Some(cluster) = RedisCluster::start().await else { return };
    let one = RedisStore::connect(&store_config(&cluster, 2000)).unwrap();
    let two = RedisStore::connect(&store_config(&cluster, 2000)).unwrap();
    let users = ["demo", "alice", "bob", "carol", "dave", "erin"];
    let owners: BTreeSet<u16> = users.iter().map(|u| cluster.owner(&format!("{{tether:{u}}}:exp"))).collect();
    assert!(owners.len() >= 2, "the users' keys land on different primaries: {owners:?}");

    for user in users {
        for n in 0..2 {
            let token = format!("{user}-{n}");
            one.create(session(&token, user), None, Instant::now()).await.unwrap().unwrap();
        }
    }
    let holding = cluster.keys_per_node().iter().filter(|&&n| n > 0).count();
    assert!(holding >= 2, "at least two primaries hold keys: {:?}", cluster.keys_per_node());
    // The token keys (outside any hash tag) are spread too, so validate and logout below reach slots
    // on other primaries than their user's keys.
    let token_keys: Vec<usize> = cluster
        .nodes
        .iter()
        .map(|n| n.command(&["KEYS", "tether:tok:*"]).matches("tether:tok:").count())
        .collect();
    assert_eq!(token_keys.iter().sum::<usize>(), 2 * users.len(), "{token_keys:?}");
    assert!(
        token_keys.iter().filter(|&&n| n > 0).count() >= 2,
        "token keys on several primaries: {token_keys:?}"
    );

    for user in users {
        assert_eq!(two.live_sessions(user, Instant::now()).await.unwrap(), 2, "{user}");
        let found = two.get(&format!("{user}-0"), Instant::now()).await.unwrap().expect(user);
        assert_eq!(
            (found.username.as_str(), found.handle.as_str()),
            (user, format!("shandle:{user}-0").as_str())
        );
        assert!(two.touch(&format!("{user}-1"), Instant::now()).await.unwrap().is_some(), "{user}");
        assert!(two.remove(&format!("{user}-0"), Instant::now()).await.unwrap(), "{user}: logout");
        assert!(one.get(&format!("{user}-0"), Instant::now()).await.unwrap().is_none(), "{user}: gone");
        assert!(one.get(&format!("{user}-1"), Instant::now()).await.unwrap().is_some(), "{user}: kept");
        assert_eq!(one.live_sessions(user, Instant::now()).await.unwrap(), 1, "{user}");
    }
    eventually("the readiness ping reaches the cluster", Duration::from_secs(5), async || {
        one.available() && two.available()
    })
    .await;
}

/// Acceptance on Redis Cluster: 200 concurrent logins of one user, limit 2, spread over three
/// `tether node` processes, for each exhaustion action, while a sampler reads the user's sessions on the
/// primary that holds them: never more than 2 (it counts every member of the ZSET, expired or not, so
/// it can only over-count). `DENY_ACCESS` admits exactly 2; the others admit every login and leave
/// exactly 2 live.
#[tokio::test]
async fn the_quota_holds_across_processes_on_a_cluster_for_every_action() {
    const LOGINS: usize = 200;
    let Some(cluster) = RedisCluster::start().await else { return };
    let key = "{tether:demo}:exp";
    let owner = cluster.owner(key);
    let others = cluster.nodes.iter().filter(|n| n.port != owner).count();
    assert_eq!(others, 2);
    for action in ["DENY_ACCESS", "DESTROY_NEXT_EXPIRING", "DESTROY_OLDEST_SESSION", "DESTROY_OLD_SESSIONS"] {
        cluster.flush();
        let quota = format!("enabled = true\nlimit = 2\nexhaustion_action = {action:?}");
        let d = Arc::new(Deployment::start(&cluster, &quota, 2000).await);
        let race = login_race(&d, LOGINS, action, move || {
            let reply = support::redis_command(owner, &["ZCARD", key]);
            reply.trim().trim_start_matches(':').parse().unwrap_or_else(|_| panic!("ZCARD: {reply:?}"))
        });
        let race = tokio::time::timeout(Duration::from_secs(60), race).await.expect("200 logins within 60 s");
        race.assert_at_most_two_live(&d, action, LOGINS).await;
        assert_eq!(support::redis_command(owner, &["ZCARD", key]).trim(), ":2", "{action}");
    }
}

/// A store on a cluster that is down (killed, or not yet started when the store was made) answers
/// `StoreError` within `timeout_ms` plus a small bound, is not ready, and works again once the cluster
/// is back, without being rebuilt. One primary down is enough to be not ready.
#[tokio::test]
async fn a_cluster_that_is_down_fails_fast_and_the_store_recovers() {
    const TIMEOUT_MS: u64 = 300;
    let bound = Duration::from_millis(TIMEOUT_MS + 700);
    let Some(mut cluster) = RedisCluster::start().await else { return };
    let early = RedisStore::connect(&store_config(&cluster, TIMEOUT_MS)).unwrap();
    early.create(session("before", "demo"), None, Instant::now()).await.unwrap().unwrap();
    eventually("ready", Duration::from_secs(5), async || early.available()).await;

    cluster.nodes[0].stop();
    eventually("one primary down: not ready", Duration::from_secs(5), async || !early.available()).await;

    cluster.stop();
    let late = RedisStore::connect(&store_config(&cluster, TIMEOUT_MS)).unwrap();
    for store in [&early, &late] {
        for n in 0..3 {
            let start = Instant::now();
            let created = store.create(session(&format!("down-{n}"), "demo"), None, Instant::now()).await;
            assert!(created.is_err(), "a login with the cluster down: {created:?}");
            assert!(start.elapsed() <= bound, "a failed login took {:?}", start.elapsed());
            let start = Instant::now();
            let got = store.get("before", Instant::now()).await;
            assert!(got.is_err(), "validate with the cluster down must not say `not found`: {got:?}");
            assert!(start.elapsed() <= bound, "a failed validate took {:?}", start.elapsed());
        }
        assert!(!store.available());
    }

    cluster.restart().await;
    for (name, store) in [("early", &early), ("late", &late)] {
        eventually(&format!("the {name} store works again"), Duration::from_secs(10), async || {
            store.create(session("after", "demo"), None, Instant::now()).await.is_ok()
        })
        .await;
        eventually("ready again", Duration::from_secs(5), async || store.available()).await;
        assert!(store.get("after", Instant::now()).await.unwrap().is_some());
    }
}

/// `tether node` processes configured with `cluster = [...]` start while the cluster is down (startup
/// never waits for the store), answer logins with 503 and are not ready; once the cluster is up they
/// log users in and are ready, without a restart.
#[tokio::test]
async fn nodes_start_while_the_cluster_is_down_and_serve_once_it_is_up() {
    let Some(mut cluster) = RedisCluster::start().await else { return };
    cluster.stop();
    let mut d = Deployment::start(&cluster, "enabled = true\nlimit = 2", 300).await;
    for node in 0..3 {
        let (status, body, took, _) = d.login(node).await;
        assert_eq!((status, &body["code"]), (503, &serde_json::json!(503)), "node {node}: {body}");
        assert!(took <= Duration::from_millis(1000), "a 503 took {took:?}");
        assert_eq!(d.ready(node).await, 503);
    }
    cluster.restart().await;
    for node in 0..3 {
        eventually("logins succeed once the cluster is up", Duration::from_secs(10), async || {
            d.login(node).await.0 == 200
        })
        .await;
        eventually("ready once the cluster is up", Duration::from_secs(5), async || {
            d.ready(node).await == 200
        })
        .await;
    }
    d.assert_running();
}
