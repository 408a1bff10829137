//! Balancing as HAProxy does it: per-backend `weight` splits new clients.

mod support;

use support::{Cluster, TestBackend, backend_status, client, served_by};

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
