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
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("h2c client")
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
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
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

type State = (
    String,
    BackendOptions,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Arc<Notify>,
);

async fn answer(state: &State, req: Request<Incoming>) -> Response<TestBody> {
    let (id, options, hits, slow_started, release) = state;
    hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
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
        resp.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

fn json(v: serde_json::Value) -> Response<TestBody> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
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
        Self {
            left: n,
            chunk: Bytes::from(vec![0u8; 64 * 1024]),
        }
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
    shutdown: CancellationToken,
    running: Option<tether::Running>,
}

impl ProxyHandle {
    /// Starts tether from TOML text (listen addresses should be `127.0.0.1:0`).
    pub async fn start(toml: &str) -> Self {
        let config = tether::config::parse(toml).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let shutdown = CancellationToken::new();
        let running = tether::start(config, shutdown.clone())
            .await
            .expect("tether starts");
        Self {
            addr: running.listen,
            admin: running.admin,
            proxy: running.proxy.clone(),
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
            (
                b.id.as_str(),
                b.url(),
                if passive.contains(&b.id.as_str()) {
                    "passive"
                } else {
                    "active"
                },
            )
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
