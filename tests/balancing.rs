//! Balancing as HAProxy does it: per-backend `weight` splits new clients.

mod support;

use std::time::Duration;

use support::{Cluster, TestBackend, backend_status, client, eventually, served_by};

#[tokio::test]
async fn new_clients_split_by_weight_for_each_balance() {
    for balance in ["round-robin", "least-conn"] {
        let heavy = TestBackend::start("01").await;
        let light = TestBackend::start("02").await;
        let proxy = Cluster::of(&[&heavy, &light])
            .set("pool.0.balance", balance)
            .set("pool.0.backend.0.weight", 3)
            .start()
            .await;
        let http = client();
        let mut to_heavy = 0;
        for _ in 0..400 {
            let resp = http.get(proxy.url("/am/json/x")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            if served_by(resp).await == "01" {
                to_heavy += 1;
            }
        }
        if balance == "round-robin" {
            assert!((260..=340).contains(&to_heavy), "{balance}: weight 3 node got {to_heavy} of 400");
        } else {
            // Sequential requests leave nothing in flight, so least-conn always prefers the node with
            // the most room per unit of weight: the heavy one.
            assert!(to_heavy >= 260, "{balance}: weight 3 node got {to_heavy} of 400");
        }
        assert_eq!(backend_status(&proxy, "01").await["weight"], 3);
        assert_eq!(backend_status(&proxy, "02").await["weight"], 1);
    }
}

#[tokio::test]
async fn weight_zero_keeps_pinned_clients_and_takes_no_new_ones() {
    let zero = TestBackend::start("01").await;
    let other = TestBackend::start("02").await;
    let proxy = Cluster::of(&[&zero, &other]).set("pool.0.backend.0.weight", 0).start().await;
    let http = client();
    for _ in 0..20 {
        let resp = http.get(proxy.url("/am/json/x")).send().await.unwrap();
        assert_eq!(served_by(resp).await, "02");
        let resp = http.get(proxy.url("/am/json/x")).header("cookie", "amlbcookie=01").send().await.unwrap();
        assert_eq!(served_by(resp).await, "01");
    }
    let metrics = http.get(proxy.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("tether_backend_weight{")
            && l.contains("backend=\"01\"")
            && l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test]
async fn disabled_health_checks_count_the_node_as_up_until_enabled() {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let proxy = Cluster::of(&[&a, &b]).fast_checks().start().await;
    let http = client();
    let health = async |proxy: &support::ProxyHandle| backend_status(proxy, "01").await["health"].clone();
    a.shutdown();
    eventually("01 down", Duration::from_secs(10), async || health(&proxy).await == "down").await;

    let resp = http.post(proxy.admin_url("/backends/01/health/disable")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let row = backend_status(&proxy, "01").await;
    assert_eq!((row["health"].as_str(), row["health_checks"].as_str()), (Some("up"), Some("disabled")));
    let checks = row["checks"].as_u64().unwrap();

    let resp = http.post(proxy.admin_url("/backends/01/health/enable")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(backend_status(&proxy, "01").await["health_checks"], "enabled");
    eventually("checks resume", Duration::from_secs(10), async || {
        backend_status(&proxy, "01").await["checks"].as_u64().unwrap() > checks + 2
    })
    .await;
    assert_eq!(health(&proxy).await, "down");
    let resp = http.post(proxy.admin_url("/backends/09/health/disable")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

/// Polls until node `id` has been checked a few times, and returns its health then.
async fn health_after_checks(proxy: &support::ProxyHandle, id: &str) -> String {
    eventually("a few checks", Duration::from_secs(10), async || {
        backend_status(proxy, id).await["checks"].as_u64().unwrap() >= 4
    })
    .await;
    backend_status(proxy, id).await["health"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn expect_status_rejects_statuses_the_default_rule_accepts() {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let default = Cluster::of(&[&a, &b]).fast_checks().health("path", "/check/204").start().await;
    assert_eq!(health_after_checks(&default, "01").await, "up");
    let strict = Cluster::of(&[&a, &b])
        .fast_checks()
        .health("path", "/check/204")
        .health("expect_status", vec![toml::Value::from(200), toml::Value::from("300-399")])
        .start()
        .await;
    assert_eq!(health_after_checks(&strict, "01").await, "down");
    let server_error = Cluster::of(&[&a, &b])
        .fast_checks()
        .health("path", "/check/500")
        .health("expect_status", vec![200])
        .start()
        .await;
    assert_eq!(health_after_checks(&server_error, "01").await, "down");
}

#[tokio::test]
async fn expect_body_and_the_check_host_header() {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let expecting = |c: Cluster| {
        c.fast_checks().health("path", "/check/200").health("expect_body", r#""host":"am.example.test""#)
    };
    // The node echoes the Host it saw: the body holds the configured one only when `host` is set.
    let with_host = expecting(Cluster::of(&[&a, &b])).health("host", "am.example.test").start().await;
    assert_eq!(health_after_checks(&with_host, "01").await, "up");
    let without = expecting(Cluster::of(&[&a, &b])).start().await;
    assert_eq!(health_after_checks(&without, "01").await, "down");
    let detail = backend_status(&without, "01").await["last_check"]["detail"].clone();
    assert!(detail.as_str().unwrap().contains("expected body"), "{detail}");
}

/// New clients node `id` gets out of `n` cookieless requests.
async fn share(proxy: &support::ProxyHandle, id: &str, n: usize) -> usize {
    let http = client();
    let mut got = 0;
    for _ in 0..n {
        let resp = http.get(proxy.url("/am/json/x")).send().await.unwrap();
        got += usize::from(served_by(resp).await == id);
    }
    got
}

#[tokio::test]
async fn a_node_back_from_maint_ramps_up_over_slowstart() {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let proxy = Cluster::of(&[&a, &b]).set("pool.0.slowstart_s", 2).start().await;
    let http = client();
    for action in ["maint", "ready"] {
        let resp = http.post(proxy.admin_url(&format!("/backends/01/{action}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(backend_status(&proxy, "01").await["slowstart_left_s"].as_f64().is_some());
    let early = share(&proxy, "01", 100).await;
    assert!(early < 35, "early in the ramp the returning node got {early} of 100");
    eventually("ramp over", Duration::from_secs(10), async || {
        backend_status(&proxy, "01").await["slowstart_left_s"].is_null()
    })
    .await;
    let late = share(&proxy, "01", 100).await;
    assert!((40..=60).contains(&late), "after the ramp the returning node got {late} of 100");
}
