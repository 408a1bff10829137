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
    // The reading is the config's, so `tether check` refuses exactly what this refuses.
    files.server_config().map_err(|(key, e)| TlsError(format!("{key}: {e}")))
}

/// Loads the files into a swappable config.
pub fn shared(files: &TlsFiles) -> Result<SharedTls, TlsError> {
    Ok(Arc::new(ArcSwap::from_pointee(server_config(files)?)))
}
