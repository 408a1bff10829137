//! Balancing as HAProxy does it: per-backend `weight` splits new clients, `maxconn` queues the requests
//! over a node's limit for `queue_timeout_ms`.

mod support;

use std::time::Duration;

use support::{Cluster, TestBackend, backend_status, client, eventually, h2c_client, served_by};

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

/// The value of the `/metrics` row of `family` for backend `id`, if there is one.
async fn metric(proxy: &support::ProxyHandle, family: &str, id: &str) -> Option<f64> {
    let text = client().get(proxy.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    let backend = format!("backend=\"{id}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(&backend))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

/// A cluster of `node` alone, with one `maxconn` slot and a queue that waits `queue_timeout_ms`.
fn one_slot(node: &support::BackendHandle, queue_timeout_ms: i64) -> Cluster {
    Cluster::of(&[node]).set("pool.0.backend.0.maxconn", 1).set("pool.0.queue_timeout_ms", queue_timeout_ms)
}

/// Takes the node's one `maxconn` slot with a `/slow` request (answered on `node.release()`) from `url`
/// (ending in `/slow`), once the node holds it.
async fn hold_the_slot(
    node: &support::BackendHandle,
    http: &reqwest::Client,
    url: String,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let held = tokio::spawn(http.get(url).send());
    eventually("the first request at the node", Duration::from_secs(10), async || node.slow_started() == 1)
        .await;
    held
}

/// Polls until node `id` has `n` requests in its `maxconn` queue.
async fn queued(proxy: &support::ProxyHandle, id: &str, n: u64) {
    eventually(&format!("{n} queued on {id}"), Duration::from_secs(10), async || {
        backend_status(proxy, id).await["queued"] == n
    })
    .await;
}

/// A request while `/slow` holds the node's one slot: queued (on the fast path and on hyper's), then
/// served once the held answer is done.
#[tokio::test]
async fn maxconn_queues_a_request_until_the_slot_is_free() {
    for (path, http) in [("fast path", client()), ("hyper path", h2c_client())] {
        let node = TestBackend::start("01").await;
        let proxy = Cluster::of(&[&node]).set("pool.0.backend.0.maxconn", 1).start().await;
        let held = hold_the_slot(&node, &http, proxy.url("/slow")).await;
        let waiting = tokio::spawn(http.get(proxy.url("/am/json/x")).send());
        queued(&proxy, "01", 1).await;
        assert_eq!(metric(&proxy, "tether_backend_queue_length", "01").await, Some(1.0), "{path}");
        assert_eq!(metric(&proxy, "tether_backend_max_connections", "01").await, Some(1.0), "{path}");
        assert_eq!(backend_status(&proxy, "01").await["maxconn"], 1, "{path}");
        assert_eq!(node.hits(), 1, "{path}: the queued request must not reach the node yet");
        node.release();
        assert_eq!(held.await.unwrap().unwrap().status(), 200, "{path}");
        let resp = waiting.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(served_by(resp).await, "01", "{path}");
        let row = backend_status(&proxy, "01").await;
        assert_eq!((row["queued"].as_u64(), row["in_flight"].as_u64()), (Some(0), Some(0)), "{path}");
    }
}

/// Past `queue_timeout_ms` a queued request is answered 503 in AM's shape, naming the node and the
/// timeout, and the node's queue timeout counter goes up.
#[tokio::test]
async fn a_request_queued_past_queue_timeout_ms_gets_503_and_is_counted() {
    for (path, http) in [("fast path", client()), ("hyper path", h2c_client())] {
        let node = TestBackend::start("01").await;
        let proxy = one_slot(&node, 200).start().await;
        let held = hold_the_slot(&node, &http, proxy.url("/slow")).await;
        let resp = http.get(proxy.url("/am/json/x")).send().await.unwrap();
        assert_eq!(resp.status(), 503, "{path}");
        assert_eq!(resp.headers()["retry-after"], "1", "{path}: a full queue drains within moments");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            (body["code"].as_u64(), body["reason"].as_str()),
            (Some(503), Some("Service Unavailable"))
        );
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("backend 01") && message.contains("queue_timeout_ms = 200"), "{message}");
        assert_eq!(metric(&proxy, "tether_backend_queue_timeouts_total", "01").await, Some(1.0), "{path}");
        assert_eq!(backend_status(&proxy, "01").await["queued"], 0, "{path}");
        node.release();
        assert_eq!(held.await.unwrap().unwrap().status(), 200, "{path}");
    }
}

/// A new client goes to the node with room; a client pinned to the full node waits for it, since its
/// login state is there.
#[tokio::test]
async fn new_clients_go_to_a_node_with_room_and_pinned_ones_wait_for_theirs() {
    let (full, other) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let proxy = Cluster::of(&[&full, &other]).set("pool.0.backend.0.maxconn", 1).start().await;
    let http = client();
    let pinned = |path: &str| http.get(proxy.url(path)).header("cookie", "amlbcookie=01").send();
    let held = tokio::spawn(pinned("/slow"));
    eventually("the first request at 01", Duration::from_secs(10), async || full.slow_started() == 1).await;
    assert_eq!(share(&proxy, "02", 20).await, 20, "new clients skip the full node");
    let waiting = tokio::spawn(pinned("/am/json/x"));
    queued(&proxy, "01", 1).await;
    full.release();
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
    assert_eq!(served_by(waiting.await.unwrap().unwrap()).await, "01");
}

/// A reload that raises `maxconn` lets the queued request in at once, while the first is still held.
#[tokio::test]
async fn a_reload_raising_maxconn_admits_the_queued_request() {
    let node = TestBackend::start("01").await;
    let cluster = Cluster::of(&[&node]).set("pool.0.backend.0.maxconn", 1);
    let proxy = cluster.clone().start().await;
    let http = client();
    let held = hold_the_slot(&node, &http, proxy.url("/slow")).await;
    let waiting = tokio::spawn(http.get(proxy.url("/am/json/x")).send());
    queued(&proxy, "01", 1).await;
    proxy.proxy.reload(std::sync::Arc::new(cluster.set("pool.0.backend.0.maxconn", 2).config()));
    let resp = waiting.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(node.slow_started(), 1, "the first request is still held");
    assert_eq!(backend_status(&proxy, "01").await["maxconn"], 2);
    node.release();
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
}

/// The slot is held until the answer's body is relayed, not only its head, on both paths: a request
/// queues behind a download the client has not read yet.
#[tokio::test]
async fn the_slot_is_held_until_the_body_is_relayed() {
    const SIZE: usize = 32 << 20;
    for (path, http) in [("fast path", client()), ("hyper path", h2c_client())] {
        let node = TestBackend::start("01").await;
        let proxy = Cluster::of(&[&node]).set("pool.0.backend.0.maxconn", 1).start().await;
        let mut download = http.get(proxy.url(&format!("/download?bytes={SIZE}"))).send().await.unwrap();
        let mut got = download.chunk().await.unwrap().map_or(0, |c| c.len());
        let waiting = tokio::spawn(http.get(proxy.url("/am/json/x")).send());
        queued(&proxy, "01", 1).await;
        while let Some(chunk) = download.chunk().await.unwrap() {
            got += chunk.len();
        }
        assert_eq!(got, SIZE, "{path}");
        assert_eq!(waiting.await.unwrap().unwrap().status(), 200, "{path}");
    }
}

/// A client that gives up while queued leaves the queue at once, long before `queue_timeout_ms`, takes
/// no slot with it and sends the node nothing (HAProxy's `option abortonclose`): an HTTP/1.1 client
/// closes its connection (the fast path sees the hang-up, over TLS too), an HTTP/2 one resets its stream.
#[tokio::test]
async fn a_client_gone_while_queued_leaves_the_queue() {
    let (cert, key, pem) = support::localhost_cert("queue-gone");
    for path in ["fast path", "fast path over TLS", "hyper path"] {
        let node = TestBackend::start("01").await;
        let mut cluster = one_slot(&node, 60_000);
        if path.ends_with("TLS") {
            cluster = cluster.tls(&cert, &key);
        }
        let proxy = cluster.start().await;
        let (http, url) = match path {
            "fast path" => (client(), proxy.url("")),
            "hyper path" => (h2c_client(), proxy.url("")),
            _ => (
                support::https_client(&pem, proxy.addr, true),
                format!("https://localhost:{}", proxy.addr.port()),
            ),
        };
        let held = hold_the_slot(&node, &http, format!("{url}/slow")).await;
        let waiting = tokio::spawn(http.get(format!("{url}/am/json/x")).send());
        queued(&proxy, "01", 1).await;
        waiting.abort();
        queued(&proxy, "01", 0).await;
        node.release();
        assert_eq!(held.await.unwrap().unwrap().status(), 200, "{path}");
        let resp = http.get(format!("{url}/am/json/x")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(node.hits(), 2, "{path}: the abandoned request never reached the node");
        assert_eq!(backend_status(&proxy, "01").await["in_flight"], 0, "{path}");
        assert_eq!(metric(&proxy, "tether_backend_queue_timeouts_total", "01").await, Some(0.0), "{path}");
    }
}

/// HTTP/1 clients written by hand that give up while queued, each by closing its sending side: one
/// that pipelined part of a second request first (its bytes wait unread on the socket), and an HTTP/1.0
/// one, which the fast path hands to hyper.
#[tokio::test]
async fn a_half_closing_client_leaves_the_queue_even_with_bytes_unread() {
    use tokio::io::AsyncWriteExt as _;
    let cases = [
        (
            "pipelined, then half-closed",
            "GET /am/json/x HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /am/json/y HTTP/1.1\r\n",
        ),
        ("HTTP/1.0, served by hyper", "GET /am/json/x HTTP/1.0\r\nHost: t\r\n\r\n", ""),
    ];
    for (case, request, more) in cases {
        let node = TestBackend::start("01").await;
        let proxy = one_slot(&node, 60_000).start().await;
        let held = hold_the_slot(&node, &client(), proxy.url("/slow")).await;
        let mut raw = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        raw.write_all(request.as_bytes()).await.unwrap();
        queued(&proxy, "01", 1).await;
        raw.write_all(more.as_bytes()).await.unwrap();
        // More bytes are not a hang-up; and this round trip to the admin listener lets the proxy see
        // them before the FIN, the order a readiness wait alone would miss.
        queued(&proxy, "01", 1).await;
        raw.shutdown().await.unwrap();
        queued(&proxy, "01", 0).await;
        node.release();
        assert_eq!(held.await.unwrap().unwrap().status(), 200, "{case}");
        assert_eq!(client().get(proxy.url("/am/json/x")).send().await.unwrap().status(), 200, "{case}");
        assert_eq!(node.hits(), 2, "{case}: the abandoned request never reached the node");
        assert_eq!(backend_status(&proxy, "01").await["in_flight"], 0, "{case}");
    }
}
