//! The upstream of `bench/run.sh`: a minimal HTTP/1.1 keep-alive server on one 127.0.0.1 port that answers
//! every request with `200 OK` and a fixed 2-byte body, on a current-thread runtime. The same binary stands
//! behind every proxy the bench compares, so the upstream's cost is identical for all of them.
//!
//! For the bench's https-backend stage it also answers over TLS (rustls, ring) on a second port with a
//! PEM certificate and key; `--make-certs DIR` writes a test CA (`ca.pem`) and a certificate it signed for
//! `localhost` and `127.0.0.1` (`node.pem`, `node-key.pem`), so the stage needs no openssl.
//!
//! ```text
//! cargo run --release --example bench_upstream -- 18081
//! cargo run --release --example bench_upstream -- 18081 18083 node.pem node-key.pem
//! cargo run --release --example bench_upstream -- --make-certs /tmp/certs
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn usage() -> ! {
    eprintln!("usage: bench_upstream PORT [TLS_PORT CERT_PEM KEY_PEM] | bench_upstream --make-certs DIR");
    std::process::exit(2);
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, dir] = args.as_slice()
        && flag == "--make-certs"
    {
        return make_certs(Path::new(dir));
    }
    let port = |s: &String| s.parse::<u16>().unwrap_or_else(|_| usage());
    let (plain, tls) = match args.as_slice() {
        [p] => (port(p), None),
        [p, t, cert, key] => (port(p), Some((port(t), acceptor(Path::new(cert), Path::new(key))?))),
        _ => usage(),
    };
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async move {
        if let Some((port, acceptor)) = tls {
            let listener = bind(port).await?;
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer(stream).await;
                        }
                    });
                }
            });
        }
        let listener = bind(plain).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(answer(stream));
        }
    })
}

async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// Serves one keep-alive connection: `200 ok` to everything.
async fn answer(stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static) {
    let service = service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
}

/// TLS 1.2 and 1.3 on the ring provider, ALPN `http/1.1`, with the PEM files given.
fn acceptor(cert: &Path, key: &Path) -> std::io::Result<TlsAcceptor> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| invalid(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(format!("{}: {e}", key.display())))?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A CA and a node certificate it signed, as PEM files in `dir`.
fn make_certs(dir: &Path) -> std::io::Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    };
    let fail = |e: rcgen::Error| std::io::Error::other(e.to_string());
    std::fs::create_dir_all(dir)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca.distinguished_name.push(DnType::CommonName, "tether bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(fail)?).map_err(fail)?;
    let node =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).map_err(fail)?;
    let key = KeyPair::generate().map_err(fail)?;
    let cert = node.signed_by(&key, &ca).map_err(fail)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("node.pem"), cert.pem())?;
    std::fs::write(dir.join("node-key.pem"), key.serialize_pem())?;
    Ok(())
}
