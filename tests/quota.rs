//! Session quotas that can never be overrun: each exhaustion action, the cross-node race,
//! idle sessions not counting, per-user overrides.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::{Cluster, is_valid, login, try_login};

/// Nodes 01, 02, … (`count` of them) over one session store, with a quota of `limit` per user.
fn quota(count: usize, limit: i64, action: &str) -> Cluster {
    let ids: Vec<String> = (1..=count).map(|i| format!("{i:02}")).collect();
    Cluster::new().active(ids.iter().map(String::as_str)).shared_sessions().quota(limit, action)
}

/// Logins t1..t3 a minute apart, then t1 is used again, so t1 is the oldest session but t2 has the least
/// time left. Returns which of t1..t4 validate after a fourth login, and the fourth login's status.
async fn fourth_login(action: &str) -> ([bool; 4], u16) {
    let c = quota(1, 3, action).in_process();
    let node = &c.nodes[0];
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(login(node).await);
        tokio::time::advance(Duration::from_secs(60)).await;
    }
    assert!(is_valid(node, &tokens[0]).await);
    let refresh = format!("/am/json/realms/root/sessions?_action=refresh&tokenId={}", tokens[0]);
    assert_eq!(support::call(node, &refresh, &[], None).await.0, 200);
    let (status, done) = try_login(node, "demo", "secret").await;
    tokens.push(done["tokenId"].as_str().unwrap_or("none").to_string());
    let mut valid = [false; 4];
    for (i, t) in tokens.iter().enumerate() {
        valid[i] = is_valid(node, t).await;
    }
    (valid, status)
}

#[tokio::test(start_paused = true)]
async fn each_action_decides_which_sessions_survive_a_fourth_login() {
    let (valid, status) = fourth_login("DENY_ACCESS").await;
    assert_eq!((valid, status), ([true, true, true, false], 401), "DENY_ACCESS refuses the new login");
    let (valid, status) = fourth_login("DESTROY_NEXT_EXPIRING").await;
    assert_eq!((valid, status), ([true, false, true, true], 200), "the session with least time left goes");
    let (valid, status) = fourth_login("DESTROY_OLDEST_SESSION").await;
    assert_eq!((valid, status), ([false, true, true, true], 200), "the session created first goes");
    let (valid, status) = fourth_login("DESTROY_OLD_SESSIONS").await;
    assert_eq!((valid, status), ([false, false, false, true], 200), "all earlier sessions go");
}

#[tokio::test(start_paused = true)]
async fn deny_access_answers_am_message_and_leaves_no_session() {
    let c = quota(1, 1, "DENY_ACCESS").in_process();
    let node = &c.nodes[0];
    login(node).await;
    let (status, v) = try_login(node, "demo", "secret").await;
    assert_eq!((status, v["message"].as_str()), (401, Some("Maximum Sessions Limit Reached.")), "{v}");
    assert_eq!(c.store.len(), 1);
    assert_eq!(node.stats().quota_refusals.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_across_three_nodes_never_overrun_the_limit() {
    for action in ["DENY_ACCESS", "DESTROY_NEXT_EXPIRING", "DESTROY_OLDEST_SESSION", "DESTROY_OLD_SESSIONS"] {
        let c = Arc::new(quota(3, 2, action).in_process());
        let done = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicUsize::new(0));
        let sampler = {
            let (c, done, samples) = (c.clone(), done.clone(), samples.clone());
            std::thread::spawn(move || {
                let mut worst = 0;
                while !done.load(Ordering::SeqCst) {
                    let live = c.store.live_sessions("demo", tokio::time::Instant::now());
                    worst = worst.max(live);
                    samples.fetch_add(1, Ordering::Relaxed);
                }
                worst
            })
        };
        let logins: Vec<_> = (0..200)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { try_login(&c.nodes[i % 3], "demo", "secret").await.0 })
            })
            .collect();
        let mut succeeded = 0;
        for l in logins {
            match l.await.unwrap() {
                200 => succeeded += 1,
                401 => {}
                other => panic!("{action}: login answered {other}"),
            }
        }
        done.store(true, Ordering::SeqCst);
        let worst = sampler.join().unwrap();
        let live = c.store.live_sessions("demo", tokio::time::Instant::now());
        println!(
            "{action}: {succeeded} logins succeeded, {live} live, worst seen {worst} in {} samples",
            samples.load(Ordering::Relaxed)
        );
        assert!(worst <= 2, "{action}: {worst} live sessions seen at once");
        assert_eq!(live, 2, "{action}");
        if action == "DENY_ACCESS" {
            assert_eq!(succeeded, 2, "DENY_ACCESS admits exactly the limit");
        } else {
            assert_eq!(succeeded, 200, "{action} admits every login");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_past_its_idle_time_does_not_count() {
    let c = quota(1, 1, "DENY_ACCESS").auth("max_idle_time_min", 5).in_process();
    let node = &c.nodes[0];
    let old = login(node).await;
    assert_eq!(try_login(node, "demo", "secret").await.0, 401, "the live session counts");
    tokio::time::advance(Duration::from_secs(5 * 60 + 1)).await;
    let new = login(node).await;
    assert!(!is_valid(node, &old).await && is_valid(node, &new).await);
    assert_eq!(
        node.stats().quota_evictions.load(Ordering::Relaxed),
        0,
        "an idled-out session is not destroyed"
    );
}

#[tokio::test]
async fn per_user_override_beats_the_global_limit_and_off_means_no_limit() {
    let c = quota(1, 1, "DENY_ACCESS").user("vip", &[("session_quota", 3.into())]).in_process();
    let node = &c.nodes[0];
    for _ in 0..3 {
        assert_eq!(try_login(node, "vip", "secret").await.0, 200);
    }
    assert_eq!(try_login(node, "vip", "secret").await.0, 401);
    assert_eq!(try_login(node, "demo", "secret").await.0, 200);
    assert_eq!(try_login(node, "demo", "secret").await.0, 401);

    let off = Cluster::new().active(["01"]).shared_sessions().auth("quota.enabled", false);
    let c = off.auth("quota.limit", 1).in_process();
    for _ in 0..20 {
        assert_eq!(try_login(&c.nodes[0], "demo", "secret").await.0, 200);
    }
    assert_eq!(c.store.live_sessions("demo", tokio::time::Instant::now()), 20);
}
