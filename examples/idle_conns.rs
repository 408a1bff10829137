//! The idle-connections client of `bench/run.sh`: opens N keep-alive connections to one 127.0.0.1 port,
//! sends one request on each and reads its answer, prints `ready N`, then holds them all open and idle
//! for HOLD seconds (or until its standard input closes) and exits, closing them.
//!
//! `cargo run --release --example idle_conns -- PORT N HOLD_S [CERT_PEM]` (needs `ulimit -n` above N).
//! With CERT_PEM every connection speaks TLS (rustls, ring provider, server name `localhost`) and trusts
//! exactly that certificate, byte for byte: the bench's front certificate is self-signed (and marked as
//! a CA by openssl's defaults, which webpki refuses as an end entity), so it is pinned, not chained;
//! the handshake signatures are still verified with the certificate's key.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const REQUEST: &[u8] = b"GET /idle HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: amlbcookie=01\r\n\r\n";
/// Connections opened at once.
const PARALLEL: usize = 256;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let (Some(port), Some(n), Some(hold)) = (parse(0), parse(1), parse(2)) else {
        eprintln!("usage: idle_conns PORT N HOLD_S [CERT_PEM]");
        std::process::exit(2);
    };
    let port = u16::try_from(port).map_err(std::io::Error::other)?;
    let tls = match args.get(3) {
        Some(path) => Some(connector(path)?),
        None => None,
    };
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut open = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        let mut remaining = n;
        while remaining > 0 {
            let batch = remaining.min(PARALLEL as u64);
            let tasks: Vec<_> = (0..batch).map(|_| tokio::spawn(open_one(addr, tls.clone()))).collect();
            for t in tasks {
                open.push(t.await.map_err(std::io::Error::other)??);
            }
            remaining -= batch;
        }
        println!("ready {}", open.len());
        // Hold until the time is up or whoever started us closes our stdin.
        let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = closed.send(());
        });
        let _ = tokio::time::timeout(Duration::from_secs(hold), stdin_closed).await;
        drop(open);
        Ok::<(), std::io::Error>(())
    })?;
    // The stdin reader may still be blocked; it must not keep the process alive.
    std::process::exit(0)
}

/// A held connection, plain or TLS: only kept open, then dropped.
type Conn = Box<dyn AsyncWrite + Send + Unpin>;

/// Connects (with TLS when `tls` is set), then sends one request on it and reads the answer.
async fn open_one(addr: SocketAddr, tls: Option<TlsConnector>) -> std::io::Result<Conn> {
    let tcp = TcpStream::connect(addr).await?;
    match tls {
        None => Ok(Box::new(one(tcp).await?)),
        Some(c) => {
            let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
            let s = c.connect(name, tcp).await?;
            Ok(Box::new(one(s).await?))
        }
    }
}

/// Sends one keep-alive request and reads the whole answer (headers and `Content-Length` body).
async fn one<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> std::io::Result<S> {
    s.write_all(REQUEST).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the answer was complete"));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                let rest = String::from_utf8_lossy(buf.get(end..).unwrap_or_default()).into_owned();
                return Err(std::io::Error::other(format!("unexpected answer: {head}{rest}")));
            }
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok(s);
            }
        }
    }
}

/// A TLS client that trusts exactly the certificate in `path` (its first PEM certificate).
fn connector(path: &str) -> std::io::Result<TlsConnector> {
    let pinned = CertificateDer::pem_file_iter(path)
        .and_then(|mut certs| certs.next().ok_or(rustls_pki_types::pem::Error::NoItemsFound)?)
        .map_err(|e| std::io::Error::other(format!("{path}: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned { cert: pinned, provider: provider.clone() });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Accepts the one pinned certificate and checks the handshake's signatures with its key.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
