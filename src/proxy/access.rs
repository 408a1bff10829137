//! The access log: one line per request (target `tether::access`), written when the response body has
//! been sent, or when the client went away, so it can say how many bytes reached the client and how long
//! the whole exchange took (HAProxy logs at the end of the transfer for the same reason). It names the
//! client, host, user agent, protocol and request ID, so it can be joined with AM's audit log, which
//! records the same `X-ForgeRock-TransactionId`.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Instant;

use bytes::Bytes;
use http::Method;
use http_body::{Body as _, Frame, SizeHint};

use crate::body::{Body, BoxError};

/// What the line says about the request, gathered (only when the line is wanted) before it is sent.
#[derive(Debug)]
pub struct Seen {
    /// Request path (no query: tokens travel there).
    pub path: String,
    /// The client.
    pub client: Client,
    /// The `Host` (or `:authority`) as sent.
    pub host: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// HTTP version, and TLS version when TLS.
    pub proto: Proto,
    /// The request ID sent to the node.
    pub request_id: String,
}

/// How a request arrived: `HTTP/1.1`, `HTTP/2.0+TLSv1.3`.
#[derive(Debug, Clone, Copy)]
pub struct Proto {
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub http: &'static str,
    /// `TLSv1.3`, or `None` in plain text.
    pub tls: Option<&'static str>,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.http)?;
        match self.tls {
            Some(tls) => write!(f, "+{tls}"),
            None => Ok(()),
        }
    }
}

/// The name of an HTTP version as the line writes it.
pub fn http_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The client as the line names it: the address a trusted proxy vouched for (no port), else the
/// peer's `ip:port`. Formatted only when the line is written.
#[derive(Debug, Clone, Copy)]
pub enum Client {
    /// The peer (after any PROXY protocol header).
    Peer(std::net::SocketAddr),
    /// The first untrusted hop of a trusted proxy's `X-Forwarded-For`.
    Forwarded(std::net::IpAddr),
}

impl Client {
    /// The client of a request from `peer` whose trusted `X-Forwarded-For` names `forwarded`.
    pub fn of(peer: std::net::SocketAddr, forwarded: Option<std::net::IpAddr>) -> Self {
        forwarded.map_or(Self::Peer(peer), Self::Forwarded)
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Peer(addr) => addr.fmt(f),
            Self::Forwarded(ip) => ip.fmt(f),
        }
    }
}

/// What one line says, gathered when the response headers are known.
#[derive(Debug)]
pub struct AccessLog {
    /// Request method.
    pub method: Method,
    /// What was seen of the request.
    pub seen: Seen,
    /// Response status.
    pub status: u16,
    /// The route's pool.
    pub pool: Option<String>,
    /// The node that served.
    pub backend: Option<String>,
    /// The node a hint named (differs from `backend` on a redispatch).
    pub pinned: Option<String>,
    /// `hit|miss|invalid|redispatch`.
    pub affinity: Option<&'static str>,
    /// The hint that decided.
    pub hint: Option<&'static str>,
    /// Retries made.
    pub retries: u32,
    /// When the request arrived.
    pub started: Instant,
    /// Microseconds to the response headers.
    pub headers_us: u64,
}

impl AccessLog {
    /// Writes the line now (the fast path knows when its exchange ended).
    pub fn emit(&self, bytes: u64, complete: bool) {
        tracing::info!(
            target: "tether::access",
            method = %self.method,
            path = %self.seen.path,
            client = %self.seen.client,
            host = self.seen.host.as_deref(),
            user_agent = self.seen.user_agent.as_deref(),
            proto = %self.seen.proto,
            request_id = %self.seen.request_id,
            status = self.status,
            bytes,
            complete,
            duration_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            headers_us = self.headers_us,
            pool = self.pool.as_deref(),
            backend = self.backend.as_deref(),
            pinned = self.pinned.as_deref(),
            affinity = self.affinity,
            hint = self.hint,
            retries = self.retries,
        );
    }

    /// Wraps `body` so the line is written when it ends (or is dropped unfinished).
    pub fn attach(self, body: Body) -> Body {
        http_body_util::BodyExt::boxed(Logged { inner: body, bytes: 0, log: Some(self) })
    }
}

struct Logged {
    inner: Body,
    bytes: u64,
    log: Option<AccessLog>,
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Poll::Ready(None) => {
                if let Some(log) = self.log.take() {
                    log.emit(self.bytes, true);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // Bodies hyper never polls (empty ones, HEAD answers) end here too: complete when nothing was
        // left to send, cut short when the client went away mid-body.
        if let Some(log) = self.log.take() {
            log.emit(self.bytes, self.inner.is_end_stream());
        }
    }
}
