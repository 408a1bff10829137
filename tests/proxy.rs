//! The proxy core over real sockets: stickiness on the affinity cookie, cookie insertion, bad cookies,
//! header hygiene, routes and the connect-failure retry.

mod support;

use std::collections::HashMap;

use support::{
    BackendHandle, BackendOptions, Cluster, TWO_POOLS, TestBackend, client, h2c_client, served_by,
};

/// Test backends 01 and 02 active and 03 passive, and the proxy config in front of them.
async fn three_nodes() -> (Vec<BackendHandle>, Cluster) {
    let nodes =
        vec![TestBackend::start("01").await, TestBackend::start("02").await, TestBackend::start("03").await];
    let cluster = Cluster::of(&[&nodes[0], &nodes[1]]).passive_backend(&nodes[2]);
    (nodes, cluster)
}

#[tokio::test]
async fn cookie_pins_every_request_and_cookieless_ones_spread_over_actives_only() {
    let (nodes, cluster) = three_nodes().await;
    let proxy = cluster.start().await;
    let http = client();
    for _ in 0..200 {
        let resp = http.get(proxy.url("/am/json/x")).header("cookie", "amlbcookie=02").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(served_by(resp).await, "02");
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..100 {
        let resp = http.get(proxy.url("/")).send().await.unwrap();
        *seen.entry(served_by(resp).await).or_default() += 1;
    }
    assert_eq!(seen.get("03"), None, "the passive node served while actives were up: {seen:?}");
    assert_eq!((seen["01"], seen["02"]), (50, 50), "round-robin over the actives: {seen:?}");
    assert_eq!(nodes[2].hits(), 0);
}

#[tokio::test]
async fn h2c_requests_are_pinned_and_forwarded_as_http1() {
    let (_nodes, cluster) = three_nodes().await;
    let proxy = cluster.start().await;
    let resp = h2c_client().get(proxy.url("/x")).header("cookie", "amlbcookie=01").send().await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["backend"], "01");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(
        v["headers"]["host"][0],
        proxy.addr.to_string(),
        "the client's authority reaches the node as Host"
    );
}

#[tokio::test]
async fn insert_mode_sets_exactly_one_cookie_with_the_configured_attributes() {
    let nodes = [TestBackend::start("01").await, TestBackend::start("02").await];
    let proxy = Cluster::of(&[&nodes[0], &nodes[1]])
        .affinity("mode", "insert")
        .affinity("path", "/am")
        .affinity("http_only", true)
        .affinity("secure", true)
        .affinity("same_site", "Strict")
        .affinity("domain", "example.test")
        .start()
        .await;
    let http = client();

    let resp = http.get(proxy.url("/am/json/x")).send().await.unwrap();
    let cookies: Vec<String> =
        resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let node = served_by(resp).await;
    let c = &cookies[0];
    assert!(c.starts_with(&format!("amlbcookie={node};")), "{c}");
    for attr in ["Path=/am", "HttpOnly", "Secure", "SameSite=Strict", "Domain=example.test"] {
        assert!(c.contains(attr), "{attr} missing from {c}");
    }

    for _ in 0..10 {
        let resp = http
            .get(proxy.url("/am/json/x"))
            .header("cookie", format!("amlbcookie={node}"))
            .send()
            .await
            .unwrap();
        assert!(resp.headers().get("set-cookie").is_none(), "a valid cookie is not set again");
        assert_eq!(served_by(resp).await, node);
    }
}

#[tokio::test]
async fn a_node_that_sets_the_cookie_itself_gets_no_second_one() {
    let n1 = TestBackend::start_with(
        "01",
        BackendOptions { set_cookie: Some("amlbcookie=01; Path=/".into()), ..Default::default() },
    )
    .await;
    let n2 = TestBackend::start_with(
        "02",
        BackendOptions { set_cookie: Some("amlbcookie=02; Path=/".into()), ..Default::default() },
    )
    .await;
    for mode in ["insert", "observe"] {
        let proxy = Cluster::of(&[&n1, &n2]).affinity("mode", mode).start().await;
        let http = client();
        let resp = http.get(proxy.url("/")).send().await.unwrap();
        let cookies: Vec<_> = resp.headers().get_all("set-cookie").iter().cloned().collect();
        assert_eq!(cookies.len(), 1, "{mode}: {cookies:?}");
        let node = served_by(resp).await;
        assert_eq!(cookies[0].to_str().unwrap(), format!("amlbcookie={node}; Path=/"));
        // The node's own cookie is honoured on the way back in.
        for _ in 0..5 {
            let resp =
                http.get(proxy.url("/")).header("cookie", format!("amlbcookie={node}")).send().await.unwrap();
            assert_eq!(served_by(resp).await, node, "{mode}");
        }
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn observe_mode_leaves_cookieless_answers_alone() {
    let (_nodes, cluster) = three_nodes().await;
    let proxy = cluster.start().await;
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert!(resp.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn malformed_and_unknown_cookies_are_treated_as_no_cookie() {
    let (_nodes, cluster) = three_nodes().await;
    let proxy = cluster.start().await;
    let http = client();
    let long = "7".repeat(8 * 1024);
    let values: Vec<Vec<u8>> = vec![
        b"amlbcookie=99".to_vec(),
        b"amlbcookie=".to_vec(),
        b"amlbcookie=../x".to_vec(),
        format!("amlbcookie={long}").into_bytes(),
        "amlbcookie=\u{00e9}\u{4e2d}".as_bytes().to_vec(),
        b"amlbcookie=\xff\xfe".to_vec(),
        b"amlbcookie=99; amlbcookie=02".to_vec(),
        b";;amlbcookie;=;".to_vec(),
    ];
    for value in values {
        let header = http::HeaderValue::from_bytes(&value).unwrap();
        let resp = http.get(proxy.url("/")).header("cookie", header).send().await.unwrap();
        assert_eq!(resp.status(), 200, "cookie {:?}", String::from_utf8_lossy(&value));
        let node = served_by(resp).await;
        assert!(["01", "02"].contains(&node.as_str()), "served by {node}");
    }
    // Of two cookies, the one naming a configured node wins.
    let resp =
        http.get(proxy.url("/")).header("cookie", "amlbcookie=99; amlbcookie=02").send().await.unwrap();
    assert_eq!(served_by(resp).await, "02");
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways_and_forwarding_headers_added() {
    let node = TestBackend::start_with(
        "01",
        BackendOptions {
            headers: vec![
                ("connection".into(), "x-node-secret".into()),
                ("x-node-secret".into(), "1".into()),
                ("keep-alive".into(), "timeout=5".into()),
                ("proxy-authenticate".into(), "Basic".into()),
                ("x-node-kept".into(), "1".into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let proxy = Cluster::of(&[&node]).start().await;
    let resp = client()
        .get(proxy.url("/"))
        .header("connection", "x-client-secret")
        .header("x-client-secret", "1")
        .header("proxy-authorization", "Basic eA==")
        .header("te", "trailers")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-client-kept", "1")
        .send()
        .await
        .unwrap();
    for gone in ["x-node-secret", "keep-alive", "proxy-authenticate"] {
        assert!(resp.headers().get(gone).is_none(), "{gone} reached the client");
    }
    assert_eq!(resp.headers()["x-node-kept"], "1");
    let v: serde_json::Value = resp.json().await.unwrap();
    let h = &v["headers"];
    for gone in ["x-client-secret", "proxy-authorization", "te"] {
        assert!(h.get(gone).is_none(), "{gone} reached the node: {h}");
    }
    assert_eq!(h["x-client-kept"][0], "1");
    // The test client is no trusted proxy: its own `X-Forwarded-For` is replaced.
    assert_eq!(h["x-forwarded-for"][0], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"][0], "http");
    assert_eq!(h["x-forwarded-host"][0], proxy.addr.to_string());
    assert_eq!(h["x-forwarded-port"][0], proxy.addr.port().to_string());
}

/// Writes `bytes` on a new connection and reads until the proxy closes it (bounded): the answer, and
/// whether the connection was closed.
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(10), conn.read_to_end(&mut out)).await.is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[tokio::test]
async fn ambiguous_requests_get_400_and_a_closed_connection_and_never_reach_a_node() {
    let node = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&node]).start().await;
    let post = "POST /am/x HTTP/1.1\r\nContent-Type: application/json\r\n";
    let cases = [
        "GET /am/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_owned(),
        "GET /am/x HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n".to_owned(),
        format!("{post}Host: a\r\nHost: b\r\nContent-Length: 2\r\n\r\n{{}}"),
        format!("{post}Host: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("{post}Host: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n"),
        format!("{post}Host: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{{}}"),
        format!("{post}Host: a\r\nContent-Length: 2, 2\r\n\r\n{{}}"),
        format!("{post}Host: a\r\nContent-Length: +2\r\n\r\n{{}}"),
        // hyper's path: the connection is hyper's after a request with a body.
        format!(
            "{post}Host: a\r\nContent-Length: 2\r\n\r\n{{}}GET /am/y HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
        ),
    ];
    for (i, case) in cases.iter().enumerate() {
        let (answer, closed) = raw_exchange(proxy.addr, case.as_bytes()).await;
        assert!(closed, "the connection closes: {case:?}");
        let refusal = answer.rfind("HTTP/1.1 400").unwrap_or_else(|| panic!("400 for {case:?}: {answer}"));
        let refusal = &answer[refusal..];
        assert!(refusal.to_ascii_lowercase().contains("connection: close"), "{refusal}");
        let body = refusal.split_once("\r\n\r\n").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {refusal}"));
        assert_eq!(v["code"], 400, "AM's shape: {v}");
        assert_eq!(v["reason"], "Bad Request", "AM's shape: {v}");
        let forwarded = usize::from(i == cases.len() - 1);
        assert_eq!(
            node.hits(),
            forwarded,
            "only the first request of the last case reached the node: {case:?}"
        );
    }
}

#[tokio::test]
async fn routes_first_match_wins_with_host_method_and_status() {
    let a = TestBackend::start("01").await;
    let b = TestBackend::start("02").await;
    let cluster = Cluster::fixture(TWO_POOLS).backend_at(0, "01", &a.url(), "active").backend_at(
        1,
        "02",
        &b.url(),
        "active",
    );
    let proxy = cluster.start().await;
    let http = client();

    let resp = http.get(proxy.url("/am/console/x")).header("host", "b.example").send().await.unwrap();
    assert_eq!(resp.status(), 403, "the first matching route wins over the later host route");
    assert_eq!(resp.headers()["content-type"], "application/json;charset=UTF-8");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], 403);

    let resp = http.get(proxy.url("/anything")).header("host", "B.Example:8080").send().await.unwrap();
    assert_eq!(served_by(resp).await, "02", "host matcher, case and port ignored");
    let resp = http.post(proxy.url("/am/json/authenticate")).send().await.unwrap();
    assert_eq!(served_by(resp).await, "02", "method matcher");
    let resp = http.get(proxy.url("/am/json/authenticate")).send().await.unwrap();
    assert_eq!(served_by(resp).await, "01");

    let resp = http.get(proxy.url("/elsewhere")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!((v["code"].as_u64(), v["reason"].as_str()), (Some(404), Some("Not Found")));
}

#[tokio::test]
async fn a_refused_connection_is_retried_once_on_another_node() {
    let dead = TestBackend::start("01").await;
    let live = TestBackend::start("02").await;
    let cluster = Cluster::of(&[&dead, &live]);
    dead.shutdown();
    support::eventually("the dead node refuses connections", std::time::Duration::from_secs(5), async || {
        tokio::net::TcpStream::connect(dead.addr).await.is_err()
    })
    .await;
    let proxy = cluster.start().await;
    let http = client();
    // Pinned to the dead node: the first attempt goes there, is refused, and is retried.
    let resp = http.get(proxy.url("/x")).header("cookie", "amlbcookie=01").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let set = resp.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(served_by(resp).await, "02");
    assert!(set.unwrap_or_default().starts_with("amlbcookie=02"), "the cookie follows the serving node");
    // A JSON body of an auth request is kept and sent again.
    let resp = http
        .post(proxy.url("/am/json/authenticate"))
        .header("cookie", "amlbcookie=01")
        .json(&serde_json::json!({"authId": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for _ in 0..10 {
        let resp = http.get(proxy.url("/x")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(live.hits(), 12);
}

#[tokio::test]
async fn all_nodes_refusing_is_a_502_in_am_shape() {
    let dead = TestBackend::start("01").await;
    let cluster = Cluster::of(&[&dead]).passive_checks();
    dead.shutdown();
    support::eventually("the node refuses connections", std::time::Duration::from_secs(5), async || {
        tokio::net::TcpStream::connect(dead.addr).await.is_err()
    })
    .await;
    let proxy = cluster.start().await;
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "application/json;charset=UTF-8");
    // Marked down by the refusal: the next request finds no node at all.
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
}

#[tokio::test]
async fn readyz_reports_pools_without_a_node_and_healthz_stays_up() {
    let node = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&node]).health("fall", 1).start().await;
    let http = client();
    assert_eq!(http.get(proxy.admin_url("/healthz")).send().await.unwrap().status(), 200);
    let ready = http.get(proxy.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    node.shutdown();
    support::eventually("the node refuses connections", std::time::Duration::from_secs(5), async || {
        tokio::net::TcpStream::connect(node.addr).await.is_err()
    })
    .await;
    // The refusal marks it down (fall = 1), unless the active check got there first: 502 or 503.
    let status = http.get(proxy.url("/")).send().await.unwrap().status();
    assert!(status == 502 || status == 503, "{status}");
    let resp = http.get(proxy.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["pools_without_node"], serde_json::json!(["am"]));
    assert_eq!(v["down"][0]["backend"], "01");
    assert_eq!(v["down"][0]["health"], "down");
    assert_eq!(http.get(proxy.admin_url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_node_that_sends_no_headers_in_time_is_a_504() {
    let node = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&node]).proxy("response_timeout_ms", 200).start().await;
    let resp = client().get(proxy.url("/slow")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["content-type"], "application/json;charset=UTF-8");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], 504);
    assert_eq!(node.slow_started(), 1, "a timed-out request is not sent again");
    node.release();
}

#[tokio::test]
async fn a_node_dying_mid_request_fails_a_post_but_retries_a_get() {
    for (method, want) in [(reqwest::Method::POST, 502), (reqwest::Method::GET, 200)] {
        let dying = TestBackend::start("01").await;
        let other = TestBackend::start("02").await;
        let proxy = Cluster::of(&[&dying, &other]).start().await;
        let req = client()
            .request(method.clone(), proxy.url("/slow"))
            .header("cookie", "amlbcookie=01")
            .header("content-type", "application/json")
            // A GET carries no content: tether refuses one that does (RFC 9110 §9.3.1).
            .body(if method == reqwest::Method::POST { "{}" } else { "" });
        let pending = tokio::spawn(req.send());
        support::eventually("the request reached node 01", std::time::Duration::from_secs(10), async || {
            dying.slow_started() == 1
        })
        .await;
        // The node goes away with the request in flight: bytes were sent, nothing came back.
        dying.shutdown();
        if want == 200 {
            // The retry lands on /slow of node 02, which answers once released.
            support::eventually(
                "the retry reached node 02",
                std::time::Duration::from_secs(10),
                async || other.slow_started() == 1,
            )
            .await;
            other.release();
        }
        let resp = pending.await.unwrap().unwrap();
        assert_eq!(resp.status(), want, "{method}");
        assert_eq!(
            other.hits(),
            usize::from(want == 200),
            "{method}: only the idempotent request is sent again"
        );
    }
}

#[tokio::test]
async fn a_json_body_trickling_in_is_cut_off_with_a_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&node]).proxy("request_header_timeout_ms", 200).start().await;
    let mut conn = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    // Headers promise 100 bytes of JSON; only a few arrive, then nothing.
    let head = "POST /am/json/authenticate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"authId\":";
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":408"), "{answer}");
    assert_eq!(node.hits(), 0, "nothing reached the node");
}
