//! AWS's HTTP desync corpus replayed through tether: the 159 classified requests of
//! `http_desync_guardian`'s `tests/*.yaml` (a dev-dependency; the files are read from cargo's registry
//! source, found through `cargo metadata`), each sent raw on its own connection to a tether listener in
//! front of a recording node (a raw TCP server that keeps the bytes of every request it gets).
//!
//! - Severe (the crate: "MUST be treated as irrecoverable error"): 400, the connection closed, nothing
//!   at the node.
//! - Ambiguous ("different HTTP engines may interpret the request boundaries differently"): the same,
//!   or forwarded only as a normalised request: what the node got is one request that the guardian's
//!   own analyzer calls Compliant (tether renders the head it forwards itself, so a spelling such as
//!   `Transfer-Encoding: \tchunked` reaches the node as `transfer-encoding: chunked`).
//! - Compliant: forwarded, and what the node got is Compliant too; or refused by design, where tether is
//!   stricter than the RFC ([`Case::refused_by_design`]: codings other than `chunked`, an empty target).
//! - Acceptable: refused, or forwarded as a request the guardian finds no worse than Acceptable.
//!
//! Each outcome is counted in a table printed by the test (`--nocapture`).
//!
//! The case list does not carry a `Host` (RFC 9112 §3.2 makes tether answer 400 without one), so one
//! is added to cases that have none; a body is added when the case frames one unambiguously (one
//! plain `Content-Length`, or `Transfer-Encoding: chunked`), so a forwarded request is complete.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_desync_guardian::RequestSafetyTier;
use http_desync_guardian::request_analyzer::HttpRequestData;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::Cluster;

/// One classified request of the corpus.
#[derive(Debug, Default, Clone)]
struct Case {
    file: String,
    name: String,
    method: String,
    uri: String,
    version: String,
    headers: Vec<(String, String)>,
    tier: String,
}

/// The crate's source directory in cargo's registry, from `cargo metadata` (works on a fresh machine
/// once `cargo fetch` has run, wherever `CARGO_HOME` is).
fn corpus_dir() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let manifest = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "http_desync_guardian")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("http_desync_guardian in the dependency graph (a dev-dependency)");
    Path::new(manifest).parent().expect("crate dir").join("tests")
}

/// A YAML scalar as the corpus writes them: plain, 'single' or "double" quoted (with `\xNN`, `\r`,
/// `\n`, `\t`, `\"`, `\\`), then the crate's own backslash unescaping on top, as its test does.
fn scalar(raw: &str) -> String {
    let raw = raw.trim();
    let yaml = if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        unescape(inner)
    } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else {
        raw.split(" #").next().unwrap_or(raw).trim().to_owned()
    };
    if raw.starts_with('"') { yaml } else { unescape(&yaml) }
}

/// Backslash escapes, as YAML's double quotes and the crate's tests read them.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&hex, 16).expect("\\x escape")));
            }
            Some('0') => out.push('\0'),
            Some('b') => out.push('\x08'),
            Some('f') => out.push('\x0c'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The cases of one corpus file: a line reader for its one fixed layout.
fn cases(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).expect("corpus file");
    let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let mut out: Vec<Case> = Vec::new();
    let mut in_expected = false;
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let value = |key: &str| line.split_once(key).map(|(_, v)| scalar(v));
        if let Some(name) = line.strip_prefix("- name:") {
            out.push(Case { file: file.clone(), name: scalar(name), ..Case::default() });
            in_expected = false;
            continue;
        }
        let Some(case) = out.last_mut() else { continue };
        if line.starts_with("  expected:") {
            in_expected = true;
        } else if let Some(v) = line.strip_prefix("  uri:") {
            case.uri = scalar(v);
        } else if let Some(v) = line.strip_prefix("  method:") {
            case.method = scalar(v);
        } else if let Some(v) = line.strip_prefix("  version:") {
            case.version = scalar(v);
        } else if line.starts_with("    - name:") {
            case.headers.push((value("- name:").unwrap_or_default(), String::new()));
        } else if line.starts_with("      value:") {
            if let Some(h) = case.headers.last_mut() {
                h.1 = value("value:").unwrap_or_default();
            }
        } else if in_expected && line.starts_with("    tier:") {
            case.tier = value("tier:").unwrap_or_default();
        }
    }
    out
}

impl Case {
    /// Why tether refuses this case although the guardian calls it Compliant, when it does by design:
    /// a transfer coding other than one `chunked` cannot be forwarded as sent (tether relays `chunked`
    /// framing and decodes nothing else; RFC 9112 §6.1 suggests 501, and a client's request never gets
    /// a 5xx from the proxy), and an empty request-target is no request-target (RFC 9112 §3.2).
    fn refused_by_design(&self) -> Option<&'static str> {
        let codings: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .flat_map(|(_, v)| v.split(',').map(|c| c.trim_matches([' ', '\t']).to_ascii_lowercase()))
            .collect();
        if !codings.is_empty() && codings != ["chunked"] {
            Some("transfer codings other than one chunked")
        } else if self.uri.is_empty() {
            Some("an empty request-target")
        } else {
            None
        }
    }

    /// The request as bytes: its request line and fields as written, a `Host` when it has none, and
    /// the body it frames when it frames one plainly.
    fn raw(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.as_bytes());
        if !self.version.is_empty() {
            out.push(b' ');
            out.extend_from_slice(self.version.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        let has = |n: &str| self.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case(n));
        if !has("host") {
            out.extend_from_slice(b"Host: tether.test\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let lengths: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.trim())
            .collect();
        let te: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .map(|(_, v)| v.trim())
            .collect();
        match (&lengths[..], &te[..]) {
            ([n], []) => {
                if let Ok(n) = n.parse::<usize>() {
                    out.extend(std::iter::repeat_n(b'x', n));
                }
            }
            ([], [t]) if t.eq_ignore_ascii_case("chunked") => out.extend_from_slice(b"0\r\n\r\n"),
            _ => {}
        }
        out
    }
}

/// What the recording node got: the bytes of each request, in order.
type Recorded = Arc<Mutex<Vec<Vec<u8>>>>;

/// A raw node: reads each request (head, then the body its one framing says), records its bytes, and
/// answers `200` with no body, on as many connections as the proxy opens.
async fn recording_node() -> (std::net::SocketAddr, Recorded) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let recorded: Recorded = Arc::default();
    let rec = recorded.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(record(conn, rec.clone()));
        }
    });
    (addr, recorded)
}

async fn record(mut conn: TcpStream, recorded: Recorded) {
    let mut buf = Vec::new();
    loop {
        let Some(len) = request_len(&buf) else {
            let mut piece = [0u8; 8192];
            match conn.read(&mut piece).await {
                Ok(0) | Err(_) => {
                    if !buf.is_empty() {
                        recorded.lock().push(buf);
                    }
                    return;
                }
                Ok(n) => buf.extend_from_slice(&piece[..n]),
            }
            continue;
        };
        recorded.lock().push(buf.drain(..len).collect());
        if conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.is_err() {
            return;
        }
    }
}

/// The length of the first whole request in `buf` (what tether forwards is framed by one
/// `Content-Length` or by `chunked` ending in an empty trailer section).
fn request_len(buf: &[u8]) -> Option<usize> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut fields);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let field = |name: &str| req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    if field("transfer-encoding").is_some() {
        let end = buf[head..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(head + end + 5);
    }
    let length = field("content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head + length).then_some(head + length)
}

/// What the client got for one case.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// 400, and the connection closed after it.
    Refused,
    /// An answer from the node.
    Forwarded(u16),
    /// Anything else: another status, no answer, an open connection after a 400.
    Other(String),
}

/// Sends one case raw and reads what comes back until the connection closes (bounded).
async fn replay(proxy: std::net::SocketAddr, raw: &[u8]) -> Outcome {
    let mut conn = TcpStream::connect(proxy).await.expect("connect");
    let _ = conn.write_all(raw).await;
    let mut got = Vec::new();
    // The proxy closes after a refusal; after a forwarded answer the connection stays open, so the
    // read ends at the first whole answer or at the bound.
    let read = async {
        let mut piece = [0u8; 4096];
        loop {
            match conn.read(&mut piece).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => got.extend_from_slice(&piece[..n]),
            }
            if got.starts_with(b"HTTP/1.1 200") && got.windows(4).any(|w| w == b"\r\n\r\n") {
                return false;
            }
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(3), read).await.unwrap_or(false);
    let status = std::str::from_utf8(got.get(9..12).unwrap_or_default()).ok().and_then(|s| s.parse().ok());
    match status {
        Some(400) if closed => Outcome::Refused,
        Some(200) => Outcome::Forwarded(200),
        Some(s) => Outcome::Other(format!("{s}{}", if closed { ", closed" } else { ", open" })),
        None => Outcome::Other(format!("no answer ({} bytes)", got.len())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desync_corpus_is_refused_or_normalised() {
    let dir = corpus_dir();
    let mut all: Vec<Case> = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in &files {
        all.extend(cases(file));
    }
    assert!(all.len() >= 150, "the corpus has {} cases in {}", all.len(), dir.display());

    let (node, recorded) = recording_node().await;
    let proxy = Cluster::of(&[])
        .backend_at(0, "01", &format!("http://{node}"), "active")
        .passive_checks()
        .proxy("request_header_timeout_ms", 2000)
        .start()
        .await;

    // tier → (refused, forwarded as Compliant, forwarded otherwise, other)
    let tiers = ["Compliant", "Acceptable", "Ambiguous", "Severe"];
    let mut table = [[0usize; 4]; 4];
    let mut faults = Vec::new();
    let mut by_design = Vec::new();
    for case in &all {
        recorded.lock().clear();
        let outcome = replay(proxy.addr, &case.raw()).await;
        // What reached the node, once the exchange is over (it answered before the client heard).
        let seen: Vec<Vec<u8>> = std::mem::take(&mut *recorded.lock());
        let second: Vec<RequestSafetyTier> =
            seen.iter().map(|r| HttpRequestData::analyze_raw_request(r).tier).collect();
        let row = tiers.iter().position(|t| *t == case.tier).expect("known tier");
        // The node got one request, which the guardian itself finds Compliant (or, for a case that was
        // only Acceptable to begin with, no worse).
        let worst = if case.tier == "Acceptable" {
            RequestSafetyTier::Acceptable
        } else {
            RequestSafetyTier::Compliant
        };
        let normalised = seen.len() == 1 && second.iter().all(|t| *t <= worst);
        let column = match (&outcome, seen.is_empty()) {
            (Outcome::Refused, true) => 0,
            (Outcome::Forwarded(_), false) if normalised => 1,
            (Outcome::Forwarded(_), false) => 2,
            _ => 3,
        };
        table[row][column] += 1;
        let ok = match case.tier.as_str() {
            "Severe" => column == 0,
            "Ambiguous" | "Acceptable" => column <= 1,
            _ => column == 1 || (column == 0 && case.refused_by_design().is_some()),
        };
        if case.tier == "Compliant" && column == 0 {
            by_design.push(format!("{} ({})", case.name, case.refused_by_design().unwrap_or("?")));
        }
        if !ok {
            let sent = String::from_utf8_lossy(&case.raw()).escape_debug().to_string();
            let got: Vec<String> =
                seen.iter().map(|r| String::from_utf8_lossy(r).escape_debug().to_string()).collect();
            faults.push(format!(
                "[{}] {} ({}): {outcome:?}; node got {got:?} (guardian: {second:?}); sent {sent}",
                case.file, case.name, case.tier
            ));
        }
    }
    println!("{} cases from {}", all.len(), dir.display());
    println!("{:<12} {:>8} {:>11} {:>10} {:>6}", "tier", "refused", "normalised", "forwarded", "other");
    for (tier, counts) in tiers.iter().zip(table) {
        println!("{tier:<12} {:>8} {:>11} {:>10} {:>6}", counts[0], counts[1], counts[2], counts[3]);
    }
    for d in &by_design {
        println!("Compliant, refused by design: {d}");
    }
    for f in &faults {
        println!("FAULT {f}");
    }
    proxy.shutdown().await;
    assert!(faults.is_empty(), "{} cases were not handled as their tier requires", faults.len());
}
