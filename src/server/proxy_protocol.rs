//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and 2), pure: an L4 balancer
//! (AWS NLB, HAProxy `send-proxy`) writes it first on every connection, before any TLS or HTTP byte,
//! to say which client it forwards. Only TCP over IPv4 and IPv6 carries a client; `LOCAL` (v2, the
//! balancer's own health checks) and `UNKNOWN` (v1) mean "use the connection's own addresses".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature, the first 12 bytes of a binary header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// The longest v2 header read (TLVs included): the balancers in use send far less (AWS adds a VPC
/// endpoint ID), and a bound keeps a client from holding a large buffer.
pub const V2_MAX: usize = 16 + 1024;

/// What the header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A forwarded TCP connection: the client and the address it connected to.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// Where the client connected (the balancer's address and port).
        destination: SocketAddr,
    },
    /// The balancer's own connection (v2 `LOCAL`, v1 `UNKNOWN`): the socket's addresses stand.
    Local,
}

/// The outcome of reading the start of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of this many bytes.
    Complete(Header, usize),
    /// Valid so far; more bytes are needed.
    Partial,
    /// Not a PROXY header: the connection is closed unanswered.
    Invalid(&'static str),
}

/// Reads a v1 or v2 header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.len() < V2_SIGNATURE.len() && V2_SIGNATURE.starts_with(buf) {
        return Parsed::Partial;
    }
    if buf.starts_with(V2_SIGNATURE) {
        return v2(buf);
    }
    let prefix = b"PROXY ";
    if buf.len() < prefix.len() {
        return if prefix.starts_with(buf) { Parsed::Partial } else { Parsed::Invalid("no PROXY header") };
    }
    if buf.starts_with(prefix) {
        return v1(buf);
    }
    Parsed::Invalid("no PROXY header")
}

/// `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`, or `PROXY UNKNOWN …\r\n`.
fn v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() < V1_MAX { Parsed::Partial } else { Parsed::Invalid("PROXY v1 line too long") };
    };
    let Ok(line) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Invalid("PROXY v1 line not ASCII");
    };
    let mut parts = line.split(' ');
    let _proxy = parts.next();
    let family = parts.next();
    if family == Some("UNKNOWN") {
        return Parsed::Complete(Header::Local, end + 2);
    }
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Invalid("PROXY v1 line needs 6 fields");
    };
    let ip = |text: &str| -> Option<IpAddr> {
        match family {
            Some("TCP4") => text.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            Some("TCP6") => text.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            _ => None,
        }
    };
    // Ports are plain decimal: no sign, no leading zero (the specification's form).
    let port = |text: &str| -> Option<u16> {
        let plain = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        plain.then(|| text.parse().ok()).flatten()
    };
    match (ip(src), ip(dst), port(sport), port(dport)) {
        (Some(s), Some(d), Some(sp), Some(dp)) => Parsed::Complete(
            Header::Proxied { source: SocketAddr::new(s, sp), destination: SocketAddr::new(d, dp) },
            end + 2,
        ),
        _ => Parsed::Invalid("PROXY v1 addresses do not parse"),
    }
}

/// The binary header: signature, version and command, family, length, addresses, TLVs (skipped).
fn v2(buf: &[u8]) -> Parsed {
    if buf.len() < 16 {
        return Parsed::Partial;
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Parsed::Invalid("PROXY v2 header with another version");
    }
    let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > V2_MAX {
        return Parsed::Invalid("PROXY v2 header too long");
    }
    if buf.len() < len {
        return Parsed::Partial;
    }
    let block = &buf[16..len];
    let header = match (command, buf[13]) {
        // LOCAL: the balancer's own connection (health checks); the address block is to be ignored.
        (0, _) => Header::Local,
        // PROXY over UNSPEC: nothing known about the client, so the socket's addresses stand.
        (1, 0x00) => Header::Local,
        (1, 0x11) if block.len() >= 12 => {
            let ip =
                |at: usize| IpAddr::V4(Ipv4Addr::new(block[at], block[at + 1], block[at + 2], block[at + 3]));
            Header::Proxied {
                source: SocketAddr::new(ip(0), u16::from_be_bytes([block[8], block[9]])),
                destination: SocketAddr::new(ip(4), u16::from_be_bytes([block[10], block[11]])),
            }
        }
        (1, 0x21) if block.len() >= 36 => {
            let ip = |at: usize| {
                let mut octets = [0; 16];
                octets.copy_from_slice(&block[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            Header::Proxied {
                source: SocketAddr::new(ip(0), u16::from_be_bytes([block[32], block[33]])),
                destination: SocketAddr::new(ip(16), u16::from_be_bytes([block[34], block[35]])),
            }
        }
        (1, 0x11 | 0x21) => return Parsed::Invalid("PROXY v2 address block too short"),
        (1, _) => return Parsed::Invalid("PROXY v2 header for a transport other than TCP"),
        _ => return Parsed::Invalid("PROXY v2 header with an unknown command"),
    };
    Parsed::Complete(header, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxied(source: &str, destination: &str) -> Header {
        Header::Proxied { source: source.parse().unwrap(), destination: destination.parse().unwrap() }
    }

    #[test]
    fn v1_lines() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(parse(line), Parsed::Complete(proxied("192.0.2.1:56324", "198.51.100.1:443"), 45));
        let six = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 8443\r\n";
        assert_eq!(
            parse(six),
            Parsed::Complete(proxied("[2001:db8::1]:65535", "[2001:db8::2]:8443"), six.len())
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Parsed::Complete(Header::Local, 15));
        assert_eq!(parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), Parsed::Complete(Header::Local, 35));
        for partial in [&b""[..], b"P", b"PROXY", b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 44"] {
            assert_eq!(parse(partial), Parsed::Partial, "{}", String::from_utf8_lossy(partial));
        }
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 192.0.2.1 198.51.100.1 56324\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443 x\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.1 56324 443\r\n",
            b"PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.1 65536 443\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.1 +1 443\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.1 01 443\r\n",
            b"PROXY TCP4  192.0.2.1 198.51.100.1 1 443\r\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.1 1 443\r\n",
            b"proxy TCP4 192.0.2.1 198.51.100.1 1 443\r\n",
        ] {
            assert!(matches!(parse(bad), Parsed::Invalid(_)), "{}", String::from_utf8_lossy(bad));
        }
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Parsed::Invalid(_)));
    }

    fn v2_header(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    #[test]
    fn v2_headers() {
        let mut four = vec![192, 0, 2, 1, 198, 51, 100, 1];
        four.extend_from_slice(&56324u16.to_be_bytes());
        four.extend_from_slice(&443u16.to_be_bytes());
        let h = v2_header(1, 0x11, &four);
        assert_eq!(parse(&h), Parsed::Complete(proxied("192.0.2.1:56324", "198.51.100.1:443"), 28));
        // TLVs after the addresses are skipped; bytes after the header are not part of it.
        let mut with_tlv = four.clone();
        with_tlv.extend_from_slice(&[0x05, 0x00, 0x02, b'i', b'd']);
        let mut h = v2_header(1, 0x11, &with_tlv);
        h.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(parse(&h), Parsed::Complete(proxied("192.0.2.1:56324", "198.51.100.1:443"), 33));
        for cut in 0..33 {
            assert_eq!(parse(&h[..cut]), Parsed::Partial, "cut at {cut}");
        }

        let mut six = Vec::new();
        six.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        six.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        six.extend_from_slice(&[0x1f, 0x90, 0x20, 0xfb]);
        assert_eq!(
            parse(&v2_header(1, 0x21, &six)),
            Parsed::Complete(proxied("[2001:db8::1]:8080", "[2001:db8::2]:8443"), 52)
        );
        assert_eq!(parse(&v2_header(0, 0x11, &four)), Parsed::Complete(Header::Local, 28));
        assert_eq!(parse(&v2_header(0, 0x00, &[])), Parsed::Complete(Header::Local, 16));
        assert_eq!(parse(&v2_header(1, 0x00, &[])), Parsed::Complete(Header::Local, 16));

        for bad in [
            v2_header(1, 0x11, &four[..11]),
            v2_header(1, 0x21, &four),
            v2_header(1, 0x12, &four),
            v2_header(1, 0x31, &[0; 216]),
            v2_header(2, 0x11, &four),
            v2_header(1, 0x11, &[0; V2_MAX]),
        ] {
            assert!(matches!(parse(&bad), Parsed::Invalid(_)), "{bad:?}");
        }
        let mut v1_version = v2_header(1, 0x11, &four);
        v1_version[12] = 0x11;
        assert!(matches!(parse(&v1_version), Parsed::Invalid(_)));
    }
}
