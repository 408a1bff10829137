//! The send deadline of a connection hyper serves (`[proxy] client_send_timeout_ms`): a client that
//! stops reading its answer (a slow reader, `slowhttptest -X`: a tiny TCP window, a few bytes read now
//! and then) would otherwise hold the connection, its task and the answer's buffers for as long as it
//! likes. From the moment a write cannot go out, the client has the timeout to take [`PIECE`] bytes or
//! everything hyper has to send (a flush that completes); otherwise the write fails with `TimedOut`
//! and hyper closes the connection. The fast path applies the same bound to each piece it writes, so
//! both paths ask a client for at least 16 KiB per timeout while an answer is waiting for it (nginx's
//! `send_timeout` bounds the time between two writes instead, which a reader taking 5 bytes a second
//! passes forever).

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes a client must take within the timeout (the fast path's body piece).
pub const PIECE: usize = 16 * 1024;

/// `S`, whose writes fail once the client has taken too little for too long.
#[derive(Debug)]
pub struct SendDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Armed while the client is behind: created at the first stall, then reset, never re-allocated.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// Bytes written since the timer was armed.
    taken: usize,
}

impl<S> SendDeadline<S> {
    /// `inner`, with `timeout` for each stall.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self { inner, timeout, timer: None, armed: false, taken: 0 }
    }

    /// The client took `n` bytes: enough of them disarm the timer.
    fn took(&mut self, n: usize) {
        if self.armed {
            self.taken += n;
            if self.taken >= PIECE {
                self.armed = false;
            }
        }
    }

    /// A write could not go out: arms the timer (if it is not already), and fails once it fires.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let at = Instant::now() + self.timeout;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if !self.armed {
            self.armed = true;
            self.taken = 0;
            timer.as_mut().reset(at);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took too little of the answer for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendDeadline<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendDeadline<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.took(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.stalled(cx).map(|r| r.map(|()| 0)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.took(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.stalled(cx).map(|r| r.map(|()| 0)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            // Everything hyper had to send is out: nothing is waiting for the client any more.
            Poll::Ready(Ok(())) => {
                this.armed = false;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.stalled(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.stalled(cx),
            done => done,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_takes_too_little_is_cut_and_one_that_keeps_up_is_not() {
        // A pipe that holds 1 KiB: the writer stalls as soon as the reader falls behind.
        let (near, mut far) = tokio::io::duplex(1024);
        let mut near = SendDeadline::new(near, Duration::from_secs(2));
        let answer = vec![b'x'; 64 * 1024];
        // Keeps up: 4 KiB every 200 ms is 16 KiB in 800 ms.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0; 4096];
            let mut got = 0;
            while got < 64 * 1024 {
                far.read_exact(&mut buf).await.unwrap();
                got += buf.len();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            far
        });
        near.write_all(&answer).await.unwrap();
        near.flush().await.unwrap();
        let mut far = reader.await.unwrap();
        // Falls behind: 100 bytes a second.
        let start = Instant::now();
        let reader = tokio::spawn(async move {
            let mut buf = [0; 100];
            loop {
                if far.read_exact(&mut buf).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let err = near.write_all(&answer).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(Instant::now() - start < Duration::from_secs(5), "cut after about the timeout");
        drop(near);
        reader.await.unwrap();
    }
}
