//! When a certificate chain stops being valid: the earliest not-after date of the PEM certificates in
//! a file (RFC 5280 §4.1.2.5: a chain is valid only while every certificate in it is).
//!
//! One function for both readers: `tether check`, which warns when the date is near, and `/metrics`
//! (`tether_tls_certificate_expiry_timestamp_seconds`), so an alert and a check never disagree.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Config;

/// `tether check` warns when a certificate expires within this (Let's Encrypt renews at 30 days left).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why the not-after date of a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CertExpiryError {
    /// The file cannot be read as PEM.
    #[error("cannot read PEM certificates from {file}: {reason}")]
    Pem {
        /// The file.
        file: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The file holds no certificate.
    #[error("{0} holds no PEM certificate")]
    Empty(PathBuf),
    /// A certificate is not valid X.509 DER.
    #[error("certificate {index} of {file} is not X.509: {reason}")]
    X509 {
        /// The file.
        file: PathBuf,
        /// Its place in the file, from 1.
        index: usize,
        /// What the parser said.
        reason: String,
    },
}

/// The earliest not-after of the PEM certificates in `file`, in seconds since the Unix epoch (negative
/// before 1970, which only a broken certificate says).
pub fn not_after(file: &Path) -> Result<i64, CertExpiryError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = |e: rustls_pki_types::pem::Error| CertExpiryError::Pem {
        file: file.to_owned(),
        reason: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(file).map_err(pem)?.collect::<Result<_, _>>().map_err(pem)?;
    let mut earliest: Option<i64> = None;
    for (i, der) in certs.iter().enumerate() {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| CertExpiryError::X509 {
            file: file.to_owned(),
            index: i + 1,
            reason: e.to_string(),
        })?;
        let at = cert.validity().not_after.timestamp();
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest.ok_or_else(|| CertExpiryError::Empty(file.to_owned()))
}

/// A certificate of the config that expires soon (or has expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    /// The key that names the file, as problems name it (`proxy.tls.cert`, `pool[0].tls.client_cert`).
    pub key: String,
    /// The file.
    pub file: PathBuf,
    /// Its earliest not-after, in seconds since the Unix epoch.
    pub not_after: i64,
}

impl Config {
    /// The certificate files of the config (key and path), for their expiry: the listener's, and the
    /// client certificate each pool shows its `https://` nodes.
    pub fn certificate_files(&self) -> Vec<(String, &Path)> {
        let listener = self.proxy.tls.iter().map(|t| ("proxy.tls.cert".to_owned(), t.cert.as_path()));
        let pools = self.pools.iter().enumerate().filter_map(|(i, pool)| {
            let file = pool.tls.as_ref()?.client_cert.as_deref()?;
            Some((format!("pool[{i}].tls.client_cert"), file))
        });
        listener.chain(pools).collect()
    }

    /// The certificates that expire before `now + within`. A file that cannot be read is left out: the
    /// load already refused it.
    pub fn expiring_certificates(&self, now: SystemTime, within: Duration) -> Vec<Expiring> {
        let limit = now.duration_since(UNIX_EPOCH).unwrap_or_default().saturating_add(within).as_secs();
        self.certificate_files()
            .into_iter()
            .filter_map(|(key, file)| {
                let at = not_after(file).ok()?;
                (at < i64::try_from(limit).unwrap_or(i64::MAX)).then(|| Expiring {
                    key,
                    file: file.to_owned(),
                    not_after: at,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_after: i64) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).expect("date");
        params.self_signed(&rcgen::KeyPair::generate().expect("key")).expect("cert").pem()
    }

    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tether-expiry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn a_chain_expires_with_its_earliest_certificate() {
        let (leaf, intermediate) = (2_000_000_000, 1_900_000_000);
        let chain = file("chain.pem", &format!("{}{}", cert(leaf), cert(intermediate)));
        assert_eq!(not_after(&chain).expect("dates"), intermediate);
    }

    #[test]
    fn garbage_and_empty_files_are_errors_naming_the_file() {
        let body = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let garbage = file("garbage.pem", body);
        let e = not_after(&garbage).expect_err("not X.509").to_string();
        assert!(e.contains("certificate 1 of") && e.contains("garbage.pem"), "{e}");
        let empty = file("empty.pem", "no PEM here\n");
        assert!(matches!(not_after(&empty), Err(CertExpiryError::Empty(_))));
    }
}
