//! The pure pieces of the request hot path, each alone (issue 8): reading the affinity cookie and
//! choosing the node, decoding the node hint of a session token and of an `authId`, and rewriting a
//! browser's request headers (hyper's path, and the HTTP/1.1 fast path's parse-to-forwarded-head).
//! `bench/run.sh` measures the whole proxy against HAProxy and nginx; these
//! say which piece costs what.
//!
//! `cargo bench --bench hot_path`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::header::{HeaderMap, HeaderValue};
use ring::hmac;
use ring::rand::SystemRandom;
use tether::AuthIdClaims;
use tether::Metrics;
use tether::hot_path as headers;
use tether::hot_path::Hints;
use tether::hot_path::{StateRegistry, Upstreams};

const CONFIG: &str = r#"
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[[pool]]
name = "am"
  [pool.affinity]
  mode = "insert"
  [[pool.backend]]
  id = "01"
  url = "http://127.0.0.1:1"
  [[pool.backend]]
  id = "02"
  url = "http://127.0.0.1:2"
  [[pool.backend]]
  id = "03"
  url = "http://127.0.0.1:3"
  role = "passive"
[[route]]
path_prefix = "/"
pool = "am"
"#;

/// What a browser sends on a step of an AM login: the affinity cookie beside the session cookie and the
/// usual analytics noise.
fn browser_headers(cookie: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut add = |name: &'static str, value: &str| {
        h.append(name, HeaderValue::from_str(value).unwrap());
    };
    add("host", "login.example.com");
    add("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0");
    add("accept", "application/json, text/javascript, */*; q=0.01");
    add("accept-language", "en-GB,en;q=0.8,de;q=0.5");
    add("accept-encoding", "gzip, deflate, br, zstd");
    add("content-type", "application/json");
    add("accept-api-version", "protocol=1.0,resource=2.1");
    add("x-requested-with", "XMLHttpRequest");
    add("origin", "https://login.example.com");
    add("referer", "https://login.example.com/am/XUI/?realm=/&authIndexType=service&authIndexValue=mfa");
    add("cookie", cookie);
    add("connection", "keep-alive");
    add("sec-fetch-dest", "empty");
    add("sec-fetch-mode", "cors");
    add("sec-fetch-site", "same-origin");
    add("x-forwarded-for", "203.0.113.7");
    h
}

fn cookie_and_choice(c: &mut Criterion) {
    let config = tether::config::parse(CONFIG).unwrap();
    let upstreams = Upstreams::build(&config, &StateRegistry::default(), &Metrics::default());
    let pool = &upstreams.pools[0];
    let token = tether::am::token::mint_token(&SystemRandom::new(), "02");
    let mut group = c.benchmark_group("cookie_and_choice");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("amlbcookie_only", "amlbcookie=02".to_string()),
        (
            "browser_cookies",
            "_ga=GA1.2.1234567890.1700000000; amlbcookie=02; i18next=en; _gid=GA1.2.99".to_string(),
        ),
        (
            "browser_cookies_and_session_token",
            format!("_ga=GA1.2.12345; amlbcookie=02; iPlanetDirectoryPro={token}"),
        ),
        ("no_cookie", "_ga=GA1.2.12345; i18next=en".to_string()),
    ];
    for (name, cookie) in cases {
        let headers = browser_headers(&cookie);
        group.bench_function(name, |b| {
            b.iter(|| {
                let hints = tether::hot_path::read_hints(
                    pool,
                    black_box(&headers),
                    black_box(Some("_action=validate")),
                    None,
                );
                tether::hot_path::choose(pool, &hints, None).unwrap()
            })
        });
    }
    group.bench_function("choose_only_pinned", |b| {
        let hints =
            Hints { pinned: Some((1, tether::config::HintSource::Cookie)), cookie: Some(1), invalid: false };
        b.iter(|| tether::hot_path::choose(pool, black_box(&hints), None).unwrap())
    });
    group.finish();
}

fn hint_decoding(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let token = tether::am::token::mint_token(&rng, "02");
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"bench secret bench secret bench!");
    let claims = AuthIdClaims {
        otk: "k3v1q0m2g8c6u1m8d2o9r5hj7b".into(),
        realm: "/".into(),
        session_id: tether::am::token::mint_token(&rng, "02"),
        auth_index_type: "service".into(),
        auth_index_value: "ldapService".into(),
        exp: 1_900_000_000,
        state: None,
    };
    let auth_id = tether::am::token::sign_hs256(&key, &claims).unwrap();
    assert_eq!(tether::am::token::node_hint(&token).as_deref(), Some("02"));
    assert_eq!(tether::am::token::auth_id_node_hint(&auth_id).as_deref(), Some("02"));
    let mut group = c.benchmark_group("hint_decoding");
    group.throughput(Throughput::Elements(1));
    group.bench_function("session_token", |b| b.iter(|| tether::am::token::node_hint(black_box(&token))));
    group.bench_function("auth_id", |b| b.iter(|| tether::am::token::auth_id_node_hint(black_box(&auth_id))));
    group.finish();
}

fn header_rewriting(c: &mut Criterion) {
    let token = tether::am::token::mint_token(&SystemRandom::new(), "02");
    let headers = browser_headers(&format!("_ga=GA1.2.12345; amlbcookie=02; iPlanetDirectoryPro={token}"));
    // Rendered once per connection by the proxy.
    let client = headers::forwarded_for_value(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    let host = HeaderValue::from_static("login.example.com");
    let request_id = http::HeaderName::from_static("x-forgerock-transactionid");
    let hop = headers::Hop {
        peer: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        trusted: false,
        tls: false,
        port: 443,
        request_id: &request_id,
    };
    let mut group = c.benchmark_group("header_rewriting");
    group.throughput(Throughput::Elements(1));
    // The fast path's whole request side on the same browser request as bytes: parse, route, hints,
    // forwarded head (`tether::proxy::h1`).
    let config = std::sync::Arc::new(tether::config::parse(CONFIG).unwrap());
    let snap = tether::Snapshot::build(config, &StateRegistry::default(), &Metrics::default());
    let mut raw = b"GET /am/json/realms/root/sessions?_action=validate HTTP/1.1\r\n".to_vec();
    for (name, value) in &headers {
        raw.extend_from_slice(format!("{name}: ").as_bytes());
        raw.extend_from_slice(value.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    assert!(tether::hot_path::forwarded_request(&snap, &raw, ip).is_some());
    group.bench_function("fast_path_parse_route_hints_and_forwarded_head", |b| {
        b.iter(|| tether::hot_path::forwarded_request(&snap, black_box(&raw), ip))
    });
    group.bench_function("strip_hop_by_hop_and_add_forwarded", |b| {
        b.iter_batched(
            || headers.clone(),
            |mut h| {
                headers::strip_hop_by_hop(&mut h);
                headers::add_forwarded(&mut h, &client, &hop, Some(host.clone()));
                h
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The fast path's request side on a login step: bench/post.lua's JSON POST (768 bytes, an authId whose
/// `sessionId` names node 01), with `amlbcookie=01` (the cookie pins it; the authId is never decoded) and
/// without (the authId is the hint).
fn login_step(c: &mut Criterion) {
    use base64::Engine as _;
    let config = std::sync::Arc::new(tether::config::parse(CONFIG).unwrap());
    let snap = tether::Snapshot::build(config, &StateRegistry::default(), &Metrics::default());
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let token = tether::am::token::mint_token(&SystemRandom::new(), "01");
    let claims = serde_json::json!({"otk": "k5ldgcs2pq1r9oe8ai3tudt3dm", "authIndexValue": "ldapService",
        "realm": "/", "sessionId": token, "exp": 1_796_000_000});
    let auth_id = format!(
        "{}.{}.{}",
        b64(br#"{"typ":"JWT","alg":"HS256"}"#),
        b64(claims.to_string().as_bytes()),
        b64(&[7; 32])
    );
    let callbacks = r#"[{"type":"NameCallback","output":[{"name":"prompt","value":"User Name"}],"input":[{"name":"IDToken1","value":"demo"}],"_id":0},{"type":"PasswordCallback","output":[{"name":"prompt","value":"Password"}],"input":[{"name":"IDToken2","value":"demo-Passw0rd"}],"_id":1}]"#;
    let body = format!(r#"{{"authId":"{auth_id}","callbacks":{callbacks}}}"#);
    let request = |cookie: &str| {
        let mut raw = format!(
            "POST /am/json/realms/root/authenticate HTTP/1.1\r\nHost: login.example.com\r\n\
             Content-Type: application/json\r\nAccept-API-Version: resource=2.0, protocol=1.0\r\n{cookie}\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body.as_bytes());
        raw
    };
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let mut group = c.benchmark_group("login_step");
    group.throughput(Throughput::Elements(1));
    for (name, cookie) in [("post_with_cookie", "Cookie: amlbcookie=01\r\n"), ("post_auth_id_only", "")] {
        let raw = request(cookie);
        let forward = tether::hot_path::forwarded_request(&snap, &raw, ip).expect("served by the fast path");
        assert!(forward.ends_with(body.as_bytes()), "the body follows the forwarded head");
        group.bench_function(name, |b| {
            b.iter(|| tether::hot_path::forwarded_request(&snap, black_box(&raw), ip))
        });
    }
    group.finish();
}

criterion_group!(benches, cookie_and_choice, hint_decoding, header_rewriting, login_step);
criterion_main!(benches);
