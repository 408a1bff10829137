//! A frame-level HTTP/2 client (RFC 9113 §4, §6) for sequences no conforming client sends: streams
//! reset as soon as they open, header blocks that never end, more streams than the server allows.
//! Requests are HPACK-encoded with static-table indexes and literals without Huffman coding (RFC 7541
//! §6.1, §6.2.2), which every decoder must take; of the answers only the frame types, the stream, the
//! error codes and whether the status is the static `:status: 200` are read.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const CANCEL: u32 = 0x8;
pub const REFUSED_STREAM: u32 = 0x7;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// Appends one frame (RFC 9113 §4.1).
pub fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap();
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends RST_STREAM with `code`.
pub fn rst(out: &mut Vec<u8>, stream: u32, code: u32) {
    frame(out, RST_STREAM, 0, stream, &code.to_be_bytes());
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first` (RFC 7541 §5.1).
fn integer(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A string literal without Huffman coding (RFC 7541 §5.2).
fn string(out: &mut Vec<u8>, s: &[u8]) {
    integer(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A field with a new name, never added to the dynamic table (RFC 7541 §6.2.2).
pub fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0);
    string(out, name.as_bytes());
    string(out, value);
}

/// The header block of `GET path` with `:authority` `authority`: `:method GET` and `:scheme http` are
/// static entries 2 and 6, `:path` and `:authority` name static entries 4 and 1.
pub fn get(authority: &str, path: &str) -> Vec<u8> {
    let mut out = vec![0x82, 0x86];
    integer(&mut out, 0, 4, 4);
    string(&mut out, path.as_bytes());
    integer(&mut out, 0, 4, 1);
    string(&mut out, authority.as_bytes());
    out
}

/// What the server sent on a connection.
#[derive(Debug, Default)]
pub struct Seen {
    /// SETTINGS parameters (identifier, value) of the server's first SETTINGS frame.
    pub settings: Vec<(u16, u32)>,
    /// Streams answered with HEADERS, and whether the status was `200` (static entry 8).
    pub responses: Vec<(u32, bool)>,
    /// RST_STREAM frames: (stream, error code).
    pub resets: Vec<(u32, u32)>,
    /// GOAWAY: (last stream ID, error code, debug data).
    pub goaway: Option<(u32, u32, String)>,
    /// The server closed the connection (or reset it).
    pub closed: bool,
}

impl Seen {
    /// The value of a SETTINGS parameter the server announced.
    pub fn setting(&self, id: u16) -> Option<u32> {
        self.settings.iter().find(|(i, _)| *i == id).map(|(_, v)| *v)
    }
}

/// A raw HTTP/2 connection: the test writes frames, a task reads what comes back into [`Seen`].
pub struct Conn {
    write: OwnedWriteHalf,
    seen: Arc<(Mutex<Seen>, Notify)>,
    /// Bytes written so far.
    pub written: usize,
}

impl Conn {
    /// Connects to `addr` and sends the preface and an empty SETTINGS frame (RFC 9113 §3.4).
    pub async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, write) = stream.into_split();
        let seen = Arc::new((Mutex::new(Seen::default()), Notify::new()));
        tokio::spawn(read_frames(read, Arc::clone(&seen)));
        let mut conn = Self { write, seen, written: 0 };
        let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame(&mut start, SETTINGS, 0, 0, &[]);
        conn.send(&start).await.unwrap();
        conn
    }

    /// Writes `bytes`; an error once the server has closed.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.write_all(bytes).await?;
        self.written += bytes.len();
        Ok(())
    }

    /// Runs `f` on what was seen so far.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.0.lock())
    }

    /// Waits (at most 10 s) until what was seen satisfies `done`; whether it did.
    pub async fn until(&self, done: impl Fn(&Seen) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let changed = self.seen.1.notified();
            if done(&self.seen.0.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return done(&self.seen.0.lock());
            }
        }
    }
}

async fn read_frames(mut read: tokio::net::tcp::OwnedReadHalf, seen: Arc<(Mutex<Seen>, Notify)>) {
    let mut head = [0u8; 9];
    loop {
        if read.read_exact(&mut head).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if read.read_exact(&mut payload).await.is_err() {
            break;
        }
        let word = |at: usize| u32::from_be_bytes(payload[at..at + 4].try_into().unwrap());
        let mut s = seen.0.lock();
        match kind {
            SETTINGS if flags & 1 == 0 && s.settings.is_empty() => {
                s.settings = payload
                    .chunks_exact(6)
                    .map(|c| (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes([c[2], c[3], c[4], c[5]])))
                    .collect();
            }
            HEADERS => {
                // Padding and priority flags are never set by h2's encoder.
                s.responses.push((stream, payload.first() == Some(&0x88)));
            }
            RST_STREAM if len == 4 => s.resets.push((stream, word(0))),
            GOAWAY if len >= 8 => {
                let debug = String::from_utf8_lossy(&payload[8..]).into_owned();
                s.goaway = Some((word(0), word(4), debug));
            }
            _ => {}
        }
        drop(s);
        seen.1.notify_waiters();
    }
    seen.0.lock().closed = true;
    seen.1.notify_waiters();
}
