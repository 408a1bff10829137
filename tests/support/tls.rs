//! TLS for tests: a self-signed `localhost` certificate made on the spot, and a client that trusts it.

use std::net::SocketAddr;

use super::init;

/// A self-signed certificate for `localhost`, written as PEM files under the target directory; returns
/// `(cert path, key path, cert PEM)`.
pub fn localhost_cert(name: &str) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let pem = ck.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, pem)
}

/// An HTTPS client trusting only `pem`, resolving `localhost` to `addr`.
pub fn https_client(pem: &str, addr: SocketAddr, http1_only: bool) -> reqwest::Client {
    init();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()])
        .resolve("localhost", addr);
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// A self-signed `localhost` certificate valid for `days` from now, as PEM files under the target
/// directory; returns `(cert path, key path, cert PEM, not-after in Unix seconds)`. X.509 dates are
/// whole seconds, so the not-after is too.
pub fn cert_valid_for(name: &str, days: i64) -> (std::path::PathBuf, std::path::PathBuf, String, i64) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let not_after = now + days * 86_400;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = time::OffsetDateTime::from_unix_timestamp(now - 60).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    let pem = cert.pem();
    std::fs::write(&cert_file, &pem).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file, pem, not_after)
}
