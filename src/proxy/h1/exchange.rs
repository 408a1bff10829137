//! The exchange with a node on the fast path: a pooled connection (TCP, or TLS for `https://` nodes),
//! the forwarded head (with a small body read with it) written in one write, a streamed request body
//! relayed with its own framing, the answer's head read and decided ([`super::response`]), the answer's
//! body relayed with its own framing, and the shared failover rule ([`crate::proxy::failover`]) when a
//! node fails.

use std::io::ErrorKind;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::Method;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use super::deadline::{Deadline, before};
use super::framing::Framing;
use super::request::{Request, Upload};
use super::response::{AnswerArgs, AnswerError, MAX_RESPONSE_HEAD, ResponseHead, take_head};
use super::{Client, Done, Next, read_scratch};
use crate::config::BodyDeadline;
use crate::proxy::failover::{Failover, Trace, admit, idempotent, served};
use crate::proxy::{ProxyError, Snapshot};
use crate::server::{ClientStream, PIECE};
use crate::upstream::affinity;
use crate::upstream::conns::{ConnSettings, SendError};
use crate::upstream::stream::NodeStream;
use crate::upstream::{Backend, Pool};

/// Read size for body pieces: the most of a body in memory at once, per exchange, and what a client must
/// take within `client_send_timeout_ms` ([`PIECE`]).
const BODY_READ: usize = PIECE;

/// Forwards to `pool`, retrying once on another node when the error allows it. `Err` means nothing was
/// written to the client yet.
pub(super) async fn to_pool(
    snap: &Snapshot,
    pool: &Pool,
    req: &Request,
    client: &mut Client,
    close: bool,
    trace: &mut Trace,
    deadline: &mut Deadline<'_>,
) -> Result<Done, ProxyError> {
    let cfg = &snap.config.proxy;
    let settings = ConnSettings {
        connect_timeout: cfg.connect_timeout,
        idle_timeout: cfg.pool_idle_timeout,
        max_idle: cfg.pool_max_idle_per_backend,
    };
    let idempotent = idempotent(&req.method);
    let mut failover = Failover::default();
    // Set once the client's streamed body starts to be read: from then on the request cannot be sent
    // again (a small body read with the head can).
    let mut consumed = false;
    loop {
        let choice = failover.choose(pool, trace)?;
        let backend = &pool.backends[choice.index];
        // A client that gives up while its request waits for a `maxconn` slot leaves the queue at
        // once (HAProxy's `option abortonclose`), rather than holding its place until
        // `queue_timeout_ms` and then sending a node work nobody waits for.
        // Biased: a node with a free slot admits on the first poll, and the client is never looked at.
        let guard = tokio::select! {
            biased;
            admitted = admit(pool, backend) => admitted?,
            () = client.stream.hung_up() => {
                return Err(ProxyError::ClientGone { backend: backend.id.clone() });
            }
        };
        let args = AnswerArgs {
            cookie_name: pool.affinity.cookie.as_bytes(),
            // `Secure` over TLS (or when the pool asks for it).
            cookie: affinity::cookie_to_set(
                pool,
                choice.index,
                &trace.hints,
                client.stream.tls_version().is_some(),
            ),
            close,
            head_only: req.method == Method::HEAD,
        };
        let attempt = Attempt {
            backend,
            req,
            settings: &settings,
            idempotent,
            args: &args,
            response_timeout: cfg.response_timeout,
            body: cfg.request_body,
        };
        match send(attempt, client, &mut consumed, deadline).await {
            Ok((mut upstream, answer, early)) => {
                served(pool, choice);
                let (status, close_client, reusable) = (answer.status, answer.close_client, answer.reusable);
                let send_timeout = cfg.client_send_timeout;
                let relayed = relay(&mut client.stream, &mut upstream, answer, deadline, send_timeout).await;
                if relayed.upstream_clean && reusable {
                    backend.conns.put_stream(upstream, &settings);
                }
                drop(guard);
                if early {
                    linger(client).await;
                }
                let keep = relayed.complete && !close_client;
                return Ok(Done {
                    status,
                    bytes: relayed.bytes,
                    complete: relayed.complete,
                    next: if keep { Next::KeepAlive } else { Next::Close },
                });
            }
            // A request whose body was not streamed can always be sent again; the error decides whether
            // it may.
            Err(err) => failover.failed(pool, choice, err, !consumed, idempotent, trace)?,
        }
    }
}

/// One attempt's fixed parts.
struct Attempt<'a> {
    backend: &'a Backend,
    req: &'a Request,
    settings: &'a ConnSettings,
    idempotent: bool,
    args: &'a AnswerArgs<'a>,
    /// Time the node has for each of its parts: the connection and the head, each write of the body,
    /// the answer's head once the request is sent.
    response_timeout: Duration,
    /// Time the client has for the body.
    body: BodyDeadline,
}

/// The node's stream, its answer's head, and whether the node answered before the body ended.
type Sent = (NodeStream, ResponseHead, bool);

/// Sends the head on a pooled connection (a fresh one if a pooled one turns out closed), relays a
/// streamed body from `client` (setting `consumed`), and reads the answer's head. The node's parts run
/// within the response timeout, the client's body within its own deadline, so a slow client is
/// answered 408 and a slow node 504, each blamed for its own time.
async fn send(
    attempt: Attempt<'_>,
    client: &mut Client,
    consumed: &mut bool,
    deadline: &mut Deadline<'_>,
) -> Result<Sent, ProxyError> {
    let Attempt { backend, req, settings, idempotent, args, response_timeout, body } = attempt;
    let head = &req.forward;
    let upstream = |reason: String| ProxyError::Upstream { backend: backend.id.clone(), reason };
    let timed_out =
        || ProxyError::Timeout { backend: backend.id.clone(), timeout_ms: response_timeout.as_millis() };
    let mut fresh = false;
    // Connect, send and (without a streamed body) the answer's head within the response timeout, as on
    // hyper's path.
    deadline.set(Instant::now() + response_timeout);
    loop {
        let checkout = before(deadline, backend.conns.checkout_stream(settings, fresh)).await;
        let (mut stream, reused) = checkout.ok_or_else(timed_out)?.map_err(|e| match e {
            SendError::Connect(reason) => ProxyError::Connect { backend: backend.id.clone(), reason },
            SendError::Upstream(e) => upstream(e.to_string()),
        })?;
        // TLS holds the records it made in its session until flushed; flushing plain TCP does nothing.
        let write = async {
            stream.write_all(head).await?;
            stream.flush().await
        };
        let written = before(deadline, write).await.ok_or_else(timed_out)?;
        if let Err(e) = written {
            if reused {
                // The node closed it while it was idle: nothing of this request reached it.
                fresh = true;
                continue;
            }
            let reason =
                format!("connection to {} failed before the request was sent: {e}", backend.authority);
            return Err(ProxyError::Connect { backend: backend.id.clone(), reason });
        }
        if req.upload != Upload::None {
            *consumed = true;
            let bounds = UploadBounds { body, node: response_timeout };
            let uploaded = upload(client, &mut stream, req.upload, deadline, bounds).await;
            // The request is sent, or the node spoke first: the node's time for its answer starts now.
            deadline.set(Instant::now() + response_timeout);
            // A node may answer before it has read the body (a 401, a 413): its answer is relayed,
            // with both connections closed after it, since neither can carry another request with the
            // rest of the body unread.
            let early = AnswerArgs { close: true, ..*args };
            match uploaded {
                Ok(None) => {}
                Ok(Some(first)) => {
                    let answer = before(deadline, early_answer(stream, &early, first)).await;
                    return answer.ok_or_else(timed_out)?.map_err(upstream);
                }
                Err(UploadError::Node(e)) => {
                    // Its answer may still be there to read, before the reset.
                    let failed = format!("sending the request body failed: {e}");
                    let answer = before(deadline, early_answer(stream, &early, BytesMut::new())).await;
                    return answer.ok_or_else(timed_out)?.map_err(|_| upstream(failed));
                }
                Err(UploadError::NodeSlow) => return Err(timed_out()),
                Err(UploadError::Client(reason)) => return Err(ProxyError::BadRequest(reason)),
                Err(UploadError::ClientSlow) => return Err(ProxyError::ClientTimeout),
            }
        }
        match before(deadline, read_answer(&mut stream, args, BytesMut::new())).await.ok_or_else(timed_out)? {
            Ok(answer) => return Ok((stream, answer, false)),
            // A pooled connection the node closed just as the request went out (the keep-alive race of
            // RFC 9112 §9.3.1): an idempotent request goes again on a fresh connection.
            Err(AnswerError::Closed) if reused && idempotent && !*consumed => fresh = true,
            Err(e) => return Err(upstream(e.to_string())),
        }
    }
}

/// The answer of a node that spoke before the request body ended (`first`: what it sent so far): relayed
/// with `Connection: close`, and its connection not pooled again.
async fn early_answer(
    mut stream: NodeStream,
    args: &AnswerArgs<'_>,
    first: BytesMut,
) -> Result<Sent, String> {
    let mut answer = read_answer(&mut stream, args, first).await.map_err(|e| e.to_string())?;
    answer.reusable = false;
    answer.close_client = true;
    Ok((stream, answer, true))
}

/// How long a client whose body was cut short by an early answer may go on sending before its
/// connection closes.
const LINGER: Duration = Duration::from_secs(2);

/// Closes the client's sending side after an early answer, then reads and drops what it still sends,
/// for at most [`LINGER`]: closing a socket with unread input resets the connection, and the reset can
/// destroy the answer before the client has read it (RFC 9112 §9.6; nginx's `lingering_close`).
async fn linger(client: &mut Client) {
    client.buf.clear();
    let drain = async {
        if client.stream.shutdown().await.is_err() {
            return;
        }
        let mut sink = vec![0u8; BODY_READ];
        while let Ok(n) = client.stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Why a streamed request body did not reach the node.
enum UploadError {
    /// The client's side: the body ended early, failed to read, or is not framed as it says; the
    /// message of the 400 answer.
    Client(String),
    /// The client sent the body slower than `request_body_timeout_ms` and `request_body_min_rate` allow.
    ClientSlow,
    /// Writing to the node failed.
    Node(std::io::Error),
    /// The node took no part of the body within the response timeout.
    NodeSlow,
}

/// The deadlines of an upload: the client's for the body, the node's for each write.
struct UploadBounds {
    body: BodyDeadline,
    node: Duration,
}

/// Relays a request body from the client to the node with the framing it came with: first what was
/// read with the head, then one bounded read at a time. What follows the body (a pipelined request)
/// stays in the client's buffer. The node is watched all along: `Some(bytes)` when it sent something
/// before the whole body went (its answer, most likely), which ends the relay. While the client is
/// waited for, the body's deadline applies (it moves later as bytes arrive); while the node is, its
/// timeout from the last piece it took.
async fn upload(
    client: &mut Client,
    node: &mut NodeStream,
    body: Upload,
    deadline: &mut Deadline<'_>,
    bounds: UploadBounds,
) -> Result<Option<BytesMut>, UploadError> {
    let started = Instant::now();
    let mut framing = body.framing();
    let malformed = |e: super::framing::FramingError| UploadError::Client(format!("{e} in the request"));
    let n = framing.take(&client.buf).map_err(malformed)?;
    let mut received = n as u64;
    // Body bytes read from the client and not yet written to the node.
    let mut out = BytesMut::from(&client.buf[..n]);
    client.buf.advance(n);
    // Since when the node has been waited for: the last piece it took.
    let mut node_since = started;
    std::future::poll_fn(|cx| {
        loop {
            let sent = out.is_empty() && framing.done();
            if !sent {
                let mut peek = [0u8; 512];
                let mut read = ReadBuf::new(&mut peek);
                match Pin::new(&mut *node).poll_read(cx, &mut read) {
                    Poll::Ready(Ok(())) if read.filled().is_empty() => {
                        let closed = std::io::Error::new(ErrorKind::UnexpectedEof, "the node closed");
                        return Poll::Ready(Err(UploadError::Node(closed)));
                    }
                    Poll::Ready(Ok(())) => return Poll::Ready(Ok(Some(BytesMut::from(read.filled())))),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(UploadError::Node(e))),
                    Poll::Pending => {}
                }
            }
            // Waiting on the node: its timeout runs from the last piece it took.
            let mut node_slow = |cx: &mut std::task::Context<'_>, since: Instant| {
                deadline.set(since + bounds.node);
                deadline.poll_expired(cx).map(|()| Err(UploadError::NodeSlow))
            };
            if sent {
                return match Pin::new(&mut *node).poll_flush(cx) {
                    Poll::Ready(r) => Poll::Ready(r.map(|()| None).map_err(UploadError::Node)),
                    Poll::Pending => node_slow(cx, node_since),
                };
            }
            if !out.is_empty() {
                match Pin::new(&mut *node).poll_write(cx, &out) {
                    Poll::Ready(Ok(0)) => {
                        let closed = std::io::Error::new(ErrorKind::WriteZero, "the node closed");
                        return Poll::Ready(Err(UploadError::Node(closed)));
                    }
                    Poll::Ready(Ok(n)) => {
                        out.advance(n);
                        node_since = Instant::now();
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(UploadError::Node(e))),
                    Poll::Pending => return node_slow(cx, node_since),
                }
            }
            let mut piece = [0u8; BODY_READ];
            let mut read = ReadBuf::new(&mut piece);
            match Pin::new(&mut client.stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    return Poll::Ready(Err(UploadError::Client("the request body ended early".to_owned())));
                }
                Poll::Ready(Ok(())) => {
                    let got = read.filled();
                    let n = framing.take(got).map_err(malformed)?;
                    received += n as u64;
                    out.extend_from_slice(&got[..n]);
                    client.buf.extend_from_slice(&got[n..]);
                    node_since = Instant::now();
                }
                Poll::Ready(Err(e)) => {
                    let reason = format!("reading the request body failed: {e}");
                    return Poll::Ready(Err(UploadError::Client(reason)));
                }
                Poll::Pending => {
                    deadline.set(started + bounds.body.allowed(received));
                    return deadline.poll_expired(cx).map(|()| Err(UploadError::ClientSlow));
                }
            }
        }
    })
    .await
}

/// Writes `bytes` to the client within `timeout` (`client_send_timeout_ms`): a client that does not
/// read its answer (a slow reader) loses the connection instead of holding it. Each write is at most
/// one body piece and a head, so this asks for at least 16 KiB per timeout, as hyper's path does
/// ([`crate::server::SendDeadline`]).
pub(super) async fn send_client(
    client: &mut ClientStream,
    bytes: &[u8],
    deadline: &mut Deadline<'_>,
    timeout: Duration,
) -> bool {
    deadline.set(Instant::now() + timeout);
    let write = async {
        client.write_all(bytes).await?;
        // TLS may hold the last records until flushed; plain TCP has nothing to flush.
        client.flush().await
    };
    matches!(before(deadline, write).await, Some(Ok(())))
}

/// Reads the answer's head (skipping interim ones) with the body bytes that came with it. Reads land
/// in the scratch buffer; only a head that arrives in pieces is gathered in a buffer of its own.
/// `pending`: what the node already sent.
async fn read_answer(
    stream: &mut NodeStream,
    args: &AnswerArgs<'_>,
    mut pending: BytesMut,
) -> Result<ResponseHead, AnswerError> {
    let received = !pending.is_empty();
    if received {
        let (skip, head) = take_head(&pending, args)?;
        if let Some(head) = head {
            return Ok(head);
        }
        pending.advance(skip);
    }
    let mut received = received;
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
            // A TLS node that closed without `close_notify` reads as an unexpected end.
            Err(e)
                if !received && matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof) =>
            {
                return Err(AnswerError::Closed);
            }
            Err(e) => return Err(AnswerError::Io(e)),
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
/// it arrives, one bounded read at a time; each write to the client within `send_timeout`.
async fn relay(
    client: &mut ClientStream,
    upstream: &mut NodeStream,
    answer: ResponseHead,
    deadline: &mut Deadline<'_>,
    send_timeout: Duration,
) -> Relayed {
    let ResponseHead { head, mut framing, first_body, overrun, .. } = answer;
    let mut r = Relayed { bytes: 0, complete: false, upstream_clean: false };
    if !send_client(client, &head, deadline, send_timeout).await {
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
        if !send_client(client, &buf[..n], deadline, send_timeout).await {
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
