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
    // The file is read when the config is loaded (as `tether check` does), so the key names it.
    let text = Cluster::of(&[&node])
        .tls(std::path::Path::new("/nonexistent/cert.pem"), std::path::Path::new("/nonexistent/key.pem"))
        .toml();
    let err = tether::config::parse(&text).expect_err("refused");
    assert!(
        err.to_string().contains("`proxy.tls.cert`: cannot read PEM certificates from /nonexistent/cert.pem"),
        "{err}"
    );
}

/// A raw TLS client for `localhost` trusting only `pem`, offering HTTP/1.1 alone by ALPN.
async fn tls_connect(
    pem: &str,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn http1_over_tls_rides_the_fast_path_pipelined_with_bodies_and_ends_with_close_notify() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (cert, key, pem) = localhost_cert("fast-path");
    let node = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&node]).affinity("mode", "insert").tls(&cert, &key).start().await;
    let mut tls = tls_connect(&pem, proxy.addr).await;
    // A GET, a login step's JSON POST, a 100 KiB upload relayed after its head, and a last GET that
    // closes: one write, so most of them wait in the proxy's buffers (plaintext rustls decrypted included).
    let json = r#"{"authId":"x","callbacks":[]}"#;
    let upload = vec![b'u'; 100 * 1024];
    let mut requests = format!(
        "GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n\
         POST /am/json/authenticate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{json}\
         PUT /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        json.len(),
        upload.len()
    )
    .into_bytes();
    requests.extend_from_slice(&upload);
    requests.extend_from_slice(b"GET /d HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(&requests).await.unwrap();
    tls.flush().await.unwrap();
    let mut answers = Vec::new();
    // To the end: an error here would be a cut without close_notify.
    tokio::time::timeout(std::time::Duration::from_secs(10), tls.read_to_end(&mut answers))
        .await
        .expect("all answers in time")
        .expect("the proxy ends TLS with close_notify");
    let answers = String::from_utf8_lossy(&answers);
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 4, "{answers}");
    assert!(answers.contains(r#""received":102400"#), "the upload arrived whole: {answers}");
    assert!(answers.contains("Secure"), "the cookie set over TLS is Secure: {answers}");
    assert!(answers.contains(r#""x-forwarded-proto":["https"]"#), "{answers}");
    assert_eq!(node.hits(), 4);
    // The node connections are the fast path's raw streams; hyper's client never carried one.
    let conns = std::sync::Arc::clone(&proxy.proxy.snapshot().upstreams.backend("01").unwrap().conns);
    assert_eq!(conns.idle_by_path(), (0, 1), "(hyper senders, fast-path streams) idle after the exchange");
}
