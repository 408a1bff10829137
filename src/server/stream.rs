//! The client connection as the HTTP/1.1 fast path and hyper read it: plain TCP or TLS terminated by
//! rustls ([`ClientStream`]), and the bytes already read from it put back in front ([`Rewind`]).
//!
//! The bytes of the public listener's connections are counted here, above TLS (the HTTP messages, as
//! HAProxy's `bytes_in`/`bytes_out` count them), into two process-wide atomics ([`client_bytes`]): a field per
//! connection would grow every idle connection's task (see the size test of `proxy::h1`). The admin
//! listener and the embedded nodes' own listeners are not client traffic (a node's bytes are the
//! proxy's backend bytes already), so their connections are [`ClientStream::Internal`] and not counted.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::metrics::ByteCount;

/// Bytes of HTTP read from the public listener's clients (decrypted, for TLS).
static RECEIVED: ByteCount = ByteCount::new();
/// Bytes of HTTP written to the public listener's clients (before encryption, for TLS).
static SENT: ByteCount = ByteCount::new();

/// Bytes received from and sent to the public listener's clients since the process started (every
/// tether started in this process, for the tests that start several).
pub fn client_bytes() -> (u64, u64) {
    (RECEIVED.get(), SENT.get())
}

/// How often [`ClientStream::hung_up`] looks again at a socket that unread bytes keep readable.
const HANG_UP_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// A client connection: plain text, or TLS over the socket (with what a PROXY protocol header left).
#[derive(Debug)]
pub enum ClientStream {
    /// Plain text, on the public listener (counted).
    Plain(TcpStream),
    /// TLS, handshake done, on the public listener (counted). Boxed: rustls's session is large, and an
    /// idle plain-text connection's task holds this enum.
    Tls(Box<TlsStream<Rewind<TcpStream>>>),
    /// Plain text on a listener whose bytes are not client traffic (admin, embedded nodes). A variant
    /// rather than a flag, and boxed, so that it costs the public listener's connections no byte: a
    /// third unboxed variant would grow the enum from 40 to 48 bytes, and every idle task with it.
    Internal(Box<TcpStream>),
}

impl ClientStream {
    /// Ready when there is something to read: bytes on the socket, or (TLS) plaintext rustls already
    /// decrypted and holds. Waits in the socket's own waker slot, so an idle connection's task holds
    /// nothing more.
    pub fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Self::Plain(s) => s.poll_read_ready(cx).map(|_| ()),
            Self::Internal(s) => s.poll_read_ready(cx).map(|_| ()),
            Self::Tls(s) => {
                let (io, session) = s.get_mut();
                // A read of the previous request may have left whole records behind, decrypted or not:
                // the socket would never wake for them. An error is for the next read to report.
                let buffered =
                    session.process_new_packets().map_or(true, |state| state.plaintext_bytes_to_read() > 0);
                if buffered || !io.read.is_empty() {
                    return Poll::Ready(());
                }
                io.stream.poll_read_ready(cx).map(|_| ())
            }
        }
    }

    /// Resolves when the client has hung up (FIN or RST seen on the socket), as HAProxy's
    /// `option abortonclose` sees a client give up on a queued request: a half-close counts, whatever
    /// the client sent before it (a pipelined request, a body, a TLS `close_notify`). Reads nothing.
    ///
    /// epoll reports the hang-up as RDHUP, and tokio keeps that bit once seen (reads clear only the
    /// readable one). But a socket left readable arms no waker for a later RDHUP: unread bytes leave it
    /// so, and a FIN itself may first wake the task as readable alone (seen on Linux loopback). So
    /// until the bit shows the readiness is looked at again every 100 ms (`HANG_UP_RECHECK`): ten
    /// cheap checks a second, and only while the request waits in a queue.
    pub async fn hung_up(&mut self) {
        let tcp = match self {
            Self::Plain(s) => &*s,
            Self::Internal(s) => &**s,
            Self::Tls(s) => &s.get_ref().0.stream,
        };
        loop {
            match tcp.ready(tokio::io::Interest::READABLE).await {
                Ok(ready) if ready.is_read_closed() => return,
                Err(_) => return,
                Ok(_) => tokio::time::sleep(HANG_UP_RECHECK).await,
            }
        }
    }

    /// The TLS version negotiated (`TLSv1.3`), for the access line; `None` for plain text.
    pub fn tls_version(&self) -> Option<&'static str> {
        match self {
            Self::Plain(_) | Self::Internal(_) => None,
            Self::Tls(s) => Some(match s.get_ref().1.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "TLS",
            }),
        }
    }

    /// The client chose HTTP/2 by ALPN (RFC 7301): hyper's connection from the first byte.
    pub fn alpn_h2(&self) -> bool {
        matches!(self, Self::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2"))
    }

    /// Ends the connection: TLS sends its `close_notify` first (RFC 8446 §6.1), so the client can tell
    /// the end of the last answer from a cut; plain text just closes.
    pub async fn close(mut self) {
        if let Self::Tls(_) = self {
            use tokio::io::AsyncWriteExt as _;
            // Bounded: a client that reads nothing cannot keep the task.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.shutdown()).await;
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Internal(s) => return Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        RECEIVED.read(before, buf);
        result
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => SENT.written(Pin::new(s).poll_write(cx, buf)),
            Self::Tls(s) => SENT.written(Pin::new(s.as_mut()).poll_write(cx, buf)),
            Self::Internal(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => SENT.written(Pin::new(s).poll_write_vectored(cx, bufs)),
            Self::Tls(s) => SENT.written(Pin::new(s.as_mut()).poll_write_vectored(cx, bufs)),
            Self::Internal(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Internal(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Internal(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Internal(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A stream with bytes already read from it put back in front: what followed a PROXY protocol header
/// (read before TLS), or what the fast path read before handing the connection to hyper.
#[derive(Debug)]
pub struct Rewind<S> {
    /// Read but not consumed.
    pub read: Bytes,
    /// The stream.
    pub stream: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    /// Every idle fast-path connection holds one: the uncounted variant must not make it bigger than a
    /// socket and a tag (see `proxy::h1`'s idle task size test).
    #[test]
    fn the_uncounted_variant_costs_no_byte() {
        assert!(std::mem::size_of::<ClientStream>() <= 40, "{}", std::mem::size_of::<ClientStream>());
    }

    /// A connected pair on loopback: the client's end, and the proxy's as the public listener has it.
    async fn connected() -> (TcpStream, ClientStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, ClientStream::Plain(server))
    }

    /// Polls `future` once: whether it is already done.
    async fn poll_once<F: Future + Unpin>(future: &mut F) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(Future::poll(Pin::new(&mut *future), cx).is_ready())).await
    }

    #[tokio::test]
    async fn a_client_that_hangs_up_with_nothing_unread_is_gone() {
        let (client, mut stream) = connected().await;
        let mut gone = Box::pin(stream.hung_up());
        assert!(!poll_once(&mut gone).await, "gone before the client did anything");
        drop(client);
        tokio::time::timeout(std::time::Duration::from_secs(5), gone)
            .await
            .expect("the hang-up was not seen");
    }

    /// The case no waker covers: the socket was already readable (a pipelined request waits unread)
    /// when the wait began, and the FIN comes after.
    #[tokio::test]
    async fn a_client_that_sent_more_and_then_hung_up_is_gone() {
        use tokio::io::AsyncWriteExt as _;
        let (mut client, mut stream) = connected().await;
        client.write_all(b"GET /next HTTP/1.1\r\n").await.unwrap();
        let ClientStream::Plain(tcp) = &stream else { unreachable!() };
        let ready = tcp.ready(tokio::io::Interest::READABLE).await.unwrap();
        assert!(ready.is_readable() && !ready.is_read_closed(), "{ready:?}");

        let mut gone = Box::pin(stream.hung_up());
        assert!(!poll_once(&mut gone).await, "unread bytes taken for a hang-up");
        client.shutdown().await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), gone)
            .await
            .expect("the hang-up was not seen");
    }

    /// Paused time: the 300 ms pass at once, and the rechecks with them.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_only_sends_more_is_not_gone() {
        use tokio::io::AsyncWriteExt as _;
        let (mut client, mut stream) = connected().await;
        client.write_all(b"GET /next HTTP/1.1\r\n").await.unwrap();
        let gone = stream.hung_up();
        assert!(tokio::time::timeout(std::time::Duration::from_millis(300), gone).await.is_err());
        drop(client);
    }
}
