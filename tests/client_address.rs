//! The client address the nodes and the access line see: `X-Forwarded-For` replaced for untrusted
//! peers and appended to for `trusted_proxies`, `X-Forwarded-Host` with its port, `X-Forwarded-Port`,
//! PROXY protocol v1 and v2 on the public listener (a connection without a header is closed), and the
//! request ID (`X-ForgeRock-TransactionId`) the node gets and the access line names. Every case runs
//! on both request paths: the HTTP/1.1 fast path (a GET) and hyper's (a POST with a body).

mod support;

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use support::{BackendHandle, Cluster, TestBackend, TetherProcess, client, h2c_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A GET (the fast path's) and a POST with a body (hyper's), each closing the connection after it.
fn requests(extra: &str) -> [String; 2] {
    [
        format!("GET /am/x HTTP/1.1\r\nHost: login.example:8080\r\n{extra}Connection: close\r\n\r\n"),
        format!(
            "POST /am/x HTTP/1.1\r\nHost: login.example:8080\r\n{extra}Content-Type: text/plain\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\nhi"
        ),
    ]
}

/// Writes `bytes` on a new connection to `addr` and reads until the proxy closes it (bounded).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out))
        .await
        .expect("the proxy closes the connection")
        .ok();
    out
}

/// The echo backend's JSON answer at the end of a raw response.
fn echoed(response: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn trusting_loopback(node: &BackendHandle) -> Cluster {
    Cluster::of(&[node]).proxy("trusted_proxies", toml::Value::Array(vec!["127.0.0.1/32".into()]))
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_the_address_the_node_sees() {
    let node = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&node]).start().await;
    for req in requests("X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Host: evil\r\n") {
        let v = echoed(&exchange(proxy.addr, req.as_bytes()).await);
        let h = &v["headers"];
        assert_eq!(h["x-forwarded-for"], serde_json::json!(["127.0.0.1"]), "{req}: {h}");
        assert_eq!(h["x-forwarded-host"], serde_json::json!(["login.example:8080"]), "{req}: {h}");
        let port = proxy.addr.port().to_string();
        assert_eq!(h["x-forwarded-port"], serde_json::json!([port]), "{req}: {h}");
        assert_eq!(h["x-forwarded-proto"], serde_json::json!(["http"]), "{req}: {h}");
    }
}

#[tokio::test]
async fn a_trusted_peer_s_forwarded_for_is_appended_to() {
    let node = TestBackend::start("01").await;
    let proxy = trusting_loopback(&node).start().await;
    for req in requests("X-Forwarded-For: 6.6.6.6\r\n") {
        let v = echoed(&exchange(proxy.addr, req.as_bytes()).await);
        assert_eq!(v["headers"]["x-forwarded-for"], serde_json::json!(["6.6.6.6, 127.0.0.1"]), "{req}: {v}");
    }
    // HTTP/2 (hyper's path, no `Host`): the same rule, and `:authority` as the forwarded host.
    let resp =
        h2c_client().get(proxy.url("/am/x")).header("x-forwarded-for", "6.6.6.6").send().await.unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["headers"]["x-forwarded-for"], serde_json::json!(["6.6.6.6, 127.0.0.1"]), "{v}");
    assert_eq!(v["headers"]["x-forwarded-host"], serde_json::json!([proxy.addr.to_string()]), "{v}");
}

/// `PROXY TCP4 …` naming a client that never connected itself.
const V1: &str = "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n";

/// A v2 header for a TCP6 client, with a TLV the proxy skips.
fn v2_tcp6(source: Ipv6Addr, port: u16) -> Vec<u8> {
    let mut block = source.octets().to_vec();
    block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    block.extend_from_slice(&port.to_be_bytes());
    block.extend_from_slice(&8443u16.to_be_bytes());
    block.extend_from_slice(&[0x05, 0x00, 0x03, b'v', b'p', b'c']);
    let mut out = b"\r\n\r\n\0\r\nQUIT\n\x21\x21".to_vec();
    out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&block);
    out
}

#[tokio::test]
async fn proxy_protocol_headers_name_the_client_the_node_sees() {
    let node = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&node]).proxy("proxy_protocol", true).start().await;
    let v6: Ipv6Addr = "2001:db8::7".parse().unwrap();
    // v2 LOCAL: the balancer's own health check; the socket's address stands.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    let cases: [(Vec<u8>, &str, String); 3] = [
        (V1.as_bytes().to_vec(), "192.0.2.1", "443".to_owned()),
        (v2_tcp6(v6, 40000), "2001:db8::7", "8443".to_owned()),
        (local, "127.0.0.1", proxy.addr.port().to_string()),
    ];
    for (header, client, port) in cases {
        for req in requests("X-Forwarded-For: 6.6.6.6\r\n") {
            let v = echoed(&exchange(proxy.addr, &[&header[..], req.as_bytes()].concat()).await);
            let h = &v["headers"];
            assert_eq!(h["x-forwarded-for"], serde_json::json!([client]), "{req}: {h}");
            assert_eq!(h["x-forwarded-port"], serde_json::json!([port]), "{req}: {h}");
        }
    }
    let served = node.hits();
    for no_header in
        [&b"GET /am/x HTTP/1.1\r\nHost: a\r\n\r\n"[..], b"PROXY TCP4 garbage\r\nGET / HTTP/1.1\r\n\r\n"]
    {
        let answer = exchange(proxy.addr, no_header).await;
        assert!(answer.is_empty(), "closed without an answer: {}", String::from_utf8_lossy(&answer));
    }
    assert_eq!(node.hits(), served, "nothing without a PROXY header reached the node");
}

#[tokio::test]
async fn a_connection_without_a_proxy_header_in_time_is_closed() {
    let node = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&node])
        .proxy("proxy_protocol", true)
        .proxy("request_header_timeout_ms", 200)
        .start()
        .await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(b"PROXY TCP4 192.0.2.1").await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "closed after the header timeout");
    assert!(out.is_empty());
    assert_eq!(node.hits(), 0);
}

/// tether as a process with JSON logs, so its access lines can be read.
async fn tether_with(cluster: Cluster, name: &str) -> TetherProcess {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("client-address-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    std::fs::write(&file, cluster.toml()).unwrap();
    TetherProcess::spawn(&["run", "-c", file.to_str().unwrap()]).await
}

async fn access_line(tether: &mut TetherProcess) -> serde_json::Value {
    tether.wait_line("target tether::access", |v| v["target"] == "tether::access").await
}

#[tokio::test]
async fn the_access_line_names_client_host_agent_proto_and_the_request_id_the_node_got() {
    let node = TestBackend::start("01").await;
    let mut tether = tether_with(Cluster::of(&[&node]), "line").await;
    let addr: SocketAddr = tether.listen().parse().unwrap();
    let txn = "X-ForgeRock-TransactionId";
    for (extra, kept) in [
        (
            format!("{txn}: 8c9a2b4e-1f3d-4530-9a1e-0b5c7d9e1f2a/0\r\n"),
            Some("8c9a2b4e-1f3d-4530-9a1e-0b5c7d9e1f2a/0"),
        ),
        (format!("{txn}: <script>\r\n"), None),
        (String::new(), None),
    ] {
        for req in requests(&format!("User-Agent: ForgeRock-SDK/4.1\r\n{extra}")) {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let client = conn.local_addr().unwrap();
            conn.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out)).await.unwrap().unwrap();
            let v = echoed(&out);
            let line = access_line(&mut tether).await;
            let sent = v["headers"]["x-forgerock-transactionid"][0].as_str().unwrap().to_owned();
            assert_eq!(line["request_id"], sent, "the node got the logged ID: {line} {v}");
            match kept {
                Some(id) => assert_eq!(sent, id, "a valid incoming ID is kept"),
                None => assert!(sent.len() == 32 && sent.bytes().all(|b| b.is_ascii_hexdigit()), "{sent}"),
            }
            assert_eq!(line["client"], client.to_string(), "{line}");
            assert_eq!(line["host"], "login.example:8080", "{line}");
            assert_eq!(line["user_agent"], "ForgeRock-SDK/4.1", "{line}");
            assert_eq!(line["proto"], "HTTP/1.1", "{line}");
        }
    }
    let resp = h2c_client().get(format!("http://{addr}/am/x")).send().await.unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    let line = access_line(&mut tether).await;
    assert_eq!(line["proto"], "HTTP/2.0", "{line}");
    assert_eq!(line["request_id"], v["headers"]["x-forgerock-transactionid"][0], "{line} {v}");
    // Two requests, two IDs.
    let a =
        client().get(format!("http://{addr}/am/x")).send().await.unwrap().json::<serde_json::Value>().await;
    let b =
        client().get(format!("http://{addr}/am/x")).send().await.unwrap().json::<serde_json::Value>().await;
    let id = |v: serde_json::Value| v["headers"]["x-forgerock-transactionid"][0].clone();
    assert_ne!(id(a.unwrap()), id(b.unwrap()));
}

#[tokio::test]
async fn the_access_line_names_the_client_of_a_proxy_header_or_a_trusted_proxy() {
    let node = TestBackend::start("01").await;
    let cluster = trusting_loopback(&node).proxy("proxy_protocol", true);
    let mut tether = tether_with(cluster, "proxied").await;
    let addr: SocketAddr = tether.listen().parse().unwrap();
    for req in requests("") {
        echoed(&exchange(addr, &[V1.as_bytes(), req.as_bytes()].concat()).await);
        let line = access_line(&mut tether).await;
        assert_eq!(line["client"], "192.0.2.1:56324", "{line}");
    }
    // From a trusted proxy (loopback, through a LOCAL header): the first untrusted hop of its list.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    for req in requests("X-Forwarded-For: 6.6.6.6, 127.0.0.1\r\n") {
        let v = echoed(&exchange(addr, &[&local[..], req.as_bytes()].concat()).await);
        assert_eq!(v["headers"]["x-forwarded-for"], serde_json::json!(["6.6.6.6, 127.0.0.1, 127.0.0.1"]));
        let line = access_line(&mut tether).await;
        assert_eq!(line["client"], "6.6.6.6", "{line}");
    }
}

#[tokio::test]
async fn a_proxy_header_comes_before_tls_and_the_line_names_the_tls_version() {
    use rustls_pki_types::pem::PemObject as _;
    let (cert, key, pem) = support::localhost_cert("proxy-protocol");
    let node = TestBackend::start("01").await;
    let cluster = Cluster::of(&[&node]).proxy("proxy_protocol", true).tls(&cert, &key);
    let mut tether = tether_with(cluster, "tls").await;
    let addr: SocketAddr = tether.listen().parse().unwrap();
    support::init();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(V1.as_bytes()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /am/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await.unwrap().ok();
    let v = echoed(&out);
    assert_eq!(v["headers"]["x-forwarded-for"], serde_json::json!(["192.0.2.1"]), "{v}");
    assert_eq!(v["headers"]["x-forwarded-proto"], serde_json::json!(["https"]), "{v}");
    let line = access_line(&mut tether).await;
    assert_eq!(line["client"], "192.0.2.1:56324", "{line}");
    assert_eq!(line["proto"], "HTTP/1.1+TLSv1.3", "{line}");
}
