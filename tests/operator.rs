//! The operator's view: exact metrics after a scripted mix of requests, the access line of a
//! redispatched request, and the admin token.

mod support;

use support::exposition::{Sample, parse, sum};
use support::{Cluster, Journey, METRICS, ProxyHandle, TestBackend, TetherProcess, client, eventually};

async fn scrape(proxy: &ProxyHandle) -> Vec<Sample> {
    parse(&client().get(proxy.admin_url("/metrics")).send().await.unwrap().text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_exactly_what_was_sent() {
    let a = TestBackend::start("01").await;
    let b = TestBackend::start("02").await;
    let dead = TestBackend::start("03").await;
    let dead_alone = TestBackend::start("04").await;
    let (dead_url, alone_url) = (dead.url(), dead_alone.url());
    dead.shutdown();
    dead_alone.shutdown();
    for d in [&dead, &dead_alone] {
        eventually("refusing", std::time::Duration::from_secs(5), async || {
            tokio::net::TcpStream::connect(d.addr).await.is_err()
        })
        .await;
    }
    // Passive detection only (checks an hour apart), fall = 1: the first refusal takes a node out.
    let proxy = Cluster::fixture(METRICS)
        .backend_at(0, "01", &a.url(), "active")
        .backend_at(0, "02", &b.url(), "active")
        .backend_at(0, "03", &dead_url, "active")
        .backend_at(1, "04", &alone_url, "active")
        .start()
        .await;
    let http = client();
    let get = async |path: &str, cookie: Option<&str>| {
        let mut r = http.get(proxy.url(path));
        if let Some(c) = cookie {
            r = r.header("cookie", format!("amlbcookie={c}"));
        }
        r.send().await.unwrap().status().as_u16()
    };
    // Redispatched: pinned to 03, refused (retried), then 03 is down.
    for _ in 0..3 {
        assert_eq!(get("/am/x", Some("03")).await, 200);
    }
    for _ in 0..5 {
        assert_eq!(get("/am/x", Some("01")).await, 200); // sticky
    }
    for _ in 0..4 {
        assert_eq!(get("/am/x", None).await, 200); // unpinned
    }
    for _ in 0..2 {
        assert_eq!(get("/am/x", Some("99")).await, 200); // invalid
    }
    assert_eq!(get("/console/x", None).await, 403);
    assert_eq!(get("/console/y", None).await, 403);
    assert_eq!(get("/nowhere", None).await, 404);
    assert_eq!(get("/dead/x", None).await, 502);
    assert_eq!(get("/dead/x", None).await, 503);

    let m = scrape(&proxy).await;
    let aff = |outcome, hint| {
        sum(&m, "tether_affinity_total", &[("pool", "am"), ("outcome", outcome), ("hint", hint)])
    };
    assert_eq!(aff("hit", "cookie"), 5.0);
    assert_eq!(aff("redispatch", "cookie"), 3.0);
    assert_eq!(aff("miss", "none"), 4.0);
    assert_eq!(aff("invalid", "none"), 2.0);
    assert_eq!(sum(&m, "tether_affinity_total", &[("pool", "am")]), 14.0);
    let req = |pool, backend, status| {
        sum(&m, "tether_requests_total", &[("pool", pool), ("backend", backend), ("status", status)])
    };
    assert_eq!(req("am", "01", "2xx") + req("am", "02", "2xx"), 14.0);
    assert_eq!(a.hits() + b.hits(), 14);
    assert_eq!(req("am", "01", "2xx"), a.hits() as f64);
    assert_eq!(
        sum(&m, "tether_requests_total", &[("backend", "03")]),
        0.0,
        "the refused attempt was retried, not answered"
    );
    assert_eq!(req("none", "none", "4xx"), 3.0);
    assert_eq!(req("dead", "04", "5xx"), 1.0);
    assert_eq!(req("dead", "none", "5xx"), 1.0);
    assert_eq!(sum(&m, "tether_requests_total", &[("method", "GET")]), 19.0);
    assert_eq!(sum(&m, "tether_retries_total", &[("backend", "03")]), 1.0);
    assert_eq!(sum(&m, "tether_request_duration_seconds_count", &[("backend", "01")]), a.hits() as f64);
    assert_eq!(sum(&m, "tether_backend_up", &[("backend", "03")]), 0.0);
    assert_eq!(sum(&m, "tether_backend_up", &[("backend", "01")]), 1.0);
    assert_eq!(sum(&m, "tether_health_transitions_total", &[("backend", "03"), ("to", "down")]), 1.0);
    assert_eq!(sum(&m, "tether_backend_passive_failures_total", &[("backend", "03")]), 1.0);
    assert_eq!(sum(&m, "tether_backend_admin_state", &[("backend", "01"), ("state", "ready")]), 1.0);
    assert_eq!(
        sum(&m, "tether_open_connections", &[("listener", "admin")]),
        1.0,
        "this scrape's own connection"
    );
}

#[tokio::test]
async fn auth_node_counters_are_exported() {
    let proxy = Cluster::new().active(["01"]).shared_sessions().start().await;
    let mut ok = Journey::new(proxy.url(""), true);
    ok.mfa_login("secret").await;
    let mut bad = Journey::new(proxy.url(""), true);
    let (_, step) = bad.start("ldapService").await;
    assert_eq!(bad.answer("ldapService", step, &["demo", "wrong"]).await.0, 401);
    let m = scrape(&proxy).await;
    assert_eq!(sum(&m, "tether_auth_logins_started_total", &[("node", "01")]), 2.0);
    assert_eq!(sum(&m, "tether_auth_logins_succeeded_total", &[("node", "01")]), 1.0);
    assert_eq!(sum(&m, "tether_auth_logins_failed_total", &[("node", "01")]), 1.0);
    assert_eq!(sum(&m, "tether_auth_sessions", &[("node", "01")]), 1.0);
    assert_eq!(
        sum(&m, "tether_affinity_total", &[("outcome", "hit"), ("hint", "cookie")]),
        3.0,
        "steps 2-3 of the mfa login and step 2 of the failed one"
    );
}

#[tokio::test]
async fn the_access_line_of_a_redispatch_names_both_nodes_and_the_hint() {
    let a = TestBackend::start("01").await;
    let b = TestBackend::start("02").await;
    let dir =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    std::fs::write(&file, Cluster::of(&[&a, &b]).passive_checks().toml()).unwrap();
    let mut tether = TetherProcess::spawn(&["run", "-c", file.to_str().unwrap()]).await;
    a.shutdown();
    eventually("01 refuses", std::time::Duration::from_secs(5), async || {
        tokio::net::TcpStream::connect(a.addr).await.is_err()
    })
    .await;
    let resp = client()
        .get(format!("http://{}/am/x", tether.listen()))
        .header("cookie", "amlbcookie=01")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    let line = tether.wait_line("target tether::access", |v| v["target"] == "tether::access").await;
    assert_eq!(line["bytes"], body.len(), "the line is written once the body was sent: {line}");
    assert_eq!(line["complete"], true, "{line}");
    assert!(line["duration_us"].as_u64() >= line["headers_us"].as_u64(), "{line}");
    assert_eq!(line["affinity"], "redispatch", "{line}");
    assert_eq!(line["pinned"], "01", "the node the client was pinned to: {line}");
    assert_eq!(line["backend"], "02", "the node that served: {line}");
    assert_eq!(line["hint"], "cookie", "{line}");
    assert_eq!(line["retries"], 1, "{line}");
    assert_eq!(line["status"], 200);
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/am/x");
}

#[tokio::test]
async fn with_an_admin_token_posts_without_it_are_refused_and_change_nothing() {
    let a = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&a]).proxy("admin_token", "s3cret-token-0123456789").start().await;
    let http = client();
    let admin_state = async || {
        let v: serde_json::Value =
            http.get(proxy.admin_url("/status.json")).send().await.unwrap().json().await.unwrap();
        v["pools"][0]["backends"][0]["admin"].as_str().unwrap().to_string()
    };
    for (header, form) in
        [(None, None), (Some("Bearer wrong-token-0123456789"), None), (None, Some("token=nope"))]
    {
        let mut req = http.post(proxy.admin_url("/backends/01/maint"));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        if let Some(f) = form {
            req = req.header("content-type", "application/x-www-form-urlencoded").body(f);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["content-type"], "application/json;charset=UTF-8");
        assert_eq!(admin_state().await, "ready", "a refused POST changes nothing");
    }
    assert_eq!(http.post(proxy.admin_url("/reload")).send().await.unwrap().status(), 401);
    // Reads stay open; the right token works, from a header or from the status page's form.
    assert_eq!(http.get(proxy.admin_url("/metrics")).send().await.unwrap().status(), 200);
    let resp = http
        .post(proxy.admin_url("/backends/01/maint"))
        .bearer_auth("s3cret-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(admin_state().await, "maint");
    let resp = http
        .post(proxy.admin_url("/backends/01/ready"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=s3cret-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "a browser form lands back on the status page");
    assert_eq!(resp.headers()["location"], "/status");
    assert_eq!(admin_state().await, "ready");
}

#[tokio::test]
async fn a_cross_site_form_post_changes_nothing_even_without_a_token() {
    let a = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&a]).start().await;
    let http = client();
    let admin_state = async || {
        let v: serde_json::Value =
            http.get(proxy.admin_url("/status.json")).send().await.unwrap().json().await.unwrap();
        v["pools"][0]["backends"][0]["admin"].as_str().unwrap().to_string()
    };
    let form = |req: reqwest::RequestBuilder| {
        req.header("content-type", "application/x-www-form-urlencoded").body("token=")
    };
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("referer", "http://evil.example/page.html"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let resp =
            form(http.post(proxy.admin_url("/backends/01/maint")).header(name, value)).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{name}: {value}");
        assert!(resp.text().await.unwrap().contains("another site"), "{name}: {value}");
        assert_eq!(admin_state().await, "ready", "a cross-site POST ({name}) changes nothing");
    }
    // The status page's own form (same origin) and tools without an Origin still work.
    let own = proxy.admin_url("");
    let own = own.trim_end_matches('/');
    let resp =
        form(http.post(proxy.admin_url("/backends/01/maint")).header("origin", own)).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(admin_state().await, "maint");
    assert_eq!(http.post(proxy.admin_url("/backends/01/ready")).send().await.unwrap().status(), 200);
    assert_eq!(admin_state().await, "ready");
}

#[tokio::test]
async fn status_json_shows_a_kill_at_the_next_check_and_a_drain_at_once() {
    let a = TestBackend::start("01").await;
    let b = TestBackend::start("02").await;
    let proxy = Cluster::of(&[&a, &b]).health("interval_ms", 100).health("fall", 3).start().await;
    let http = client();
    let row = async |id: &str| {
        let v: serde_json::Value =
            http.get(proxy.admin_url("/status.json")).send().await.unwrap().json().await.unwrap();
        v["pools"][0]["backends"].as_array().unwrap().iter().find(|b| b["id"] == id).cloned().unwrap()
    };
    eventually("a first check ran", std::time::Duration::from_secs(10), async || {
        row("01").await["checks"].as_u64() > Some(0)
    })
    .await;
    a.shutdown();
    let before = row("01").await["checks"].as_u64().unwrap();
    let mut seen = serde_json::Value::Null;
    eventually("the kill shows", std::time::Duration::from_secs(10), async || {
        seen = row("01").await;
        seen["last_check"]["pass"] == false
    })
    .await;
    assert!(
        seen["checks"].as_u64().unwrap() - before <= 1,
        "the first check after the kill shows it: {seen}"
    );
    assert_eq!(seen["health"], "up", "fall = 3 has not been reached yet, and the page says so honestly");

    let resp = http.post(proxy.admin_url("/backends/02/drain")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(row("02").await["admin"], "drain", "an admin change shows at once");
}
