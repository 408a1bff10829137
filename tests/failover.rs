//! Health checks and active/passive failover: nodes leave and rejoin on rise/fall, traffic
//! survives a kill, pinned clients are redispatched (or refused when strict), passive nodes take over
//! and hand back per `failback`, drain and maint, readiness.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::{
    BackendOptions, Cluster, Journey, ProxyHandle, TestBackend, backend_status, client, eventually, served_by,
};

async fn wait_health(proxy: &ProxyHandle, id: &str, health: &str) -> Value {
    let mut last = Value::Null;
    eventually(&format!("{id} is {health}"), Duration::from_secs(10), async || {
        last = backend_status(proxy, id).await;
        last["health"] == health
    })
    .await;
    last
}

async fn admin_post(proxy: &ProxyHandle, path: &str) -> reqwest::Response {
    client().post(proxy.admin_url(path)).send().await.unwrap()
}

#[tokio::test]
async fn a_dead_listener_goes_down_after_fall_checks_and_returns_after_rise() {
    let a = TestBackend::start("01").await;
    let b = TestBackend::start("02").await;
    let proxy = Cluster::of(&[&a, &b]).fast_checks().start().await;
    eventually("checks are running", Duration::from_secs(10), async || {
        backend_status(&proxy, "01").await["checks"].as_u64() > Some(0)
    })
    .await;

    let addr = a.addr;
    a.shutdown();
    let before = backend_status(&proxy, "01").await["checks"].as_u64().unwrap();
    let started = tokio::time::Instant::now();
    let down = wait_health(&proxy, "01", "down").await;
    let checks = down["checks"].as_u64().unwrap() - before;
    println!("marked down after {checks} failed checks, {} ms after the kill", started.elapsed().as_millis());
    // Checks run one interval apart, so `fall` checks bound the time by fall x interval + one timeout.
    assert!(checks <= 2, "down after {checks} checks, fall is 2: {down}");
    assert!(down["last_transition"].as_str().unwrap().starts_with("2 check(s) failed in a row"), "{down}");

    let _back = TestBackend::start_at(addr, "01", BackendOptions::default()).await;
    let before = backend_status(&proxy, "01").await["checks"].as_u64().unwrap();
    let up = wait_health(&proxy, "01", "up").await;
    assert!(up["checks"].as_u64().unwrap() - before <= 2, "up after rise (2) passing checks: {up}");
    assert!(up["last_transition"].as_str().unwrap().starts_with("2 check(s) passed in a row"), "{up}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_active_node_under_load_fails_no_request() {
    let a = TestBackend::start("01").await;
    let b = TestBackend::start("02").await;
    let proxy = Arc::new(Cluster::of(&[&a, &b]).fast_checks().start().await);
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (proxy, stop, sent, failed) = (proxy.clone(), stop.clone(), sent.clone(), failed.clone());
            tokio::spawn(async move {
                let http = client();
                while !stop.load(Ordering::SeqCst) {
                    let ok = match http.get(proxy.url("/load")).send().await {
                        Ok(r) => r.status() == 200,
                        Err(_) => false,
                    };
                    sent.fetch_add(1, Ordering::SeqCst);
                    if !ok {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    eventually("load is flowing to both nodes", Duration::from_secs(10), async || {
        a.hits() > 50 && b.hits() > 50
    })
    .await;
    a.shutdown();
    wait_health(&proxy, "01", "down").await;
    let at_down = sent.load(Ordering::SeqCst);
    eventually("more load after the node went down", Duration::from_secs(10), async || {
        sent.load(Ordering::SeqCst) > at_down + 200
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    println!("{sent} requests during the kill of node 01, {failed} failed");
    assert_eq!(failed, 0);
}

#[tokio::test]
async fn a_client_pinned_to_a_dead_node_is_moved_or_refused_when_strict() {
    let a = TestBackend::start("01").await;
    let b = TestBackend::start("02").await;
    let redispatch = Cluster::of(&[&a, &b]).fast_checks().start().await;
    let strict = Cluster::of(&[&a, &b]).affinity("on_down", "strict").fast_checks().start().await;
    a.shutdown();
    wait_health(&redispatch, "01", "down").await;
    wait_health(&strict, "01", "down").await;

    let resp = client().get(redispatch.url("/x")).header("cookie", "amlbcookie=01").send().await.unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("amlbcookie=02;"), "{cookie}");
    assert_eq!(served_by(resp).await, "02");

    let resp = client().get(strict.url("/x")).header("cookie", "amlbcookie=01").send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["content-type"], "application/json;charset=UTF-8");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], 503);
    // Unpinned clients of the strict pool are still served.
    assert_eq!(client().get(strict.url("/x")).send().await.unwrap().status(), 200);
}

async fn cluster_with_failback(failback: &str) -> ProxyHandle {
    Cluster::new()
        .active(["01", "02"])
        .passive("03")
        .affinity("failback", failback)
        .fast_checks()
        .start()
        .await
}

#[tokio::test]
async fn with_both_actives_down_logins_complete_on_the_passive_node_and_failback_decides_after() {
    for failback in ["sticky", "primary"] {
        let proxy = cluster_with_failback(failback).await;
        proxy.node("01").set_ready(false);
        proxy.node("02").set_ready(false);
        wait_health(&proxy, "01", "down").await;
        wait_health(&proxy, "02", "down").await;

        let mut done = Journey::new(proxy.url(""), true);
        done.mfa_login("secret").await;
        assert_eq!(done.cookies["amlbcookie"], "03", "{failback}: the passive node took the login");

        // A login in progress on the passive node when an active node returns.
        let mut journey = Journey::new(proxy.url(""), true);
        let (_, step) = journey.start("mfa").await;
        assert_eq!(journey.cookies["amlbcookie"], "03");
        proxy.node("01").set_ready(true);
        wait_health(&proxy, "01", "up").await;
        let (status, answer) = journey.answer("mfa", step, &["demo", "secret"]).await;
        if failback == "sticky" {
            assert_eq!(status, 200, "sticky: the journey stays on 03: {answer}");
            let (status, fin) = journey.answer("mfa", answer, &[&support::totp_now()]).await;
            assert_eq!(status, 200, "{fin}");
            assert_eq!(journey.cookies["amlbcookie"], "03");
        } else {
            assert_eq!(
                journey.cookies["amlbcookie"], "01",
                "primary: the client is re-pinned to the active node"
            );
            assert_eq!(answer["detail"]["errorCode"], "110", "its journey stayed behind on 03: {answer}");
            let token = journey.mfa_login("secret").await;
            assert_eq!(journey.cookies["amlbcookie"], "01");
            assert_eq!(journey.validate(&token).await["valid"], true);
        }
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn drain_keeps_pinned_clients_until_its_deadline_and_maint_takes_everything() {
    let a = TestBackend::start("01").await;
    let b = TestBackend::start("02").await;
    let proxy = Cluster::of(&[&a, &b]).fast_checks().start().await;
    let http = client();
    let pinned = async |proxy: &ProxyHandle| {
        served_by(http.get(proxy.url("/x")).header("cookie", "amlbcookie=01").send().await.unwrap()).await
    };

    let resp = admin_post(&proxy, "/backends/01/drain").await;
    assert_eq!(resp.status(), 200);
    for _ in 0..10 {
        assert_eq!(pinned(&proxy).await, "01", "pinned clients keep reaching a draining node");
        assert_eq!(
            served_by(http.get(proxy.url("/x")).send().await.unwrap()).await,
            "02",
            "new clients never do"
        );
    }

    assert_eq!(admin_post(&proxy, "/backends/01/drain?deadline_s=1").await.status(), 200);
    assert_eq!(backend_status(&proxy, "01").await["admin"], "drain");
    eventually("the drain deadline moves pinned clients", Duration::from_secs(10), async || {
        pinned(&proxy).await == "02"
    })
    .await;

    assert_eq!(admin_post(&proxy, "/backends/01/ready").await.status(), 200);
    assert_eq!(pinned(&proxy).await, "01");
    assert_eq!(admin_post(&proxy, "/backends/01/maint").await.status(), 200);
    let hits = a.hits();
    for _ in 0..10 {
        assert_eq!(pinned(&proxy).await, "02");
        assert_eq!(served_by(http.get(proxy.url("/x")).send().await.unwrap()).await, "02");
    }
    assert_eq!(a.hits(), hits, "nothing reaches a node in maint");

    assert_eq!(admin_post(&proxy, "/backends/99/drain").await.status(), 404);
    assert_eq!(admin_post(&proxy, "/backends/01/explode").await.status(), 404);
    assert_eq!(client().get(proxy.admin_url("/backends/01/drain")).send().await.unwrap().status(), 405);
}

#[tokio::test]
async fn readyz_is_503_with_the_down_list_while_a_pool_has_no_node_and_200_after() {
    let a = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&a]).fast_checks().start().await;
    let addr = a.addr;
    assert_eq!(client().get(proxy.admin_url("/readyz")).send().await.unwrap().status(), 200);
    a.shutdown();
    let mut body = Value::Null;
    eventually("readyz turns 503", Duration::from_secs(10), async || {
        let r = client().get(proxy.admin_url("/readyz")).send().await.unwrap();
        let s = r.status();
        body = r.json().await.unwrap();
        s == 503
    })
    .await;
    assert_eq!(body["down"][0]["backend"], "01", "{body}");
    assert_eq!(body["pools_without_node"][0], "am");
    let _back = TestBackend::start_at(addr, "01", BackendOptions::default()).await;
    eventually("readyz recovers", Duration::from_secs(10), async || {
        client().get(proxy.admin_url("/readyz")).send().await.unwrap().status() == 200
    })
    .await;
}
