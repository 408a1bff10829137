//! Logins per second on one node with sessions in memory and on Redis, and what the session quota's
//! atomic check-evict-create costs on each (issues 4 and 14). Two levels:
//! * the store's one `create` call alone (`store_create`: the in-process store; `store_create_redis`:
//!   one Lua script on a local `redis-server`, i.e. one loopback round trip);
//! * a whole `ldapService` login through an in-process auth node (argon2 with cheap parameters, so the
//!   store's share is visible), one at a time (`login`, `login_redis`: latency) and 16 in flight
//!   (`login_16_in_flight`: what one node sustains when many clients log in).
//!
//! Each Redis and login group runs on the multi-thread runtime a node has by default, and again on the
//! current-thread one of `workers = 1` (groups `…_current_thread`).
//!
//! The Redis cases start their own `redis-server` (`benches/redis_server`) and are skipped with a
//! message without one. Logouts that keep the steady state are made outside the timed part wherever the
//! store is a round trip away.
//!
//! `cargo bench --bench logins`

/// The same `redis-server` fixture as the store tests (free loopback port, never 6379, no persistence,
/// killed on drop); benches use a part of it.
#[allow(dead_code)]
#[path = "../tests/support/redis.rs"]
mod redis_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use redis_server::RedisServer;
use tether::config::{ExhaustionAction, StoreConfig};
use tether::{AuthNode, MemoryStore, Quota, RedisStore, Session, SessionStore};
use tokio::runtime::{Builder, Runtime};
use tokio::time::Instant;

/// Logins in flight at once in the `login_16_in_flight` group.
const IN_FLIGHT: usize = 16;

fn all(c: &mut Criterion) {
    let redis = Runtime::new().expect("tokio runtime").block_on(RedisServer::start());
    store_create(c);
    // The node's default runtime (`workers` unset: one worker per core), then `workers = 1`, tokio's
    // current-thread scheduler, where a Redis reply wakes the login on the same thread.
    let runtimes = [
        ("", Runtime::new().expect("tokio runtime")),
        ("_current_thread", Builder::new_current_thread().enable_all().build().expect("tokio runtime")),
    ];
    for (suffix, rt) in &runtimes {
        if let Some(redis) = &redis {
            store_create_redis(c, rt, redis, suffix);
        }
        login(c, rt, redis.as_ref(), suffix);
    }
    // `redis` is dropped here: the server is killed and its directory removed.
}

/// The quota cases of the store benchmarks: off, and each of AM's four actions with limit 5.
fn quota_cases() -> [(&'static str, Option<Quota>); 5] {
    let limit = |action| Some(Quota { limit: 5, action });
    [
        ("quota_off", None),
        ("deny_access", limit(ExhaustionAction::DenyAccess)),
        ("destroy_next_expiring", limit(ExhaustionAction::DestroyNextExpiring)),
        ("destroy_oldest_session", limit(ExhaustionAction::DestroyOldestSession)),
        ("destroy_old_sessions", limit(ExhaustionAction::DestroyOldSessions)),
    ]
}

/// The `n`th session of a store benchmark: 1000 users, so "quota off" stays a realistic store instead of
/// one ever-growing user.
fn nth_session(n: u64) -> Session {
    Session::new(
        format!("token{n}"),
        format!("shandle:{n}"),
        format!("user{}", n % 1000),
        "/",
        Instant::now(),
        Duration::from_secs(1800),
        Duration::from_secs(7200),
    )
}

/// Steady state for every store case: the session made 5000 creates ago (5 per user) ends, as users log
/// out; under a quota it is usually gone already.
fn ended_by_now(n: u64) -> Option<String> {
    n.checked_sub(5000).map(|old| format!("token{old}"))
}

fn store_create(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_create");
    group.throughput(Throughput::Elements(1));
    for (name, quota) in quota_cases() {
        let store = MemoryStore::new();
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let _ = store.create(nth_session(n), quota, Instant::now());
                if let Some(old) = ended_by_now(n) {
                    store.remove(&old, Instant::now());
                }
            })
        });
    }
    group.finish();
}

/// The Redis store of one benchmark case: its own `key_prefix`, so the cases do not see each other's keys.
fn redis_store(rt: &Runtime, redis: &RedisServer, prefix: &str) -> Arc<RedisStore> {
    let config = tether::config::parse(&auth_toml(redis_sessions(redis, prefix), "enabled = false"))
        .expect("bench config");
    let store: StoreConfig = config.auth.and_then(|a| a.store).expect("[auth.store]");
    let _runtime = rt.enter(); // the store starts its ping loop on the runtime
    Arc::new(RedisStore::connect(&store).expect("redis url"))
}

fn store_create_redis(c: &mut Criterion, rt: &Runtime, redis: &RedisServer, suffix: &str) {
    let mut group = c.benchmark_group(format!("store_create_redis{suffix}"));
    group.throughput(Throughput::Elements(1));
    for (name, quota) in quota_cases() {
        let store = redis_store(rt, redis, &format!("bench-create{suffix}-{name}"));
        let n = Arc::new(AtomicU64::new(0));
        group.bench_function(name, |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (store, n) = (Arc::clone(&store), Arc::clone(&n));
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let n = n.fetch_add(1, Ordering::Relaxed) + 1;
                        let session = nth_session(n);
                        let start = Instant::now();
                        let created = store.create(session, quota, Instant::now()).await;
                        timed += start.elapsed();
                        let _ = created.expect("redis answers");
                        if let Some(old) = ended_by_now(n) {
                            store.remove(&old, Instant::now()).await.expect("redis answers");
                        }
                    }
                    timed
                }
            })
        });
    }
    group.finish();
}

/// `sessions = "redis"` on `redis` with keys under `prefix`, as an `[auth]` fragment.
fn redis_sessions(redis: &RedisServer, prefix: &str) -> String {
    format!("sessions = \"redis\"\n[auth.store]\nurl = {:?}\nkey_prefix = {prefix:?}\n", redis.url())
}

/// A one-node config: `sessions` are the first `[auth]` keys (and tables), then the quota, one chain and
/// the user `demo` with password `secret` hashed with cheap argon2 parameters.
fn auth_toml(sessions: String, quota: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    let hash = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_with_salt(b"secret", b"tether-bench-salt")
        .unwrap()
        .to_string();
    format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[[pool]]
name = "am"
  [[pool.backend]]
  id = "01"
  url = "http://127.0.0.1:0"
[[route]]
path_prefix = "/"
pool = "am"
[auth]
{sessions}
[auth.quota]
{quota}
  [[auth.chain]]
  name = "ldapService"
  modules = ["DataStore"]
  [[auth.user]]
  username = "demo"
  password = "{hash}"
"#
    )
}

async fn post(node: &AuthNode, body: String) -> serde_json::Value {
    let req = http::Request::post("/am/json/realms/root/authenticate")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let bytes = node.handle(req).await.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// One whole login of `demo`: the empty first step, then the answered callbacks. Its `tokenId`.
async fn login_once(node: &AuthNode) -> String {
    let mut step = post(node, String::new()).await;
    step["callbacks"][0]["input"][0]["value"] = "demo".into();
    step["callbacks"][1]["input"][0]["value"] = "secret".into();
    let done = post(node, step.to_string()).await;
    done["tokenId"].as_str().unwrap_or_else(|| panic!("no tokenId: {done}")).to_string()
}

/// An in-process node `01` on `store`, configured with `sessions` and `quota`.
fn node(store: Arc<dyn SessionStore>, sessions: String, quota: &str) -> Arc<AuthNode> {
    let config = tether::config::parse(&auth_toml(sessions, quota)).expect("bench config");
    Arc::new(AuthNode::new(
        tether::config::BackendId::new("01").unwrap(),
        Arc::new(config.auth.expect("[auth]")),
        tether::am::token::Keys::derive(b"bench secret bench secret"),
        store,
        Arc::new(tether::MemoryJourneys::new()),
    ))
}

/// One login benchmark: the store's kind (`memory`, `redis`), the quota case, the node and its store
/// (for the untimed logouts).
type LoginCase = (&'static str, &'static str, Arc<AuthNode>, Arc<dyn SessionStore>);

fn login(c: &mut Criterion, rt: &Runtime, redis: Option<&RedisServer>, suffix: &str) {
    let quotas =
        [("quota_off", "enabled = false"), ("quota_on_destroy_next_expiring", "enabled = true\nlimit = 5")];
    // The memory cases first, then the Redis ones: the same node code on either store.
    let mut cases: Vec<LoginCase> = Vec::new();
    for (name, quota) in quotas {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        cases.push(("memory", name, node(Arc::clone(&store), "sessions = \"shared\"".into(), quota), store));
    }
    for (name, quota) in quotas {
        let Some(redis) = redis else { break };
        let prefix = format!("bench-login{suffix}-{name}");
        let store: Arc<dyn SessionStore> = redis_store(rt, redis, &prefix);
        cases.push(("redis", name, node(Arc::clone(&store), redis_sessions(redis, &prefix), quota), store));
    }

    for (kind, name, node, store) in &cases {
        let group_name =
            if *kind == "memory" { format!("login{suffix}") } else { format!("login_{kind}{suffix}") };
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(1));
        let recent = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        group.bench_function(*name, |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (node, store, recent) = (Arc::clone(node), Arc::clone(store), Arc::clone(&recent));
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let token = login_once(&node).await;
                        timed += start.elapsed();
                        // Steady state: the user logs out of the session from 5 logins ago.
                        let old = {
                            let mut recent = recent.lock();
                            recent.push_back(token);
                            if recent.len() > 5 { recent.pop_front() } else { None }
                        };
                        if let Some(old) = old {
                            store.remove(&old, Instant::now()).await.expect("store answers");
                        }
                    }
                    timed
                }
            })
        });
        group.finish();
    }

    let mut group = c.benchmark_group(format!("login_{IN_FLIGHT}_in_flight{suffix}"));
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    for (kind, name, node, store) in &cases {
        group.bench_function(format!("{kind}_{name}"), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (node, store) = (Arc::clone(node), Arc::clone(store));
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let mut logins = tokio::task::JoinSet::new();
                        for _ in 0..IN_FLIGHT {
                            let node = Arc::clone(&node);
                            logins.spawn(async move { login_once(&node).await });
                        }
                        let tokens = logins.join_all().await;
                        timed += start.elapsed();
                        // Steady state: every session of the batch ends before the next one starts.
                        for token in tokens {
                            store.remove(&token, Instant::now()).await.expect("store answers");
                        }
                    }
                    timed
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, all);
criterion_main!(benches);
