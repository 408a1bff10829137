//! One connection to a node: plain TCP, or TLS over TCP for `https://` backends, and how it is opened.
//!
//! Both request paths use it: hyper's client runs over it, and the fast path writes and reads it itself.
//! The plain case stays a `TcpStream` in an enum (no box, no dynamic call); only the TLS case is boxed,
//! as its session state is large (rustls keeps its buffers in it).
//!
//! Each connection adds what it writes and reads to its node's [`Traffic`] (HTTP bytes, above TLS, as
//! HAProxy's server `bin`/`bout`): one shared pair of atomics per node, so both request paths count
//! alike and the totals survive reloads with the node's state.

use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Authority;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::PoolTls;
use crate::metrics::ByteCount;

/// How to speak TLS to one node: the pool's client config and the name verified.
#[derive(Clone)]
pub struct TlsTarget {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    tls: PoolTls,
}

impl TlsTarget {
    /// TLS with `tls`'s roots and client certificate, verifying `server_name`.
    pub fn new(tls: &PoolTls, server_name: ServerName<'static>) -> Self {
        Self { connector: TlsConnector::from(tls.client.clone()), server_name, tls: tls.clone() }
    }

    /// Same name, roots and client certificate: connections made with either are interchangeable.
    pub fn same_as(&self, other: &Self) -> bool {
        self.server_name == other.server_name && self.tls.same_as(&other.tls)
    }
}

impl fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTarget").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

/// Bytes sent to and received from one node by its connections (health checks not included).
#[derive(Debug, Default)]
pub struct Traffic {
    sent: ByteCount,
    received: ByteCount,
}

impl Traffic {
    /// Bytes sent to the node.
    pub fn sent(&self) -> u64 {
        self.sent.get()
    }

    /// Bytes received from the node.
    pub fn received(&self) -> u64 {
        self.received.get()
    }
}

/// An open connection to a node, and the node's byte counters.
pub struct NodeStream {
    io: Io,
    traffic: Arc<Traffic>,
}

enum Io {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`, handshake done and the certificate verified.
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for NodeStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.io {
            Io::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            Io::Tls(s) => f.debug_tuple("Tls").field(s.get_ref().0).finish(),
        }
    }
}

/// Opens a connection to `authority` within `timeout` (TCP connect and TLS handshake together), without
/// Nagle's delay. The error is a sentence naming the address and what failed; for a certificate that
/// does not verify it carries rustls' reason (`invalid peer certificate: UnknownIssuer`). Its bytes
/// count in `traffic`.
pub async fn connect(
    authority: &Authority,
    tls: Option<&TlsTarget>,
    timeout: Duration,
    traffic: Arc<Traffic>,
) -> Result<NodeStream, String> {
    let addr = authority.as_str();
    let open = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect to {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("set_nodelay: {e}"))?;
        let Some(tls) = tls else { return Ok(NodeStream { io: Io::Plain(stream), traffic }) };
        match tls.connector.connect(tls.server_name.clone(), stream).await {
            Ok(stream) => Ok(NodeStream { io: Io::Tls(Box::new(stream)), traffic }),
            Err(e) => Err(format!("TLS handshake with {addr} ({}): {e}", tls.server_name.to_str())),
        }
    };
    tokio::time::timeout(timeout, open).await.map_err(|_| format!("connect to {addr} timed out"))?
}

impl NodeStream {
    /// Whether an idle connection has nothing to read, as it should: a node that closed it (FIN, RST or
    /// TLS `close_notify`) or sent something unasked makes it readable. Asks tokio's readiness first,
    /// which costs no system call for the usual quiet connection. On TLS, records that carry no data
    /// (TLS 1.3 session tickets, RFC 8446 §4.6.1, which arrive after the first answer) are consumed and
    /// leave the connection quiet.
    pub fn quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match &mut self.io {
            Io::Plain(stream) => {
                if stream.poll_read_ready(&mut cx).is_pending() {
                    return true;
                }
                let mut probe = [0u8; 1];
                matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Io::Tls(stream) => {
                if stream.get_ref().0.poll_read_ready(&mut cx).is_pending() {
                    return true;
                }
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                Pin::new(&mut **stream).poll_read(&mut cx, &mut buf).is_pending()
            }
        }
    }
}

impl AsyncRead for NodeStream {
    #[inline]
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        };
        this.traffic.received.read(before, buf);
        result
    }
}

impl AsyncWrite for NodeStream {
    #[inline]
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        };
        this.traffic.sent.written(result)
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        };
        this.traffic.sent.written(result)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
