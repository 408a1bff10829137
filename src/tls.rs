//! TLS termination on the public listener: rustls on the ring provider, TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`, certificate chain and key from PEM files.
//!
//! The provider is named explicitly (`builder_with_provider`) instead of relying on a process default,
//! so a second provider compiled in by some dependency can never change or break it. The config sits in
//! an `ArcSwap`: a reload re-reads the files and later handshakes use the new certificate while open
//! connections keep theirs.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// The current server config, swapped whole on reload.
pub type SharedTls = Arc<ArcSwap<ServerConfig>>;

/// Why the certificate or key could not be used. Retrying is pointless until the files change: start-up
/// fails, and a reload keeps serving the certificate it had.
#[derive(Debug, thiserror::Error)]
#[error("proxy.tls: {0}")]
pub struct TlsError(String);

/// Builds the server config from the PEM files.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(Iterator::collect)
        .map_err(|e| TlsError(format!("cannot read certificates from {}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{} holds no PEM certificate", files.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsError(format!("cannot read a private key from {}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Loads the files into a swappable config.
pub fn shared(files: &TlsFiles) -> Result<SharedTls, TlsError> {
    Ok(Arc::new(ArcSwap::from_pointee(server_config(files)?)))
}
