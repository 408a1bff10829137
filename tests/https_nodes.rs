//! `https://` backends: real auth nodes serving TLS with certificates of a test CA made at run time
//! (rcgen), reached through the proxy on both request paths (a bodiless GET by the fast path, a POST by
//! hyper's); a node whose certificate another CA signed is down with the certificate's problem as the
//! reason and never sees a request; mutual TLS against a node that requires a client certificate; and
//! the `check` errors for unusable `[pool.tls]` files.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use support::{Cluster, Journey, ProxyHandle, backend_status, client, eventually, h2c_client};
use tether::{AuthNode, Body, Handler, Peer, ServeOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where a test's PEM files go.
fn dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("https-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A certificate authority made for one test, with its certificate in `ca.pem`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

/// A certificate the CA issued, with its key, also as files.
struct Leaf {
    cert: CertificateDer<'static>,
    key_pem: String,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Leaf {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = dir.join(name.replace(' ', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        Self { issuer, dir }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A certificate for `names` (DNS names or IP addresses), usable by servers and clients.
    fn leaf(&self, label: &str, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, label);
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_file, key_file) =
            (self.dir.join(format!("{label}.pem")), self.dir.join(format!("{label}-key.pem")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Leaf { cert: cert.der().clone(), key_pem: key.serialize_pem(), cert_file, key_file }
    }
}

/// A server config presenting `leaf`, requiring a client certificate from `clients` when given.
fn server_config(leaf: &Leaf, clients: Option<&Ca>) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der()).unwrap();
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap(),
            )
        }
    };
    let mut config = builder.with_single_cert(vec![leaf.cert.clone()], leaf.key()).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// An auth node behind the library's server with TLS, counting the requests that reached it (health
/// checks left out).
struct CountingNode {
    node: Arc<AuthNode>,
    hits: AtomicUsize,
}

impl Handler for CountingNode {
    async fn call(&self, req: Request<Incoming>, _peer: Peer) -> Response<Body> {
        if req.headers().get(http::header::USER_AGENT).is_none_or(|ua| ua != "tether-health-check") {
            self.hits.fetch_add(1, Ordering::SeqCst);
        }
        self.node.handle(req).await
    }
}

impl CountingNode {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Serves `node` over TLS with `config` on a port of its own until `stop` fires.
async fn https_node(
    node: Arc<AuthNode>,
    config: rustls::ServerConfig,
    stop: &CancellationToken,
) -> (SocketAddr, Arc<CountingNode>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counting = Arc::new(CountingNode { node, hits: AtomicUsize::new(0) });
    let opts = ServeOptions {
        name: "https node",
        header_timeout: Duration::from_secs(10),
        grace: Duration::from_secs(1),
        tls: Some((Arc::new(ArcSwap::from_pointee(config)), Duration::from_secs(5))),
        proxy_protocol: false,
        connections: Default::default(),
        max_connections: None,
        limit_reached: Default::default(),
        accepted: Default::default(),
        tls_failures: Default::default(),
        client_traffic: false,
        send_timeout: Duration::from_secs(30),
        h2: Default::default(),
    };
    tokio::spawn(tether::serve(listener, Arc::clone(&counting), opts, stop.clone()));
    (addr, counting)
}

/// Auth nodes `ids` (journeys in memory, sessions local to each node), started by a tether of their own
/// whose proxy the tests do not use: only the nodes are served again, over TLS.
async fn node_host(ids: &[&str]) -> ProxyHandle {
    Cluster::new().active(ids.iter().copied()).start().await
}

/// A proxy in front of `https://` backends `(id, addr)` verified with `ca_file`, checks 50 ms apart.
fn https_proxy(backends: &[(&str, SocketAddr)], ca_file: &Path) -> Cluster {
    backends
        .iter()
        .fold(Cluster::of(&[]), |c, (id, addr)| c.backend_at(0, id, &format!("https://{addr}"), "active"))
        .set("pool.0.tls.ca_file", ca_file.to_str().unwrap())
        .fast_checks()
}

async fn wait_health(proxy: &ProxyHandle, id: &str, health: &str) -> serde_json::Value {
    let mut seen = serde_json::Value::Null;
    eventually(&format!("{id} {health}"), Duration::from_secs(10), async || {
        seen = backend_status(proxy, id).await;
        seen["health"] == health
    })
    .await;
    seen
}

#[tokio::test]
async fn logins_and_pinned_requests_reach_https_nodes_on_both_paths() {
    let host = node_host(&["01", "02", "03"]).await;
    let files = dir("three");
    let ca = Ca::new(&files, "tether test CA");
    let stop = CancellationToken::new();
    let mut nodes = Vec::new();
    for id in ["01", "02", "03"] {
        // Backend URLs name 127.0.0.1: the certificate's IP address is what is verified.
        let leaf = ca.leaf(&format!("node{id}"), &["127.0.0.1"]);
        nodes.push((id, https_node(host.node(id), server_config(&leaf, None), &stop).await));
    }
    let backends: Vec<(&str, SocketAddr)> = nodes.iter().map(|(id, (addr, _))| (*id, *addr)).collect();
    let proxy = https_proxy(&backends, &ca.ca_file()).start().await;
    for id in ["01", "02", "03"] {
        let status = wait_health(&proxy, id, "up").await;
        assert!(status["url"].as_str().unwrap().starts_with("https://127.0.0.1:"), "{status}");
    }
    let hits = |id: &str| nodes.iter().find(|(n, _)| *n == id).unwrap().1.1.hits();

    // Logins through the proxy (JSON POSTs: the fast path, the authId read with the head), one per node as new clients are balanced; each
    // journey's later steps are pinned by its authId to the node that holds it in memory.
    let mut logins = Vec::new();
    for _ in 0..3 {
        let mut journey = Journey::new(proxy.url(""), true);
        let token = journey.mfa_login("secret").await;
        let node = journey.cookies.get("amlbcookie").cloned().expect("the node pinned the client");
        assert_eq!(journey.validate(&token).await["valid"], true, "session validated on its node {node}");
        logins.push((node, token));
    }
    let mut served: Vec<&str> = logins.iter().map(|(n, _)| n.as_str()).collect();
    served.sort_unstable();
    assert_eq!(served, ["01", "02", "03"], "every https node served a login");

    // Pinned bodiless GETs (the fast path): by the affinity cookie, and by the session token alone.
    let http = client();
    let (node, token) = &logins[1];
    let before: Vec<usize> = ["01", "02", "03"].iter().map(|id| hits(id)).collect();
    for cookie in [format!("amlbcookie={node}"), format!("iPlanetDirectoryPro={token}")] {
        for _ in 0..3 {
            let resp = http.get(proxy.url("/am/isAlive.jsp")).header("cookie", &cookie).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.text().await.unwrap(), "Server is ALIVE");
        }
    }
    // The same over h2c: hyper's path.
    let resp = h2c_client()
        .get(proxy.url("/am/isAlive.jsp"))
        .header("cookie", format!("amlbcookie={node}"))
        .send()
        .await
        .unwrap();
    assert_eq!((resp.version(), resp.status()), (reqwest::Version::HTTP_2, reqwest::StatusCode::OK));
    for (i, id) in ["01", "02", "03"].iter().enumerate() {
        let expected = before[i] + if id == node { 7 } else { 0 };
        assert_eq!(hits(id), expected, "pinned GETs reach node {node} only");
    }
    // Both paths keep their TLS connections to the node for the next request.
    let conns = Arc::clone(&proxy.proxy.snapshot().upstreams.backend(node).unwrap().conns);
    eventually("idle TLS connections of both paths", Duration::from_secs(5), async || {
        let (senders, streams) = conns.idle_by_path();
        senders >= 1 && streams >= 1
    })
    .await;
    stop.cancel();
}

#[tokio::test]
async fn a_node_whose_certificate_another_ca_signed_is_down_with_the_reason_and_never_reached() {
    let host = node_host(&["01", "02"]).await;
    let files = dir("other-ca");
    let (ca, other) = (Ca::new(&files, "tether test CA"), Ca::new(&files, "someone else's CA"));
    let stop = CancellationToken::new();
    let (good_addr, good) =
        https_node(host.node("01"), server_config(&ca.leaf("good", &["127.0.0.1"]), None), &stop).await;
    let (bad_addr, bad) =
        https_node(host.node("02"), server_config(&other.leaf("bad", &["127.0.0.1"]), None), &stop).await;
    let proxy = https_proxy(&[("01", good_addr), ("02", bad_addr)], &ca.ca_file()).start().await;
    wait_health(&proxy, "01", "up").await;
    let status = wait_health(&proxy, "02", "down").await;
    let detail = status["last_check"]["detail"].as_str().unwrap_or_default().to_string();
    assert!(detail.contains("invalid peer certificate") && detail.contains("UnknownIssuer"), "{status}");
    let page = client().get(proxy.admin_url("/status")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("UnknownIssuer"), "the status page shows the reason: {page}");

    // Clients pinned to the bad node, on both paths, are served by the good one; nothing reaches 02.
    let http = client();
    for _ in 0..4 {
        let get =
            http.get(proxy.url("/am/isAlive.jsp")).header("cookie", "amlbcookie=02").send().await.unwrap();
        assert_eq!(get.status(), 200);
        let mut journey = Journey::new(proxy.url(""), true);
        journey.cookies.insert("amlbcookie".into(), "02".into());
        let token = journey.mfa_login("secret").await;
        assert_eq!(journey.validate(&token).await["valid"], true);
    }
    assert_eq!(bad.hits(), 0, "no request reached the node whose certificate does not verify");
    assert!(good.hits() >= 4 * 5, "the good node served them all: {}", good.hits());

    // A pool with only that node, and detection left to requests: a request gets AM's JSON error, the
    // failure is the node's (it goes down), and still nothing reached it.
    let alone = https_proxy(&[("02", bad_addr)], &ca.ca_file()).passive_checks().start().await;
    for _ in 0..3 {
        let resp = http.get(alone.url("/am/isAlive.jsp")).send().await.unwrap();
        let status = resp.status().as_u16();
        assert!(status == 502 || status == 503, "{status}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], status, "{body}");
    }
    let down = backend_status(&alone, "02").await;
    assert_eq!(down["health"], "down", "{down}");
    assert!(down["passive_failures"].as_u64().unwrap_or(0) >= 1, "the failure counts as the node's: {down}");
    assert_eq!(bad.hits(), 0);
    stop.cancel();
}

#[tokio::test]
async fn mutual_tls_works_with_the_client_certificate_and_fails_clearly_without_it() {
    let host = node_host(&["01", "02"]).await;
    let files = dir("mtls");
    let (ca, clients) = (Ca::new(&files, "tether test CA"), Ca::new(&files, "tether client CA"));
    let stop = CancellationToken::new();
    // Verified by name: the certificates carry `am.internal`, the URLs an address.
    let mtls = |id: &str| server_config(&ca.leaf(&format!("node{id}"), &["am.internal"]), Some(&clients));
    let (addr1, node1) = https_node(host.node("01"), mtls("01"), &stop).await;
    let (addr2, node2) = https_node(host.node("02"), mtls("02"), &stop).await;
    let lb = clients.leaf("lb", &["lb.internal"]);
    let with_cert = https_proxy(&[("01", addr1), ("02", addr2)], &ca.ca_file())
        .set("pool.0.tls.server_name", "am.internal")
        .set("pool.0.tls.client_cert", lb.cert_file.to_str().unwrap())
        .set("pool.0.tls.client_key", lb.key_file.to_str().unwrap())
        .start()
        .await;
    wait_health(&with_cert, "01", "up").await;
    wait_health(&with_cert, "02", "up").await;
    let mut journey = Journey::new(with_cert.url(""), true);
    let token = journey.mfa_login("secret").await;
    assert_eq!(journey.validate(&token).await["valid"], true);
    let resp = client().get(with_cert.url("/am/isAlive.jsp")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let served = node1.hits() + node2.hits();
    assert!(served >= 5, "{served}");

    let without = https_proxy(&[("01", addr1)], &ca.ca_file())
        .set("pool.0.tls.server_name", "am.internal")
        .start()
        .await;
    let status = wait_health(&without, "01", "down").await;
    let detail = status["last_check"]["detail"].as_str().unwrap_or_default().to_string();
    assert!(detail.to_lowercase().contains("certificate"), "the reason names the certificate: {status}");
    let resp = client().get(without.url("/am/isAlive.jsp")).send().await.unwrap();
    assert!(matches!(resp.status().as_u16(), 502 | 503), "{}", resp.status());
    stop.cancel();
}

/// `tether check` names the key, its line and the file of every unusable `[pool.tls]` setting.
#[test]
fn check_names_unusable_tls_files_with_their_key() {
    let files = dir("check");
    let garbage = files.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = files.join("missing.pem");
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[[pool]]\nname = \"am\"\n  [pool.tls]\n  ca_file = {garbage:?}\n  client_cert = {missing:?}\n  client_key = {garbage:?}\n  [[pool.backend]]\n  id = \"01\"\n  url = \"https://am1.internal:8443\"\n\n[[route]]\npath_prefix = \"/\"\npool = \"am\"\n"
    );
    let config = files.join("proxy.toml");
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["check", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 8: `pool[0].tls.ca_file`"), "{err}");
    assert!(err.contains("garbage.pem holds no PEM certificate"), "{err}");
    assert!(err.contains("line 9: `pool[0].tls.client_cert`: cannot read PEM certificates from"), "{err}");
    assert!(err.contains("missing.pem"), "{err}");
    assert!(err.contains("line 10: `pool[0].tls.client_key`: cannot read a PEM private key from"), "{err}");
}

/// A reload that changes the roots applies to every connection at once: pooled connections verified
/// under the old roots are not reused, and the health check follows the new ones.
#[tokio::test]
async fn a_reload_with_other_roots_reuses_no_connection_verified_under_the_old_ones() {
    let host = node_host(&["01"]).await;
    let files = dir("reload");
    let (ca, other) = (Ca::new(&files, "tether test CA"), Ca::new(&files, "the next CA"));
    let stop = CancellationToken::new();
    let (addr, node) =
        https_node(host.node("01"), server_config(&ca.leaf("node", &["127.0.0.1"]), None), &stop).await;
    let roots = files.join("roots.pem");
    std::fs::copy(ca.ca_file(), &roots).unwrap();
    let file = files.join("proxy.toml");
    std::fs::write(&file, https_proxy(&[("01", addr)], &roots).toml()).unwrap();
    let proxy = ProxyHandle::start(tether::config::load(&file).unwrap()).await;
    wait_health(&proxy, "01", "up").await;
    let http = client();
    let resp = http.get(proxy.url("/am/isAlive.jsp")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let served = node.hits();

    std::fs::copy(other.ca_file(), &roots).unwrap();
    let reload = http.post(proxy.admin_url("/reload")).send().await.unwrap();
    assert_eq!(reload.status(), 200, "{}", reload.text().await.unwrap());
    let resp = http.get(proxy.url("/am/isAlive.jsp")).send().await.unwrap();
    assert!(matches!(resp.status().as_u16(), 502 | 503), "{}", resp.status());
    let status = wait_health(&proxy, "01", "down").await;
    assert!(
        status["last_check"]["detail"].as_str().unwrap_or_default().contains("UnknownIssuer"),
        "{status}"
    );
    assert_eq!(node.hits(), served, "nothing went over a connection verified under the old roots");
    stop.cancel();
}
