//! The chunk scanner of the fast path (`Chunked`), which finds where a chunked body ends in bytes a
//! node (or a client uploading) sends. Checks: never a panic; it never claims more bytes than it was
//! given; the answer does not depend on how the bytes are split into reads; and it agrees with a
//! reference decoder written from RFC 9112 §7.1 on where the body ends or that it is malformed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::hot_path::Chunked;
use tether_fuzz::{Chunks, reference_chunked};

/// Feeds `input` to a fresh scanner in reads of `step` bytes.
fn scan(input: &[u8], step: usize) -> Chunks {
    let mut scanner = Chunked::default();
    let mut taken = 0;
    for piece in input.chunks(step) {
        let Ok(n) = scanner.feed(piece) else { return Chunks::Bad };
        assert!(n <= piece.len(), "took {n} of {} bytes", piece.len());
        taken += n;
        if scanner.done() {
            assert_eq!(scanner.feed(piece), Ok(0), "a finished body takes no more bytes");
            return Chunks::Done(taken);
        }
        assert_eq!(n, piece.len(), "an unfinished body takes every byte");
    }
    Chunks::More
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else { return };
    let whole = scan(body, body.len().max(1));
    assert_eq!(scan(body, usize::from(step % 16) + 1), whole, "split into reads of {}", step % 16 + 1);
    assert_eq!(whole, reference_chunked(body), "the reference decoder disagrees");
});
