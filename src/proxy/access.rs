//! The access log: one line per request (target `tether::access`), written when the response body has
//! been sent, or when the client went away, so it can say how many bytes reached the client and how long
//! the whole exchange took (HAProxy logs at the end of the transfer for the same reason).

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Instant;

use bytes::Bytes;
use http::Method;
use http_body::{Body as _, Frame, SizeHint};

use crate::body::{Body, BoxError};

/// What one line says, gathered when the response headers are known.
#[derive(Debug)]
pub struct AccessLog {
    /// Request method.
    pub method: Method,
    /// Request path (no query: tokens travel there).
    pub path: String,
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
            path = %self.path,
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
