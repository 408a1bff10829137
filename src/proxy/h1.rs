//! The HTTP/1.1 fast path of the public listener.
//!
//! Most proxied traffic is plain keep-alive HTTP/1.1 requests without a body: pages and assets, every
//! `GET` of a REST client, `sessions?_action=validate` with the token in a header. hyper's server and
//! client are general machinery (a `HeaderMap` built and copied per message, a task per upstream
//! connection, boxed bodies, buffers kept per idle connection) and were most of tether's CPU per request
//! and all of its memory per idle connection (`bench/RESULTS.md`). On a plain-text connection this module
//! reads the request head itself with `httparse` (the parser inside hyper), decides with the same functions
//! as the general path (route, hints, node choice, failover, metrics, access line), writes the forwarded
//! head in one buffer to a pooled TCP connection, parses the answer, and relays its body with the framing
//! it came with ([`super::framing`]). Between requests it holds no buffer at all.
//!
//! Anything else hands the connection, with the bytes already read, to hyper ([`Handoff`]), which serves
//! it from then on exactly as it serves TLS connections: a request with a body (the bounded auth-body
//! peek of SPEC 4.1, streamed uploads), `Expect`, `Upgrade`, HTTP/1.0, the h2c preface, an absolute or
//! `*` target, a missing or repeated `Host`, more than [`MAX_FIELDS`] fields, a head larger than
//! [`MAX_HEAD`], or anything `httparse` refuses. So the fast path never answers a protocol error itself.
//!
//! One request: read head → [`Request::parse`] (route, hints, forwarded head) → choose node → pooled
//! stream → write head → read and parse the response head → write head and first body bytes in one
//! write → relay the rest → connection back to the pool, metrics, access line.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, ErrorKind, Write as _};
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use http::{HeaderValue, Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::forward::{Failover, Trace, cookie_to_set, idempotent, served};
use super::framing::{Chunked, Framing, FramingError};
use super::{NOT_SERVED, Proxy, Snapshot, headers, route};
use crate::am::crest;
use crate::config::RouteAction;
use crate::error::ProxyError;
use crate::server::{Handoff, PlainContext};
use crate::upstream::conns::{ConnSettings, SendError};
use crate::upstream::sticky::{self, Hints};
use crate::upstream::{Backend, Pool};

/// Largest request head the fast path reads; a larger one goes to hyper, which has its own limits.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most request fields parsed here (hyper takes requests with more).
pub const MAX_FIELDS: usize = 64;
/// Most response fields accepted from a node (hyper's client limit too).
const MAX_RESPONSE_FIELDS: usize = 100;
/// Largest response head accepted from a node.
const MAX_RESPONSE_HEAD: usize = 256 * 1024;
/// The per-thread buffer heads are read into ([`read_scratch`]).
const SCRATCH_SIZE: usize = 16 * 1024;
/// Read size for body pieces: the most of a body in memory at once, per exchange.
const BODY_READ: usize = 16 * 1024;

/// Serves a plain-text client connection until it closes, or until a request needs hyper.
pub fn serve(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    addr: SocketAddr,
    ctx: PlainContext,
) -> impl Future<Output = Option<Handoff>> + Send {
    let mut conn = Connection { proxy, client: Client { stream, buf: BytesMut::new() }, ip: addr.ip(), ctx };
    // A block rather than an `async fn`, whose argument would be stored twice in the task (once as the
    // argument, once as the moved local): the task of an idle connection is mostly this future.
    async move {
        // One timer and one shutdown waiter for the connection's life, neither re-created per request.
        let sleep = pin!(tokio::time::sleep(conn.ctx.header_timeout));
        let mut clock = Clock { deadline: sleep.deadline(), sleep };
        let mut waiter = pin!(conn.ctx.shutdown.cancelled());
        // Polled once, so it holds the task's waker (which never changes); from then on the token's own
        // flag says whether it fired, cheaper than polling the waiter again.
        if std::future::poll_fn(|cx| Poll::Ready(waiter.as_mut().poll(cx).is_ready())).await {
            return None;
        }
        loop {
            // hyper's rule, kept: the head must be complete within the header timeout of the moment the
            // connection starts waiting for it, so an idle keep-alive connection closes after that long.
            clock.set(Instant::now() + conn.ctx.header_timeout);
            if conn.client.buf.is_empty() {
                // Idle: hold no buffer while waiting (HAProxy does the same), so ten thousand idle
                // connections cost ten thousand small tasks and nothing more. (Heads are read into the
                // thread's scratch buffer; this one only ever held a partial head or a pipelined rest.)
                conn.client.buf = BytesMut::new();
                match idle(&conn.client.stream, &mut clock, &conn.ctx.shutdown).await {
                    Woke::Readable => {}
                    Woke::Shutdown | Woke::TimedOut => return None,
                }
            }
            // Boxed, so the task of an idle connection is only as large as this loop.
            let exchange = exchange(&conn.proxy, &mut conn.client, conn.ip, &mut clock, &conn.ctx.shutdown);
            match Box::pin(exchange).await {
                Next::KeepAlive => {}
                Next::Close => return None,
                Next::Handoff => {
                    let Client { stream, buf } = conn.client;
                    return Some(Handoff { stream, read: buf.freeze() });
                }
            }
        }
    }
}

/// Everything the task of one fast-path connection holds between requests.
struct Connection {
    proxy: Arc<Proxy>,
    client: Client,
    ip: IpAddr,
    ctx: PlainContext,
}

/// Why an idle connection woke up.
enum Woke {
    Readable,
    Shutdown,
    TimedOut,
}

/// The connection's one timer, moved lazily. A deadline later than the armed one is only recorded: the
/// timer fires at the old one, sees it is early and re-arms. Only an earlier deadline re-arms at once.
/// A request's deadlines (the head's, then the response's) usually move later, so the usual request
/// costs no timer work (HAProxy's task timers work the same way).
struct Clock<'a> {
    sleep: Pin<&'a mut Sleep>,
    /// When the current phase (waiting for a head, or for an answer) times out.
    deadline: Instant,
}

impl Clock<'_> {
    fn set(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if deadline < self.sleep.deadline() {
            self.sleep.as_mut().reset(deadline);
        }
    }

    /// Ready once the deadline has passed.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.sleep.as_mut().poll(cx).is_ready() {
            if self.sleep.deadline() >= self.deadline {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(self.deadline);
        }
        Poll::Pending
    }
}

/// Waits for the next request, the shutdown or the header deadline. Polls the socket's own readiness
/// (its waker slot, no waiter of its own), so waiting adds nothing to the task.
fn idle<'a>(
    stream: &'a TcpStream,
    clock: &'a mut Clock<'_>,
    shutdown: &'a CancellationToken,
) -> impl Future<Output = Woke> + 'a {
    std::future::poll_fn(move |cx| {
        if stream.poll_read_ready(cx).is_ready() {
            return Poll::Ready(Woke::Readable);
        }
        if shutdown.is_cancelled() {
            return Poll::Ready(Woke::Shutdown);
        }
        if clock.poll_expired(cx).is_ready() {
            return Poll::Ready(Woke::TimedOut);
        }
        Poll::Pending
    })
}

/// `fut`, unless the clock's deadline passes first (`None`).
async fn before<F: Future>(clock: &mut Clock<'_>, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if clock.poll_expired(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

thread_local! {
    /// Where heads are read: one buffer per worker thread, borrowed only inside one poll (never across
    /// an `.await`), so a request costs no read buffer of its own unless its head arrives in pieces or
    /// its answer's body needs more than one read.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// One read from `stream` into the thread's scratch buffer, handed to `use_bytes` at once; `None` at
/// the end of the stream. A short read clears tokio's readiness (as `AsyncRead` does), so the next
/// wait needs no extra system call.
fn read_scratch<'a, R>(
    stream: &'a mut TcpStream,
    mut use_bytes: impl FnMut(&[u8]) -> R + 'a,
) -> impl Future<Output = io::Result<Option<R>>> + 'a {
    std::future::poll_fn(move |cx| {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut read = ReadBuf::new(scratch);
            match Pin::new(&mut *stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => Poll::Ready(Ok(None)),
                Poll::Ready(Ok(())) => Poll::Ready(Ok(Some(use_bytes(read.filled())))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
}

/// Appends `ip` as text (`X-Forwarded-For`): IPv4 by hand, digits only, as this runs per request;
/// the connection keeps the 17-byte address rather than its text.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// The client side of a connection: the socket and what was read from it but not yet used.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

/// What the connection does after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
    Handoff,
}

/// How one exchange ended, for metrics and the access line.
struct Done {
    status: StatusCode,
    bytes: u64,
    complete: bool,
    next: Next,
}

async fn exchange(
    proxy: &Proxy,
    client: &mut Client,
    ip: IpAddr,
    clock: &mut Clock<'_>,
    shutdown: &CancellationToken,
) -> Next {
    let snap = proxy.snapshot();
    let log = tracing::enabled!(target: "tether::access", tracing::Level::INFO);
    let req = loop {
        if !client.buf.is_empty() {
            match Request::parse(&snap, &client.buf, ip, log) {
                Parse::Ready(req) => {
                    client.buf.advance(req.head_len);
                    break req;
                }
                Parse::Handoff => return Next::Handoff,
                Parse::Partial if client.buf.len() < MAX_HEAD => {}
                Parse::Partial => return Next::Handoff,
            }
        }
        let Client { stream, buf } = &mut *client;
        let read = read_scratch(stream, |bytes| {
            if buf.is_empty()
                && let Parse::Ready(req) = Request::parse(&snap, bytes, ip, log)
            {
                // The usual case: a whole head in one read, used where it landed; only what follows
                // it (a pipelined request) is kept.
                buf.extend_from_slice(&bytes[req.head_len..]);
                return Some(req);
            }
            buf.extend_from_slice(bytes);
            None
        });
        match before(clock, read).await {
            Some(Ok(Some(Some(req)))) => break req,
            Some(Ok(Some(None))) => {}
            // Closed, failed or too slow: as with hyper, the connection just ends.
            _ => return Next::Close,
        }
    };
    let started = std::time::Instant::now();
    let close = req.close || shutdown.is_cancelled();
    let mut trace = Trace { hints: req.hints, ..Trace::default() };
    let (result, pool) = match req.action {
        None => (Err(Answer::from(ProxyError::NoRoute)), None),
        Some(RouteAction::Status(status)) => (Err(Answer(status, NOT_SERVED.to_owned())), None),
        Some(RouteAction::Pool(i)) => {
            let pool = &snap.upstreams.pools[i];
            let forwarded = to_pool(&snap, pool, &req, client, close, &mut trace, clock).await;
            (forwarded.map_err(Answer::from), Some(pool))
        }
    };
    let done = match result {
        Ok(done) => done,
        Err(Answer(status, message)) => {
            tracing::debug!(status = status.as_u16(), message, "synthetic answer");
            synthetic(client, status, &message, close, req.method == Method::HEAD).await
        }
    };
    if let Some(line) = proxy.record(pool, &trace, req.method, done.status, req.path, started) {
        line.emit(done.bytes, done.complete);
    }
    done.next
}

/// A synthetic answer to write: status and message.
struct Answer(StatusCode, String);

impl From<ProxyError> for Answer {
    fn from(e: ProxyError) -> Self {
        Self(e.status(), e.to_string())
    }
}

/// Writes an AM-shaped error answer (the headers of [`crate::error::json_response`]).
async fn synthetic(client: &mut Client, status: StatusCode, message: &str, close: bool, head: bool) -> Done {
    let body = crest::error_body(status, message);
    let mut out = Vec::with_capacity(body.len() + 160);
    status_line(&mut out, status.as_u16(), status.canonical_reason().unwrap_or(""));
    out.extend_from_slice(b"content-type: application/json\r\ncache-control: no-store\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    let sent = client.stream.write_all(&out).await.is_ok();
    Done {
        status,
        bytes: if sent && !head { body.len() as u64 } else { 0 },
        complete: sent,
        next: if sent && !close { Next::KeepAlive } else { Next::Close },
    }
}

fn status_line(out: &mut Vec<u8>, code: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    // Status codes are three digits (httparse and `StatusCode` both guarantee it).
    out.extend_from_slice(&[
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Forwards to `pool`, retrying once on another node when the error allows it (SPEC 4.5). `Err` means
/// nothing was written to the client yet.
async fn to_pool(
    snap: &Snapshot,
    pool: &Pool,
    req: &Request,
    client: &mut Client,
    close: bool,
    trace: &mut Trace,
    clock: &mut Clock<'_>,
) -> Result<Done, ProxyError> {
    let cfg = &snap.config.proxy;
    let settings = ConnSettings {
        connect_timeout: cfg.connect_timeout,
        idle_timeout: cfg.pool_idle_timeout,
        max_idle: cfg.pool_max_idle_per_backend,
    };
    let idempotent = idempotent(&req.method);
    let mut failover = Failover::default();
    loop {
        let choice = failover.choose(pool, trace)?;
        let backend = &pool.backends[choice.index];
        let guard = backend.state.begin();
        let args = AnswerArgs {
            cookie_name: pool.affinity.cookie.as_bytes(),
            // Plain text only here: the value without `Secure` (unless the pool asks for it).
            cookie: cookie_to_set(pool, choice.index, &trace.hints, false),
            close,
            head_only: req.method == Method::HEAD,
        };
        // Connect, send and the answer's head within the response timeout, as on the general path.
        clock.set(Instant::now() + cfg.response_timeout);
        let sent = before(clock, send(backend, &req.forward, &settings, idempotent, &args)).await;
        let timeout_ms = cfg.response_timeout.as_millis();
        match sent.unwrap_or_else(|| Err(ProxyError::Timeout { backend: backend.id.clone(), timeout_ms })) {
            Ok((mut upstream, answer)) => {
                served(pool, choice);
                let (status, close_client, reusable) = (answer.status, answer.close_client, answer.reusable);
                let relayed = relay(&mut client.stream, &mut upstream, answer).await;
                if relayed.upstream_clean && reusable {
                    backend.conns.put_stream(upstream, &settings);
                }
                drop(guard);
                let keep = relayed.complete && !close_client;
                return Ok(Done {
                    status,
                    bytes: relayed.bytes,
                    complete: relayed.complete,
                    next: if keep { Next::KeepAlive } else { Next::Close },
                });
            }
            // A request without a body can always be sent again; the error decides whether it may.
            Err(err) => failover.failed(pool, choice, err, true, idempotent, trace)?,
        }
    }
}

/// Sends the head on a pooled connection (a fresh one if a pooled one turns out closed) and reads the
/// answer's head.
async fn send(
    backend: &Backend,
    head: &[u8],
    settings: &ConnSettings,
    idempotent: bool,
    args: &AnswerArgs<'_>,
) -> Result<(TcpStream, ResponseHead), ProxyError> {
    let upstream = |reason: String| ProxyError::Upstream { backend: backend.id.clone(), reason };
    let mut fresh = false;
    loop {
        let (mut stream, reused) =
            backend.conns.checkout_stream(settings, fresh).await.map_err(|e| match e {
                SendError::Connect(reason) => ProxyError::Connect { backend: backend.id.clone(), reason },
                SendError::Upstream(e) => upstream(e.to_string()),
            })?;
        if let Err(e) = stream.write_all(head).await {
            if reused {
                // The node closed it while it was idle: nothing of this request reached it.
                fresh = true;
                continue;
            }
            let reason =
                format!("connection to {} failed before the request was sent: {e}", backend.authority);
            return Err(ProxyError::Connect { backend: backend.id.clone(), reason });
        }
        match read_answer(&mut stream, args).await {
            Ok(answer) => return Ok((stream, answer)),
            // A pooled connection the node closed just as the request went out (the keep-alive race of
            // RFC 9112 §9.3.1): an idempotent request goes again on a fresh connection.
            Err(AnswerError::Closed) if reused && idempotent => fresh = true,
            Err(e) => return Err(upstream(e.to_string())),
        }
    }
}

/// Why a node's answer could not be read.
#[derive(Debug, thiserror::Error)]
enum AnswerError {
    #[error("connection closed before any answer")]
    Closed,
    #[error("connection closed in the middle of the response head")]
    Truncated,
    #[error("reading the answer: {0}")]
    Io(io::Error),
    #[error("malformed response head: {0}")]
    Malformed(String),
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes")]
    TooLarge,
    #[error(transparent)]
    Framing(#[from] FramingError),
}

/// Reads the answer's head (skipping interim ones) with the body bytes that came with it. Reads land
/// in the scratch buffer; only a head that arrives in pieces is gathered in a buffer of its own.
async fn read_answer(stream: &mut TcpStream, args: &AnswerArgs<'_>) -> Result<ResponseHead, AnswerError> {
    let mut pending = BytesMut::new();
    let mut received = false;
    loop {
        let step = read_scratch(stream, |bytes| {
            let (skip, head) = if pending.is_empty() {
                let (skip, head) = take_head(bytes, args)?;
                if head.is_none() {
                    pending.extend_from_slice(&bytes[skip..]);
                }
                (0, head)
            } else {
                pending.extend_from_slice(bytes);
                take_head(&pending, args)?
            };
            pending.advance(skip);
            if head.is_none() && pending.len() >= MAX_RESPONSE_HEAD {
                return Err(AnswerError::TooLarge);
            }
            Ok(head)
        })
        .await;
        match step {
            Ok(Some(Ok(Some(head)))) => return Ok(head),
            Ok(Some(Ok(None))) => received = true,
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) if !received => return Err(AnswerError::Closed),
            Ok(None) => return Err(AnswerError::Truncated),
            Err(e) if !received && e.kind() == ErrorKind::ConnectionReset => return Err(AnswerError::Closed),
            Err(e) => return Err(AnswerError::Io(e)),
        }
    }
}

/// Parses the heads at the start of `data`, skipping interim ones, and adds the body bytes that follow
/// the final head to the head for the client (they go out in one write). `(n, None)`: no final head
/// yet, and the first `n` bytes (interim heads) are done with.
fn take_head(data: &[u8], args: &AnswerArgs<'_>) -> Result<(usize, Option<ResponseHead>), AnswerError> {
    let mut at = 0;
    loop {
        match ResponseHead::parse(&data[at..], args)? {
            // `100 Continue`, `103 Early Hints`: not forwarded, as hyper's client does not.
            ParsedResponse::Informational(len) => at += len,
            ParsedResponse::Partial => return Ok((at, None)),
            ParsedResponse::Head(mut head) => {
                let rest = &data[at + head.head_len..];
                let n = head.framing.take(rest)?;
                head.head.extend_from_slice(&rest[..n]);
                head.first_body = n as u64;
                head.overrun = n < rest.len();
                return Ok((data.len(), Some(head)));
            }
        }
    }
}

/// How the relay of one body went.
struct Relayed {
    /// Body bytes written to the client.
    bytes: u64,
    /// The whole body reached the client.
    complete: bool,
    /// The node's connection ended exactly at the end of the body.
    upstream_clean: bool,
}

/// Writes the response head with the body bytes that came with it, then relays the rest of the body as
/// it arrives, one bounded read at a time.
async fn relay(client: &mut TcpStream, upstream: &mut TcpStream, answer: ResponseHead) -> Relayed {
    let ResponseHead { head, mut framing, first_body, overrun, .. } = answer;
    let mut r = Relayed { bytes: 0, complete: false, upstream_clean: false };
    if client.write_all(&head).await.is_err() {
        return r;
    }
    drop(head);
    r.bytes = first_body;
    if framing.done() {
        r.complete = true;
        r.upstream_clean = !overrun;
        return r;
    }
    let mut buf = BytesMut::with_capacity(BODY_READ);
    loop {
        buf.clear();
        match upstream.read_buf(&mut buf).await {
            // Only a body delimited by the close ends like this.
            Ok(0) => {
                r.complete = framing == Framing::UntilClose;
                return r;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "reading the response body failed");
                return r;
            }
        }
        let n = match framing.take(&buf) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "response body cut short");
                return r;
            }
        };
        if client.write_all(&buf[..n]).await.is_err() {
            return r;
        }
        r.bytes += n as u64;
        if framing.done() {
            r.complete = true;
            r.upstream_clean = n == buf.len();
            return r;
        }
    }
}

/// The request side of the fast path alone, for the `hot_path` benchmark: parses `head`, routes it,
/// reads the pool's hints and renders the head the node would get. `None` when the fast path would
/// hand the request to hyper (or needs more bytes).
pub fn forwarded_request(snap: &Snapshot, head: &[u8], client: IpAddr) -> Option<Vec<u8>> {
    match Request::parse(snap, head, client, false) {
        Parse::Ready(req) => Some(req.forward),
        Parse::Partial | Parse::Handoff => None,
    }
}

/// What the fast path made of one request head.
enum Parse {
    Ready(Request),
    Partial,
    Handoff,
}

/// A request head, decided: everything later steps need, owned, so the read buffer is free again.
struct Request {
    /// Bytes of the head in the read buffer.
    head_len: usize,
    method: Method,
    /// The route's action; `None` when no route matched.
    action: Option<RouteAction>,
    /// The pool's hints, when a pool serves it.
    hints: Hints,
    /// The head to send to the node.
    forward: Vec<u8>,
    /// The client asked to close after this exchange.
    close: bool,
    /// For the access line, when it is wanted.
    path: Option<String>,
}

impl Request {
    fn parse(snap: &Snapshot, buf: &[u8], ip: IpAddr, log: bool) -> Parse {
        if buf.is_empty() {
            return Parse::Partial;
        }
        // Uninitialised: the parser writes the fields it finds (no 2 KiB of zeroes per request).
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut []);
        let head_len = match req.parse_with_uninit_headers(buf, &mut fields) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parse::Partial,
            Err(_) => return Parse::Handoff,
        };
        let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
            return Parse::Handoff;
        };
        let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Parse::Handoff };
        if !target.starts_with('/') {
            return Parse::Handoff;
        }
        let fields: &[httparse::Header<'_>] = req.headers;
        let mut host = None;
        let mut connection = Tokens::default();
        for f in fields {
            let name = f.name.as_bytes();
            if name.eq_ignore_ascii_case(b"host") {
                if host.replace(f.value).is_some() {
                    return Parse::Handoff;
                }
            } else if name.eq_ignore_ascii_case(b"content-length") {
                if f.value.trim_ascii() != b"0" {
                    return Parse::Handoff;
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding")
                || name.eq_ignore_ascii_case(b"expect")
                || name.eq_ignore_ascii_case(b"upgrade")
            {
                return Parse::Handoff;
            } else if name.eq_ignore_ascii_case(b"connection") {
                connection.add(f.value);
            }
        }
        let Some(host) = host.and_then(|h| std::str::from_utf8(h).ok()) else { return Parse::Handoff };
        let host = route::strip_port(host);
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let action = route::find_by(&snap.config.routes, &method, path, Some(host)).cloned();
        let hints = match action {
            Some(RouteAction::Pool(i)) => sticky::read(&snap.upstreams.pools[i], fields, query, None),
            _ => Hints::default(),
        };
        let forward = forwarded_head(&method, target, fields, &connection, ip, host);
        Parse::Ready(Request {
            head_len,
            method,
            action,
            hints,
            forward,
            close: connection.close,
            path: log.then(|| path.to_owned()),
        })
    }
}

/// The request head as the node gets it: hop-by-hop fields removed (RFC 9110 §7.6.1), earlier
/// `X-Forwarded-For` values folded into one field ending with the client, `X-Forwarded-Proto` and
/// `X-Forwarded-Host` replaced: the same policy as [`super::headers`] on the general path.
fn forwarded_head(
    method: &Method,
    target: &str,
    fields: &[httparse::Header<'_>],
    connection: &Tokens<'_>,
    ip: IpAddr,
    host: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut earlier_xff = false;
    for f in fields {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            earlier_xff = true;
            continue;
        }
        if headers::is_hop_by_hop(name)
            || connection.lists(name)
            || name.eq_ignore_ascii_case(b"x-forwarded-proto")
            || name.eq_ignore_ascii_case(b"x-forwarded-host")
        {
            continue;
        }
        field(&mut out, name, f.value);
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if earlier_xff {
        for f in fields.iter().filter(|f| f.name.eq_ignore_ascii_case("x-forwarded-for")) {
            out.extend_from_slice(f.value);
            out.extend_from_slice(b", ");
        }
    }
    push_ip(&mut out, ip);
    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\n");
    field(&mut out, b"x-forwarded-host", host.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The tokens of `Connection` fields: `close`, and the field names listed as hop-by-hop.
#[derive(Debug, Default)]
struct Tokens<'a> {
    close: bool,
    listed: Vec<&'a [u8]>,
}

impl<'a> Tokens<'a> {
    fn add(&mut self, value: &'a [u8]) {
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                self.listed.push(token);
            }
        }
    }

    fn lists(&self, name: &[u8]) -> bool {
        self.listed.iter().any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// What the response head needs from the request side.
struct AnswerArgs<'a> {
    /// The affinity cookie's name, to see whether the node sets it itself.
    cookie_name: &'a [u8],
    /// The `Set-Cookie` value to add unless the node sets the cookie itself.
    cookie: Option<&'a HeaderValue>,
    /// The client connection closes after this exchange.
    close: bool,
    /// The request was `HEAD`: the answer has no body whatever its fields say.
    head_only: bool,
}

enum ParsedResponse {
    Head(ResponseHead),
    Informational(usize),
    Partial,
}

/// A node's response head, decided.
struct ResponseHead {
    head_len: usize,
    status: StatusCode,
    framing: Framing,
    /// The node's connection may take another request once the body is read.
    reusable: bool,
    /// The client's connection must close after this response.
    close_client: bool,
    /// The head to write to the client, then the body bytes that came with it.
    head: Vec<u8>,
    /// How many body bytes `head` carries.
    first_body: u64,
    /// The node sent more than the body it framed: its connection cannot be reused.
    overrun: bool,
}

impl ResponseHead {
    fn parse(buf: &[u8], args: &AnswerArgs<'_>) -> Result<ParsedResponse, AnswerError> {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_FIELDS];
        let mut resp = httparse::Response::new(&mut []);
        let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(ParsedResponse::Partial),
            Err(e) => return Err(AnswerError::Malformed(e.to_string())),
        };
        let code = resp.code.unwrap_or(0);
        if code == 101 {
            return Err(AnswerError::Malformed("101 Switching Protocols without an upgrade asked".into()));
        }
        if (100..200).contains(&code) {
            return Ok(ParsedResponse::Informational(head_len));
        }
        let status = StatusCode::from_u16(code).map_err(|e| AnswerError::Malformed(e.to_string()))?;
        let fields: &[httparse::Header<'_>] = resp.headers;
        // RFC 9112 §6.3: Transfer-Encoding first, then Content-Length, else the body runs to the close.
        let mut chunked = None;
        let mut length: Option<u64> = None;
        let mut connection = Tokens::default();
        let mut sets_cookie = false;
        for f in fields {
            let name = f.name.as_bytes();
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                let last = f.value.rsplit(|&b| b == b',').next().unwrap_or_default().trim_ascii();
                chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case(b"content-length") {
                let n = std::str::from_utf8(f.value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| AnswerError::Malformed("invalid Content-Length".into()))?;
                if length.replace(n).is_some_and(|m| m != n) {
                    return Err(AnswerError::Malformed("conflicting Content-Length fields".into()));
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                connection.add(f.value);
            } else if args.cookie.is_some() && name.eq_ignore_ascii_case(b"set-cookie") {
                sets_cookie |= headers::sets_cookie_named(f.value, args.cookie_name);
            }
        }
        let framing = if args.head_only || code == 204 || code == 304 {
            Framing::Empty
        } else {
            match (chunked, length) {
                (Some(true), _) => Framing::Chunked(Chunked::default()),
                (Some(false), _) | (None, None) => Framing::UntilClose,
                (None, Some(0)) => Framing::Empty,
                (None, Some(n)) => Framing::Length(n),
            }
        };
        // Both framings at once is a smuggling shape: relay by Transfer-Encoding, then close (§6.1).
        let reusable = resp.version == Some(1)
            && !connection.close
            && !(chunked.is_some() && length.is_some())
            && framing != Framing::UntilClose;
        let close_client = args.close || framing == Framing::UntilClose;
        let mut head = Vec::with_capacity(head_len + 128);
        status_line(&mut head, code, resp.reason.unwrap_or(""));
        for f in fields {
            let name = f.name.as_bytes();
            // The framing fields are relayed as they came (the body is, with its framing).
            let framing_field = name.eq_ignore_ascii_case(b"transfer-encoding");
            if (headers::is_hop_by_hop(name) && !framing_field)
                || connection.lists(name)
                || (chunked.is_some() && name.eq_ignore_ascii_case(b"content-length"))
            {
                continue;
            }
            field(&mut head, name, f.value);
        }
        if let Some(cookie) = args.cookie.filter(|_| !sets_cookie) {
            field(&mut head, b"set-cookie", cookie.as_bytes());
        }
        if close_client {
            head.extend_from_slice(b"connection: close\r\n");
        }
        head.extend_from_slice(b"\r\n");
        Ok(ParsedResponse::Head(ResponseHead {
            head_len,
            status,
            framing,
            reusable,
            close_client,
            head,
            first_body: 0,
            overrun: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The task of an idle connection is mostly this future, and tokio aligns task cells to 128 bytes:
    /// in the idle benchmark, growing it from 384 to 424 bytes (sizes as the test profile builds it)
    /// cost 190 bytes more RSS per connection (1 247 → 1 443; HAProxy ~1 500). Growing it past 384
    /// needs a new idle measurement (`bench/run.sh`, `IDLE_CONNS`).
    #[tokio::test]
    async fn an_idle_connection_task_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let config = crate::config::parse(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[[pool]]\nname = \"a\"\n\
             [[pool.backend]]\nid = \"01\"\nurl = \"http://127.0.0.1:1\"\n[[route]]\npool = \"a\"\n",
        )
        .unwrap();
        let proxy = Arc::new(Proxy::new(Arc::new(config), Arc::default()));
        let ctx = PlainContext {
            header_timeout: std::time::Duration::from_secs(1),
            shutdown: CancellationToken::new(),
        };
        let connection = serve(proxy, stream, addr, ctx);
        let size = std::mem::size_of_val(&connection);
        assert!(size <= 384, "the fast path's connection future is {size} bytes");
    }

    #[test]
    fn client_addresses_render_as_std_does() {
        for ip in ["0.0.0.0", "9.10.99.100", "255.255.255.255", "127.0.0.1", "::1", "2001:db8::8a2e:370:7334"]
        {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }
}
