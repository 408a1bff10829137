//! Logins per second with session quotas on and off, so the cost of the atomic check-evict-create is
//! known (issue 4). Two levels: the store's one `create` call alone, and a whole `ldapService` login
//! through an in-process auth node (with cheap argon2 parameters, so the quota's share is visible).
//!
//! `cargo bench --bench logins`

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use tether::{MemoryStore, Session};
use tether::{Quota, config::ExhaustionAction};
use tokio::time::Instant;

fn store_create(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_create");
    group.throughput(Throughput::Elements(1));
    let cases: [(&str, Option<Quota>); 5] = [
        ("quota_off", None),
        ("deny_access", Some(Quota { limit: 5, action: ExhaustionAction::DenyAccess })),
        ("destroy_next_expiring", Some(Quota { limit: 5, action: ExhaustionAction::DestroyNextExpiring })),
        ("destroy_oldest_session", Some(Quota { limit: 5, action: ExhaustionAction::DestroyOldestSession })),
        ("destroy_old_sessions", Some(Quota { limit: 5, action: ExhaustionAction::DestroyOldSessions })),
    ];
    for (name, quota) in cases {
        let store = MemoryStore::new();
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                // 1000 users, so "quota off" stays a realistic store instead of one ever-growing user.
                let user = format!("user{}", n % 1000);
                let s = Session::new(
                    format!("token{n}"),
                    format!("shandle:{n}"),
                    user,
                    "/",
                    Instant::now(),
                    Duration::from_secs(1800),
                    Duration::from_secs(7200),
                );
                let _ = store.create(s, quota, Instant::now());
                // Steady state for every case: the session made 5000 creates ago (5 per user) ends, as
                // users log out; under a quota it is usually gone already.
                if let Some(old) = n.checked_sub(5000) {
                    store.remove(&format!("token{old}"), Instant::now());
                }
            })
        });
    }
    group.finish();
}

fn auth_toml(quota: &str) -> String {
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

async fn post(node: &tether::AuthNode, body: String) -> serde_json::Value {
    let req = http::Request::post("/am/json/realms/root/authenticate")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let bytes = node.handle(req).await.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn full_login(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("login");
    group.throughput(Throughput::Elements(1));
    for (name, quota) in
        [("quota_off", "enabled = false"), ("quota_on_destroy_next_expiring", "enabled = true\nlimit = 5")]
    {
        let config = tether::config::parse(&auth_toml(quota)).unwrap();
        let store = Arc::new(MemoryStore::new());
        let node = Arc::new(tether::AuthNode::new(
            tether::config::BackendId::new("01").unwrap(),
            Arc::new(config.auth.unwrap()),
            tether::am::token::Keys::derive(b"bench secret bench secret"),
            store.clone(),
            Arc::new(tether::MemoryJourneys::new()),
        ));
        let recent = parking_lot::Mutex::new(std::collections::VecDeque::new());
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let mut step = post(&node, String::new()).await;
                step["callbacks"][0]["input"][0]["value"] = "demo".into();
                step["callbacks"][1]["input"][0]["value"] = "secret".into();
                let done = post(&node, step.to_string()).await;
                let token = done["tokenId"].as_str().expect("tokenId").to_string();
                // Steady state: the user logs out of the session from 5 logins ago.
                let mut recent = recent.lock();
                recent.push_back(token);
                if recent.len() > 5
                    && let Some(old) = recent.pop_front()
                {
                    store.remove(&old, Instant::now());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, store_create, full_login);
criterion_main!(benches);
