//! Fixtures for scenario tests: real listeners on `127.0.0.1:0`, real HTTP clients.
//!
//! Each fixture returns a handle with its address and a way to stop it; tests read like the scenario.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

type TestBody = BoxBody<Bytes, Infallible>;

/// Installs the ring provider for rustls once (reqwest is built without a provider of its own).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A plain HTTP client: no proxy from the environment, no cookie jar, no redirects.
pub fn client() -> reqwest::Client {
    init();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// An HTTP/2 prior-knowledge (h2c) client.
pub fn h2c_client() -> reqwest::Client {
    init();
    reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().expect("h2c client")
}

/// Polls `check` until it holds or `deadline` passes.
pub async fn eventually(what: &str, deadline: Duration, mut check: impl AsyncFnMut() -> bool) {
    let end = tokio::time::Instant::now() + deadline;
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    loop {
        poll.tick().await;
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "timed out waiting for: {what}");
    }
}

/// What a [`TestBackend`] does besides echoing.
#[derive(Default, Clone)]
pub struct BackendOptions {
    /// A `Set-Cookie` value added to every answer.
    pub set_cookie: Option<String>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

/// A backend that answers JSON `{"backend","method","path","headers"}`; `/slow` waits for
/// [`BackendHandle::release`]; `/download?bytes=N` streams N zero bytes; `/upload` counts the body.
pub struct TestBackend;

/// A running test backend.
pub struct BackendHandle {
    /// Its address.
    pub addr: SocketAddr,
    /// Its server ID.
    pub id: String,
    hits: Arc<AtomicUsize>,
    slow_started: Arc<AtomicUsize>,
    release: Arc<Notify>,
    shutdown: CancellationToken,
}

impl BackendHandle {
    /// Requests answered or started.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// `/slow` requests that have arrived.
    pub fn slow_started(&self) -> usize {
        self.slow_started.load(Ordering::SeqCst)
    }

    /// Lets every waiting `/slow` request answer.
    pub fn release(&self) {
        self.release.notify_waiters();
    }

    /// Stops accepting and closes the listener (connections are then refused).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for BackendHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestBackend {
    /// Starts a backend with server ID `id`.
    pub async fn start(id: &str) -> BackendHandle {
        Self::start_with(id, BackendOptions::default()).await
    }

    /// Starts a backend with options.
    pub async fn start_with(id: &str, options: BackendOptions) -> BackendHandle {
        Self::start_at("127.0.0.1:0".parse().unwrap(), id, options).await
    }

    /// Starts a backend on a given address (to bring a stopped one back on its port).
    pub async fn start_at(addr: SocketAddr, id: &str, options: BackendOptions) -> BackendHandle {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let handle = BackendHandle {
            addr,
            id: id.to_string(),
            hits: Arc::default(),
            slow_started: Arc::default(),
            release: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
        };
        let state = Arc::new((
            id.to_string(),
            options,
            handle.hits.clone(),
            handle.slow_started.clone(),
            handle.release.clone(),
        ));
        let shutdown = handle.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    () = shutdown.cancelled() => break,
                    r = listener.accept() => match r { Ok(p) => p, Err(_) => continue },
                };
                let state = state.clone();
                let conn_shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, req).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        () = conn_shutdown.cancelled() => {}
                    }
                });
            }
        });
        handle
    }
}

type State = (String, BackendOptions, Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<Notify>);

async fn answer(state: &State, req: Request<Incoming>) -> Response<TestBody> {
    let (id, options, hits, slow_started, release) = state;
    let path = req.uri().path().to_string();
    if path == "/am/json/health/ready" {
        // Active health checks of the proxy; not traffic the tests count.
        return json(serde_json::json!({"backend": id, "health": "ok"}));
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let mut resp = match path.as_str() {
        "/download" => {
            let n: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("bytes="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Response::new(Zeros::new(n).boxed())
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map(|f| f.into_data()) {
                    n += data.map(|d| d.len() as u64).unwrap_or(0);
                }
            }
            json(serde_json::json!({"backend": id, "received": n}))
        }
        _ => {
            if path == "/slow" {
                let notified = release.notified();
                slow_started.fetch_add(1, Ordering::SeqCst);
                notified.await;
            }
            let headers: BTreeMap<String, Vec<String>> = req
                .headers()
                .keys()
                .map(|k| {
                    (
                        k.as_str().to_string(),
                        req.headers()
                            .get_all(k)
                            .iter()
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .collect(),
                    )
                })
                .collect();
            json(serde_json::json!({
                "backend": id,
                "method": req.method().as_str(),
                "path": path,
                "query": req.uri().query(),
                "version": format!("{:?}", req.version()),
                "headers": headers,
            }))
        }
    };
    if let Some(c) = &options.set_cookie {
        resp.headers_mut().append("set-cookie", c.parse().unwrap());
    }
    for (k, v) in &options.headers {
        resp.headers_mut().append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    resp
}

fn json(v: serde_json::Value) -> Response<TestBody> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

/// A body of `n` zero bytes in 64 KiB frames, sharing one buffer (allocates nothing per frame).
pub struct Zeros {
    left: u64,
    chunk: Bytes,
}

impl Zeros {
    /// `n` bytes.
    pub fn new(n: u64) -> Self {
        Self { left: n, chunk: Bytes::from(vec![0u8; 64 * 1024]) }
    }
}

impl http_body::Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// A tether proxy running in-process.
pub struct ProxyHandle {
    /// Public listener.
    pub addr: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// The library's handle.
    pub proxy: Arc<tether::proxy::Proxy>,
    /// Embedded auth nodes.
    pub nodes: Vec<tether::cluster::NodeHandle>,
    shutdown: CancellationToken,
    running: Option<tether::Running>,
}

impl ProxyHandle {
    /// Starts tether from TOML text (listen addresses should be `127.0.0.1:0`).
    pub async fn start(toml: &str) -> Self {
        let config = tether::config::parse(toml).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let shutdown = CancellationToken::new();
        let mut running = tether::start(config, shutdown.clone()).await.expect("tether starts");
        let nodes = std::mem::take(&mut running.nodes);
        Self {
            addr: running.listen,
            admin: running.admin,
            proxy: running.proxy.clone(),
            nodes,
            shutdown,
            running: Some(running),
        }
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `http://admin{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Drains and stops.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.wait().await;
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A pool of backends as `[[pool.backend]]` TOML: `(id, url, role)`.
pub fn backends_toml(backends: &[(&str, String, &str)]) -> String {
    backends
        .iter()
        .map(|(id, url, role)| {
            format!("  [[pool.backend]]\n  id = \"{id}\"\n  url = \"{url}\"\n  role = \"{role}\"\n")
        })
        .collect()
}

/// A one-pool config in front of `backends`, with `affinity` lines under `[pool.affinity]` and `routes`
/// (defaults to everything → the pool).
pub fn proxy_toml(
    backends: &[&BackendHandle],
    passive: &[&str],
    affinity: &str,
    routes: Option<&str>,
) -> String {
    let list: Vec<(&str, String, &str)> = backends
        .iter()
        .map(|b| {
            (b.id.as_str(), b.url(), if passive.contains(&b.id.as_str()) { "passive" } else { "active" })
        })
        .collect();
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[[pool]]\nname = \"am\"\n  [pool.affinity]\n{affinity}\n{}\n{}",
        backends_toml(&list),
        routes.unwrap_or("[[route]]\npath_prefix = \"/\"\npool = \"am\"\n"),
    )
}

/// The `backend` field of an echo answer.
pub async fn served_by(resp: reqwest::Response) -> String {
    let v: serde_json::Value = resp.json().await.expect("json answer");
    v["backend"].as_str().expect("backend field").to_string()
}

/// An argon2id PHC hash with cheap parameters, so logins in debug tests stay fast.
pub fn cheap_hash(password: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_with_salt(password.as_bytes(), b"tether-test-salt")
        .unwrap()
        .to_string()
}

/// The demo TOTP secret (RFC 4648 base32) and its key.
pub const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXP";

/// The current TOTP code for [`TOTP_SECRET`].
pub fn totp_now() -> String {
    let key = tether::auth::totp::secret_from_base32(TOTP_SECRET).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    format!("{:06}", tether::auth::totp::totp(&key, now, 30, 6))
}

/// `[auth]` for tests: user `demo`/`secret` with the TOTP secret, chains `ldapService` and `mfa`.
pub fn auth_toml(auth_sessions: &str, sessions: &str, extra: &str) -> String {
    format!(
        r#"
[auth]
context_path = "/am"
auth_sessions = "{auth_sessions}"
sessions = "{sessions}"
{extra}
  [[auth.chain]]
  name = "ldapService"
  modules = ["DataStore"]
  [[auth.chain]]
  name = "mfa"
  modules = ["DataStore", "TOTP"]
  [[auth.user]]
  username = "demo"
  password = "{}"
  totp_secret = "{TOTP_SECRET}"
"#,
        cheap_hash("secret")
    )
}

/// A cluster config: embedded nodes on ephemeral ports behind one proxy. `ids` with a `!` suffix are
/// passive.
pub fn cluster_toml(ids: &[&str], affinity: &str, auth: &str) -> String {
    let backends: String = ids
        .iter()
        .map(|id| {
            let (id, role) = id.strip_suffix('!').map_or((*id, "active"), |i| (i, "passive"));
            format!("  [[pool.backend]]\n  id = \"{id}\"\n  url = \"http://127.0.0.1:0\"\n  role = \"{role}\"\n  embedded = true\n")
        })
        .collect();
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[[pool]]\nname = \"am\"\n  [pool.affinity]\n{affinity}\n{backends}\n[[route]]\npath_prefix = \"/am/\"\npool = \"am\"\n{auth}"
    )
}

/// One client's view of an AM login: keeps cookies (or not) and walks the callbacks.
pub struct Journey {
    http: reqwest::Client,
    base: String,
    /// Cookies set so far (name → value); empty when `keep_cookies` is off.
    pub cookies: BTreeMap<String, String>,
    keep_cookies: bool,
}

impl Journey {
    /// A login against `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: impl Into<String>, keep_cookies: bool) -> Self {
        Self { http: client(), base: base.into(), cookies: BTreeMap::new(), keep_cookies }
    }

    /// A login through a client of the test's choosing (HTTPS, HTTP/2 …).
    pub fn with_client(http: reqwest::Client, base: impl Into<String>, keep_cookies: bool) -> Self {
        Self { http, base: base.into(), cookies: BTreeMap::new(), keep_cookies }
    }

    /// Points the next requests elsewhere (to send a step straight to another node).
    pub fn retarget(&mut self, base: impl Into<String>) {
        self.base = base.into();
    }

    /// POSTs `body` (or an empty JSON body) to `path`, returning status and JSON.
    pub async fn post(&mut self, path: &str, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
        let mut req =
            self.http.post(format!("{}{path}", self.base)).header("content-type", "application/json");
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", jar.join("; "));
        }
        req = match body {
            Some(b) => req.body(b.to_string()),
            None => req.body(""),
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        if self.keep_cookies {
            for c in resp.headers().get_all("set-cookie") {
                let c = c.to_str().unwrap();
                let pair = c.split(';').next().unwrap();
                if let Some((k, v)) = pair.split_once('=') {
                    self.cookies.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        let json = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Starts a login of `chain`.
    pub async fn start(&mut self, chain: &str) -> (u16, serde_json::Value) {
        self.post(
            &format!("/am/json/realms/root/authenticate?authIndexType=service&authIndexValue={chain}"),
            None,
        )
        .await
    }

    /// Fills the step's callbacks in order with `answers` and sends it to `chain`'s endpoint.
    pub async fn answer(
        &mut self,
        chain: &str,
        mut step: serde_json::Value,
        answers: &[&str],
    ) -> (u16, serde_json::Value) {
        let callbacks = step["callbacks"].as_array_mut().expect("callbacks");
        for (cb, answer) in callbacks.iter_mut().zip(answers) {
            cb["input"][0]["value"] = serde_json::Value::String(answer.to_string());
        }
        self.post(
            &format!("/am/json/realms/root/authenticate?authIndexType=service&authIndexValue={chain}"),
            Some(&step),
        )
        .await
    }

    /// A whole `mfa` login as `demo`/`secret`; returns the tokenId.
    pub async fn mfa_login(&mut self, password: &str) -> String {
        let (status, step) = self.start("mfa").await;
        assert_eq!(status, 200, "{step}");
        let (status, step) = self.answer("mfa", step, &["demo", password]).await;
        assert_eq!(status, 200, "{step}");
        let (status, done) = self.answer("mfa", step, &[&totp_now()]).await;
        assert_eq!(status, 200, "{done}");
        done["tokenId"].as_str().expect("tokenId").to_string()
    }

    /// `sessions?_action=validate` with the token in the query.
    pub async fn validate(&mut self, token: &str) -> serde_json::Value {
        let (status, v) =
            self.post(&format!("/am/json/realms/root/sessions?_action=validate&tokenId={token}"), None).await;
        assert_eq!(status, 200, "{v}");
        v
    }
}

/// Auth nodes in-process, called directly (for paused-time tests, where real sockets would let the
/// paused clock run ahead). They share one store when `shared`.
pub struct LocalNodes {
    /// The nodes, `01`, `02`, … in order.
    pub nodes: Vec<Arc<tether::auth::AuthNode>>,
    /// The store of node `01` (the only one when shared).
    pub store: Arc<dyn tether::auth::session::SessionStore>,
}

impl LocalNodes {
    /// `count` nodes over the `[auth]` of [`auth_toml`] (`extra` lines go into `[auth]`).
    pub fn new(count: usize, auth_sessions: &str, shared: bool, extra: &str) -> Self {
        Self::with_auth(
            count,
            shared,
            &auth_toml(auth_sessions, if shared { "shared" } else { "local" }, extra),
        )
    }

    /// `count` nodes over this `[auth]` text.
    pub fn with_auth(count: usize, shared: bool, auth: &str) -> Self {
        let ids: Vec<String> = (1..=count).map(|i| format!("{i:02}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let toml = cluster_toml(&refs, "", auth);
        let config = tether::config::parse(&toml).unwrap_or_else(|e| panic!("{e}"));
        let auth = Arc::new(config.auth.unwrap());
        let keys = tether::am::token::Keys::derive(b"test secret shared by every node");
        let shared_store: Arc<dyn tether::auth::session::SessionStore> =
            Arc::new(tether::auth::session::MemoryStore::new());
        let spent = Arc::new(tether::auth::SpentOtks::new());
        let nodes = ids
            .iter()
            .map(|id| {
                let store: Arc<dyn tether::auth::session::SessionStore> = if shared {
                    shared_store.clone()
                } else {
                    Arc::new(tether::auth::session::MemoryStore::new())
                };
                Arc::new(tether::auth::AuthNode::new(
                    tether::config::BackendId::new(id).unwrap(),
                    auth.clone(),
                    keys.clone(),
                    store,
                    spent.clone(),
                ))
            })
            .collect();
        Self { nodes, store: shared_store }
    }
}

/// One in-process request: `(status, json, headers)`.
pub async fn call(
    node: &tether::auth::AuthNode,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value, http::HeaderMap) {
    let mut req = Request::builder().method("POST").uri(uri).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let resp = node.handle(req.body(Full::new(Bytes::from(body))).unwrap()).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null), headers)
}

/// Fills a step's callbacks in order.
pub fn fill(mut step: serde_json::Value, answers: &[&str]) -> serde_json::Value {
    for (cb, answer) in step["callbacks"].as_array_mut().expect("callbacks").iter_mut().zip(answers) {
        cb["input"][0]["value"] = serde_json::Value::String(answer.to_string());
    }
    step
}

/// The authenticate URI of `chain`.
pub fn authenticate(chain: &str) -> String {
    format!("/am/json/realms/root/authenticate?authIndexType=service&authIndexValue={chain}")
}

/// A complete `ldapService` login of `demo` on `node`; returns the tokenId.
pub async fn login(node: &tether::auth::AuthNode) -> String {
    let (status, done) = try_login(node, "demo", "secret").await;
    assert_eq!(status, 200, "{done}");
    done["tokenId"].as_str().unwrap().to_string()
}

/// An `ldapService` login of `user`; returns the final status and answer.
pub async fn try_login(
    node: &tether::auth::AuthNode,
    user: &str,
    password: &str,
) -> (u16, serde_json::Value) {
    let (_, step, _) = call(node, &authenticate("ldapService"), &[], None).await;
    let (status, done, _) =
        call(node, &authenticate("ldapService"), &[], Some(fill(step, &[user, password]))).await;
    (status, done)
}

/// Whether `token` is a live session according to `node`.
pub async fn is_valid(node: &tether::auth::AuthNode, token: &str) -> bool {
    let uri = format!("/am/json/realms/root/sessions?_action=validate&tokenId={token}");
    call(node, &uri, &[], None).await.1["valid"] == true
}

/// A self-signed certificate for `localhost`, written as PEM files under the target directory; returns
/// `(cert path, key path, cert PEM)`.
pub fn localhost_cert(name: &str) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let pem = ck.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, pem)
}

/// An HTTPS client trusting only `pem`, resolving `localhost` to `addr`.
pub fn https_client(pem: &str, addr: SocketAddr, http1_only: bool) -> reqwest::Client {
    init();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()])
        .resolve("localhost", addr);
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// The real `tether` binary, started with `--log-format json`, once it logs that it is serving.
pub struct TetherProcess {
    /// The process.
    pub child: std::process::Child,
    /// The "… is serving" log line.
    pub serving: serde_json::Value,
    logs: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl TetherProcess {
    /// Runs `tether ARGS` in the crate directory.
    pub async fn spawn(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["--log-format", "json"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut p = Self { child, serving: serde_json::Value::Null, logs };
        p.serving = p.wait_log("is serving").await;
        p
    }

    /// The next log line whose message ends with `suffix`.
    pub async fn wait_log(&mut self, suffix: &str) -> serde_json::Value {
        self.wait_line(&format!("a message ending {suffix:?}"), |v| {
            v["message"].as_str().is_some_and(|m| m.ends_with(suffix))
        })
        .await
    }

    /// The next log line (as JSON) that `matches`.
    pub async fn wait_line(
        &mut self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.logs.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line with {what} within 30 s"))
                .unwrap_or_else(|| panic!("tether exited: {:?}", self.child.try_wait()));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if matches(&v) {
                return v;
            }
        }
    }

    /// Sends a signal (`TERM`, `HUP`, …).
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; its exit code.
    pub async fn exit_code(mut self) -> Option<i32> {
        tokio::task::spawn_blocking(move || self.child.wait().unwrap().code()).await.unwrap()
    }

    /// The public listener's address, from the serving line.
    pub fn listen(&self) -> String {
        self.serving["listen"].as_str().unwrap().to_string()
    }

    /// The admin listener's address.
    pub fn admin(&self) -> String {
        self.serving["admin"].as_str().unwrap().to_string()
    }
}

impl Drop for TetherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Health checks fast enough for scenario tests: 50 ms apart, rise and fall 2.
pub const FAST_CHECKS: &str = "[pool.health]\ninterval_ms = 50\ntimeout_ms = 100\nrise = 2\nfall = 2";

/// One backend's entry of the admin `/status.json` (first pool).
pub async fn backend_status(proxy: &ProxyHandle, id: &str) -> serde_json::Value {
    let v: serde_json::Value =
        client().get(proxy.admin_url("/status.json")).send().await.unwrap().json().await.unwrap();
    v["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .cloned()
        .expect("backend in status")
}
