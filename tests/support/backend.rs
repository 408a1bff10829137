//! A test backend: an echo server over hyper on `127.0.0.1:0` that counts what it served and can hold,
//! stream and swallow bodies. Started as `TestBackend::start("01")`, it returns a [`BackendHandle`] with
//! its address and a way to stop it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

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
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

type TestBody = BoxBody<Bytes, Infallible>;

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
    accepted: Arc<AtomicUsize>,
    slow_started: Arc<AtomicUsize>,
    release: Arc<Notify>,
    shutdown: CancellationToken,
    serving: Option<JoinHandle<()>>,
}

impl BackendHandle {
    /// Requests answered or started.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Connections accepted (the proxy's node connections, pooled ones counted once).
    pub fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
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

    /// Stops the backend and waits until it has; a panic of its accept loop or of a connection it served
    /// is raised here, in the test.
    pub async fn join(mut self) {
        self.shutdown.cancel();
        if let Some(serving) = self.serving.take() {
            reraise(serving.await);
        }
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
            accepted: Arc::default(),
            slow_started: Arc::default(),
            release: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
            serving: None,
        };
        let state = Arc::new((
            id.to_string(),
            options,
            handle.hits.clone(),
            handle.slow_started.clone(),
            handle.release.clone(),
        ));
        let shutdown = handle.shutdown.clone();
        let accepted = handle.accepted.clone();
        let mut handle = handle;
        handle.serving = Some(tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let (stream, _) = tokio::select! {
                    () = shutdown.cancelled() => break,
                    Some(done) = connections.join_next() => { reraise(done); continue }
                    r = listener.accept() => match r { Ok(p) => p, Err(_) => continue },
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                let conn_shutdown = shutdown.clone();
                connections.spawn(async move {
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
            drop(listener);
            while let Some(done) = connections.join_next().await {
                reraise(done);
            }
        }));
        handle
    }
}

/// Raises in the caller the panic a task ended with.
fn reraise(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
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
    if let Some(code) = path.strip_prefix("/check/") {
        // A check path answering with the status it names and the `Host` it was sent, for
        // `expect_status`, `expect_body` and `host`; not traffic the tests count either.
        let host = req.headers().get("host").map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
        let mut resp = json(serde_json::json!({"backend": id, "host": host}));
        *resp.status_mut() = code.parse().unwrap_or(http::StatusCode::BAD_REQUEST);
        return resp;
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

/// The `backend` field of an echo answer.
pub async fn served_by(resp: reqwest::Response) -> String {
    let v: serde_json::Value = resp.json().await.expect("json answer");
    v["backend"].as_str().expect("backend field").to_string()
}
