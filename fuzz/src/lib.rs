//! What the fuzz targets share: the snapshot requests are routed against, and a reference decoder of
//! chunked bodies written from RFC 9112 §7.1 alone, to compare tether's incremental scanner with.

use std::sync::{Arc, LazyLock};

use tether::hot_path::StateRegistry;
use tether::{Metrics, Snapshot};

/// Two pools so both the hint order AM clients need (`cookie`, `auth_id`, `session_token`) and the
/// reverse are exercised, a trusted proxy so `X-Forwarded-For` is read, and routes by host and path.
const CONFIG: &str = r#"
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
trusted_proxies = ["192.0.2.0/24"]
[[pool]]
name = "am"
  [pool.affinity]
  mode = "insert"
  [[pool.backend]]
  id = "01"
  url = "http://127.0.0.1:1"
  [[pool.backend]]
  id = "02"
  url = "http://127.0.0.1:2"
[[pool]]
name = "rest"
  [pool.affinity]
  mode = "insert"
  hints = ["session_token", "auth_id", "cookie"]
  [[pool.backend]]
  id = "03"
  url = "http://127.0.0.1:3"
[[route]]
host = "rest.example.com"
path_prefix = "/"
pool = "rest"
[[route]]
path_prefix = "/"
pool = "am"
"#;

/// The snapshot of [`CONFIG`], built once per process.
pub static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(|| {
    let config = Arc::new(tether::config::parse(CONFIG).expect("the fuzz config parses"));
    Snapshot::build(config, &StateRegistry::default(), &Metrics::default())
});

/// Splits `data` at the first occurrence of `sep` (the targets take several inputs from one buffer,
/// separated by a byte the seeds and dictionaries use).
pub fn split_once(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// What [`reference_chunked`] makes of a buffer that starts with a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunks {
    /// The whole body (last chunk and trailer section included) is the first this many bytes.
    Done(usize),
    /// Malformed, as far as the buffer goes.
    Bad,
    /// Well-formed so far; the buffer ends inside the body.
    More,
}

/// A chunked body read by RFC 9112 §7.1 line by line, on the whole buffer at once: an oracle for
/// tether's byte-at-a-time scanner, written without looking at its states.
///
/// The acceptance rules are the scanner's documented ones where the RFC leaves room: lines end in
/// CRLF only (a bare CR or LF is malformed), a size has 1 to 15 hex digits followed by spaces or tabs
/// only, then the end of the line or `;` and an extension; an extension or a trailer line holds no
/// control byte but tab, and a trailer line does not start with a space or tab (obs-fold). A line cut
/// off by the end of the buffer is judged on what is there, so an error is seen as early as a scanner
/// sees it.
pub fn reference_chunked(input: &[u8]) -> Chunks {
    let mut at = 0;
    loop {
        let (content, end) = match line(input, at) {
            Line::Bad => return Chunks::Bad,
            // A lone CR where the size should be is already wrong; otherwise judge what is there.
            Line::Cut { content, cr } if size_line_ok(content, false) && !(cr && content.is_empty()) => {
                return Chunks::More;
            }
            Line::Cut { .. } => return Chunks::Bad,
            Line::Whole { content, end } => (content, end),
        };
        if content.is_empty() || !size_line_ok(content, true) {
            return Chunks::Bad;
        }
        let digits = content.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let size = content[..digits].iter().fold(0u64, |n, &d| n * 16 + u64::from(hex(d)));
        at = end;
        if size == 0 {
            break;
        }
        let Some(data_end) = usize::try_from(size).ok().and_then(|s| at.checked_add(s)) else {
            return Chunks::More;
        };
        match input.get(data_end..).unwrap_or_default() {
            [] => return Chunks::More,
            [b'\r'] => return Chunks::More,
            [b'\r', b'\n', ..] => at = data_end + 2,
            _ => return Chunks::Bad,
        }
    }
    loop {
        match line(input, at) {
            Line::Bad => return Chunks::Bad,
            Line::Cut { content, .. } if trailer_ok(content) => return Chunks::More,
            Line::Cut { .. } => return Chunks::Bad,
            Line::Whole { content: [], end } => return Chunks::Done(end),
            Line::Whole { content, end } if trailer_ok(content) => at = end,
            Line::Whole { .. } => return Chunks::Bad,
        }
    }
}

/// A control byte (tab excepted), which no extension or field line may hold.
fn ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Whether the (maybe partial) content of a trailer line is well-formed so far.
fn trailer_ok(content: &[u8]) -> bool {
    !matches!(content.first(), Some(b' ' | b'\t')) && !content.iter().any(|&b| ctl(b))
}

/// A line of the buffer.
enum Line<'a> {
    /// Ended by CRLF; `end` is just past the LF.
    Whole { content: &'a [u8], end: usize },
    /// The buffer ends first; `cr`: its last byte is a CR (maybe the start of the CRLF).
    Cut { content: &'a [u8], cr: bool },
    /// A bare CR or LF.
    Bad,
}

fn line(input: &[u8], from: usize) -> Line<'_> {
    let rest = input.get(from..).unwrap_or_default();
    for (i, &b) in rest.iter().enumerate() {
        match (b, rest.get(i + 1)) {
            (b'\n', _) => return Line::Bad,
            (b'\r', None) => return Line::Cut { content: &rest[..i], cr: true },
            (b'\r', Some(b'\n')) => return Line::Whole { content: &rest[..i], end: from + i + 2 },
            (b'\r', Some(_)) => return Line::Bad,
            _ => {}
        }
    }
    Line::Cut { content: rest, cr: false }
}

/// Whether the (maybe partial) content of a chunk-size line is well-formed so far; `whole`: it is
/// all there (so at least one digit is needed).
fn size_line_ok(content: &[u8], whole: bool) -> bool {
    let digits = content.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits > 15 {
        return false;
    }
    if digits == 0 {
        return content.is_empty() && !whole;
    }
    let rest = &content[digits..];
    let blank = rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    match rest.get(blank) {
        None => true,
        Some(b';') => !rest[blank..].iter().any(|&b| ctl(b)),
        Some(_) => false,
    }
}

fn hex(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => d - b'A' + 10,
    }
}
