//! `[pool.tls]`: how the proxy verifies its `https://` nodes and which certificate it shows them.
//!
//! The files are read here, when the file is loaded, so `tether check` (and a reload) names an unreadable
//! or garbage file with its key and line instead of the first connection failing. The rustls client
//! config built from them is one per pool per loaded file: every connection of the pool shares its
//! session cache, so reconnecting to a node resumes the TLS session (RFC 8446 §2.2) instead of a full
//! handshake. Default roots are the platform's (`rustls-native-certs`: the system store, including the
//! internal CAs an operator installed there, which is where AM sites keep the CA of their Tomcat
//! certificates), as HAProxy's `ca-file @system-ca`.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::problem::{Checker, KeyPath};
use super::raw::RawPoolTls;

/// The TLS side of a pool with `https://` backends.
#[derive(Debug, Clone)]
pub struct PoolTls {
    /// rustls client config on the ring provider: roots, client certificate, ALPN `http/1.1`.
    pub client: Arc<ClientConfig>,
    /// `server_name`, when set: sent as SNI and verified instead of each backend's host.
    pub server_name: Option<ServerName<'static>>,
    /// `client_cert`, resolved: the chain shown to the nodes, watched for its expiry like the
    /// listener's (a node refusing an expired client certificate takes the whole pool down).
    pub client_cert: Option<std::path::PathBuf>,
    /// SHA-256 of everything the config was built from (roots, client certificate and key, name): equal
    /// after a reload that changed none of it, so pooled connections (verified under the same rules)
    /// are kept.
    fingerprint: [u8; 32],
}

impl PoolTls {
    /// The name a backend at `host` is verified against (and sent as SNI).
    pub fn server_name_for(&self, host: &str) -> Result<ServerName<'static>, String> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => host_name(host),
        }
    }

    /// Whether `other` was built from the same roots, client certificate and server name.
    pub fn same_as(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

/// A URL host as a TLS name: a DNS name, or an IP address (verified against the certificate's IP SANs).
fn host_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    ServerName::try_from(bare.to_string())
        .map_err(|_| format!("{host:?} is not a valid TLS server name: set pool.tls.server_name"))
}

/// `[pool.tls]` (defaults when absent); `None` after a problem, which is recorded under its key.
pub(super) fn convert(c: &mut Checker, p: &KeyPath, raw: RawPoolTls) -> Option<PoolTls> {
    let mut material = ring::digest::Context::new(&ring::digest::SHA256);
    let mut ok = true;
    let roots = match &raw.ca_file {
        Some(name) => {
            let path = c.file(name);
            let at = p.key("ca_file");
            read_certs(c, &at, &path).and_then(|certs| {
                let mut roots = RootCertStore::empty();
                let (added, refused) = roots.add_parsable_certificates(certs.iter().cloned());
                if refused > 0 || added == 0 {
                    let message = format!(
                        "{}: {refused} of its {} certificates are not usable CA certificates",
                        path.display(),
                        certs.len()
                    );
                    c.report(&at, message);
                    return None;
                }
                certs.iter().for_each(|der| material.update(der));
                Some(roots)
            })
        }
        None => platform_roots(c, p),
    };
    ok &= roots.is_some();
    let server_name = raw.server_name.as_deref().and_then(|name| {
        let parsed = c.take(&p.key("server_name"), host_name(name));
        ok &= parsed.is_some();
        material.update(b"\0name\0");
        material.update(name.as_bytes());
        parsed
    });
    let client_cert = raw.client_cert.as_ref().map(|f| c.file(f));
    let client_auth = match (&raw.client_cert, &raw.client_key) {
        (None, None) => None,
        (Some(_), None) => {
            c.report(
                &p.key("client_key"),
                "client_cert needs client_key, the PEM private key of that certificate",
            );
            ok = false;
            None
        }
        (None, Some(_)) => {
            c.report(
                &p.key("client_cert"),
                "client_key needs client_cert, the PEM certificate chain it signs for",
            );
            ok = false;
            None
        }
        (Some(cert), Some(key)) => {
            let (cert, key) = (c.file(cert), c.file(key));
            let certs = read_certs(c, &p.key("client_cert"), &cert);
            let key = read_key(c, &p.key("client_key"), &key);
            ok &= certs.is_some() && key.is_some();
            certs.zip(key)
        }
    };
    if let Some((certs, key)) = &client_auth {
        material.update(b"\0client\0");
        certs.iter().for_each(|der| material.update(der));
        material.update(key.secret_der());
    }
    if !ok {
        return None;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| c.report(p, e.to_string()))
        .ok()?
        .with_root_certificates(roots?);
    let mut client = match client_auth {
        None => builder.with_no_client_auth(),
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| c.report(&p.key("client_key"), format!("does not fit client_cert: {e}")))
            .ok()?,
    };
    // Only HTTP/1.1 is spoken to nodes, on both request paths.
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(material.finish().as_ref());
    Some(PoolTls { client: Arc::new(client), server_name, client_cert, fingerprint })
}

/// The system's roots; a system without any is a problem only a `ca_file` can fix.
fn platform_roots(c: &mut Checker, p: &KeyPath) -> Option<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
        c.report(
            &p.key("ca_file"),
            format!("no platform root certificates were found{why}: set ca_file to the PEM of the nodes' CA"),
        );
        return None;
    }
    Some(roots)
}

fn read_certs(c: &mut Checker, at: &KeyPath, path: &Path) -> Option<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| c.report(at, format!("cannot read PEM certificates from {shown}: {e}")))
        .ok()?;
    if certs.is_empty() {
        c.report(at, format!("{shown} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")"));
        return None;
    }
    Some(certs)
}

fn read_key(c: &mut Checker, at: &KeyPath, path: &Path) -> Option<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| c.report(at, format!("cannot read a PEM private key from {}: {e}", path.display())))
        .ok()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::parse;

    fn files(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tether-pool-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ck = rcgen::generate_simple_self_signed(vec!["am.internal".to_string()]).expect("cert");
        std::fs::write(dir.join("ca.pem"), ck.cert.pem()).expect("write");
        std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).expect("write");
        let other = rcgen::generate_simple_self_signed(vec!["x".to_string()]).expect("cert");
        std::fs::write(dir.join("other-key.pem"), other.signing_key.serialize_pem()).expect("write");
        std::fs::write(dir.join("garbage.pem"), "hello\n").expect("write");
        dir
    }

    fn config(tls: &str, url: &str) -> String {
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[[pool]]\nname = \"am\"\n{tls}\n\
             [[pool.backend]]\nid = \"01\"\nurl = \"{url}\"\n[[route]]\npool = \"am\"\n"
        )
    }

    fn problems(text: &str) -> Vec<(String, String)> {
        let err = parse(text).expect_err("refused");
        err.problems.into_iter().map(|p| (p.key, p.message)).collect()
    }

    #[test]
    fn https_backends_default_to_port_443_and_verify_their_host() {
        let dir = files("ok");
        let tls = format!("[pool.tls]\nca_file = {:?}", dir.join("ca.pem"));
        let c = parse(&config(&tls, "https://am1.internal")).expect("valid");
        let b = &c.pools[0].backends[0];
        assert_eq!((b.scheme.as_str(), b.authority.as_str()), ("https", "am1.internal:443"));
        assert_eq!(b.server_name.as_ref().map(|n| n.to_str().into_owned()), Some("am1.internal".into()));
        let c = parse(&config(&(tls.clone() + "\nserver_name = \"am.internal\""), "https://10.0.0.1:8443"))
            .expect("valid");
        let b = &c.pools[0].backends[0];
        assert_eq!(b.server_name.as_ref().map(|n| n.to_str().into_owned()), Some("am.internal".into()));
        // A plain pool has no TLS side at all.
        assert!(parse(&config("", "http://127.0.0.1:1")).expect("valid").pools[0].tls.is_none());
        let same = parse(&config(&tls, "https://am1.internal")).expect("valid");
        let (a, b) = (c.pools[0].tls.as_ref().expect("tls"), same.pools[0].tls.as_ref().expect("tls"));
        assert!(!a.same_as(b), "a server_name changes what is verified");
        let again = parse(&config(&tls, "https://am2.internal")).expect("valid");
        assert!(again.pools[0].tls.as_ref().expect("tls").same_as(b), "same files, same rules");
    }

    #[test]
    fn unusable_files_are_named_with_their_key() {
        let dir = files("bad");
        let missing = dir.join("missing.pem");
        let tls = format!(
            "[pool.tls]\nca_file = {:?}\nclient_cert = {missing:?}\nclient_key = {:?}",
            dir.join("garbage.pem"),
            dir.join("garbage.pem")
        );
        let found = problems(&config(&tls, "https://am1.internal:8443"));
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["pool[0].tls.ca_file", "pool[0].tls.client_cert", "pool[0].tls.client_key"],
            "{found:?}"
        );
        assert!(found[0].1.contains("garbage.pem holds no PEM certificate"), "{found:?}");
        assert!(found[1].1.contains("missing.pem"), "{found:?}");
        assert!(found[2].1.contains("cannot read a PEM private key"), "{found:?}");
    }

    #[test]
    fn a_client_certificate_needs_its_own_key() {
        let dir = files("pair");
        let ca = format!("ca_file = {:?}", dir.join("ca.pem"));
        let only_cert = format!("[pool.tls]\n{ca}\nclient_cert = {:?}", dir.join("ca.pem"));
        let found = problems(&config(&only_cert, "https://am.internal"));
        assert_eq!(found[0].0, "pool[0].tls.client_key", "{found:?}");
        let mismatch = format!(
            "[pool.tls]\n{ca}\nclient_cert = {:?}\nclient_key = {:?}",
            dir.join("ca.pem"),
            dir.join("other-key.pem")
        );
        let found = problems(&config(&mismatch, "https://am.internal"));
        assert_eq!(found[0].0, "pool[0].tls.client_key", "{found:?}");
        assert!(found[0].1.contains("does not fit client_cert"), "{found:?}");
        let pair = format!(
            "[pool.tls]\n{ca}\nclient_cert = {:?}\nclient_key = {:?}",
            dir.join("ca.pem"),
            dir.join("key.pem")
        );
        parse(&config(&pair, "https://am.internal")).expect("a matching pair is accepted");
    }

    #[test]
    fn other_schemes_names_and_embedded_https_are_refused() {
        let found = problems(&config("", "ftp://am.internal"));
        assert!(found[0].1.contains("use http:// or https://"), "{found:?}");
        let dir = files("names");
        let tls = format!("[pool.tls]\nca_file = {:?}\nserver_name = \"not a name\"", dir.join("ca.pem"));
        let found = problems(&config(&tls, "https://am.internal"));
        assert_eq!(found[0].0, "pool[0].tls.server_name", "{found:?}");
        let tls = format!("[pool.tls]\nca_file = {:?}", dir.join("ca.pem"));
        let found = problems(&config(&tls, "https://127.0.0.1:0\"\nembedded = true\n#\""));
        assert_eq!(found[0].0, "pool[0].backend[0].embedded", "{found:?}");
        let found = problems(&config("[pool.tls]\nca_fil = \"x\"", "https://am.internal"));
        assert!(found.iter().any(|(k, m)| k == "pool[0].tls.ca_fil" && m.contains("`ca_file`")), "{found:?}");
    }
}
