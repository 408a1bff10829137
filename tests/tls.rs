//! TLS termination: HTTPS with a certificate made in the test, HTTP/1.1 and HTTP/2 over ALPN,
//! a whole login over each, `X-Forwarded-Proto: https` and `Secure` cookies.

mod support;

use support::{Cluster, Journey, TestBackend, https_client, localhost_cert};

#[tokio::test]
async fn logins_complete_over_https_with_http1_and_http2() {
    let (cert, key, pem) = localhost_cert("login");
    let proxy = Cluster::new().active(["01", "02"]).tls(&cert, &key).start().await;
    let base = format!("https://localhost:{}", proxy.addr.port());
    for (http1_only, version) in [(true, http::Version::HTTP_11), (false, http::Version::HTTP_2)] {
        let http = https_client(&pem, proxy.addr, http1_only);
        let resp = http
            .post(format!("{base}/am/json/realms/root/authenticate"))
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        let mut journey = Journey::with_client(http, base.clone(), true);
        let token = journey.mfa_login("secret").await;
        assert_eq!(journey.validate(&token).await["valid"], true, "{version:?}");
    }
}

#[tokio::test]
async fn tls_requests_carry_https_forwarding_and_secure_cookies() {
    let (cert, key, pem) = localhost_cert("headers");
    let node = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&node]).affinity("mode", "insert").tls(&cert, &key).start().await;
    let http = https_client(&pem, proxy.addr, false);
    let resp = http.get(format!("https://localhost:{}/x", proxy.addr.port())).send().await.unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("Secure"), "cookies set over TLS are Secure: {cookie}");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(v["version"], "HTTP/1.1", "HTTP/2 inbound reaches the node as HTTP/1.1");
}

#[tokio::test]
async fn a_missing_certificate_is_a_clear_start_error() {
    let node = TestBackend::start("01").await;
    let config = Cluster::of(&[&node])
        .tls(std::path::Path::new("/nonexistent/cert.pem"), std::path::Path::new("/nonexistent/key.pem"))
        .config();
    let err = tether::start(config, tokio_util::sync::CancellationToken::new()).await.err().expect("refused");
    assert!(
        err.to_string().contains("proxy.tls: cannot read certificates from /nonexistent/cert.pem"),
        "{err}"
    );
}
