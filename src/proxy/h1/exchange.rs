//! The exchange with a node on the fast path: a pooled connection (TCP, or TLS for `https://` nodes),
//! the forwarded head written in one write, the answer's head read and decided ([`super::response`]),
//! the body relayed with its own framing, and the shared failover rule ([`crate::proxy::failover`])
//! when a node fails.

use std::io::ErrorKind;

use bytes::{Buf, BytesMut};
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::deadline::{Deadline, before};
use super::framing::Framing;
use super::request::Request;
use super::response::{AnswerArgs, AnswerError, MAX_RESPONSE_HEAD, ResponseHead, take_head};
use super::{Done, Next, read_scratch};
use crate::proxy::failover::{Failover, Trace, idempotent, served};
use crate::proxy::{ProxyError, Snapshot};
use crate::upstream::affinity;
use crate::upstream::conns::{ConnSettings, SendError};
use crate::upstream::stream::NodeStream;
use crate::upstream::{Backend, Pool};

/// Read size for body pieces: the most of a body in memory at once, per exchange.
const BODY_READ: usize = 16 * 1024;

/// Forwards to `pool`, retrying once on another node when the error allows it. `Err` means nothing was
/// written to the client yet.
pub(super) async fn to_pool(
    snap: &Snapshot,
    pool: &Pool,
    req: &Request,
    client: &mut TcpStream,
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
    loop {
        let choice = failover.choose(pool, trace)?;
        let backend = &pool.backends[choice.index];
        let guard = backend.state.begin();
        let args = AnswerArgs {
            cookie_name: pool.affinity.cookie.as_bytes(),
            // Plain text only here: the value without `Secure` (unless the pool asks for it).
            cookie: affinity::cookie_to_set(pool, choice.index, &trace.hints, false),
            close,
            head_only: req.method == Method::HEAD,
        };
        // Connect, send and the answer's head within the response timeout, as on hyper's path.
        deadline.set(Instant::now() + cfg.response_timeout);
        let sent = before(deadline, send(backend, &req.forward, &settings, idempotent, &args)).await;
        let timeout_ms = cfg.response_timeout.as_millis();
        match sent.unwrap_or_else(|| Err(ProxyError::Timeout { backend: backend.id.clone(), timeout_ms })) {
            Ok((mut upstream, answer)) => {
                served(pool, choice);
                let (status, close_client, reusable) = (answer.status, answer.close_client, answer.reusable);
                let relayed = relay(client, &mut upstream, answer).await;
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
) -> Result<(NodeStream, ResponseHead), ProxyError> {
    let upstream = |reason: String| ProxyError::Upstream { backend: backend.id.clone(), reason };
    let mut fresh = false;
    loop {
        let (mut stream, reused) =
            backend.conns.checkout_stream(settings, fresh).await.map_err(|e| match e {
                SendError::Connect(reason) => ProxyError::Connect { backend: backend.id.clone(), reason },
                SendError::Upstream(e) => upstream(e.to_string()),
            })?;
        // TLS holds the records it made in its session until flushed; flushing plain TCP does nothing.
        let written = match stream.write_all(head).await {
            Ok(()) => stream.flush().await,
            Err(e) => Err(e),
        };
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
        match read_answer(&mut stream, args).await {
            Ok(answer) => return Ok((stream, answer)),
            // A pooled connection the node closed just as the request went out (the keep-alive race of
            // RFC 9112 §9.3.1): an idempotent request goes again on a fresh connection.
            Err(AnswerError::Closed) if reused && idempotent => fresh = true,
            Err(e) => return Err(upstream(e.to_string())),
        }
    }
}

/// Reads the answer's head (skipping interim ones) with the body bytes that came with it. Reads land
/// in the scratch buffer; only a head that arrives in pieces is gathered in a buffer of its own.
async fn read_answer(stream: &mut NodeStream, args: &AnswerArgs<'_>) -> Result<ResponseHead, AnswerError> {
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
/// it arrives, one bounded read at a time.
async fn relay(client: &mut TcpStream, upstream: &mut NodeStream, answer: ResponseHead) -> Relayed {
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
