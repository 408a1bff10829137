//! Where an HTTP/1.1 message body ends (RFC 9112 §6.3), for the fast path ([`super`]), which relays
//! bodies (the node's answers, and the client's streamed request bodies) with the framing they came
//! with instead of decoding and re-encoding them.
//!
//! A pure state machine fed with the bytes as they arrive: it says how many of them belong to the body,
//! so the relay can forward exactly those, know when the exchange is complete (and the node's
//! connection can take the next request), and notice a node that sent more than it framed.

/// How the body of one response is delimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// No body: `HEAD`, `1xx`, `204`, `304`, or `Content-Length: 0`.
    Empty,
    /// `Content-Length`: this many bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`, scanned chunk by chunk.
    Chunked(Chunked),
    /// Neither: the body runs until the node closes the connection (so the client's must close too).
    UntilClose,
}

/// The bytes do not frame a body: a bad chunk header or a chunk without its CRLF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct FramingError(&'static str);

impl Framing {
    /// Takes as much of `input` as belongs to the body; the rest (if the body ended inside `input`) is
    /// not the body's.
    pub fn take(&mut self, input: &[u8]) -> Result<usize, FramingError> {
        match self {
            Self::Empty => Ok(0),
            Self::UntilClose => Ok(input.len()),
            Self::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(input.len());
                *left -= n as u64;
                if *left == 0 {
                    *self = Self::Empty;
                }
                Ok(n)
            }
            Self::Chunked(scan) => {
                let n = scan.feed(input)?;
                if scan.done() {
                    *self = Self::Empty;
                }
                Ok(n)
            }
        }
    }

    /// The whole body has been taken (never, for [`Framing::UntilClose`]: only the close ends it).
    pub fn done(&self) -> bool {
        *self == Self::Empty
    }
}

/// Scanner state between two chunks of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex chunk size; `digits` so far.
    Size { n: u64, digits: u8 },
    /// After the size and whitespace: more whitespace, `;` or CR.
    SizeBws { n: u64 },
    /// Inside chunk extensions, up to CR.
    Ext { n: u64 },
    /// Expecting the LF of the chunk-size line.
    SizeLf { n: u64 },
    /// Inside chunk data: bytes left.
    Data(u64),
    /// Expecting the CR after the data.
    DataCr,
    /// Expecting the LF after the data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// Expecting the LF of a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// Finds the end of a `chunked` body (RFC 9112 §7.1): sizes, extensions, data, the last chunk and
/// the trailer section. CRLF is required where the grammar says so; a size of more than 15 hex digits
/// is refused rather than overflowing. Extensions are relayed as sent, so they are held to their
/// grammar instead (RFC 9112 §7.1.1): only whitespace between the size and the first `;`, and no
/// control byte, bare CR or bare LF in them (where parsers differ on where a chunk header ends);
/// trailer lines likewise, and no obs-fold (RFC 9112 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunked {
    state: State,
}

impl Default for Chunked {
    fn default() -> Self {
        Self { state: State::Size { n: 0, digits: 0 } }
    }
}

impl Chunked {
    /// The last chunk and its trailer section have been seen.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `input`; returns how many bytes belong to the body (all of them until it ends).
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, FramingError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Data(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len() - i);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data(left) };
                    continue;
                }
                _ => {}
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::Size { n, digits }, b) if b.is_ascii_hexdigit() => {
                    if digits >= 15 {
                        return Err(FramingError("chunk size too large"));
                    }
                    let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                    State::Size { n: n * 16 + d, digits: digits + 1 }
                }
                (State::Size { n, digits }, b' ' | b'\t') if digits > 0 => State::SizeBws { n },
                (State::Size { n, digits }, b';') if digits > 0 => State::Ext { n },
                (State::Size { n, digits }, b'\r') if digits > 0 => State::SizeLf { n },
                (State::Size { .. }, _) => return Err(FramingError("bad chunk size")),
                (State::SizeBws { n }, b' ' | b'\t') => State::SizeBws { n },
                (State::SizeBws { n }, b';') => State::Ext { n },
                (State::SizeBws { n }, b'\r') => State::SizeLf { n },
                (State::SizeBws { .. }, _) => return Err(FramingError("bad chunk size")),
                (State::Ext { n }, b'\r') => State::SizeLf { n },
                (State::Ext { .. }, b'\n') => return Err(FramingError("bare LF in a chunk header")),
                (State::Ext { .. }, b) if is_ctl(b) => {
                    return Err(FramingError("control byte in a chunk header"));
                }
                (State::Ext { n }, _) => State::Ext { n },
                (State::SizeLf { n: 0 }, b'\n') => State::TrailerStart,
                (State::SizeLf { n }, b'\n') => State::Data(n),
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Size { n: 0, digits: 0 },
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::TrailerStart | State::Trailer, b'\n') => {
                    return Err(FramingError("bare LF in the trailer section"));
                }
                (State::Trailer, b'\r') => State::TrailerLf,
                (State::TrailerStart, b' ' | b'\t') => {
                    return Err(FramingError("obs-fold in the trailer section"));
                }
                (State::TrailerStart | State::Trailer, b) if is_ctl(b) => {
                    return Err(FramingError("control byte in the trailer section"));
                }
                (State::TrailerStart | State::Trailer, _) => State::Trailer,
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::EndLf, b'\n') => State::Done,
                (
                    State::SizeLf { .. } | State::DataCr | State::DataLf | State::TrailerLf | State::EndLf,
                    _,
                ) => {
                    return Err(FramingError("missing CRLF"));
                }
                (State::Data(_) | State::Done, _) => unreachable!("handled before the byte is read"),
            };
        }
        Ok(i)
    }
}

/// A control byte other than HTAB (RFC 9110 §5.5: never valid in a field or an extension); CR and LF
/// are matched before this is asked.
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the body length found and whether it ended.
    fn scan(input: &[u8], step: usize) -> Result<(usize, bool), FramingError> {
        let mut c = Chunked::default();
        let mut taken = 0;
        for piece in input.chunks(step) {
            let n = c.feed(piece)?;
            taken += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((taken, c.done()))
    }

    #[test]
    fn a_chunked_body_ends_after_its_trailers_whatever_the_pieces() {
        let body = b"5 ;a=\"b c\"\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..=body.len() {
            assert_eq!(scan(body, step), Ok((body.len(), true)), "step {step}");
        }
        let mut pipelined = body.to_vec();
        pipelined.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(scan(&pipelined, 7), Ok((body.len(), true)));
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        assert_eq!(scan(b"5\r\nhel", 3), Ok((6, false)));
        assert_eq!(scan(b"0\r\n", 3), Ok((3, false)));
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloX",
            b"5\nhello",
            b"ffffffffffffffff\r\n",
            b"0\r\nX\n",
            b"5 x\r\n",
            b"5;a\nhello",
            b"5;a\x00\r\n",
            b"5;a\rb\r\n",
            b"0\r\nX: 1\r\n folded\r\n",
            b"0\r\nX: \x00\r\n",
        ] {
            assert!(scan(bad, 1).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn lengths_count_down_and_until_close_takes_everything() {
        let mut f = Framing::Length(5);
        assert_eq!(f.take(b"abc"), Ok(3));
        assert!(!f.done());
        assert_eq!(f.take(b"defg"), Ok(2));
        assert!(f.done());
        let mut f = Framing::UntilClose;
        assert_eq!(f.take(b"abc"), Ok(3));
        assert!(!f.done());
    }
}
