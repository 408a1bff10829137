//! The HTTP/1.1 fast path of the public listener.
//!
//! Most proxied traffic is keep-alive HTTP/1.1: pages and assets, every `GET` of a REST client,
//! `sessions?_action=validate` with the token in a header, and the JSON POST of every login step, over
//! plain text or TLS ([`ClientStream`]: rustls underneath, the same code above). hyper's server and
//! client are general machinery (a `HeaderMap` built and copied per message, a task per upstream
//! connection, boxed bodies, buffers kept per idle connection) and were most of tether's CPU per request
//! and all of its memory per idle connection (`bench/RESULTS.md`). On an HTTP/1.1 connection this module
//! reads the request head itself with `httparse` (the parser inside hyper), decides with the same functions
//! as hyper's path (route, hints, node choice, failover, metrics, access line), writes the forwarded head
//! (with a small JSON body read with it) in one buffer to a pooled node connection, relays a larger body,
//! parses the answer, and relays its body with the framing it came with. Between requests it holds no
//! buffer of its own (TLS keeps rustls's). Anything else hands the connection, with the bytes already
//! read, to hyper ([`Handoff`]), which serves it from then on exactly as it serves HTTP/2.
//!
//! One request: read head → `request` (hand-off or not, route, hints, forwarded head) → `exchange`
//! (choose node, pooled stream, write head, read and decide the answer's head with `response`, write
//! head and first body bytes in one write, relay the rest with [`framing`]) → connection back to the
//! pool, metrics, access line.
//!
//! - this file: the connection loop, idle waiting, reading into the thread's scratch buffer, one request;
//!   a TLS connection ends with its `close_notify`;
//! - `deadline`: the connection's one timer, re-armed lazily;
//! - `request`: the request head, pure, with byte-level tests;
//! - `response`: the node's response head and the fast path's own answers, pure, with byte-level tests;
//! - [`framing`]: where a response body ends (RFC 9112 §6.3);
//! - `exchange`: the exchange with a node and the body relay.

mod deadline;
mod exchange;
pub mod framing;
mod request;
mod response;

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, BytesMut};
use http::{Method, StatusCode};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::deadline::{Deadline, before};
pub use self::request::{Decision, MAX_HEAD, decide, forwarded_request};
use self::request::{Parse, Request, Upload};
use super::error::CLIENT_CLOSED;
use super::failover::Trace;
use super::{NOT_SERVED, Proxy, ProxyError};
use crate::config::RouteAction;
use crate::server::{Addresses, ClientStream, ConnContext, Handoff};

/// The per-thread buffer heads are read into ([`read_scratch`]).
const SCRATCH_SIZE: usize = 16 * 1024;

/// Serves an HTTP/1.1 client connection until it closes, or until a request needs hyper.
pub fn serve(
    proxy: Arc<Proxy>,
    start: Handoff,
    addrs: Addresses,
    ctx: ConnContext,
) -> impl Future<Output = Option<Handoff>> + Send {
    // What followed a PROXY protocol header, if anything, is the start of the first request.
    let buf = if start.read.is_empty() { BytesMut::new() } else { BytesMut::from(start.read) };
    let mut conn = Connection { proxy, client: Client { stream: start.stream, buf }, addrs, ctx };
    // A block rather than an `async fn`, whose argument would be stored twice in the task (once as the
    // argument, once as the moved local): the task of an idle connection is mostly this future.
    async move {
        // One timer and one shutdown waiter for the connection's life, neither re-created per request.
        let sleep = pin!(tokio::time::sleep(conn.ctx.header_timeout));
        let mut deadline = Deadline::new(sleep);
        let mut waiter = pin!(conn.ctx.shutdown.cancelled());
        // Polled once, so it holds the task's waker (which never changes); from then on the token's own
        // flag says whether it fired, cheaper than polling the waiter again.
        if std::future::poll_fn(|cx| Poll::Ready(waiter.as_mut().poll(cx).is_ready())).await {
            Box::pin(conn.client.stream.close()).await;
            return None;
        }
        loop {
            // hyper's rule, kept: the head must be complete within the header timeout of the moment the
            // connection starts waiting for it, so an idle keep-alive connection closes after that long.
            deadline.set(Instant::now() + conn.ctx.header_timeout);
            if conn.client.buf.is_empty() {
                // Idle: hold no buffer while waiting (HAProxy does the same), so ten thousand idle
                // connections cost ten thousand small tasks and nothing more. (Heads are read into the
                // thread's scratch buffer; this one only ever held a partial head or a pipelined rest.)
                conn.client.buf = BytesMut::new();
                match idle(&mut conn.client.stream, &mut deadline, &conn.ctx.shutdown).await {
                    Woke::Readable => {}
                    Woke::Shutdown | Woke::TimedOut => break,
                }
            }
            // Boxed, so the task of an idle connection is only as large as this loop.
            let one =
                one_request(&conn.proxy, &mut conn.client, conn.addrs, &mut deadline, &conn.ctx.shutdown);
            match Box::pin(one).await {
                Next::KeepAlive => {}
                Next::Close => break,
                Next::Handoff => {
                    let Client { stream, buf } = conn.client;
                    return Some(Handoff { stream, read: buf.freeze() });
                }
            }
        }
        Box::pin(conn.client.stream.close()).await;
        None
    }
}

/// Everything the task of one fast-path connection holds between requests.
struct Connection {
    proxy: Arc<Proxy>,
    client: Client,
    addrs: Addresses,
    ctx: ConnContext,
}

/// Why an idle connection woke up.
enum Woke {
    Readable,
    Shutdown,
    TimedOut,
}

/// Waits for the next request, the shutdown or the header deadline. Polls the socket's own readiness
/// (its waker slot, no waiter of its own), so waiting adds nothing to the task.
fn idle<'a>(
    stream: &'a mut ClientStream,
    deadline: &'a mut Deadline<'_>,
    shutdown: &'a CancellationToken,
) -> impl Future<Output = Woke> + 'a {
    std::future::poll_fn(move |cx| {
        if stream.poll_idle(cx).is_ready() {
            return Poll::Ready(Woke::Readable);
        }
        if shutdown.is_cancelled() {
            return Poll::Ready(Woke::Shutdown);
        }
        if deadline.poll_expired(cx).is_ready() {
            return Poll::Ready(Woke::TimedOut);
        }
        Poll::Pending
    })
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
fn read_scratch<'a, S: AsyncRead + Unpin, R>(
    stream: &'a mut S,
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

/// The client side of a connection: the socket and what was read from it but not yet used.
struct Client {
    stream: ClientStream,
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

/// Reads one request head, answers it (from a node, or itself), counts and logs it.
async fn one_request(
    proxy: &Proxy,
    client: &mut Client,
    addrs: Addresses,
    deadline: &mut Deadline<'_>,
    shutdown: &CancellationToken,
) -> Next {
    let snap = proxy.snapshot();
    let log = tracing::enabled!(target: "tether::access", tracing::Level::INFO);
    let tls = client.stream.tls_version();
    // The head is complete and the small JSON body read with it is not: a client that stops here gets
    // 408, as on hyper's path.
    let mut peeking = false;
    let req = loop {
        if !client.buf.is_empty() {
            match Request::parse(&snap, &client.buf, addrs, tls, log) {
                Parse::Ready(req) => {
                    client.buf.advance(req.head_len);
                    break req;
                }
                Parse::Handoff => return Next::Handoff,
                // The small JSON body read with the head: at most `PEEK_LIMIT` bytes past a head that
                // fit in `MAX_HEAD`.
                Parse::Peeking => peeking = true,
                Parse::Partial if client.buf.len() < MAX_HEAD => {}
                Parse::Partial => return Next::Handoff,
            }
        }
        let Client { stream, buf } = &mut *client;
        let read = read_scratch(stream, |bytes| {
            if buf.is_empty()
                && let Parse::Ready(req) = Request::parse(&snap, bytes, addrs, tls, log)
            {
                // The usual case: a whole head in one read, used where it landed; only what follows
                // it (a pipelined request) is kept.
                buf.extend_from_slice(&bytes[req.head_len..]);
                return Some(req);
            }
            buf.extend_from_slice(bytes);
            None
        });
        match before(deadline, read).await {
            Some(Ok(Some(Some(req)))) => break req,
            Some(Ok(Some(None))) => {}
            None if peeking => {
                let status = ProxyError::ClientTimeout.status();
                let message = ProxyError::ClientTimeout.to_string();
                let send = (deadline, snap.config.proxy.client_send_timeout);
                let answer = Answer(status, message, None);
                return synthetic(&mut client.stream, &answer, (true, false), send).await.next;
            }
            // Closed, failed or too slow: as with hyper, the connection just ends.
            _ => return Next::Close,
        }
    };
    let started = Instant::now();
    let mut close = req.close || shutdown.is_cancelled();
    let mut trace = Trace { hints: req.hints, ..Trace::default() };
    let (result, pool) = match (req.refused, req.action.clone()) {
        (Some(reason), _) => (Err(Answer(StatusCode::BAD_REQUEST, reason.to_owned(), None)), None),
        (None, None) => (Err(Answer::from(ProxyError::NoRoute)), None),
        (None, Some(RouteAction::Status(status))) => (Err(Answer(status, NOT_SERVED.to_owned(), None)), None),
        (None, Some(RouteAction::Pool(i))) => {
            let pool = &snap.upstreams.pools[i];
            let forwarded = exchange::to_pool(&snap, pool, &req, client, close, &mut trace, deadline).await;
            // A body relayed from the client may be partly read: the connection cannot carry another
            // request after a failed exchange.
            close |= forwarded.is_err() && req.upload != Upload::None;
            (forwarded.map_err(Answer::from), Some(pool))
        }
    };
    let done = match result {
        Ok(done) => done,
        // Nobody is left to answer.
        Err(Answer(status, ..)) if status == CLIENT_CLOSED => {
            Done { status, bytes: 0, complete: false, next: Next::Close }
        }
        Err(answer) => {
            tracing::debug!(status = answer.0.as_u16(), message = answer.1, "synthetic answer");
            let send = (deadline, snap.config.proxy.client_send_timeout);
            synthetic(&mut client.stream, &answer, (close, req.method == Method::HEAD), send).await
        }
    };
    if let Some(line) = proxy.record(pool, &trace, req.method, done.status, req.seen.map(|s| *s), started) {
        line.emit(done.bytes, done.complete);
    }
    done.next
}

/// A synthetic answer to write: status, message and `Retry-After` seconds.
struct Answer(StatusCode, String, Option<u32>);

impl From<ProxyError> for Answer {
    fn from(e: ProxyError) -> Self {
        Self(e.status(), e.to_string(), e.retry_after())
    }
}

/// Writes the fast path's own answer ([`response::synthetic`]), closing the connection after it when
/// `close` says so and leaving the body out for a `head` request, within the send timeout.
async fn synthetic(
    client: &mut ClientStream,
    &Answer(status, ref message, retry_after): &Answer,
    (close, head): (bool, bool),
    (deadline, send_timeout): (&mut Deadline<'_>, std::time::Duration),
) -> Done {
    let (out, body_len) = response::synthetic(status, message, retry_after, (close, head));
    let sent = exchange::send_client(client, &out, deadline, send_timeout).await;
    Done {
        status,
        bytes: if sent && !head { body_len as u64 } else { 0 },
        complete: sent,
        next: if sent && !close { Next::KeepAlive } else { Next::Close },
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
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let config = crate::config::parse(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[[pool]]\nname = \"a\"\n\
             [[pool.backend]]\nid = \"01\"\nurl = \"http://127.0.0.1:1\"\n[[route]]\npool = \"a\"\n",
        )
        .unwrap();
        let proxy = Arc::new(Proxy::new(Arc::new(config), Arc::default()));
        let ctx = ConnContext {
            header_timeout: std::time::Duration::from_secs(1),
            shutdown: CancellationToken::new(),
        };
        let start = Handoff { stream: ClientStream::Plain(stream), read: bytes::Bytes::new() };
        let connection = serve(proxy, start, Addresses::new(addr, 8080), ctx);
        let size = std::mem::size_of_val(&connection);
        assert!(size <= 384, "the fast path's connection future is {size} bytes");
    }
}
