//! The PROXY protocol header parser (v1 text, v2 binary), the first bytes of every connection on a
//! listener with `proxy_protocol = true`. Checks: never a panic; the server reads it incrementally, so
//! the verdict on every prefix must agree with the verdict on the whole (a header is "partial" until
//! its last byte, and complete from there on, whatever follows); "partial" never holds a buffer beyond
//! the bound; and a v1 line rendered from a parsed header parses back to the same addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::fuzzing::{ProxyHeader, ProxyParsed, proxy_protocol};

/// The server's bound on a header (`V2_MAX`): it stops reading there.
const MAX: usize = 16 + 1024;

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(2 * MAX)];
    let whole = proxy_protocol(data);
    match whole {
        ProxyParsed::Complete(header, n) => {
            assert!(n <= data.len());
            for k in 0..data.len() {
                let prefix = proxy_protocol(&data[..k]);
                if k < n {
                    assert_eq!(prefix, ProxyParsed::Partial, "prefix {k} of a {n}-byte header");
                } else {
                    assert_eq!(prefix, whole, "prefix {k} holds the whole {n}-byte header");
                }
            }
            if let ProxyHeader::Proxied { source, destination } = header {
                let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
                if source.is_ipv4() == destination.is_ipv4() {
                    let line = format!(
                        "PROXY {family} {} {} {} {}\r\n",
                        source.ip(),
                        destination.ip(),
                        source.port(),
                        destination.port()
                    );
                    assert_eq!(proxy_protocol(line.as_bytes()), ProxyParsed::Complete(header, line.len()));
                }
            }
        }
        ProxyParsed::Partial => {
            assert!(data.len() < MAX, "partial at {} bytes", data.len());
            for k in 0..data.len() {
                assert_eq!(proxy_protocol(&data[..k]), ProxyParsed::Partial, "prefix {k}");
            }
        }
        ProxyParsed::Invalid(_) => {
            for k in 0..data.len() {
                let prefix = proxy_protocol(&data[..k]);
                assert!(
                    matches!(prefix, ProxyParsed::Partial | ProxyParsed::Invalid(_)),
                    "prefix {k} of an invalid header: {prefix:?}"
                );
            }
        }
    }
});
